# Helpers for test scripts with an overall time limit. The sourcing script
# sets LIMIT_S (seconds) and T0 (its start, `date +%s`) before calling them.

# Fails the test with a message (exit 1; the script's EXIT trap cleans up).
fail() { echo "FAIL: $*" >&2; exit 1; }

# Announces a step with the seconds elapsed; fails if the limit has passed.
step() {
  remaining >/dev/null
  echo "== [$(($(date +%s) - T0))s] $*"
}

# Seconds left before the limit; fails once there are none.
remaining() {
  local left=$((LIMIT_S - ($(date +%s) - T0)))
  [ "$left" -gt 0 ] || fail "the test ran over its ${LIMIT_S}s limit"
  echo "$left"
}

# Runs a command bounded by min(S, time left).
bounded() {
  local s=$1 left
  shift
  left=$(remaining)
  [ "$s" -le "$left" ] || s=$left
  timeout "$s" "$@"
}
