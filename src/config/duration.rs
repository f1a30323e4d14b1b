//! Durations in configuration, written as the collector writes them: `200ms`, `5s`, `1m30s`.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

pub fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// For `Option<Duration>` fields (with `#[serde(default)]`): absent is `None`.
pub fn deserialize_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    deserialize_duration(d).map(Some)
}

pub fn serialize_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Parses `200ms`, `5s`, `1h`; a bare `0` is zero.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t)
        .map_err(|_| format!("invalid duration \"{text}\": expected a number with a unit, such as 200ms, 5s or 1m"))
}
