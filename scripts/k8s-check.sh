#!/usr/bin/env bash
# Offline check of the Kubernetes manifests `pbft-replica testnet --kubernetes`
# writes (no cluster needed):
#   1. generates a fresh testnet and its manifests in a temporary directory;
#   2. validates every document against the Kubernetes schemas bundled with
#      kubernetes-validate (--strict: unknown fields are errors);
#   3. checks that they run what the Compose network runs for real: the same
#      image, binary, user, container ports, data path, config path and
#      probe paths as configs/deploy/compose.yaml, scripts/image.sh and
#      scripts/composenet.sh; that genesis names each replica's Service IP
#      and port; that every replica has its config and key mounted;
#   4. corrupts copies of the manifests (another image, another probe path,
#      a port the config does not bind, a bad field) and expects each check
#      to fail, so a check that cannot fail is caught.
#
#   scripts/k8s-check.sh [--kube-version V] [--keep DIR]
#
#   --kube-version V  schema version (default 1.30.0; kubernetes-validate
#                     --help lists what it bundles)
#   --keep DIR        write the testnet and manifests to DIR (must not
#                     exist) and keep them
# Needs: release binaries ($CARGO_TARGET_DIR/release, else
# /var/tmp/pbft-ledger-target/release), a Python venv with kubernetes-validate
# and PyYAML ($PBFT_VENV, default /var/tmp/pbft-venv:
# `pip install kubernetes-validate`).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

KUBE_VERSION=1.30.0
KEEP=""
BIN="${CARGO_TARGET_DIR:-/var/tmp/pbft-ledger-target}/release"
VENV="${PBFT_VENV:-/var/tmp/pbft-venv}"

die() { echo "error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --kube-version) [ $# -ge 2 ] || die "--kube-version needs a value"; KUBE_VERSION="$2"; shift 2 ;;
    --keep) [ $# -ge 2 ] || die "--keep needs a directory"; KEEP="$2"; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (usage: $0 [--kube-version V] [--keep DIR])" ;;
  esac
done

[ -x "$BIN/pbft-replica" ] || die "$BIN/pbft-replica not built (cargo build --release --bins)"
# The validator and its bundled schemas (pinned), installed from PyPI on a
# fresh machine.
if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -q 1.37.0 ||
  ! "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
  echo "== installing kubernetes-validate 1.37.0 and PyYAML into $VENV"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" || die "cannot create a Python venv at $VENV"
  "$VENV/bin/pip" install --quiet kubernetes-validate==1.37.0 pyyaml==6.0.4 ||
    die "cannot install kubernetes-validate into $VENV"
fi

if [ -n "$KEEP" ]; then
  [ ! -e "$KEEP" ] || die "--keep $KEEP already exists"
  WORK="$(realpath -m "$KEEP")"
  mkdir -p "$WORK"
else
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/pbft-k8s.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
fi
NET="$WORK/net"
K8S="$WORK/kubernetes"
NS=pbft-check

echo "== generating a testnet and its manifests in $WORK"
"$BIN/pbft-replica" testnet --replicas 4 --out "$NET" --kubernetes "$K8S" --namespace "$NS" >/dev/null

DOCS=(namespace.yaml services.yaml configmap.yaml secrets.yaml statefulset.yaml pdb.yaml)

validate() {
  # kubernetes-validate exits 0 on a file it cannot parse; treat its
  # ERROR/parse lines as failures too.
  local dir=$1 out rc=0
  out="$(cd "$dir" && "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBE_VERSION" "${DOCS[@]}" 2>&1)" || rc=$?
  if [ $rc -ne 0 ] || grep -qiE "error|couldn't parse|failed" <<<"$out"; then
    echo "$out" >&2
    return 1
  fi
}

consistent() {
  "$VENV/bin/python" - "$1" "$REPO" "$NET" <<'PY'
import json, re, sys, pathlib, yaml
k8s, repo, net = (pathlib.Path(p) for p in sys.argv[1:4])
fails = []
def check(ok, what):
    if not ok:
        fails.append(what)

def docs(name):
    return [d for d in yaml.safe_load_all((k8s / name).read_text()) if d]

# --- what the Compose network runs -----------------------------------
compose = yaml.safe_load((repo / "configs/deploy/compose.yaml").read_text())
image_sh = (repo / "scripts/image.sh").read_text()
composenet = (repo / "scripts/composenet.sh").read_text()
replica_rs = (repo / "src/bin/pbft-replica.rs").read_text()
r0 = compose["services"]["replica-0"]
m = re.fullmatch(r"\$\{PBFT_IMAGE:-([^}]+)\}", r0["image"])
compose_image = m.group(1) if m else r0["image"]
image_tag = re.search(r"^TAG=(\S+)$", image_sh, re.M).group(1)
uid = int(re.search(r"^UID_REPLICA=(\d+)$", image_sh, re.M).group(1))
entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", image_sh, re.M).group(1))
base = int(re.search(r"^BASE_PORT=(\d+)$", composenet, re.M).group(1))
mounts = {}
def volume(v):
    # SRC:DST[:ro], where SRC may hold ${VAR:-default}
    v = v[:-3] if v.endswith(":ro") else v
    return v.rsplit(":", 1)
for v in r0["volumes"]:
    src, dst = volume(v)
    mounts[pathlib.PurePosixPath(src).name] = dst
compose_ports = set()
for p in r0["ports"]:
    target, proto = p.rsplit(":", 1)[1].split("/")
    compose_ports.add((int(target), proto.upper()))
# Probe paths: the image's HEALTHCHECK runs `probe` (no --ready), composenet
# waits with `probe --ready`; pbft-replica maps those flags to these paths.
paths = re.search(r'if ready \{ "(/\w+)" \} else \{ "(/\w+)" \}', replica_rs)
ready_path, health_path = paths.group(1), paths.group(2)
hc = re.search(r"^HEALTHCHECK.*\n\s*CMD (\[.*\])$", image_sh, re.M).group(1)
check("probe" in json.loads(hc) and "--ready" not in json.loads(hc),
      "image HEALTHCHECK is not `pbft-replica probe` (liveness, /healthz)")
check(re.search(r"probe --home \S+ --ready", composenet) is not None,
      "composenet.sh does not wait with `probe --ready` (readiness, /readyz)")

# --- the manifests --------------------------------------------------
sts = docs("statefulset.yaml")[0]
spec = sts["spec"]["template"]["spec"]
c = spec["containers"][0]
check(c["image"] == compose_image == image_tag,
      f"image {c['image']!r} vs compose {compose_image!r} vs image.sh {image_tag!r}")
check(c["command"][0] == entry[0], f"command {c['command'][0]} vs ENTRYPOINT {entry[0]}")
args = c["args"]
check(args[0] == "start" and entry[1] == "start", "the container does not run `start`")
home = args[args.index("--home") + 1]
check(home == entry[entry.index("--home") + 1], f"--home {home} vs the image's")
sc = spec["securityContext"]
check(sc.get("runAsUser") == uid and sc.get("runAsNonRoot") is True, f"runAsUser {sc.get('runAsUser')} vs image uid {uid}")
csc = c["securityContext"]
check(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False,
      "container securityContext is not read-only/no-escalation")
ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in c["ports"]}
check(ports.get("p2p") == (base, "UDP"), f"p2p port {ports.get('p2p')} vs composenet base {base}/UDP")
check({ports.get("client"), ports.get("ops")} == compose_ports,
      f"client/ops ports {ports.get('client')}, {ports.get('ops')} vs compose replica-0 {sorted(compose_ports)}")
for probe, path in (("readinessProbe", ready_path), ("livenessProbe", health_path)):
    g = c[probe]["httpGet"]
    check(g["path"] == path and g["port"] in ("ops", ports["ops"][0]),
          f"{probe} {g} vs {path} on the ops port")
ann = sts["spec"]["template"]["metadata"]["annotations"]
check(ann.get("prometheus.io/scrape") == "true" and int(ann["prometheus.io/port"]) == ports["ops"][0]
      and ann.get("prometheus.io/path") == "/metrics", f"scrape annotations {ann}")
vm = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
check(vm.get("home") == home, f"the volume claim is mounted at {vm.get('home')}, the home is {home}")
check(f"{home}/config.toml" == mounts["config.toml"], f"config path {home}/config.toml vs compose {mounts['config.toml']}")
claims = [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
check(claims == ["home"], f"volumeClaimTemplates {claims}")
check(sts["spec"]["serviceName"] == docs("services.yaml")[0]["metadata"]["name"]
      and docs("services.yaml")[0]["spec"]["clusterIP"] == "None", "serviceName is not the headless Service")
check(spec["terminationGracePeriodSeconds"] >= 30, "terminationGracePeriodSeconds < compose's 30 s stop_grace_period")
check(c["resources"]["requests"].get("cpu") and c["resources"]["requests"].get("memory"), "no resource requests")

n = sts["spec"]["replicas"]
cm = docs("configmap.yaml")[0]["data"]
genesis = json.loads(cm["genesis.json"])
check(genesis == json.loads((net / "genesis.json").read_text()), "the ConfigMap's genesis is not the testnet's")
check(len(genesis["replicas"]) == n, f"genesis has {len(genesis['replicas'])} replicas, the StatefulSet {n}")
services = {d["metadata"]["name"]: d for d in docs("services.yaml")}
secrets = {d["metadata"]["name"]: d for d in docs("secrets.yaml")}
items = {}
for src in spec["volumes"][0]["projected"]["sources"]:
    for kind in ("configMap", "secret"):
        if kind in src:
            for it in src[kind]["items"]:
                items[it["path"]] = (src[kind]["name"], it["key"])
check(vm.get("provision") == args[args.index("--provision-from") + 1], "--provision-from is not the mounted volume")
headless = docs("services.yaml")[0]
hp = {p["name"]: (p["port"], p["protocol"], p["targetPort"]) for p in headless["spec"]["ports"]}
check(hp.get("p2p", ())[1:] == ("UDP", "p2p") and hp.get("client", ())[1:] == ("UDP", "client")
      and hp.get("ops", ())[1:] == ("TCP", "ops"), f"headless Service ports {hp}")
check(headless["spec"].get("publishNotReadyAddresses") is True,
      "the headless Service must publish not-ready pods (replicas find each other before they are ready)")
ns = headless["metadata"]["namespace"]
for i, r in enumerate(genesis["replicas"]):
    name = f"{sts['metadata']['name']}-{i}.{headless['metadata']['name']}.{ns}.svc"
    check(r["p2p_addr"] == f"{name}:{hp['p2p'][0]}", f"genesis p2p_addr {r['p2p_addr']} vs pod DNS name {name}")
    check(r["client_addr"] == f"{name}:{hp['client'][0]}", f"genesis client_addr {r['client_addr']} vs pod DNS name {name}")
    conf = cm.get(f"replica-{i}.config.toml", "")
    for section, name in (("p2p", "p2p"), ("client", "client"), ("ops", "ops")):
        mm = re.search(rf"^\[{section}\][^\[]*?^listen = \"0\.0\.0\.0:(\d+)\"", conf, re.M | re.S)
        check(mm is not None and int(mm.group(1)) == ports[name][0],
              f"replica-{i} config.toml {section}.listen vs containerPort {ports[name][0]}")
    dd = re.search(r'^data_dir = "([^"]+)"', conf, re.M)
    check(dd is not None and dd.group(1) == "data", f"replica-{i} data_dir is not the home's data/")
    check(items.get(f"replica-{i}/config.toml") == ("pbft-config", f"replica-{i}.config.toml"), f"replica-{i} config not mounted")
    check(items.get(f"replica-{i}/node.key") == (f"replica-{i}-key", "node.key"), f"replica-{i} key not mounted")
    key = secrets.get(f"replica-{i}-key", {}).get("stringData", {}).get("node.key")
    check(key == (net / f"replica-{i}/node.key").read_text().strip(), f"Secret replica-{i}-key is not replica {i}'s key")
check(items.get("genesis.json") == ("pbft-config", "genesis.json"), "genesis not mounted")
pdb = docs("pdb.yaml")[0]
check(pdb["spec"].get("maxUnavailable") == 1, "PDB maxUnavailable is not 1")
check(pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"], "PDB selects other pods")
kz = yaml.safe_load((k8s / "kustomization.yaml").read_text())
check(sorted(kz["resources"]) == sorted(p.name for p in k8s.glob("*.yaml") if p.name != "kustomization.yaml"),
      f"kustomization resources {kz['resources']}")
check(kz["replicas"] == [{"name": sts["metadata"]["name"], "count": n}], f"kustomization replicas {kz['replicas']}")
# The data path: compose's named volume and the image's VOLUME.
data_target = next(volume(v)[1] for v in r0["volumes"] if v.startswith("data-"))
check(re.search(rf"^VOLUME {re.escape(data_target)}$", image_sh, re.M) is not None, f"image VOLUME is not {data_target}")
dd0 = re.search(r'^data_dir = "([^"]+)"', cm["replica-0.config.toml"], re.M)
check(dd0 is not None and f"{home}/{dd0.group(1)}" == data_target, f"data path {home}/{dd0.group(1) if dd0 else '?'} vs compose {data_target}")
for f in fails:
    print(f"  mismatch: {f}", file=sys.stderr)
sys.exit(1 if fails else 0)
PY
}

echo "== validating ${#DOCS[@]} files against the Kubernetes $KUBE_VERSION schemas (strict)"
validate "$K8S" || die "the manifests do not validate"
echo "== checking them against compose.yaml, image.sh and composenet.sh"
consistent "$K8S" || die "the manifests differ from what the Compose network runs"

# Each check must be able to fail: corrupt a copy, expect a failure.
mutant() {
  local what=$1 file=$2 from=$3 to=$4 check=$5 m="$WORK/mutant"
  rm -rf "$m"
  cp -r "$K8S" "$m"
  grep -qF -- "$from" "$m/$file" || die "self-test '$what': '$from' not in $file"
  sed -i "s|$from|$to|" "$m/$file"
  if "$check" "$m" 2>/dev/null; then
    die "self-test '$what': the corrupted manifests passed $check"
  fi
  echo "   caught: $what"
}
echo "== self-test: corrupted manifests must fail"
mutant "another image" statefulset.yaml "image: pbft-ledger:latest" "image: other:1" consistent
mutant "another readiness path" statefulset.yaml "path: /readyz" "path: /ready" consistent
mutant "a port the config does not bind" statefulset.yaml "containerPort: 26002" "containerPort: 26003" consistent
mutant "a Service name genesis does not use" services.yaml "  name: pbft" "  name: pbft-other" consistent
mutant "not-ready pods unpublished" services.yaml "publishNotReadyAddresses: true" "publishNotReadyAddresses: false" consistent
mutant "an unknown field" pdb.yaml "maxUnavailable: 1" "maxUnavailabel: 1" validate
mutant "a wrong type" statefulset.yaml "terminationGracePeriodSeconds: 30" "terminationGracePeriodSeconds: soon" validate
echo "ok: manifests valid (Kubernetes $KUBE_VERSION) and consistent with the Compose network"
