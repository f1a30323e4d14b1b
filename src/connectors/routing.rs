//! The `routing` connector: sends each item to the pipelines of the first route of its `table`
//! whose condition it matches, and what matches none to `default_pipelines` (or nowhere). A
//! route's condition is evaluated in its `context`: `resource` (the default: whole resources
//! move), `span`, `metric`, `datapoint`, `log` (single items move), or `request` (the
//! metadata of the request the data came in with: the whole batch moves, undecoded). Data is
//! moved, not copied, except to a route that names several pipelines.

use crate::config::Invalid;
use crate::pipeline::component::{ConnectorContext, ConnectorSettings};
use crate::pipeline::connector::Connector;
use crate::pipeline::{Batch, Request, retain_points};
use crate::processors::filter::ErrorMode;
use crate::processors::ottl::expr::{Context, Expr, Item, compile, matches};
use crate::processors::ottl::items::{
    DataPointItem, LogItem, MetricItem, Origin, RequestItem, ResourceItem, SpanItem, data_points,
};
use crate::signal::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::{logs::v1 as l, metrics::v1 as m, trace::v1 as t};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One entry of `table`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `route() where <condition>` (or `route()`: everything).
    pub statement: Option<String>,
    /// A condition alone.
    pub condition: Option<String>,
    /// Where the condition looks: resource (default), span, metric, datapoint, log, request.
    pub context: Option<String>,
    pub pipelines: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    pub table: Vec<RouteConfig>,
    #[serde(default)]
    pub default_pipelines: Vec<String>,
    #[serde(default)]
    pub error_mode: ErrorMode,
    /// Accepted as `true` (what every route does now); `false` was removed from the collector.
    #[serde(default)]
    pub match_once: Option<bool>,
}

/// The contexts a route may name, and the signal each applies to (none: every signal).
const CONTEXTS: &[(&str, Context, Option<Signal>)] = &[
    ("resource", Context::Resource, None),
    ("request", Context::Request, None),
    ("span", Context::Span, Some(Signal::Traces)),
    ("metric", Context::Metric, Some(Signal::Metrics)),
    ("datapoint", Context::DataPoint, Some(Signal::Metrics)),
    ("log", Context::LogRecord, Some(Signal::Logs)),
];

/// A compiled route: where its condition looks, the condition (none: always), its pipelines.
#[derive(Debug)]
struct Route {
    context: Context,
    signal: Option<Signal>,
    condition: Option<Expr>,
    pipelines: Vec<String>,
}

impl RouteConfig {
    fn compile(&self) -> Result<Route, (String, String)> {
        let context_name = self.context.as_deref().unwrap_or("resource");
        let Some(&(_, context, signal)) = CONTEXTS.iter().find(|(n, _, _)| *n == context_name) else {
            let known: Vec<&str> = CONTEXTS.iter().map(|c| c.0).collect();
            return Err((
                "context".into(),
                format!("unknown context \"{context_name}\" (known: {})", known.join(", ")),
            ));
        };
        let source = match (&self.statement, &self.condition) {
            (Some(_), Some(_)) => {
                return Err(("statement".into(), "give a statement or a condition, not both".into()));
            }
            (None, None) => {
                return Err(("condition".into(), "give a condition (or a statement: route() where …)".into()));
            }
            (None, Some(c)) => Some(("condition", c.trim())),
            (Some(s), None) => {
                let rest = s.trim().strip_prefix("route()").ok_or_else(|| {
                    ("statement".to_string(), format!("\"{s}\": a routing statement is route() where <condition>"))
                })?;
                let rest = rest.trim();
                if rest.is_empty() {
                    None
                } else {
                    let cond =
                        rest.strip_prefix("where").filter(|c| c.starts_with(char::is_whitespace)).ok_or_else(|| {
                            ("statement".to_string(), format!("\"{s}\": expected where <condition> after route()"))
                        })?;
                    Some(("statement", cond.trim()))
                }
            }
        };
        let condition = match source {
            None => None,
            Some((key, src)) => Some(compile(src, context).map_err(|e| (key.to_string(), format!("\"{src}\": {e}")))?),
        };
        if self.pipelines.is_empty() {
            return Err(("pipelines".into(), "name at least one pipeline to route to".into()));
        }
        Ok(Route { context, signal, condition, pipelines: self.pipelines.clone() })
    }
}

impl RoutingConfig {
    fn compile(&self) -> Result<Vec<Route>, Invalid> {
        if self.table.is_empty() {
            return Err(Invalid::new("table", "give at least one route"));
        }
        self.table
            .iter()
            .enumerate()
            .map(|(i, r)| r.compile().map_err(|(k, m)| Invalid::new(format!("table.{i}.{k}"), m)))
            .collect()
    }
}

impl ConnectorSettings for RoutingConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        if self.match_once == Some(false) {
            return Err(Invalid::new(
                "match_once",
                "match_once: false is no longer supported (the collector removed it): each item goes to the first route it matches",
            ));
        }
        self.compile().map(|_| ())
    }

    fn check_downstream(&self, downstream: &[String]) -> crate::pipeline::component::Checked {
        let named = self
            .table
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.pipelines.iter().map(move |p| (format!("table.{i}.pipelines"), p)))
            .chain(self.default_pipelines.iter().map(|p| ("default_pipelines".to_string(), p)));
        for (key, p) in named {
            if !downstream.contains(p) {
                return Err(Invalid::new(
                    key,
                    format!(
                        "pipeline \"{p}\" does not take data from this connector (list the connector among its receivers); it feeds: {}",
                        downstream.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn build(&self, _ctx: &ConnectorContext) -> Result<Arc<dyn Connector>, String> {
        let routes = self.compile().map_err(|i| format!("{}: {}", i.key, i.message))?;
        Ok(Arc::new(Routing { routes, default: self.default_pipelines.clone() }))
    }
}

struct Routing {
    routes: Vec<Route>,
    default: Vec<String>,
}

/// Where an item goes: a route's index, or `DEFAULT`.
type Dest = usize;
const DEFAULT: Dest = usize::MAX;

impl Routing {
    /// The routes that apply to data of `signal`, with their indices.
    fn applicable(&self, signal: Signal) -> impl Iterator<Item = (usize, &Route)> {
        self.routes.iter().enumerate().filter(move |(_, r)| r.signal.is_none_or(|s| s == signal))
    }

    /// The first route `item` matches among `routes` (those of one context are asked with
    /// the item of that context: `pick(context)`), else `DEFAULT`.
    fn first<'a>(&self, routes: &[(usize, &Route)], mut pick: impl FnMut(Context) -> Option<&'a dyn Item>) -> Dest {
        for (i, r) in routes {
            let hit = match (&r.condition, pick(r.context)) {
                (None, _) => true,
                (Some(c), Some(item)) => matches(c, item),
                (Some(_), None) => false,
            };
            if hit {
                return *i;
            }
        }
        DEFAULT
    }

    fn pipelines(&self, dest: Dest) -> &[String] {
        match self.routes.get(dest) {
            Some(r) => &r.pipelines,
            None => &self.default,
        }
    }

    /// Hands the part for `dest` to each of its pipelines (a copy for each but the last).
    fn emit(&self, dest: Dest, part: Batch, downstream: &[String], out: &mut Vec<(usize, Batch)>) {
        let targets: Vec<usize> =
            self.pipelines(dest).iter().filter_map(|p| downstream.iter().position(|d| d == p)).collect();
        if let Some((last, rest)) = targets.split_last() {
            for i in rest {
                out.push((*i, part.clone()));
            }
            out.push((*last, part));
        }
    }
}

impl Connector for Routing {
    fn route(&self, batch: Batch, downstream: &[String], out: &mut Vec<(usize, Batch)>) {
        let signal = batch.signal();
        let routes: Vec<(usize, &Route)> = self.applicable(signal).collect();
        let request = RequestItem { context: batch.context() };
        // Routes on the request alone decide for the whole batch, which moves undecoded.
        if routes.iter().all(|(_, r)| r.context == Context::Request) {
            let dest = self.first(&routes, |_| Some(&request as &dyn Item));
            self.emit(dest, batch, downstream, out);
            return;
        }
        let context = batch.context().map(|c| c.to_vec());
        let (whole, kin) = match batch.into_pieces() {
            Ok(pieces) => pieces,
            Err(e) => {
                tracing::error!(error = %e, "routing: cannot decode a batch; dropped");
                return;
            }
        };
        let request = RequestItem { context: context.as_deref() };
        let parts = match whole {
            Request::Traces(r) => split_traces(self, &routes, &request, r),
            Request::Metrics(r) => split_metrics(self, &routes, &request, r),
            Request::Logs(r) => split_logs(self, &routes, &request, r),
        };
        for (dest, request) in parts {
            self.emit(dest, kin.part(request), downstream, out);
        }
    }
}

/// Whether `routes` look below the resource (then single items move).
fn per_item(routes: &[(usize, &Route)]) -> bool {
    routes.iter().any(|(_, r)| !matches!(r.context, Context::Resource | Context::Request))
}

fn split_traces(
    routing: &Routing,
    routes: &[(usize, &Route)],
    request: &RequestItem,
    r: ExportTraceServiceRequest,
) -> Vec<(Dest, Request)> {
    let mut by_dest: BTreeMap<Dest, Vec<t::ResourceSpans>> = BTreeMap::new();
    let fine = per_item(routes);
    for rs in r.resource_spans {
        let resource = ResourceItem { origin: Origin { resource: rs.resource.as_ref(), scope: None } };
        if !fine {
            let dest = routing.first(routes, |c| match c {
                Context::Request => Some(request as &dyn Item),
                _ => Some(&resource as &dyn Item),
            });
            by_dest.entry(dest).or_default().push(rs);
            continue;
        }
        let mut per: BTreeMap<Dest, t::ResourceSpans> = BTreeMap::new();
        for ss in &rs.scope_spans {
            let origin = Origin { resource: rs.resource.as_ref(), scope: ss.scope.as_ref() };
            let mut scoped: BTreeMap<Dest, Vec<t::Span>> = BTreeMap::new();
            for span in &ss.spans {
                let item = SpanItem { span, origin };
                let dest = routing.first(routes, |c| match c {
                    Context::Request => Some(request as &dyn Item),
                    Context::Resource => Some(&resource as &dyn Item),
                    Context::Span => Some(&item as &dyn Item),
                    _ => None,
                });
                scoped.entry(dest).or_default().push(span.clone());
            }
            for (dest, spans) in scoped {
                let entry = per.entry(dest).or_insert_with(|| t::ResourceSpans {
                    resource: rs.resource.clone(),
                    scope_spans: Vec::new(),
                    schema_url: rs.schema_url.clone(),
                });
                entry.scope_spans.push(t::ScopeSpans {
                    scope: ss.scope.clone(),
                    spans,
                    schema_url: ss.schema_url.clone(),
                });
            }
        }
        for (dest, rs) in per {
            by_dest.entry(dest).or_default().push(rs);
        }
    }
    by_dest
        .into_iter()
        .map(|(d, resource_spans)| (d, Request::Traces(ExportTraceServiceRequest { resource_spans })))
        .collect()
}

fn split_logs(
    routing: &Routing,
    routes: &[(usize, &Route)],
    request: &RequestItem,
    r: ExportLogsServiceRequest,
) -> Vec<(Dest, Request)> {
    let mut by_dest: BTreeMap<Dest, Vec<l::ResourceLogs>> = BTreeMap::new();
    let fine = per_item(routes);
    for rl in r.resource_logs {
        let resource = ResourceItem { origin: Origin { resource: rl.resource.as_ref(), scope: None } };
        if !fine {
            let dest = routing.first(routes, |c| match c {
                Context::Request => Some(request as &dyn Item),
                _ => Some(&resource as &dyn Item),
            });
            by_dest.entry(dest).or_default().push(rl);
            continue;
        }
        let mut per: BTreeMap<Dest, l::ResourceLogs> = BTreeMap::new();
        for sl in &rl.scope_logs {
            let origin = Origin { resource: rl.resource.as_ref(), scope: sl.scope.as_ref() };
            let mut scoped: BTreeMap<Dest, Vec<l::LogRecord>> = BTreeMap::new();
            for log in &sl.log_records {
                let item = LogItem { log, origin };
                let dest = routing.first(routes, |c| match c {
                    Context::Request => Some(request as &dyn Item),
                    Context::Resource => Some(&resource as &dyn Item),
                    Context::LogRecord => Some(&item as &dyn Item),
                    _ => None,
                });
                scoped.entry(dest).or_default().push(log.clone());
            }
            for (dest, log_records) in scoped {
                let entry = per.entry(dest).or_insert_with(|| l::ResourceLogs {
                    resource: rl.resource.clone(),
                    scope_logs: Vec::new(),
                    schema_url: rl.schema_url.clone(),
                });
                entry.scope_logs.push(l::ScopeLogs {
                    scope: sl.scope.clone(),
                    log_records,
                    schema_url: sl.schema_url.clone(),
                });
            }
        }
        for (dest, rl) in per {
            by_dest.entry(dest).or_default().push(rl);
        }
    }
    by_dest
        .into_iter()
        .map(|(d, resource_logs)| (d, Request::Logs(ExportLogsServiceRequest { resource_logs })))
        .collect()
}

fn split_metrics(
    routing: &Routing,
    routes: &[(usize, &Route)],
    request: &RequestItem,
    r: ExportMetricsServiceRequest,
) -> Vec<(Dest, Request)> {
    let mut by_dest: BTreeMap<Dest, Vec<m::ResourceMetrics>> = BTreeMap::new();
    let fine = per_item(routes);
    let by_point = routes.iter().any(|(_, r)| r.context == Context::DataPoint);
    for rm in r.resource_metrics {
        let resource = ResourceItem { origin: Origin { resource: rm.resource.as_ref(), scope: None } };
        if !fine {
            let dest = routing.first(routes, |c| match c {
                Context::Request => Some(request as &dyn Item),
                _ => Some(&resource as &dyn Item),
            });
            by_dest.entry(dest).or_default().push(rm);
            continue;
        }
        let mut per: BTreeMap<Dest, m::ResourceMetrics> = BTreeMap::new();
        for sm in &rm.scope_metrics {
            let origin = Origin { resource: rm.resource.as_ref(), scope: sm.scope.as_ref() };
            let mut scoped: BTreeMap<Dest, Vec<m::Metric>> = BTreeMap::new();
            for metric in &sm.metrics {
                let item = MetricItem { metric, origin };
                let decide = |point: Option<&DataPointItem>| {
                    routing.first(routes, |c| match c {
                        Context::Request => Some(request as &dyn Item),
                        Context::Resource => Some(&resource as &dyn Item),
                        Context::Metric => Some(&item as &dyn Item),
                        Context::DataPoint => point.map(|p| p as &dyn Item),
                        _ => None,
                    })
                };
                if !by_point {
                    scoped.entry(decide(None)).or_default().push(metric.clone());
                    continue;
                }
                let dests: Vec<Dest> = data_points(metric, origin).iter().map(|p| decide(Some(p))).collect();
                let mut distinct = dests.clone();
                distinct.sort_unstable();
                distinct.dedup();
                for dest in distinct {
                    let mut copy = metric.clone();
                    retain_points(&mut copy, |i| dests[i] == dest);
                    scoped.entry(dest).or_default().push(copy);
                }
            }
            for (dest, metrics) in scoped {
                let entry = per.entry(dest).or_insert_with(|| m::ResourceMetrics {
                    resource: rm.resource.clone(),
                    scope_metrics: Vec::new(),
                    schema_url: rm.schema_url.clone(),
                });
                entry.scope_metrics.push(m::ScopeMetrics {
                    scope: sm.scope.clone(),
                    metrics,
                    schema_url: sm.schema_url.clone(),
                });
            }
        }
        for (dest, rm) in per {
            by_dest.entry(dest).or_default().push(rm);
        }
    }
    by_dest
        .into_iter()
        .map(|(d, resource_metrics)| (d, Request::Metrics(ExportMetricsServiceRequest { resource_metrics })))
        .collect()
}

/// The `routing` connector's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::connector::<RoutingConfig>(
    "routing",
    crate::registry::ALL_SIGNALS,
    &[(Signal::Traces, Signal::Traces), (Signal::Metrics, Signal::Metrics), (Signal::Logs, Signal::Logs)],
    "routes each resource, item or request to the pipelines of the first route whose condition it matches",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Request;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    /// Two resources (tenant a, tenant b), each with spans named by kind of request.
    fn two_tenants() -> Request {
        let span = |name: &str| t::Span { name: name.into(), ..Default::default() };
        let rs = |tenant: &str| t::ResourceSpans {
            resource: Some(Resource { attributes: vec![kv("tenant", tenant)], ..Default::default() }),
            scope_spans: vec![t::ScopeSpans {
                spans: vec![span("GET"), span("POST"), span("GET")],
                ..Default::default()
            }],
            ..Default::default()
        };
        Request::Traces(ExportTraceServiceRequest { resource_spans: vec![rs("a"), rs("b")] })
    }

    fn routing(yaml: &str) -> Arc<dyn Connector> {
        let cfg: RoutingConfig = crate::config::parse_yaml("r.yaml", yaml).unwrap();
        cfg.validate().unwrap();
        cfg.build(&ConnectorContext { name: "routing".into(), telemetry: Default::default() }).unwrap()
    }

    const DOWN: [&str; 3] = ["traces/a", "traces/b", "traces/rest"];

    fn route(c: &dyn Connector, batch: Batch) -> Vec<(String, usize)> {
        let down: Vec<String> = DOWN.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        c.route(batch, &down, &mut out);
        out.iter().map(|(i, b)| (down[*i].clone(), b.items())).collect()
    }

    #[test]
    fn resources_move_whole_to_the_first_route_they_match() {
        let c = routing(
            "table:\n  - condition: attributes[\"tenant\"] == \"a\"\n    pipelines: [traces/a]\n  - statement: route() where attributes[\"tenant\"] != \"\"\n    pipelines: [traces/b, traces/rest]\ndefault_pipelines: [traces/rest]\n",
        );
        let got = route(&*c, Batch::from_request(two_tenants()));
        assert_eq!(got, [("traces/a".into(), 3), ("traces/b".into(), 3), ("traces/rest".into(), 3)]);
    }

    #[test]
    fn spans_move_one_by_one_and_the_unmatched_go_to_the_default_or_nowhere() {
        let c = routing(
            "table:\n  - condition: name == \"POST\"\n    context: span\n    pipelines: [traces/b]\ndefault_pipelines: [traces/rest]\n",
        );
        assert_eq!(route(&*c, Batch::from_request(two_tenants())), [("traces/b".into(), 2), ("traces/rest".into(), 4)]);
        let none = routing("table:\n  - condition: name == \"POST\"\n    context: span\n    pipelines: [traces/b]\n");
        assert_eq!(route(&*none, Batch::from_request(two_tenants())), [("traces/b".into(), 2)]);
    }

    #[test]
    fn a_request_route_moves_the_batch_undecoded() {
        use prost::Message;
        let c = routing(
            "table:\n  - condition: request[\"x-tenant\"] == \"acme\"\n    context: request\n    pipelines: [traces/a]\ndefault_pipelines: [traces/rest]\n",
        );
        let Request::Traces(r) = two_tenants() else { unreachable!() };
        let encoded = || Batch::from_encoded(Signal::Traces, bytes::Bytes::from(r.encode_to_vec()), 6);
        let acme = encoded().with_context(Arc::new(vec![("x-tenant".to_string(), "acme".to_string())]));
        let down: Vec<String> = DOWN.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        c.route(acme, &down, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0, out[0].1.items(), out[0].1.is_encoded()), (0, 6, true));
        assert!(out[0].1.decoded().is_none(), "not decoded on the way");
        assert_eq!(route(&*c, encoded()), [("traces/rest".into(), 6)], "no metadata: the default");
    }

    #[test]
    fn data_points_are_routed_one_by_one() {
        use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint, metric::Data};
        let point = |v: &str| NumberDataPoint { attributes: vec![kv("tenant", v)], ..Default::default() };
        let request = Request::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![m::ResourceMetrics {
                scope_metrics: vec![m::ScopeMetrics {
                    metrics: vec![m::Metric {
                        name: "g".into(),
                        data: Some(Data::Gauge(Gauge { data_points: vec![point("a"), point("b"), point("a")] })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let c = routing(
            "table:\n  - condition: attributes[\"tenant\"] == \"a\"\n    context: datapoint\n    pipelines: [traces/a]\n  - condition: name == \"POST\"\n    context: span\n    pipelines: [traces/b]\ndefault_pipelines: [traces/rest]\n",
        );
        assert_eq!(route(&*c, Batch::from_request(request)), [("traces/a".into(), 2), ("traces/rest".into(), 1)]);
    }
}
