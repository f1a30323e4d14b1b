//! The `transform` processor: OTTL-style statements (see `processors::ottl::statement`) run in
//! order on every span, metric, data point, log record or resource of the context they are
//! written for, each only where its `where` condition holds.

use super::filter::ErrorMode;
use super::ottl::expr::{Context, Field, Item, Value};
use super::ottl::items::{DataPointItem, LogItem, MetricItem, Origin, SpanItem, metric_type};
use super::ottl::statement::{ItemMut, MapRef, Statement, compile_statement};
use crate::pipeline::{Batch, Processor, Request};
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextStatements {
    pub context: String,
    pub statements: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    /// What a statement that fails at run time (a converter given a value of the wrong type)
    /// does: `propagate` drops the batch (logged), `ignore` logs it and goes on with the next
    /// statement, `silent` goes on without a word.
    pub error_mode: super::filter::ErrorMode,
    pub trace_statements: Vec<ContextStatements>,
    pub metric_statements: Vec<ContextStatements>,
    pub log_statements: Vec<ContextStatements>,
}

/// Statements compiled for one context.
struct Group {
    context: Context,
    statements: Vec<Statement>,
}

fn compile_groups(
    key: &str,
    list: &[ContextStatements],
    allowed: &[(&str, Context)],
) -> Result<Vec<Group>, (String, String)> {
    list.iter()
        .enumerate()
        .map(|(i, g)| {
            let context = allowed.iter().find(|(n, _)| *n == g.context).map(|(_, c)| *c).ok_or_else(|| {
                (
                    format!("{key}.{i}.context"),
                    format!(
                        "\"{}\" is not a context here (use {})",
                        g.context,
                        allowed.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
            let statements = g
                .statements
                .iter()
                .enumerate()
                .map(|(j, src)| {
                    compile_statement(src, context)
                        .map_err(|e| (format!("{key}.{i}.statements.{j}"), format!("\"{src}\": {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Group { context, statements })
        })
        .collect()
}

struct Compiled {
    traces: Vec<Group>,
    metrics: Vec<Group>,
    logs: Vec<Group>,
}

impl TransformConfig {
    fn compile(&self) -> Result<Compiled, (String, String)> {
        Ok(Compiled {
            traces: compile_groups(
                "trace_statements",
                &self.trace_statements,
                &[("span", Context::Span), ("resource", Context::Resource)],
            )?,
            metrics: compile_groups(
                "metric_statements",
                &self.metric_statements,
                &[("metric", Context::Metric), ("datapoint", Context::DataPoint), ("resource", Context::Resource)],
            )?,
            logs: compile_groups(
                "log_statements",
                &self.log_statements,
                &[("log", Context::LogRecord), ("resource", Context::Resource)],
            )?,
        })
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.trace_statements.is_empty() && self.metric_statements.is_empty() && self.log_statements.is_empty() {
            return Err(("trace_statements".into(), "give statements for traces, metrics or logs".into()));
        }
        self.compile().map(|_| ())
    }
}

fn attribute(attrs: &[KeyValue], key: &str) -> Value {
    super::ottl::items::value(attrs.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()))
}

fn origin_get(resource: &[KeyValue], scope: Option<&InstrumentationScope>, field: &Field) -> Option<Value> {
    Some(match field {
        Field::ResourceAttribute(k) => attribute(resource, k),
        Field::ResourceAttributes => Value::Map(resource.to_vec()),
        Field::ScopeName => Value::Str(scope.map(|s| s.name.clone()).unwrap_or_default()),
        Field::ScopeVersion => Value::Str(scope.map(|s| s.version.clone()).unwrap_or_default()),
        _ => return None,
    })
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

fn int(v: Value) -> Option<i64> {
    match v {
        Value::Int(i) | Value::Time(i) => Some(i),
        Value::Double(d) => Some(d as i64),
        _ => None,
    }
}

/// A timestamp field from an int or a time (before the epoch is not a timestamp).
fn nanos(v: Value) -> Option<u64> {
    int(v).and_then(|n| u64::try_from(n).ok())
}

struct ResourceMut<'a> {
    resource: &'a mut Vec<KeyValue>,
}

impl Item for ResourceMut<'_> {
    fn get(&self, field: &Field) -> Value {
        origin_get(self.resource, None, field).unwrap_or(Value::Nil)
    }
}

impl ItemMut for ResourceMut<'_> {
    fn map(&mut self, m: MapRef) -> Option<&mut Vec<KeyValue>> {
        (m == MapRef::Resource || m == MapRef::Attributes).then_some(&mut *self.resource)
    }

    fn set(&mut self, _: &Field, _: Value) -> bool {
        false
    }
}

struct SpanMut<'a> {
    span: &'a mut Span,
    resource: &'a mut Vec<KeyValue>,
    scope: Option<&'a InstrumentationScope>,
}

impl Item for SpanMut<'_> {
    fn get(&self, field: &Field) -> Value {
        origin_get(self.resource, self.scope, field).unwrap_or_else(|| {
            SpanItem { span: self.span, origin: Origin { resource: None, scope: self.scope } }.get(field)
        })
    }
}

impl ItemMut for SpanMut<'_> {
    fn map(&mut self, m: MapRef) -> Option<&mut Vec<KeyValue>> {
        Some(match m {
            MapRef::Attributes => &mut self.span.attributes,
            MapRef::Resource => &mut *self.resource,
        })
    }

    fn set(&mut self, field: &Field, v: Value) -> bool {
        let s = &mut *self.span;
        match field {
            Field::Name => text(v).map(|t| s.name = t).is_some(),
            Field::Kind => int(v).map(|k| s.kind = k as i32).is_some(),
            Field::TraceState => text(v).map(|t| s.trace_state = t).is_some(),
            Field::StatusCode => int(v).map(|c| s.status.get_or_insert_with(Status::default).code = c as i32).is_some(),
            Field::StatusMessage => text(v).map(|m| s.status.get_or_insert_with(Status::default).message = m).is_some(),
            Field::StartTime => nanos(v).map(|n| s.start_time_unix_nano = n).is_some(),
            Field::EndTime => nanos(v).map(|n| s.end_time_unix_nano = n).is_some(),
            _ => false,
        }
    }
}

struct LogMut<'a> {
    log: &'a mut LogRecord,
    resource: &'a mut Vec<KeyValue>,
    scope: Option<&'a InstrumentationScope>,
}

impl Item for LogMut<'_> {
    fn get(&self, field: &Field) -> Value {
        origin_get(self.resource, self.scope, field).unwrap_or_else(|| {
            LogItem { log: self.log, origin: Origin { resource: None, scope: self.scope } }.get(field)
        })
    }
}

impl ItemMut for LogMut<'_> {
    fn map(&mut self, m: MapRef) -> Option<&mut Vec<KeyValue>> {
        Some(match m {
            MapRef::Attributes => &mut self.log.attributes,
            MapRef::Resource => &mut *self.resource,
        })
    }

    fn set(&mut self, field: &Field, v: Value) -> bool {
        let l = &mut *self.log;
        match field {
            Field::Body => {
                l.body = match v {
                    Value::Nil => None,
                    v => Some(super::ottl::functions::to_any(v)),
                };
                true
            }
            Field::SeverityText => text(v).map(|t| l.severity_text = t).is_some(),
            Field::SeverityNumber => int(v).map(|n| l.severity_number = n as i32).is_some(),
            Field::Time => nanos(v).map(|n| l.time_unix_nano = n).is_some(),
            Field::ObservedTime => nanos(v).map(|n| l.observed_time_unix_nano = n).is_some(),
            _ => false,
        }
    }
}

struct MetricMut<'a> {
    metric: &'a mut Metric,
    resource: &'a mut Vec<KeyValue>,
    scope: Option<&'a InstrumentationScope>,
}

impl Item for MetricMut<'_> {
    fn get(&self, field: &Field) -> Value {
        origin_get(self.resource, self.scope, field).unwrap_or_else(|| {
            MetricItem { metric: self.metric, origin: Origin { resource: None, scope: self.scope } }.get(field)
        })
    }
}

impl ItemMut for MetricMut<'_> {
    fn map(&mut self, m: MapRef) -> Option<&mut Vec<KeyValue>> {
        (m == MapRef::Resource).then_some(&mut *self.resource)
    }

    fn set(&mut self, field: &Field, v: Value) -> bool {
        let m = &mut *self.metric;
        match field {
            Field::Name => text(v).map(|t| m.name = t).is_some(),
            Field::Description => text(v).map(|t| m.description = t).is_some(),
            Field::Unit => text(v).map(|t| m.unit = t).is_some(),
            _ => false,
        }
    }
}

struct PointMut<'a> {
    attributes: &'a mut Vec<KeyValue>,
    value: Option<&'a mut Option<number_data_point::Value>>,
    time: u64,
    start: u64,
    metric: (&'a str, &'a str, i64),
    resource: &'a mut Vec<KeyValue>,
    scope: Option<&'a InstrumentationScope>,
}

impl Item for PointMut<'_> {
    fn get(&self, field: &Field) -> Value {
        origin_get(self.resource, self.scope, field).unwrap_or_else(|| {
            DataPointItem {
                attributes: self.attributes,
                value: self.value.as_ref().and_then(|v| v.as_ref()),
                time: self.time,
                start: self.start,
                metric: self.metric,
                origin: Origin { resource: None, scope: self.scope },
            }
            .get(field)
        })
    }
}

impl ItemMut for PointMut<'_> {
    fn map(&mut self, m: MapRef) -> Option<&mut Vec<KeyValue>> {
        Some(match m {
            MapRef::Attributes => &mut *self.attributes,
            MapRef::Resource => &mut *self.resource,
        })
    }

    fn set(&mut self, field: &Field, v: Value) -> bool {
        let Some(slot) = self.value.as_mut() else { return false };
        match (field, v) {
            (Field::ValueDouble, Value::Double(d)) => **slot = Some(number_data_point::Value::AsDouble(d)),
            (Field::ValueDouble, Value::Int(i)) => **slot = Some(number_data_point::Value::AsDouble(i as f64)),
            (Field::ValueInt, Value::Int(i)) => **slot = Some(number_data_point::Value::AsInt(i)),
            _ => return false,
        }
        true
    }
}

pub struct TransformProcessor {
    compiled: Compiled,
    error_mode: ErrorMode,
    /// Its name and where batches dropped under `propagate` are counted.
    counted: Option<(String, std::sync::Arc<crate::telemetry::metrics::Metrics>)>,
    /// Failures under `ignore` are logged at most every few seconds (one bad field in every item
    /// must not flood the log).
    warnings: crate::telemetry::log_limit::LogLimit,
}

/// A statement that failed at run time under `error_mode: propagate`.
#[derive(Debug)]
struct Failed(String);

impl TransformProcessor {
    pub fn new(cfg: &TransformConfig) -> Result<TransformProcessor, String> {
        Ok(TransformProcessor {
            compiled: cfg.compile().map_err(|(k, m)| format!("{k}: {m}"))?,
            error_mode: cfg.error_mode,
            counted: None,
            warnings: crate::telemetry::log_limit::LogLimit::new(std::time::Duration::from_secs(10)),
        })
    }

    /// Runs every statement on `request`; under `propagate`, stops at the first that fails.
    fn apply(&self, request: &mut Request) -> Result<(), Failed> {
        let mode = self.error_mode;
        let mut failed = None;
        let mut run = |statements: &[Statement], item: &mut dyn ItemMut| {
            if failed.is_some() {
                return;
            }
            for s in statements {
                if let Err(e) = s.run(item) {
                    match mode {
                        ErrorMode::Propagate => {
                            failed = Some(e);
                            return;
                        }
                        ErrorMode::Ignore => {
                            if let Some(held_back) = self.warnings.allow() {
                                tracing::warn!(error = %e, held_back, "transform: a statement failed; going on");
                            }
                        }
                        ErrorMode::Silent => {}
                    }
                }
            }
        };
        match request {
            Request::Traces(t) => {
                for g in &self.compiled.traces {
                    for rs in &mut t.resource_spans {
                        let resource = &mut rs.resource.get_or_insert_with(Resource::default).attributes;
                        if g.context == Context::Resource {
                            run(&g.statements, &mut ResourceMut { resource });
                            continue;
                        }
                        for ss in &mut rs.scope_spans {
                            let scope = ss.scope.as_ref();
                            for span in &mut ss.spans {
                                run(&g.statements, &mut SpanMut { span, resource: &mut *resource, scope });
                            }
                        }
                    }
                }
            }
            Request::Logs(l) => {
                for g in &self.compiled.logs {
                    for rl in &mut l.resource_logs {
                        let resource = &mut rl.resource.get_or_insert_with(Resource::default).attributes;
                        if g.context == Context::Resource {
                            run(&g.statements, &mut ResourceMut { resource });
                            continue;
                        }
                        for sl in &mut rl.scope_logs {
                            let scope = sl.scope.as_ref();
                            for log in &mut sl.log_records {
                                run(&g.statements, &mut LogMut { log, resource: &mut *resource, scope });
                            }
                        }
                    }
                }
            }
            Request::Metrics(m) => {
                for g in &self.compiled.metrics {
                    for rm in &mut m.resource_metrics {
                        let resource = &mut rm.resource.get_or_insert_with(Resource::default).attributes;
                        if g.context == Context::Resource {
                            run(&g.statements, &mut ResourceMut { resource });
                            continue;
                        }
                        for sm in &mut rm.scope_metrics {
                            let scope = sm.scope.as_ref();
                            for metric in &mut sm.metrics {
                                if g.context == Context::Metric {
                                    run(&g.statements, &mut MetricMut { metric, resource: &mut *resource, scope });
                                    continue;
                                }
                                let (name, unit, kind) =
                                    (metric.name.clone(), metric.unit.clone(), metric_type(metric));
                                let info = (name.as_str(), unit.as_str(), kind);
                                macro_rules! points {
                                    ($points:expr, $value:ident) => {
                                        for p in $points.iter_mut() {
                                            let mut item = PointMut {
                                                attributes: &mut p.attributes,
                                                value: $value!(p),
                                                time: p.time_unix_nano,
                                                start: p.start_time_unix_nano,
                                                metric: info,
                                                resource: &mut *resource,
                                                scope,
                                            };
                                            run(&g.statements, &mut item);
                                        }
                                    };
                                }
                                macro_rules! number {
                                    ($p:ident) => {
                                        Some(&mut $p.value)
                                    };
                                }
                                macro_rules! none {
                                    ($p:ident) => {
                                        None
                                    };
                                }
                                match metric.data.as_mut() {
                                    Some(metric::Data::Gauge(d)) => points!(d.data_points, number),
                                    Some(metric::Data::Sum(d)) => points!(d.data_points, number),
                                    Some(metric::Data::Histogram(d)) => points!(d.data_points, none),
                                    Some(metric::Data::ExponentialHistogram(d)) => points!(d.data_points, none),
                                    Some(metric::Data::Summary(d)) => points!(d.data_points, none),
                                    None => {}
                                }
                            }
                        }
                    }
                }
            }
        }
        failed.map_or(Ok(()), |e| Err(Failed(e)))
    }
}

impl Processor for TransformProcessor {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        if let Ok(request) = batch.request_mut()
            && let Err(Failed(e)) = self.apply(request)
        {
            // As the collector's `propagate`: the batch goes no further (counted as dropped on
            // purpose: its client was answered when it was admitted).
            tracing::warn!(error = %e, items = batch.items(), "transform: a statement failed; the batch is dropped (error_mode: propagate)");
            if let Some((name, telemetry)) = &self.counted {
                telemetry.processor_dropped[batch.signal().index()]
                    .with_label_values(&[name.as_str()])
                    .inc_by(batch.items() as u64);
            }
            return;
        }
        out.push(batch);
    }
}

/// The `transform` processor's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::processor::<TransformConfig>(
    "transform",
    crate::registry::ALL_SIGNALS,
    "changes spans, metrics, data points, logs and resources with OTTL statements",
);

impl crate::pipeline::component::ProcessorSettings for TransformConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        TransformConfig::validate(self).map_err(Into::into)
    }

    fn build(
        &self,
        ctx: &crate::pipeline::component::ProcessorContext,
    ) -> Result<Box<dyn crate::pipeline::Processor>, String> {
        let mut processor = TransformProcessor::new(self)?;
        processor.counted = Some((ctx.name.clone(), ctx.telemetry.clone()));
        Ok(Box::new(processor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests_support::traces;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};

    fn processor(j: serde_json::Value) -> TransformProcessor {
        let cfg: TransformConfig = serde_json::from_value(j).unwrap();
        cfg.validate().unwrap();
        TransformProcessor::new(&cfg).unwrap()
    }

    #[test]
    fn statements_change_spans_where_their_condition_holds() {
        let mut req = traces(2);
        {
            let s = &mut req.resource_spans[0].scope_spans[0].spans;
            s[0].name = "a".into();
            s[0].attributes.push(KeyValue {
                key: "url".into(),
                value: Some(AnyValue { value: Some(any_value::Value::StringValue("/x?token=secret&y=1".into())) }),
                ..Default::default()
            });
            s[1].name = "b".into();
        }
        let p = processor(serde_json::json!({
            "trace_statements": [
                {"context": "resource", "statements": [r#"set(attributes["env"], "prod")"#]},
                {"context": "span", "statements": [
                    r#"set(attributes["tagged"], true) where name == "a""#,
                    r#"replace_pattern(attributes["url"], "token=[^&]*", "token=***")"#,
                    r#"set(status.code, STATUS_CODE_ERROR) where resource.attributes["env"] == "prod""#,
                    r#"set(name, "renamed") where name == "b""#,
                ]},
            ]
        }));
        let mut r = Request::Traces(req);
        p.apply(&mut r).unwrap();
        let Request::Traces(t) = r else { panic!() };
        let rs = &t.resource_spans[0];
        assert!(rs.resource.as_ref().unwrap().attributes.iter().any(|a| a.key == "env"));
        let spans = &rs.scope_spans[0].spans;
        let get = |s: &Span, k: &str| s.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone()?.value);
        assert_eq!(get(&spans[0], "tagged"), Some(any_value::Value::BoolValue(true)));
        assert_eq!(get(&spans[0], "url"), Some(any_value::Value::StringValue("/x?token=***&y=1".into())));
        assert_eq!(get(&spans[1], "tagged"), None);
        assert_eq!(spans[1].name, "renamed");
        assert!(spans.iter().all(|s| s.status.as_ref().is_some_and(|st| st.code == 2)));
    }

    #[test]
    fn map_functions() {
        let mut req = traces(1);
        let attrs: Vec<KeyValue> = ["keep", "tmp.a", "tmp.b", "long", "x", "y"]
            .iter()
            .map(|k| KeyValue {
                key: k.to_string(),
                value: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("{k}-value-1234567890"))) }),
                ..Default::default()
            })
            .collect();
        req.resource_spans[0].scope_spans[0].spans[0].attributes = attrs;
        let p = processor(serde_json::json!({"trace_statements": [{"context": "span", "statements": [
            r#"delete_matching_keys(attributes, "^tmp\\.")"#,
            r#"truncate_all(attributes, 8)"#,
            r#"replace_all_patterns(attributes, "key", "^long$", "short")"#,
            r#"limit(attributes, 2, ["keep"])"#,
        ]}]}));
        let mut r = Request::Traces(req);
        p.apply(&mut r).unwrap();
        let Request::Traces(t) = r else { panic!() };
        let a = &t.resource_spans[0].scope_spans[0].spans[0].attributes;
        let keys: Vec<&str> = a.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, vec!["keep", "short"]);
        assert_eq!(a[0].value.as_ref().unwrap().value, Some(any_value::Value::StringValue("keep-val".into())));
    }

    #[test]
    fn bad_statements_are_config_errors_with_their_place() {
        let cfg: TransformConfig = serde_json::from_value(serde_json::json!({
            "log_statements": [{"context": "log", "statements": [r#"set(body, "x")"#, r#"set(bdy, "x")"#]}]
        }))
        .unwrap();
        let (key, msg) = cfg.validate().unwrap_err();
        assert_eq!(key, "log_statements.0.statements.1");
        assert!(msg.contains("column 5: unknown path bdy"), "{msg}");
        let cfg: TransformConfig =
            serde_json::from_value(serde_json::json!({"log_statements": [{"context": "span", "statements": []}]}))
                .unwrap();
        assert_eq!(cfg.validate().unwrap_err().0, "log_statements.0.context");
    }

    fn text_value(v: &str) -> Option<AnyValue> {
        Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) })
    }

    /// A log request as a receiver hands it on (encoded), through the processor as a pipeline
    /// runs it: JSON bodies become attributes, severity numbers come from the text, routes are
    /// templated, and a statement that fails drops the batch only under `propagate`.
    #[test]
    fn a_realistic_log_pipeline() {
        use crate::pipeline::Signal;
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
        use prost::Message;
        let record = |body: &str, severity: &str, route: &str| LogRecord {
            time_unix_nano: 1,
            body: text_value(body),
            severity_text: severity.into(),
            attributes: vec![KeyValue { key: "http.route".into(), value: text_value(route), ..Default::default() }],
            ..Default::default()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: text_value("checkout"),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        record(r#"{"user":"ann","status":500,"http.route":"/from-body"}"#, "Info", "/user/42/cart/7"),
                        record(r#"{"msg":"slow"}"#, "WARNING", "/health"),
                        record("not json", "error", "/user/9/cart/1"),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = bytes::Bytes::from(request.encode_to_vec());
        let statements = serde_json::json!([
            r#"merge_maps(attributes, ParseJSON(body), "upsert") where IsMatch(body, "^\\{")"#,
            r#"set(severity_number, SEVERITY_NUMBER_INFO) where IsMatch(severity_text, "(?i)info")"#,
            r#"set(severity_number, SEVERITY_NUMBER_WARN) where IsMatch(severity_text, "(?i)warn")"#,
            r#"set(severity_number, SEVERITY_NUMBER_ERROR) where ToLowerCase(severity_text) == "error""#,
            r#"replace_match(attributes["http.route"], "/user/*/cart/*", "/user/{id}/cart/{item}")"#,
            r#"set(attributes["status"], Int(attributes["status"])) where attributes["status"] != nil"#,
            r#"set(attributes["service"], Concat([resource.attributes["service.name"], ToUpperCase(severity_text)], ":"))"#,
        ]);
        let mut p = processor(serde_json::json!({"log_statements": [{"context": "log", "statements": statements}]}));
        let mut out = Vec::new();
        p.process(Batch::from_encoded(Signal::Logs, bytes.clone(), 3), &mut out);
        assert_eq!(out.len(), 1);
        let Ok(Request::Logs(logs)) = out[0].request() else { panic!("not logs") };
        let records = &logs.resource_logs[0].scope_logs[0].log_records;
        let attr =
            |i: usize, k: &str| records[i].attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone()?.value);
        let text = |v: &str| Some(any_value::Value::StringValue(v.into()));
        assert_eq!(records.iter().map(|r| r.severity_number).collect::<Vec<_>>(), [9, 13, 17]);
        assert_eq!(attr(0, "user"), text("ann"));
        assert_eq!(
            attr(0, "status"),
            Some(any_value::Value::IntValue(500)),
            "JSON numbers are doubles; Int made it an int"
        );
        assert_eq!(attr(0, "http.route"), text("/from-body"), "upsert replaced the route, which then did not match");
        assert_eq!(attr(1, "msg"), text("slow"));
        assert_eq!(attr(1, "http.route"), text("/health"));
        assert_eq!(attr(2, "http.route"), text("/user/{id}/cart/{item}"));
        assert_eq!(attr(2, "user"), None, "a body that is not JSON was left alone");
        assert_eq!(attr(2, "service"), text("checkout:ERROR"));
        assert_eq!(records[0].attributes.len(), 4, "http.route, user, status, service");

        // Without the guard, the third body does not parse: propagate drops the batch, ignore
        // goes on with the next statement.
        let failing = serde_json::json!([
            r#"merge_maps(attributes, ParseJSON(body), "upsert")"#,
            r#"set(attributes["after"], true)"#,
        ]);
        for (mode, batches, tagged) in [("propagate", 0, 0), ("ignore", 1, 3), ("silent", 1, 3)] {
            let mut p = processor(serde_json::json!({
                "error_mode": mode,
                "log_statements": [{"context": "log", "statements": failing}],
            }));
            let mut out = Vec::new();
            p.process(Batch::from_encoded(Signal::Logs, bytes.clone(), 3), &mut out);
            assert_eq!(out.len(), batches, "{mode}");
            if let Some(b) = out.first() {
                let Ok(Request::Logs(logs)) = b.request() else { panic!("not logs") };
                let records = &logs.resource_logs[0].scope_logs[0].log_records;
                assert_eq!(records.iter().filter(|r| r.attributes.iter().any(|a| a.key == "after")).count(), tagged);
                assert!(records[2].attributes.iter().all(|a| a.key != "user"), "{mode}");
            }
        }
    }
}
