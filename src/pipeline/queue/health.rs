//! An exporter's delivery state as an operator sees it: up, or failing since when and why.
//! An outage is one warning when it starts ("failing since 12:01:05 (…); 340 items queued;
//! retrying"), a reminder every five minutes while it lasts, and one line when deliveries
//! succeed again (with how long it lasted and what it cost) — not a line per retry. The
//! `switchyard_exporter_up` gauge follows the state. Data given up on is counted once in
//! `otelcol_exporter_send_failed_*` (as the collector counts it: after the retries) and in
//! `switchyard_exporter_dropped_*`; every retry in `switchyard_exporter_retries_total`. A
//! permanent error (a refused request, not an outage) drops its batch without changing the
//! state. While failing, a delivery ends the outage only once no attempt has failed for
//! `QUIET` (one good consumer among failing ones does not make it flap).

use crate::pipeline::Signal;
use crate::telemetry::metrics::Metrics;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a health check says of an exporter (the collector's component statuses).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Ok,
    /// Its attempts fail and are retried.
    Recoverable {
        since_wall: SystemTime,
        lasted: Duration,
        reason: String,
    },
    /// It gave data up (a permanent error, or retries exhausted) recently.
    Permanent {
        since_wall: SystemTime,
        reason: String,
    },
}

/// How long attempts must have stopped failing before a delivery ends an outage.
const QUIET: Duration = Duration::from_secs(2);

/// How often a lasting outage is logged again.
const REMIND_EVERY: Duration = Duration::from_secs(300);

pub struct ExporterHealth {
    name: Arc<str>,
    /// What the queue size counts (`bytes`, `items`, `requests`).
    unit: &'static str,
    telemetry: Arc<Metrics>,
    state: Mutex<State>,
    /// The last time data was given up on, and why.
    dropped: Mutex<Option<(SystemTime, Instant, String)>>,
}

enum State {
    Up,
    Failing {
        /// Wall-clock time it started, for the log; and the instant, for its length.
        since_wall: SystemTime,
        since: Instant,
        reason: String,
        attempts: u64,
        reminded: Instant,
        last_failure: Instant,
        last_success: Option<Instant>,
    },
}

/// `HH:MM:SS` (UTC) of a wall-clock time.
fn clock(t: SystemTime) -> String {
    let ns = t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let (_, _, _, h, m, s, _) = crate::timefmt::civil(ns);
    format!("{h:02}:{m:02}:{s:02}Z")
}

impl ExporterHealth {
    pub fn new(name: Arc<str>, sizer: crate::pipeline::admission::Sizer, telemetry: Arc<Metrics>) -> ExporterHealth {
        use crate::pipeline::admission::Sizer;
        telemetry.exporter_up.with_label_values(&[&name]).set(1);
        let unit = match sizer {
            Sizer::Bytes => "bytes",
            Sizer::Items => "items",
            Sizer::Requests => "requests",
        };
        ExporterHealth { name, unit, telemetry, state: Mutex::new(State::Up), dropped: Mutex::new(None) }
    }

    /// What waits in the exporter's queue now, with its unit (`2.1 MB`, `340 items`).
    fn queued(&self) -> String {
        let n = self.telemetry.exporter_queue_size.with_label_values(&[&self.name]).get();
        match self.unit {
            "bytes" if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
            "bytes" if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
            unit => format!("{n} {unit}"),
        }
    }

    /// One failed attempt at `items` of `signal` that will be tried again (an outage).
    pub fn failed(&self, signal: Signal, items: u64, reason: &str) {
        let t = &self.telemetry;
        t.exporter_retries.with_label_values(&[&self.name]).inc();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *state {
            State::Up => {
                let now = SystemTime::now();
                tracing::warn!(exporter = %self.name, %signal, queued = self.queued(), %reason,
                    "{}: failing since {} ({reason}); {} queued; {}",
                    self.name, clock(now), self.queued(),
                    "retrying until it recovers");
                t.exporter_up.with_label_values(&[&self.name]).set(0);
                *state = State::Failing {
                    since_wall: now,
                    since: Instant::now(),
                    reason: reason.to_string(),
                    attempts: 1,
                    reminded: Instant::now(),
                    last_failure: Instant::now(),
                    last_success: None,
                };
            }
            State::Failing { since_wall, since, reason: last, attempts, reminded, last_failure, .. } => {
                *attempts += 1;
                *last_failure = Instant::now();
                if reminded.elapsed() >= REMIND_EVERY {
                    *reminded = Instant::now();
                    tracing::warn!(exporter = %self.name, %signal, attempts = *attempts, queued = self.queued(), %reason,
                        "{}: still failing since {} ({:?}; {} attempts); {} queued",
                        self.name, clock(*since_wall), since.elapsed(), attempts, self.queued());
                } else {
                    tracing::debug!(exporter = %self.name, %signal, items, %reason, "export attempt failed; retrying");
                }
                *last = reason.to_string();
            }
        }
    }

    /// `items` of `signal` delivered.
    pub fn delivered(&self, signal: Signal, items: u64) {
        self.telemetry.exporter_sent[signal.index()].with_label_values(&[&self.name]).inc_by(items);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let State::Failing { last_success, .. } = &mut *state {
            *last_success = Some(Instant::now());
        }
        self.settle(&mut state);
        if matches!(*state, State::Up) {
            // Set at every delivery: a retired instance of the same name cannot leave it at 0.
            self.telemetry.exporter_up.with_label_values(&[&self.name]).set(1);
        }
    }

    /// Ends an outage once a delivery has succeeded and no attempt has failed for `QUIET`.
    fn settle(&self, state: &mut State) {
        if let State::Failing { since, reason, attempts, last_failure, last_success, .. } = &*state
            && last_success.is_some_and(|s| s > *last_failure)
            && last_failure.elapsed() >= QUIET
        {
            tracing::info!(exporter = %self.name, outage = ?since.elapsed(), failed_attempts = *attempts, last_error = %reason,
                "{}: delivering again after {:.0?} of failures ({} failed attempts); {} queued",
                self.name, since.elapsed(), attempts, self.queued());
            self.telemetry.exporter_up.with_label_values(&[&self.name]).set(1);
            *state = State::Up;
        }
    }

    /// `items` of `signal` given up on (a permanent error, or retries exhausted).
    pub fn dropped(&self, signal: Signal, items: u64, reason: &str) {
        self.telemetry.exporter_send_failed[signal.index()].with_label_values(&[&self.name]).inc_by(items);
        self.telemetry.exporter_dropped[signal.index()].with_label_values(&[&self.name]).inc_by(items);
        tracing::error!(exporter = %self.name, %signal, items, %reason, "export failed; data dropped");
        *self.dropped.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((SystemTime::now(), Instant::now(), reason.to_string()));
    }

    /// The state a health check reports: failing now (a recoverable error: retried), or
    /// having given data up within `window` (a permanent error), with since when and why.
    pub fn condition(&self, window: Duration) -> Condition {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.settle(&mut state);
        if let State::Failing { since_wall, since, reason, .. } = &*state {
            return Condition::Recoverable { since_wall: *since_wall, lasted: since.elapsed(), reason: reason.clone() };
        }
        match &*self.dropped.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((wall, at, reason)) if at.elapsed() < window => {
                Condition::Permanent { since_wall: *wall, reason: reason.clone() }
            }
            _ => Condition::Ok,
        }
    }

    /// Whether the exporter is failing now, and since when and why (for health and status).
    pub fn failing(&self) -> Option<(SystemTime, String)> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.settle(&mut state);
        match &*state {
            State::Up => None,
            State::Failing { since_wall, reason, .. } => Some((*since_wall, reason.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_one_state_change_and_one_recovery() {
        let telemetry = Arc::new(Metrics::default());
        let h = ExporterHealth::new("otlp/jaeger".into(), crate::pipeline::admission::Sizer::Items, telemetry.clone());
        let up = || telemetry.exporter_up.with_label_values(&["otlp/jaeger"]).get();
        assert_eq!(up(), 1);
        for _ in 0..5 {
            h.failed(Signal::Traces, 10, "connection refused");
        }
        assert_eq!(up(), 0);
        assert_eq!(
            telemetry.exporter_send_failed[0].with_label_values(&["otlp/jaeger"]).get(),
            0,
            "retried, not failed"
        );
        assert_eq!(telemetry.exporter_retries.with_label_values(&["otlp/jaeger"]).get(), 5);
        assert!(h.failing().is_some_and(|(_, r)| r == "connection refused"));
        h.delivered(Signal::Traces, 10);
        assert!(h.failing().is_some(), "a delivery right after a failure does not end the outage");
        if let State::Failing { last_failure, .. } = &mut *h.state.lock().unwrap() {
            *last_failure -= QUIET;
        }
        h.delivered(Signal::Traces, 10);
        assert_eq!(up(), 1);
        assert!(h.failing().is_none());
        h.dropped(Signal::Traces, 3, "permanent error: HTTP 400");
        assert_eq!(telemetry.exporter_dropped[0].with_label_values(&["otlp/jaeger"]).get(), 3);
        assert_eq!(telemetry.exporter_send_failed[0].with_label_values(&["otlp/jaeger"]).get(), 3);
        assert!(h.failing().is_none(), "a permanent error is not an outage");
        assert!(matches!(h.condition(Duration::from_secs(60)), Condition::Permanent { .. }));
    }
}
