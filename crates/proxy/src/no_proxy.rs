//! `NO_PROXY` as Go's `golang.org/x/net/http/httpproxy` reads it (what AKS, kubectl and most
//! cluster tooling follow): comma-separated entries, each a host name (suffix match), `.suffix`
//! (subdomains only), `*.suffix` (the same), an IP address, a CIDR range, optionally with
//! `:port`, or `*` for everything. Pure: tested as a table.

use std::net::IpAddr;

/// A parsed `NO_PROXY` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `10.0.0.0/16`: any literal address in the range (names are not resolved).
    Cidr { net: IpAddr, prefix: u8 },
    /// `169.254.169.254` or `[::1]:8080`: that literal address.
    Ip { ip: IpAddr, port: Option<u16> },
    /// `.svc` (subdomains only) or `example.com` (itself and subdomains); stored as `.svc` /
    /// `.example.com`, lower case.
    Domain {
        suffix: String,
        and_itself: bool,
        port: Option<u16>,
    },
}

impl NoProxy {
    /// Parses the list. Entries that are neither an address, a range nor a host name are
    /// skipped, as Go does; empty entries and spaces around commas are ignored.
    pub fn parse(list: &str) -> NoProxy {
        let mut parsed = NoProxy::default();
        for raw in list.split(',') {
            let entry = raw.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                parsed.all = true;
                continue;
            }
            if let Some((net, prefix)) = entry.split_once('/') {
                if let (Ok(net), Ok(prefix)) = (net.parse::<IpAddr>(), prefix.parse::<u8>())
                    && prefix <= max_prefix(net)
                {
                    parsed.entries.push(Entry::Cidr { net, prefix });
                }
                continue;
            }
            let (host, port) = split_port(&entry);
            if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
                parsed.entries.push(Entry::Ip { ip, port });
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(host);
            let host = host.trim_end_matches('.');
            if host.is_empty() || host == "." || host.contains(['/', '[', ']', '@', ' ']) {
                continue;
            }
            let (suffix, and_itself) = match host.strip_prefix('.') {
                Some(_) => (host.to_owned(), false),
                None => (format!(".{host}"), true),
            };
            parsed.entries.push(Entry::Domain {
                suffix,
                and_itself,
                port,
            });
        }
        parsed
    }

    /// Whether `host` (a name or a literal address, IPv6 with or without brackets) on `port`
    /// is listed, i.e. reached directly.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = bare.parse::<IpAddr>().ok();
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
        self.entries.iter().any(|e| match (e, ip) {
            (Entry::Cidr { net, prefix }, Some(ip)) => in_range(ip, *net, *prefix),
            (
                Entry::Ip {
                    ip: listed,
                    port: p,
                },
                Some(ip),
            ) => *listed == ip && port_ok(p),
            (
                Entry::Domain {
                    suffix,
                    and_itself,
                    port: p,
                },
                None,
            ) => {
                (host.ends_with(suffix.as_str()) || (*and_itself && host == suffix[1..]))
                    && port_ok(p)
            }
            _ => false,
        })
    }

    /// True when the list holds nothing (every host goes through the proxy).
    pub fn is_empty(&self) -> bool {
        !self.all && self.entries.is_empty()
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn in_range(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `host:port`, `[v6]:port`; a bare IPv6 address (several colons) has no port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once("]:") {
            Some((host, port)) => (host, port.parse().ok()),
            None => (entry, None),
        };
    }
    match entry.split_once(':') {
        Some((host, port)) if !port.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list AKS writes for a cluster with the HTTP proxy feature, plus the forms Go reads.
    const AKS: &str = "localhost,127.0.0.1,.svc,.cluster.local,10.0.0.0/16,169.254.169.254,\
                       konnectivity,mycluster-dns.hcp.westeurope.azmk8s.io";

    #[test]
    fn matches_hosts_as_go_does() {
        let cases: &[(&str, &str, &str, u16, bool)] = &[
            // (case, NO_PROXY, host, port, reached directly)
            ("empty list", "", "myvault.vault.azure.net", 443, false),
            ("star", "*", "myvault.vault.azure.net", 443, true),
            ("star among others", "a.example, *", "anything", 80, true),
            (
                "aks: service suffix",
                AKS,
                "kube-dns.kube-system.svc",
                53,
                true,
            ),
            (
                "aks: cluster.local",
                AKS,
                "x.ns.svc.cluster.local",
                443,
                true,
            ),
            ("aks: suffix is not the bare word", AKS, "svc", 443, false),
            ("aks: cidr", AKS, "10.0.42.7", 443, true),
            ("aks: outside the cidr", AKS, "10.1.0.1", 443, false),
            ("aks: imds", AKS, "169.254.169.254", 80, true),
            ("aks: bare name", AKS, "konnectivity", 443, true),
            (
                "aks: api server fqdn",
                AKS,
                "mycluster-dns.hcp.westeurope.azmk8s.io",
                443,
                true,
            ),
            (
                "aks: key vault goes through",
                AKS,
                "myvault.vault.azure.net",
                443,
                false,
            ),
            (
                "aks: entra goes through",
                AKS,
                "login.microsoftonline.com",
                443,
                false,
            ),
            ("aks: no dns for cidr", AKS, "ten.example", 443, false),
            (
                "domain matches itself",
                "vault.azure.net",
                "vault.azure.net",
                443,
                true,
            ),
            (
                "domain matches subdomains",
                "vault.azure.net",
                "kv1.vault.azure.net",
                443,
                true,
            ),
            (
                "domain is not a substring",
                "azure.net",
                "notazure.net",
                443,
                false,
            ),
            (
                "dot: subdomains only",
                ".vault.azure.net",
                "vault.azure.net",
                443,
                false,
            ),
            (
                "dot: subdomain",
                ".vault.azure.net",
                "kv1.vault.azure.net",
                443,
                true,
            ),
            (
                "star-dot like dot",
                "*.vault.azure.net",
                "kv1.vault.azure.net",
                443,
                true,
            ),
            (
                "star-dot not itself",
                "*.vault.azure.net",
                "vault.azure.net",
                443,
                false,
            ),
            (
                "case-insensitive",
                "Vault.Azure.NET",
                "KV1.vault.azure.net",
                443,
                true,
            ),
            (
                "trailing dots",
                "example.com.",
                "www.example.com.",
                443,
                true,
            ),
            (
                "spaces around entries",
                " a.test , b.test ",
                "b.test",
                443,
                true,
            ),
            (
                "port given and equal",
                "reg.test:5000",
                "reg.test",
                5000,
                true,
            ),
            (
                "port given and other",
                "reg.test:5000",
                "reg.test",
                443,
                false,
            ),
            ("ip literal", "192.168.1.10", "192.168.1.10", 443, true),
            (
                "ip with port",
                "192.168.1.10:8443",
                "192.168.1.10",
                443,
                false,
            ),
            ("ipv6 literal", "::1", "[::1]", 443, true),
            ("ipv6 with port", "[fd00::1]:5000", "fd00::1", 5000, true),
            ("ipv6 cidr", "fd00::/8", "[fd12::1]", 443, true),
            (
                "v4 cidr does not match v6",
                "10.0.0.0/8",
                "::ffff:a00:1",
                443,
                false,
            ),
            (
                "ip entry does not match names",
                "127.0.0.1",
                "localhost",
                80,
                false,
            ),
            ("cidr /0", "0.0.0.0/0", "8.8.8.8", 53, true),
            (
                "bad cidr skipped",
                "10.0.0.0/40,a.test",
                "10.0.0.1",
                443,
                false,
            ),
            ("garbage skipped", "/,[,a.test", "a.test", 443, true),
        ];
        for (name, list, host, port, direct) in cases {
            assert_eq!(
                NoProxy::parse(list).matches(host, *port),
                *direct,
                "{name}: NO_PROXY={list:?} host {host}:{port}"
            );
        }
    }

    #[test]
    fn empty_lists_are_empty() {
        assert!(NoProxy::parse("").is_empty());
        assert!(NoProxy::parse(" , ,").is_empty());
        assert!(!NoProxy::parse("*").is_empty());
        assert!(!NoProxy::parse(".svc").is_empty());
    }
}
