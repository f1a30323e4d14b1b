//! The self-metrics, under the OpenTelemetry Collector's names and labels so that existing
//! dashboards and alerts keep working. Counters carry the `_total` suffix, as the collector's
//! Prometheus endpoint shows them (`otelcol_receiver_accepted_spans_total`).

use crate::signal::Signal;
use prometheus::{Counter, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::time::Instant;

/// Every self-metric of one service, in its own registry. A service builds one and hands it
/// to each component it builds; a reloaded service keeps its predecessor's, so counters go on.
pub struct Metrics {
    pub registry: Registry,
    /// Where `switchyard tap` looks at the items passing each component (not a metric, but
    /// handed to every component with them).
    pub taps: crate::pipeline::tap::Taps,
    /// Per signal (traces, metrics, logs), labels `receiver`, `transport`.
    pub receiver_accepted: [IntCounterVec; 3],
    pub receiver_refused: [IntCounterVec; 3],
    /// Per signal, label `exporter`.
    pub exporter_sent: [IntCounterVec; 3],
    pub exporter_send_failed: [IntCounterVec; 3],
    /// Items given up on: a permanent error, or retries exhausted (switchyard's own metric;
    /// `send_failed` counts every failed attempt, as the collector does).
    pub exporter_dropped: [IntCounterVec; 3],
    /// Failed attempts that will be tried again, by exporter.
    pub exporter_retries: IntCounterVec,
    /// 1 while an exporter delivers, 0 while its attempts fail (see `queue::health`).
    pub exporter_up: IntGaugeVec,
    pub exporter_enqueue_failed: [IntCounterVec; 3],
    /// Items a backend reported as rejected in a `partial_success` (switchyard's own metric).
    pub exporter_rejected: [IntCounterVec; 3],
    pub exporter_queue_size: IntGaugeVec,
    /// Requests answered with a client error (malformed, too large, wrong type…); labels
    /// `receiver`, `transport`, `code` (the HTTP status or gRPC code). Not a collector metric:
    /// the collector does not count these.
    pub receiver_invalid_requests: IntCounterVec,
    /// Connections a listener closed at once because it had `max_connections` open.
    pub refused_connections: IntCounterVec,
    /// Connections a TLS listener closed because the handshake failed (no client certificate,
    /// an untrusted one, a plaintext client, a protocol version or suite not allowed).
    pub tls_handshake_failures: IntCounterVec,
    /// Requests refused because their credentials did not authenticate, by receiver and
    /// authenticator extension.
    pub auth_failures: IntCounterVec,
    /// Configuration reloads (SIGHUP, `--watch`), by `result`: success or failure.
    pub config_reloads: IntCounterVec,
    /// Items a backend refused one by one and that are not retried (Elasticsearch `_bulk`
    /// item errors); labels `exporter`, `status`, `reason` (the backend's error type).
    pub exporter_items_refused: IntCounterVec,
    pub exporter_queue_capacity: IntGaugeVec,
    /// Damaged stretches of a persistent queue skipped (a torn write, flipped bytes), by exporter.
    pub exporter_queue_damaged: IntCounterVec,
    /// Label `processor`.
    pub batch_send_size: HistogramVec,
    pub batch_size_trigger_send: IntCounterVec,
    pub batch_timeout_trigger_send: IntCounterVec,
    /// Items a routing connector dropped because they matched no route and it has no
    /// `default_pipelines`; labels `connector`, `signal` (switchyard's own metric).
    pub connector_unrouted: IntCounterVec,
    /// Items a connector made (counts) and dropped because a queue downstream was full;
    /// label `connector` (switchyard's own metric).
    pub connector_refused: IntCounterVec,
    /// The servicegraph connector's spans not paired because its store was full, edges made,
    /// and edges that expired before both halves arrived; label `connector` (the collector's names).
    pub servicegraph_dropped_spans: IntCounterVec,
    pub servicegraph_total_edges: IntCounterVec,
    pub servicegraph_expired_edges: IntCounterVec,
    /// The groupbytrace processor's traces and spans released, traces released before their
    /// wait was over because `num_traces` were waiting, and traces waiting; label `processor`.
    pub groupbytrace_traces_released: IntCounterVec,
    pub groupbytrace_spans_released: IntCounterVec,
    pub groupbytrace_traces_evicted: IntCounterVec,
    pub groupbytrace_traces_in_memory: IntGaugeVec,
    /// The k8sattributes processor's pod table: pods added, updated and deleted by its
    /// watches, pods held (deleted ones within their grace period too), and resources whose
    /// association found no pod (the collector's `otelsvc_k8s_*` names).
    pub k8s_pod_added: prometheus::IntCounter,
    pub k8s_pod_updated: prometheus::IntCounter,
    pub k8s_pod_deleted: prometheus::IntCounter,
    pub k8s_pod_table_size: IntGauge,
    pub k8s_ip_lookup_miss: prometheus::IntCounter,
    /// Items a processor dropped on purpose (filtered, sampled out), by processor.
    pub processor_dropped: [IntCounterVec; 3],
    pub process_uptime: Counter,
    pub process_cpu_seconds: Counter,
    pub process_memory_rss: IntGauge,
    started: Instant,
}

const SIGNAL_WORDS: [&str; 3] = ["spans", "metric points", "log records"];

fn per_signal(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> [IntCounterVec; 3] {
    std::array::from_fn(|i| {
        let c = IntCounterVec::new(
            Opts::new(
                format!("otelcol_{name}_{}_total", Signal::ALL[i].item_name()),
                help.replace("{items}", SIGNAL_WORDS[i]),
            ),
            labels,
        )
        .unwrap_or_else(|e| panic!("metric definition {name}: {e}"));
        registry.register(Box::new(c.clone())).unwrap_or_else(|e| panic!("registering {name}: {e}"));
        c
    })
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry.register(Box::new(c.clone())).unwrap_or_else(|e| panic!("registering a self-metric: {e}"));
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics. Definitions are constants, so a failure here is a programming
    /// error caught by every test, never something input can cause.
    pub fn new() -> Metrics {
        let r = Registry::new();
        let rl = &["receiver", "transport"];
        let el = &["exporter"];
        let batch_buckets = vec![
            10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0,
            8000.0, 9000.0, 10000.0, 20000.0, 30000.0, 50000.0, 100000.0,
        ];
        Metrics {
        receiver_accepted: per_signal(
            &r,
            "receiver_accepted",
            "Number of {items} successfully pushed into the pipeline.",
            rl,
        ),
        receiver_refused: per_signal(
            &r,
            "receiver_refused",
            "Number of {items} that could not be pushed into the pipeline.",
            rl,
        ),
        exporter_sent: per_signal(&r, "exporter_sent", "Number of {items} successfully sent to destination.", el),
        exporter_send_failed: per_signal(
            &r,
            "exporter_send_failed",
            "Number of {items} in failed attempts to send to destination.",
            el,
        ),
        exporter_dropped: std::array::from_fn(|i| {
            let name = format!("switchyard_exporter_dropped_{}_total", Signal::ALL[i].item_name());
            let help = format!(
                "Number of {} given up on: a permanent error, or retries exhausted.",
                SIGNAL_WORDS[i]
            );
            register(&r, IntCounterVec::new(Opts::new(name, help), el).expect("valid metric"))
        }),
        exporter_retries: register(
            &r,
            IntCounterVec::new(
                Opts::new("switchyard_exporter_retries_total", "Failed export attempts that will be tried again."),
                el,
            )
            .expect("valid metric"),
        ),
        exporter_up: register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "switchyard_exporter_up",
                    "1 while the exporter delivers; 0 while its attempts fail (an outage of its destination).",
                ),
                el,
            )
            .expect("valid metric"),
        ),
        exporter_enqueue_failed: per_signal(
            &r,
            "exporter_enqueue_failed",
            "Number of {items} failed to be added to the sending queue.",
            el,
        ),
        exporter_items_refused: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "switchyard_exporter_refused_items_total",
                    "Items a backend refused individually and that were dropped, by status and reason.",
                ),
                &["exporter", "status", "reason"],
            )
            .expect("valid metric"),
        ),
        receiver_invalid_requests: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "switchyard_receiver_invalid_requests_total",
                    "Requests refused as invalid (client errors), by answer code.",
                ),
                &["receiver", "transport", "code"],
            )
            .expect("valid metric"),
        ),
        config_reloads: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "switchyard_config_reloads_total",
                    "Configuration reloads, by result (success, or failure: the previous configuration kept running).",
                ),
                &["result"],
            )
            .expect("valid metric"),
        ),
        refused_connections: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "switchyard_listener_refused_connections_total",
                    "Connections closed as soon as they were accepted because the listener had max_connections open.",
                ),
                &["listener"],
            )
            .expect("valid metric"),
        ),
        tls_handshake_failures: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "switchyard_listener_tls_handshake_failures_total",
                    "Connections closed because their TLS handshake failed (the reason is logged).",
                ),
                &["listener"],
            )
            .expect("valid metric"),
        ),
        auth_failures: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "switchyard_receiver_auth_failures_total",
                    "Requests refused (401, UNAUTHENTICATED) because their credentials did not authenticate.",
                ),
                &["receiver", "authenticator"],
            )
            .expect("valid metric"),
        ),
        exporter_rejected: std::array::from_fn(|i| {
            let name = format!("switchyard_exporter_rejected_{}_total", Signal::ALL[i].item_name());
            let help =
                format!("Number of {} the backend accepted the batch without (partial_success).", SIGNAL_WORDS[i]);
            register(&r, IntCounterVec::new(Opts::new(name, help), el).expect("valid metric"))
        }),
        exporter_queue_size: register(
            &r,
            IntGaugeVec::new(
                Opts::new(
                    "otelcol_exporter_queue_size",
                    "What is held for the exporter, in its sending queue's sizer units (bytes by default; bytes on disk for a persistent queue): admitted and not yet exported.",
                ),
                el,
            )
            .expect("valid metric"),
        ),
        exporter_queue_capacity: register(
            &r,
            IntGaugeVec::new(
                Opts::new("otelcol_exporter_queue_capacity", "What the exporter's sending queue can hold, in its sizer units."),
                el,
            )
            .expect("valid metric"),
        ),
        exporter_queue_damaged: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "switchyard_exporter_queue_damaged_records_total",
                    "Damaged stretches of a persistent sending queue skipped at start or when read (each loses the records it holds).",
                ),
                el,
            )
            .expect("valid metric"),
        ),
        batch_send_size: register(
            &r,
            HistogramVec::new(
                HistogramOpts::new("otelcol_processor_batch_batch_send_size", "Number of units in the batch")
                    .buckets(batch_buckets),
                &["processor"],
            )
            .expect("valid metric"),
        ),
        batch_size_trigger_send: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "otelcol_processor_batch_batch_size_trigger_send_total",
                    "Number of times the batch was sent due to a size trigger",
                ),
                &["processor"],
            )
            .expect("valid metric"),
        ),
        processor_dropped: std::array::from_fn(|i| {
            let name = format!("switchyard_processor_dropped_{}_total", Signal::ALL[i].item_name());
            let help =
                format!("Number of {} a processor dropped on purpose (filtered or sampled out).", SIGNAL_WORDS[i]);
            register(&r, IntCounterVec::new(Opts::new(name, help), &["processor"]).expect("valid metric"))
        }),
        batch_timeout_trigger_send: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "otelcol_processor_batch_timeout_trigger_send_total",
                    "Number of times the batch was sent due to a timeout trigger",
                ),
                &["processor"],
            )
            .expect("valid metric"),
        ),
        connector_unrouted: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "switchyard_connector_unrouted_items_total",
                    "Items a routing connector dropped because they matched no route and it has no default pipelines",
                ),
                &["connector", "signal"],
            )
            .expect("valid metric"),
        ),
        connector_refused: register(
            &r,
            IntCounterVec::new(
                Opts::new(
                    "switchyard_connector_refused_items_total",
                    "Items a connector derived and dropped because a queue downstream was full",
                ),
                &["connector"],
            )
            .expect("valid metric"),
        ),
        servicegraph_dropped_spans: register(
            &r,
            IntCounterVec::new(Opts::new("otelcol_connector_servicegraph_dropped_spans_total", "Spans the servicegraph connector could not pair because its store was full"), &["connector"]).expect("valid metric"),
        ),
        servicegraph_total_edges: register(
            &r,
            IntCounterVec::new(Opts::new("otelcol_connector_servicegraph_total_edges_total", "Edges the servicegraph connector started (a client or server span awaiting its other half)"), &["connector"]).expect("valid metric"),
        ),
        servicegraph_expired_edges: register(
            &r,
            IntCounterVec::new(Opts::new("otelcol_connector_servicegraph_expired_edges_total", "Edges that expired in the servicegraph connector's store before both halves arrived"), &["connector"]).expect("valid metric"),
        ),
        k8s_pod_added: register(&r, prometheus::IntCounter::new("otelcol_otelsvc_k8s_pod_added_total", "Pods the k8sattributes processor's watch added").expect("valid metric")),
        k8s_pod_updated: register(&r, prometheus::IntCounter::new("otelcol_otelsvc_k8s_pod_updated_total", "Pods the k8sattributes processor's watch updated").expect("valid metric")),
        k8s_pod_deleted: register(&r, prometheus::IntCounter::new("otelcol_otelsvc_k8s_pod_deleted_total", "Pods the k8sattributes processor's watch deleted").expect("valid metric")),
        k8s_pod_table_size: register(&r, IntGauge::new("otelcol_otelsvc_k8s_pod_table_size", "Pods the k8sattributes processor holds").expect("valid metric")),
        k8s_ip_lookup_miss: register(&r, prometheus::IntCounter::new("otelcol_otelsvc_k8s_ip_lookup_miss_total", "Resources the k8sattributes processor associated with no known pod").expect("valid metric")),
        groupbytrace_traces_released: register(
            &r,
            IntCounterVec::new(Opts::new("otelcol_processor_groupbytrace_traces_released_total", "Traces the groupbytrace processor released"), &["processor"]).expect("valid metric"),
        ),
        groupbytrace_spans_released: register(
            &r,
            IntCounterVec::new(Opts::new("otelcol_processor_groupbytrace_spans_released_total", "Spans the groupbytrace processor released"), &["processor"]).expect("valid metric"),
        ),
        groupbytrace_traces_evicted: register(
            &r,
            IntCounterVec::new(Opts::new("otelcol_processor_groupbytrace_traces_evicted_total", "Traces the groupbytrace processor released before wait_duration because num_traces were waiting"), &["processor"]).expect("valid metric"),
        ),
        groupbytrace_traces_in_memory: register(
            &r,
            IntGaugeVec::new(
                Opts::new("otelcol_processor_groupbytrace_num_traces_in_memory", "Traces the groupbytrace processor holds"),
                &["processor"],
            )
            .expect("valid metric"),
        ),
        process_uptime: register(
            &r,
            Counter::new("otelcol_process_uptime_seconds_total", "Uptime of the process").expect("valid metric"),
        ),
        process_cpu_seconds: register(
            &r,
            Counter::new("otelcol_process_cpu_seconds_total", "Total CPU user and system time in seconds")
                .expect("valid metric"),
        ),
        process_memory_rss: register(
            &r,
            IntGauge::new("otelcol_process_memory_rss_bytes", "Total physical memory (resident set size)")
                .expect("valid metric"),
        ),
        started: Instant::now(),
        registry: r,
        taps: Default::default(),
    }
    }
}

impl Metrics {
    /// Refreshes the process metrics and renders everything in the Prometheus text format.
    pub fn render(&self) -> String {
        self.refresh_process();
        let mut out = String::new();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot render self-metrics");
        }
        out
    }

    fn refresh_process(&self) {
        let uptime = self.started.elapsed().as_secs_f64();
        advance(&self.process_uptime, uptime);
        if let Some((cpu, rss)) = read_proc_self() {
            advance(&self.process_cpu_seconds, cpu);
            self.process_memory_rss.set(rss as i64);
        }
    }
}

fn advance(counter: &Counter, total: f64) {
    let delta = total - counter.get();
    if delta > 0.0 {
        counter.inc_by(delta);
    }
}

/// CPU seconds (user + system) and resident bytes of this process, from /proc on Linux.
/// CPU seconds used and resident set size in bytes of this process, from /proc.
pub fn read_proc_self() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ is 100 on every Linux platform switchyard targets.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    Some(((utime + stime) / ticks, rss_pages * 4096))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_collector_names() {
        let metrics = Metrics::new();
        metrics.receiver_accepted[0].with_label_values(&["otlp", "grpc"]).inc_by(3);
        let text = metrics.render();
        assert!(text.contains("otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"}"), "{text}");
        assert!(text.contains("otelcol_process_memory_rss_bytes "));
        assert!(text.contains("# TYPE otelcol_process_uptime_seconds_total counter"));
    }
}
