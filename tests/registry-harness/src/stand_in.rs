//! Hand-made registry doubles for what Debian's registry cannot do: answer with a token realm
//! or a redirect chosen by the test, speak ACR's token exchange, serve HTTPS with a test CA,
//! or count who connects. An [`Listener`] counts every TCP connection it accepts, before any
//! byte is read: a count of zero means no request reached it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::Digest as _;

/// The test CA: `server_config()` presents a leaf for localhost and 127.0.0.1.
pub use akv_test_support::pki::TestCa;

/// A server on 127.0.0.1 that counts the connections it accepts. Runs until the test's
/// runtime ends.
pub struct Listener {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Listener {
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// `127.0.0.1:port`, as an image reference or URL writes it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

/// Serves `router` over plain HTTP, or HTTPS when `tls` is given.
pub async fn serve(router: axum::Router, tls: Option<Arc<rustls::ServerConfig>>) -> Listener {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let router = router.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let router = router.clone();
                    async move {
                        use tower::ServiceExt as _;
                        router.oneshot(request).await
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = builder.serve_connection(io, service).await;
                        }
                    }
                    None => {
                        let io = hyper_util::rt::TokioIo::new(tcp);
                        let _ = builder.serve_connection(io, service).await;
                    }
                }
            });
        }
    });
    Listener { addr, connections }
}

/// A single-platform image as a registry serves it: manifest and config blob, with digests.
#[derive(Debug, Clone)]
pub struct ServedImage {
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
}

pub const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

impl ServedImage {
    /// An image whose config says ENTRYPOINT `entrypoint`.
    pub fn with_entrypoint(entrypoint: &[&str]) -> ServedImage {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Entrypoint": entrypoint },
            "rootfs": { "type": "layers", "diff_ids": [] }
        }))
        .expect("config JSON");
        let config_digest = digest(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": config.len(),
                "digest": config_digest,
            },
            "layers": []
        }))
        .expect("manifest JSON");
        ServedImage {
            manifest_digest: digest(&manifest),
            manifest,
            config,
            config_digest,
        }
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
