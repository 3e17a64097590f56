//! Which version of an object a value came from, and which version Key Vault calls current now:
//! what the rotation supervisor compares. Identifiers, versions and expiry times only: the check
//! never reads a value (secrets and certificates are checked by listing the secret's versions,
//! keys by reading the public key).

use crate::{
    error::{FailureKind, cause_chain, classify, facts_of},
    fetch::{ObjectKey, Resolver, client_options, get_key},
};
use akv_placeholder::ObjectKind;
use azure_core::credentials::TokenCredential;
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use azure_security_keyvault_secrets::{
    SecretClient, SecretClientOptions, models::SecretClientListSecretPropertiesVersionsOptions,
};
use futures::StreamExt as _;
use std::{collections::HashMap, sync::Arc, time::Duration};

/// The kind of object a placeholder read, as the supervisor needs to know it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TrackedKind {
    Secret,
    Certificate,
    Key,
}

impl TrackedKind {
    pub(crate) fn of(kind: ObjectKind) -> TrackedKind {
        match kind {
            ObjectKind::Secret => TrackedKind::Secret,
            ObjectKind::Certificate => TrackedKind::Certificate,
            ObjectKind::Key => TrackedKind::Key,
        }
    }
}

impl std::fmt::Display for TrackedKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrackedKind::Secret => "secret",
            TrackedKind::Certificate => "certificate",
            TrackedKind::Key => "key",
        })
    }
}

/// One object version a value was resolved from. Holds no value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Tracked {
    /// `https://myvault.vault.azure.net`
    pub vault_url: String,
    pub kind: TrackedKind,
    pub name: String,
    /// The placeholder named a version (`?version=`): it never changes.
    pub pinned: bool,
    /// The version the value came from (`None` if Key Vault's answer had no id).
    pub version: Option<String>,
    /// Expiry (`attributes.exp`, Unix seconds) of that version, if it has one.
    pub expires: Option<i64>,
}

/// What a fetch learnt besides the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub version: Option<String>,
    pub expires: Option<i64>,
}

/// The version part of an object id `https://<vault>/<kind>/<name>/<version>`.
///
/// Split by hand, not with a URL parser: it runs once per object fetched, and a full parse was
/// a few percent of the injector's CPU time per object.
pub(crate) fn version_of(id: &str) -> Option<String> {
    let (_, rest) = id.split_once("://")?;
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [_, _, v] if !v.is_empty() => Some(v.to_ascii_lowercase()),
        _ => None,
    }
}

/// Key Vault's current version of an object, from metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub version: String,
    /// Expiry of the current version (Unix seconds), if it has one.
    pub expires: Option<i64>,
}

/// Why one check could not say which version is current. Never contains a value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} ({cause})")]
pub struct CheckError {
    pub kind: FailureKind,
    /// Key Vault asked to wait this long (429 `Retry-After`).
    pub retry_after: Option<Duration>,
    pub cause: String,
}

impl CheckError {
    fn new(kind: FailureKind, cause: impl Into<String>) -> CheckError {
        CheckError {
            kind,
            retry_after: None,
            cause: cause.into(),
        }
    }

    fn from_sdk(e: &azure_core::Error) -> CheckError {
        let facts = facts_of(e);
        let kind = match classify(&facts) {
            crate::error::Verdict::Retry(k) | crate::error::Verdict::Fatal(k) => k,
        };
        let mut cause = cause_chain(e);
        if facts.untrusted_certificate {
            cause = format!("{cause}; {}", crate::error::UNTRUSTED_CERTIFICATE_HINT);
        }
        if facts.status == Some(403) {
            cause.push_str(
                "; checking for new versions lists the secret's versions (metadata, never the \
                 value): grant the pod's identity secrets/list (access policy) or a role with \
                 readMetadata (RBAC: Key Vault Secrets User has it)",
            );
        }
        CheckError {
            kind,
            retry_after: facts.retry_after,
            cause,
        }
    }
}

/// Most versions read per check (40 pages of 25); an object with more is reported, not guessed.
const MAX_VERSIONS: usize = 1000;

/// Clients kept between checks, per (vault, keys endpoint).
pub(crate) type ClientCache = std::sync::Mutex<HashMap<(String, bool), CheckClient>>;

#[derive(Clone)]
pub(crate) enum CheckClient {
    Secrets(Arc<SecretClient>),
    Keys(Arc<KeyClient>),
}

/// The newest of a secret's versions by creation time. `Tie` when two share the newest second:
/// then which one Key Vault serves cannot be told from metadata.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Newest<'a> {
    None,
    One(&'a VersionInfo),
    Tie(Vec<&'a VersionInfo>),
}

/// One entry of a secret's version list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionInfo {
    pub version: String,
    pub created: Option<i64>,
    pub expires: Option<i64>,
}

/// Key Vault's current version is the one created last. Pure; tested as a table.
pub(crate) fn newest(items: &[VersionInfo]) -> Newest<'_> {
    let Some(max) = items.iter().filter_map(|v| v.created).max() else {
        return Newest::None;
    };
    let top: Vec<&VersionInfo> = items.iter().filter(|v| v.created == Some(max)).collect();
    match top.as_slice() {
        [one] => Newest::One(one),
        _ => Newest::Tie(top),
    }
}

impl Resolver {
    fn check_client(&self, vault_url: &str, keys: bool) -> Result<CheckClient, CheckError> {
        let mut cache = self.check_clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(&(vault_url.to_owned(), keys)) {
            return Ok(c.clone());
        }
        let opts = client_options(&self.transport, None);
        let cred = self.credential.clone() as Arc<dyn TokenCredential>;
        let client = if keys {
            KeyClient::new(
                vault_url,
                cred,
                Some(KeyClientOptions {
                    client_options: opts,
                    ..Default::default()
                }),
            )
            .map(|c| CheckClient::Keys(Arc::new(c)))
        } else {
            SecretClient::new(
                vault_url,
                cred,
                Some(SecretClientOptions {
                    client_options: opts,
                    ..Default::default()
                }),
            )
            .map(|c| CheckClient::Secrets(Arc::new(c)))
        }
        .map_err(|e| CheckError::new(FailureKind::Rejected, cause_chain(&e)))?;
        cache.insert((vault_url.to_owned(), keys), client.clone());
        Ok(client)
    }

    /// Asks Key Vault which version of `object` is current, in one attempt bounded by
    /// `timeout` (the caller decides when to try again; a 429 carries its `Retry-After`).
    /// Reads metadata only: a secret's (or certificate's backing secret's) version list, or a
    /// key's public part.
    pub async fn current_version(
        &self,
        object: &Tracked,
        timeout: Duration,
    ) -> Result<Current, CheckError> {
        let keys = object.kind == TrackedKind::Key;
        let client = self.check_client(&object.vault_url, keys)?;
        let work = async {
            match client {
                CheckClient::Keys(c) => {
                    let key = ObjectKey {
                        vault_url: object.vault_url.clone(),
                        keys_endpoint: true,
                        name: object.name.clone(),
                        version: None,
                    };
                    match get_key(&c, &key).await {
                        Ok((_, meta)) => meta.version.map(|version| Current {
                            version,
                            expires: None,
                        }),
                        Err(Ok(e)) => return Err(CheckError::from_sdk(&e)),
                        Err(Err(why)) => return Err(CheckError::new(FailureKind::BadFormat, why)),
                    }
                    .ok_or_else(|| {
                        CheckError::new(FailureKind::BadFormat, "Key Vault's answer has no kid")
                    })
                }
                CheckClient::Secrets(c) => secret_current(&c, &object.name).await,
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(CheckError::new(
                FailureKind::Unreachable,
                format!("no answer within {:.1} s", timeout.as_secs_f64()),
            )),
        }
    }
}

async fn secret_current(client: &SecretClient, name: &str) -> Result<Current, CheckError> {
    let options = SecretClientListSecretPropertiesVersionsOptions {
        maxresults: Some(25),
        ..Default::default()
    };
    let mut pager = client
        .list_secret_properties_versions(name, Some(options))
        .map_err(|e| CheckError::new(FailureKind::Rejected, cause_chain(&e)))?;
    let mut items = Vec::new();
    while let Some(item) = pager.next().await {
        let props = item.map_err(|e| CheckError::from_sdk(&e))?;
        let Some(version) = props.id.as_deref().and_then(version_of) else {
            continue;
        };
        let attributes = props.attributes.unwrap_or_default();
        items.push(VersionInfo {
            version,
            created: attributes.created.map(|t| t.unix_timestamp()),
            expires: attributes.expires.map(|t| t.unix_timestamp()),
        });
        if items.len() > MAX_VERSIONS {
            return Err(CheckError::new(
                FailureKind::Rejected,
                format!(
                    "the secret has more than {MAX_VERSIONS} versions; purge old ones so a check \
                     stays a few requests"
                ),
            ));
        }
    }
    match newest(&items) {
        Newest::One(v) => Ok(Current {
            version: v.version.clone(),
            expires: v.expires,
        }),
        Newest::Tie(top) => Ok(Current {
            // Several created in the same second: report them all; the caller treats "mine is
            // among them" as unchanged (no restart on a guess).
            version: top
                .iter()
                .map(|v| v.version.as_str())
                .collect::<Vec<_>>()
                .join(","),
            expires: top.iter().filter_map(|v| v.expires).max(),
        }),
        Newest::None => Err(CheckError::new(
            FailureKind::NotFound,
            "Key Vault listed no versions with a creation time",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: &str, created: Option<i64>) -> VersionInfo {
        VersionInfo {
            version: version.into(),
            created,
            expires: None,
        }
    }

    #[test]
    fn newest_is_the_last_created() {
        let cases: &[(&str, Vec<VersionInfo>, &[&str])] = &[
            ("empty", vec![], &[]),
            (
                "in order",
                vec![v("a", Some(1)), v("b", Some(2)), v("c", Some(3))],
                &["c"],
            ),
            (
                "any order",
                vec![v("c", Some(3)), v("a", Some(1)), v("b", Some(2))],
                &["c"],
            ),
            (
                "no created ignored",
                vec![v("a", Some(1)), v("x", None)],
                &["a"],
            ),
            (
                "tie",
                vec![v("a", Some(1)), v("b", Some(5)), v("c", Some(5))],
                &["b", "c"],
            ),
        ];
        for (name, items, want) in cases {
            let got: Vec<&str> = match newest(items) {
                Newest::None => vec![],
                Newest::One(v) => vec![v.version.as_str()],
                Newest::Tie(top) => top.iter().map(|v| v.version.as_str()).collect(),
            };
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn versions_come_from_object_ids() {
        let cases = [
            (
                "https://v.vault.azure.net/secrets/db/0123456789ABCDEF0123456789abcdef",
                Some("0123456789abcdef0123456789abcdef"),
            ),
            ("https://v.vault.azure.net/keys/k/abc/", Some("abc")),
            ("https://v.vault.azure.net/secrets/db", None),
            (
                "https://v.vault.azure.net:443/secrets/db/abc?api-version=2025-07-01",
                Some("abc"),
            ),
            ("https://v.vault.azure.net/secrets/db/abc#part", Some("abc")),
            ("https://v.vault.azure.net", None),
            ("https://v.vault.azure.net/a/b/c/d", None),
            ("not a url", None),
        ];
        for (id, want) in cases {
            assert_eq!(version_of(id).as_deref(), want, "{id}");
        }
    }
}
