//! switchyard: a telemetry gateway. Receivers take OTLP (and more) from services, pipelines of
//! processors batch and transform it, and exporters fan it out to backends.

pub mod attributes;
pub mod auth;
pub mod body;
pub mod cause;
pub mod components;
pub mod compression;
pub mod config;
pub mod connectors;
pub mod cors;
pub mod exporters;
pub mod extensions;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod hexfmt;
pub mod kafka;
pub mod kubernetes;
pub mod md5;
pub mod model;
pub mod net;
pub mod percent;
pub mod pipeline;
pub mod processors;
pub mod proto;
pub mod protowire;
pub mod receivers;
pub mod registry;
pub mod rpc_status;
pub mod secret;
pub mod service;
pub mod signal;
pub mod telemetry;
pub mod timefmt;
pub mod tls;
pub mod wal;
