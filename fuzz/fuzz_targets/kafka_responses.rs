//! The Kafka consumer-group responses switchyard reads itself (FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, OffsetFetch, OffsetCommit) and the member subscriptions
//! and assignments inside them. The first byte picks the response.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((api, body)) = data.split_first() else { return };
    let _ = switchyard::fuzzing::kafka_response(*api, body);
});
