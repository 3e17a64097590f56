//! Resolving placeholders against Azure Key Vault with the pod's own identity.
//!
//! Knows nothing of Kubernetes: given explicit identity and transport settings and a list of
//! parsed [`akv_placeholder::Reference`]s, it returns one [`Secret`] or one [`ResolveError`] per
//! reference. It chooses the credential ([`AuthConfig::choose`]), builds an HTTPS client with
//! built-in trust roots ([`http_client`]) that the SDK uses for both Entra ID and Key Vault, and
//! fetches each distinct object once (one per vault first, so the challenge and the token are met
//! once), then the rest at most 64 at a time over HTTP/1.1 and 256 over HTTP/2, retrying
//! throttling and transient faults inside one deadline ([`Resolver::resolve_all`]).

mod config;
mod credential;
mod error;
mod fetch;
mod render;
mod secret;
mod transport;
mod version;

/// The vault host policy, re-exported so the injector needs no other crate for it.
pub use akv_trust::{Cloud, CloudError, VaultHosts};
pub use config::{
    AuthConfig, AuthMode, ConfigError, TransportConfig, choose_authority, choose_authority_in,
    parse_resolve,
};
pub use error::{FailureKind, ResolveError, cause_chain};
pub use fetch::{FetchOptions, Resolver};
pub use secret::Secret;
pub use transport::http_client;
pub use version::{CheckError, Current, Tracked, TrackedKind};
