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

    fn check_downstream(&self, downstream: &[(Signal, Vec<String>)]) -> crate::pipeline::component::Checked {
        let routes = self.compile()?;
        for (i, r) in self.table.iter().enumerate() {
            if let Some(p) = r.pipelines.iter().enumerate().find(|(j, p)| r.pipelines[..*j].contains(p)).map(|(_, p)| p)
            {
                return Err(Invalid::new(format!("table.{i}.pipelines"), format!("pipeline \"{p}\" is named twice")));
            }
        }
        for (signal, ids) in downstream {
            // Every route that applies to this signal, and the default, must lead to pipelines
            // of it: the collector refuses the same.
            let named = routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.signal.is_none_or(|s| s == *signal))
                .flat_map(|(i, r)| r.pipelines.iter().map(move |p| (format!("table.{i}.pipelines"), p)))
                .chain(self.default_pipelines.iter().map(|p| ("default_pipelines".to_string(), p)));
            for (key, p) in named {
                if !ids.contains(p) {
                    return Err(Invalid::new(
                        key,
                        format!(
                            "pipeline \"{p}\" does not take {signal} from this connector, which is fed {signal} (list the connector among that pipeline's receivers, or use one routing connector per signal); it feeds with {signal}: {}",
                            if ids.is_empty() { "nothing".to_string() } else { ids.join(", ") }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn build(&self, ctx: &ConnectorContext) -> Result<Arc<dyn Connector>, String> {
        let routes = self.compile().map_err(|i| format!("{}: {}", i.key, i.message))?;
        let unrouted =
            Signal::ALL.map(|s| ctx.telemetry.connector_unrouted.with_label_values(&[&ctx.name, s.as_str()]));
        Ok(Arc::new(Routing { routes, default: self.default_pipelines.clone(), unrouted }))
    }
}

struct Routing {
    routes: Vec<Route>,
    default: Vec<String>,
    /// Items that matched no route where there is no default, per signal.
    unrouted: [prometheus::IntCounter; 3],
}

/// Where an item goes: a route's index, or `DEFAULT`.
type Dest = usize;
const DEFAULT: Dest = usize::MAX;

impl Routing {
    /// The routes that apply to data of `signal`, with their indices.
    fn applicable(&self, signal: Signal) -> impl Iterator<Item = (usize, &Route)> {
        self.routes.iter().enumerate().filter(move |(_, r)| r.signal.is_none_or(|s| s == signal))
    }

    /// The first route an item matches among `routes`: a route on the request is decided
    /// once per batch (`on_request`, by position in `routes`), the others ask `pick(context)`
    /// for the item of their context; else `DEFAULT`.
    fn first<'a>(
        &self,
        routes: &[(usize, &Route)],
        on_request: &[bool],
        mut pick: impl FnMut(Context) -> Option<&'a dyn Item>,
    ) -> Dest {
        for (k, (i, r)) in routes.iter().enumerate() {
            let hit = match (&r.condition, r.context) {
                (None, _) => true,
                (Some(_), Context::Request) => on_request[k],
                (Some(c), context) => pick(context).is_some_and(|item| matches(c, item)),
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
        if part.items() == 0 {
            return;
        }
        let targets: Vec<usize> =
            self.pipelines(dest).iter().filter_map(|p| downstream.iter().position(|d| d == p)).collect();
        match targets.split_last() {
            Some((last, rest)) => {
                for i in rest {
                    out.push((*i, part.clone()));
                }
                out.push((*last, part));
            }
            // Matched no route and there is no default: dropped, as the collector drops it.
            None => self.unrouted[part.signal().index()].inc_by(part.items() as u64),
        }
    }
}

impl Connector for Routing {
    fn route(&self, mut batch: Batch, downstream: &[String], out: &mut Vec<(usize, Batch)>) {
        let signal = batch.signal();
        let routes: Vec<(usize, &Route)> = self.applicable(signal).collect();
        let on_request: Vec<bool> = {
            let request = RequestItem { context: batch.context() };
            routes
                .iter()
                .map(|(_, r)| {
                    r.context == Context::Request && r.condition.as_ref().is_some_and(|c| matches(c, &request))
                })
                .collect()
        };
        // Routes on the request alone decide for the whole batch, which moves undecoded.
        if routes.iter().all(|(_, r)| r.context == Context::Request) {
            let dest = self.first(&routes, &on_request, |_| None);
            self.emit(dest, batch, downstream, out);
            return;
        }
        if let Err(e) = batch.request() {
            // Receivers validate what they take, so this is a bug upstream; the data is not
            // reported delivered.
            tracing::error!(error = %e, "routing: cannot decode a batch; dropped");
            batch.cancel_deliveries();
            return;
        }
        let Ok((whole, kin)) = batch.into_pieces() else { return };
        let decide = Decide { routing: self, routes: &routes, on_request: &on_request };
        let parts = match whole {
            Request::Traces(r) => split_traces(&decide, r),
            Request::Metrics(r) => split_metrics(&decide, r),
            Request::Logs(r) => split_logs(&decide, r),
        };
        for (dest, request) in parts {
            self.emit(dest, kin.part(request), downstream, out);
        }
    }
}

/// What routes one batch: the routes of its signal and how its request fared with them.
struct Decide<'a> {
    routing: &'a Routing,
    routes: &'a [(usize, &'a Route)],
    on_request: &'a [bool],
}

impl Decide<'_> {
    fn first<'a>(&self, pick: impl FnMut(Context) -> Option<&'a dyn Item>) -> Dest {
        self.routing.first(self.routes, self.on_request, pick)
    }

    /// Whether routes look below the resource (then single items move).
    fn per_item(&self) -> bool {
        self.routes.iter().any(|(_, r)| !matches!(r.context, Context::Resource | Context::Request))
    }
}

/// Moves `items` into groups by `dests` (one per item, in order); when all go the same way,
/// the whole list moves at once.
fn group<T>(items: Vec<T>, dests: &[Dest]) -> Vec<(Dest, Vec<T>)> {
    match dests.first() {
        None => Vec::new(),
        Some(first) if dests.iter().all(|d| d == first) => vec![(*first, items)],
        Some(_) => {
            let mut groups: BTreeMap<Dest, Vec<T>> = BTreeMap::new();
            for (item, dest) in items.into_iter().zip(dests) {
                groups.entry(*dest).or_default().push(item);
            }
            groups.into_iter().collect()
        }
    }
}

fn split_traces(decide: &Decide, r: ExportTraceServiceRequest) -> Vec<(Dest, Request)> {
    let mut by_dest: BTreeMap<Dest, Vec<t::ResourceSpans>> = BTreeMap::new();
    for rs in r.resource_spans {
        let t::ResourceSpans { resource, scope_spans, schema_url } = rs;
        let resource_item = ResourceItem { origin: Origin { resource: resource.as_ref(), scope: None } };
        if !decide.per_item() {
            let dest = decide.first(|_| Some(&resource_item as &dyn Item));
            by_dest.entry(dest).or_default().push(t::ResourceSpans { resource, scope_spans, schema_url });
            continue;
        }
        let mut per: BTreeMap<Dest, Vec<t::ScopeSpans>> = BTreeMap::new();
        for ss in scope_spans {
            let origin = Origin { resource: resource.as_ref(), scope: ss.scope.as_ref() };
            let dests: Vec<Dest> = ss
                .spans
                .iter()
                .map(|span| {
                    let item = SpanItem { span, origin };
                    decide.first(|c| match c {
                        Context::Resource => Some(&resource_item as &dyn Item),
                        Context::Span => Some(&item as &dyn Item),
                        _ => None,
                    })
                })
                .collect();
            let t::ScopeSpans { scope, spans, schema_url } = ss;
            for (dest, spans) in group(spans, &dests) {
                per.entry(dest).or_default().push(t::ScopeSpans {
                    scope: scope.clone(),
                    spans,
                    schema_url: schema_url.clone(),
                });
            }
        }
        for (dest, scope_spans) in per {
            let rs = t::ResourceSpans { resource: resource.clone(), scope_spans, schema_url: schema_url.clone() };
            by_dest.entry(dest).or_default().push(rs);
        }
    }
    by_dest
        .into_iter()
        .map(|(d, resource_spans)| (d, Request::Traces(ExportTraceServiceRequest { resource_spans })))
        .collect()
}

fn split_logs(decide: &Decide, r: ExportLogsServiceRequest) -> Vec<(Dest, Request)> {
    let mut by_dest: BTreeMap<Dest, Vec<l::ResourceLogs>> = BTreeMap::new();
    for rl in r.resource_logs {
        let l::ResourceLogs { resource, scope_logs, schema_url } = rl;
        let resource_item = ResourceItem { origin: Origin { resource: resource.as_ref(), scope: None } };
        if !decide.per_item() {
            let dest = decide.first(|_| Some(&resource_item as &dyn Item));
            by_dest.entry(dest).or_default().push(l::ResourceLogs { resource, scope_logs, schema_url });
            continue;
        }
        let mut per: BTreeMap<Dest, Vec<l::ScopeLogs>> = BTreeMap::new();
        for sl in scope_logs {
            let origin = Origin { resource: resource.as_ref(), scope: sl.scope.as_ref() };
            let dests: Vec<Dest> = sl
                .log_records
                .iter()
                .map(|log| {
                    let item = LogItem { log, origin };
                    decide.first(|c| match c {
                        Context::Resource => Some(&resource_item as &dyn Item),
                        Context::LogRecord => Some(&item as &dyn Item),
                        _ => None,
                    })
                })
                .collect();
            let l::ScopeLogs { scope, log_records, schema_url } = sl;
            for (dest, log_records) in group(log_records, &dests) {
                per.entry(dest).or_default().push(l::ScopeLogs {
                    scope: scope.clone(),
                    log_records,
                    schema_url: schema_url.clone(),
                });
            }
        }
        for (dest, scope_logs) in per {
            let rl = l::ResourceLogs { resource: resource.clone(), scope_logs, schema_url: schema_url.clone() };
            by_dest.entry(dest).or_default().push(rl);
        }
    }
    by_dest
        .into_iter()
        .map(|(d, resource_logs)| (d, Request::Logs(ExportLogsServiceRequest { resource_logs })))
        .collect()
}

fn split_metrics(decide: &Decide, r: ExportMetricsServiceRequest) -> Vec<(Dest, Request)> {
    let mut by_dest: BTreeMap<Dest, Vec<m::ResourceMetrics>> = BTreeMap::new();
    let by_point = decide.routes.iter().any(|(_, r)| r.context == Context::DataPoint);
    for rm in r.resource_metrics {
        let m::ResourceMetrics { resource, scope_metrics, schema_url } = rm;
        let resource_item = ResourceItem { origin: Origin { resource: resource.as_ref(), scope: None } };
        if !decide.per_item() {
            let dest = decide.first(|_| Some(&resource_item as &dyn Item));
            by_dest.entry(dest).or_default().push(m::ResourceMetrics { resource, scope_metrics, schema_url });
            continue;
        }
        let mut per: BTreeMap<Dest, Vec<m::ScopeMetrics>> = BTreeMap::new();
        for sm in scope_metrics {
            let origin = Origin { resource: resource.as_ref(), scope: sm.scope.as_ref() };
            // Per metric: one destination, or (routing by data point) one per point.
            let mut dests: Vec<Dest> = Vec::with_capacity(sm.metrics.len());
            let mut points: Vec<Option<Vec<Dest>>> = Vec::with_capacity(sm.metrics.len());
            for metric in &sm.metrics {
                let item = MetricItem { metric, origin };
                let decide_one = |point: Option<&DataPointItem>| {
                    decide.first(|c| match c {
                        Context::Resource => Some(&resource_item as &dyn Item),
                        Context::Metric => Some(&item as &dyn Item),
                        Context::DataPoint => point.map(|p| p as &dyn Item),
                        _ => None,
                    })
                };
                let each: Vec<Dest> = if by_point {
                    data_points(metric, origin).iter().map(|p| decide_one(Some(p))).collect()
                } else {
                    Vec::new()
                };
                match each.first() {
                    // A metric without points, or all of them one way: the metric moves whole.
                    None => {
                        dests.push(decide_one(None));
                        points.push(None);
                    }
                    Some(first) if each.iter().all(|d| d == first) => {
                        dests.push(*first);
                        points.push(None);
                    }
                    Some(_) => {
                        dests.push(DEFAULT);
                        points.push(Some(each));
                    }
                }
            }
            let m::ScopeMetrics { scope, metrics, schema_url } = sm;
            let mut scoped: BTreeMap<Dest, Vec<m::Metric>> = BTreeMap::new();
            for ((metric, dest), split) in metrics.into_iter().zip(dests).zip(points) {
                match split {
                    None => scoped.entry(dest).or_default().push(metric),
                    Some(each) => {
                        let mut distinct = each.clone();
                        distinct.sort_unstable();
                        distinct.dedup();
                        for d in distinct {
                            let mut part = metric.clone();
                            retain_points(&mut part, |i| each[i] == d);
                            scoped.entry(d).or_default().push(part);
                        }
                    }
                }
            }
            for (dest, metrics) in scoped {
                per.entry(dest).or_default().push(m::ScopeMetrics {
                    scope: scope.clone(),
                    metrics,
                    schema_url: schema_url.clone(),
                });
            }
        }
        for (dest, scope_metrics) in per {
            let rm = m::ResourceMetrics { resource: resource.clone(), scope_metrics, schema_url: schema_url.clone() };
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
    fn a_pipeline_named_twice_is_refused() {
        let cfg: RoutingConfig = crate::config::parse_yaml(
            "r.yaml",
            "table:\n  - condition: \"true\"\n    pipelines: [traces/a, traces/a]\n",
        )
        .unwrap();
        let e = cfg.check_downstream(&[(Signal::Traces, vec!["traces/a".into()])]).unwrap_err();
        assert_eq!(e.key, "table.0.pipelines");
        assert!(e.message.contains("named twice"), "{}", e.message);
    }

    #[test]
    fn unrouted_items_are_counted() {
        let telemetry = Arc::new(crate::telemetry::metrics::Metrics::new());
        let cfg: RoutingConfig = crate::config::parse_yaml(
            "r.yaml",
            "table:\n  - condition: attributes[\"tenant\"] == \"a\"\n    pipelines: [traces/a]\n",
        )
        .unwrap();
        let c = cfg.build(&ConnectorContext { name: "routing/t".into(), telemetry: telemetry.clone() }).unwrap();
        assert_eq!(route(&*c, Batch::from_request(two_tenants())), [("traces/a".into(), 3)]);
        let counted = telemetry.connector_unrouted.with_label_values(&["routing/t", "traces"]).get();
        assert_eq!(counted, 3, "tenant b's spans matched nothing");
    }

    #[test]
    fn request_names_match_without_regard_to_case_and_identities_keep_theirs() {
        let c = routing(
            "table:\n  - condition: request[\"auth.claims.tenantId\"] == \"acme\"\n    context: request\n    pipelines: [traces/a]\ndefault_pipelines: [traces/rest]\n",
        );
        let batch = Batch::from_request(two_tenants())
            .with_context(Arc::new(vec![("auth.claims.tenantId".to_string(), "acme".to_string())]));
        assert_eq!(route(&*c, batch), [("traces/a".into(), 6)]);
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
        assert_eq!(
            route(&*c, Batch::from_request(request.clone())),
            [("traces/a".into(), 2), ("traces/rest".into(), 1)]
        );
        // A metric without data points still goes somewhere (the default, here): it is not lost.
        let Request::Metrics(mut empty) = request else { unreachable!() };
        empty.resource_metrics[0].scope_metrics[0]
            .metrics
            .push(m::Metric { name: "no points".into(), ..Default::default() });
        let down: Vec<String> = DOWN.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        c.route(Batch::from_request(Request::Metrics(empty)), &down, &mut out);
        let names = |i: usize| -> Vec<String> {
            out.iter()
                .filter(|(j, _)| *j == i)
                .flat_map(|(_, b)| match b.decoded() {
                    Some(Request::Metrics(r)) => {
                        r.resource_metrics[0].scope_metrics[0].metrics.iter().map(|m| m.name.clone()).collect()
                    }
                    _ => Vec::new(),
                })
                .collect()
        };
        assert_eq!(names(2), ["g", "no points"]);
    }
}
