//! Fluent Forward connections: msgpack frames found by the scanner (which must agree with the
//! msgpack decoder on where each ends), decoded as Message, Forward, PackedForward and
//! CompressedPackedForward. The first byte picks the size of the pieces the stream arrives in
//! (0: all at once), the second the message size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 4] = [16, 512, 64 << 10, 8 << 20];

fuzz_target!(|data: &[u8]| {
    let [piece, limit, body @ ..] = data else { return };
    let piece = if *piece == 0 { usize::MAX } else { usize::from(*piece) };
    let limit = LIMITS[usize::from(*limit) & 3];
    let _ = switchyard::fuzzing::fluent_forward(limit, piece, body);
});
