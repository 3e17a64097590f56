//! Microsoft Entra ID's authority hosts, and which authority the injector may use.
//!
//! The authority receives the pod's proof of identity (the federated service-account token or
//! the client secret). `AZURE_AUTHORITY_HOST` arrives in the environment, which `envFrom` and
//! `valueFrom` can feed from a ConfigMap, so from there only Entra's own hosts are accepted;
//! any other authority must be written literally in the pod spec, from which the webhook
//! passes it to the injector as `--authority-host`.

/// Microsoft Entra ID's sign-in hosts: public cloud, Azure China (21Vianet), Azure US
/// Government, and the retired Azure Germany. The fixed-address map may never cover them.
pub const ENTRA_AUTHORITY_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.windows.net",
    "sts.windows.net",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
    "login.microsoftonline.us",
    "login.usgovcloudapi.net",
    "login.microsoftonline.de",
];

/// The Instance Metadata Service, which serves managed identity tokens on Azure VMs and nodes.
pub const IMDS_HOST: &str = "169.254.169.254";

/// An authority that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error(
        "{origin}: {value:?} is not an authority URL; use https://HOST, e.g. https://login.microsoftonline.com"
    )]
    Malformed { origin: &'static str, value: String },
    #[error(
        "AZURE_AUTHORITY_HOST {value:?} from the environment is not a Microsoft Entra ID \
         authority ({}); the environment can be fed from ConfigMaps, so it may only pick one of \
         these. For another authority, write AZURE_AUTHORITY_HOST as a literal value in the \
         container's env in the pod spec: the webhook passes it to akv-env as --authority-host",
        ENTRA_AUTHORITY_HOSTS.join(", ")
    )]
    NotEntra { value: String },
}

/// Is `host` one of Entra's sign-in hosts (case-insensitive, a trailing dot ignored)?
pub fn is_entra_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    ENTRA_AUTHORITY_HOSTS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host))
}

/// The host of an `https://host[:port][/]` authority URL, lower-cased.
pub fn authority_host_of(url: &str) -> Option<String> {
    let rest = url
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .map(|_| &url[8..])?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok_and(|p| p > 0) => host,
        Some(_) => return None,
        None => authority,
    };
    (!host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    .then(|| host.to_ascii_lowercase())
}

/// The authority the injector uses: `flag` (`--authority-host`, from the admitted pod spec) if
/// given, else `env` (`AZURE_AUTHORITY_HOST`) if it names an Entra host, else none (the SDK's
/// default, `https://login.microsoftonline.com`). Returns it without a trailing slash.
pub fn choose(flag: Option<&str>, env: Option<&str>) -> Result<Option<String>, AuthorityError> {
    let normalise = |url: &str| url.trim_end_matches('/').to_owned();
    if let Some(flag) = flag.filter(|f| !f.is_empty()) {
        return match authority_host_of(flag) {
            Some(_) => Ok(Some(normalise(flag))),
            None => Err(AuthorityError::Malformed {
                origin: "--authority-host",
                value: flag.to_owned(),
            }),
        };
    }
    let Some(env) = env.filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    match authority_host_of(env) {
        None => Err(AuthorityError::Malformed {
            origin: "AZURE_AUTHORITY_HOST",
            value: env.to_owned(),
        }),
        Some(host) if is_entra_host(&host) => Ok(Some(normalise(env))),
        Some(_) => Err(AuthorityError::NotEntra {
            value: env.to_owned(),
        }),
    }
}

/// The authority with a cloud setting (`--cloud`, from the operator): `flag` if given, else
/// the cloud's authority, else as [`choose`]. The cloud beats `AZURE_AUTHORITY_HOST` because
/// the environment can be fed from ConfigMaps, and a token of another cloud is of no use; an
/// operator's own vault suffix has no authority of its own, so the environment rule applies.
pub fn choose_in(
    flag: Option<&str>,
    cloud: Option<&crate::Cloud>,
    env: Option<&str>,
) -> Result<Option<String>, AuthorityError> {
    if flag.is_some_and(|f| !f.is_empty()) {
        return choose(flag, None);
    }
    match cloud.and_then(crate::Cloud::authority_host) {
        Some(authority) => Ok(Some(authority.to_owned())),
        None => choose(None, env),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cloud;

    #[test]
    fn the_flag_then_the_cloud_then_the_environment() {
        let china = Cloud::China;
        let own = Cloud::parse("vault.test").unwrap();
        // (case, flag, cloud, env, Ok(authority) or a fragment of the error)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a Cloud>,
            Option<&'a str>,
            Result<Option<&'a str>, &'a str>,
        );
        let cases: &[Case] = &[
            (
                "no cloud: as before",
                None,
                None,
                Some("https://login.microsoftonline.us"),
                Ok(Some("https://login.microsoftonline.us")),
            ),
            (
                "china",
                None,
                Some(&china),
                None,
                Ok(Some("https://login.chinacloudapi.cn")),
            ),
            (
                "china beats the environment",
                None,
                Some(&china),
                Some("https://login.microsoftonline.com"),
                Ok(Some("https://login.chinacloudapi.cn")),
            ),
            (
                "us gov",
                None,
                Some(&Cloud::UsGovernment),
                None,
                Ok(Some("https://login.microsoftonline.us")),
            ),
            (
                "public",
                None,
                Some(&Cloud::Public),
                None,
                Ok(Some("https://login.microsoftonline.com")),
            ),
            (
                "the flag beats the cloud",
                Some("https://login.test/"),
                Some(&china),
                None,
                Ok(Some("https://login.test")),
            ),
            (
                "own suffix: environment",
                None,
                Some(&own),
                Some("https://login.chinacloudapi.cn"),
                Ok(Some("https://login.chinacloudapi.cn")),
            ),
            ("own suffix: nothing", None, Some(&own), None, Ok(None)),
            (
                "own suffix: environment must be Entra",
                None,
                Some(&own),
                Some("https://login.test"),
                Err("not a Microsoft Entra ID authority"),
            ),
            (
                "bad flag",
                Some("login.test"),
                Some(&china),
                None,
                Err("--authority-host"),
            ),
        ];
        for (case, flag, cloud, env, want) in cases {
            match (choose_in(*flag, *cloud, *env), want) {
                (Ok(got), Ok(want)) => assert_eq!(got.as_deref(), *want, "{case}"),
                (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{case}: {e}"),
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_flag_wins_and_the_environment_may_only_name_entra() {
        // (case, flag, env, Ok(authority) or a fragment of the error)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Result<Option<&'a str>, &'a str>,
        );
        let cases: &[Case] = &[
            ("nothing", None, None, Ok(None)),
            (
                "env public, as azure-workload-identity writes it",
                None,
                Some("https://login.microsoftonline.com/"),
                Ok(Some("https://login.microsoftonline.com")),
            ),
            (
                "env china",
                None,
                Some("https://login.chinacloudapi.cn"),
                Ok(Some("https://login.chinacloudapi.cn")),
            ),
            (
                "env us gov, upper case",
                None,
                Some("https://LOGIN.microsoftonline.us/"),
                Ok(Some("https://LOGIN.microsoftonline.us")),
            ),
            (
                "env elsewhere",
                None,
                Some("https://login.evil.example"),
                Err("not a Microsoft Entra ID authority"),
            ),
            (
                "env look-alike",
                None,
                Some("https://login.microsoftonline.com.evil.example"),
                Err("not a Microsoft Entra ID authority"),
            ),
            (
                "env with a port elsewhere",
                None,
                Some("https://login.test:8443"),
                Err("--authority-host"),
            ),
            (
                "env plain http",
                None,
                Some("http://login.microsoftonline.com"),
                Err(
                    "AZURE_AUTHORITY_HOST: \"http://login.microsoftonline.com\" is not an authority URL",
                ),
            ),
            (
                "env with a path",
                None,
                Some("https://login.microsoftonline.com/tenant"),
                Err("is not an authority URL"),
            ),
            (
                "env with credentials",
                None,
                Some("https://u:p@login.microsoftonline.com"),
                Err("is not an authority URL"),
            ),
            (
                "flag beats env",
                Some("https://login.test"),
                Some("https://login.evil.example"),
                Ok(Some("https://login.test")),
            ),
            (
                "flag with a port",
                Some("https://login.test:8443/"),
                None,
                Ok(Some("https://login.test:8443")),
            ),
            (
                "flag malformed",
                Some("login.test"),
                None,
                Err("--authority-host: \"login.test\" is not an authority URL"),
            ),
            (
                "empty flag means none",
                Some(""),
                Some("https://login.microsoftonline.com"),
                Ok(Some("https://login.microsoftonline.com")),
            ),
        ];
        for (case, flag, env, want) in cases {
            match (choose(*flag, *env), want) {
                (Ok(got), Ok(want)) => assert_eq!(got.as_deref(), *want, "{case}"),
                (Err(e), Err(fragment)) => {
                    assert!(e.to_string().contains(fragment), "{case}: {e}")
                }
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn entra_hosts_match_exactly() {
        assert!(is_entra_host("login.microsoftonline.com"));
        assert!(is_entra_host("LOGIN.chinacloudapi.cn."));
        assert!(!is_entra_host("login.microsoftonline.com.evil.example"));
        assert!(!is_entra_host("microsoftonline.com"));
        assert!(!is_entra_host("login.test"));
    }
}
