//! The mutating admission webhook (`serve`) and its offline twin (`inject`).
//!
//! Decisions live in `akv-mutation`; this crate wires HTTP, TLS, Kubernetes reads, registry
//! lookups and metrics around it.

pub mod acr;
pub mod admission;
pub mod cli;
pub mod duration;
pub mod inject;
pub mod limits;
pub mod lookup;
pub mod metrics;
pub mod migrate;
pub mod namespaces;
pub mod pipeline;
pub mod selector;
pub mod server;
pub mod tls;
