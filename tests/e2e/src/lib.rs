//! End-to-end harness without a cluster: the real webhook admits a Deployment's pod, and a
//! kubelet stand-in ([`runner::PodRunner`]) runs the admitted pod with Debian's `runc`, its
//! images pulled from a real registry, against the local Key Vault.
//!
//! The pure parts (kubelet's `$(VAR)` expansion, the effective entrypoint, env, user, the OCI
//! runtime config) are in [`expand`], [`process`] and [`spec`], tested as tables; the rest
//! wires real tools together.

pub mod app;
pub mod bins;
pub mod cluster;
pub mod error;
pub mod expand;
pub mod image;
pub mod process;
pub mod runner;
pub mod scan;
pub mod spec;
pub mod story;
pub mod webhook;

pub use error::{Error, Result};
pub use runner::{ContainerRun, NodeEnvironment, PodRun, PodRunner};
