//! Why an image's entrypoint could not be read, in one sentence that names the image.

use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::Platform;

#[derive(Debug, thiserror::Error)]
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

    #[error("reading image {image} from its registry took longer than {after:?}")]
    Timeout { image: String, after: Duration },

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

    #[error("registry {registry} failed to serve image {image}: {reason}")]
    Registry {
        image: String,
        registry: String,
        reason: String,
    },
}

/// What kind of failure a registry call had, before the image is attached.
#[derive(Debug)]
pub(crate) enum Failure {
    Unauthorized,
    NotFound,
    Unreachable(String),
    /// The server's certificate did not verify against the trusted roots.
    Certificate(String),
    Other(String),
}

impl Failure {
    pub(crate) fn classify(err: &OciDistributionError) -> Failure {
        use OciDistributionError as E;
        match err {
            E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => Failure::Unauthorized,
            E::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    Failure::Unauthorized
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    Failure::NotFound
                } else {
                    Failure::Other(short(&err.to_string()))
                }
            }
            E::ServerError {
                code: 401 | 403, ..
            } => Failure::Unauthorized,
            E::ServerError { code: 404, .. } => Failure::NotFound,
            E::ServerError { code, message, .. } => {
                Failure::Other(format!("HTTP {code}: {}", short(message)))
            }
            E::RequestError(e) if certificate_error(e).is_some() => {
                Failure::Certificate(certificate_error(e).unwrap_or_default())
            }
            E::RequestError(e) if e.is_connect() || e.is_timeout() => {
                Failure::Unreachable(error_chain(e))
            }
            other => Failure::Other(short(&error_chain(other))),
        }
    }
}

/// rustls' verdict on the server's certificate, if that is why the request failed. The
/// rustls error sits inside (nested) `io::Error`s, whose `source()` skips it, so look inside.
fn certificate_error(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        let mut candidate = Some(e);
        while let Some(c) = candidate {
            if let Some(tls @ rustls::Error::InvalidCertificate(_)) =
                c.downcast_ref::<rustls::Error>()
            {
                return Some(tls.to_string());
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
