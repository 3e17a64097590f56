//! Access tokens: JWT-shaped so real clients accept them, HMAC-signed so the vault can tell which
//! identity each one was issued to without a lookup table.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Token lifetime. Over an hour: the Rust SDK refreshes tokens with under 300 s left on every call.
pub const LIFETIME_SECS: i64 = 3600 * 24;

/// The claims the fake writes and reads back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Audience: the resource, e.g. `https://vault.azure.net`.
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Client id of the identity the token was issued to.
    pub appid: String,
    pub oid: String,
    pub sub: String,
    pub tid: String,
    pub ver: String,
}

impl Claims {
    /// Claims for `client_id` in `tenant`, valid from `now` for [`LIFETIME_SECS`].
    pub fn new(client_id: &str, tenant: &str, audience: &str, now: i64) -> Claims {
        Claims {
            aud: audience.to_string(),
            iss: format!("https://sts.windows.net/{tenant}/"),
            iat: now,
            nbf: now - 300,
            exp: now + LIFETIME_SECS,
            appid: client_id.to_string(),
            oid: client_id.to_string(),
            sub: client_id.to_string(),
            tid: tenant.to_string(),
            ver: "1.0".to_string(),
        }
    }
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT (header.payload.signature)")]
    Malformed,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not yet valid")]
    NotYetValid,
}

/// Signs and checks tokens with one random key per server.
pub struct Signer {
    key: ring::hmac::Key,
}

impl Signer {
    pub fn new() -> Signer {
        let rng = ring::rand::SystemRandom::new();
        let key =
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).expect("system RNG available");
        Signer { key }
    }

    /// Encodes and signs the claims as `header.payload.signature`.
    pub fn issue(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let signing_input = format!("{header}.{payload}");
        let tag = ring::hmac::sign(&self.key, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Verifies the signature and the validity window at `now` (unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Malformed)?;
        ring::hmac::verify(&self.key, format!("{header}.{payload}").as_bytes(), &sig)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

impl Default for Signer {
    fn default() -> Self {
        Signer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_as_issued() {
        let signer = Signer::new();
        let other = Signer::new();
        let now = 1_800_000_000;
        let claims = Claims::new("app-a", "tenant", "https://vault.azure.net", now);
        let token = signer.issue(&claims);
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 3, 'x');
        type Case<'a> = (&'a str, String, &'a Signer, i64, Result<Claims, TokenError>);
        let cases: Vec<Case> = vec![
            ("valid", token.clone(), &signer, now, Ok(claims.clone())),
            (
                "other key",
                token.clone(),
                &other,
                now,
                Err(TokenError::BadSignature),
            ),
            (
                "expired",
                token.clone(),
                &signer,
                now + LIFETIME_SECS,
                Err(TokenError::Expired),
            ),
            (
                "early",
                token.clone(),
                &signer,
                now - 301,
                Err(TokenError::NotYetValid),
            ),
            (
                "tampered",
                tampered,
                &signer,
                now,
                Err(TokenError::BadSignature),
            ),
            (
                "two parts",
                "a.b".into(),
                &signer,
                now,
                Err(TokenError::Malformed),
            ),
            (
                "garbage sig",
                "a.b.!!".into(),
                &signer,
                now,
                Err(TokenError::Malformed),
            ),
        ];
        for (name, token, s, at, want) in cases {
            assert_eq!(s.verify(&token, at), want, "case {name}");
        }
    }

    #[test]
    fn payload_is_readable_jwt() {
        let token = Signer::new().issue(&Claims::new("app-b", "t", "https://vault.azure.net", 100));
        let payload = token.split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(json["appid"], "app-b");
        assert_eq!(json["aud"], "https://vault.azure.net");
        assert_eq!(json["exp"], 100 + LIFETIME_SECS);
    }
}
