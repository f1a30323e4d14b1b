//! Views of OTLP items as conditions see them: a span, a span event, a metric, a data point, a
//! log record, each with its resource and instrumentation scope.

use super::expr::{Field, Item, Value};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, span};

pub fn value(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        None => Value::Nil,
        Some(any_value::Value::StringValue(s)) => Value::Str(s.clone()),
        Some(any_value::Value::IntValue(i)) => Value::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::Double(*d),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::BytesValue(b)) => Value::Bytes(b.clone()),
        Some(any_value::Value::KvlistValue(m)) => Value::Map(m.values.clone()),
        Some(any_value::Value::ArrayValue(a)) => Value::List(a.values.clone()),
        // A string-table index (profiles) means nothing without its table.
        #[allow(unreachable_patterns)]
        Some(_) => Value::Nil,
    }
}

fn attribute(attrs: &[KeyValue], key: &str) -> Value {
    attrs.iter().find(|a| a.key == key).map(|a| value(a.value.as_ref())).unwrap_or(Value::Nil)
}

/// What every item shares: its resource and scope.
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    pub resource: Option<&'a Resource>,
    pub scope: Option<&'a InstrumentationScope>,
}

impl Origin<'_> {
    fn get(&self, field: &Field) -> Option<Value> {
        Some(match field {
            Field::ResourceAttribute(k) => self.resource.map(|r| attribute(&r.attributes, k)).unwrap_or(Value::Nil),
            Field::ResourceAttributes => Value::Map(self.resource.map(|r| r.attributes.clone()).unwrap_or_default()),
            Field::ScopeName => Value::Str(self.scope.map(|s| s.name.clone()).unwrap_or_default()),
            Field::ScopeVersion => Value::Str(self.scope.map(|s| s.version.clone()).unwrap_or_default()),
            _ => return None,
        })
    }
}

fn nanos(n: u64) -> Value {
    Value::Int(n as i64)
}

pub struct SpanItem<'a> {
    pub span: &'a Span,
    pub origin: Origin<'a>,
}

fn span_field(s: &Span, field: &Field) -> Value {
    match field {
        Field::Name => Value::Str(s.name.clone()),
        Field::Kind => Value::Int(i64::from(s.kind)),
        Field::StatusCode => Value::Int(s.status.as_ref().map(|st| i64::from(st.code)).unwrap_or(0)),
        Field::StatusMessage => Value::Str(s.status.as_ref().map(|st| st.message.clone()).unwrap_or_default()),
        Field::TraceState => Value::Str(s.trace_state.clone()),
        Field::Duration => Value::Int(s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as i64),
        Field::StartTime => nanos(s.start_time_unix_nano),
        Field::EndTime => nanos(s.end_time_unix_nano),
        Field::Attribute(k) => attribute(&s.attributes, k),
        Field::Attributes => Value::Map(s.attributes.clone()),
        _ => Value::Nil,
    }
}

impl Item for SpanItem<'_> {
    fn get(&self, field: &Field) -> Value {
        self.origin.get(field).unwrap_or_else(|| span_field(self.span, field))
    }
}

pub struct SpanEventItem<'a> {
    pub event: &'a span::Event,
    pub span: &'a Span,
    pub origin: Origin<'a>,
}

impl Item for SpanEventItem<'_> {
    fn get(&self, field: &Field) -> Value {
        if let Some(v) = self.origin.get(field) {
            return v;
        }
        match field {
            Field::Name => Value::Str(self.event.name.clone()),
            Field::Time => nanos(self.event.time_unix_nano),
            Field::Attribute(k) => attribute(&self.event.attributes, k),
            Field::Attributes => Value::Map(self.event.attributes.clone()),
            Field::ParentName => Value::Str(self.span.name.clone()),
            Field::ParentKind => Value::Int(i64::from(self.span.kind)),
            Field::ParentAttribute(k) => attribute(&self.span.attributes, k),
            _ => Value::Nil,
        }
    }
}

/// OTTL's METRIC_DATA_TYPE_* number of a metric.
pub fn metric_type(m: &Metric) -> i64 {
    match m.data {
        None => 0,
        Some(metric::Data::Gauge(_)) => 1,
        Some(metric::Data::Sum(_)) => 2,
        Some(metric::Data::Histogram(_)) => 3,
        Some(metric::Data::ExponentialHistogram(_)) => 4,
        Some(metric::Data::Summary(_)) => 5,
    }
}

pub struct MetricItem<'a> {
    pub metric: &'a Metric,
    pub origin: Origin<'a>,
}

impl Item for MetricItem<'_> {
    fn get(&self, field: &Field) -> Value {
        if let Some(v) = self.origin.get(field) {
            return v;
        }
        match field {
            Field::Name => Value::Str(self.metric.name.clone()),
            Field::Description => Value::Str(self.metric.description.clone()),
            Field::Unit => Value::Str(self.metric.unit.clone()),
            Field::MetricType => Value::Int(metric_type(self.metric)),
            _ => Value::Nil,
        }
    }
}

/// A data point of any metric type: what conditions can see of it.
pub struct DataPointItem<'a> {
    pub attributes: &'a [KeyValue],
    pub value: Option<&'a number_data_point::Value>,
    pub time: u64,
    pub start: u64,
    /// The metric's name, unit and type.
    pub metric: (&'a str, &'a str, i64),
    pub origin: Origin<'a>,
}

impl Item for DataPointItem<'_> {
    fn get(&self, field: &Field) -> Value {
        if let Some(v) = self.origin.get(field) {
            return v;
        }
        match field {
            Field::Attribute(k) => attribute(self.attributes, k),
            Field::Attributes => Value::Map(self.attributes.to_vec()),
            Field::ValueDouble => match self.value {
                Some(number_data_point::Value::AsDouble(d)) => Value::Double(*d),
                _ => Value::Nil,
            },
            Field::ValueInt => match self.value {
                Some(number_data_point::Value::AsInt(i)) => Value::Int(*i),
                _ => Value::Nil,
            },
            Field::Time => nanos(self.time),
            Field::StartTime => nanos(self.start),
            Field::ParentName => Value::Str(self.metric.0.to_string()),
            Field::Unit => Value::Str(self.metric.1.to_string()),
            Field::ParentMetricType => Value::Int(self.metric.2),
            _ => Value::Nil,
        }
    }
}

/// Each data point of `m` as conditions see it, in order (see `crate::pipeline::retain_points`).
pub fn data_points<'a>(m: &'a Metric, origin: Origin<'a>) -> Vec<DataPointItem<'a>> {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let metric = (m.name.as_str(), m.unit.as_str(), metric_type(m));
    let item = |attributes: &'a [KeyValue], value, time, start| DataPointItem {
        attributes,
        value,
        time,
        start,
        metric,
        origin,
    };
    match &m.data {
        Some(Data::Gauge(g)) => g
            .data_points
            .iter()
            .map(|p| item(&p.attributes, p.value.as_ref(), p.time_unix_nano, p.start_time_unix_nano))
            .collect(),
        Some(Data::Sum(s)) => s
            .data_points
            .iter()
            .map(|p| item(&p.attributes, p.value.as_ref(), p.time_unix_nano, p.start_time_unix_nano))
            .collect(),
        Some(Data::Histogram(h)) => {
            h.data_points.iter().map(|p| item(&p.attributes, None, p.time_unix_nano, p.start_time_unix_nano)).collect()
        }
        Some(Data::ExponentialHistogram(h)) => {
            h.data_points.iter().map(|p| item(&p.attributes, None, p.time_unix_nano, p.start_time_unix_nano)).collect()
        }
        Some(Data::Summary(s)) => {
            s.data_points.iter().map(|p| item(&p.attributes, None, p.time_unix_nano, p.start_time_unix_nano)).collect()
        }
        None => Vec::new(),
    }
}

pub struct LogItem<'a> {
    pub log: &'a LogRecord,
    pub origin: Origin<'a>,
}

impl Item for LogItem<'_> {
    fn get(&self, field: &Field) -> Value {
        if let Some(v) = self.origin.get(field) {
            return v;
        }
        match field {
            Field::Body => value(self.log.body.as_ref()),
            Field::SeverityNumber => Value::Int(i64::from(self.log.severity_number)),
            Field::SeverityText => Value::Str(self.log.severity_text.clone()),
            Field::Attribute(k) => attribute(&self.log.attributes, k),
            Field::Attributes => Value::Map(self.log.attributes.clone()),
            Field::Time => nanos(self.log.time_unix_nano),
            Field::ObservedTime => nanos(self.log.observed_time_unix_nano),
            _ => Value::Nil,
        }
    }
}

/// A request's metadata (for conditions about where a batch came from): header names
/// lower-cased, as receivers with `include_metadata` record them, with `auth.…` identities.
pub struct RequestItem<'a> {
    pub context: Option<&'a [(String, String)]>,
}

impl Item for RequestItem<'_> {
    fn get(&self, field: &Field) -> Value {
        match field {
            Field::Request(name) => self
                .context
                .and_then(|c| c.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                .map_or(Value::Nil, |(_, v)| Value::Str(v.clone())),
            _ => Value::Nil,
        }
    }
}

/// A resource alone (for conditions about whole resources).
pub struct ResourceItem<'a> {
    pub origin: Origin<'a>,
}

impl Item for ResourceItem<'_> {
    fn get(&self, field: &Field) -> Value {
        self.origin.get(field).unwrap_or(Value::Nil)
    }
}
