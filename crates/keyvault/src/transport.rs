//! The one HTTPS client used for Entra ID and Key Vault: built-in trust roots, no system files.

use crate::config::{ConfigError, TransportConfig};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use std::{path::Path, sync::Arc};

/// What the client offers in TLS ALPN, most preferred first: HTTP/2 carries every request of a
/// wave on one connection per host (one TCP and TLS handshake instead of one per request in
/// flight); a server that does not choose h2 is spoken to in HTTP/1.1.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Builds the reqwest client handed to the SDK as its transport.
///
/// Trust is `webpki-roots` plus `ca_file`, never the platform store: scratch and distroless
/// images have none, and reqwest's own rustls set-up would fail there. reqwest sets no ALPN on
/// a preconfigured rustls config, so [`ALPN_PROTOCOLS`] are set here.
pub fn http_client(cfg: &TransportConfig) -> Result<reqwest::Client, ConfigError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in cfg.ca_file.iter().chain(&cfg.extra_ca_files) {
        let pem = std::fs::read(path).map_err(|source| ConfigError::CaFileRead {
            path: path.clone(),
            source,
        })?;
        add_pem_roots(&mut roots, &pem, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    let builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(cfg.connect_timeout);
    // Only the proxy the binary read and passed in (CONNECT for HTTPS, never for plain HTTP);
    // reqwest's own reading of the environment stays off.
    let mut builder = akv_proxy::apply(builder, cfg.proxy.as_ref());
    for (host, addr) in &cfg.resolve {
        builder = builder.resolve(host, *addr);
    }
    builder
        .build()
        .map_err(|e| ConfigError::Tls(crate::error::cause_chain(&e)))
}

/// Adds every certificate in a PEM file; a file with none is an error, not a silent no-op.
fn add_pem_roots(roots: &mut RootCertStore, pem: &[u8], path: &Path) -> Result<(), ConfigError> {
    let bad = |why: String| ConfigError::CaFileContent {
        path: path.to_path_buf(),
        why,
    };
    let mut added = 0;
    for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| bad(format!("certificate {}: {e}", i + 1)))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("certificate {}: {e}", i + 1)))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no PEM CERTIFICATE block found".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn empty() -> RootCertStore {
        RootCertStore::empty()
    }

    #[test]
    fn reads_every_certificate_in_a_ca_file() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        let pem = format!("{}{}", a.cert.pem(), b.cert.pem());
        let mut roots = empty();
        add_pem_roots(&mut roots, pem.as_bytes(), Path::new("ca.pem")).unwrap();
        assert_eq!(roots.len(), 2);
    }

    #[test]
    fn rejects_ca_files_without_certificates() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("empty", b"", "no PEM CERTIFICATE block"),
            (
                "a key only",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "no PEM CERTIFICATE block",
            ),
            (
                "garbage DER",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "certificate 1",
            ),
        ];
        for (name, pem, want) in cases {
            let err = add_pem_roots(&mut empty(), pem, Path::new("/x/ca.pem"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("/x/ca.pem") && err.contains(want),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn missing_ca_file_names_the_path() {
        let cfg = TransportConfig {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..Default::default()
        };
        let err = http_client(&cfg).unwrap_err().to_string();
        assert!(
            err.contains("--ca-file") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn builds_without_any_system_ca_store() {
        http_client(&TransportConfig::default()).unwrap();
    }
}
