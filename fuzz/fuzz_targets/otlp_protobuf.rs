//! OTLP protobuf requests: the receiver's allocation-free scan and the full prost decode must
//! agree on success or failure and on the item count (the facade asserts it). The first byte
//! picks the signal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::pipeline::Signal;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let signal = Signal::ALL[usize::from(*first) % 3];
    let _ = switchyard::fuzzing::otlp_protobuf(signal, body);
});
