//! Where the webhook may send a request on a pod author's behalf.
//!
//! An image name is pod-author input, and so are the token realm and redirects its registry
//! answers with. Left alone, the webhook would GET any address its network reaches: the node's
//! loopback, the cloud metadata service (IMDS, 169.254.169.254), Azure's wireserver
//! (168.63.129.16). So every hop (the registry, its token service, each redirect) is checked,
//! after DNS resolution: internal addresses are refused unless the operator allows them, and no
//! hop goes back to plain HTTP once HTTPS was used.
//!
//! Private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) stay allowed: clusters pull
//! from private registries through private endpoints there. Registries the operator names in
//! `--insecure-registry` are trusted as named (their host, on any address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

/// Most redirects followed for one request (blob downloads go through one or two CDN hops).
const MAX_REDIRECTS: usize = 5;

/// Why a request was not sent. Names only addresses the webhook refused, never text from a
/// registry's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "is at {address}, {kind}, which the webhook does not contact on a pod's behalf (an \
         operator can allow it: --registry-allow-internal-addresses)"
    )]
    Internal { address: IpAddr, kind: &'static str },
    #[error("is plain HTTP after HTTPS, which the webhook does not follow")]
    Downgrade,
    #[error("is neither http nor https")]
    Scheme,
    #[error("is more than {MAX_REDIRECTS} redirects away")]
    TooManyRedirects,
}

/// What kind of internal address `ip` is; `None` for addresses the webhook may contact.
/// Pure, so the table is tested without a network.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

fn v4_kind(a: Ipv4Addr) -> Option<&'static str> {
    let [first, second, third, _] = a.octets();
    Some(if a == Ipv4Addr::new(169, 254, 169, 254) {
        "the cloud metadata service (IMDS)"
    } else if a == Ipv4Addr::new(168, 63, 129, 16) {
        "Azure's wireserver"
    } else if first == 0 {
        "an unspecified address (0.0.0.0/8)"
    } else if a.is_loopback() {
        "a loopback address"
    } else if a.is_link_local() {
        "a link-local address"
    } else if a.is_broadcast() || first >= 240 {
        "a reserved address (240.0.0.0/4)"
    } else if a.is_multicast() {
        "a multicast address"
    } else if a.is_documentation() {
        "a documentation address"
    } else if first == 192 && second == 0 && third == 0 {
        "a reserved address (192.0.0.0/24)"
    } else if first == 198 && (second & 0xfe) == 18 {
        "a benchmarking address (198.18.0.0/15)"
    } else {
        return None;
    })
}

fn v6_kind(a: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address in IPv6 clothing is judged as the IPv4 address it reaches.
    if let Some(v4) = a.to_ipv4_mapped() {
        return v4_kind(v4);
    }
    let s = a.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 (RFC 6052): the gateway connects to the embedded IPv4 address.
        let [hi, lo] = [s[6].to_be_bytes(), s[7].to_be_bytes()];
        return v4_kind(Ipv4Addr::new(hi[0], hi[1], lo[0], lo[1]));
    }
    Some(if a.is_unspecified() {
        "an unspecified address (::)"
    } else if a.is_loopback() {
        "a loopback address"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "a link-local address (fe80::/10)"
    } else if s[0] & 0xffc0 == 0xfec0 {
        "a site-local address (fec0::/10)"
    } else if a.is_multicast() {
        "a multicast address"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "a documentation address"
    } else if s[..6] == [0; 6] {
        "an IPv4-compatible address (::/96)"
    } else {
        return None;
    })
}

/// The policy as the clients apply it.
#[derive(Debug)]
pub(crate) struct Guard {
    allow_internal: bool,
    /// `host[:port]` the operator named (`--insecure-registry`), lower case.
    named: Vec<String>,
    /// The operator's egress proxies by host name, lower case. They sit on internal addresses
    /// by nature (`http://proxy.corp.internal:3128`); requests through a proxy resolve only the
    /// proxy's name here (the proxy resolves the target's).
    proxies: Vec<String>,
}

impl Guard {
    pub(crate) fn new(allow_internal: bool, named: &[String]) -> Guard {
        Guard {
            allow_internal,
            named: named.iter().map(|n| n.to_ascii_lowercase()).collect(),
            proxies: Vec::new(),
        }
    }

    /// The guard with the operator's proxies (host names) let through the resolver.
    pub(crate) fn with_proxies(mut self, proxies: impl IntoIterator<Item = String>) -> Guard {
        self.proxies = proxies
            .into_iter()
            .map(|p| p.to_ascii_lowercase())
            .collect();
        self
    }

    pub(crate) fn check_address(&self, address: IpAddr) -> Result<(), Refused> {
        match internal_kind(address) {
            Some(kind) if !self.allow_internal => Err(Refused::Internal { address, kind }),
            _ => Ok(()),
        }
    }

    /// Checks what can be checked before resolving: the scheme, and the address when the host
    /// is one. Host names are checked when they resolve ([`GuardedResolver`]).
    pub(crate) fn check_url(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Scheme);
        }
        if self.names(&authority(url)) {
            return Ok(());
        }
        match url.host() {
            Some(Host::Ipv4(a)) => self.check_address(IpAddr::V4(a)),
            Some(Host::Ipv6(a)) => self.check_address(IpAddr::V6(a)),
            Some(Host::Domain(_)) => Ok(()),
            None => Err(Refused::Scheme),
        }
    }

    /// Whether the operator named this `host[:port]`, or (for a bare host) any port of it.
    fn names(&self, authority: &str) -> bool {
        self.named
            .iter()
            .any(|n| n == authority || (host_of(n) == n && host_of(authority) == n))
    }

    /// Whether a name resolves without the address check: a registry the operator named, or
    /// the operator's proxy. Only the resolver asks; redirects are checked as before.
    fn trusts_name(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.named.iter().any(|n| host_of(n) == host) || self.proxies.contains(&host)
    }
}

/// `host[:port]` as image references write it (no default port).
pub(crate) fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Resolves names as the system does, then drops the addresses the policy refuses; a name left
/// with none fails with [`Refused`]. Connections only ever go to what this returns, so a name
/// that resolves differently later (DNS rebinding) is checked again.
pub(crate) struct GuardedResolver {
    pub(crate) guard: Arc<Guard>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if guard.trusts_name(&host) {
                return Ok(Box::new(all.into_iter()) as reqwest::dns::Addrs);
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| match guard.check_address(a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refused.get_or_insert(r);
                        false
                    }
                })
                .collect();
            match refused {
                Some(refused) if allowed.is_empty() => {
                    Err(Box::new(Unresolvable { host, refused })
                        as Box<dyn std::error::Error + Send + Sync>)
                }
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// A name that resolved only to refused addresses. Shows as the refusal; the name is kept to
/// tell which hop it was, not to be repeated.
#[derive(Debug)]
pub(crate) struct Unresolvable {
    pub(crate) host: String,
    refused: Refused,
}

impl std::fmt::Display for Unresolvable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.refused.fmt(f)
    }
}

impl std::error::Error for Unresolvable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.refused)
    }
}

/// Follows at most [`MAX_REDIRECTS`] redirects, never back to plain HTTP once HTTPS was used,
/// never to a refused address. reqwest drops `Authorization` when a redirect leaves the host.
pub(crate) fn redirect_policy(guard: Arc<Guard>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(Refused::TooManyRedirects);
        }
        let was_https = attempt.previous().iter().any(|u| u.scheme() == "https");
        if was_https && attempt.url().scheme() != "https" {
            return attempt.error(Refused::Downgrade);
        }
        match guard.check_url(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refused) => attempt.error(refused),
        }
    })
}

/// The policy's verdict inside a failed request's error chain, if that is why it failed.
pub(crate) fn refusal_in(err: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    crate::error::find_in_chain(err, |e| e.downcast_ref::<Refused>().cloned())
}

/// The host name whose resolution the policy refused, if that is why a request failed.
pub(crate) fn unresolvable_host(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    crate::error::find_in_chain(err, |e| {
        e.downcast_ref::<Unresolvable>().map(|u| u.host.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        let cases: &[(&str, Option<&str>)] = &[
            ("169.254.169.254", Some("metadata")),
            ("168.63.129.16", Some("wireserver")),
            ("169.254.1.1", Some("link-local")),
            ("127.0.0.1", Some("loopback")),
            ("127.8.9.10", Some("loopback")),
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("unspecified")),
            ("255.255.255.255", Some("reserved")),
            ("240.0.0.1", Some("reserved")),
            ("224.0.0.1", Some("multicast")),
            ("192.0.2.1", Some("documentation")),
            ("192.0.0.8", Some("reserved")),
            ("198.18.0.1", Some("benchmarking")),
            ("198.19.255.1", Some("benchmarking")),
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fec0::1", Some("site-local")),
            ("ff02::1", Some("multicast")),
            ("2001:db8::1", Some("documentation")),
            ("::ffff:169.254.169.254", Some("metadata")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("64:ff9b::a9fe:a9fe", Some("metadata")),
            ("::127.0.0.1", Some("IPv4-compatible")),
            // Private ranges: private registries live there (private endpoints).
            ("10.1.2.3", None),
            ("172.16.0.1", None),
            ("192.168.1.1", None),
            ("100.64.0.1", None),
            ("fd00::1", None),
            ("::ffff:10.0.0.1", None),
            // Public addresses.
            ("20.60.1.1", None),
            ("168.63.129.17", None),
            ("198.20.0.1", None),
            ("2603:1030::1", None),
            ("64:ff9b::14c:101", None),
        ];
        for (address, want) in cases {
            let got = internal_kind(address.parse().unwrap());
            match (got, want) {
                (None, None) => {}
                (Some(kind), Some(word)) => assert!(kind.contains(word), "{address}: {kind}"),
                _ => panic!("{address}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn urls_are_checked_by_scheme_and_literal_address() {
        let guard = Guard::new(false, &["127.0.0.1:5000".into(), "reg.local".into()]);
        let cases = [
            ("https://registry.example/v2/", true),
            ("http://10.0.0.5:5000/v2/", true),
            ("http://169.254.169.254/metadata", false),
            ("http://[::1]:8080/", false),
            ("http://[fe80::1]/", false),
            ("https://0x7f000001/", false), // WHATWG parsing makes this 127.0.0.1
            ("ftp://registry.example/", false),
            // Named by the operator: as named only.
            ("http://127.0.0.1:5000/v2/", true),
            ("http://127.0.0.1:5001/v2/", false),
            ("http://reg.local:1234/v2/", true),
        ];
        for (url, ok) in cases {
            let result = guard.check_url(&Url::parse(url).unwrap());
            assert_eq!(result.is_ok(), ok, "{url}: {result:?}");
        }
        let open = Guard::new(true, &[]);
        assert!(
            open.check_url(&Url::parse("http://127.0.0.1:9/").unwrap())
                .is_ok()
        );
    }

    #[tokio::test]
    async fn names_resolving_only_to_internal_addresses_are_refused() {
        use reqwest::dns::Resolve as _;
        let resolver = GuardedResolver {
            guard: Arc::new(Guard::new(false, &[]).with_proxies(["proxy.test".to_owned()])),
        };
        let err = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        let refused = refusal_in(err.as_ref()).expect("a policy refusal");
        assert!(matches!(refused, Refused::Internal { .. }), "{refused}");
        assert_eq!(
            unresolvable_host(err.as_ref()).as_deref(),
            Some("localhost")
        );

        let named = GuardedResolver {
            guard: Arc::new(Guard::new(false, &["localhost:5000".into()])),
        };
        let addrs: Vec<_> = named
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());

        // The egress proxy, named by the operator, may be internal; nothing else gains by it.
        let proxied = Arc::new(Guard::new(false, &[]).with_proxies(["LocalHost".to_owned()]));
        let behind_proxy = GuardedResolver {
            guard: proxied.clone(),
        };
        let addrs: Vec<_> = behind_proxy
            .resolve("LocalHost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
        assert!(
            proxied
                .check_url(&Url::parse("http://127.0.0.1:3128/").unwrap())
                .is_err()
        );
    }
}
