//! The serving certificate, reloaded when its files change.
//!
//! Kubernetes updates a mounted Secret by swapping a symlinked directory, and cert-manager
//! rotates certificates before they expire, so file watches on the paths miss updates. The
//! files are re-read every few seconds instead and swapped in when their bytes change; each
//! handshake takes the current certificate, and existing connections keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a PEM certificate chain: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path} is not a PEM private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("the key in {key} does not match the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The current certificate, shared by the resolver and the reloader.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Option<Loaded>>,
}

#[derive(Debug, Clone)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files' bytes, to notice a change.
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl CertStore {
    /// Creates the store and loads the files once; a failure here is returned so start-up can
    /// report it, but the store stays usable and keeps trying on [`CertStore::reload`].
    pub fn new(cert_path: PathBuf, key_path: PathBuf) -> (Arc<Self>, Result<(), CertError>) {
        let store = Arc::new(CertStore {
            cert_path,
            key_path,
            current: RwLock::new(None),
        });
        let first = store.reload().map(|_| ());
        (store, first)
    }

    /// Whether a certificate is loaded (readiness).
    pub fn is_loaded(&self) -> bool {
        self.current.read().expect("cert lock").is_some()
    }

    /// Re-reads both files; swaps the certificate in if they changed and are valid.
    /// Returns whether a new certificate was installed.
    pub fn reload(&self) -> Result<bool, CertError> {
        let cert_pem = read(&self.cert_path)?;
        let key_pem = read(&self.key_path)?;
        if let Some(loaded) = self.current.read().expect("cert lock").as_ref()
            && loaded.cert_pem == cert_pem
            && loaded.key_pem == key_pem
        {
            return Ok(false);
        }
        let key = certified_key(&self.cert_path, &cert_pem, &self.key_path, &key_pem)?;
        *self.current.write().expect("cert lock") = Some(Loaded {
            key: Arc::new(key),
            cert_pem,
            key_pem,
        });
        Ok(true)
    }

    /// Polls the files every `interval` until the store is dropped elsewhere or the task is
    /// aborted. Failures are logged and the previous certificate stays in use.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else { return };
                match store.reload() {
                    Ok(true) => {
                        tracing::info!(cert = %store.cert_path.display(), "serving certificate reloaded")
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(%error, "cannot reload the serving certificate; keeping the previous one")
                    }
                }
            }
        })
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .expect("cert lock")
            .as_ref()
            .map(|l| l.key.clone())
    }
}

/// A rustls server config taking its certificate from `store`, offering HTTP/2 and HTTP/1.1.
pub fn server_config(store: Arc<CertStore>) -> rustls::ServerConfig {
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::BadCertificate {
            path: cert_path.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::BadKey {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    let signing_key = ring::sign::any_supported_type(&key).map_err(|e| CertError::BadKey {
        path: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| CertError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(certified)
}
