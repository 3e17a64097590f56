//! The fixed-address map (`host=ip:port,...`): names resolved without DNS, for private
//! endpoints and test rigs. It decides where connections go, so it may never cover Microsoft
//! Entra ID's hosts (the pod's proof of identity goes there) or the managed-identity endpoint.

use std::net::SocketAddr;

use crate::authority::{IMDS_HOST, is_entra_host};

/// An entry of the map that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {index} ({entry:?}): {why}")]
pub struct ResolveError {
    pub index: usize,
    pub entry: String,
    pub why: String,
}

/// Parses `host=ip:port[,host2=ip:port]` (IPv6 as `[::1]:443`) and refuses entries for Entra's
/// hosts and for IP addresses (IMDS is one: 169.254.169.254).
pub fn parse_resolve(text: &str) -> Result<Vec<(String, SocketAddr)>, ResolveError> {
    let mut out = Vec::new();
    for (i, entry) in text.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let bad = |why: String| ResolveError {
            entry: entry.to_owned(),
            index: i + 1,
            why,
        };
        let (host, addr) = entry
            .split_once('=')
            .ok_or_else(|| bad("expected host=ip:port".into()))?;
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(bad("the host must be a DNS name".into()));
        }
        if host == IMDS_HOST {
            return Err(bad(format!(
                "{IMDS_HOST} is the managed identity endpoint (IMDS), which fixed addresses may \
                 never redirect"
            )));
        }
        if host
            .split('.')
            .all(|l| l.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(bad("the host must be a DNS name, not an IP address".into()));
        }
        if is_entra_host(&host) {
            return Err(bad(format!(
                "{host} is Microsoft Entra ID's sign-in host, which fixed addresses may never \
                 redirect (the pod's proof of identity goes there)"
            )));
        }
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| bad("the address must be ip:port, e.g. 10.0.0.4:443".into()))?;
        out.push((host, addr));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_and_refuses_protected_hosts() {
        let ok: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            (
                "myvault.vault.azure.net=127.0.0.1:8443",
                &[("myvault.vault.azure.net", "127.0.0.1:8443")],
            ),
            (
                " A.vault.azure.net=10.0.0.4:443 , login.test=[::1]:9000,",
                &[
                    ("a.vault.azure.net", "10.0.0.4:443"),
                    ("login.test", "[::1]:9000"),
                ],
            ),
        ];
        for (text, want) in ok {
            let got = parse_resolve(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let want: Vec<(String, SocketAddr)> = want
                .iter()
                .map(|(h, a)| (h.to_string(), a.parse().unwrap()))
                .collect();
            assert_eq!(got, want, "{text:?}");
        }
        let bad: &[(&str, &str)] = &[
            (
                "myvault.vault.azure.net",
                "entry 1 (\"myvault.vault.azure.net\"): expected host=ip:port",
            ),
            (
                "a=1.2.3.4:1,b=localhost:80",
                "entry 2 (\"b=localhost:80\"): the address must be ip:port",
            ),
            ("a b=1.2.3.4:1", "the host must be a DNS name"),
            ("a=1.2.3.4", "the address must be ip:port"),
            (
                "kv.vault.azure.net=1.2.3.4:443,login.microsoftonline.com=1.2.3.4:443",
                "entry 2 (\"login.microsoftonline.com=1.2.3.4:443\"): login.microsoftonline.com is Microsoft Entra ID's sign-in host",
            ),
            (
                "LOGIN.chinacloudapi.cn.=1.2.3.4:443",
                "login.chinacloudapi.cn is Microsoft Entra ID's",
            ),
            (
                "login.microsoftonline.us=1.2.3.4:443",
                "Microsoft Entra ID's",
            ),
            (
                "169.254.169.254=127.0.0.1:80",
                "managed identity endpoint (IMDS)",
            ),
            ("10.0.0.1=127.0.0.1:80", "not an IP address"),
        ];
        for (text, want) in bad {
            let err = parse_resolve(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err} (want {want})");
        }
    }
}
