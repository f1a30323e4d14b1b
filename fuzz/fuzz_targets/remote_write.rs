//! Prometheus remote-write bodies, 1.0 or 2.0 (first byte, bit 0). With bit 1 set the rest is
//! the snappy block as sent; otherwise it is the protobuf, compressed here first so that the
//! fuzzer reaches the message decoder without having to learn snappy.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The receiver's default is 32 MiB; smaller keeps the fuzzer's memory in bounds.
const LIMIT: usize = 4 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let v2 = first & 1 == 1;
    if first & 2 == 2 {
        let _ = switchyard::fuzzing::remote_write(v2, body, LIMIT);
    } else if let Ok(compressed) = snap::raw::Encoder::new().compress_vec(body) {
        let _ = switchyard::fuzzing::remote_write(v2, &compressed, LIMIT);
    }
});
