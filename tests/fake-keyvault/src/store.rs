//! What the vaults hold and how Key Vault answers reads of it: pure data in, JSON or a Key Vault
//! error out. HTTP, tokens and knobs live elsewhere.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::pki::{self, PkiError};
use crate::seed::{PKCS12, Seed, parse_time};

/// Which kind of vault object a request addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Secret,
    Certificate,
    Key,
}

impl ObjectKind {
    /// The path segment Key Vault uses: `secrets`, `certificates`, `keys`.
    pub fn segment(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secrets",
            ObjectKind::Certificate => "certificates",
            ObjectKind::Key => "keys",
        }
    }

    fn not_found_code(self) -> &'static str {
        match self {
            ObjectKind::Secret => "SecretNotFound",
            ObjectKind::Certificate => "CertificateNotFound",
            ObjectKind::Key => "KeyNotFound",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secret",
            ObjectKind::Certificate => "certificate",
            ObjectKind::Key => "key",
        }
    }
}

/// Attributes for a secret written through [`crate::FakeKeyVault::upsert_secret`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretAttributes {
    pub enabled: bool,
    pub exp: Option<OffsetDateTime>,
    pub nbf: Option<OffsetDateTime>,
    pub content_type: Option<String>,
}

impl Default for SecretAttributes {
    fn default() -> Self {
        SecretAttributes {
            enabled: true,
            exp: None,
            nbf: None,
            content_type: None,
        }
    }
}

/// A Key Vault error: status, `error.code`, message and optional `innererror.code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KvError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub inner: Option<&'static str>,
}

impl KvError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> KvError {
        KvError {
            status,
            code,
            message: message.into(),
            inner: None,
        }
    }

    fn with_inner(mut self, inner: &'static str) -> KvError {
        self.inner = Some(inner);
        self
    }

    /// The body Key Vault sends: `{"error":{"code":..,"message":..,"innererror":{"code":..}}}`.
    pub(crate) fn body(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(inner) = self.inner {
            error["innererror"] = json!({ "code": inner });
        }
        json!({ "error": error })
    }
}

/// A data-plane read, parsed from the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /secrets`
    ListSecrets,
    /// `GET /{kind}/{name}[/{version}]` (trailing slash allowed)
    Get {
        kind: ObjectKind,
        name: String,
        version: Option<String>,
    },
    /// `GET /{kind}/{name}/versions`
    Versions { kind: ObjectKind, name: String },
    /// `GET /certificates/{name}/policy`
    CertificatePolicy { name: String },
}

impl Route {
    /// Parses a request path; `None` when it is no read this fake serves.
    pub(crate) fn parse(path: &str) -> Option<Route> {
        let trimmed = path.strip_prefix('/')?;
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let parts: Vec<&str> = trimmed.split('/').collect();
        let kind = match parts.first()?.to_ascii_lowercase().as_str() {
            "secrets" => ObjectKind::Secret,
            "certificates" => ObjectKind::Certificate,
            "keys" => ObjectKind::Key,
            _ => return None,
        };
        let name = |s: &str| (!s.is_empty()).then(|| s.to_string());
        match parts.as_slice() {
            [_] if kind == ObjectKind::Secret => Some(Route::ListSecrets),
            [_, n] => Some(Route::Get {
                kind,
                name: name(n)?,
                version: None,
            }),
            [_, n, v] if v.eq_ignore_ascii_case("versions") => Some(Route::Versions {
                kind,
                name: name(n)?,
            }),
            [_, n, p] if kind == ObjectKind::Certificate && p.eq_ignore_ascii_case("policy") => {
                Some(Route::CertificatePolicy { name: name(n)? })
            }
            [_, n, v] => Some(Route::Get {
                kind,
                name: name(n)?,
                version: Some(v.to_string()),
            }),
            _ => None,
        }
    }

    /// The kind and object name, for access records and policy checks.
    pub(crate) fn target(&self) -> (ObjectKind, &str, Option<&str>) {
        match self {
            Route::ListSecrets => (ObjectKind::Secret, "", None),
            Route::Get {
                kind,
                name,
                version,
            } => (*kind, name, version.as_deref()),
            Route::Versions { kind, name } => (*kind, name, None),
            Route::CertificatePolicy { name } => (ObjectKind::Certificate, name, None),
        }
    }
}

/// Paging parameters of list operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paging {
    pub maxresults: usize,
    pub skip: usize,
    pub api_version: String,
}

pub(crate) struct SecretVersion {
    version: String,
    value: Zeroizing<String>,
    content_type: Option<String>,
    enabled: bool,
    exp: Option<i64>,
    nbf: Option<i64>,
    created: i64,
    tags: BTreeMap<String, String>,
    /// For a certificate's backing secret: the key id, and `managed: true`.
    kid: Option<String>,
}

struct CertVersion {
    version: String,
    der: Vec<u8>,
    x5t: String,
    content_type: String,
    subject: String,
    dns_names: Vec<String>,
    nbf: i64,
    exp: i64,
    created: i64,
}

struct KeyVersion {
    version: String,
    jwk: Map<String, Value>,
    key_ops: &'static [&'static str],
    managed: bool,
    created: i64,
}

/// An object's versions, oldest first, under its name as first written.
struct Named<T> {
    name: String,
    versions: Vec<T>,
}

#[derive(Default)]
struct VaultData {
    access: Option<BTreeMap<String, Vec<String>>>,
    secrets: HashMap<String, Named<SecretVersion>>,
    certificates: HashMap<String, Named<CertVersion>>,
    keys: HashMap<String, Named<KeyVersion>>,
}

/// All vaults' contents.
#[derive(Default)]
pub(crate) struct Store {
    vaults: HashMap<String, VaultData>,
}

/// A fresh random 32-hex-digit version id.
pub(crate) fn new_version() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

impl Store {
    /// Builds the vaults from a validated seed, generating certificates and keys.
    pub(crate) fn from_seed(seed: &Seed, now: i64) -> Result<Store, PkiError> {
        let mut store = Store::default();
        for (vname, vseed) in &seed.vaults {
            let vault = store.vaults.entry(vname.to_ascii_lowercase()).or_default();
            vault.access = vseed.access.clone();
            for (name, sseed) in &vseed.secrets {
                let list = sseed.version_list(name).unwrap_or_default();
                let versions = list
                    .into_iter()
                    .map(|v| SecretVersion {
                        version: v
                            .version
                            .map(|v| v.to_ascii_lowercase())
                            .unwrap_or_else(new_version),
                        value: Zeroizing::new(v.value),
                        content_type: v.content_type,
                        enabled: v.enabled.unwrap_or(true),
                        exp: v.exp.as_deref().and_then(|t| parse_time(t).ok()).map(unix),
                        nbf: v.nbf.as_deref().and_then(|t| parse_time(t).ok()).map(unix),
                        created: now,
                        tags: v.tags,
                        kid: None,
                    })
                    .collect();
                vault.secrets.insert(
                    name.to_ascii_lowercase(),
                    Named {
                        name: name.clone(),
                        versions,
                    },
                );
            }
            for (name, cseed) in &vseed.certificates {
                let content_type = cseed
                    .content_type
                    .clone()
                    .unwrap_or_else(|| PKCS12.to_string());
                let subject = cseed
                    .subject
                    .clone()
                    .unwrap_or_else(|| format!("CN={name}"));
                let generated = pki::certificate(name, &subject, &cseed.dns_names, &content_type)?;
                let version = new_version();
                let lower = name.to_ascii_lowercase();
                vault.keys.insert(
                    lower.clone(),
                    Named {
                        name: name.clone(),
                        versions: vec![KeyVersion {
                            version: version.clone(),
                            jwk: generated.jwk,
                            key_ops: &["sign", "verify"],
                            managed: true,
                            created: now,
                        }],
                    },
                );
                vault.secrets.insert(
                    lower.clone(),
                    Named {
                        name: name.clone(),
                        versions: vec![SecretVersion {
                            version: version.clone(),
                            value: Zeroizing::new(generated.secret_value),
                            content_type: Some(content_type.clone()),
                            enabled: true,
                            exp: Some(unix(generated.not_after)),
                            nbf: Some(unix(generated.not_before)),
                            created: now,
                            tags: BTreeMap::new(),
                            kid: Some(format!("keys/{name}/{version}")),
                        }],
                    },
                );
                vault.certificates.insert(
                    lower,
                    Named {
                        name: name.clone(),
                        versions: vec![CertVersion {
                            version,
                            der: generated.der,
                            x5t: generated.x5t,
                            content_type,
                            subject,
                            dns_names: cseed.dns_names.clone(),
                            nbf: unix(generated.not_before),
                            exp: unix(generated.not_after),
                            created: now,
                        }],
                    },
                );
            }
            for (name, kseed) in &vseed.keys {
                let key_type = kseed
                    .key_type()
                    .unwrap_or(crate::seed::KeyType::Ec(crate::seed::Curve::P256));
                vault.keys.insert(
                    name.to_ascii_lowercase(),
                    Named {
                        name: name.clone(),
                        versions: vec![KeyVersion {
                            version: new_version(),
                            jwk: match key_type {
                                crate::seed::KeyType::Ec(curve) => pki::ec_key(curve)?,
                                crate::seed::KeyType::Rsa => pki::rsa_test_key(),
                            },
                            key_ops: &["sign", "verify"],
                            managed: false,
                            created: now,
                        }],
                    },
                );
            }
        }
        Ok(store)
    }

    pub(crate) fn has_vault(&self, vault: &str) -> bool {
        self.vaults.contains_key(vault)
    }

    /// Adds a new latest version of a secret (creating the vault if needed) and returns its id.
    pub(crate) fn upsert_secret(
        &mut self,
        vault: &str,
        name: &str,
        value: &str,
        attrs: SecretAttributes,
        now: i64,
    ) -> String {
        let version = new_version();
        let data = self.vaults.entry(vault.to_ascii_lowercase()).or_default();
        let named = data
            .secrets
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Named {
                name: name.to_string(),
                versions: Vec::new(),
            });
        named.versions.push(SecretVersion {
            version: version.clone(),
            value: Zeroizing::new(value.to_string()),
            content_type: attrs.content_type,
            enabled: attrs.enabled,
            exp: attrs.exp.map(unix),
            nbf: attrs.nbf.map(unix),
            created: now,
            tags: BTreeMap::new(),
            kid: None,
        });
        version
    }

    /// Does the vault's policy let `identity` read object `name`? No policy: everyone may.
    pub(crate) fn allowed(&self, vault: &str, identity: &str, name: &str) -> bool {
        let Some(data) = self.vaults.get(vault) else {
            return false;
        };
        match &data.access {
            None => true,
            Some(policy) => policy.get(identity).is_some_and(|names| {
                names
                    .iter()
                    .any(|n| n == "*" || n.eq_ignore_ascii_case(name))
            }),
        }
    }

    /// Answers a read as Key Vault would. `base` is `https://<vault host>` for ids.
    pub(crate) fn read(
        &self,
        vault: &str,
        route: &Route,
        base: &str,
        paging: &Paging,
    ) -> Result<Value, KvError> {
        let data = self.vaults.get(vault).ok_or_else(|| {
            KvError::new(
                404,
                "VaultNotFound",
                format!("vault `{vault}` is not served here"),
            )
        })?;
        match route {
            Route::ListSecrets => {
                let mut items: Vec<(&String, &Named<SecretVersion>)> =
                    data.secrets.iter().collect();
                items.sort_by(|a, b| a.0.cmp(b.0));
                let items: Vec<Value> = items
                    .into_iter()
                    .filter_map(|(_, n)| {
                        n.versions
                            .last()
                            .map(|v| secret_item(base, &n.name, v, false))
                    })
                    .collect();
                Ok(page(items, paging, &format!("{base}/secrets")))
            }
            Route::Versions {
                kind: ObjectKind::Secret,
                name,
            } => {
                let named = find(&data.secrets, ObjectKind::Secret, name)?;
                let items = named
                    .versions
                    .iter()
                    .map(|v| secret_item(base, &named.name, v, true))
                    .collect();
                Ok(page(
                    items,
                    paging,
                    &format!("{base}/secrets/{}/versions", named.name),
                ))
            }
            Route::Versions { kind, .. } => Err(KvError::new(
                400,
                "BadParameter",
                format!(
                    "listing {} versions is not served by this fake",
                    kind.noun()
                ),
            )),
            Route::Get {
                kind: ObjectKind::Secret,
                name,
                version,
            } => {
                let named = find(&data.secrets, ObjectKind::Secret, name)?;
                let v = pick(
                    &named.versions,
                    |v| &v.version,
                    ObjectKind::Secret,
                    name,
                    version.as_deref(),
                )?;
                if !v.enabled {
                    return Err(KvError::new(
                        403,
                        "Forbidden",
                        "Operation get is not allowed on a disabled secret.",
                    )
                    .with_inner("SecretDisabled"));
                }
                // Key Vault serves expired and not-yet-valid secrets: exp and nbf are informational.
                let mut body = secret_item(base, &named.name, v, true);
                body["value"] = Value::String(v.value.to_string());
                if let Some(kid) = &v.kid {
                    body["kid"] = Value::String(format!("{base}/{kid}"));
                }
                Ok(body)
            }
            Route::Get {
                kind: ObjectKind::Certificate,
                name,
                version,
            } => {
                let named = find(&data.certificates, ObjectKind::Certificate, name)?;
                let v = pick(
                    &named.versions,
                    |v| &v.version,
                    ObjectKind::Certificate,
                    name,
                    version.as_deref(),
                )?;
                let n = &named.name;
                Ok(json!({
                    "id": format!("{base}/certificates/{n}/{}", v.version),
                    "kid": format!("{base}/keys/{n}/{}", v.version),
                    "sid": format!("{base}/secrets/{n}/{}", v.version),
                    "x5t": v.x5t,
                    "cer": STANDARD.encode(&v.der),
                    "attributes": {
                        "enabled": true, "nbf": v.nbf, "exp": v.exp, "created": v.created, "updated": v.created,
                        "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90
                    },
                    "policy": cert_policy(base, n, v),
                }))
            }
            Route::CertificatePolicy { name } => {
                let named = find(&data.certificates, ObjectKind::Certificate, name)?;
                let v = named
                    .versions
                    .last()
                    .ok_or_else(|| not_found(ObjectKind::Certificate, name, None))?;
                Ok(cert_policy(base, &named.name, v))
            }
            Route::Get {
                kind: ObjectKind::Key,
                name,
                version,
            } => {
                let named = find(&data.keys, ObjectKind::Key, name)?;
                let v = pick(
                    &named.versions,
                    |v| &v.version,
                    ObjectKind::Key,
                    name,
                    version.as_deref(),
                )?;
                let mut key = v.jwk.clone();
                key.insert(
                    "kid".into(),
                    format!("{base}/keys/{}/{}", named.name, v.version).into(),
                );
                key.insert("key_ops".into(), json!(v.key_ops));
                let mut body = json!({
                    "key": key,
                    "attributes": {
                        "enabled": true, "created": v.created, "updated": v.created, "exportable": false,
                        "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90
                    },
                });
                if v.managed {
                    body["managed"] = Value::Bool(true);
                }
                Ok(body)
            }
        }
    }
}

fn find<'a, T>(
    map: &'a HashMap<String, Named<T>>,
    kind: ObjectKind,
    name: &str,
) -> Result<&'a Named<T>, KvError> {
    map.get(&name.to_ascii_lowercase())
        .ok_or_else(|| not_found(kind, name, None))
}

fn pick<'a, T>(
    versions: &'a [T],
    id: impl Fn(&T) -> &String,
    kind: ObjectKind,
    name: &str,
    version: Option<&str>,
) -> Result<&'a T, KvError> {
    match version {
        None => versions.last(),
        Some(want) => versions.iter().find(|v| id(v).eq_ignore_ascii_case(want)),
    }
    .ok_or_else(|| not_found(kind, name, version))
}

fn not_found(kind: ObjectKind, name: &str, version: Option<&str>) -> KvError {
    let what = match version {
        Some(v) => format!("{name}/{v}"),
        None => name.to_string(),
    };
    KvError::new(
        404,
        kind.not_found_code(),
        format!(
            "A {} with (name/id) {what} was not found in this key vault. If you recently deleted this {} you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
            kind.noun(),
            kind.noun()
        ),
    )
}

/// A secret's properties (no value). `versioned`: the id carries the version, as in gets and
/// version lists; secret lists give the bare secret id.
fn secret_item(base: &str, name: &str, v: &SecretVersion, versioned: bool) -> Value {
    let id = if versioned {
        format!("{base}/secrets/{name}/{}", v.version)
    } else {
        format!("{base}/secrets/{name}")
    };
    let mut attributes = json!({
        "enabled": v.enabled, "created": v.created, "updated": v.created,
        "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90
    });
    if let Some(exp) = v.exp {
        attributes["exp"] = exp.into();
    }
    if let Some(nbf) = v.nbf {
        attributes["nbf"] = nbf.into();
    }
    let mut item = json!({ "id": id, "attributes": attributes });
    if let Some(ct) = &v.content_type {
        item["contentType"] = ct.clone().into();
    }
    if !v.tags.is_empty() {
        item["tags"] = json!(v.tags);
    }
    if v.kid.is_some() {
        item["managed"] = Value::Bool(true);
    }
    item
}

fn cert_policy(base: &str, name: &str, v: &CertVersion) -> Value {
    json!({
        "id": format!("{base}/certificates/{name}/policy"),
        "key_props": { "exportable": true, "kty": "EC", "crv": "P-256", "key_size": 256, "reuse_key": false },
        "secret_props": { "contentType": v.content_type },
        "x509_props": {
            "subject": v.subject,
            "sans": { "dns_names": v.dns_names },
            "ekus": ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"],
            "key_usage": ["digitalSignature", "keyEncipherment"],
            "validity_months": 12
        },
        "lifetime_actions": [{ "trigger": { "lifetime_percentage": 80 }, "action": { "action_type": "AutoRenew" } }],
        "issuer": { "name": "Self" },
        "attributes": { "enabled": true, "created": v.created, "updated": v.created }
    })
}

/// One page of a list: `value` plus `nextLink` (null on the last page), as Key Vault pages.
fn page(items: Vec<Value>, paging: &Paging, list_url: &str) -> Value {
    let total = items.len();
    let end = (paging.skip + paging.maxresults).min(total);
    let value: Vec<Value> = items
        .into_iter()
        .skip(paging.skip)
        .take(paging.maxresults)
        .collect();
    let next = (end < total).then(|| {
        format!(
            "{list_url}?api-version={}&$skiptoken={end}&maxresults={}",
            paging.api_version, paging.maxresults
        )
    });
    json!({ "value": value, "nextLink": next })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://myvault.vault.azure.net";

    fn store() -> Store {
        let seed = Seed::from_yaml(
            r#"
identities: [ { client_id: app-a, client_secret: s }, { client_id: app-b, client_secret: s } ]
vaults:
  myvault:
    access: { app-a: ["*"], app-b: [db-password] }
    secrets:
      db-password: { value: hunter2 }
      old: { value: gone, exp: 2000-01-01T00:00:00Z }
      off: { value: nope, enabled: false }
      cfg:
        versions:
          - { value: one, version: 0123456789abcdef0123456789abcdef }
          - { value: two }
          - { value: three }
    certificates:
      web: { subject: "CN=web.example.com", content_type: application/x-pem-file }
    keys:
      signing: {}
"#,
        )
        .unwrap();
        Store::from_seed(&seed, 1_700_000_000).unwrap()
    }

    fn paging(max: usize, skip: usize) -> Paging {
        Paging {
            maxresults: max,
            skip,
            api_version: "7.5".into(),
        }
    }

    #[test]
    fn routes_parse() {
        let s = |n: &str| n.to_string();
        let cases: &[(&str, Option<Route>)] = &[
            ("/secrets", Some(Route::ListSecrets)),
            ("/secrets/", Some(Route::ListSecrets)),
            (
                "/secrets/a",
                Some(Route::Get {
                    kind: ObjectKind::Secret,
                    name: s("a"),
                    version: None,
                }),
            ),
            (
                "/secrets/a/",
                Some(Route::Get {
                    kind: ObjectKind::Secret,
                    name: s("a"),
                    version: None,
                }),
            ),
            (
                "/secrets/a/v1",
                Some(Route::Get {
                    kind: ObjectKind::Secret,
                    name: s("a"),
                    version: Some(s("v1")),
                }),
            ),
            (
                "/secrets/a/v1/",
                Some(Route::Get {
                    kind: ObjectKind::Secret,
                    name: s("a"),
                    version: Some(s("v1")),
                }),
            ),
            (
                "/secrets/a/versions",
                Some(Route::Versions {
                    kind: ObjectKind::Secret,
                    name: s("a"),
                }),
            ),
            (
                "/certificates/c",
                Some(Route::Get {
                    kind: ObjectKind::Certificate,
                    name: s("c"),
                    version: None,
                }),
            ),
            (
                "/certificates/c/policy",
                Some(Route::CertificatePolicy { name: s("c") }),
            ),
            (
                "/keys/k/v",
                Some(Route::Get {
                    kind: ObjectKind::Key,
                    name: s("k"),
                    version: Some(s("v")),
                }),
            ),
            ("/keys", None),
            ("/storage/x", None),
            ("/secrets/a/b/c", None),
            ("/secrets//v", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(&Route::parse(path), want, "path {path}");
        }
    }

    #[test]
    fn reads_answer_like_key_vault() {
        let store = store();
        let get = |name: &str, version: Option<&str>| {
            let route = Route::Get {
                kind: ObjectKind::Secret,
                name: name.into(),
                version: version.map(Into::into),
            };
            store.read("myvault", &route, BASE, &paging(25, 0))
        };
        // (case, name, version, Ok(value) | Err((status, code)))
        type Want<'a> = Result<&'a str, (u16, &'a str)>;
        let cases: &[(&str, &str, Option<&str>, Want)] = &[
            ("latest", "db-password", None, Ok("hunter2")),
            ("case-insensitive name", "DB-PASSWORD", None, Ok("hunter2")),
            ("latest of many", "cfg", None, Ok("three")),
            (
                "pinned",
                "cfg",
                Some("0123456789abcdef0123456789abcdef"),
                Ok("one"),
            ),
            (
                "pinned upper-case",
                "cfg",
                Some("0123456789ABCDEF0123456789ABCDEF"),
                Ok("one"),
            ),
            ("expired still served", "old", None, Ok("gone")),
            ("missing", "nope", None, Err((404, "SecretNotFound"))),
            (
                "missing version",
                "cfg",
                Some("ffffffffffffffffffffffffffffffff"),
                Err((404, "SecretNotFound")),
            ),
            ("disabled", "off", None, Err((403, "Forbidden"))),
        ];
        for (case, name, version, want) in cases {
            let got = get(name, *version);
            match (got, want) {
                (Ok(body), Ok(value)) => {
                    assert_eq!(body["value"], *value, "case {case}");
                    let id = body["id"].as_str().unwrap();
                    assert!(
                        id.starts_with(&format!("{BASE}/secrets/")),
                        "case {case}: id {id}"
                    );
                    assert_eq!(
                        id.rsplit('/').next().unwrap().len(),
                        32,
                        "case {case}: id {id}"
                    );
                }
                (Err(e), Err((status, code))) => {
                    assert_eq!((e.status, e.code), (*status, *code), "case {case}");
                    assert!(!e.message.contains("hunter2"));
                }
                (got, want) => panic!("case {case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn expired_secret_reports_exp() {
        let store = store();
        let route = Route::Get {
            kind: ObjectKind::Secret,
            name: "old".into(),
            version: None,
        };
        let body = store.read("myvault", &route, BASE, &paging(25, 0)).unwrap();
        assert_eq!(body["attributes"]["exp"], 946_684_800);
    }

    #[test]
    fn versions_page_with_next_link() {
        let store = store();
        let route = Route::Versions {
            kind: ObjectKind::Secret,
            name: "cfg".into(),
        };
        let first = store.read("myvault", &route, BASE, &paging(2, 0)).unwrap();
        assert_eq!(first["value"].as_array().unwrap().len(), 2);
        assert!(
            first["value"][0].get("value").is_none(),
            "lists never carry values"
        );
        assert_eq!(
            first["nextLink"],
            format!("{BASE}/secrets/cfg/versions?api-version=7.5&$skiptoken=2&maxresults=2")
        );
        let second = store.read("myvault", &route, BASE, &paging(2, 2)).unwrap();
        assert_eq!(second["value"].as_array().unwrap().len(), 1);
        assert!(second["nextLink"].is_null());
    }

    #[test]
    fn certificate_has_backing_secret_and_key() {
        let store = store();
        let p = paging(25, 0);
        let cert = store
            .read(
                "myvault",
                &Route::Get {
                    kind: ObjectKind::Certificate,
                    name: "web".into(),
                    version: None,
                },
                BASE,
                &p,
            )
            .unwrap();
        let version = cert["id"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(cert["sid"], format!("{BASE}/secrets/web/{version}"));
        assert_eq!(cert["kid"], format!("{BASE}/keys/web/{version}"));
        assert_eq!(
            cert["policy"]["secret_props"]["contentType"],
            "application/x-pem-file"
        );
        let secret = store
            .read(
                "myvault",
                &Route::Get {
                    kind: ObjectKind::Secret,
                    name: "web".into(),
                    version: None,
                },
                BASE,
                &p,
            )
            .unwrap();
        assert_eq!(secret["kid"], cert["kid"]);
        assert_eq!(secret["managed"], true);
        assert_eq!(secret["contentType"], "application/x-pem-file");
        let key = store
            .read(
                "myvault",
                &Route::Get {
                    kind: ObjectKind::Key,
                    name: "web".into(),
                    version: None,
                },
                BASE,
                &p,
            )
            .unwrap();
        assert_eq!(key["key"]["kid"], cert["kid"]);
        assert_eq!(key["managed"], true);
    }

    #[test]
    fn policy_decides_per_identity_and_name() {
        let store = store();
        let cases = [
            ("app-a", "db-password", true),
            ("app-a", "cfg", true),
            ("app-b", "db-password", true),
            ("app-b", "DB-Password", true),
            ("app-b", "cfg", false),
            ("stranger", "db-password", false),
        ];
        for (who, name, want) in cases {
            assert_eq!(
                store.allowed("myvault", who, name),
                want,
                "{who} reads {name}"
            );
        }
    }

    #[test]
    fn upsert_adds_latest_version() {
        let mut store = store();
        let v = store.upsert_secret(
            "myvault",
            "db-password",
            "rotated",
            SecretAttributes::default(),
            1,
        );
        let route = Route::Get {
            kind: ObjectKind::Secret,
            name: "db-password".into(),
            version: None,
        };
        let body = store.read("myvault", &route, BASE, &paging(25, 0)).unwrap();
        assert_eq!(body["value"], "rotated");
        assert!(body["id"].as_str().unwrap().ends_with(&v));
    }
}
