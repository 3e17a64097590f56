//! The one HTTPS client used for Entra ID and Key Vault: built-in trust roots, no system files.

use crate::config::{ConfigError, TransportConfig};
use azure_core::http::{
    AsyncRawResponse, Body, HttpClient, Request,
    headers::{HeaderName, HeaderValue, Headers},
};
use futures::TryStreamExt as _;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{Arc, Mutex},
};

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
        .connect_timeout(cfg.connect_timeout)
        // As the SDK's own client: Key Vault and Entra ID do not redirect, and a request that
        // carries a token follows nothing.
        .redirect(reqwest::redirect::Policy::none());
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

/// The SDK's transport: our reqwest client, noting which origins answered over HTTP/2.
///
/// The fetcher needs that to bound its requests in flight by what they cost: over HTTP/1.1 each
/// is a connection of its own (a TCP and TLS handshake), over HTTP/2 a stream on the one
/// connection, whose number the server's `SETTINGS_MAX_CONCURRENT_STREAMS` bounds anyway.
#[derive(Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
    /// Origins (`https://host[:port]`) that answered at least once over HTTP/2.
    multiplexed: Mutex<HashSet<String>>,
}

impl Http {
    pub(crate) fn new(client: reqwest::Client) -> Self {
        Http {
            client,
            multiplexed: Mutex::new(HashSet::new()),
        }
    }

    /// True once `url`'s origin answered over HTTP/2 (its requests then share one connection).
    pub(crate) fn multiplexed(&self, url: &str) -> bool {
        let Ok(url) = url::Url::parse(url) else {
            return false;
        };
        self.multiplexed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&url.origin().ascii_serialization())
    }
}

/// As azure_core's own `HttpClient` for `reqwest::Client` (same errors, headers and body), plus
/// the protocol note.
#[async_trait::async_trait]
impl HttpClient for Http {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        use azure_core::error::{Error, ErrorKind};
        let url = request.url();
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|e| Error::with_error(ErrorKind::Other, e, "unknown HTTP method"))?;
        let mut req = self.client.request(method, url.clone());
        for (name, value) in request.headers().iter() {
            req = req.header(name.as_str(), value.as_str());
        }
        let req = match request.body().clone() {
            Body::Bytes(bytes) => req.body(bytes),
            Body::SeekableStream(stream) => req.body(reqwest::Body::wrap_stream(stream)),
        }
        .build()
        .map_err(|e| Error::with_error(ErrorKind::Other, e, "failed to build `reqwest` request"))?;
        let rsp = self.client.execute(req).await.map_err(|e| {
            let kind = if e.is_connect() {
                ErrorKind::Connection
            } else {
                ErrorKind::Io
            };
            Error::with_error(kind, e, "failed to execute `reqwest` request")
        })?;
        if rsp.version() == reqwest::Version::HTTP_2 {
            let origin = url.origin().ascii_serialization();
            let mut seen = self.multiplexed.lock().unwrap_or_else(|e| e.into_inner());
            if !seen.contains(&origin) {
                seen.insert(origin);
            }
        }
        let status = rsp.status().as_u16().into();
        let headers: HashMap<HeaderName, HeaderValue> = rsp
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                let v = v.to_str().ok()?;
                Some((k.as_str().to_owned().into(), v.to_owned().into()))
            })
            .collect();
        let body = rsp.bytes_stream().map_err(|e| {
            Error::with_error(
                ErrorKind::Io,
                e,
                "error converting `reqwest` request into a byte stream",
            )
        });
        Ok(AsyncRawResponse::new(
            status,
            Headers::from(headers),
            Box::pin(body),
        ))
    }
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
