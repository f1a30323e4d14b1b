//! Zipkin v2 protobuf `ListOfSpans`, translated to OTLP. The first byte's low bit turns on
//! `parse_string_tags`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let _ = switchyard::fuzzing::zipkin(true, first & 1 == 1, body);
});
