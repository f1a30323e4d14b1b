#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 30), one after the other, and
# prints one line per target. Fails when any target finds a crash, a timeout or a memory blowup;
# the input that did it is kept under fuzz/artifacts/<target>/ (reproduce with
# `cargo +nightly fuzz run <target> <file>` in fuzz/).
#
# Each run starts from the seeds in fuzz/corpus/<target>/ only, and writes what it discovers to
# a scratch directory, so the repository's corpus is never changed. Set FUZZ_KEEP_CORPUS=<dir>
# to keep the discovered inputs in <dir>/<target>/ (and to start from them next time), and
# FUZZ_TARGETS="a b" to run only some targets, FUZZ_SANITIZER=none to build without
# AddressSanitizer (faster to build and run; it matters only for the unsafe code in dependencies).
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

seconds="${1:-30}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    echo "== installing the $toolchain toolchain (cargo-fuzz needs it)"
    rustup toolchain install "$toolchain" --profile minimal ||
        { echo "fuzz.sh: the $toolchain toolchain is missing and cannot be installed" >&2; exit 1; }
fi
if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Longest input per target: room for realistic requests without slowing the search down.
max_len() {
    case "$1" in
        config_yaml) echo 4096 ;;
        otlp_protobuf | otlp_json | remote_write | fluent_forward) echo 16384 ;;
        *) echo 8192 ;;
    esac
}

targets="${FUZZ_TARGETS:-$(cargo "+$toolchain" fuzz list)}"
# Optimised, with overflow checks (an arithmetic overflow is a finding too). The runs below use
# the same options, or cargo fuzz would build again.
build=(-O --debug-assertions --sanitizer "${FUZZ_SANITIZER:-address}")

echo "== cargo fuzz build ${build[*]}"
start=$(date +%s)
nice -n 10 cargo "+$toolchain" fuzz build "${build[@]}"
echo "fuzz build: $(($(date +%s) - start)) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=0
summary=()
for t in $targets; do
    work="$scratch/$t"
    if [[ -n "${FUZZ_KEEP_CORPUS:-}" ]]; then
        work="$FUZZ_KEEP_CORPUS/$t"
    fi
    mkdir -p "$work" "artifacts/$t"
    log="$scratch/$t.log"
    echo "== $t: ${seconds} s"
    status=0
    nice -n 10 cargo "+$toolchain" fuzz run "${build[@]}" "$t" "$work" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    corpus=$(find "$work" -type f | wc -l)
    if [[ $status -eq 0 ]]; then
        line="$t: ok, ${seconds} s, ${runs:-?} runs, coverage ${cov:-?}, ${corpus} inputs"
    else
        failed=1
        found=$(grep -Eo 'Test unit written to [^ ]+' "$log" | tail -1 | cut -d' ' -f5)
        kind=$(grep -Eo "panicked at [^ ]+|ERROR: libFuzzer: [a-z-]+" "$log" | head -1)
        line="$t: FAILED (${kind:-exit $status}) ${found:+input $found}"
        tail -40 "$log"
    fi
    echo "$line"
    summary+=("$line")
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit $failed
