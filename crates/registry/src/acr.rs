//! Azure Container Registry through the webhook's own Microsoft Entra identity.
//!
//! ACR does not take Entra tokens directly: the access token is exchanged at
//! `https://<registry>/oauth2/exchange` for an ACR refresh token, which then works as the
//! password of the fixed username [`ACR_USERNAME`]. Getting the Entra token is the caller's job
//! ([`AcrTokenSource`]), so this crate carries no Azure SDK.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use zeroize::Zeroizing;

/// The username ACR expects with a refresh token as password.
pub const ACR_USERNAME: &str = "00000000-0000-0000-0000-000000000000";

/// Registry host suffixes of ACR in the Azure clouds.
const ACR_SUFFIXES: &[&str] = &[".azurecr.io", ".azurecr.cn", ".azurecr.us"];

/// A boxed error from a token source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A future returned by [`AcrTokenSource::access_token`].
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send + 'a>>;

/// Supplies Microsoft Entra access tokens for ACR (scope
/// `https://containerregistry.azure.net/.default` in the public cloud).
pub trait AcrTokenSource: Send + Sync {
    /// An access token usable at `registry` (the registry host, e.g. `myacr.azurecr.io`).
    fn access_token<'a>(&'a self, registry: &'a str) -> TokenFuture<'a>;
}

/// ACR settings of an [`ImageResolver`](crate::ImageResolver).
#[derive(Clone)]
pub struct AcrAuth {
    pub tokens: Arc<dyn AcrTokenSource>,
    /// Registry hosts (`host[:port]`) besides `*.azurecr.io/.cn/.us` that speak ACR's token
    /// exchange, e.g. a custom domain in front of ACR.
    pub extra_hosts: Vec<String>,
}

impl AcrAuth {
    pub fn new(tokens: Arc<dyn AcrTokenSource>) -> Self {
        AcrAuth {
            tokens,
            extra_hosts: Vec::new(),
        }
    }

    /// Does `registry` (`host[:port]`) take the ACR token exchange?
    pub fn serves(&self, registry: &str) -> bool {
        is_acr_host(registry, &self.extra_hosts)
    }
}

impl fmt::Debug for AcrAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcrAuth")
            .field("extra_hosts", &self.extra_hosts)
            .finish_non_exhaustive()
    }
}

/// `myacr.azurecr.io` (any port) or one of `extra_hosts` exactly, case-insensitively.
pub fn is_acr_host(registry: &str, extra_hosts: &[String]) -> bool {
    let registry = registry.to_ascii_lowercase();
    let host = registry.split(':').next().unwrap_or_default();
    ACR_SUFFIXES
        .iter()
        .any(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
        || extra_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&registry))
}

/// The form body of the exchange request. The access token goes in the body, never the URL.
/// Exchange answers are a refresh token (a JWT) in a small JSON object.
const MAX_EXCHANGE_BYTES: u64 = 64 << 10;

/// ACR's `/oauth2/exchange`: the webhook's Entra access token in, a refresh token for
/// `registry` out. Through the client that follows no redirect (the form holds the token).
/// Errors are ours to word: the registry's answer goes to the debug log only.
pub(crate) async fn exchange(
    egress: &crate::egress::Egress,
    scheme: &str,
    registry: &str,
    access_token: &str,
) -> Result<Zeroizing<String>, String> {
    let url = format!("{scheme}://{registry}/oauth2/exchange");
    let parsed = url::Url::parse(&url).map_err(|e| format!("{url} is not a URL: {e}"))?;
    egress
        .guard
        .check_url(&parsed)
        .map_err(|r| format!("the token exchange {r}"))?;
    let form = exchange_form(registry, access_token);
    let response = egress
        .direct
        .post(parsed)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form.as_str().to_string())
        .send()
        .await
        .map_err(|e| exchange_failure(&url, &e))?;
    let status = response.status();
    let body = crate::distribution::bounded(response, MAX_EXCHANGE_BYTES)
        .await
        .map_err(|e| exchange_failure(&url, &e))?;
    let Some(body) = body.filter(|_| status.is_success()).or_else(|| {
        // Too long, or a refusal: neither is repeated to a pod author.
        tracing::debug!(registry, %status, "ACR token exchange refused or oversized");
        None
    }) else {
        return Err(format!(
            "the token exchange at {url} answered HTTP {status}{}",
            if status.is_success() {
                " with an answer too large to be one"
            } else {
                ""
            }
        ));
    };
    refresh_token_from(&body).map_err(|r| format!("{r} ({url})"))
}

fn exchange_failure(url: &str, err: &reqwest::Error) -> String {
    match crate::error::Failure::from_request(err, "the token exchange") {
        crate::error::Failure::Refused(reason) => reason,
        crate::error::Failure::Certificate(reason) => format!(
            "POST {url}: untrusted TLS certificate ({reason}); add the CA that issued it \
             (--registry-ca-file)"
        ),
        crate::error::Failure::Unreachable(reason) | crate::error::Failure::Other(reason) => {
            format!("POST {url}: {reason}")
        }
        other => format!("POST {url}: {other:?}"),
    }
}

pub(crate) fn exchange_form(registry: &str, access_token: &str) -> Zeroizing<String> {
    Zeroizing::new(
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "access_token")
            .append_pair("service", registry)
            .append_pair("access_token", access_token)
            .finish(),
    )
}

/// Reads `refresh_token` from the exchange response without echoing the body on error.
pub(crate) fn refresh_token_from(body: &[u8]) -> Result<Zeroizing<String>, &'static str> {
    #[derive(serde::Deserialize)]
    struct Exchange {
        refresh_token: Option<String>,
    }
    let parsed: Exchange =
        serde_json::from_slice(body).map_err(|_| "the exchange response is not JSON")?;
    match parsed.refresh_token {
        Some(token) if !token.is_empty() => Ok(Zeroizing::new(token)),
        _ => Err("the exchange response has no refresh_token"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_acr_hosts() {
        let extra = vec![
            "registry.contoso.com".to_string(),
            "127.0.0.1:5000".to_string(),
        ];
        let cases = [
            ("myacr.azurecr.io", true),
            ("MyAcr.AzureCR.io", true),
            ("myacr.azurecr.io:443", true),
            ("myacr.privatelink.azurecr.io", true),
            ("myacr.azurecr.cn", true),
            ("myacr.azurecr.us", true),
            ("azurecr.io", false),
            (".azurecr.io", false),
            ("myacr.azurecr.io.evil.com", false),
            ("evilazurecr.io", false),
            ("docker.io", false),
            ("registry.contoso.com", true),
            ("127.0.0.1:5000", true),
            ("127.0.0.1:5001", false),
        ];
        for (host, want) in cases {
            assert_eq!(is_acr_host(host, &extra), want, "{host}");
        }
    }

    #[test]
    fn exchange_form_encodes_every_field() {
        let form = exchange_form("my.azurecr.io", "a+b/c=");
        assert_eq!(
            form.as_str(),
            "grant_type=access_token&service=my.azurecr.io&access_token=a%2Bb%2Fc%3D"
        );
    }

    #[test]
    fn reads_refresh_token() {
        assert_eq!(
            refresh_token_from(br#"{"refresh_token":"rt"}"#)
                .unwrap()
                .as_str(),
            "rt"
        );
        for (body, want) in [
            (&b"<html>secret-ish</html>"[..], "not JSON"),
            (br#"{"access_token":"x"}"#, "no refresh_token"),
            (br#"{"refresh_token":""}"#, "no refresh_token"),
        ] {
            let err = refresh_token_from(body).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}
