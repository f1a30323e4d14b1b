//! Log receivers' parsing, per record: syslog RFC 5424 and RFC 3164 lines, and a Fluent Forward
//! PackedForward message of 100 events, each turned into OTLP log records. And the log
//! exporters' encoding of 100 records: Loki (protobuf + snappy, and JSON), Elasticsearch
//! (`_bulk` NDJSON) and ClickHouse (JSONEachRow, gzip).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use rmpv::Value;
use std::hint::black_box;
use switchyard::attributes::{int, kv, string};
use switchyard::exporters::{clickhouse, elasticsearch, loki};
use switchyard::receivers::{fluentforward, syslog};

/// 100 application log records of one pod, as the filelog receiver makes them (body ~110 bytes,
/// 3 attributes, a trace context on every other record).
fn records() -> ExportLogsServiceRequest {
    let records = (0..100u64)
        .map(|n| LogRecord {
            time_unix_nano: 1_764_151_255_000_000_000 + n * 1_000_000,
            observed_time_unix_nano: 1_764_151_255_000_000_000 + n * 1_000_000 + 5000,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(string(&format!(
                "2026-11-26 10:14:15.{n:03} INFO [checkout-worker-{}] order {n} paid: amount=129.90 EUR user=u{n} latency_ms=12",
                n % 8
            ))),
            attributes: vec![
                kv("log.file.name", string("0.log")),
                kv("log.iostream", string("stdout")),
                kv("order.id", int(n as i64)),
            ],
            trace_id: if n % 2 == 0 { vec![n as u8; 16] } else { Vec::new() },
            span_id: if n % 2 == 0 { vec![n as u8; 8] } else { Vec::new() },
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", string("checkout")),
                    kv("k8s.namespace.name", string("shop")),
                    kv("k8s.pod.name", string("checkout-7d9f")),
                    kv("k8s.container.name", string("server")),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn benches(c: &mut Criterion) {
    let rfc5424: Vec<String> = (0..100)
        .map(|i| {
            format!(
                r#"<165>1 2026-11-26T10:14:15.000003Z host-{h} checkout {i} ORDER [order@32473 id="{i}" user="u{i}"] order {i} paid in 12 ms"#,
                h = i % 5
            )
        })
        .collect();
    let rfc3164: Vec<String> =
        (0..100).map(|i| format!("<34>Nov 26 10:14:15 host-{} sshd[{i}]: Accepted key for user{i}", i % 5)).collect();
    let mut packed = Vec::new();
    for i in 0..100u32 {
        let mut t = 1_700_000_000u32.to_be_bytes().to_vec();
        t.extend_from_slice(&i.to_be_bytes());
        let record = Value::Map(vec![
            (Value::from("log"), Value::from(format!("GET /api/items/{i} 200 12ms"))),
            (Value::from("stream"), Value::from("stdout")),
            (Value::from("container_name"), Value::from("web")),
        ]);
        rmpv::encode::write_value(&mut packed, &Value::Array(vec![Value::Ext(0, t), record])).unwrap();
    }
    let forward = Value::Array(vec![Value::from("kube.web"), Value::Binary(packed)]);

    let mut g = c.benchmark_group("logs");
    g.throughput(Throughput::Elements(100));
    g.bench_function("syslog_rfc5424_parse_translate", |b| {
        b.iter(|| {
            let messages: Vec<_> = rfc5424.iter().map(|l| syslog::parse::rfc5424(black_box(l)).unwrap()).collect();
            syslog::to_otlp(messages)
        })
    });
    g.bench_function("syslog_rfc3164_parse_translate", |b| {
        b.iter(|| {
            let messages: Vec<_> = rfc3164
                .iter()
                .map(|l| {
                    syslog::parse::rfc3164(black_box(l), &syslog::parse::Location::Fixed(0), 1_780_000_000).unwrap()
                })
                .collect();
            syslog::to_otlp(messages)
        })
    });
    g.bench_function("fluent_packed_forward_decode", |b| {
        b.iter_batched(
            || forward.clone(),
            |f| fluentforward::decode(black_box(f), 1 << 20).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();

    let request = records();
    let loki_cfg = |encoding: loki::Encoding| loki::LokiConfig {
        endpoint: "http://127.0.0.1:3100/loki/api/v1/push".into(),
        encoding,
        labels: loki::Labels {
            resource: [("k8s.namespace.name".to_string(), "namespace".to_string())].into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let loki_pb = loki::LokiExporter::new(&loki_cfg(loki::Encoding::Protobuf)).unwrap();
    let loki_json = loki::LokiExporter::new(&loki_cfg(loki::Encoding::Json)).unwrap();
    let es_cfg =
        elasticsearch::ElasticsearchConfig { endpoints: vec!["http://127.0.0.1:9200".into()], ..Default::default() };
    let es = elasticsearch::ElasticsearchExporter::new("es".into(), &es_cfg, Default::default()).unwrap();
    let gzip =
        switchyard::compression::Compressor::new(switchyard::compression::Compression::Gzip, &Default::default());
    let mut g = c.benchmark_group("log_exporters");
    g.throughput(Throughput::Elements(100));
    g.bench_function("loki_protobuf_snappy", |b| b.iter(|| loki_pb.body(black_box(&request)).unwrap()));
    g.bench_function("loki_json", |b| b.iter(|| loki_json.body(black_box(&request)).unwrap()));
    g.bench_function("elasticsearch_bulk_ndjson", |b| {
        b.iter(|| es.bodies(&elasticsearch::documents(black_box(&request), &es_cfg)))
    });
    g.bench_function("clickhouse_jsoneachrow_gzip", |b| {
        b.iter(|| {
            let (rows, _) = clickhouse::schema::rows(black_box(&request), clickhouse::schema::Schema::Compatible);
            gzip.compress(rows.as_bytes()).unwrap()
        })
    });
    g.finish();
}

criterion_group!(logs, benches);
criterion_main!(logs);
