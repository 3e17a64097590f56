//! Registry credentials from `imagePullSecrets`, matched to images the way the kubelet does.
//!
//! The kubelet's keyring (`pkg/credentialprovider/keyring.go`) is the reference: keys may carry a
//! scheme and a path, `/v1/` and `/v2/` paths mean the bare host, a host label may be a glob
//! (`*.example.com`), a key with a path matches images under that path prefix, longer keys are
//! tried first, and credentials stored under `index.docker.io` serve Docker Hub images. Secret
//! values never appear in errors or `Debug` output.

use std::fmt;

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::IgnoredAny;
use zeroize::Zeroizing;

/// The data key of a `kubernetes.io/dockerconfigjson` secret.
pub const DOCKERCONFIGJSON_KEY: &str = ".dockerconfigjson";
/// The data key of a legacy `kubernetes.io/dockercfg` secret.
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// The host Docker Hub credentials are filed under.
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// Why a pull secret's data could not be read. Never contains a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("{format} is not valid JSON: {reason}")]
    InvalidJson {
        format: &'static str,
        reason: String,
    },
    #[error("{format}: {reason}")]
    InvalidShape {
        format: &'static str,
        reason: String,
    },
    #[error("{format}: entry for registry {registry:?}: {reason}")]
    InvalidEntry {
        format: &'static str,
        registry: String,
        reason: String,
    },
}

/// One username/password pair. The password is zeroized on drop and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    username: String,
    password: Zeroizing<String>,
}

impl Credential {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credential {
            username: username.into(),
            password: Zeroizing::new(password.into()),
        }
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// Only for building the request that carries it.
    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// An entry with neither username nor password means "pull anonymously".
    pub fn is_anonymous(&self) -> bool {
        self.username.is_empty() && self.password.is_empty()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
struct Entry {
    /// Normalised key: host[:port][/path], no scheme, no `/v1/`.
    key: String,
    credential: Credential,
}

/// The credentials of one pull secret (`.dockerconfigjson` or legacy `.dockercfg`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    /// Sorted by key, longest/most specific (reverse lexical order) first, like the kubelet.
    entries: Vec<Entry>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("registries", &self.registries())
            .finish()
    }
}

/// The shapes of a pull secret, as the kubelet's `DockerConfigJSON` / `DockerConfig` types read
/// them. Every level also accepts any other JSON (`Other`), so parsing fails only on syntax and
/// each wrong shape gets our own message: serde's would quote the offending value, which may be
/// a password.
#[derive(Deserialize)]
#[serde(untagged)]
enum Shaped<T> {
    Expected(T),
    Other(IgnoredAny),
}

/// `.dockerconfigjson`: the `auths` map inside an object (other keys, e.g. `credHelpers`, are
/// ignored as the kubelet ignores them).
#[derive(Deserialize)]
struct ConfigJson {
    auths: Option<Shaped<Auths>>,
}

/// Registry key -> entry (`.dockercfg` is this map alone).
type Auths = BTreeMap<String, Shaped<AuthEntry>>;

/// One entry as the kubelet's `DockerConfigEntry` reads it: `auth` (base64 `user:password`)
/// or `username` and `password`. Other fields (`email`, `identitytoken`, `registrytoken`) are
/// ignored: the kubelet does not use them to pull.
#[derive(Deserialize)]
struct AuthEntry {
    username: Option<Shaped<String>>,
    password: Option<Shaped<String>>,
    auth: Option<Shaped<String>>,
}

impl DockerConfig {
    /// Parses a `kubernetes.io/dockerconfigjson` secret's `.dockerconfigjson` value:
    /// `{"auths": {"<registry>": {"auth": "<base64 user:pass>"} | {"username", "password"}}}`.
    pub fn from_dockerconfigjson(bytes: &[u8]) -> Result<Self, CredentialsError> {
        const FORMAT: &str = DOCKERCONFIGJSON_KEY;
        let Shaped::Expected(config) = parse_json::<Shaped<ConfigJson>>(FORMAT, bytes)? else {
            return Err(shape(FORMAT, "the top level must be a JSON object"));
        };
        match config.auths {
            None => Err(shape(FORMAT, "has no `auths` object")),
            Some(Shaped::Other(_)) => Err(shape(FORMAT, "`auths` must be a JSON object")),
            Some(Shaped::Expected(auths)) => Self::from_entries(FORMAT, auths),
        }
    }

    /// Parses a legacy `kubernetes.io/dockercfg` secret's `.dockercfg` value: the `auths` map
    /// itself, without the wrapper.
    pub fn from_dockercfg(bytes: &[u8]) -> Result<Self, CredentialsError> {
        const FORMAT: &str = DOCKERCFG_KEY;
        match parse_json::<Shaped<Auths>>(FORMAT, bytes)? {
            Shaped::Expected(auths) => Self::from_entries(FORMAT, auths),
            Shaped::Other(_) => Err(shape(FORMAT, "the top level must be a JSON object")),
        }
    }

    /// Reads a pull secret as the kubelet does: a `kubernetes.io/dockerconfigjson` secret's
    /// `.dockerconfigjson` or a `kubernetes.io/dockercfg` secret's `.dockercfg`. Ok(None) for a
    /// secret of another type or without that key (the kubelet ignores those too).
    pub fn from_secret<'a>(
        secret_type: &str,
        data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Option<Self>, CredentialsError> {
        let wanted = match secret_type {
            "kubernetes.io/dockerconfigjson" => DOCKERCONFIGJSON_KEY,
            "kubernetes.io/dockercfg" => DOCKERCFG_KEY,
            _ => return Ok(None),
        };
        let Some((_, bytes)) = data
            .into_iter()
            .find(|(key, bytes)| *key == wanted && !bytes.is_empty())
        else {
            return Ok(None);
        };
        if wanted == DOCKERCONFIGJSON_KEY {
            Self::from_dockerconfigjson(bytes).map(Some)
        } else {
            Self::from_dockercfg(bytes).map(Some)
        }
    }

    /// Builds a config from (registry key, credential) pairs, e.g. for tests or other sources.
    pub fn from_credentials<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Credential)>,
    ) -> DockerConfig {
        let mut entries: Vec<Entry> = pairs
            .into_iter()
            .map(|(key, credential)| Entry {
                key: normalize_key(key),
                credential,
            })
            .collect();
        // Reverse lexical order puts `host/ns/repo` before `host/ns` before `host`.
        entries.sort_by(|a, b| b.key.cmp(&a.key));
        entries.dedup();
        DockerConfig { entries }
    }

    fn from_entries(format: &'static str, auths: Auths) -> Result<Self, CredentialsError> {
        let mut pairs = Vec::with_capacity(auths.len());
        for (registry, entry) in &auths {
            let bad = |reason: &str| CredentialsError::InvalidEntry {
                format,
                registry: registry.clone(),
                reason: reason.to_string(),
            };
            let Shaped::Expected(entry) = entry else {
                return Err(bad("must be a JSON object"));
            };
            let field = |name: &str, value| {
                text(value).ok_or_else(|| bad(&format!("`{name}` must be a string")))
            };
            let username = field("username", &entry.username)?;
            let password = field("password", &entry.password)?;
            // As in the kubelet, a non-empty `auth` wins over `username`/`password`.
            let auth = field("auth", &entry.auth)?;
            let credential = if auth.is_empty() {
                Credential::new(username, password)
            } else {
                decode_auth(auth).map_err(bad)?
            };
            pairs.push((registry.as_str(), credential));
        }
        Ok(Self::from_credentials(pairs))
    }

    /// The registry keys this config holds credentials for (normalised), for messages.
    pub fn registries(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.key.as_str()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Credentials for `image_name` (`registry/repository`, e.g. `docker.io/library/nginx`,
    /// no tag), most specific key first.
    pub fn lookup(&self, image_name: &str) -> Vec<&Credential> {
        let target = SchemelessUrl::parse(image_name);
        let found: Vec<&Credential> = self
            .entries
            .iter()
            .filter(|e| urls_match(&SchemelessUrl::parse(&e.key), &target))
            .map(|e| &e.credential)
            .collect();
        if !found.is_empty() {
            return found;
        }
        if is_default_registry_match(image_name) {
            return self
                .entries
                .iter()
                .filter(|e| e.key == DEFAULT_REGISTRY_HOST)
                .map(|e| &e.credential)
                .collect();
        }
        Vec::new()
    }
}

/// Credentials for `image_name` from several pull secrets, in secret order (the kubelet's union
/// keyring), without repeating an identical credential.
pub fn matching_credentials<'a>(
    configs: &'a [DockerConfig],
    image_name: &str,
) -> Vec<&'a Credential> {
    let mut out: Vec<&Credential> = Vec::new();
    for credential in configs.iter().flat_map(|c| c.lookup(image_name)) {
        if !out.contains(&credential) {
            out.push(credential);
        }
    }
    out
}

/// A field's text (empty when absent or null), or None when it is not a string.
fn text(value: &Option<Shaped<String>>) -> Option<&str> {
    match value {
        None => Some(""),
        Some(Shaped::Expected(text)) => Some(text),
        Some(Shaped::Other(_)) => None,
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    format: &'static str,
    bytes: &[u8],
) -> Result<T, CredentialsError> {
    // Only the category, line and column of serde_json's error: never its text, which may
    // quote the input. (Every shape is accepted, so only syntax errors reach here.)
    serde_json::from_slice(bytes).map_err(|e| CredentialsError::InvalidJson {
        format,
        reason: format!(
            "{} at line {} column {}",
            category(&e),
            e.line(),
            e.column()
        ),
    })
}

fn category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Data => "unexpected value",
    }
}

fn shape(format: &'static str, reason: &str) -> CredentialsError {
    CredentialsError::InvalidShape {
        format,
        reason: reason.to_string(),
    }
}

fn decode_auth(auth: &str) -> Result<Credential, &'static str> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let decoded = Zeroizing::new(
        engine
            .decode(auth.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth.trim()))
            .map_err(|_| "`auth` is not valid base64")?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| "`auth` does not decode to UTF-8 text")?;
    let (user, password) = text
        .split_once(':')
        .ok_or("`auth` does not decode to `username:password`")?;
    Ok(Credential::new(user, password))
}

/// `https://index.docker.io/v1/` -> `index.docker.io`; `http://reg:5000/ns` -> `reg:5000/ns`.
fn normalize_key(key: &str) -> String {
    let url = SchemelessUrl::parse(key);
    let path = url
        .path
        .strip_prefix("/v1/")
        .or_else(|| url.path.strip_prefix("/v2/"))
        .map(|rest| format!("/{rest}"))
        .unwrap_or_else(|| url.path.to_string());
    if path.is_empty() || path == "/" {
        url.host.to_string()
    } else {
        format!("{}{path}", url.host)
    }
}

/// A registry key or image name split like Go's `url.Parse("https://" + s)`.
struct SchemelessUrl<'a> {
    host: String,
    path: &'a str,
}

impl<'a> SchemelessUrl<'a> {
    fn parse(s: &'a str) -> Self {
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        let (host, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        SchemelessUrl {
            host: host.to_ascii_lowercase(),
            path,
        }
    }

    /// Host labels and port, as the kubelet's `splitURL`.
    fn split(&self) -> (Vec<&str>, &str) {
        let (host, port) = match self.host.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, p),
            _ => (self.host.as_str(), ""),
        };
        (host.split('.').collect(), port)
    }
}

/// The kubelet's `URLsMatch`: same port, same number of labels, each label glob-matches, and the
/// key's path is a prefix of the image's.
fn urls_match(glob: &SchemelessUrl<'_>, target: &SchemelessUrl<'_>) -> bool {
    let (glob_labels, glob_port) = glob.split();
    let (target_labels, target_port) = target.split();
    glob_port == target_port
        && glob_labels.len() == target_labels.len()
        && glob_labels
            .iter()
            .zip(&target_labels)
            .all(|(g, t)| glob_match(g.as_bytes(), t.as_bytes()))
        && target.path.starts_with(glob.path)
}

/// `*` (any run) and `?` (one byte) within one host label.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative, remembering only the last `*`: O(pattern x text) at worst. The recursive form
    // backtracked exponentially on runs of `*`, so a crafted pull secret could stall lookups
    // (found by fuzzing).
    let (mut p, mut t) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                last_star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match last_star {
                Some((after_star, star_t)) => {
                    p = after_star;
                    t = star_t + 1;
                    last_star = Some((after_star, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The kubelet's `isDefaultRegistryMatch`: does this image live on Docker Hub?
fn is_default_registry_match(image: &str) -> bool {
    let mut parts = image.splitn(2, '/');
    let first = parts.next().unwrap_or_default();
    if first.is_empty() {
        return false;
    }
    if parts.next().is_none() {
        return true;
    }
    first == "docker.io" || first == DEFAULT_REGISTRY_HOST || !first.contains(['.', ':'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn users(creds: &[&Credential]) -> Vec<String> {
        creds.iter().map(|c| c.username().to_string()).collect()
    }

    /// (case name, secret JSON, expected (key, username, password) in lookup order)
    type ConfigCase = (
        &'static str,
        String,
        &'static [(&'static str, &'static str, &'static str)],
    );

    #[test]
    fn parses_dockerconfigjson_variants() {
        let cases: &[ConfigCase] = &[
            (
                "auth field",
                format!(r#"{{"auths":{{"reg.example.com":{{"auth":"{}"}}}}}}"#, b64("alice:s3cr:et")),
                &[("reg.example.com", "alice", "s3cr:et")],
            ),
            (
                "username and password",
                r#"{"auths":{"https://reg.example.com/v1/":{"username":"bob","password":"pw","email":"x@y"}}}"#.into(),
                &[("reg.example.com", "bob", "pw")],
            ),
            (
                "auth wins over username",
                format!(r#"{{"auths":{{"r.io":{{"auth":"{}","username":"ignored","password":"no"}}}}}}"#, b64("carol:pw")),
                &[("r.io", "carol", "pw")],
            ),
            (
                "unpadded base64",
                r#"{"auths":{"r.io":{"auth":"ZGF2ZTpwdw"}}}"#.into(),
                &[("r.io", "dave", "pw")],
            ),
            (
                "empty entry is anonymous",
                r#"{"auths":{"r.io":{}}}"#.into(),
                &[("r.io", "", "")],
            ),
            (
                "keys with scheme, port and path, sorted specific first",
                r#"{"auths":{"http://r.io:5000":{"username":"a","password":"1"},"r.io:5000/team":{"username":"b","password":"2"}}}"#.into(),
                &[("r.io:5000/team", "b", "2"), ("r.io:5000", "a", "1")],
            ),
            (
                "identitytoken and other fields are ignored, as the kubelet ignores them",
                r#"{"auths":{"r.io":{"identitytoken":"tok","registrytoken":"t","email":"e"}},"credHelpers":{"r.io":"x"}}"#.into(),
                &[("r.io", "", "")],
            ),
            (
                "null fields are absent ones",
                r#"{"auths":{"r.io":{"username":null,"password":null,"auth":null}}}"#.into(),
                &[("r.io", "", "")],
            ),
            (
                "empty auth falls back to username and password",
                r#"{"auths":{"r.io":{"auth":"","username":"eve","password":"pw"}}}"#.into(),
                &[("r.io", "eve", "pw")],
            ),
            ("no registries", r#"{"auths":{}}"#.into(), &[]),
        ];
        for (name, json, want) in cases {
            let config = DockerConfig::from_dockerconfigjson(json.as_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let got: Vec<(String, String, String)> = config
                .entries
                .iter()
                .map(|e| {
                    (
                        e.key.clone(),
                        e.credential.username().to_string(),
                        e.credential.password().to_string(),
                    )
                })
                .collect();
            let want: Vec<(String, String, String)> = want
                .iter()
                .map(|(k, u, p)| (k.to_string(), u.to_string(), p.to_string()))
                .collect();
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn parses_legacy_dockercfg() {
        let json = format!(
            r#"{{"https://index.docker.io/v1/":{{"auth":"{}","email":"e"}}}}"#,
            b64("u:p")
        );
        let config = DockerConfig::from_dockercfg(json.as_bytes()).unwrap();
        assert_eq!(config.registries(), vec!["index.docker.io"]);
        assert_eq!(users(&config.lookup("docker.io/library/nginx")), vec!["u"]);
    }

    /// (secret type, data, username the config yields for r.io)
    type SecretCase = (
        &'static str,
        &'static [(&'static str, &'static [u8])],
        Option<&'static str>,
    );

    #[test]
    fn reads_pull_secrets_by_type() {
        const JSON: &[u8] = br#"{"auths":{"r.io":{"username":"j","password":"p"}}}"#;
        const CFG: &[u8] = br#"{"r.io":{"username":"c","password":"p"}}"#;
        let cases: &[SecretCase] = &[
            (
                "kubernetes.io/dockerconfigjson",
                &[(".dockerconfigjson", JSON)],
                Some("j"),
            ),
            ("kubernetes.io/dockercfg", &[(".dockercfg", CFG)], Some("c")),
            (
                "kubernetes.io/dockerconfigjson",
                &[(".dockercfg", CFG)],
                None,
            ),
            (
                "kubernetes.io/dockerconfigjson",
                &[(".dockerconfigjson", b"")],
                None,
            ),
            ("Opaque", &[(".dockerconfigjson", JSON)], None),
        ];
        for (secret_type, data, want) in cases {
            let got = DockerConfig::from_secret(secret_type, data.iter().copied())
                .unwrap_or_else(|e| panic!("{secret_type}: {e}"));
            let user = got.map(|c| c.lookup("r.io/app")[0].username().to_string());
            assert_eq!(user.as_deref(), *want, "{secret_type} {data:?}");
        }
        let err = DockerConfig::from_secret("kubernetes.io/dockercfg", [(".dockercfg", &b"{"[..])])
            .unwrap_err();
        assert!(
            err.to_string().starts_with(".dockercfg is not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn rejects_bad_secrets_without_echoing_values() {
        let secret = "topsecretvalue";
        let cases: &[(&str, String, &str)] = &[
            (
                "not json",
                format!("{{\"auths\": {secret}"),
                "not valid JSON",
            ),
            (
                "truncated",
                r#"{"auths":{"#.into(),
                "unexpected end of input",
            ),
            (
                "top level array",
                "[]".into(),
                "top level must be a JSON object",
            ),
            ("no auths", r#"{"r.io":{}}"#.into(), "has no `auths` object"),
            (
                "auths not object",
                r#"{"auths":[]}"#.into(),
                "`auths` must be a JSON object",
            ),
            (
                "entry not object",
                format!(r#"{{"auths":{{"r.io":"{secret}"}}}}"#),
                "entry for registry \"r.io\": must be a JSON object",
            ),
            (
                "password not string",
                r#"{"auths":{"r.io":{"username":"u","password":12345}}}"#.into(),
                "`password` must be a string",
            ),
            (
                "auth not a string",
                r#"{"auths":{"r.io":{"auth":12345}}}"#.into(),
                "entry for registry \"r.io\": `auth` must be a string",
            ),
            (
                "auth not base64",
                format!(r#"{{"auths":{{"r.io":{{"auth":"{secret}!!"}}}}}}"#),
                "`auth` is not valid base64",
            ),
            (
                "auth without colon",
                format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, b64(secret)),
                "`auth` does not decode to `username:password`",
            ),
        ];
        for (name, json, want) in cases {
            let err = DockerConfig::from_dockerconfigjson(json.as_bytes())
                .expect_err(name)
                .to_string();
            assert!(err.contains(want), "case {name}: {err:?} lacks {want:?}");
            assert!(err.starts_with(".dockerconfigjson"), "case {name}: {err:?}");
            assert!(
                !err.contains(secret) && !err.contains("12345"),
                "case {name} leaks: {err:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_passwords() {
        let config = DockerConfig::from_credentials([("r.io", Credential::new("u", "hunter2"))]);
        let shown = format!("{config:?} {:?}", config.entries[0].credential);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("r.io") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn matches_images_like_the_kubelet() {
        let config = DockerConfig::from_credentials([
            ("index.docker.io", Credential::new("hub", "1")),
            ("https://reg.example.com", Credential::new("reg", "2")),
            ("reg.example.com/team", Credential::new("team", "3")),
            ("*.azurecr.io", Credential::new("acr", "4")),
            ("127.0.0.1:5000", Credential::new("local", "5")),
            ("http://quay.io/v2/", Credential::new("quay", "6")),
        ]);
        let cases: &[(&str, &[&str])] = &[
            ("docker.io/library/nginx", &["hub"]),
            ("docker.io/someone/app", &["hub"]),
            ("reg.example.com/app", &["reg"]),
            ("reg.example.com/team/app", &["team", "reg"]),
            ("reg.example.com/teamster/app", &["team", "reg"]), // path prefix is a string prefix, as in the kubelet
            ("myreg.azurecr.io/app", &["acr"]),
            ("a.b.azurecr.io/app", &[]), // a glob label never spans dots
            ("127.0.0.1:5000/app", &["local"]),
            ("127.0.0.1:5001/app", &[]),
            ("127.0.0.1/app", &[]),
            ("quay.io/org/app", &["quay"]),
            ("REG.EXAMPLE.COM/app", &["reg"]),
            ("ghcr.io/org/app", &[]),
        ];
        for (image, want) in cases {
            assert_eq!(users(&config.lookup(image)), *want, "image {image}");
        }
    }

    #[test]
    fn docker_hub_aliases_match_each_other() {
        for key in [
            "docker.io",
            "index.docker.io",
            "https://index.docker.io/v1/",
            "https://index.docker.io/v2/",
        ] {
            let config = DockerConfig::from_credentials([(key, Credential::new("hub", "p"))]);
            assert_eq!(
                users(&config.lookup("docker.io/library/busybox")),
                vec!["hub"],
                "key {key}"
            );
            assert!(config.lookup("ghcr.io/x/y").is_empty(), "key {key}");
        }
    }

    #[test]
    fn several_secrets_are_tried_in_order_without_repeats() {
        let first = DockerConfig::from_credentials([("r.io", Credential::new("a", "1"))]);
        let second = DockerConfig::from_credentials([
            ("r.io", Credential::new("a", "1")),
            ("r.io/x", Credential::new("b", "2")),
        ]);
        let configs = [first, second];
        assert_eq!(
            users(&matching_credentials(&configs, "r.io/x/app")),
            vec!["a", "b"]
        );
        assert_eq!(users(&matching_credentials(&configs, "r.io/y")), vec!["a"]);
        assert!(matching_credentials(&configs, "other.io/y").is_empty());
    }

    #[test]
    fn glob_matching_does_not_backtrack_exponentially() {
        // The fuzzer's input: a 119-byte key of stars took over 10 s with the recursive matcher.
        let pattern = format!("*?{}c*0.", "*".repeat(100));
        let text = "a".repeat(200);
        assert!(!glob_match(pattern.as_bytes(), text.as_bytes()));
        assert!(glob_match(
            pattern.as_bytes(),
            format!("{text}c0.").as_bytes()
        ));
    }

    #[test]
    fn glob_matching_table() {
        let cases = [
            ("*", "anything", true),
            ("*", "", true),
            ("a*c", "abbbc", true),
            ("a*c", "abd", false),
            ("?b", "ab", true),
            ("?b", "b", false),
            ("exact", "exact", true),
            ("exact", "exacT", false),
            ("a**b", "ab", true),
            ("*.example.com", "registry.example.com", true),
            ("*.example.com", "example.com", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbYd", false),
            ("", "", true),
            ("", "a", false),
            ("**", "", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                want,
                "{pattern} vs {text}"
            );
        }
    }
}
