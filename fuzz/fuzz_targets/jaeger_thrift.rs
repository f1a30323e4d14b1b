//! Jaeger Thrift: agent datagrams (compact, binary) and collector HTTP bodies (a binary
//! `Batch`), translated to OTLP. The first byte picks which.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let agent = match first % 3 {
        0 => Some(true),
        1 => Some(false),
        _ => None,
    };
    let _ = switchyard::fuzzing::jaeger_thrift(agent, body);
});
