//! Log receivers' parsing, per record: syslog RFC 5424 and RFC 3164 lines, and a Fluent Forward
//! PackedForward message of 100 events, each turned into OTLP log records.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rmpv::Value;
use std::hint::black_box;
use switchyard::receivers::{fluentforward, syslog};

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
            let messages: Vec<_> =
                rfc3164.iter().map(|l| syslog::parse::rfc3164(black_box(l), 2026, 0).unwrap()).collect();
            syslog::to_otlp(messages)
        })
    });
    g.bench_function("fluent_packed_forward_decode", |b| {
        b.iter(|| fluentforward::decode(black_box(&forward), 1 << 20).unwrap())
    });
    g.finish();
}

criterion_group!(logs, benches);
criterion_main!(logs);
