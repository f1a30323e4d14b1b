//! The `loadbalancing` exporter's parts (issue 19, in progress): the consistent-hash ring that
//! places backends as the collector's does, and the split of an encoded request by backend.
//! Not registered as a component yet.

pub mod ring;
pub mod split;
