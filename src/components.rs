//! Every component type switchyard has, by its registration. Adding a component type is its
//! module (which declares its `REGISTRATION`) and one line here.

use crate::config::ComponentKind;
use crate::registry::Registration;
use crate::{connectors, exporters, extensions, processors, receivers};

pub const ALL: &[&Registration] = &[
    &receivers::otlp::REGISTRATION,
    &receivers::jaeger::REGISTRATION,
    &receivers::zipkin::REGISTRATION,
    &receivers::prometheus::REGISTRATION,
    &receivers::prometheusremotewrite::REGISTRATION,
    &receivers::filelog::REGISTRATION,
    &receivers::kafka::REGISTRATION,
    &receivers::syslog::REGISTRATION,
    &receivers::fluentforward::REGISTRATION,
    &processors::batch::REGISTRATION,
    &processors::attributes::REGISTRATION,
    &processors::resource::REGISTRATION,
    &processors::resourcedetection::REGISTRATION,
    &processors::k8sattributes::REGISTRATION,
    &processors::probabilistic_sampler::REGISTRATION,
    &processors::transform::REGISTRATION,
    &processors::redaction::REGISTRATION,
    &processors::memory_limiter::REGISTRATION,
    &processors::tail_sampling::REGISTRATION,
    &processors::filter::REGISTRATION,
    &processors::cumulativetodelta::REGISTRATION,
    &processors::deltatocumulative::REGISTRATION,
    &processors::groupbytrace::REGISTRATION,
    &exporters::debug::REGISTRATION,
    &exporters::file::REGISTRATION,
    &exporters::otlp::REGISTRATION,
    &exporters::otlphttp::REGISTRATION,
    &exporters::clickhouse::REGISTRATION,
    &exporters::elasticsearch::REGISTRATION,
    &exporters::kafka::REGISTRATION,
    &exporters::loki::REGISTRATION,
    &exporters::prometheus::REGISTRATION,
    &exporters::prometheusremotewrite::REGISTRATION,
    &connectors::count::REGISTRATION,
    &connectors::forward::REGISTRATION,
    &connectors::routing::REGISTRATION,
    &connectors::servicegraph::REGISTRATION,
    &connectors::spanmetrics::REGISTRATION,
    &extensions::file_storage::REGISTRATION,
    &extensions::health_check::REGISTRATION,
    &crate::auth::bearer::REGISTRATION,
    &crate::auth::basic::REGISTRATION,
    &crate::auth::oidc::REGISTRATION,
    &crate::auth::oauth2client::REGISTRATION,
    &crate::auth::headers_setter::REGISTRATION,
];

/// The registration of the `kind` type called `type_name` (or one of its aliases).
pub fn find(kind: ComponentKind, type_name: &str) -> Option<&'static Registration> {
    ALL.iter().copied().find(|r| r.kind == kind && r.is(type_name))
}

pub fn type_names(kind: ComponentKind) -> Vec<&'static str> {
    ALL.iter().filter(|r| r.kind == kind).map(|r| r.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_registered_once_under_each_of_its_names() {
        for r in ALL {
            for name in std::iter::once(r.name).chain(r.aliases.iter().copied()) {
                let same = ALL.iter().filter(|o| o.kind == r.kind && o.is(name)).count();
                assert_eq!(same, 1, "{} {name} is registered {same} times", r.kind.singular());
            }
            assert_eq!(r.signals.is_empty(), r.kind == ComponentKind::Extension, "{}", r.name);
        }
    }
}
