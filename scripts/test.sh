#!/usr/bin/env bash
# Runs every test of switchyard: installs the real test peers it needs (Prometheus, the
# OpenTelemetry Python and JS SDKs), then checks formatting and lints, and runs the unit tests,
# the integration tests in tests/ (which fail, not skip, when a peer is missing), the
# benchmarks once each in test mode, and every fuzz target briefly from the repository's seeds
# (FUZZ_SECONDS each, default 20: four minutes for the twelve targets; 0 skips them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-peers.sh
export SWITCHYARD_REQUIRE_PEERS=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test --no-fail-fast --all-targets"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --no-fail-fast --all-targets 2>&1 | tee "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"

fuzz_seconds="${FUZZ_SECONDS:-20}"
if [[ "$fuzz_seconds" != 0 ]]; then
    echo "== fuzz targets, ${fuzz_seconds} s each (scripts/fuzz.sh)"
    # Without AddressSanitizer here (it only watches unsafe code in dependencies, and doubles
    # the build); scripts/fuzz.sh alone uses it.
    FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}" bash scripts/fuzz.sh "$fuzz_seconds"
fi
