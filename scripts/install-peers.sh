#!/usr/bin/env bash
# Installs the real test peers used by switchyard's integration tests (tests/):
#   - prometheus + promtool, prometheus-node-exporter and victoria-metrics (Debian apt packages;
#     a service a package starts on its default port is stopped and disabled again)
#   - tansu 0.6.0 (a Kafka-compatible broker, cargo install from crates.io into target/peers/tansu)
#   - clickhouse-server 18.16 and rsyslog 8.2302 with rsyslog-gnutls (Debian apt packages; the tests run their own
#     instances on loopback), logger (bsdutils)
#   - chromium (Debian apt package; headless, for the CORS test in a real browser)
#   - kubectl 1.20 with its built-in kustomize (Debian `kubernetes-client`, unpacked into
#     target/peers/kubernetes-client: another package's kubectl may own /usr/bin/kubectl), for
#     tests/deploy.rs, which renders deploy/kubernetes with it
#   - OpenTelemetry Python SDK + OTLP exporters, the legacy Python jaeger-client and
#     kubernetes-validate (Kubernetes schemas, offline), in target/peers/venv (pinned in
#     tests/peers/python/requirements.txt)
#   - OpenTelemetry Python SDK 1.21 + Jaeger Thrift and Zipkin v2 exporters in
#     target/peers/venv-otel121 (pinned in tests/peers/python-otel121/requirements.txt)
#   - OpenTelemetry JS SDK + OTLP/HTTP exporters, and the legacy Node jaeger-client,
#     in tests/peers/node/node_modules (pinned in tests/peers/node/package.json + package-lock.json)
# Idempotent and fast when everything is already installed; safe to run from
# several test processes at once (serialised with flock).
# Env: PEERS_PYTHON=python interpreter for the venvs (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PEERS_DIR="$ROOT/target/peers"
VENV="$PEERS_DIR/venv"
PY_REQ="$ROOT/tests/peers/python/requirements.txt"
VENV_OTEL121="$PEERS_DIR/venv-otel121"
PY_OTEL121_REQ="$ROOT/tests/peers/python-otel121/requirements.txt"
NODE_DIR="$ROOT/tests/peers/node"
PYTHON="${PEERS_PYTHON:-python3}"

log() { echo "install-peers: $*" >&2; }
die() { echo "install-peers: error: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

APT_UPDATED=0
apt_update_once() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install manually: $*"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        $SUDO apt-get update -qq
        APT_UPDATED=1
    fi
}
apt_install() {
    apt_update_once "$@"
    log "apt-get install $*"
    # No service starts while the packages install (Debian's policy-rc.d: 101 = not allowed), so
    # that nothing takes a port or runs as a daemon; a policy the machine has already is kept.
    # Ours carries a marker line, so that one left behind by an interrupted run is removed too.
    local policy=/usr/sbin/policy-rc.d made=0
    if [ -e "$policy" ] && grep -q '^# switchyard install-peers' "$policy" 2>/dev/null; then
        $SUDO rm -f "$policy"
    fi
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# switchyard install-peers: no service starts while test peers install\nexit 101\n' \
            | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && made=1
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
    if [ "$made" -eq 1 ]; then
        $SUDO rm -f "$policy"
        trap - EXIT
    fi
}

mkdir -p "$PEERS_DIR"
exec 9>"$PEERS_DIR/.install.lock"
flock 9

# ---------------------------------------------------------------- prometheus family
# stop_service NAME: stops and disables the service that the package NAME, just installed, may
# have started on its default port (prometheus :9090, prometheus-node-exporter :9100,
# victoria-metrics :8428); the tests run their own instances on free loopback ports. With systemd
# running, the postinst starts the unit; without it, invoke-rc.d starts the init script only when
# the runlevel is known and no policy-rc.d forbids it (in a plain container it starts nothing).
stop_service() {
    local name="$1"
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        $SUDO systemctl disable --now "$name.service" >/dev/null 2>&1 || true
    else
        if [ -x "/etc/init.d/$name" ]; then
            $SUDO "/etc/init.d/$name" stop >/dev/null 2>&1 || true
        fi
        if command -v update-rc.d >/dev/null 2>&1; then
            $SUDO update-rc.d "$name" disable >/dev/null 2>&1 || true
        fi
    fi
}
PROM_PKGS=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    PROM_PKGS+=(prometheus)
fi
[ -x /usr/bin/prometheus-node-exporter ] || PROM_PKGS+=(prometheus-node-exporter)
[ -x /usr/bin/victoria-metrics ] || PROM_PKGS+=(victoria-metrics)
if [ "${#PROM_PKGS[@]}" -gt 0 ]; then
    apt_install "${PROM_PKGS[@]}"
    for pkg in "${PROM_PKGS[@]}"; do
        log "stopping and disabling the $pkg service, if any"
        stop_service "$pkg"
    done
fi

# ---------------------------------------------------------------- logger and rsyslog (syslog senders)
# util-linux's logger (Debian package bsdutils), usually present already; rsyslog 8.2302 as a
# forwarding relay (the tests start their own rsyslogd with their own config; no service runs).
[ -x /usr/bin/logger ] || apt_install bsdutils
if [ ! -x /usr/sbin/rsyslogd ]; then
    # Installed for the tests (it never started): kept from starting at boot too.
    apt_install rsyslog rsyslog-gnutls
    stop_service rsyslog
elif ! dpkg-query -W -f='${Status}' rsyslog-gnutls 2>/dev/null | grep -q 'install ok installed'; then
    # The machine's own rsyslog is left as it is: only the TLS plugin is added.
    apt_install rsyslog-gnutls
fi

# ---------------------------------------------------------------- headless Chromium (a real browser)
# tests/cors_browser.rs loads a page that sends OTLP/JSON with fetch across origins.
[ -x /usr/bin/chromium ] || apt_install chromium

# ---------------------------------------------------------------- kubectl 1.20 (kustomize v2.0.3)
# tests/deploy.rs renders deploy/kubernetes with the oldest kustomize the manifests support: the
# one built into Debian's kubectl 1.20. Unpacked (dpkg-deb -x) rather than installed, so that a
# kubectl the machine already has (another package's /usr/bin/kubectl) is neither replaced nor
# in the way.
KUBECTL="$PEERS_DIR/kubernetes-client/usr/bin/kubectl"
if ! "$KUBECTL" version --client 2>/dev/null | grep -q 'GitVersion:"v1\.20\.'; then
    command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found; kubectl comes from Debian's kubernetes-client"
    apt_update_once kubernetes-client
    log "apt-get download kubernetes-client (unpacked into ${PEERS_DIR#"$ROOT/"}/kubernetes-client)"
    deb_dir="$(mktemp -d)"
    # apt downloads as the user _apt when it can write there (else it warns and downloads as us).
    chown _apt "$deb_dir" 2>/dev/null || true
    (cd "$deb_dir" && apt-get download -qq kubernetes-client >&2)
    rm -rf "$PEERS_DIR/kubernetes-client"
    dpkg-deb -x "$deb_dir"/kubernetes-client_*.deb "$PEERS_DIR/kubernetes-client"
    rm -rf "$deb_dir"
    "$KUBECTL" version --client >/dev/null || die "the unpacked kubectl does not run"
fi

# ---------------------------------------------------------------- ClickHouse 18.16 (log store)
# The tests start their own clickhouse-server with a config in a scratch directory.
if [ ! -x /usr/sbin/clickhouse-server ]; then
    apt_install clickhouse-server clickhouse-client
    stop_service clickhouse-server
fi

# ---------------------------------------------------------------- tansu (Kafka-compatible broker)
# Built from crates.io into target/peers/tansu (the tests run it with memory storage on
# loopback). About 10 minutes on 2 cores the first time; kept across runs in target/.
TANSU_VERSION=0.6.0
TANSU="$ROOT/target/peers/tansu/bin/tansu"
if [ ! -x "$TANSU" ] || ! "$TANSU" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    log "cargo install tansu $TANSU_VERSION --features dynostore (first time: ~10 min; cargo shows its progress)"
    CARGO_TARGET_DIR="$ROOT/target/peers/tansu-build" cargo install tansu --version "$TANSU_VERSION" --locked \
        --features dynostore --root "$ROOT/target/peers/tansu" >&2
fi

# ---------------------------------------------------------------- python venvs
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PEERS_PYTHON)"
# ensure_venv DIR REQUIREMENTS: (re)creates the venv DIR and installs REQUIREMENTS into it when
# the SHA-256 of REQUIREMENTS differs from the one stored in DIR/.switchyard-requirements.sha256.
# Wheels only (--only-binary=:all:); a requirements file may exempt named sdist-only packages
# with its own `--no-binary NAME,...` line.
ensure_venv() {
    local venv="$1" req="$2"
    local marker="$venv/.switchyard-requirements.sha256"
    local want_hash have_hash
    want_hash="$(sha256sum "$req" | cut -d' ' -f1)"
    have_hash="$(cat "$marker" 2>/dev/null || true)"
    if [ "$want_hash" != "$have_hash" ] || ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
        "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
            || die "$PYTHON is $("$PYTHON" -V 2>&1); the pinned OpenTelemetry SDK needs Python >= 3.10"
        if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
            apt_install python3-venv
        fi
        log "creating $venv"
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv"
        log "pip install -r ${req#"$ROOT/"}"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
            --only-binary=:all: -r "$req" >&2
        echo "$want_hash" >"$marker"
    fi
}
ensure_venv "$VENV" "$PY_REQ"
ensure_venv "$VENV_OTEL121" "$PY_OTEL121_REQ"

# ---------------------------------------------------------------- node modules
command -v node >/dev/null 2>&1 || die "node not found (need Node.js >= 20.6)"
command -v npm >/dev/null 2>&1 || die "npm not found"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=6)||(a===18&&b>=19)?0:1)' \
    || die "node $(node --version) is too old; need >= 20.6 (or 18.19+)"
# npm writes node_modules/.package-lock.json on every install; use it as stamp.
if [ ! -f "$NODE_DIR/node_modules/.package-lock.json" ] \
    || [ "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ] \
    || [ "$NODE_DIR/package.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
    log "npm ci in ${NODE_DIR#"$ROOT/"}"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
    touch "$NODE_DIR/node_modules/.package-lock.json"
fi

# ---------------------------------------------------------------- versions
prom_v="$(prometheus --version 2>&1 | head -n1 | sed -n 's/.*version \([^ ]*\).*/\1/p')"
promtool_v="$(promtool --version 2>&1 | head -n1 | sed -n 's/.*version \([^ ]*\).*/\1/p')"
node_exporter_v="$(prometheus-node-exporter --version 2>&1 | head -n1 | sed -n 's/.*version \([^ ]*\).*/\1/p')"
# This build's -version prints nothing; the package version is the upstream one plus +ds1-N.
vm_v="$(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null | sed 's/+.*//')"
py_v="$("$VENV/bin/python" -c 'import importlib.metadata as m, platform; print(m.version("opentelemetry-sdk"), "(exporters", m.version("opentelemetry-exporter-otlp-proto-grpc") + ",", "python", platform.python_version() + ")")')"
jaeger_py_v="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("jaeger-client"), "(thrift", m.version("thrift") + ", tornado", m.version("tornado") + ", opentracing", m.version("opentracing") + ")")')"
otel121_v="$("$VENV_OTEL121/bin/python" -c 'import importlib.metadata as m, platform; print(m.version("opentelemetry-sdk"), "(exporter-jaeger-thrift", m.version("opentelemetry-exporter-jaeger-thrift") + ", exporter-zipkin-json", m.version("opentelemetry-exporter-zipkin-json") + ", exporter-zipkin-proto-http", m.version("opentelemetry-exporter-zipkin-proto-http") + ", thrift", m.version("thrift") + ", python", platform.python_version() + ")")')"
node_jaeger_v="$(cd "$NODE_DIR" && node -e 'const v = (p) => require("./node_modules/" + p + "/package.json").version;
console.log(v("jaeger-client") + " (thriftrw " + v("thriftrw") + ", opentracing " + v("opentracing") + ")");')"
kubectl_v="$("$KUBECTL" version --client 2>/dev/null | sed -n 's/.*GitVersion:"\([^"]*\)".*/\1/p')"
kv_v="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))')"
node_v="$(cd "$NODE_DIR" && node -e '
const v = (p) => require("./node_modules/" + p + "/package.json").version;
console.log("sdk-trace-base " + v("@opentelemetry/sdk-trace-base") + ", sdk-metrics " + v("@opentelemetry/sdk-metrics") +
  ", sdk-logs " + v("@opentelemetry/sdk-logs") + ", otlp-http exporters " + v("@opentelemetry/exporter-trace-otlp-http") +
  " (node " + process.version + ")");')"

echo "prometheus $prom_v ($(command -v prometheus))"
echo "promtool $promtool_v ($(command -v promtool))"
echo "prometheus-node-exporter $node_exporter_v (/usr/bin/prometheus-node-exporter)"
echo "victoria-metrics $vm_v (/usr/bin/victoria-metrics)"
echo "clickhouse-server $(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null) (/usr/sbin/clickhouse-server)"
echo "tansu $("$TANSU" --version 2>/dev/null | head -n1) ($TANSU)"
echo "rsyslog $(dpkg-query -W -f='${Version}' rsyslog 2>/dev/null) (/usr/sbin/rsyslogd)"
echo "python opentelemetry-sdk $py_v [${VENV#"$ROOT/"}/bin/python]"
echo "python jaeger-client $jaeger_py_v [${VENV#"$ROOT/"}/bin/python]"
echo "kubectl $kubectl_v, kustomize built in ($KUBECTL)"
echo "python kubernetes-validate $kv_v [${VENV#"$ROOT/"}/bin/kubernetes-validate]"
echo "python opentelemetry-sdk $otel121_v [${VENV_OTEL121#"$ROOT/"}/bin/python]"
echo "node @opentelemetry $node_v [${NODE_DIR#"$ROOT/"}]"
echo "node jaeger-client $node_jaeger_v [${NODE_DIR#"$ROOT/"}]"
