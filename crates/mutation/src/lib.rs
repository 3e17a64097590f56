//! Planning the admission mutation of a Pod: pure, no I/O.
//!
//! The webhook and the offline `inject` command share this crate, so a manifest reviewed with
//! `akv-env-webhook inject` is exactly what admission would produce. It works in two steps so it
//! stays free of I/O: [`plan`] reads the pod and validates every placeholder, then says which
//! images' ENTRYPOINT/CMD it needs ([`Plan::images_to_look_up`]); the caller looks them up and
//! [`Plan::patch`] returns one JSON patch of explicit operations against the JSON the API server
//! sent, so fields this crate does not know (newer Kubernetes versions) survive untouched.
//!
//! ```
//! use akv_mutation::{plan, Config, Entrypoints};
//! use serde_json::json;
//!
//! let pod = json!({
//!     "metadata": {"name": "app"},
//!     "spec": {"containers": [{
//!         "name": "app", "image": "example/app", "command": ["/app"],
//!         "env": [{"name": "DB_PASSWORD", "value": "db-password@azurekeyvault?vault=prod-kv"}]
//!     }]}
//! });
//! let config = Config::new("example/akv-env:1");
//! let plan = plan(&pod, None, &config).unwrap();
//! assert!(plan.images_to_look_up().is_empty()); // `command` is set
//! let mutation = plan.patch(&Entrypoints::new()).unwrap();
//! assert_eq!(mutation.wrapped.len(), 1);
//! ```

mod compose;
mod config;
mod entrypoint;
mod error;
mod patch;
mod plan;
mod rotation;
mod termination;
mod trust;

pub use compose::{CAPTURE_PREFIX, FLAG_CAPTURE, FLAG_COMPOSE_ARG, FLAG_COMPOSE_ENV};
pub use config::{
    ANNOTATION_ALLOW_PLACEHOLDER_TEXT, ANNOTATION_INJECT, ANNOTATION_STATUS, ANNOTATION_VAULT,
    ARCH_NODE_SELECTOR, CA_BUNDLE_ENV, CA_BUNDLE_FILE, Config, DEFAULT_VAULT_ENV,
    FLAG_ALLOW_PLACEHOLDER_TEXT, INSTALL_MOUNT_PATH, STATUS_INJECTED,
};
pub use entrypoint::ImageEntrypoint;
pub use error::{Denial, Problem};
pub use patch::Mutation;
pub use plan::{
    ContainerKind, ContainerRef, Entrypoints, ImageLookup, Plan, Skip, needs_namespace_vault, plan,
    plan_in,
};
pub use rotation::{ANNOTATION_CERT_EXPIRY_MARGIN, ANNOTATION_RESTART_ON_CHANGE};
pub use termination::DEFAULT_TERMINATION_MESSAGE_PATH;
pub use trust::{
    ANNOTATION_ALLOW_MANAGED_IDENTITY, ANNOTATION_AUTH, ANNOTATION_CLOUD, LITERAL_FLAGS,
    NamespaceFacts, TrustPolicy, asks_for_managed_identity, needs_namespace_cloud,
};
