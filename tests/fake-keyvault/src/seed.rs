//! The seed file: which identities exist and what each vault holds at start.
//!
//! JSON is valid YAML, so one parser reads both. Validation is strict and names the path of the
//! offending field, because a typo in a fixture should fail loudly, not yield a silent 404 later.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Tenant used when the seed names none.
pub const DEFAULT_TENANT: &str = "72f988bf-0000-0000-0000-000000000001";

/// Everything the fake serves, as declared by the test or the seed file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Directory (tenant) id the token service answers for.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// Identities that may obtain tokens.
    #[serde(default)]
    pub identities: Vec<IdentitySeed>,
    /// Vaults by name (the first DNS label of the vault host).
    #[serde(default)]
    pub vaults: BTreeMap<String, VaultSeed>,
}

impl Default for Seed {
    fn default() -> Self {
        Seed {
            tenant: default_tenant(),
            identities: Vec::new(),
            vaults: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for Seed {
    // Secret values stay out of Debug output: list only names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seed")
            .field("tenant", &self.tenant)
            .field(
                "identities",
                &self
                    .identities
                    .iter()
                    .map(|i| &i.client_id)
                    .collect::<Vec<_>>(),
            )
            .field("vaults", &self.vaults.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn default_tenant() -> String {
    DEFAULT_TENANT.to_string()
}

/// One identity: a service principal (`client_secret`), a workload identity (`federated_token`)
/// or a managed identity (`managed: true`; client id `system` = the system-assigned one).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySeed {
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub federated_token: Option<String>,
    #[serde(default)]
    pub managed: bool,
}

/// How an identity proves itself to the token service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityKind {
    ClientSecret,
    Federated,
    Managed,
}

impl IdentitySeed {
    pub(crate) fn kind(&self) -> IdentityKind {
        if self.managed {
            IdentityKind::Managed
        } else if self.federated_token.is_some() {
            IdentityKind::Federated
        } else {
            IdentityKind::ClientSecret
        }
    }
}

/// One vault's contents and optional access policy.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSeed {
    /// identity -> object names it may read (`*` = all). Absent: every identity reads everything.
    #[serde(default)]
    pub access: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSeed>,
    #[serde(default)]
    pub certificates: BTreeMap<String, CertificateSeed>,
    #[serde(default)]
    pub keys: BTreeMap<String, KeySeed>,
}

/// A secret: either one version written inline, or a `versions` list (oldest first).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSeed {
    #[serde(default)]
    pub versions: Option<Vec<SecretVersionSeed>>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub exp: Option<String>,
    #[serde(default)]
    pub nbf: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One version of a secret.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretVersionSeed {
    pub value: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub exp: Option<String>,
    #[serde(default)]
    pub nbf: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A certificate; its key and a self-signed certificate are generated at start.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSeed {
    /// X.500 subject, e.g. `CN=web.example.com`. Default: `CN=<name>`.
    #[serde(default)]
    pub subject: Option<String>,
    /// DNS names for the subject alternative name extension.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// `application/x-pkcs12` (Key Vault's default) or `application/x-pem-file`.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// A key. EC keys are generated at start; `RSA` serves a fixed 2048-bit test public key (ring
/// cannot generate RSA keys, and Key Vault only ever returns a key's public part).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySeed {
    /// `EC` (default) or `RSA`.
    #[serde(default)]
    pub kty: Option<String>,
    /// `P-256` (default) or `P-384`.
    #[serde(default)]
    pub crv: Option<String>,
}

/// Why a seed could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read seed file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("seed is not valid YAML/JSON for the seed format: {0}")]
    Syntax(#[from] serde_yaml_ng::Error),
    #[error("seed field `{path}`: {problem}")]
    Invalid { path: String, problem: String },
}

fn invalid(path: impl Into<String>, problem: impl Into<String>) -> SeedError {
    SeedError::Invalid {
        path: path.into(),
        problem: problem.into(),
    }
}

impl Seed {
    /// Parses and validates a seed written in YAML or JSON.
    pub fn from_yaml(text: &str) -> Result<Seed, SeedError> {
        let seed: Seed = serde_yaml_ng::from_str(text)?;
        seed.validate()?;
        Ok(seed)
    }

    /// Reads a seed file (`.yaml`, `.yml` or `.json`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Seed, SeedError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Seed::from_yaml(&text)
    }

    /// Checks names, versions, dates and references, naming the field at fault.
    pub fn validate(&self) -> Result<(), SeedError> {
        if self.tenant.trim().is_empty() {
            return Err(invalid("tenant", "must not be empty"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, id) in self.identities.iter().enumerate() {
            let path = format!("identities[{i}]");
            if id.client_id.is_empty() {
                return Err(invalid(format!("{path}.client_id"), "must not be empty"));
            }
            if !seen.insert(id.client_id.as_str()) {
                return Err(invalid(
                    format!("{path}.client_id"),
                    format!("identity `{}` is declared twice", id.client_id),
                ));
            }
            let ways = usize::from(id.client_secret.is_some())
                + usize::from(id.federated_token.is_some())
                + usize::from(id.managed);
            if ways != 1 {
                return Err(invalid(
                    path,
                    format!(
                        "identity `{}` needs exactly one of client_secret, federated_token, managed: true",
                        id.client_id
                    ),
                ));
            }
        }
        for (vname, vault) in &self.vaults {
            let vpath = format!("vaults.{vname}");
            check_vault_name(vname).map_err(|p| invalid(&vpath, p))?;
            if let Some(access) = &vault.access {
                for who in access.keys() {
                    if !seen.contains(who.as_str()) {
                        return Err(invalid(
                            format!("{vpath}.access.{who}"),
                            format!("identity `{who}` is not declared under `identities`"),
                        ));
                    }
                }
            }
            let mut names = std::collections::HashSet::new();
            for name in vault.secrets.keys().chain(vault.certificates.keys()) {
                // A certificate owns a secret of the same name: the two must not collide.
                if !names.insert(name.to_ascii_lowercase()) {
                    return Err(invalid(
                        format!("{vpath}.secrets.{name}"),
                        "a secret and a certificate share this name (names are case-insensitive)",
                    ));
                }
            }
            for (name, secret) in &vault.secrets {
                let spath = format!("{vpath}.secrets.{name}");
                check_object_name(name).map_err(|p| invalid(&spath, p))?;
                for (i, v) in secret.version_list(&spath)?.iter().enumerate() {
                    let path = format!("{spath}.versions[{i}]");
                    if let Some(ver) = &v.version {
                        check_version(ver).map_err(|p| invalid(format!("{path}.version"), p))?;
                    }
                    for (field, value) in [("exp", &v.exp), ("nbf", &v.nbf)] {
                        if let Some(value) = value {
                            parse_time(value).map_err(|p| invalid(format!("{path}.{field}"), p))?;
                        }
                    }
                }
            }
            for (name, cert) in &vault.certificates {
                let cpath = format!("{vpath}.certificates.{name}");
                check_object_name(name).map_err(|p| invalid(&cpath, p))?;
                match cert.content_type.as_deref() {
                    None | Some(PKCS12) | Some(PEM) => {}
                    Some(other) => {
                        return Err(invalid(
                            format!("{cpath}.content_type"),
                            format!("`{other}` is not `{PKCS12}` or `{PEM}`"),
                        ));
                    }
                }
                if let Some(subject) = &cert.subject {
                    parse_subject(subject).map_err(|p| invalid(format!("{cpath}.subject"), p))?;
                }
            }
            for (name, key) in &vault.keys {
                let kpath = format!("{vpath}.keys.{name}");
                check_object_name(name).map_err(|p| invalid(&kpath, p))?;
                key.key_type().map_err(|p| invalid(&kpath, p))?;
            }
        }
        Ok(())
    }
}

/// Content type of a PKCS#12 certificate secret.
pub const PKCS12: &str = "application/x-pkcs12";
/// Content type of a PEM certificate secret.
pub const PEM: &str = "application/x-pem-file";

impl SecretSeed {
    /// The versions, oldest first, whichever way they were written.
    pub(crate) fn version_list(&self, path: &str) -> Result<Vec<SecretVersionSeed>, SeedError> {
        match (&self.versions, &self.value) {
            (Some(_), Some(_)) => Err(invalid(path, "give either `value` or `versions`, not both")),
            (None, None) => Err(invalid(path, "needs `value` or `versions`")),
            (Some(list), None) if list.is_empty() => Err(invalid(
                format!("{path}.versions"),
                "must list at least one version",
            )),
            (Some(list), None) => {
                if self.version.is_some()
                    || self.content_type.is_some()
                    || self.enabled.is_some()
                    || self.exp.is_some()
                    || self.nbf.is_some()
                    || !self.tags.is_empty()
                {
                    return Err(invalid(
                        path,
                        "with `versions`, put version, content_type, enabled, exp, nbf and tags inside each version",
                    ));
                }
                Ok(list.clone())
            }
            (None, Some(value)) => Ok(vec![SecretVersionSeed {
                value: value.clone(),
                version: self.version.clone(),
                content_type: self.content_type.clone(),
                enabled: self.enabled,
                exp: self.exp.clone(),
                nbf: self.nbf.clone(),
                tags: self.tags.clone(),
            }]),
        }
    }
}

/// Elliptic curves the fake can generate keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

impl Curve {
    pub(crate) fn jwk_name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }
}

/// The key type a [`KeySeed`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Ec(Curve),
    Rsa,
}

impl KeySeed {
    pub(crate) fn key_type(&self) -> Result<KeyType, String> {
        match self.kty.as_deref().unwrap_or("EC") {
            "EC" => {}
            "RSA" => {
                return match self.crv {
                    None => Ok(KeyType::Rsa),
                    Some(_) => Err("`crv` applies only to kty `EC`".into()),
                };
            }
            other => return Err(format!("kty `{other}` is not `EC` or `RSA`")),
        }
        match self.crv.as_deref().unwrap_or("P-256") {
            "P-256" => Ok(KeyType::Ec(Curve::P256)),
            "P-384" => Ok(KeyType::Ec(Curve::P384)),
            other => Err(format!("crv `{other}` is not `P-256` or `P-384`")),
        }
    }
}

/// Vault names: 3-24 characters, letters, digits and dashes, starting with a letter.
pub(crate) fn check_vault_name(name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let first_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if (3..=24).contains(&name.len()) && ok_chars && first_letter && !name.ends_with('-') {
        Ok(())
    } else {
        Err(format!(
            "vault name `{name}` must be 3-24 letters, digits or dashes, start with a letter and not end with a dash"
        ))
    }
}

/// Object names: 1-127 letters, digits and dashes.
pub(crate) fn check_object_name(name: &str) -> Result<(), String> {
    if (1..=127).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        Ok(())
    } else {
        Err(format!(
            "object name `{name}` must be 1-127 letters, digits or dashes"
        ))
    }
}

/// Versions: 32 hex digits.
pub(crate) fn check_version(version: &str) -> Result<(), String> {
    if version.len() == 32 && version.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("version `{version}` must be 32 hex digits"))
    }
}

/// Parses an RFC 3339 time such as `2999-01-01T00:00:00Z`.
pub(crate) fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time like 2999-01-01T00:00:00Z ({e})"))
}

/// Splits `CN=a, O=b` into (attribute, value) pairs, accepting the attributes rcgen can write.
pub(crate) fn parse_subject(subject: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in subject.split(',') {
        let part = part.trim();
        let (attr, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` in subject `{subject}` is not ATTRIBUTE=VALUE"))?;
        let attr = attr.trim().to_ascii_uppercase();
        if !matches!(attr.as_str(), "CN" | "O" | "OU" | "C" | "L" | "ST") {
            return Err(format!(
                "attribute `{attr}` in subject `{subject}` is not one of CN, O, OU, C, L, ST"
            ));
        }
        if value.trim().is_empty() {
            return Err(format!(
                "attribute `{attr}` in subject `{subject}` has an empty value"
            ));
        }
        out.push((attr, value.trim().to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_seeds_parse() {
        let cases: &[(&str, &str)] = &[
            ("empty", "{}"),
            (
                "json",
                r#"{"vaults":{"myvault":{"secrets":{"a":{"value":"x"}}}}}"#,
            ),
            (
                "full",
                r#"
tenant: t1
identities:
  - { client_id: app-a, client_secret: s }
  - { client_id: app-b, federated_token: tok }
  - { client_id: system, managed: true }
vaults:
  myvault:
    access: { app-a: ["*"], app-b: [db] }
    secrets:
      db: { value: v, content_type: text/plain, exp: 2999-01-01T00:00:00Z }
      cfg:
        versions:
          - { value: '{"a":1}', version: 0123456789abcdef0123456789abcdef }
          - { value: '{"a":2}', enabled: false, nbf: 2020-01-01T00:00:00Z }
    certificates:
      web: { subject: "CN=web.example.com, O=Test", content_type: application/x-pem-file }
    keys:
      k1: {}
      k2: { kty: EC, crv: P-384 }
"#,
            ),
        ];
        for (name, text) in cases {
            if let Err(e) = Seed::from_yaml(text) {
                panic!("case {name}: {e}");
            }
        }
    }

    #[test]
    fn bad_seeds_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("unknown top field", "vault: {}", "unknown field `vault`"),
            ("vault name", "vaults: { a: {} }", "vaults.a"),
            (
                "object name",
                "vaults: { myvault: { secrets: { 'a_b': { value: x } } } }",
                "vaults.myvault.secrets.a_b",
            ),
            (
                "no value",
                "vaults: { myvault: { secrets: { a: {} } } }",
                "needs `value` or `versions`",
            ),
            (
                "both",
                "vaults: { myvault: { secrets: { a: { value: x, versions: [ { value: y } ] } } } }",
                "not both",
            ),
            (
                "bad version",
                "vaults: { myvault: { secrets: { a: { value: x, version: abc } } } }",
                "vaults.myvault.secrets.a.versions[0].version",
            ),
            (
                "bad exp",
                "vaults: { myvault: { secrets: { a: { value: x, exp: tomorrow } } } }",
                "versions[0].exp",
            ),
            (
                "identity two ways",
                "identities: [ { client_id: a, client_secret: s, managed: true } ]",
                "exactly one",
            ),
            (
                "identity none",
                "identities: [ { client_id: a } ]",
                "identities[0]",
            ),
            (
                "undeclared access",
                "vaults: { myvault: { access: { ghost: ['*'] } } }",
                "vaults.myvault.access.ghost",
            ),
            (
                "rsa key with a curve",
                "vaults: { myvault: { keys: { k: { kty: RSA, crv: P-256 } } } }",
                "applies only to kty `EC`",
            ),
            (
                "cert type",
                "vaults: { myvault: { certificates: { c: { content_type: text/plain } } } }",
                "certificates.c.content_type",
            ),
            (
                "cert subject",
                "vaults: { myvault: { certificates: { c: { subject: 'XX=1' } } } }",
                "XX",
            ),
            (
                "name clash",
                "vaults: { myvault: { secrets: { web: { value: x } }, certificates: { WEB: {} } } }",
                "share this name",
            ),
        ];
        for (name, text, want) in cases {
            match Seed::from_yaml(text) {
                Ok(_) => panic!("case {name}: accepted"),
                Err(e) => assert!(
                    e.to_string().contains(want),
                    "case {name}: `{e}` lacks `{want}`"
                ),
            }
        }
    }

    #[test]
    fn debug_hides_values() {
        let seed =
            Seed::from_yaml("vaults: { myvault: { secrets: { a: { value: hunter2 } } } }").unwrap();
        assert!(!format!("{seed:?}").contains("hunter2"));
    }
}
