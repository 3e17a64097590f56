//! Where a pod's token may go, decided once for the webhook (at admission) and the injector
//! (before any connection): pure rules, no I/O.
//!
//! - [`VaultHosts`]: a vault is a Key Vault or Managed HSM host of the public or a sovereign
//!   cloud (plus suffixes an operator adds), on port 443; Managed HSM serves keys only.
//! - [`authority`]: Microsoft Entra's authority hosts, and which authority an injector may use
//!   when the setting comes from its environment (which a ConfigMap can feed).
//! - [`cloud`]: Azure's clouds: the suffix bare vault names get, the authority, the scopes.
//! - [`resolve`]: the fixed-address map (`host=ip:port,...`), which may never cover Entra's
//!   hosts or the managed-identity endpoint.
//!
//! ```
//! use akv_placeholder::{ObjectKind, Vault};
//! use akv_trust::VaultHosts;
//!
//! let hosts = VaultHosts::default();
//! assert!(hosts.check(&Vault::parse("https://kv1.vault.azure.cn").unwrap(), ObjectKind::Secret).is_ok());
//! assert!(hosts.check(&Vault::parse("https://kv1.example.com").unwrap(), ObjectKind::Secret).is_err());
//! ```

pub mod authority;
pub mod cloud;
pub mod resolve;
mod vault_hosts;

pub use authority::{AuthorityError, ENTRA_AUTHORITY_HOSTS, IMDS_HOST};
pub use cloud::{AZURE_CLOUDS, Cloud, CloudError};
pub use resolve::{ResolveError, parse_resolve};
pub use vault_hosts::{
    HostError, KEY_VAULT_SUFFIXES, MANAGED_HSM_SUFFIXES, VaultHosts, validate_suffix,
};
