//! The status page on the self-metrics port (`/` or `/status`): the running pipelines drawn
//! from the live topology — receivers → processors → exporters — with each component's counts
//! (the page turns them into rates), each exporter's queue fill, state and last error, and the
//! configuration in force with its secrets redacted. `/status.json` is what the page reads
//! every second. Everything is served by switchyard itself; the page loads nothing else.

use crate::pipeline::board::Board;
use crate::pipeline::queue::health::Condition;
use crate::signal::Signal;
use crate::telemetry::metrics::Metrics;
use prometheus::core::Collector;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// What the page is built from, now.
pub type StatusSource = Arc<dyn Fn() -> Value + Send + Sync>;

/// The status source of a running service.
pub fn source(board: Board, metrics: Arc<Metrics>) -> StatusSource {
    Arc::new(move || snapshot(&board, &metrics))
}

/// The sum of a counter or gauge family's series whose `label` is `value`.
fn sum(c: &dyn Collector, label: &str, value: &str) -> f64 {
    c.collect()
        .iter()
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.name() == label && l.value() == value))
        // A series is a counter or a gauge; the other reads 0.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

fn snapshot(board: &Board, m: &Metrics) -> Value {
    let pipelines: Vec<Value> = board
        .get()
        .iter()
        .map(|p| {
            let signal = Signal::ALL.into_iter().find(|s| p.id.split('/').next() == Some(s.as_str()));
            let i = signal.map(|s| s.index()).unwrap_or(0);
            let receivers: Vec<Value> = p
                .receivers
                .iter()
                .map(|r| {
                    json!({"id": r, "accepted": sum(&m.receiver_accepted[i], "receiver", r),
                        "refused": sum(&m.receiver_refused[i], "receiver", r)})
                })
                .collect();
            let processors: Vec<Value> = p
                .processors
                .iter()
                .map(|r| json!({"id": r, "dropped": sum(&m.processor_dropped[i], "processor", r)}))
                .collect();
            let exporters: Vec<Value> = p
                .exporters
                .iter()
                .map(|(id, health)| {
                    let (state, error) = match health.condition(Duration::from_secs(300)) {
                        Condition::Ok => ("up", String::new()),
                        Condition::Recoverable { reason, .. } => ("failing", reason),
                        Condition::Permanent { reason, .. } => ("dropped data", reason),
                    };
                    json!({"id": id, "state": state, "error": error,
                        "sent": sum(&m.exporter_sent[i], "exporter", id),
                        "failed": sum(&m.exporter_send_failed[i], "exporter", id),
                        "dropped": sum(&m.exporter_dropped[i], "exporter", id),
                        "queue_size": sum(&m.exporter_queue_size, "exporter", id),
                        "queue_capacity": sum(&m.exporter_queue_capacity, "exporter", id)})
                })
                .collect();
            json!({"id": p.id, "receivers": receivers, "processors": processors, "exporters": exporters,
                "from_connectors": p.from_connectors, "to_connectors": p.to_connectors})
        })
        .collect();
    json!({"pipelines": pipelines, "config": board.config()})
}

/// The page: HTML, CSS and the script that polls `/status.json`, all inline.
pub const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>switchyard status</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .8em} h2{font-size:1.05em;margin:1.2em 0 .4em}
.pipeline{display:flex;align-items:stretch;gap:.5em;margin-bottom:1em;flex-wrap:wrap}
.stage{display:flex;flex-direction:column;gap:.4em;justify-content:center}
.arrow{align-self:center;font-size:1.6em;color:#888}
.box{border:1px solid #bbb;border-radius:6px;background:#fff;padding:.4em .6em;min-width:11em}
.box .name{font-weight:600} .box .n{color:#555;font-size:.9em}
.exporter.failing{border-color:#c33;background:#fff3f3} .exporter.up{border-color:#393} .connector{border-style:dashed;background:#f5f7ff}
.err{color:#b00;font-size:.85em;max-width:40em;word-break:break-word}
.bar{height:6px;background:#eee;border-radius:3px;margin-top:.2em}.bar>div{height:6px;background:#69c;border-radius:3px}
pre{background:#fff;border:1px solid #ddd;padding:.8em;overflow:auto;max-height:30em;font-size:12px}
</style></head>
<body><h1>switchyard status <span id="updated" class="n"></span></h1>
<div id="pipelines">loading…</div>
<h2>Configuration in force (secrets redacted)</h2><pre id="config"></pre>
<script>
"use strict";
let last = null, lastAt = 0;
const rate = (now, prev, dt) => prev === undefined || dt <= 0 ? 0 : Math.max(0, (now - prev) / dt);
const fmt = x => x >= 1000 ? (x / 1000).toFixed(1) + "k" : (Math.round(x * 10) / 10).toString();
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }
function box(kind, c, lines, key, rateOf) {
  const b = el("div", "box " + kind + (c.state ? " " + c.state.replace(" ", "-") : ""));
  b.dataset.component = kind + ":" + c.id;
  for (const [k, v] of Object.entries(rateOf)) b.dataset[k] = v.toFixed(2);
  b.appendChild(el("div", "name", kind + " " + c.id));
  for (const l of lines) b.appendChild(el("div", "n", l));
  return b;
}
function render(s, dt) {
  const prev = {};
  if (last) for (const p of last.pipelines) for (const k of ["receivers", "processors", "exporters"]) for (const c of p[k]) prev[p.id + "/" + k + "/" + c.id] = c;
  const root = document.getElementById("pipelines"); root.textContent = "";
  for (const p of s.pipelines) {
    root.appendChild(el("h2", null, "pipeline " + p.id));
    const row = el("div", "pipeline"); row.dataset.pipeline = p.id;
    const stage = () => el("div", "stage");
    const rs = stage();
    for (const r of p.receivers) {
      const o = prev[p.id + "/receivers/" + r.id] || {};
      const inRate = rate(r.accepted, o.accepted, dt);
      rs.appendChild(box("receiver", r, ["in " + fmt(inRate) + "/s (total " + r.accepted + ")", "refused " + r.refused], "", {rateIn: inRate, accepted: r.accepted}));
    }
    const peers = (c, side) => s.pipelines.filter(q => (q[side] || []).includes(c)).map(q => q.id).join(", ");
    for (const c of p.from_connectors || []) rs.appendChild(box("connector", {id: c}, ["from " + peers(c, "to_connectors")], "", {}));
    row.appendChild(rs);
    for (const pr of p.processors) {
      row.appendChild(el("div", "arrow", "→"));
      const st = stage(); st.appendChild(box("processor", pr, ["dropped " + pr.dropped], "", {dropped: pr.dropped})); row.appendChild(st);
    }
    row.appendChild(el("div", "arrow", "→"));
    const es = stage();
    for (const e of p.exporters) {
      const o = prev[p.id + "/exporters/" + e.id] || {};
      const sent = rate(e.sent, o.sent, dt), failed = rate(e.failed, o.failed, dt);
      const b = box("exporter", e, ["sent " + fmt(sent) + "/s (total " + e.sent + ")", "failed " + fmt(failed) + "/s, dropped " + e.dropped, "state: " + e.state], "", {rateSent: sent, sent: e.sent, failed: e.failed});
      const fill = e.queue_capacity > 0 ? Math.min(100, 100 * e.queue_size / e.queue_capacity) : 0;
      const bar = el("div", "bar"); const inner = el("div"); inner.style.width = fill.toFixed(1) + "%"; bar.appendChild(inner);
      b.appendChild(el("div", "n", "queue " + fill.toFixed(1) + "% full")); b.appendChild(bar); b.dataset.queueFill = fill.toFixed(1);
      if (e.error) b.appendChild(el("div", "err", e.error));
      es.appendChild(b);
    }
    for (const c of p.to_connectors || []) es.appendChild(box("connector", {id: c}, ["to " + peers(c, "from_connectors")], "", {}));
    row.appendChild(es); root.appendChild(row);
  }
  document.getElementById("config").textContent = s.config;
  document.getElementById("updated").textContent = "(" + new Date().toLocaleTimeString() + ")";
}
async function poll() {
  try {
    const r = await fetch("status.json", {cache: "no-store"});
    const s = await r.json(); const now = performance.now();
    render(s, last ? (now - lastAt) / 1000 : 0); last = s; lastAt = now;
  } catch (e) { document.getElementById("updated").textContent = "(cannot reach switchyard: " + e + ")"; }
}
poll(); setInterval(poll, 1000);
</script></body></html>
"##;
