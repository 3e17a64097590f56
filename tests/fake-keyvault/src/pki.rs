//! Key material generated at start: the TLS CA and server leaf, certificate objects and keys.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
};
use time::{Duration, OffsetDateTime};

use crate::seed::{Curve, PEM, parse_subject};

/// Host names the server certificate covers: every public-cloud vault, the sovereign clouds'
/// vaults, the Entra authority and loopback.
pub const SERVER_NAMES: &[&str] = &[
    "*.vault.azure.net",
    "*.vault.azure.cn",
    "*.vault.usgovcloudapi.net",
    "*.managedhsm.azure.net",
    "*.managedhsm.azure.cn",
    "*.managedhsm.usgovcloudapi.net",
    "*.vault.test",
    "login.microsoftonline.com",
    "login.chinacloudapi.cn",
    "login.microsoftonline.us",
    "login.test",
    "localhost",
    "127.0.0.1",
];

/// Errors while generating key material; only at start-up.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("PKCS#12 encoding failed: {0}")]
    Pkcs12(String),
    #[error("key generation failed")]
    Ring,
}

/// The CA (PEM, for clients to trust) and the server's TLS configuration.
pub struct ServerPki {
    pub ca_pem: String,
    pub tls: Arc<rustls::ServerConfig>,
}

/// Generates a CA and a leaf for [`SERVER_NAMES`] issued by it (webpki rejects a self-signed leaf).
pub fn server_pki() -> Result<ServerPki, PkiError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fake-keyvault test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    ca_params.not_after = OffsetDateTime::now_utc() + Duration::days(365);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(
        SERVER_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    )?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, "vault.azure.net");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    leaf.not_after = OffsetDateTime::now_utc() + Duration::days(30);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerPki {
        ca_pem: ca_cert.pem(),
        tls: Arc::new(tls),
    })
}

/// A generated certificate object: what Key Vault keeps for a self-signed certificate.
pub struct GeneratedCert {
    pub der: Vec<u8>,
    /// base64url SHA-1 thumbprint, as Key Vault's `x5t`.
    pub x5t: String,
    /// The backing secret's value: PEM (key + certificate) or base64 PKCS#12, per content type.
    pub secret_value: String,
    /// Public key as JWK members (`crv`, `x`, `y`).
    pub jwk: serde_json::Map<String, serde_json::Value>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Generates a P-256 key and a self-signed certificate, as Key Vault's `Self` issuer does.
pub fn certificate(
    name: &str,
    subject: &str,
    dns_names: &[String],
    content_type: &str,
) -> Result<GeneratedCert, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params.distinguished_name = DistinguishedName::new();
    for (attr, value) in
        parse_subject(subject).map_err(|_| rcgen::Error::CouldNotParseCertificate)?
    {
        let ty = match attr.as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => DnType::CountryName,
            "L" => DnType::LocalityName,
            _ => DnType::StateOrProvinceName,
        };
        params.distinguished_name.push(ty, value);
    }
    let not_before = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc())
        - Duration::minutes(5);
    let not_after = not_before + Duration::days(365);
    params.not_before = not_before;
    params.not_after = not_after;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key)?;
    let der = cert.der().to_vec();
    let thumb = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    let secret_value = if content_type == PEM {
        format!("{}{}", key.serialize_pem(), cert.pem())
    } else {
        STANDARD.encode(pkcs12(name, &key.serialize_der(), &der)?)
    };
    Ok(GeneratedCert {
        x5t: URL_SAFE_NO_PAD.encode(thumb.as_ref()),
        jwk: ec_jwk(Curve::P256, key.public_key_raw()),
        secret_value,
        der,
        not_before,
        not_after,
    })
}

/// A password-less PKCS#12 with the key and certificate, like Key Vault's backing secret.
fn pkcs12(alias: &str, key_pkcs8: &[u8], cert_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let err = |e: p12_keystore::error::Error| PkiError::Pkcs12(e.to_string());
    let key = PrivateKey::from_der(key_pkcs8).map_err(err)?;
    let cert = Certificate::from_der(cert_der).map_err(err)?;
    let local_key_id = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert_der);
    let chain = PrivateKeyChain::new(local_key_id.as_ref(), key, [cert]);
    let mut store = KeyStore::new();
    store.add_entry(alias, KeyStoreEntry::PrivateKeyChain(chain));
    store.writer("").write().map_err(err)
}

/// Generates a software-protected EC key and returns its public JWK members.
pub fn ec_key(curve: Curve) -> Result<serde_json::Map<String, serde_json::Value>, PkiError> {
    let alg = match curve {
        Curve::P256 => &ECDSA_P256_SHA256_FIXED_SIGNING,
        Curve::P384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
    };
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| PkiError::Ring)?;
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(|_| PkiError::Ring)?;
    Ok(ec_jwk(curve, pair.public_key().as_ref()))
}

/// The modulus of the fixed RSA-2048 test key (`fixtures/rsa-2048-public.pem`), base64url.
const RSA_TEST_MODULUS: &str = "vZzefZjdCJcv4Y_wP8oy61-pQIssIc9RKTInmslgROQs00BG6PW0EWhDhQrQyRfSYprMd6QReevGjnqhtjOFbI-K0NSuLS3Dt_k0gbrJtL8wEzFSXdIjbNUS265Rg5hT2R4_dYGdDD5dE7arL6L66wwBoc0UFUyTIQ-pvlg6mSNZIl-4haxEElnm-hhXtMYbDR-xg6us8sH10lGJixUF9zZUYZAd3H5Msqg8y3O9djRwTKj8i7wRCgWoqmXlkpP-IeM-gui2IsUCqz0p4GVxY-6uboA3TB7RxP2DWbLF_4kDgR8UXhvoA4vYAGPDo9IKSrNQL__1a-jCU9rX51NDXw";

/// Public JWK members of the fixed RSA-2048 test key (e = 65537).
pub fn rsa_test_key() -> serde_json::Map<String, serde_json::Value> {
    let mut jwk = serde_json::Map::new();
    jwk.insert("kty".into(), "RSA".into());
    jwk.insert("n".into(), RSA_TEST_MODULUS.into());
    jwk.insert("e".into(), "AQAB".into());
    jwk
}

/// JWK members for an uncompressed EC point (`04 || x || y`).
fn ec_jwk(curve: Curve, point: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let coords = point.get(1..).unwrap_or_default();
    let (x, y) = coords.split_at(coords.len() / 2);
    let mut jwk = serde_json::Map::new();
    jwk.insert("kty".into(), "EC".into());
    jwk.insert("crv".into(), curve.jwk_name().into());
    jwk.insert("x".into(), URL_SAFE_NO_PAD.encode(x).into());
    jwk.insert("y".into(), URL_SAFE_NO_PAD.encode(y).into());
    jwk
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_leaf_is_issued_by_the_ca() {
        let pki = server_pki().unwrap();
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(pki.tls.alpn_protocols[1], b"http/1.1");
    }

    #[test]
    fn ec_jwk_splits_the_point() {
        let cases = [(Curve::P256, 32), (Curve::P384, 48)];
        for (curve, len) in cases {
            let jwk = ec_key(curve).unwrap();
            for coord in ["x", "y"] {
                let bytes = URL_SAFE_NO_PAD
                    .decode(jwk[coord].as_str().unwrap())
                    .unwrap();
                assert_eq!(bytes.len(), len, "{curve:?} {coord}");
            }
            assert_eq!(jwk["crv"], curve.jwk_name());
        }
    }

    #[test]
    fn pem_certificate_holds_key_and_cert() {
        let c = certificate(
            "web",
            "CN=web.example.com",
            &["web.example.com".into()],
            PEM,
        )
        .unwrap();
        assert!(c.secret_value.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(c.secret_value.contains("-----BEGIN CERTIFICATE-----"));
        assert_eq!(URL_SAFE_NO_PAD.decode(&c.x5t).unwrap().len(), 20);
    }

    #[test]
    fn pkcs12_certificate_reads_back_with_key() {
        let c = certificate("web", "CN=web.example.com", &[], crate::seed::PKCS12).unwrap();
        let der = STANDARD.decode(&c.secret_value).unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(
            &der,
            "",
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .unwrap();
        let (_, chain) = store.private_key_chain().expect("a private key chain");
        assert_eq!(chain.certs()[0].as_der(), c.der.as_slice());
    }
}
