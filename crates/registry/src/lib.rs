//! Reading image entrypoints (ENTRYPOINT and CMD) from OCI registries, with a cache.
//!
//! The webhook needs an image's ENTRYPOINT and CMD when a container sets no `command`. This
//! crate answers that the way the kubelet would pull: the same reference defaults (`docker.io`,
//! `library/`, `:latest`), the same pull-secret matching, the node's platform in a multi-arch
//! index, and Azure Container Registry through the webhook's identity. Every lookup is bounded
//! by a deadline so a hanging registry cannot stall admission, and answers are cached: by
//! reference for a TTL, by digest for good.
//!
//! Layout: [`options`](RegistryOptions) say what a resolver may do, `reference` reads image
//! names as the kubelet does, `resolver` holds the caches and tries each way of asking,
//! `distribution` speaks the registry API, `credentials` reads pull secrets, `acr` exchanges
//! the webhook's Entra token, `egress` is the one HTTP client set-up and its address policy.

mod acr;
mod credentials;
mod distribution;
mod egress;
mod error;
mod options;
pub mod platform;
mod reference;
mod resolver;

pub use acr::{ACR_USERNAME, AcrAuth, AcrTokenSource, BoxError, TokenFuture, is_acr_host};
pub use credentials::{
    Credential, CredentialsError, DOCKERCFG_KEY, DOCKERCONFIGJSON_KEY, DockerConfig,
    matching_credentials,
};
pub use egress::{CaPemError, Refused, internal_kind, pem_certificates};
pub use error::LookupError;
pub use options::{CacheStats, ImageEntrypoint, RegistryOptions};
pub use platform::{Platform, PlatformParseError};
pub use reference::parse_reference;
pub use resolver::ImageResolver;
