//! Why a placeholder could not be resolved, in words an operator can act on.
//!
//! No message built here contains a value: causes come from Key Vault's and Entra ID's error
//! bodies (which never echo values) and from our own texts.

use std::{error::Error as StdError, fmt, time::Duration};

/// The classes of failure the injector reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// 404: no such object or version.
    NotFound,
    /// 403: the identity may not read it, or the object is disabled / expired / not yet valid.
    Forbidden,
    /// 429 until the deadline.
    Throttled,
    /// Connection or DNS errors, or no answer, until the deadline.
    Unreachable,
    /// 5xx until the deadline.
    ServerError,
    /// The object's content is not what the placeholder asks for.
    BadFormat,
    /// The identity could not get a token (or the token was refused).
    AuthFailed,
    /// No `vault=` and no default vault.
    NoVault,
    /// Anything else Key Vault refused (e.g. 400).
    Rejected,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::NotFound => "not found",
            FailureKind::Forbidden => "forbidden",
            FailureKind::Throttled => "throttled until the deadline",
            FailureKind::Unreachable => "unreachable",
            FailureKind::ServerError => "server errors until the deadline",
            FailureKind::BadFormat => "bad format",
            FailureKind::AuthFailed => "authentication failed",
            FailureKind::NoVault => "no vault given",
            FailureKind::Rejected => "rejected",
        })
    }
}

/// One placeholder's failure: what it asked for, where, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{object} in vault {vault}: {kind} ({cause})")]
pub struct ResolveError {
    /// e.g. `secret db-password` or `certificate web-tls version 0123...`.
    pub object: String,
    /// The vault as written (name or URL), or `(none)`.
    pub vault: String,
    pub kind: FailureKind,
    pub cause: String,
}

/// The facts about one failed attempt that decide whether to retry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AttemptFacts {
    /// HTTP status of the vault's (or token service's) answer, if there was one.
    pub status: Option<u16>,
    /// The failure happened while getting a token.
    pub credential: bool,
    /// No connection could be made, or it broke before an answer.
    pub transport: bool,
    /// The attempt ran out of its own time budget.
    pub timed_out: bool,
    /// TLS refused the peer's certificate (the vault's, the token service's or a proxy's): no
    /// retry makes it trusted, so waiting for the deadline would only delay the answer.
    pub untrusted_certificate: bool,
    /// `Retry-After` (or `retry-after-ms` / `x-ms-retry-after-ms`) in the answer.
    pub retry_after: Option<Duration>,
    /// Key Vault's error code (`SecretNotFound`, `Forbidden`, `Throttled`...).
    pub code: Option<String>,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Try again (after `Retry-After` if given); report `kind` if time runs out.
    Retry(FailureKind),
    /// Give up now.
    Fatal(FailureKind),
}

/// Decides retry or not. Pure, so it is tested as a table.
pub(crate) fn classify(f: &AttemptFacts) -> Verdict {
    use FailureKind::*;
    if f.untrusted_certificate {
        return Verdict::Fatal(if f.credential {
            AuthFailed
        } else {
            Unreachable
        });
    }
    if f.timed_out || f.transport {
        return Verdict::Retry(if f.credential {
            AuthFailed
        } else {
            Unreachable
        });
    }
    match f.status {
        Some(429) => Verdict::Retry(Throttled),
        Some(408) => Verdict::Retry(Unreachable),
        Some(s) if s >= 500 => Verdict::Retry(if f.credential {
            AuthFailed
        } else {
            ServerError
        }),
        // A 4xx from the token service: wrong client id, secret or assertion.
        Some(_) if f.credential => Verdict::Fatal(AuthFailed),
        Some(401) => Verdict::Fatal(AuthFailed),
        Some(403) => Verdict::Fatal(Forbidden),
        Some(404) => Verdict::Fatal(NotFound),
        Some(_) => Verdict::Fatal(Rejected),
        // A token failure with no status: e.g. an unreadable answer; worth another try.
        None if f.credential => Verdict::Retry(AuthFailed),
        None => Verdict::Fatal(Rejected),
    }
}

/// Parses `Retry-After` (delta-seconds) or the millisecond variants Azure sends.
pub(crate) fn parse_retry_after(
    retry_after: Option<&str>,
    retry_after_ms: Option<&str>,
) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_millis(ms));
    }
    retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Pulls the retry facts out of an SDK error, walking its `source()` chain.
pub(crate) fn facts_of(err: &azure_core::Error) -> AttemptFacts {
    use azure_core::error::ErrorKind as K;
    use azure_core::http::headers;
    let mut facts = AttemptFacts::default();
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(az) = e.downcast_ref::<azure_core::Error>() {
            match az.kind() {
                K::Credential => facts.credential = true,
                K::Connection | K::Io => facts.transport = true,
                K::HttpResponse {
                    status,
                    error_code,
                    raw_response,
                } if facts.status.is_none() => {
                    facts.status = Some(u16::from(*status));
                    facts.code = error_code.clone();
                    if let Some(raw) = raw_response {
                        let h = raw.headers();
                        let ms = h
                            .get_optional_str(&headers::RETRY_AFTER_MS)
                            .or_else(|| h.get_optional_str(&headers::X_MS_RETRY_AFTER_MS));
                        facts.retry_after =
                            parse_retry_after(h.get_optional_str(&headers::RETRY_AFTER), ms);
                    }
                }
                _ => {}
            }
        }
        if let Some(r) = e.downcast_ref::<reqwest::Error>()
            && (r.is_connect() || r.is_timeout() || r.is_request() || r.is_body())
        {
            facts.transport = true;
        }
        if is_invalid_certificate(e) {
            facts.untrusted_certificate = true;
        }
        current = e.source();
    }
    facts
}

/// Said after a certificate TLS refused, so the operator knows what to add and where.
pub(crate) const UNTRUSTED_CERTIFICATE_HINT: &str = "the TLS certificate is not trusted and no \
     retry changes that: add the CA that issued it (akv-env --ca-file; the chart's caBundle)";

/// Whether `e` is rustls refusing a certificate. A handshake error reaches us inside
/// `io::Error`s (nested: the proxy tunnel wraps the TLS stream's), whose `source()` skips the
/// error each wraps, so those are looked into.
fn is_invalid_certificate(e: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(e) = current {
        if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref::<rustls::Error>() {
            return true;
        }
        current = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn StdError + 'static));
    }
    false
}

/// Every distinct message along an error's `source()` chain, joined with ": ", on one line.
///
/// For HTTP errors the service's own `error.code` and `error.message` are read from the body:
/// azure_core 1.1 borrows them as `&str`, so any message with an escape (Key Vault's 403 texts
/// contain `\r\n`) falls back to the raw JSON body. Callers must only pass errors whose
/// messages cannot hold a value (HTTP and SDK errors).
pub fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = match e
            .downcast_ref::<azure_core::Error>()
            .and_then(service_message)
        {
            Some(m) => m,
            // The identity crate appends a troubleshooting link on a new line; keep the first.
            None => e.to_string().lines().next().unwrap_or("").trim().to_owned(),
        };
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    if parts.is_empty() {
        "unknown error".to_owned()
    } else {
        parts.join(": ")
    }
}

/// `HTTP 403 Forbidden: <message>` from a Key Vault (`{"error":{"code","message"}}`) or Entra ID
/// (`{"error","error_description"}`) error body, squeezed onto one line.
fn service_message(err: &azure_core::Error) -> Option<String> {
    let azure_core::error::ErrorKind::HttpResponse {
        status,
        raw_response: Some(raw),
        ..
    } = err.kind()
    else {
        return None;
    };
    #[derive(serde::Deserialize)]
    struct Body {
        error: serde_json::Value,
        error_description: Option<String>,
    }
    let body: Body = serde_json::from_slice(raw.body().as_ref()).ok()?;
    let (code, message) = match (&body.error, body.error_description) {
        (serde_json::Value::Object(o), _) => (
            o.get("code").and_then(|v| v.as_str()).map(str::to_owned),
            o.get("message").and_then(|v| v.as_str()).map(str::to_owned),
        ),
        (serde_json::Value::String(code), description) => (Some(code.clone()), description),
        _ => return None,
    };
    let message = message.map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "));
    let status = u16::from(*status);
    Some(match (code, message) {
        (Some(c), Some(m)) => format!("HTTP {status} {c}: {m}"),
        (Some(c), None) => format!("HTTP {status} {c}"),
        (None, Some(m)) => format!("HTTP {status}: {m}"),
        (None, None) => format!("HTTP {status}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureKind::*;

    #[test]
    fn a_refused_certificate_is_found_inside_nested_io_errors() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            refused,
        ));
        assert!(is_invalid_certificate(&nested));
        let other = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::DecryptError,
        ));
        assert!(!is_invalid_certificate(&other));
        assert!(!is_invalid_certificate(&std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        )));
    }

    #[test]
    fn classifies_attempt_failures() {
        let f = |status: Option<u16>, credential: bool, transport: bool, timed_out: bool| {
            AttemptFacts {
                status,
                credential,
                transport,
                timed_out,
                ..Default::default()
            }
        };
        let cases = [
            (
                "429 throttled",
                f(Some(429), false, false, false),
                Verdict::Retry(Throttled),
            ),
            (
                "500 vault",
                f(Some(500), false, false, false),
                Verdict::Retry(ServerError),
            ),
            (
                "503 vault",
                f(Some(503), false, false, false),
                Verdict::Retry(ServerError),
            ),
            (
                "503 token service",
                f(Some(503), true, false, false),
                Verdict::Retry(AuthFailed),
            ),
            (
                "408",
                f(Some(408), false, false, false),
                Verdict::Retry(Unreachable),
            ),
            (
                "connection refused",
                f(None, false, true, false),
                Verdict::Retry(Unreachable),
            ),
            (
                "token service unreachable",
                f(None, true, true, false),
                Verdict::Retry(AuthFailed),
            ),
            (
                "attempt timed out",
                f(None, false, false, true),
                Verdict::Retry(Unreachable),
            ),
            (
                "404",
                f(Some(404), false, false, false),
                Verdict::Fatal(NotFound),
            ),
            (
                "403",
                f(Some(403), false, false, false),
                Verdict::Fatal(Forbidden),
            ),
            (
                "401 after challenge",
                f(Some(401), false, false, false),
                Verdict::Fatal(AuthFailed),
            ),
            (
                "400 vault",
                f(Some(400), false, false, false),
                Verdict::Fatal(Rejected),
            ),
            (
                "400 invalid_client",
                f(Some(400), true, false, false),
                Verdict::Fatal(AuthFailed),
            ),
            (
                "401 token service",
                f(Some(401), true, false, false),
                Verdict::Fatal(AuthFailed),
            ),
            (
                "credential, no status",
                f(None, true, false, false),
                Verdict::Retry(AuthFailed),
            ),
            (
                "nothing known",
                f(None, false, false, false),
                Verdict::Fatal(Rejected),
            ),
            (
                "vault or proxy certificate not trusted",
                AttemptFacts {
                    untrusted_certificate: true,
                    ..f(None, false, true, false)
                },
                Verdict::Fatal(Unreachable),
            ),
            (
                "token service certificate not trusted",
                AttemptFacts {
                    untrusted_certificate: true,
                    ..f(None, true, true, false)
                },
                Verdict::Fatal(AuthFailed),
            ),
        ];
        for (name, facts, want) in cases {
            assert_eq!(classify(&facts), want, "{name}");
        }
    }

    #[test]
    fn parses_retry_after_headers() {
        let cases = [
            ("seconds", Some("7"), None, Some(Duration::from_secs(7))),
            ("spaces", Some(" 2 "), None, Some(Duration::from_secs(2))),
            (
                "ms wins",
                Some("7"),
                Some("1500"),
                Some(Duration::from_millis(1500)),
            ),
            (
                "bad ms falls back",
                Some("3"),
                Some("x"),
                Some(Duration::from_secs(3)),
            ),
            (
                "http date unsupported",
                Some("Wed, 21 Oct 2015 07:28:00 GMT"),
                None,
                None,
            ),
            ("absent", None, None, None),
        ];
        for (name, ra, ms, want) in cases {
            assert_eq!(parse_retry_after(ra, ms), want, "{name}");
        }
    }

    #[test]
    fn facts_come_from_nested_sdk_errors() {
        use azure_core::error::{Error, ErrorKind};
        let inner = Error::with_message(ErrorKind::Connection, "connection refused");
        let outer = Error::with_error(
            ErrorKind::Credential,
            inner,
            "ClientSecretCredential authentication failed.",
        );
        let facts = facts_of(&outer);
        assert!(facts.credential && facts.transport, "{facts:?}");
        assert_eq!(classify(&facts), Verdict::Retry(AuthFailed));
        assert_eq!(
            cause_chain(&outer),
            "ClientSecretCredential authentication failed.: connection refused"
        );
    }

    #[test]
    fn service_messages_are_read_from_the_body_on_one_line() {
        use azure_core::{
            error::{Error, ErrorKind},
            http::{RawResponse, StatusCode, headers::Headers},
        };
        let cases: &[(&str, u16, &str, &str)] = &[
            (
                "key vault 403 with escapes",
                403,
                r#"{"error":{"code":"Forbidden","message":"Caller is not authorized.\r\nCaller: appid=app-b","innererror":{"code":"ForbiddenByRbac"}}}"#,
                "HTTP 403 Forbidden: Caller is not authorized. Caller: appid=app-b",
            ),
            (
                "entra",
                400,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret."}"#,
                "HTTP 400 invalid_client: AADSTS7000215: Invalid client secret.",
            ),
            ("not json", 502, "<html>bad gateway</html>", "502"),
        ];
        for (name, status, body, want) in cases {
            let raw = RawResponse::from_bytes(
                StatusCode::from(*status),
                Headers::new(),
                body.as_bytes().to_vec(),
            );
            let err = Error::with_message(
                ErrorKind::HttpResponse {
                    status: StatusCode::from(*status),
                    error_code: None,
                    raw_response: Some(Box::new(raw)),
                },
                format!("{status}: {body}"),
            );
            let got = cause_chain(&err);
            assert!(got.starts_with(want), "{name}: {got}");
            assert!(
                !got.contains('\n') && !got.contains('\r'),
                "{name}: {got:?}"
            );
        }
    }

    #[test]
    fn error_line_names_object_vault_and_kind() {
        let e = ResolveError {
            object: "secret db-password".into(),
            vault: "myvault".into(),
            kind: Forbidden,
            cause: "identity app-b is not allowed".into(),
        };
        assert_eq!(
            e.to_string(),
            "secret db-password in vault myvault: forbidden (identity app-b is not allowed)"
        );
    }
}
