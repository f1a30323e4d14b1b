//! A lean Kubernetes API client: how switchyard reaches the API server (`auth_type`), and
//! list-and-watch of the few kinds it reads (pods, replicasets, namespaces, nodes, services,
//! endpointslices), keeping only the fields it uses.
//!
//! Why not the `kube` crate: it brings `k8s-openapi` (every type of every API group, a large
//! share of a clean build) and keeps whole objects (managed fields, every annotation) in its
//! reflector stores, which is where the collector's k8sattributes memory goes. What switchyard
//! needs is one GET with a bearer token and a stream of JSON lines; the objects are parsed into
//! small structs that name only the fields used, and the consumers keep less still.

pub mod api;
pub mod kubeconfig;
pub mod objects;
pub mod watch;

/// The stand-in API server the tests of every component that watches run against.
#[cfg(test)]
#[path = "../../tests/common/kube_api.rs"]
pub mod standin;

pub use api::{ApiClient, ApiError, ApiSettings, AuthType};
pub use watch::{Change, Resource, Synced};
