//! Prometheus paths, per sample: parsing a real node exporter exposition (Debian's node exporter
//! 1.5 with its default collectors, captured in benches/support/node-exporter.prom) and turning
//! it into OTLP (the scrape path); a Remote Write 1.0 request of the same samples decoded and
//! translated (the remote-write receiver); and OTLP metrics encoded as a snappy Remote Write
//! request (the remote-write exporter).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use std::hint::black_box;
use switchyard::exporters::prometheus::series::{Settings, to_series};
use switchyard::proto::prometheus as pb;
use switchyard::receivers::prometheus::parse::{Format, parse};
use switchyard::receivers::prometheus::translate::{SeriesState, Target, to_otlp};

const NODE: &[u8] = include_bytes!("support/node-exporter.prom");

fn benches(c: &mut Criterion) {
    let families = parse(NODE, Format::Text).expect("the fixture parses");
    let samples: usize = families.iter().map(|f| f.samples.len()).sum();
    let target_labels =
        vec![("instance".to_string(), "10.0.0.7:9100".to_string()), ("job".to_string(), "node".to_string())];
    let target = Target { labels: &target_labels, scheme: "http" };
    let otlp = to_otlp(&families, &target, 1_700_000_000_000_000_000, true, &mut SeriesState::default(), &[]);
    let settings = Settings {
        namespace: String::new(),
        add_metric_suffixes: true,
        resource_to_telemetry: false,
        target_info: true,
        external_labels: Default::default(),
    };
    let write_request = pb::WriteRequest {
        timeseries: to_series(&otlp, &settings)
            .series
            .into_iter()
            .map(|s| pb::TimeSeries {
                labels: s.labels.into_iter().map(|(name, value)| pb::Label { name, value }).collect(),
                samples: s.samples.into_iter().map(|(value, timestamp)| pb::Sample { value, timestamp }).collect(),
            })
            .collect(),
        ..Default::default()
    };
    let rw_body = snap::raw::Encoder::new().compress_vec(&write_request.encode_to_vec()).unwrap();
    eprintln!(
        "node exporter: {} bytes, {} families, {samples} samples; remote write: {} series, {} bytes snappy",
        NODE.len(),
        families.len(),
        write_request.timeseries.len(),
        rw_body.len()
    );

    let mut g = c.benchmark_group("prometheus");
    g.throughput(Throughput::Elements(samples as u64));
    g.bench_function("parse_text_node_exporter", |b| b.iter(|| parse(black_box(NODE), Format::Text).unwrap()));
    g.bench_function("scrape_parse_and_translate", |b| {
        let mut state = SeriesState::default();
        b.iter(|| {
            let families = parse(black_box(NODE), Format::Text).unwrap();
            to_otlp(&families, &target, 1_700_000_000_000_000_000, true, &mut state, &[])
        })
    });
    g.bench_function("otlp_to_remote_write_snappy", |b| {
        b.iter(|| {
            let series = to_series(black_box(&otlp), &settings).series;
            let request = pb::WriteRequest {
                timeseries: series
                    .into_iter()
                    .map(|s| pb::TimeSeries {
                        labels: s.labels.into_iter().map(|(name, value)| pb::Label { name, value }).collect(),
                        samples: s
                            .samples
                            .into_iter()
                            .map(|(value, timestamp)| pb::Sample { value, timestamp })
                            .collect(),
                    })
                    .collect(),
                ..Default::default()
            };
            snap::raw::Encoder::new().compress_vec(&request.encode_to_vec()).unwrap()
        })
    });
    g.bench_function("remote_write_decode", |b| {
        b.iter(|| {
            let raw = snap::raw::Decoder::new().decompress_vec(black_box(&rw_body)).unwrap();
            pb::WriteRequest::decode(&raw[..]).unwrap()
        })
    });
    g.finish();
}

criterion_group!(prometheus, benches);
criterion_main!(prometheus);
