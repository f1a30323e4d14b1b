//! Prometheus expositions as a scrape reads them (text 0.0.4, or OpenMetrics when the first
//! byte's low bit is set), translated to OTLP twice (start times and staleness).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let _ = switchyard::fuzzing::prometheus_exposition(first & 1 == 1, body);
});
