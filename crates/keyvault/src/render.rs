//! Turning a fetched Key Vault object into the exact value a placeholder asks for. Pure.

use crate::Secret;
use akv_placeholder::{CertPart, Encoding, ObjectKind, Reference};
use base64::Engine as _;
use zeroize::Zeroizing;

/// What one GET returned, before the placeholder's parameters are applied.
pub(crate) enum Fetched {
    /// A secret (also a certificate's backing secret).
    Secret {
        value: Zeroizing<String>,
        content_type: Option<String>,
    },
    /// The public half of a key.
    Key(PublicJwk),
}

/// The public members of a JSON Web Key (RFC 7517/7518).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PublicJwk {
    pub kty: String,
    pub n: Option<Vec<u8>>,
    pub e: Option<Vec<u8>>,
    pub crv: Option<String>,
    pub x: Option<Vec<u8>>,
    pub y: Option<Vec<u8>>,
}

/// A reason a value does not fit the placeholder; never contains the value.
pub(crate) type FormatError = String;

/// Applies type, `part`, `key=` and `encoding=` in that order: `key=` picks a JSON field of
/// whatever the object yields, and `encoding=base64` decodes that field (or the whole value).
pub(crate) fn render(r: &Reference, fetched: &Fetched) -> Result<Secret, FormatError> {
    let mut value: Zeroizing<Vec<u8>> = match (&r.kind, fetched) {
        (ObjectKind::Secret, Fetched::Secret { value, .. }) => {
            Zeroizing::new(value.as_bytes().to_vec())
        }
        (
            ObjectKind::Certificate,
            Fetched::Secret {
                value,
                content_type,
            },
        ) => Zeroizing::new(
            certificate_part(value, content_type.as_deref(), r.cert_part())?.into_bytes(),
        ),
        (ObjectKind::Key, Fetched::Key(jwk)) => Zeroizing::new(public_key_pem(jwk)?.into_bytes()),
        _ => return Err("internal error: fetched object does not match the requested type".into()),
    };
    if let Some(field) = &r.json_key {
        value = json_field(&value, field)?;
    }
    if let Some(Encoding::Base64) = &r.encoding {
        value = decode_base64(&value)?;
    }
    let out = std::mem::take(&mut *value);
    Ok(Secret::new(out))
}

/// One field of a JSON object: strings as their text, anything else as its JSON.
fn json_field(value: &[u8], field: &str) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let parsed: serde_json::Value = serde_json::from_slice(value).map_err(|e| {
        // serde_json's own message can quote the input; only say where it broke.
        format!(
            "key={field}: the value is not JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let serde_json::Value::Object(mut map) = parsed else {
        return Err(format!(
            "key={field}: the value is JSON {}, not an object",
            json_type(&parsed)
        ));
    };
    let Some(v) = map.remove(field) else {
        return Err(format!(
            "key={field}: the JSON object has no field {field:?}"
        ));
    };
    let text = match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    // The parsed map's other strings are dropped unwiped; serde_json gives no hook for that.
    Ok(Zeroizing::new(text.into_bytes()))
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Standard base64, padded or not, surrounding whitespace ignored.
fn decode_base64(value: &[u8]) -> Result<Zeroizing<Vec<u8>>, FormatError> {
    let trimmed = value.trim_ascii();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut out = Zeroizing::new(Vec::new());
    engine.decode_vec(trimmed, &mut out).map_err(|e| {
        // DecodeError's Display quotes the offending byte; report only its position.
        let at = match e {
            base64::DecodeError::InvalidByte(at, _)
            | base64::DecodeError::InvalidLastSymbol(at, _) => {
                format!(" at byte {at}")
            }
            base64::DecodeError::InvalidLength(_) => " (wrong length)".to_owned(),
            base64::DecodeError::InvalidPadding => " (bad padding)".to_owned(),
        };
        format!("encoding=base64: the value is not valid base64{at}")
    })?;
    Ok(out)
}

/// A certificate's backing secret as PEM text: `cert` = the chain, `key` = the private key,
/// `pem` = key then chain (the order Key Vault itself uses for PEM certificates).
fn certificate_part(
    value: &str,
    content_type: Option<&str>,
    part: CertPart,
) -> Result<String, FormatError> {
    let (key, certs) = match content_type.map(str::to_ascii_lowercase).as_deref() {
        Some("application/x-pkcs12") => from_pkcs12(value)?,
        Some("application/x-pem-file") | None => from_pem(value)?,
        Some(other) => {
            return Err(format!(
                "the certificate's secret has content type {other:?}; expected application/x-pem-file or application/x-pkcs12"
            ));
        }
    };
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let mut out = String::new();
    if matches!(part, CertPart::Key | CertPart::Pem) {
        let key = key.ok_or("the certificate has no private key (is it exportable?)")?;
        out.push_str(&pem::encode_config(&key, lf));
    }
    if matches!(part, CertPart::Cert | CertPart::Pem) {
        if certs.is_empty() {
            return Err("the certificate's secret holds no certificate".into());
        }
        for c in &certs {
            out.push_str(&pem::encode_config(c, lf));
        }
    }
    Ok(out)
}

type KeyAndChain = (Option<pem::Pem>, Vec<pem::Pem>);

fn from_pem(value: &str) -> Result<KeyAndChain, FormatError> {
    let blocks = pem::parse_many(value)
        .map_err(|_| "the certificate's PEM text does not parse".to_owned())?;
    let mut key = None;
    let mut certs = Vec::new();
    for b in blocks {
        if b.tag() == "CERTIFICATE" {
            certs.push(b);
        } else if b.tag().ends_with("PRIVATE KEY") && key.is_none() {
            key = Some(b);
        }
    }
    if key.is_none() && certs.is_empty() {
        return Err("the certificate's secret holds no PEM certificate or key".into());
    }
    Ok((key, certs))
}

fn from_pkcs12(value: &str) -> Result<KeyAndChain, FormatError> {
    let der = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| "the certificate's PKCS#12 secret is not valid base64".to_owned())?,
    );
    // Key Vault exports PFX files with an empty password.
    let store =
        p12_keystore::KeyStore::from_pkcs12(&der, "", p12_keystore::Pkcs12ImportPolicy::Relaxed)
            .map_err(|e| format!("the certificate's PKCS#12 data does not parse: {e}"))?;
    if let Some((_, chain)) = store.private_key_chain() {
        let key = pem::Pem::new("PRIVATE KEY", chain.key().as_der().to_vec());
        let certs = chain
            .certs()
            .iter()
            .map(|c| pem::Pem::new("CERTIFICATE", c.as_der().to_vec()))
            .collect();
        return Ok((Some(key), certs));
    }
    let certs: Vec<pem::Pem> = store
        .entries()
        .filter_map(|(_, e)| match e {
            p12_keystore::KeyStoreEntry::Certificate(c) => {
                Some(pem::Pem::new("CERTIFICATE", c.as_der().to_vec()))
            }
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err("the certificate's PKCS#12 data holds no certificate".into());
    }
    Ok((None, certs))
}

const OID_RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];

/// The key's public half as a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM block.
fn public_key_pem(jwk: &PublicJwk) -> Result<String, FormatError> {
    let kty = jwk.kty.trim_end_matches("-HSM");
    let der = match kty {
        "RSA" => {
            let (n, e) = match (&jwk.n, &jwk.e) {
                (Some(n), Some(e)) if !n.is_empty() && !e.is_empty() => (n, e),
                _ => return Err("the RSA key lacks n or e".into()),
            };
            let rsa_public_key = yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    w.next().write_bigint_bytes(n, true);
                    w.next().write_bigint_bytes(e, true);
                })
            });
            spki(OID_RSA_ENCRYPTION, None, &rsa_public_key)
        }
        "EC" => {
            let crv = jwk.crv.as_deref().ok_or("the EC key lacks crv")?;
            let (oid, len): (&[u64], usize) = match crv {
                "P-256" => (&[1, 2, 840, 10045, 3, 1, 7], 32),
                "P-384" => (&[1, 3, 132, 0, 34], 48),
                "P-521" => (&[1, 3, 132, 0, 35], 66),
                "P-256K" => (&[1, 3, 132, 0, 10], 32),
                other => return Err(format!("EC curve {other:?} is not supported")),
            };
            let (x, y) = match (&jwk.x, &jwk.y) {
                (Some(x), Some(y)) if x.len() <= len && y.len() <= len => (x, y),
                _ => {
                    return Err(format!(
                        "the EC key's x/y are missing or longer than {len} bytes"
                    ));
                }
            };
            // Uncompressed point: 04 || X || Y, each left-padded to the field size.
            let mut point = vec![4u8];
            point.extend(std::iter::repeat_n(0, len - x.len()));
            point.extend_from_slice(x);
            point.extend(std::iter::repeat_n(0, len - y.len()));
            point.extend_from_slice(y);
            spki(OID_EC_PUBLIC_KEY, Some(oid), &point)
        }
        other => {
            return Err(format!(
                "key type {other:?} has no public key to export (only RSA and EC)"
            ));
        }
    };
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    Ok(pem::encode_config(&pem::Pem::new("PUBLIC KEY", der), lf))
}

fn spki(alg: &[u64], param_oid: Option<&[u64]>, key: &[u8]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&yasna::models::ObjectIdentifier::from_slice(alg));
                match param_oid {
                    Some(p) => w
                        .next()
                        .write_oid(&yasna::models::ObjectIdentifier::from_slice(p)),
                    None => w.next().write_null(),
                }
            });
            w.next().write_bitvec_bytes(key, key.len() * 8);
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const KEY_PEM: &str = include_str!("../fixtures/cert-key.pem");
    const CHAIN_PEM: &str = include_str!("../fixtures/cert-chain.pem");
    const CERT_PEM: &str = include_str!("../fixtures/cert.pem");
    const P12_AES: &str = include_str!("../fixtures/cert-aes.p12.b64");
    const P12_3DES: &str = include_str!("../fixtures/cert-3des.p12.b64");
    const P12_NOPASS: &str = include_str!("../fixtures/cert-nopass.p12.b64");
    const KEYS: &str = include_str!("../fixtures/keys.json");

    fn reference(placeholder: &str) -> Reference {
        akv_placeholder::parse(placeholder)
            .unwrap_or_else(|e| panic!("{placeholder}: {e}"))
            .unwrap_or_else(|| panic!("{placeholder}: not a placeholder"))
    }

    fn secret(value: &str, content_type: Option<&str>) -> Fetched {
        Fetched::Secret {
            value: Zeroizing::new(value.to_owned()),
            content_type: content_type.map(str::to_owned),
        }
    }

    fn text(s: Secret) -> String {
        String::from_utf8(s.expose_bytes().to_vec()).unwrap()
    }

    #[test]
    fn secrets_with_json_key_and_base64() {
        // (case, placeholder, stored value, expected value or error fragment)
        let cases: &[(&str, &str, &str, Result<&str, &str>)] = &[
            ("plain", "a@azurekeyvault", "hunter2", Ok("hunter2")),
            ("bytes kept exactly", "a@azurekeyvault", " x\n", Ok(" x\n")),
            (
                "json string field",
                "a@azurekeyvault?key=user",
                r#"{"user":"u","pass":"p"}"#,
                Ok("u"),
            ),
            (
                "bare token means key=",
                "a@azurekeyvault?tls.crt",
                r#"{"tls.crt":"C"}"#,
                Ok("C"),
            ),
            (
                "json number field as json",
                "a@azurekeyvault?key=port",
                r#"{"port":5432}"#,
                Ok("5432"),
            ),
            (
                "json object field as json",
                "a@azurekeyvault?key=o",
                r#"{"o":{"a":[1,true]}}"#,
                Ok(r#"{"a":[1,true]}"#),
            ),
            (
                "base64",
                "a@azurekeyvault?encoding=base64",
                "aHVudGVyMg==",
                Ok("hunter2"),
            ),
            (
                "base64 unpadded",
                "a@azurekeyvault?encoding=base64",
                "aHVudGVyMg",
                Ok("hunter2"),
            ),
            (
                "key then base64",
                "a@azurekeyvault?key=b&encoding=base64",
                r#"{"b":"aHVudGVyMg=="}"#,
                Ok("hunter2"),
            ),
            (
                "missing field",
                "a@azurekeyvault?key=nope",
                r#"{"user":"SECRETVALUE"}"#,
                Err("key=nope: the JSON object has no field \"nope\""),
            ),
            (
                "not json",
                "a@azurekeyvault?key=user",
                "SECRETVALUE",
                Err("key=user: the value is not JSON"),
            ),
            (
                "json array",
                "a@azurekeyvault?key=user",
                r#"["SECRETVALUE"]"#,
                Err("the value is JSON an array, not an object"),
            ),
            (
                "json string",
                "a@azurekeyvault?key=user",
                r#""SECRETVALUE""#,
                Err("the value is JSON a string, not an object"),
            ),
            (
                "bad base64",
                "a@azurekeyvault?encoding=base64",
                "SECRET*VALUE",
                Err("not valid base64 at byte 6"),
            ),
        ];
        for (name, placeholder, stored, want) in cases {
            let got = render(&reference(placeholder), &secret(stored, None));
            match (got, want) {
                (Ok(v), Ok(w)) => assert_eq!(text(v), *w, "{name}"),
                (Err(e), Err(w)) => {
                    assert!(e.contains(w), "{name}: {e:?} lacks {w:?}");
                    assert!(!e.contains("SECRET"), "{name}: error leaks the value: {e}");
                }
                (Ok(v), Err(w)) => panic!("{name}: got value {}, want error {w}", text(v)),
                (Err(e), Ok(w)) => panic!("{name}: got error {e}, want {w}"),
            }
        }
    }

    #[test]
    fn certificate_parts_from_pem_and_pkcs12() {
        let stored: &[(&str, &str, Option<&str>)] = &[
            ("pem", CERT_PEM, Some("application/x-pem-file")),
            ("pem, no content type", CERT_PEM, None),
            ("pkcs12 aes", P12_AES, Some("application/x-pkcs12")),
            ("pkcs12 3des", P12_3DES, Some("application/x-pkcs12")),
            (
                "pkcs12 unencrypted",
                P12_NOPASS,
                Some("application/x-pkcs12"),
            ),
        ];
        let key_then_chain = format!("{KEY_PEM}{CHAIN_PEM}");
        let parts: &[(&str, &str)] = &[
            ("a@azurekeyvault?type=certificate&part=cert", CHAIN_PEM),
            ("a@azurekeyvault?type=certificate&part=key", KEY_PEM),
            ("a@azurekeyvault?type=certificate&part=pem", &key_then_chain),
            ("a@azurekeyvault?type=certificate", &key_then_chain),
        ];
        for (name, value, ct) in stored {
            for (placeholder, want) in parts {
                let got = render(&reference(placeholder), &secret(value, *ct))
                    .unwrap_or_else(|e| panic!("{name} {placeholder}: {e}"));
                assert_eq!(text(got), *want, "{name} {placeholder}");
            }
        }
    }

    #[test]
    fn certificate_errors_say_what_is_wrong() {
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            (
                "wrong content type",
                "a@azurekeyvault?type=certificate",
                Some("text/plain"),
                "content type \"text/plain\"",
            ),
            (
                "pem without blocks",
                "a@azurekeyvault?type=certificate",
                None,
                "no PEM certificate or key",
            ),
            (
                "pkcs12 not base64",
                "a@azurekeyvault?type=certificate",
                Some("application/x-pkcs12"),
                "not valid base64",
            ),
            (
                "key part without key",
                "a@azurekeyvault?type=certificate&part=key",
                Some("application/x-pem-file"),
                "no private key",
            ),
        ];
        for (name, placeholder, ct, want) in cases {
            let stored = if *name == "key part without key" {
                CHAIN_PEM
            } else {
                "SECRET*VALUE"
            };
            let err = render(&reference(placeholder), &secret(stored, *ct))
                .err()
                .unwrap_or_else(|| panic!("{name}: no error"));
            assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
            assert!(!err.contains("SECRET"), "{name}: {err}");
        }
    }

    #[test]
    fn public_keys_match_openssl_encoding() {
        let keys: serde_json::Value = serde_json::from_str(KEYS).unwrap();
        let field = |jwk: &serde_json::Value, f: &str| {
            jwk.get(f)
                .and_then(|v| v.as_str())
                .map(|s| URL_SAFE_NO_PAD.decode(s).unwrap())
        };
        for name in ["rsa", "p256", "p384", "p521"] {
            let jwk = &keys[name]["jwk"];
            let public = PublicJwk {
                kty: jwk["kty"].as_str().unwrap().to_owned(),
                n: field(jwk, "n"),
                e: field(jwk, "e"),
                crv: jwk.get("crv").and_then(|v| v.as_str()).map(str::to_owned),
                x: field(jwk, "x"),
                y: field(jwk, "y"),
            };
            let got = render(
                &reference("k@azurekeyvault?type=key"),
                &Fetched::Key(public),
            )
            .unwrap();
            assert_eq!(text(got), keys[name]["pem"].as_str().unwrap(), "{name}");
        }
    }

    #[test]
    fn public_key_errors() {
        let cases = [
            (
                "oct key",
                PublicJwk {
                    kty: "oct".into(),
                    ..Default::default()
                },
                "key type \"oct\"",
            ),
            (
                "rsa without n",
                PublicJwk {
                    kty: "RSA".into(),
                    e: Some(vec![1, 0, 1]),
                    ..Default::default()
                },
                "lacks n or e",
            ),
            (
                "ec without crv",
                PublicJwk {
                    kty: "EC".into(),
                    ..Default::default()
                },
                "lacks crv",
            ),
            (
                "unknown curve",
                PublicJwk {
                    kty: "EC-HSM".into(),
                    crv: Some("P-192".into()),
                    ..Default::default()
                },
                "curve \"P-192\"",
            ),
            (
                "ec x too long",
                PublicJwk {
                    kty: "EC".into(),
                    crv: Some("P-256".into()),
                    x: Some(vec![1; 33]),
                    y: Some(vec![1; 32]),
                    ..Default::default()
                },
                "longer than 32",
            ),
        ];
        for (name, jwk, want) in cases {
            let err = render(&reference("k@azurekeyvault?type=key"), &Fetched::Key(jwk))
                .err()
                .unwrap();
            assert!(err.contains(want), "{name}: {err}");
        }
    }
}
