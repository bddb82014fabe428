#!/usr/bin/env bash
# Latency against throughput: runs scripts/bench.sh at increasing offered
# loads (open loop, --rate R) and finally closed loop at saturation (256
# in flight), each on a fresh network, and writes
#
#   OUT/sweep.tsv   one row per run: offered tx/s, committed tx/s, latency
#                   p50/p90/p99 (ms), replica CPU s per 1,000 tx, view
#                   changes started
#   OUT/sweep.svg   the curve: p50 and p99 latency (log scale) against
#                   committed tx/s, drawn here (no external service)
#
# and prints the table as Markdown.
#
#   scripts/sweep.sh [--rates R1,R2,...] [--duration-s S] [--out DIR]
#                    [--base-port P] [--no-build]
#
#   --rates       offered loads in tx/s (default 500,1000,2000,4000,6000,8000)
#   --duration-s  seconds of load per open-loop run (default 10): R*S transfers
#   --out         where the table and the plot go (default ./sweep)
#   --base-port   passed to bench.sh (default 27400)
#
# Every run is bounded by bench.sh's --deadline-s. Exit: 0 when every run
# committed everything; 1 otherwise (the runs before it are kept); 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."

RATES="500,1000,2000,4000,6000,8000"
DURATION_S=10
OUT="$PWD/sweep"
BASE_PORT=27400
BUILD=1
die() { echo "error: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rates) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--rates needs R1,R2,... (positive tx/s)"; RATES=$2; shift 2 ;;
    --duration-s) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--duration-s needs a positive number"; DURATION_S=$2; shift 2 ;;
    --out) [ $# -ge 2 ] && [ -n "$2" ] || die "--out needs a directory"; OUT=$2; shift 2 ;;
    --base-port) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "--base-port needs a port"; BASE_PORT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see $0 --help)" ;;
  esac
done
command -v python3 >/dev/null || die "python3 is needed to draw the plot"
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}"
if [ "$BUILD" = 1 ]; then
  cargo build --release --bin pbft-replica --bin pbft-client >&2
fi

RAW="$OUT/runs.jsonl"
: >"$RAW"
status=0
run() {
  local label=$1; shift
  echo "== $label" >&2
  local line
  if line="$(scripts/bench.sh --no-build --json --base-port "$BASE_PORT" --deadline-s 300 "$@" 2>/dev/null | tail -n 1)" &&
     [ -n "$line" ]; then
    printf '%s\n' "$line" >>"$RAW"
  else
    echo "   failed: $label" >&2
    [ -n "${line:-}" ] && printf '%s\n' "$line" >>"$RAW"
    status=1
  fi
}
IFS=',' read -r -a rates <<<"$RATES"
for r in "${rates[@]}"; do
  run "open loop, $r tx/s offered, ${DURATION_S} s" --rate "$r" --txs $((r * DURATION_S)) --concurrency 256
done
run "closed loop, 256 in flight (saturation)" --txs $((8000 * DURATION_S)) --concurrency 256

python3 - "$RAW" "$OUT" <<'PY'
import json, math, sys
raw, out = sys.argv[1], sys.argv[2]
rows = []
for line in open(raw):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    lat = r.get("latency_ms") or {}
    rows.append({
        "offered": r.get("rate") or "closed",
        "tx_per_s": r.get("tx_per_s") or 0.0,
        "p50": lat.get("p50"), "p90": lat.get("p90"), "p99": lat.get("p99"),
        "cpu": r.get("replicas_cpu_s_per_1000_tx"),
        "vc": r.get("view_changes_started"),
        "ok": r.get("exit_code") == 0,
    })
with open(f"{out}/sweep.tsv", "w") as f:
    f.write("offered_tx_s\tcommitted_tx_s\tp50_ms\tp90_ms\tp99_ms\treplica_cpu_s_per_1000_tx\tview_changes\tok\n")
    for r in rows:
        f.write("\t".join(str(r[k]) for k in ("offered", "tx_per_s", "p50", "p90", "p99", "cpu", "vc", "ok")) + "\n")
print("| offered | committed | p50 | p90 | p99 | replica CPU / 1,000 tx | view changes |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    off = f"{r['offered']:,.0f} tx/s" if r["offered"] != "closed" else "closed loop, 256 in flight"
    fmt = lambda v: "-" if v is None else f"{v:.1f} ms"
    cpu = "-" if r["cpu"] is None else f"{float(r['cpu']):.3f} s"
    flag = "" if r["ok"] else " (failed)"
    print(f"| {off} | {r['tx_per_s']:,.0f} tx/s{flag} | {fmt(r['p50'])} | {fmt(r['p90'])} | {fmt(r['p99'])} | {cpu} | {r['vc']} |")

# The plot: x committed tx/s (linear), y latency ms (log 10).
pts = [r for r in rows if r["p50"] and r["p99"] and r["tx_per_s"] > 0]
W, H, L, R, T, B = 720, 440, 70, 20, 30, 50
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>']
if pts:
    xmax = max(r["tx_per_s"] for r in pts) * 1.1
    lo = math.floor(math.log10(min(r["p50"] for r in pts)))
    hi = math.ceil(math.log10(max(r["p99"] for r in pts)))
    hi = max(hi, lo + 1)
    X = lambda v: L + (W - L - R) * v / xmax
    Y = lambda ms: H - B - (H - T - B) * (math.log10(ms) - lo) / (hi - lo)
    for e in range(lo, hi + 1):
        y = Y(10 ** e)
        svg.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        svg.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** e:g} ms</text>')
    step = 10 ** math.floor(math.log10(xmax / 2)) if xmax > 2 else 1
    v = 0
    while v <= xmax:
        x = X(v)
        svg.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#eee"/>')
        svg.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">{v:,.0f}</text>')
        v += step
    svg.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">committed signed transfers per second</text>')
    svg.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 {(T + H - B) / 2})">commit latency (log scale)</text>')
    pts.sort(key=lambda r: r["tx_per_s"])
    for key, colour in (("p50", "#1f77b4"), ("p99", "#d62728")):
        path = " ".join(f'{X(r["tx_per_s"]):.1f},{Y(r[key]):.1f}' for r in pts)
        svg.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for r in pts:
            svg.append(f'<circle class="point {key}" cx="{X(r["tx_per_s"]):.1f}" cy="{Y(r[key]):.1f}" r="3.5" fill="{colour}"/>')
    svg.append(f'<text x="{L + 10}" y="{T + 4}" fill="#1f77b4">p50</text><text x="{L + 45}" y="{T + 4}" fill="#d62728">p99</text>')
else:
    svg.append('<text x="20" y="40">no run committed anything</text>')
svg.append("</svg>")
open(f"{out}/sweep.svg", "w").write("\n".join(svg) + "\n")
PY
echo "wrote $OUT/sweep.tsv and $OUT/sweep.svg" >&2
exit $status
