//! `retry_on_failure`: how an exporter's queue retries a batch after a retryable failure —
//! exponential backoff with jitter, at least as long as the backend asked (Retry-After, gRPC
//! RetryInfo), giving up after `max_elapsed_time`.

use crate::config::deserialize_duration;
use serde::Deserialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    /// Wait before the first retry.
    #[serde(deserialize_with = "deserialize_duration")]
    pub initial_interval: Duration,
    /// Each wait is drawn from ±this fraction around the current interval.
    pub randomization_factor: f64,
    /// The interval grows by this factor after every retry...
    pub multiplier: f64,
    /// ...up to this.
    #[serde(deserialize_with = "deserialize_duration")]
    pub max_interval: Duration,
    /// Give up once this much time has passed since the first attempt; 0 never gives up.
    #[serde(deserialize_with = "deserialize_duration")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

impl RetryConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(0.0..1.0).contains(&self.randomization_factor) {
            return Err(("randomization_factor".into(), "must be at least 0 and below 1".into()));
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err(("multiplier".into(), "must be at least 1".into()));
        }
        if self.initial_interval.is_zero() {
            return Err(("initial_interval".into(), "must be greater than 0".into()));
        }
        if self.max_interval < self.initial_interval {
            return Err(("max_interval".into(), "must be at least initial_interval".into()));
        }
        Ok(())
    }
}

/// The retry schedule of one batch.
pub struct Backoff<'a> {
    cfg: &'a RetryConfig,
    interval: Duration,
    started: Instant,
    rng: u64,
}

impl<'a> Backoff<'a> {
    pub fn new(cfg: &'a RetryConfig) -> Backoff<'a> {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Backoff { cfg, interval: cfg.initial_interval, started: Instant::now(), rng: seed | 1 }
    }

    /// How long to wait before the next attempt, given the backend's own hint; `None` when
    /// retrying is off or the time is up.
    pub fn next_delay(&mut self, hint: Option<Duration>) -> Option<Duration> {
        if !self.cfg.enabled {
            return None;
        }
        let jittered = self.jitter(self.interval);
        self.interval = self.interval.mul_f64(self.cfg.multiplier).min(self.cfg.max_interval);
        // A backend's hint is a floor, but never a reason to wait past the retry window (or an
        // hour when there is none): a bogus Retry-After must not park the queue for ever.
        let limit = self.cfg.max_elapsed_time;
        let cap = if limit.is_zero() { Duration::from_secs(3600) } else { limit };
        let delay = hint.map_or(jittered, |h| h.max(jittered)).min(cap);
        if !limit.is_zero() && self.started.elapsed().saturating_add(delay) > limit {
            return None;
        }
        Some(delay)
    }

    fn jitter(&mut self, d: Duration) -> Duration {
        // xorshift: jitter needs spread, not cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let r = self.cfg.randomization_factor;
        d.mul_f64(1.0 - r + 2.0 * r * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RetryConfig {
        RetryConfig {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_millis(400),
            max_elapsed_time: Duration::from_secs(3),
            ..Default::default()
        }
    }

    #[test]
    fn grows_with_jitter_up_to_the_cap() {
        let c = cfg();
        let mut b = Backoff::new(&c);
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay(None).unwrap()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(150), "{delays:?}");
        for d in &delays {
            assert!(*d <= Duration::from_millis(600), "jitter stays within ±50% of the 400ms cap: {delays:?}");
        }
        assert!(delays[7] >= Duration::from_millis(200), "the interval grew: {delays:?}");
    }

    #[test]
    fn the_backend_hint_is_a_floor() {
        let c = cfg();
        let mut b = Backoff::new(&c);
        assert!(b.next_delay(Some(Duration::from_secs(2))).unwrap() >= Duration::from_secs(2));
    }

    #[test]
    fn absurd_hints_neither_overflow_nor_park_the_queue() {
        let c = cfg();
        assert_eq!(Backoff::new(&c).next_delay(Some(Duration::MAX)), None, "beyond the window: give up");
        let forever = RetryConfig { max_elapsed_time: Duration::ZERO, ..cfg() };
        assert_eq!(Backoff::new(&forever).next_delay(Some(Duration::MAX)), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn gives_up_after_max_elapsed_time_or_when_disabled() {
        let c = cfg();
        let mut b = Backoff::new(&c);
        assert_eq!(b.next_delay(Some(Duration::from_secs(10))), None);
        let off = RetryConfig { enabled: false, ..cfg() };
        assert_eq!(Backoff::new(&off).next_delay(None), None);
    }
}
