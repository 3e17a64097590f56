//! A test CA issuing leaf certificates, for servers and clients that must verify each other.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names a leaf is for unless a test says otherwise.
pub const LOCAL_NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// A self-signed CA (webpki refuses a self-signed leaf, so servers present a leaf it issues).
/// Panics on failure: it is test set-up.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA whose subject's common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key pair");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    /// The CA certificate in PEM (what `--registry-ca-file` and a `caBundle` take).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for [`LOCAL_NAMES`]: (certificate PEM, key PEM).
    pub fn leaf(&self) -> (String, String) {
        self.leaf_for(LOCAL_NAMES)
    }

    /// A leaf for `names` (DNS names or IP addresses): (certificate PEM, key PEM).
    pub fn leaf_for(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf parameters");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("leaf", String::as_str),
        );
        let key = KeyPair::generate().expect("key pair");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// A server config presenting a leaf for [`LOCAL_NAMES`] and this CA as its chain.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config_for(LOCAL_NAMES)
    }

    /// A server config presenting a leaf for `names` (e.g. a registry's public name that only
    /// a test proxy's host map resolves) and this CA as its chain.
    pub fn server_config_for(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let (cert, key) = self.leaf_for(names);
        let chain = vec![
            CertificateDer::from_pem_slice(cert.as_bytes()).expect("leaf PEM"),
            CertificateDer::from(self.issuer.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(
            PrivatePkcs8KeyDer::from_pem_slice(key.as_bytes()).expect("key PEM"),
        );
        let config = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        Arc::new(config)
    }

    /// A client config trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.issuer.der().to_vec()))
            .expect("CA certificate");
        let mut config = rustls::ClientConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handshake over an in-memory pipe: the client trusting `client_ca` against a server
    /// presenting a leaf of `server_ca`.
    fn handshake(client_ca: &TestCa, server_ca: &TestCa, name: &str) -> Result<(), rustls::Error> {
        let mut client = rustls::ClientConnection::new(
            client_ca.client_config(&[]),
            name.to_string().try_into().unwrap(),
        )?;
        let mut server = rustls::ServerConnection::new(server_ca.server_config())?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn a_leaf_verifies_under_its_ca_and_names_only() {
        let ca = TestCa::new("test CA");
        let other = TestCa::new("other CA");
        // (case, client's CA, name dialled, verifies)
        let cases: &[(&str, &TestCa, &str, bool)] = &[
            ("localhost", &ca, "localhost", true),
            ("ip", &ca, "127.0.0.1", true),
            ("another name", &ca, "example.com", false),
            ("another CA", &other, "localhost", false),
        ];
        for (case, client_ca, name, ok) in cases {
            assert_eq!(handshake(client_ca, &ca, name).is_ok(), *ok, "{case}");
        }
    }

    #[test]
    fn leaf_for_names_the_leaf() {
        let ca = TestCa::new("test CA");
        let (cert, key) = ca.leaf_for(&["svc.ns.svc"]);
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "key PEM");
        assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
