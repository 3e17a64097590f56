//! Egress proxies the way the platform sets them: `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`
//! (AKS' HTTP proxy feature writes them into every pod), read once, parsed into
//! [`ProxySettings`], and handed to reqwest as one explicit [`reqwest::Proxy`] whose every
//! decision is [`ProxySettings::route`], a pure function tested as a table. reqwest never reads
//! the environment itself (`no_proxy()` first): the one read is visible and testable.
//!
//! Rules (Go's `golang.org/x/net/http/httpproxy`, which kubectl, the kubelet and most cluster
//! tooling use):
//! - Upper case wins: `HTTPS_PROXY` over `https_proxy` (the first that is set and not empty).
//! - `https://` targets use `HTTPS_PROXY`, `http://` targets `HTTP_PROXY`; neither falls back to
//!   the other, and `ALL_PROXY` is not read.
//! - A value without a scheme means `http://`; `https://` proxies are reached over TLS; SOCKS
//!   is refused at start-up, not silently ignored.
//! - `localhost` and loopback addresses are never proxied; `NO_PROXY` lists the rest
//!   ([`NoProxy`]).
//! - HTTPS goes through the proxy as a `CONNECT` tunnel: TLS stays end to end with the target,
//!   the proxy sees host names and byte counts only.
//! - With [`PlainHttp::Direct`] (the injector), plain-HTTP targets never use a proxy, whatever
//!   `NO_PROXY` says: there a token (IMDS' answer) would cross it in clear.
//!
//! Credentials in the proxy URL (`http://user:pass@proxy:3128`) become a Basic
//! `Proxy-Authorization` header; they never appear in [`ProxyServer`]'s `Display` or `Debug`,
//! which every message uses.

mod no_proxy;

use std::{fmt, sync::Arc};

pub use no_proxy::NoProxy;
use url::Url;

/// The raw values, as found (name of the variable that supplied each, for messages).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyVars {
    pub https: Option<(&'static str, String)>,
    pub http: Option<(&'static str, String)>,
    pub no_proxy: Option<(&'static str, String)>,
}

impl fmt::Debug for ProxyVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The proxy URLs may hold a password: only which variables were set.
        f.debug_struct("ProxyVars")
            .field("https", &self.https.as_ref().map(|(n, _)| n))
            .field("http", &self.http.as_ref().map(|(n, _)| n))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl ProxyVars {
    /// Reads the variables through `lookup` (the binary's own view of its environment): for
    /// each, the upper-case name if set and not empty, else the lower-case one.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ProxyVars {
        let first = |names: [&'static str; 2]| {
            names.into_iter().find_map(|name| {
                lookup(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            })
        };
        ProxyVars {
            https: first(["HTTPS_PROXY", "https_proxy"]),
            http: first(["HTTP_PROXY", "http_proxy"]),
            no_proxy: first(["NO_PROXY", "no_proxy"]),
        }
    }

    /// Reads this process' environment (the webhook, whose environment the operator sets).
    pub fn from_process_env() -> ProxyVars {
        ProxyVars::from_lookup(|name| std::env::var(name).ok())
    }
}

/// Whether plain-HTTP targets may use `HTTP_PROXY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainHttp {
    /// Never: the injector's only plain-HTTP target is the managed identity endpoint (IMDS at
    /// 169.254.169.254, or App Service's `IDENTITY_ENDPOINT`), whose answer is a token.
    Direct,
    /// Through `HTTP_PROXY` unless `NO_PROXY` lists the host (the webhook's insecure registries,
    /// whose traffic is in clear anyway).
    Proxied,
}

/// One proxy server. `Display` and `Debug` show `scheme://host:port` and the variable it came
/// from, never the credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyServer {
    /// With credentials, for reqwest only.
    url: Url,
    /// `scheme://host:port`.
    shown: String,
    /// `HTTPS_PROXY`, `--registry-proxy`, ...
    source: String,
}

impl ProxyServer {
    /// Parses one proxy URL from `source` (a variable or flag name, used in messages). A value
    /// without `://` means `http://`. The error never quotes the value, which may hold a
    /// password.
    pub fn parse(source: &str, value: &str) -> Result<ProxyServer, ProxyError> {
        let value = value.trim();
        let with_scheme = if value.contains("://") {
            value.to_owned()
        } else {
            format!("http://{value}")
        };
        let bad = |why: String| ProxyError::Invalid {
            source_name: source.to_owned(),
            why,
        };
        let mut url = Url::parse(&with_scheme).map_err(|e| bad(format!("not a URL ({e})")))?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(bad(format!(
                    "scheme {other:?} is not supported; use http://host:port (HTTP CONNECT) \
                     or https://host:port"
                )));
            }
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host".to_owned()))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| bad("no port".to_owned()))?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a query or fragment has no meaning here".to_owned()));
        }
        url.set_path("/");
        let shown = format!("{}://{host}:{port}", url.scheme());
        Ok(ProxyServer {
            url,
            shown,
            source: source.to_owned(),
        })
    }

    /// `scheme://host:port`, never the credentials.
    pub fn address(&self) -> &str {
        &self.shown
    }

    /// The proxy's host name or address (no brackets around IPv6), lower case.
    pub fn host(&self) -> String {
        match self.url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(host) => host.to_string().to_ascii_lowercase(),
            None => String::new(),
        }
    }

    /// Where the setting came from (`HTTPS_PROXY`, `--registry-proxy`...).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the URL carries a user name or password (for logs: "with credentials").
    pub fn has_credentials(&self) -> bool {
        !self.url.username().is_empty() || self.url.password().is_some()
    }
}

impl fmt::Display for ProxyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.shown, self.source)
    }
}

impl fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyServer")
            .field("address", &self.shown)
            .field("source", &self.source)
            .field("credentials", &self.has_credentials())
            .finish()
    }
}

/// A proxy setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The value is never quoted: it may hold a password.
    #[error("{source_name}: {why}")]
    Invalid { source_name: String, why: String },
}

/// Where one request goes, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Proxy(&'a ProxyServer),
    Direct(Direct),
}

/// Why a request goes direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// No proxy is set for the target's scheme.
    NoProxySet,
    /// Plain HTTP with [`PlainHttp::Direct`].
    Cleartext,
    /// `localhost` or a loopback address.
    Loopback,
    /// `NO_PROXY` lists the host.
    Listed,
}

/// The proxy settings of one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    pub https: Option<ProxyServer>,
    pub http: Option<ProxyServer>,
    pub no_proxy: NoProxy,
    pub plain_http: PlainHttp,
}

impl ProxySettings {
    /// Parses the variables. `Ok(None)` when no proxy is set at all (`NO_PROXY` alone changes
    /// nothing).
    pub fn from_vars(
        vars: &ProxyVars,
        plain_http: PlainHttp,
    ) -> Result<Option<ProxySettings>, ProxyError> {
        let parse = |v: &Option<(&'static str, String)>| {
            v.as_ref()
                .map(|(name, value)| ProxyServer::parse(name, value))
                .transpose()
        };
        let https = parse(&vars.https)?;
        let http = parse(&vars.http)?;
        if https.is_none() && http.is_none() {
            return Ok(None);
        }
        Ok(Some(ProxySettings {
            https,
            http,
            no_proxy: NoProxy::parse(vars.no_proxy.as_ref().map_or("", |(_, v)| v)),
            plain_http,
        }))
    }

    /// [`Self::from_vars`], except that `overriding` (`(flag name, URL)`, e.g. the webhook's
    /// `--registry-proxy`) replaces both `HTTPS_PROXY` and `HTTP_PROXY`; `NO_PROXY` still
    /// applies.
    pub fn from_vars_with_override(
        vars: &ProxyVars,
        overriding: Option<(&str, &str)>,
        plain_http: PlainHttp,
    ) -> Result<Option<ProxySettings>, ProxyError> {
        let Some((source, url)) = overriding else {
            return ProxySettings::from_vars(vars, plain_http);
        };
        let server = ProxyServer::parse(source, url)?;
        Ok(Some(ProxySettings {
            https: Some(server.clone()),
            http: Some(server),
            no_proxy: NoProxy::parse(vars.no_proxy.as_ref().map_or("", |(_, v)| v)),
            plain_http,
        }))
    }

    /// The decision for one target. Pure: tested as a table.
    pub fn route(&self, scheme: &str, host: &str, port: u16) -> Route<'_> {
        let server = match scheme {
            "https" => self.https.as_ref(),
            "http" if self.plain_http == PlainHttp::Direct => {
                return Route::Direct(Direct::Cleartext);
            }
            "http" => self.http.as_ref(),
            _ => None,
        };
        let Some(server) = server else {
            return Route::Direct(Direct::NoProxySet);
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        {
            return Route::Direct(Direct::Loopback);
        }
        if self.no_proxy.matches(host, port) {
            return Route::Direct(Direct::Listed);
        }
        Route::Proxy(server)
    }

    /// [`Self::route`] for a URL.
    pub fn route_url(&self, url: &Url) -> Route<'_> {
        match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) => self.route(url.scheme(), host, port),
            _ => Route::Direct(Direct::NoProxySet),
        }
    }

    /// The proxy (if any) a request to `url` goes through, for messages.
    pub fn proxy_for(&self, url: &Url) -> Option<&ProxyServer> {
        match self.route_url(url) {
            Route::Proxy(p) => Some(p),
            Route::Direct(_) => None,
        }
    }
}

/// Configures `builder` with exactly these settings: reqwest's own reading of the environment
/// is switched off, and with settings, one custom proxy asks [`ProxySettings::route`] for every
/// request.
pub fn apply(
    builder: reqwest::ClientBuilder,
    settings: Option<&Arc<ProxySettings>>,
) -> reqwest::ClientBuilder {
    let builder = builder.no_proxy();
    match settings {
        None => builder,
        Some(settings) => {
            let settings = settings.clone();
            builder.proxy(reqwest::Proxy::custom(move |url| {
                settings.proxy_for(url).map(|p| p.url.clone())
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> ProxyVars {
        ProxyVars::from_lookup(|name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn upper_case_wins_and_empty_means_unset() {
        type Env<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(&str, Env, Option<&str>)] = &[
            (
                "upper only",
                &[("HTTPS_PROXY", "http://a:1")],
                Some("HTTPS_PROXY"),
            ),
            (
                "lower only",
                &[("https_proxy", "http://b:1")],
                Some("https_proxy"),
            ),
            (
                "both: upper wins",
                &[("HTTPS_PROXY", "http://a:1"), ("https_proxy", "http://b:1")],
                Some("HTTPS_PROXY"),
            ),
            (
                "empty upper: lower",
                &[("HTTPS_PROXY", ""), ("https_proxy", "http://b:1")],
                Some("https_proxy"),
            ),
            (
                "HTTP_PROXY is not HTTPS_PROXY",
                &[("HTTP_PROXY", "http://a:1")],
                None,
            ),
            (
                "ALL_PROXY is not read",
                &[("ALL_PROXY", "http://a:1")],
                None,
            ),
            ("none", &[], None),
        ];
        for (name, env, want) in cases {
            let got = vars(env).https.map(|(n, _)| n);
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn proxy_urls_are_parsed_and_shown_without_credentials() {
        let ok: &[(&str, &str, bool)] = &[
            ("http://proxy.corp:3128", "http://proxy.corp:3128", false),
            ("proxy.corp:3128", "http://proxy.corp:3128", false),
            ("http://proxy.corp", "http://proxy.corp:80", false),
            ("https://proxy.corp/", "https://proxy.corp:443", false),
            (
                "http://user:p%40ss@10.0.0.4:3128/",
                "http://10.0.0.4:3128",
                true,
            ),
            ("http://user@[fd00::4]:3128", "http://[fd00::4]:3128", true),
            (" HTTP://Proxy.Corp:3128 ", "http://proxy.corp:3128", false),
        ];
        for (value, shown, creds) in ok {
            let p = ProxyServer::parse("HTTPS_PROXY", value).unwrap();
            assert_eq!(p.address(), *shown, "{value}");
            assert_eq!(p.has_credentials(), *creds, "{value}");
            assert_eq!(p.to_string(), format!("{shown} (from HTTPS_PROXY)"));
            let debug = format!("{p:?}");
            assert!(
                !debug.contains("p%40ss") && !debug.contains("user"),
                "{debug}"
            );
        }
        let bad: &[(&str, &str)] = &[
            (
                "socks5://u:hunter2@proxy:1080",
                "scheme \"socks5\" is not supported",
            ),
            ("http://u:hunter2@:3128", "not a URL"),
            ("http://u:hunter2@proxy:99999", "not a URL"),
            ("http://u:hunter2@proxy:3128/?x=1", "query"),
        ];
        for (value, want) in bad {
            let err = ProxyServer::parse("https_proxy", value)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("https_proxy: ") && err.contains(want),
                "{value}: {err}"
            );
            assert!(!err.contains("hunter2"), "{value}: {err}");
        }
    }

    #[test]
    fn routes_each_target() {
        let aks = "localhost,127.0.0.1,.svc,.cluster.local,10.0.0.0/16,169.254.169.254,\
                   konnectivity,mycluster-dns.hcp.westeurope.azmk8s.io";
        let env = [
            ("HTTPS_PROXY", "http://user:pass@proxy.corp:3128"),
            ("HTTP_PROXY", "http://plain.corp:3128"),
            ("NO_PROXY", aks),
        ];
        let injector = ProxySettings::from_vars(&vars(&env), PlainHttp::Direct)
            .unwrap()
            .unwrap();
        let webhook = ProxySettings::from_vars(&vars(&env), PlainHttp::Proxied)
            .unwrap()
            .unwrap();
        let no_list = ProxySettings::from_vars(&vars(&env[..2]), PlainHttp::Direct)
            .unwrap()
            .unwrap();
        use Direct::*;
        let https = "http://proxy.corp:3128";
        let plain = "http://plain.corp:3128";
        // (case, settings, url, Ok(proxy address) or Err(why direct))
        let cases: &[(&str, &ProxySettings, &str, Result<&str, Direct>)] = &[
            (
                "vault",
                &injector,
                "https://kv1.vault.azure.net/secrets/a",
                Ok(https),
            ),
            (
                "entra",
                &injector,
                "https://login.microsoftonline.com/t/oauth2",
                Ok(https),
            ),
            (
                "imds, listed",
                &injector,
                "http://169.254.169.254/metadata/identity",
                Err(Cleartext),
            ),
            (
                "imds, not listed",
                &no_list,
                "http://169.254.169.254/metadata/identity",
                Err(Cleartext),
            ),
            (
                "app service endpoint",
                &no_list,
                "http://10.1.2.3:8081/msi/token",
                Err(Cleartext),
            ),
            (
                "loopback",
                &no_list,
                "https://127.0.0.1:8443/",
                Err(Loopback),
            ),
            ("localhost", &no_list, "https://localhost/", Err(Loopback)),
            ("v6 loopback", &no_list, "https://[::1]/", Err(Loopback)),
            (
                "private endpoint listed",
                &injector,
                "https://10.0.3.4/",
                Err(Listed),
            ),
            (
                "in-cluster service",
                &injector,
                "https://reg.ns.svc.cluster.local/",
                Err(Listed),
            ),
            (
                "webhook: plain registry",
                &webhook,
                "http://registry.corp:5000/v2/",
                Ok(plain),
            ),
            (
                "webhook: plain listed",
                &webhook,
                "http://reg.ns.svc:5000/v2/",
                Err(Listed),
            ),
            (
                "webhook: imds listed",
                &webhook,
                "http://169.254.169.254/metadata",
                Err(Listed),
            ),
            (
                "webhook: acr",
                &webhook,
                "https://myacr.azurecr.io/oauth2/exchange",
                Ok(https),
            ),
        ];
        for (name, settings, url, want) in cases {
            let got = match settings.route_url(&Url::parse(url).unwrap()) {
                Route::Proxy(p) => Ok(p.address()),
                Route::Direct(why) => Err(why),
            };
            assert_eq!(got, *want, "{name}: {url}");
        }
        let only_http = ProxySettings::from_vars(&vars(&env[1..]), PlainHttp::Proxied)
            .unwrap()
            .unwrap();
        assert_eq!(
            only_http.route("https", "kv1.vault.azure.net", 443),
            Route::Direct(NoProxySet),
            "HTTPS targets never fall back to HTTP_PROXY"
        );
        assert_eq!(
            ProxySettings::from_vars(&vars(&[("NO_PROXY", "*")]), PlainHttp::Direct),
            Ok(None)
        );

        // An explicit flag replaces both proxies; NO_PROXY from the environment still applies.
        let flag = ProxySettings::from_vars_with_override(
            &vars(&env),
            Some(("--registry-proxy", "http://flag.corp:8080")),
            PlainHttp::Proxied,
        )
        .unwrap()
        .unwrap();
        for (url, want) in [
            (
                "https://myacr.azurecr.io/v2/",
                Some("http://flag.corp:8080 (from --registry-proxy)"),
            ),
            (
                "http://registry.corp:5000/v2/",
                Some("http://flag.corp:8080 (from --registry-proxy)"),
            ),
            ("https://reg.ns.svc.cluster.local/v2/", None),
        ] {
            let got = flag
                .proxy_for(&Url::parse(url).unwrap())
                .map(|p| p.to_string());
            assert_eq!(got.as_deref(), want, "{url}");
        }
        let err = ProxySettings::from_vars_with_override(
            &vars(&env),
            Some(("--registry-proxy", "ftp://u:hunter2@x")),
            PlainHttp::Proxied,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("--registry-proxy: ") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
