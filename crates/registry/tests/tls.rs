//! Registries over TLS: Debian's `docker-registry` serving a leaf issued by a test CA. The
//! resolver trusts webpki's roots plus the extra CAs it is given, and never the system store,
//! so the webhook's image needs no CA bundle. Needs scripts/setup.sh.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use akv_registry::{CaPemError, ImageResolver, LookupError, Platform, RegistryOptions};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use registry_harness::{ImageSpec, TestRegistry, free_loopback_addr, require_tool};

/// A test CA and the PEM of its certificate.
fn ca(name: &str) -> (CertifiedIssuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let pem = issuer.pem();
    (issuer, pem)
}

/// `docker-registry` on loopback over TLS (a leaf for 127.0.0.1 issued by `issuer`), with an
/// image copied into it from a plain-HTTP harness registry. Killed on drop.
struct TlsRegistry {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsRegistry {
    fn start(issuer: &CertifiedIssuer<'static, KeyPair>) -> TlsRegistry {
        require_tool("docker-registry", "docker-registry").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
        params
            .distinguished_name
            .push(DnType::CommonName, "test registry");
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, issuer).unwrap();
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert_path, leaf.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let addr = free_loopback_addr().unwrap();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  tls:\n    certificate: {}\n    key: {}\n",
            dir.path().join("data").display(),
            cert_path.display(),
            key_path.display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "docker-registry with TLS exited"
            );
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "docker-registry not listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsRegistry {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Copies `repository:tag` from a plain registry into this one with skopeo.
    fn copy_from(&self, plain: &TestRegistry, repository_and_tag: &str) {
        require_tool("skopeo", "skopeo").unwrap();
        let status = Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("docker://{}", plain.image(repository_and_tag)))
            .arg(format!("docker://{}", self.image(repository_and_tag)))
            .status()
            .unwrap();
        assert!(status.success(), "skopeo copy into the TLS registry failed");
    }

    fn image(&self, repository_and_tag: &str) -> String {
        format!("{}/{repository_and_tag}", self.addr)
    }
}

fn resolver(extra_roots_pem: &[&str]) -> ImageResolver {
    let extra_roots = extra_roots_pem
        .iter()
        .flat_map(|pem| akv_registry::pem_certificates(pem.as_bytes()).unwrap())
        .collect();
    ImageResolver::new(RegistryOptions {
        timeout: Duration::from_secs(10),
        extra_roots,
        // The registry listens on loopback over HTTPS (not a named insecure registry).
        allow_internal_addresses: true,
        ..Default::default()
    })
}

#[tokio::test]
async fn a_registry_is_trusted_only_with_the_ca_that_issued_its_certificate() {
    let (issuer, ca_pem) = ca("akv-env registry test CA");
    let (_, other_pem) = ca("some other CA");
    let registry = TlsRegistry::start(&issuer);
    let plain = TestRegistry::start().unwrap();
    plain
        .push(
            &ImageSpec::linux("amd64")
                .entrypoint(&["/app"])
                .cmd(&["serve"]),
            "team/app:v1",
        )
        .unwrap();
    registry.copy_from(&plain, "team/app:v1");
    let image = registry.image("team/app:v1");
    let amd64 = Platform::linux("amd64");

    // Trusted with the CA file (next to an unrelated one).
    let got = resolver(&[&other_pem, &ca_pem])
        .entrypoint(&image, &amd64, &[])
        .await
        .unwrap();
    assert_eq!(
        (got.entrypoint, got.cmd),
        (vec!["/app".into()], vec!["serve".into()])
    );

    // Refused without it, and with only another CA: a clear message naming the image.
    for (case, roots) in [
        ("no extra CA", vec![]),
        ("another CA", vec![other_pem.as_str()]),
    ] {
        let err = resolver(&roots)
            .entrypoint(&image, &amd64, &[])
            .await
            .unwrap_err();
        assert!(
            matches!(err, LookupError::UntrustedCertificate { .. }),
            "{case}: {err:?}"
        );
        let message = err.to_string();
        for needle in [
            image.as_str(),
            "certificate",
            "not trusted",
            "--registry-ca-file",
        ] {
            assert!(
                message.contains(needle),
                "{case}: {needle:?} not in {message}"
            );
        }
    }
}

#[tokio::test]
async fn the_system_ca_store_is_not_consulted() {
    let (issuer, ca_pem) = ca("akv-env CA in the system store");
    let registry = TlsRegistry::start(&issuer);
    let plain = TestRegistry::start().unwrap();
    plain
        .push(&ImageSpec::linux("amd64").entrypoint(&["/app"]), "app:v1")
        .unwrap();
    registry.copy_from(&plain, "app:v1");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca-certificates.crt");
    std::fs::write(&bundle, &ca_pem).unwrap();
    // The platform verifier (rustls-native-certs) reads SSL_CERT_FILE; a resolver that used
    // the system store would trust the registry. nextest runs each test in its own process.
    // SAFETY: set before any other thread of this test reads the environment.
    unsafe { std::env::set_var("SSL_CERT_FILE", &bundle) };
    let err = resolver(&[])
        .entrypoint(&registry.image("app:v1"), &Platform::linux("amd64"), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, LookupError::UntrustedCertificate { .. }),
        "{err:?}"
    );
}

#[test]
fn ca_files_are_checked_when_read() {
    let (_, ca_pem) = ca("a CA");
    let key_only = KeyPair::generate().unwrap().serialize_pem();
    let two = format!("{ca_pem}{}", ca("another").1);
    let cases: [(&str, &str, Result<usize, &str>); 5] = [
        ("one certificate", &ca_pem, Ok(1)),
        ("a bundle of two", &two, Ok(2)),
        ("empty file", "", Err("holds no PEM certificate")),
        ("a key only", &key_only, Err("holds no PEM certificate")),
        (
            "broken base64",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            Err("not a valid PEM certificate"),
        ),
    ];
    for (case, pem, want) in cases {
        match (akv_registry::pem_certificates(pem.as_bytes()), want) {
            (Ok(certs), Ok(n)) => assert_eq!(certs.len(), n, "{case}"),
            (Err(e), Err(text)) => {
                assert!(e.to_string().contains(text), "{case}: {e}");
                if text.contains("no PEM") {
                    assert!(matches!(e, CaPemError::Empty), "{case}");
                }
            }
            (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
        }
    }
}
