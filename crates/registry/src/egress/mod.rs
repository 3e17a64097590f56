//! How the webhook reaches registries: one HTTP client set-up for every registry call (image
//! manifests and blobs, token services, ACR's token exchange). Only the built-in webpki roots
//! plus the operator's `--registry-ca-file` (never the system store, which the `FROM scratch`
//! image does not have), only the proxy settings the webhook passed in (`akv_proxy`: reqwest
//! never reads the environment itself), no redirect for a request that carries a token, and
//! the address policy of [`policy`] on every hop. Behind a proxy the proxy resolves the names
//! it is asked for, so only literal addresses can be checked; hosts `NO_PROXY` lists are
//! connected to directly, through the guarded resolver. The proxy itself is the operator's and
//! may be internal: its name resolves unguarded.

pub(crate) mod policy;

use std::sync::Arc;

pub use policy::{Refused, internal_kind};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why a CA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaPemError {
    #[error("not a valid PEM certificate: {0}")]
    Invalid(String),
    #[error("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    Empty,
}

/// The certificates of a PEM file (other PEM sections, e.g. keys, are skipped).
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CaPemError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CaPemError::Invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(CaPemError::Empty);
    }
    for cert in &certs {
        // Fail at start-up, not at the first lookup.
        webpki_root_anchor(cert).map_err(CaPemError::Invalid)?;
    }
    Ok(certs)
}

fn webpki_root_anchor(cert: &CertificateDer<'_>) -> Result<(), String> {
    let mut store = rustls::RootCertStore::empty();
    store.add(cert.clone()).map_err(|e| e.to_string())
}

/// The HTTP clients of a resolver: one set-up, two redirect behaviours.
pub(crate) struct Egress {
    /// Follows redirects under the policy: manifests and blobs (blobs often live on a CDN).
    pub(crate) following: reqwest::Client,
    /// Follows none: token requests and ACR's exchange carry credentials in the request, which
    /// a 307/308 would re-send to wherever it points.
    pub(crate) direct: reqwest::Client,
    pub(crate) guard: Arc<policy::Guard>,
}

impl Egress {
    /// `named`: registries the operator listed (`--insecure-registry`), trusted as named.
    pub(crate) fn new(
        extra_roots: &[CertificateDer<'static>],
        allow_internal: bool,
        named: &[String],
        proxy: Option<&Arc<akv_proxy::ProxySettings>>,
    ) -> Result<Egress, String> {
        let proxies = proxy
            .iter()
            .flat_map(|p| [&p.https, &p.http])
            .flatten()
            .map(akv_proxy::ProxyServer::host);
        let guard = Arc::new(policy::Guard::new(allow_internal, named).with_proxies(proxies));
        let tls = tls_config(extra_roots)?;
        let build = |redirect: reqwest::redirect::Policy| {
            let builder = reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .dns_resolver(policy::GuardedResolver {
                    guard: guard.clone(),
                })
                .redirect(redirect)
                .user_agent(concat!("akv-env-webhook/", env!("CARGO_PKG_VERSION")));
            akv_proxy::apply(builder, proxy).build().map_err(|e| {
                format!(
                    "cannot build an HTTP client: {}",
                    crate::error::error_chain(&e)
                )
            })
        };
        Ok(Egress {
            following: build(policy::redirect_policy(guard.clone()))?,
            direct: build(reqwest::redirect::Policy::none())?,
            guard,
        })
    }
}

/// TLS with the built-in webpki roots plus `extra` as the only trust anchors.
fn tls_config(extra: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let (_, rejected) = roots.add_parsable_certificates(
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .chain(extra)
            .cloned(),
    );
    if rejected > 0 {
        tracing::debug!(rejected, "root certificates that could not be used");
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_build_without_a_system_store() {
        // The platform verifier would need the system store; these clients must not.
        let egress = Egress::new(&[], false, &[], None).expect("clients build");
        assert!(
            egress
                .guard
                .check_url(&"http://127.0.0.1/".parse().unwrap())
                .is_err()
        );
    }
}
