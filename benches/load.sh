#!/usr/bin/env bash
# Runs the load benchmark's standard set: load generator and counting OTLP/gRPC sink in one
# process on core 1, switchyard (release) pinned to core 0, realistic spans (100 per request,
# ~10 attributes, ~407 bytes each). Prints, per run, spans sent and received, switchyard's
# CPU-seconds per million spans and CPU use, throughput, peak RSS and (gRPC) the client's
# latency percentiles. Needs 2 cores and taskset.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v taskset >/dev/null || { echo "load.sh: taskset (util-linux) is needed" >&2; exit 1; }
cargo build --release --benches --bins --quiet
run() {
    echo "== $*"
    taskset -c 1 cargo bench --quiet --bench load -- "$@" 2>/dev/null | grep '^load:'
}
run --protocol grpc --compression gzip            # OTLP/gRPC in, OTLP/gRPC out (gzip, level 1)
run --protocol grpc --compression zstd
run --protocol grpc --compression none
run --protocol grpc --tls                         # the OTLP/gRPC receiver over TLS (issue 15)
run --protocol http --compression gzip            # OTLP/HTTP protobuf in
run --protocol grpc --rate 10000 --spans 200000   # the collector testbed's standard load
run --protocol grpc --queue disk                  # the exporter's queue on disk (fsync per group commit)
run --protocol grpc --sink-rate 100000            # a destination slower than intake: the queue fills
run --protocol grpc --sink-rate 100000 --queue disk
