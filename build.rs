//! Compiles the `.proto` files in `proto/` (protocols that `opentelemetry-proto` lacks) with
//! protox, a protobuf compiler in Rust, so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/jaeger/api_v2.proto",
        "proto/zipkin/zipkin.proto",
        "proto/prometheus/remote.proto",
        "proto/prometheus/write_v2.proto",
        "proto/loki/push.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
