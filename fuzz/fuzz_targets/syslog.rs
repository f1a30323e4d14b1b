//! Syslog: one message (a UDP datagram) in RFC 5424 or RFC 3164, or a TCP stream with
//! octet-counted or newline framing read in pieces. The first byte picks the protocol (bit 0),
//! datagram or stream (bit 1), the RFC 3164 time zone (bits 2-3) and the frame limit (bits 4-5);
//! the second byte the size of the pieces a stream arrives in, or the clock for a datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;

const ZONES: [&str; 4] = ["UTC", "+05:30", "America/New_York", "Australia/Lord_Howe"];
const LIMITS: [usize; 4] = [1, 64, 2048, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let [flags, second, body @ ..] = data else { return };
    let rfc5424 = flags & 1 == 1;
    if flags & 2 == 0 {
        // Now, within a year or so of the end of 2026, so RFC 3164's missing year is guessed
        // both ways across a new year.
        let now_s = 1_798_675_200 + i64::from(*second) * 200_000 - 25_000_000;
        let zone = ZONES[usize::from(flags >> 2) & 3];
        let _ = switchyard::fuzzing::syslog_message(rfc5424, zone, now_s, body);
    } else {
        let max = LIMITS[usize::from(flags >> 4) & 3];
        let piece = if *second == 0 { usize::MAX } else { usize::from(*second) };
        let _ = switchyard::fuzzing::syslog_tcp(rfc5424, max, piece, body);
    }
});
