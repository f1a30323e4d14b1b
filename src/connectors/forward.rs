//! The `forward` connector: joins pipelines of one signal; everything a pipeline hands it goes
//! on to every pipeline that lists it as a receiver.

use crate::pipeline::Batch;
use crate::pipeline::component::{ConnectorContext, ConnectorSettings};
use crate::pipeline::connector::Connector;
use crate::signal::Signal;
use serde::Deserialize;
use std::sync::Arc;

/// It has no settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

struct Forward;

impl Connector for Forward {
    fn route(&self, batch: Batch, downstream: &[String], out: &mut Vec<(usize, Batch)>) {
        let Some(last) = downstream.len().checked_sub(1) else { return };
        for i in 0..last {
            out.push((i, batch.clone()));
        }
        out.push((last, batch));
    }
}

impl ConnectorSettings for ForwardConfig {
    fn build(&self, _ctx: &ConnectorContext) -> Result<Arc<dyn Connector>, String> {
        Ok(Arc::new(Forward))
    }
}

/// The `forward` connector's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::connector::<ForwardConfig>(
    "forward",
    crate::registry::ALL_SIGNALS,
    &[(Signal::Traces, Signal::Traces), (Signal::Metrics, Signal::Metrics), (Signal::Logs, Signal::Logs)],
    "joins pipelines of one signal: all data goes on to every pipeline that takes from it",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Request;
    use crate::pipeline::tests_support::traces;

    #[test]
    fn every_pipeline_downstream_gets_the_whole_batch() {
        let batch = Batch::from_request(Request::Traces(traces(3)));
        let mut out = Vec::new();
        Forward.route(batch, &["traces/a".into(), "traces/b".into()], &mut out);
        let got: Vec<(usize, usize)> = out.iter().map(|(i, b)| (*i, b.items())).collect();
        assert_eq!(got, [(0, 3), (1, 3)]);
    }
}
