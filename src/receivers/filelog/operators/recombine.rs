//! `recombine`: joins consecutive entries of one source (`source_identifier`) into one — a
//! stack trace written as many lines — starting a new entry where `is_first_entry` holds or
//! ending one where `is_last_entry` holds. The joined text of `combine_field` goes into the
//! oldest (or, with `overwrite_with: newest`, the newest) entry. Entries wait at most
//! `force_flush_period`; their file offsets are held back from the checkpoint meanwhile.

use super::expr::Expr;
use super::field::Field;
use super::{Invalid, Record};
use crate::attributes::string;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

super::operator_config!(Config {
    is_first_entry: Option<String>,
    is_last_entry: Option<String>,
    combine_field: Option<String>,
    combine_with: Option<String>,
    source_identifier: Option<String>,
    overwrite_with: Option<String>,
    max_batch_size: Option<usize>,
    max_unmatched_batch_size: Option<usize>,
    max_sources: Option<usize>,
    max_log_size: Option<serde_json::Value>,
    force_flush_period: Option<String>,
});

const DEFAULT_SOURCE: &str = "DefaultSourceIdentifier";

impl Config {
    pub fn build(&self, key: &str) -> Result<Recombine, Invalid> {
        let at = |k: &str| format!("{key}.{k}");
        let (expr, first) = match (&self.is_first_entry, &self.is_last_entry) {
            (Some(e), None) => (Expr::parse(e).map_err(|m| (at("is_first_entry"), m))?, true),
            (None, Some(e)) => (Expr::parse(e).map_err(|m| (at("is_last_entry"), m))?, false),
            _ => return Err((key.to_string(), "set exactly one of is_first_entry and is_last_entry".into())),
        };
        let field = |v: &Option<String>, k: &str| {
            let s = v.as_deref().ok_or_else(|| (at(k), "required".to_string()))?;
            Field::parse(s).map_err(|e| (at(k), e))
        };
        let newest = match self.overwrite_with.as_deref() {
            None | Some("oldest") => false,
            Some("newest") => true,
            Some(other) => return Err((at("overwrite_with"), format!("\"{other}\": use oldest or newest"))),
        };
        let max_log_size = match &self.max_log_size {
            None => 0,
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().ok_or_else(|| (at("max_log_size"), "a size".into()))? as usize
            }
            Some(serde_json::Value::String(s)) => {
                super::super::config::parse_byte_size(s).map_err(|e| (at("max_log_size"), e))? as usize
            }
            Some(_) => return Err((at("max_log_size"), "a size such as 1MiB".into())),
        };
        let force_flush_period = match &self.force_flush_period {
            None => Duration::from_secs(5),
            Some(s) => crate::config::parse_duration(s).map_err(|e| (at("force_flush_period"), e))?,
        };
        if force_flush_period.is_zero() {
            return Err((at("force_flush_period"), "must be more than 0".into()));
        }
        let max_sources = self.max_sources.unwrap_or(1000);
        if max_sources == 0 {
            return Err((at("max_sources"), "must be at least 1".into()));
        }
        Ok(Recombine {
            expr,
            first,
            combine_field: field(&self.combine_field, "combine_field")?,
            combine_with: self.combine_with.clone().unwrap_or_else(|| "\n".into()),
            source: match &self.source_identifier {
                None => Field::attribute("log.file.path"),
                s => field(s, "source_identifier")?,
            },
            newest,
            max_batch_size: self.max_batch_size.unwrap_or(1000),
            max_unmatched_batch_size: self.max_unmatched_batch_size.unwrap_or(100),
            max_sources,
            max_log_size,
            force_flush_period,
        })
    }
}

#[derive(Debug)]
pub struct Recombine {
    expr: Expr,
    /// `is_first_entry` (else `is_last_entry`).
    first: bool,
    combine_field: Field,
    combine_with: String,
    source: Field,
    newest: bool,
    max_batch_size: usize,
    max_unmatched_batch_size: usize,
    max_sources: usize,
    max_log_size: usize,
    force_flush_period: Duration,
}

/// Entries being gathered, by source.
#[derive(Default)]
pub struct Batches(HashMap<String, Batch>);

struct Batch {
    /// The entry the joined text goes into.
    base: Record,
    text: String,
    count: usize,
    first_seen: Instant,
    matched: bool,
    /// The file offset of its oldest entry.
    start: u64,
}

impl Batches {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn earliest_start(&self) -> Option<u64> {
        self.0.values().map(|b| b.start).min()
    }
}

impl Recombine {
    /// Takes `rec` in; entries that are complete go to `ready`. `Err` when `rec` has no text
    /// in `combine_field` (it is passed on as it is).
    pub fn add(&self, batches: &mut Batches, mut rec: Record, ready: &mut Vec<Record>) -> Result<(), String> {
        let matches = self.expr.test(&rec);
        let source = match self.source.get(&rec).and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) if !s.is_empty() => s.clone(),
            _ => DEFAULT_SOURCE.to_string(),
        };
        let text = match self.combine_field.get(&rec).and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(_)) => match self.combine_field.take(&mut rec).and_then(|v| v.value) {
                Some(Value::StringValue(s)) => s,
                _ => unreachable!("just read a string there"),
            },
            _ => {
                self.flush_source(batches, &source, ready);
                let problem = format!("the entry has no string in {} to combine", self.combine_field);
                ready.push(rec);
                return Err(problem);
            }
        };
        if matches && self.first {
            self.flush_source(batches, &source, ready);
        }
        if !batches.0.contains_key(&source) && batches.0.len() >= self.max_sources {
            self.flush_all(batches, ready);
        }
        let start = rec.start;
        let batch = batches.0.entry(source.clone()).or_insert_with(|| Batch {
            base: Record::default(),
            text: String::new(),
            count: 0,
            first_seen: Instant::now(),
            matched: false,
            start,
        });
        if batch.count == 0 {
            batch.base = rec;
            batch.text = text;
        } else {
            batch.text.push_str(&self.combine_with);
            batch.text.push_str(&text);
            if self.newest {
                batch.base = rec;
            }
        }
        batch.count += 1;
        batch.matched |= matches;
        let full = (self.max_log_size > 0 && batch.text.len() > self.max_log_size)
            || (self.max_batch_size > 0 && batch.count >= self.max_batch_size)
            || (!batch.matched && self.max_unmatched_batch_size > 0 && batch.count >= self.max_unmatched_batch_size);
        if full || (matches && !self.first) {
            self.flush_source(batches, &source, ready);
        }
        Ok(())
    }

    fn flush_source(&self, batches: &mut Batches, source: &str, ready: &mut Vec<Record>) {
        if let Some(b) = batches.0.remove(source) {
            ready.push(self.finish(b));
        }
    }

    fn finish(&self, b: Batch) -> Record {
        let mut rec = b.base;
        rec.start = b.start;
        // The field was a string in this entry, so writing it back cannot fail.
        let _ = self.combine_field.set(&mut rec, string(&b.text));
        rec
    }

    fn flush_all(&self, batches: &mut Batches, ready: &mut Vec<Record>) {
        self.flush(batches, Instant::now(), true, ready);
    }

    /// Sends on the entries gathered longer than `force_flush_period` ago (all of them with
    /// `all`), oldest first.
    pub fn flush(&self, batches: &mut Batches, now: Instant, all: bool, ready: &mut Vec<Record>) {
        let due: Vec<String> = batches
            .0
            .iter()
            .filter(|(_, b)| all || now.duration_since(b.first_seen) >= self.force_flush_period)
            .map(|(s, _)| s.clone())
            .collect();
        let mut out: Vec<Batch> = due.iter().filter_map(|s| batches.0.remove(s)).collect();
        out.sort_by_key(|b| b.start);
        ready.extend(out.into_iter().map(|b| self.finish(b)));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{attr, pipeline, run, text_record};
    use super::super::{Output, State};
    use crate::attributes::as_str;
    use std::time::{Duration, Instant};

    fn bodies(out: &Output) -> Vec<&str> {
        out.records.iter().map(|r| as_str(r.log.body.as_ref().unwrap()).unwrap()).collect()
    }

    #[test]
    fn a_stack_trace_is_joined() {
        let p =
            pipeline("- type: recombine\n  combine_field: body\n  is_first_entry: body matches \"^[^\\\\s]\"").unwrap();
        let out = run(
            &p,
            &[
                "Log message 1",
                "Error: java.lang.Exception: Stack trace",
                "        at Main.demo3(Main.java:15)",
                "        at Main.main(Main.java:3)",
                "Another log message",
            ],
        );
        assert_eq!(
            bodies(&out),
            [
                "Log message 1",
                "Error: java.lang.Exception: Stack trace\n        at Main.demo3(Main.java:15)\n        at Main.main(Main.java:3)",
                "Another log message"
            ]
        );
    }

    #[test]
    fn unmatched_batches_and_last_entry() {
        let lines = ["log2", "log3", "log4", "log5", "log1", "log6", "log7", "log1", "log8", "log1"];
        let first = pipeline(
            "- type: recombine\n  combine_field: body\n  is_first_entry: body == 'log1'\n  max_unmatched_batch_size: 3",
        )
        .unwrap();
        assert_eq!(
            bodies(&run(&first, &lines)),
            ["log2\nlog3\nlog4", "log5", "log1\nlog6\nlog7", "log1\nlog8", "log1"]
        );
        let last = pipeline(
            "- type: recombine\n  combine_field: body\n  is_last_entry: body == 'log1'\n  max_unmatched_batch_size: 3",
        )
        .unwrap();
        assert_eq!(bodies(&run(&last, &lines)), ["log2\nlog3\nlog4", "log5\nlog1", "log6\nlog7\nlog1", "log8\nlog1"]);
        let none = pipeline("- type: recombine\n  combine_field: body\n  is_first_entry: body == 'log1'\n  max_unmatched_batch_size: 0\n  combine_with: ''").unwrap();
        assert_eq!(bodies(&run(&none, &lines[..6])), ["log2log3log4log5", "log1log6"]);
    }

    #[test]
    fn limits_sources_and_the_oldest_entry() {
        let p = pipeline(
            "- type: recombine\n  combine_field: body.message\n  is_last_entry: body.logtag == 'F'\n  source_identifier: body.stream\n  max_batch_size: 3\n  on_error: send_quiet",
        )
        .unwrap();
        let mut state = State::default();
        let mut out = Output::default();
        let rec = |msg: &str, tag: &str, stream: &str, n: u64| {
            let mut r = text_record("");
            for (k, v) in [("message", msg), ("logtag", tag), ("stream", stream)] {
                super::super::field::Field::parse(&format!("body.{k}"))
                    .unwrap()
                    .set(&mut r, crate::attributes::string(v))
                    .unwrap();
            }
            r.start = n;
            r
        };
        p.run(&mut state, rec("a1 ", "P", "stdout", 10), &mut out);
        p.run(&mut state, rec("b1 ", "P", "stderr", 20), &mut out);
        assert_eq!(state.held_from(), Some(10));
        p.run(&mut state, rec("a2", "F", "stdout", 30), &mut out);
        assert_eq!(state.held_from(), Some(20));
        for n in 0..3 {
            p.run(&mut state, rec("x", "P", "stderr", 40 + n), &mut out);
        }
        let msgs: Vec<String> = out
            .records
            .iter()
            .map(|r| {
                as_str(super::super::field::Field::parse("body.message").unwrap().get(r).unwrap()).unwrap().to_string()
            })
            .collect();
        assert_eq!(msgs, ["a1 \na2", "b1 \nx\nx"], "max_batch_size 3");
        assert_eq!(out.records[0].start, 10);
        // No string to combine: sent on as it is, and counted.
        let mut r = text_record("");
        r.log.body = None;
        p.run(&mut state, r, &mut out);
        assert_eq!(out.records.len(), 3, "the entry without a message is passed on");
        assert_eq!(out.failures.len(), 1);
        assert!(state.holds(), "the last x waits");
        p.flush(&mut state, Instant::now(), true, &mut out);
        assert_eq!(out.records.len(), 4);
        assert!(!state.holds());
    }

    #[test]
    fn force_flush_period() {
        let p = pipeline("- type: recombine\n  combine_field: body\n  is_first_entry: body startsWith '2024'\n  force_flush_period: 100ms\n- type: add\n  field: attributes.after\n  value: recombine").unwrap();
        let mut state = State::default();
        let mut out = Output::default();
        p.run(&mut state, text_record("2024 first"), &mut out);
        p.run(&mut state, text_record("  more"), &mut out);
        p.flush(&mut state, Instant::now(), false, &mut out);
        assert!(out.records.is_empty(), "not yet");
        p.flush(&mut state, Instant::now() + Duration::from_millis(150), false, &mut out);
        assert_eq!(bodies(&out), ["2024 first\n  more"]);
        assert_eq!(attr(&out.records[0], "after"), Some("recombine"), "goes on to the next operator");
        let e = pipeline("- type: recombine\n  combine_field: body").unwrap_err();
        assert!(e.1.contains("exactly one"), "{e:?}");
    }
}
