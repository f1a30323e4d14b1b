//! The logs table: its DDL and the JSONEachRow row of a log record, in two forms.
//! `compatible` (the default) runs on every ClickHouse since 18.16: `DateTime` seconds plus a
//! `UInt64` of nanoseconds, attributes as `Nested(key, value)` columns. `modern` is the
//! OpenTelemetry Collector's `otel_logs` layout (`DateTime64(9)`, `Map`, `LowCardinality`,
//! codecs), for ClickHouse 22.3 and later.

use crate::exporters::values::text;
use crate::hexfmt::hex;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Schema {
    #[default]
    Compatible,
    Modern,
}

/// `CREATE TABLE IF NOT EXISTS` for `db`.`table`.
pub fn create_table(schema: Schema, db: &str, table: &str) -> String {
    match schema {
        Schema::Compatible => format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`{table}` (
    Timestamp DateTime,
    TimestampNanos UInt64,
    TraceId String,
    SpanId String,
    TraceFlags UInt8,
    SeverityText String,
    SeverityNumber UInt8,
    ServiceName String,
    Body String,
    ResourceSchemaUrl String,
    ResourceAttributes Nested(key String, value String),
    ScopeSchemaUrl String,
    ScopeName String,
    ScopeVersion String,
    ScopeAttributes Nested(key String, value String),
    LogAttributes Nested(key String, value String)
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SeverityText, Timestamp)"
        ),
        Schema::Modern => format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`{table}` (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"
        ),
    }
}

/// Puts `attrs` into `row` as `<name>.key`/`<name>.value` arrays (compatible) or an object (modern).
fn attributes(row: &mut serde_json::Map<String, serde_json::Value>, schema: Schema, name: &str, attrs: &[KeyValue]) {
    match schema {
        Schema::Compatible => {
            row.insert(format!("{name}.key"), attrs.iter().map(|a| a.key.clone()).collect::<Vec<_>>().into());
            row.insert(
                format!("{name}.value"),
                attrs.iter().map(|a| text(a.value.as_ref())).collect::<Vec<_>>().into(),
            );
        }
        Schema::Modern => {
            let m = attrs.iter().map(|a| (a.key.clone(), text(a.value.as_ref()).into())).collect();
            row.insert(name.to_string(), serde_json::Value::Object(m));
        }
    }
}

/// The JSONEachRow body for `request`: one JSON object per line; and how many rows.
pub fn rows(request: &ExportLogsServiceRequest, schema: Schema) -> (String, usize) {
    let mut out = String::new();
    let mut n = 0;
    for rl in &request.resource_logs {
        let resource = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        let service =
            resource.iter().find(|a| a.key == "service.name").map(|a| text(a.value.as_ref())).unwrap_or_default();
        for sl in &rl.scope_logs {
            let scope = sl.scope.as_ref();
            for r in &sl.log_records {
                let t = if r.time_unix_nano != 0 { r.time_unix_nano } else { r.observed_time_unix_nano };
                let mut row = serde_json::Map::new();
                match schema {
                    Schema::Compatible => {
                        row.insert("Timestamp".into(), (t / 1_000_000_000).into());
                        row.insert("TimestampNanos".into(), t.into());
                    }
                    Schema::Modern => {
                        row.insert("Timestamp".into(), crate::timefmt::datetime(t).into());
                    }
                }
                row.insert("TraceId".into(), hex(&r.trace_id).into());
                row.insert("SpanId".into(), hex(&r.span_id).into());
                row.insert("TraceFlags".into(), (r.flags & 0xff).into());
                row.insert("SeverityText".into(), r.severity_text.clone().into());
                row.insert("SeverityNumber".into(), r.severity_number.clamp(0, 255).into());
                row.insert("ServiceName".into(), service.clone().into());
                row.insert("Body".into(), text(r.body.as_ref()).into());
                row.insert("ResourceSchemaUrl".into(), rl.schema_url.clone().into());
                attributes(&mut row, schema, "ResourceAttributes", resource);
                row.insert("ScopeSchemaUrl".into(), sl.schema_url.clone().into());
                row.insert("ScopeName".into(), scope.map(|s| s.name.clone()).unwrap_or_default().into());
                row.insert("ScopeVersion".into(), scope.map(|s| s.version.clone()).unwrap_or_default().into());
                attributes(&mut row, schema, "ScopeAttributes", scope.map(|s| s.attributes.as_slice()).unwrap_or(&[]));
                attributes(&mut row, schema, "LogAttributes", &r.attributes);
                out.push_str(&serde_json::Value::Object(row).to_string());
                out.push('\n');
                n += 1;
            }
        }
    }
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{int, kv, string};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    #[test]
    fn the_documented_modern_ddl_is_the_one_run() {
        let docs = include_str!("../../../docs/configuration.md");
        let ddl = create_table(Schema::Modern, "otel", "otel_logs");
        assert!(docs.contains(&ddl), "docs/configuration.md shows the modern DDL as it is run:\n{ddl}");
    }

    fn request() -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource { attributes: vec![kv("service.name", string("shop"))], ..Default::default() }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: 1_714_566_896_123_456_789,
                        severity_number: 9,
                        severity_text: "INFO".into(),
                        body: Some(string("paid")),
                        attributes: vec![kv("order", int(42))],
                        trace_id: vec![0xab; 16],
                        flags: 0x101,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn compatible_rows_use_seconds_nanoseconds_and_nested_arrays() {
        let (body, n) = rows(&request(), Schema::Compatible);
        assert_eq!(n, 1);
        assert!(body.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap();
        assert_eq!(v["Timestamp"], 1_714_566_896u64);
        assert_eq!(v["TimestampNanos"], 1_714_566_896_123_456_789u64);
        assert_eq!(v["ResourceAttributes.key"], serde_json::json!(["service.name"]));
        assert_eq!(v["LogAttributes.value"], serde_json::json!(["42"]));
        assert_eq!(v["TraceId"], "ab".repeat(16));
        assert_eq!(v["TraceFlags"], 1, "the low byte: the W3C trace flags");
        assert_eq!(v["ServiceName"], "shop");
    }

    #[test]
    fn modern_rows_use_datetime64_strings_and_maps() {
        let (body, _) = rows(&request(), Schema::Modern);
        let v: serde_json::Value = serde_json::from_str(body.trim_end()).unwrap();
        assert_eq!(v["Timestamp"], "2024-05-01 12:34:56.123456789");
        assert_eq!(v["LogAttributes"], serde_json::json!({"order": "42"}));
        assert!(create_table(Schema::Modern, "otel", "otel_logs").contains("Map(LowCardinality(String), String)"));
    }
}
