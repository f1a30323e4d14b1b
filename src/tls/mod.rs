//! TLS with the collector's `tls` settings: `client` for exporters and scrapes dialling out,
//! `server` for receivers taking connections.

pub mod client;
pub mod server;
