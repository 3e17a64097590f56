//! How the webhook reaches registries: which roots it trusts and how its HTTP clients are set up.
//! Only the built-in webpki roots plus the operator's `--registry-ca-file` (never the system
//! store, which the `FROM scratch` image does not have), no proxy from the environment, and no
//! redirects for requests that carry a token.

use std::sync::Arc;

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

/// The roots handed to every registry client: webpki's plus the extra ones.
pub(crate) fn trust_roots(
    extra: &[CertificateDer<'static>],
) -> Vec<oci_client::client::Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .chain(extra)
        .map(|der| oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Der,
            data: der.to_vec(),
        })
        .collect()
}

/// The HTTP client for ACR's `/oauth2/exchange`: the roots above only, no proxy variables, and
/// no redirects (the form carries an Entra access token, which must never be re-posted to
/// wherever a redirect points).
pub(crate) fn exchange_client(
    extra: &[CertificateDer<'static>],
) -> Result<reqwest::Client, String> {
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
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| crate::error::error_chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exchange_client_builds_without_a_system_store() {
        // The platform verifier would need the system store; this client must not.
        assert!(exchange_client(&[]).is_ok());
    }
}
