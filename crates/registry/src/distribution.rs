//! The part of the OCI distribution protocol that reading an image config needs: a manifest by
//! tag or digest, a blob by digest, and the token dance in front of them (a `401` with a Bearer
//! or Basic challenge). Every request goes through the [`Egress`] clients and their policy;
//! every body is read with a size cap; answers are checked against their digests; and nothing a
//! registry says in a body reaches an error message (debug log only, bounded).

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};
use sha2::Digest as _;
use zeroize::Zeroizing;

use crate::egress::Egress;
use crate::egress::policy::{Refused, authority, unresolvable_host};
use crate::error::{Failure, short};

/// Manifests and indexes are a few KiB; nothing legitimate comes near this.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Token answers are a few KiB (a JWT or two).
const MAX_TOKEN_BYTES: u64 = 64 << 10;
/// Of an error answer, only this much is read (for its error codes and the debug log).
const MAX_ERROR_BYTES: u64 = 16 << 10;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Credentials for one attempt.
pub(crate) enum Auth<'a> {
    Anonymous,
    Basic(&'a str, &'a str),
}

/// A manifest as far as the resolver reads it.
pub(crate) enum Manifest {
    Image {
        config_digest: String,
        config_size: i64,
    },
    Index(Vec<IndexEntry>),
}

pub(crate) struct IndexEntry {
    pub(crate) digest: String,
    /// (os, architecture, variant)
    pub(crate) platform: Option<(String, String, Option<String>)>,
}

/// One repository of one registry, with the token got for it (reused for every request of
/// one lookup).
pub(crate) struct Repository<'a> {
    egress: &'a Egress,
    /// `{scheme}://{registry}/v2/{repository}/`
    base: Url,
    repository: &'a str,
    auth: Auth<'a>,
    bearer: Option<Zeroizing<String>>,
    basic: bool,
}

impl<'a> Repository<'a> {
    pub(crate) fn new(
        egress: &'a Egress,
        secure: bool,
        registry: &str,
        repository: &'a str,
        auth: Auth<'a>,
    ) -> Result<Repository<'a>, Failure> {
        let scheme = if secure { "https" } else { "http" };
        let base = Url::parse(&format!("{scheme}://{registry}/v2/{repository}/"))
            .map_err(|e| Failure::Other(format!("not a registry address: {e}")))?;
        Ok(Repository {
            egress,
            base,
            repository,
            auth,
            bearer: None,
            basic: false,
        })
    }

    /// The manifest `reference` (tag or digest) names, and its digest.
    pub(crate) async fn manifest(
        &mut self,
        reference: &str,
    ) -> Result<(Manifest, String), Failure> {
        let url = self.url(&format!("manifests/{reference}"))?;
        let response = self.get(url, Some(MANIFEST_TYPES)).await?;
        let media_type = header_text(response.headers(), CONTENT_TYPE);
        let body = self.read(response, MAX_MANIFEST_BYTES, "manifest").await?;
        let digest = sha256_digest(&body);
        if reference.contains(':') && reference != digest {
            return Err(invalid(format!(
                "the manifest it sent for {reference} has digest {digest}"
            )));
        }
        Ok((parse_manifest(&body, media_type.as_deref())?, digest))
    }

    /// The blob `digest`, at most `max` bytes, checked against its digest.
    pub(crate) async fn blob(&mut self, digest: &str, max: u64) -> Result<Vec<u8>, Failure> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let response = self.get(url, None).await?;
        let body = self.read(response, max, "config blob").await?;
        if sha256_digest(&body) != digest {
            return Err(invalid(format!(
                "the blob it sent for {digest} does not match it"
            )));
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> Result<Url, Failure> {
        self.base
            .join(path)
            .map_err(|e| Failure::Other(format!("not a registry path: {e}")))
    }

    /// GET with the credentials learnt so far; a first `401` with a challenge is answered once.
    async fn get(&mut self, url: Url, accept: Option<&str>) -> Result<Response, Failure> {
        self.egress
            .guard
            .check_url(&url)
            .map_err(|r| refused("the registry", &r))?;
        for round in 0..2 {
            let mut request = self.egress.following.get(url.clone());
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(token) = &self.bearer {
                request = request.bearer_auth(token.as_str());
            } else if let (true, Auth::Basic(user, password)) = (self.basic, &self.auth) {
                request = request.basic_auth(user, Some(password));
            }
            let response = request
                .send()
                .await
                .map_err(|e| Failure::from_request(&e, hop(&url, &e)))?;
            if response.status() == StatusCode::UNAUTHORIZED && round == 0 {
                let challenge = header_text(response.headers(), WWW_AUTHENTICATE);
                if self.answer(challenge.as_deref()).await? {
                    continue;
                }
            }
            return Ok(response);
        }
        unreachable!("the second round returns")
    }

    /// Takes up a challenge; false when there is nothing to answer it with.
    async fn answer(&mut self, challenge: Option<&str>) -> Result<bool, Failure> {
        let Some(challenge) = challenge.and_then(parse_challenge) else {
            return Ok(false);
        };
        match challenge {
            Challenge::Basic => {
                self.basic = matches!(self.auth, Auth::Basic(..));
                Ok(self.basic)
            }
            Challenge::Bearer { realm, service } => {
                self.bearer = Some(self.token(&realm, service.as_deref()).await?);
                Ok(true)
            }
        }
    }

    /// A pull token from the registry's token service (`realm`), with the attempt's Basic
    /// credentials if it has any. Not redirected: the request carries them.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
    ) -> Result<Zeroizing<String>, Failure> {
        const HOP: &str = "its token service";
        let mut url = Url::parse(realm)
            .map_err(|_| Failure::Other("its token service address is not a URL".into()))?;
        if self.base.scheme() == "https" && url.scheme() != "https" {
            return Err(refused(HOP, &Refused::Downgrade));
        }
        self.egress
            .guard
            .check_url(&url)
            .map_err(|r| refused(HOP, &r))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("scope", &format!("repository:{}:pull", self.repository));
            if let Some(service) = service {
                query.append_pair("service", service);
            }
        }
        let mut request = self.egress.direct.get(url);
        if let Auth::Basic(user, password) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::from_request(&e, HOP))?;
        let body = self.read(response, MAX_TOKEN_BYTES, "token").await?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let parsed: Token = serde_json::from_slice(&body)
            .map_err(|_| Failure::Other("its token service answered with no JSON token".into()))?;
        let token = Zeroizing::new(parsed.token.or(parsed.access_token).unwrap_or_default());
        if token.is_empty() {
            return Err(Failure::Other(
                "its token service answered with no token".into(),
            ));
        }
        Ok(token)
    }

    /// The body of a successful answer, at most `max` bytes; any other answer becomes a
    /// [`Failure`] that holds none of its body.
    async fn read(&self, response: Response, max: u64, what: &str) -> Result<Vec<u8>, Failure> {
        let status = response.status();
        if status.is_success() {
            return match bounded(response, max)
                .await
                .map_err(|e| Failure::from_request(&e, "the registry"))?
            {
                Some(body) => Ok(body),
                None => Err(invalid(format!("its {what} is larger than {max} bytes"))),
            };
        }
        let body = bounded(response, MAX_ERROR_BYTES)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        tracing::debug!(
            registry = %authority(&self.base),
            %status,
            body = %short(&String::from_utf8_lossy(&body)),
            "registry refused a {what} request"
        );
        Err(Failure::from_answer(status, &body, what))
    }
}

/// Which hop a failed request was: a redirect when the redirect policy stopped it, or when it
/// failed somewhere other than where it began.
fn hop(url: &Url, err: &reqwest::Error) -> &'static str {
    let elsewhere = err
        .url()
        .is_some_and(|at| authority(at) != authority(url) || at.scheme() != url.scheme())
        || unresolvable_host(err).is_some_and(|host| Some(host.as_str()) != url.host_str());
    if err.is_redirect() || elsewhere {
        "a redirect from the registry"
    } else {
        "the registry"
    }
}

fn refused(hop: &str, refused: &Refused) -> Failure {
    Failure::Refused(format!("{hop} {refused}"))
}

fn invalid(reason: String) -> Failure {
    Failure::Other(reason)
}

fn header_text(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads at most `max` bytes; `None` when the body is longer (the rest is never read).
pub(crate) async fn bounded(
    mut response: Response,
    max: u64,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > max) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if (body.len() + chunk.len()) as u64 > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex_lower(&sha2::Sha256::digest(bytes)))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// The challenge of a `WWW-Authenticate` header: Bearer preferred, then Basic.
fn parse_challenge(header: &str) -> Option<Challenge> {
    let mut basic = false;
    for challenge in http_auth::parser::ChallengeParser::new(header).flatten() {
        if challenge.scheme.eq_ignore_ascii_case("bearer") {
            let param = |name: &str| {
                challenge
                    .params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            if let Some(realm) = param("realm") {
                return Some(Challenge::Bearer {
                    realm,
                    service: param("service"),
                });
            }
        } else if challenge.scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        }
    }
    basic.then_some(Challenge::Basic)
}

/// An image manifest or an index (OCI or Docker v2), told apart by media type, else by shape.
fn parse_manifest(body: &[u8], content_type: Option<&str>) -> Result<Manifest, Failure> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<Vec<RawEntry>>,
        config: Option<RawDescriptor>,
    }
    #[derive(serde::Deserialize)]
    struct RawEntry {
        digest: String,
        platform: Option<RawPlatform>,
    }
    #[derive(serde::Deserialize)]
    struct RawPlatform {
        os: String,
        architecture: String,
        variant: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct RawDescriptor {
        digest: String,
        size: i64,
    }
    let raw: Raw = serde_json::from_slice(body)
        // serde's message would quote the registry's text; the position is enough.
        .map_err(|e| {
            invalid(format!(
                "its manifest is not valid manifest JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
    let media_type = raw
        .media_type
        .as_deref()
        .or(content_type)
        .unwrap_or_default();
    let is_index = media_type.contains("image.index") || media_type.contains("manifest.list");
    match (is_index, raw.manifests, raw.config) {
        (_, Some(entries), None) | (true, Some(entries), _) => Ok(Manifest::Index(
            entries
                .into_iter()
                .map(|e| IndexEntry {
                    digest: e.digest,
                    platform: e.platform.map(|p| (p.os, p.architecture, p.variant)),
                })
                .collect(),
        )),
        (false, _, Some(config)) => Ok(Manifest::Image {
            config_digest: config.digest,
            config_size: config.size,
        }),
        _ => Err(invalid(
            "its manifest is neither an image manifest nor an index (Docker schema 1 is not \
             supported)"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read() {
        let cases = [
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#,
                Some(("https://auth.docker.io/token", Some("registry.docker.io"))),
            ),
            (
                r#"Bearer realm="https://x/oauth2/token""#,
                Some(("https://x/oauth2/token", None)),
            ),
            (r#"Basic realm="registry""#, None),
            ("Bearer service=\"no-realm\"", None),
        ];
        for (header, want) in cases {
            let got = match parse_challenge(header) {
                Some(Challenge::Bearer { realm, service }) => Some((realm, service)),
                _ => None,
            };
            let want = want.map(|(r, s)| (r.to_string(), s.map(String::from)));
            assert_eq!(got, want, "{header}");
        }
        assert!(matches!(
            parse_challenge(r#"Basic realm="registry""#),
            Some(Challenge::Basic)
        ));
        assert!(parse_challenge("Negotiate").is_none());
    }

    #[test]
    fn manifests_and_indexes_are_told_apart() {
        let image = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:ab","size":12},"layers":[]}"#;
        assert!(matches!(
            parse_manifest(image, None),
            Ok(Manifest::Image {
                config_size: 12,
                ..
            })
        ));
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"digest":"sha256:cd","platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;
        let Ok(Manifest::Index(entries)) = parse_manifest(index, None) else {
            panic!("an index")
        };
        assert_eq!(entries[0].digest, "sha256:cd");
        assert_eq!(
            entries[0].platform,
            Some(("linux".into(), "arm64".into(), Some("v8".into())))
        );
        let schema1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(parse_manifest(schema1, None).is_err());
        assert!(parse_manifest(b"<html>", None).is_err());
    }
}
