//! Jaeger api_v2 `PostSpansRequest` protobuf (the gRPC collector), translated to OTLP.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = switchyard::fuzzing::jaeger_proto(data);
});
