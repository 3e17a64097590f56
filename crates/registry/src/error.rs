//! Why an image's entrypoint could not be read, in one sentence that names the image.

use std::time::Duration;

use crate::Platform;

/// Clone: concurrent lookups sharing one fetch each get its error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    #[error("image reference {image:?} is not valid: {reason}")]
    InvalidReference { image: String, reason: String },

    #[error("image {image} was not found in its registry (no such repository, tag or digest)")]
    NotFound { image: String },

    #[error("registry {registry} refused access to image {image} {attempts}")]
    Unauthorized {
        image: String,
        registry: String,
        /// "anonymously" or "with N credential(s) from imagePullSecrets ..."
        attempts: String,
    },

    #[error(
        "reading image {image} from its registry took longer than {after:?}{}",
        if *through_proxy { " (through the webhook's egress proxy)" } else { "" }
    )]
    Timeout {
        image: String,
        after: Duration,
        /// The registry was asked for through the egress proxy, which may be what hung.
        through_proxy: bool,
    },

    #[error("registry {registry} of image {image} cannot be reached: {reason}")]
    Unreachable {
        image: String,
        registry: String,
        reason: String,
    },

    #[error(
        "registry {registry} of image {image} presented a TLS certificate that is not trusted \
         ({reason}); add the CA that issued it to the trusted roots (webhook: --registry-ca-file)"
    )]
    UntrustedCertificate {
        image: String,
        registry: String,
        reason: String,
    },

    #[error("image {image} has no manifest for platform {wanted}; it offers: {offered}")]
    NoMatchingPlatform {
        image: String,
        wanted: Platform,
        /// Comma-separated platforms of the index, e.g. "linux/amd64, linux/arm64/v8".
        offered: String,
    },

    #[error("image {image} cannot be used: {reason}")]
    InvalidImage { image: String, reason: String },

    #[error(
        "cannot get Azure Container Registry credentials for {registry} (image {image}): {reason}"
    )]
    Acr {
        image: String,
        registry: String,
        reason: String,
    },

    #[error("image {image} was not read from registry {registry}: {reason}")]
    Refused {
        image: String,
        registry: String,
        /// Which hop and why, e.g. "its token service is at 169.254.169.254, ...".
        reason: String,
    },

    #[error("registry {registry} failed to serve image {image}: {reason}")]
    Registry {
        image: String,
        registry: String,
        reason: String,
    },
}

/// What kind of failure a registry call had, before the image is attached. Never holds text
/// from a registry's answer: that is the registry's to word, not ours to relay to a pod author.
#[derive(Debug)]
pub(crate) enum Failure {
    Unauthorized,
    NotFound,
    Unreachable(String),
    /// The server's certificate did not verify against the trusted roots.
    Certificate(String),
    /// The egress policy stopped a request before it was sent.
    Refused(String),
    Other(String),
}

impl Failure {
    /// A registry's non-success answer: its status, and the error codes of its JSON body
    /// (OCI distribution spec) when it sent one. `context` says which request, e.g. "manifest".
    pub(crate) fn from_answer(status: reqwest::StatusCode, body: &[u8], context: &str) -> Failure {
        #[derive(serde::Deserialize)]
        struct Envelope {
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            code: String,
        }
        let codes: Vec<String> = serde_json::from_slice::<Envelope>(body)
            .map(|e| e.errors.into_iter().map(|e| e.code).collect())
            .unwrap_or_default();
        let has = |wanted: &[&str]| codes.iter().any(|c| wanted.contains(&c.as_str()));
        if matches!(status.as_u16(), 401 | 403) || has(&["UNAUTHORIZED", "DENIED"]) {
            Failure::Unauthorized
        } else if status.as_u16() == 404
            || has(&[
                "MANIFEST_UNKNOWN",
                "NAME_UNKNOWN",
                "BLOB_UNKNOWN",
                "NOT_FOUND",
            ])
        {
            Failure::NotFound
        } else {
            Failure::Other(format!(
                "the {context} request was answered with HTTP {status}"
            ))
        }
    }

    /// A request that got no answer. `hop` names the request for a refusal, e.g. "its token
    /// service".
    pub(crate) fn from_request(err: &reqwest::Error, hop: &str) -> Failure {
        // The URL may be a registry's redirect target: registry-chosen text, not repeated.
        if let Some(refused) = crate::egress::policy::refusal_in(err) {
            return Failure::Refused(format!("{hop} {refused}"));
        }
        if let Some(reason) = certificate_error(err) {
            return Failure::Certificate(reason);
        }
        let text = short(&request_error_text(err));
        if err.is_connect() || err.is_timeout() {
            Failure::Unreachable(text)
        } else {
            Failure::Other(text)
        }
    }
}

/// reqwest's own text names the URL, which may be a registry's redirect target (its words, not
/// ours to repeat): describe the request's fate, then the causes.
fn request_error_text(err: &reqwest::Error) -> String {
    let what = if err.is_connect() {
        "cannot connect"
    } else if err.is_timeout() {
        "timed out"
    } else if err.is_redirect() {
        "a redirect failed"
    } else if err.is_body() || err.is_decode() {
        "reading the answer failed"
    } else {
        "the request failed"
    };
    match std::error::Error::source(err) {
        Some(cause) => format!("{what}: {}", error_chain(cause)),
        None => what.to_string(),
    }
}

/// The first cause in `err`'s chain that `pick` recognises. Causes inside (nested)
/// `io::Error`s are looked at too: `source()` skips them.
pub(crate) fn find_in_chain<T>(
    err: &(dyn std::error::Error + 'static),
    pick: impl Fn(&(dyn std::error::Error + 'static)) -> Option<T>,
) -> Option<T> {
    let mut next = Some(err);
    while let Some(e) = next {
        let mut candidate = Some(e);
        while let Some(c) = candidate {
            if let Some(found) = pick(c) {
                return Some(found);
            }
            candidate = c
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|i| i as &(dyn std::error::Error + 'static));
        }
        next = e.source();
    }
    None
}

/// rustls' verdict on the server's certificate, if that is why the request failed.
fn certificate_error(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    find_in_chain(err, |c| match c.downcast_ref::<rustls::Error>() {
        Some(tls @ rustls::Error::InvalidCertificate(_)) => Some(tls.to_string()),
        _ => None,
    })
}

/// The error and its causes on one line; reqwest hides the useful part in `source()`.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Registry bodies can be long HTML pages; keep messages to one readable line.
pub(crate) fn short(text: &str) -> String {
    const MAX: usize = 300;
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.len() <= MAX {
        one_line
    } else {
        let mut end = MAX;
        while !one_line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &one_line[..end])
    }
}
