//! The contracts between the engine and the components: the settings of each kind of
//! component know how to check themselves and how to build or start what they describe, given
//! what the service hands them (their name, the service's self-telemetry, a stop signal). The
//! engine and the service only ever see these traits, never a concrete component.

use super::admission::Capacity;
use super::intake::Intake;
use super::queue::QueueSettings;
use super::runner::{BoxFuture, Exporter, Processor};
use super::status::StatusCell;
use crate::secret::Scrubber;
use crate::telemetry::metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A component's own checks of its settings (see `Invalid`).
pub type Checked = Result<(), crate::config::Invalid>;

/// The tasks a started receiver or extension runs until its stop signal.
pub type Tasks = Vec<JoinHandle<()>>;

/// Where a `file_storage` extension keeps state: its directory (created if need be), whether
/// writes are synced to disk, and how long to wait for a lock on a file another holder has.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageLocation {
    pub directory: PathBuf,
    pub fsync: bool,
    pub timeout: Duration,
}

/// What a receiver is started with.
pub struct ReceiverContext {
    /// Where it hands data: its routes into pipelines, its counters, its delivery notices.
    pub intake: Arc<Intake>,
    /// Fires when the receiver must stop taking data.
    pub stop: CancellationToken,
    /// How long requests in flight may take to finish after `stop`.
    pub grace: Duration,
    /// The directory (and whether to fsync) of the `file_storage` extension it names in
    /// `storage`, if it names one.
    pub storage: Option<(PathBuf, bool)>,
    /// Where it listens from (`Listeners::tcp`, `udp`): a replaced receiver's successor takes
    /// over its sockets.
    pub listeners: crate::net::Listeners,
    /// The running authenticator extensions, for its listeners' `auth` keys.
    pub auth: crate::auth::Authenticators,
}

/// The settings of one receiver, which can start it.
pub trait ReceiverSettings: std::fmt::Debug + Send + Sync + 'static {
    fn validate(&self) -> Checked {
        Ok(())
    }
    /// Whether a replacement (at a reload that changed its settings) may start while this one
    /// still runs: true for receivers that only listen (the new one takes a new port before
    /// the old one closes); false for those that would do the same work twice (a file tailer,
    /// a Kafka group member, a scraper), which stop first.
    fn overlaps(&self) -> bool {
        true
    }
    /// The extension it keeps state in (`storage:`), if any.
    fn storage(&self) -> Option<&str> {
        None
    }
    /// The authenticator extensions its listeners name (`auth.authenticator`), with the key
    /// that names each.
    fn authenticators(&self) -> Vec<(String, &str)> {
        Vec::new()
    }
    fn start(&self, ctx: ReceiverContext) -> BoxFuture<'_, Result<Tasks, String>>;
}

/// What a processor is built with.
pub struct ProcessorContext {
    /// Its id, as metric labels and logs show it.
    pub name: String,
    pub telemetry: Arc<Metrics>,
    /// Fires when the service stops (for a processor's own background tasks).
    pub stop: CancellationToken,
}

/// The settings of one processor, which can build an instance of it for one pipeline.
pub trait ProcessorSettings: std::fmt::Debug + Send + Sync + 'static {
    fn validate(&self) -> Checked {
        Ok(())
    }
    fn build(&self, ctx: &ProcessorContext) -> Result<Box<dyn Processor>, String>;
    /// A memory budget shared by every pipeline listing this processor (the memory_limiter):
    /// receivers claim room in it before decoding and admitting data.
    fn memory_budget(&self, _ctx: &ProcessorContext) -> Option<Result<Arc<Capacity>, String>> {
        None
    }
}

/// What an exporter is built with.
pub struct ExporterContext {
    /// Its id, as metric labels and logs show it.
    pub name: String,
    pub telemetry: Arc<Metrics>,
    /// Where it listens from, if it listens (the prometheus exporter): a replaced exporter's
    /// successor takes over its sockets.
    pub listeners: crate::net::Listeners,
    /// The running authenticator extensions, for its `auth` key (see `auth::client`).
    pub auth: crate::auth::Authenticators,
}

/// The settings of one exporter, which can build it and say how its sending queue runs.
pub trait ExporterSettings: std::fmt::Debug + Send + Sync + 'static {
    fn validate(&self) -> Checked {
        Ok(())
    }
    fn build<'a>(&'a self, ctx: &'a ExporterContext) -> BoxFuture<'a, Result<Arc<dyn Exporter>, String>>;
    /// Its sending queue; by default one consumer and the default size.
    fn queue(&self) -> QueueSettings {
        QueueSettings { num_consumers: 1, ..Default::default() }
    }
    /// What takes its secrets (credentials, header values, URL user info) out of the failure
    /// reasons its queue logs.
    fn scrubber(&self) -> Scrubber {
        Scrubber::default()
    }
    /// The authenticator extension its `auth.authenticator` names, if any.
    fn authenticator(&self) -> Option<&str> {
        None
    }
    /// Where it sends, for `validate` (URLs with their user info redacted).
    fn destination(&self) -> String {
        "(in this process)".into()
    }
}

/// What a connector is built with.
pub struct ConnectorContext {
    /// Its id, as metric labels and logs show it.
    pub name: String,
    pub telemetry: Arc<Metrics>,
}

/// The settings of one connector: the exporter of some pipelines and the receiver of others.
pub trait ConnectorSettings: std::fmt::Debug + Send + Sync + 'static {
    fn validate(&self) -> Checked {
        Ok(())
    }
    /// Checks what it names against the pipelines that take data from it, per signal it is fed
    /// (`routing` sends only to those): the key at fault and why.
    fn check_downstream(&self, _downstream: &[(crate::signal::Signal, Vec<String>)]) -> Checked {
        Ok(())
    }
    fn build(&self, ctx: &ConnectorContext) -> Result<Arc<dyn super::connector::Connector>, String>;
}

/// What an extension is started with.
pub struct ExtensionContext {
    pub name: String,
    /// The service's status (for health checks).
    pub status: StatusCell,
    pub stop: CancellationToken,
    /// Where it listens from (see `ReceiverContext::listeners`).
    pub listeners: crate::net::Listeners,
    /// The running pipelines and their exporters' states (for health checks).
    pub board: crate::pipeline::board::Board,
}

/// The settings of one extension, which can start it.
pub trait ExtensionSettings: std::fmt::Debug + Send + Sync + 'static {
    fn validate(&self) -> Checked {
        Ok(())
    }
    /// Starts what it runs; by default nothing (an authenticator has no task of its own).
    fn start(&self, _ctx: ExtensionContext) -> BoxFuture<'_, Result<Tasks, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// For a storage extension: where it keeps state (see `StorageLocation`). `None` for
    /// extensions that keep no state for others.
    fn storage(&self) -> Option<Result<StorageLocation, String>> {
        None
    }
    /// For an authenticator extension with a server side (`bearertokenauth`, `basicauth` with
    /// `htpasswd`, `oidc`): what checks requests. `None` for other extensions.
    fn server_authenticator(&self) -> Option<Result<Arc<dyn crate::auth::ServerAuthenticator>, String>> {
        None
    }
    /// For an authenticator extension with a client side (`bearertokenauth`, `basicauth` with
    /// `client_auth`, `oauth2client`, `headers_setter`): what sets an exporter's credentials.
    fn client_authenticator(&self) -> Option<Result<Arc<dyn crate::auth::client::ClientAuthenticator>, String>> {
        None
    }
}
