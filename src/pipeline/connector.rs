//! Connectors in the engine: a connector is an exporter of some pipelines and a receiver of
//! others. A pipeline hands a batch to a connector's `Hop` as it hands one to an exporter's
//! queue; the hop asks the connector where each part goes and puts it straight into those
//! pipelines' inputs, on the same task, with everything the batch carries: the queue room
//! its receiver claimed (admission claims room in every exporter a batch can reach through
//! connectors, so nothing is refused after it was acknowledged) and its delivery notices.

use super::batch::Batch;
use crate::signal::Signal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;

/// What a connector does with a batch: which of the pipelines downstream each part goes to.
pub trait Connector: Send + Sync + 'static {
    /// Splits or copies `batch` onto `downstream` (the ids of the pipelines of its signal that
    /// list this connector as a receiver, in configuration order): each part in `out` with the
    /// index of its pipeline. What it leaves out goes nowhere.
    fn route(&self, batch: Batch, downstream: &[String], out: &mut Vec<(usize, Batch)>);

    /// Whether what it hands on is new data made from what it takes (counts from spans), not
    /// that data itself: the room admission claimed does not cover it, so each part claims
    /// its own as it goes, and is dropped (and counted) where a queue downstream is full.
    fn derives(&self) -> bool {
        false
    }

    /// For a connector that gathers over time (spanmetrics): how often it hands on what it
    /// has gathered (see `flush`).
    fn flush_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// What it has gathered, handed to every pipeline downstream of the batch's signal;
    /// `last`: the connector is being let go of (a reload replaced it, or shutdown), so
    /// nothing may be held back for later.
    fn flush(&self, _out: &mut Vec<Batch>, _last: bool) {}
}

/// The pipelines one signal reaches through a connector: their ids, inputs, and the room
/// data entering each must hold (the exporter queues and memory budgets it reaches).
#[derive(Default, Clone)]
pub struct Downstream {
    pub ids: Vec<String>,
    pub inputs: Vec<mpsc::UnboundedSender<Batch>>,
    pub capacities: Vec<Vec<Arc<super::admission::Capacity>>>,
}

/// A running connector as pipelines see it: the connector, and where it leads, per signal
/// (swapped at a reload).
pub struct Hop {
    name: String,
    connector: Arc<dyn Connector>,
    /// Derived items dropped because a queue downstream was full.
    refused: prometheus::IntCounter,
    downstream: RwLock<Arc<[Downstream; 3]>>,
    feeds_disk: AtomicBool,
    tap: Arc<super::tap::TapPoint>,
    /// What a periodic flush still waits to hand on (see `Outlet`).
    outlet: Arc<Outlet>,
}

/// Where a periodic flush's parts wait for room downstream. The flush task holds this, not the
/// hop, while it waits: the hop is let go of on time (a stop, a reload), and its last flush takes
/// whatever still waits here, so nothing waits past it.
struct Outlet {
    name: String,
    refused: prometheus::IntCounter,
    tap: Arc<super::tap::TapPoint>,
    backlog: std::sync::Mutex<std::collections::VecDeque<FlushPart>>,
    /// Cancelled when the hop is let go of.
    closed: tokio_util::sync::CancellationToken,
}

impl Outlet {
    fn backlog(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<FlushPart>> {
        self.backlog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one part on, once it holds its room; a closed pipeline loses it (counted).
    fn hand_on(&self, d: FlushPart) {
        if self.tap.is_active() {
            self.tap.observe(Some(&Arc::from(d.pipeline.as_str())), &d.part);
        }
        let items = d.part.items() as u64;
        if d.input.send(d.part).is_err() {
            self.refused.inc_by(items);
            tracing::warn!(connector = %self.name, pipeline = %d.pipeline, items, "connector: the pipeline downstream is closed; what was gathered for it is lost");
        }
    }

    /// Hands on the backlog, each part once it has room, until `deadline` (what still has none
    /// then is dropped and counted) or until the hop is let go of (its last flush takes the rest).
    async fn drain(&self, deadline: tokio::time::Instant) {
        loop {
            let wanted: Vec<(Arc<super::admission::Capacity>, usize)> = {
                let backlog = self.backlog();
                let Some(front) = backlog.front() else { return };
                front.room.iter().map(|c| (c.clone(), c.weight(&front.part).max(1))).collect()
            };
            let mut claims = Vec::with_capacity(wanted.len());
            for (capacity, n) in &wanted {
                tokio::select! {
                    claim = capacity.claim_until(*n, deadline) => match claim {
                        Some(c) => claims.push(c),
                        None => break,
                    },
                    _ = self.closed.cancelled() => return,
                }
            }
            // Taken only now, under the lock the last flush also takes: a part is either here
            // for it, or handed on.
            let mut backlog = self.backlog();
            let Some(mut d) = backlog.pop_front() else { return };
            if claims.len() < wanted.len() {
                self.refused.inc_by(d.part.items() as u64);
                continue;
            }
            for c in claims {
                d.part.hold(c);
            }
            self.hand_on(d);
        }
    }
}

impl Hop {
    pub fn new(
        name: String,
        connector: Arc<dyn Connector>,
        tap: Arc<super::tap::TapPoint>,
        telemetry: &crate::telemetry::metrics::Metrics,
    ) -> Arc<Hop> {
        let every = connector.flush_interval();
        let refused = telemetry.connector_refused.with_label_values(&[&name]);
        let outlet = Arc::new(Outlet {
            name: name.clone(),
            refused: refused.clone(),
            tap: tap.clone(),
            backlog: Default::default(),
            closed: Default::default(),
        });
        let hop = Arc::new(Hop {
            refused,
            name,
            connector,
            downstream: RwLock::new(Arc::default()),
            feeds_disk: AtomicBool::new(false),
            tap,
            outlet: outlet.clone(),
        });
        if let Some(every) = every {
            // Runs while the hop is in use (by the service or a pipeline); holds the hop only
            // to gather, never while it waits.
            let weak = Arc::downgrade(&hop);
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = outlet.closed.cancelled() => return,
                    }
                    let Some(hop) = weak.upgrade() else { return };
                    let parts = hop.gathered(false);
                    drop(hop);
                    outlet.backlog().extend(parts);
                    outlet.drain(tokio::time::Instant::now() + every).await;
                }
            });
        }
        hop
    }

    /// What the connector has gathered, as the parts each pipeline downstream of its signal
    /// gets, with the room each must hold and where it goes.
    fn gathered(&self, last: bool) -> Vec<FlushPart> {
        let mut made = Vec::new();
        self.connector.flush(&mut made, last);
        let downstream = self.downstream.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut parts = Vec::new();
        // In batches a queue and a backend take (a flush of many series is large).
        for batch in made.into_iter().flat_map(|b| b.split(FLUSH_BATCH_ITEMS)) {
            let prefix = batch.signal().as_str();
            let mut sent: Vec<&str> = Vec::new();
            for to in downstream.iter() {
                for (i, id) in to.ids.iter().enumerate() {
                    let of_signal = id.split('/').next() == Some(prefix);
                    if !of_signal || sent.contains(&id.as_str()) {
                        continue;
                    }
                    sent.push(id);
                    let Some(input) = to.inputs.get(i) else { continue };
                    parts.push(FlushPart {
                        part: batch.clone(),
                        room: to.capacities.get(i).cloned().unwrap_or_default(),
                        input: input.clone(),
                        pipeline: id.clone(),
                    });
                }
            }
        }
        parts
    }

    /// Hands what the connector has gathered to every pipeline downstream of its signal, where
    /// there is room (what finds none is dropped and counted). At the last flush (the hop let go
    /// of: a reload, a stop) it first takes what a periodic flush still waits to hand on, and
    /// room is taken even over an exporter queue's limit, so nothing gathered is lost then
    /// (a memory budget that is full still refuses, counted).
    pub fn flush(&self, last: bool) {
        let mut parts: Vec<FlushPart> = Vec::new();
        if last {
            self.outlet.closed.cancel();
            parts.extend(self.outlet.backlog().drain(..));
        }
        parts.extend(self.gathered(last));
        for mut d in parts {
            let room = std::mem::take(&mut d.room);
            if last {
                let (budgets, queues): (Vec<_>, Vec<_>) = room.into_iter().partition(|c| c.is_memory());
                if !claim_all(&mut d.part, &budgets) {
                    self.refused.inc_by(d.part.items() as u64);
                    continue;
                }
                for capacity in &queues {
                    d.part.hold(capacity.force_claim(capacity.weight(&d.part).max(1)));
                }
            } else if !claim_all(&mut d.part, &room) {
                self.refused.inc_by(d.part.items() as u64);
                continue;
            }
            self.outlet.hand_on(d);
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// From now on, data goes to these pipelines (per signal); `feeds_disk`: whether an
    /// exporter it reaches keeps its queue on disk.
    pub fn set_downstream(&self, downstream: [Downstream; 3], feeds_disk: bool) {
        *self.downstream.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(downstream);
        self.feeds_disk.store(feeds_disk, Ordering::Relaxed);
    }

    /// Whether what it hands on is new data (see `Connector::derives`).
    pub fn derives(&self) -> bool {
        self.connector.derives()
    }

    /// Whether it hands data to the pipeline whose input is `input`.
    pub fn feeds(&self, input: &mpsc::UnboundedSender<Batch>) -> bool {
        let downstream = self.downstream.read().unwrap_or_else(|p| p.into_inner()).clone();
        downstream.iter().flat_map(|d| &d.inputs).any(|i| i.same_channel(input))
    }

    /// Whether an exporter it reaches keeps its queue on disk (see `PipelineRunner`).
    pub fn feeds_disk(&self) -> bool {
        self.feeds_disk.load(Ordering::Relaxed)
    }

    /// Hands `batch` on to the pipelines the connector picks.
    pub fn send(&self, batch: Batch) {
        let signal: Signal = batch.signal();
        let downstream = self.downstream.read().unwrap_or_else(|p| p.into_inner()).clone();
        let to = &downstream[signal.index()];
        let mut out = Vec::new();
        self.connector.route(batch, &to.ids, &mut out);
        for (i, mut part) in out {
            if part.items() == 0 {
                continue;
            }
            if self.tap.is_active() {
                self.tap.observe(to.ids.get(i).map(|id| Arc::from(id.as_str())).as_ref(), &part);
            }
            if self.connector.derives() {
                // New data: it claims its own room, now, or goes nowhere.
                if let Some(room) = to.capacities.get(i)
                    && !claim_all(&mut part, room)
                {
                    self.refused.inc_by(part.items() as u64);
                    tracing::debug!(connector = %self.name, pipeline = ?to.ids.get(i), items = part.items(),
                        "connector: a queue downstream is full; derived data dropped");
                    continue;
                }
            } else if let Some(room) = to.capacities.get(i) {
                // The part holds room only where it can still go: another tenant's queue is
                // not kept looking full by data waiting in this pipeline.
                part.keep_claims_for(room);
            }
            let lost = match to.inputs.get(i) {
                Some(input) => input.send(part).err().map(|e| e.0),
                None => Some(part),
            };
            if let Some(mut lost) = lost {
                // Pipelines close after those that feed them (see the service's shutdown), so
                // this is a bug, not a case: say so loudly, and do not report the data delivered.
                tracing::error!(connector = %self.name, pipeline = ?to.ids.get(i), items = lost.items(),
                    "connector: the pipeline downstream is gone; data lost");
                lost.cancel_deliveries();
            }
        }
    }
}

/// One part of a flush: the data, the room it must hold, and the pipeline it goes to.
struct FlushPart {
    part: Batch,
    room: Vec<Arc<super::admission::Capacity>>,
    input: mpsc::UnboundedSender<Batch>,
    pipeline: String,
}

/// The most data points one batch of a flush holds.
const FLUSH_BATCH_ITEMS: usize = 8192;

impl Drop for Hop {
    /// What a gathering connector holds goes on when it is let go of: replaced at a reload, or
    /// at shutdown, where its last holder is the pipeline feeding it, which ends before the
    /// pipelines it feeds.
    fn drop(&mut self) {
        if self.connector.flush_interval().is_some() {
            self.flush(true);
        }
    }
}

/// Claims room for `part` in every one of `room` at once (none is kept when one is full).
fn claim_all(part: &mut Batch, room: &[Arc<super::admission::Capacity>]) -> bool {
    let mut claims = Vec::with_capacity(room.len());
    for capacity in room {
        match capacity.try_claim(capacity.weight(part).max(1)) {
            Some(c) => claims.push(c),
            None => return false,
        }
    }
    for c in claims {
        part.hold(c);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Request;
    use crate::pipeline::admission::Capacity;
    use crate::pipeline::tests_support::traces;

    /// Makes one new batch of `n` items per batch it takes.
    struct Deriving(usize);

    impl Connector for Deriving {
        fn route(&self, _batch: Batch, _downstream: &[String], out: &mut Vec<(usize, Batch)>) {
            out.push((0, Batch::from_request(Request::Traces(traces(self.0)))));
        }
        fn derives(&self) -> bool {
            true
        }
    }

    #[test]
    fn derived_data_claims_its_own_room_and_is_dropped_and_counted_when_there_is_none() {
        let telemetry = crate::telemetry::metrics::Metrics::new();
        let hop = Hop::new(
            "count".into(),
            Arc::new(Deriving(2)),
            crate::pipeline::tap::TapPoint::new(crate::pipeline::tap::Kind::Connector, "count"),
            &telemetry,
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let room = Capacity::new("exporter".into(), 1);
        let downstream =
            Downstream { ids: vec!["metrics".into()], inputs: vec![tx], capacities: vec![vec![room.clone()]] };
        hop.set_downstream([downstream.clone(), downstream.clone(), downstream], false);
        hop.send(Batch::from_request(Request::Traces(traces(5))));
        let first = rx.try_recv().expect("the first count goes on, holding the room");
        assert_eq!(room.held(), 1);
        hop.send(Batch::from_request(Request::Traces(traces(5))));
        assert!(rx.try_recv().is_err(), "no room: dropped");
        assert_eq!(telemetry.connector_refused.with_label_values(&["count"]).get(), 2);
        drop(first);
        assert_eq!(room.held(), 0, "the room goes back with the batch");
    }
}
