//! JWT access and refresh tokens, HS256 pinned, expiry checked against the injected clock.

use super::caller::CallerSnapshot;
use crate::error::ApiError;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ACCESS_TTL_SECS: i64 = 3600;
pub const REFRESH_TTL_SECS: i64 = 7 * 24 * 3600;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The company id.
    pub cid: String,
    /// `access` or `refresh`.
    pub typ: String,
    pub jti: String,
    /// Refresh tokens: the family every rotation of one login shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<String>,
    pub iat: i64,
    pub exp: i64,
    /// The user's session epoch when the token was issued: a password change or a lockout
    /// moves the epoch on, and every token of an older epoch stops working at once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sep: u64,
    /// The caller as of the login (see [`CallerSnapshot`]): a new instance's guess, which
    /// lets it verify, count and read at once. A refresh carries it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub who: Option<CallerSnapshot>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The signing secret and, during a rotation, the one before it. Every token names the
/// secret that signed it in its header's `kid` (a short hash of the secret, which says nothing
/// about it), so tokens signed before a rotation still verify until they expire, and a
/// secret rotated out twice verifies nothing.
#[derive(Clone)]
pub struct TokenKeys {
    kid: String,
    encoding: EncodingKey,
    /// (kid, key): the current secret first, then the previous one.
    decoding: Vec<(String, DecodingKey)>,
    validation: Validation,
}

/// The `kid` of a secret: the first 16 hex digits of its SHA-256.
pub fn key_id(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(secret.as_bytes())[..8])
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    pub fn new(secret: &str) -> Self {
        Self::rotating(secret, None)
    }

    /// Signs with `current`; verifies tokens of `current` and of `previous`.
    pub fn rotating(current: &str, previous: Option<&str>) -> Self {
        super::hs256::install();
        // Only HS256 verifies; `alg: none` or any other algorithm is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false; // checked against the injected clock below
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let decoding = std::iter::once(current)
            .chain(previous.filter(|p| *p != current))
            .map(|s| (key_id(s), DecodingKey::from_secret(s.as_bytes())))
            .collect();
        TokenKeys {
            kid: key_id(current),
            encoding: EncodingKey::from_secret(current.as_bytes()),
            decoding,
            validation,
        }
    }

    pub fn issue(&self, claims: &Claims) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("signing token: {e}")))
    }

    /// The key a token names (no `kid`: a token from before kids, the current key).
    fn key_for(&self, token: &str) -> Option<&DecodingKey> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        match header.kid {
            None => self.decoding.first().map(|(_, key)| key),
            Some(kid) => self
                .decoding
                .iter()
                .find(|(id, _)| *id == kid)
                .map(|(_, key)| key),
        }
    }

    /// Verifies signature, algorithm, type and expiry.
    pub fn verify(&self, token: &str, typ: &str, now: DateTime<Utc>) -> Result<Claims, ApiError> {
        let what = if typ == "access" {
            "access token"
        } else {
            "refresh token"
        };
        let invalid = || ApiError::Unauthorized(format!("invalid {what}"));
        let key = self.key_for(token).ok_or_else(invalid)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|_| invalid())?;
        let claims = data.claims;
        if claims.typ != typ {
            return Err(ApiError::Unauthorized(format!(
                "invalid {what}: wrong token type"
            )));
        }
        if claims.exp <= now.timestamp() {
            return Err(ApiError::Unauthorized(format!("{what} expired")));
        }
        Ok(claims)
    }

    pub fn new_claims(
        user: &str,
        company: &str,
        typ: &str,
        family: Option<String>,
        now: DateTime<Utc>,
    ) -> Claims {
        let ttl = if typ == "access" {
            ACCESS_TTL_SECS
        } else {
            REFRESH_TTL_SECS
        };
        Claims {
            sub: user.to_owned(),
            cid: company.to_owned(),
            typ: typ.to_owned(),
            jti: domain::ids::new_id(),
            fam: family,
            iat: now.timestamp(),
            exp: now.timestamp() + ttl,
            sep: 0,
            who: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn a_rotated_secret_still_verifies_its_tokens_until_rotated_out_again() {
        let now = Utc::now();
        let (first, second, third) = (
            "first-secret-first-secret-first-secret!!",
            "second-secret-second-secret-second-secret",
            "third-secret-third-secret-third-secret!!",
        );
        let claims = TokenKeys::new_claims("u", "c", "access", None, now);
        let old = TokenKeys::new(first).issue(&claims).unwrap();
        let header = jsonwebtoken::decode_header(&old).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key_id(first).as_str()));
        assert_eq!(key_id(first).len(), 16);
        assert!(!key_id(first).contains("first"));

        // After one rotation: new tokens carry the new kid, old ones still verify.
        let rotated = TokenKeys::rotating(second, Some(first));
        let new = rotated.issue(&claims).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new).unwrap().kid,
            Some(key_id(second))
        );
        assert_eq!(rotated.verify(&old, "access", now).unwrap(), claims);
        assert_eq!(rotated.verify(&new, "access", now).unwrap(), claims);

        // After the next one, the first secret's tokens stop.
        let again = TokenKeys::rotating(third, Some(second));
        assert!(again.verify(&old, "access", now).is_err());
        assert!(again.verify(&new, "access", now).is_ok());

        // A token naming a kid with another secret's signature is refused, as is one without
        // a kid signed by the previous secret (no kid means the current secret).
        let mut forged = Header::new(Algorithm::HS256);
        forged.kid = Some(key_id(second));
        let forged = jsonwebtoken::encode(
            &forged,
            &claims,
            &EncodingKey::from_secret(b"not-the-secret-not-the-secret-not-it"),
        )
        .unwrap();
        assert!(rotated.verify(&forged, "access", now).is_err());
        let kidless = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(first.as_bytes()),
        )
        .unwrap();
        assert!(rotated.verify(&kidless, "access", now).is_err());
        assert!(TokenKeys::new(first)
            .verify(&kidless, "access", now)
            .is_ok());
    }

    #[test]
    fn tokens_verify_only_with_the_right_secret_type_and_time() {
        let now = Utc::now();
        let keys = TokenKeys::new("0123456789abcdef0123456789abcdef");
        let claims = TokenKeys::new_claims("u", "c", "access", None, now);
        let token = keys.issue(&claims).unwrap();
        assert_eq!(keys.verify(&token, "access", now).unwrap(), claims);
        assert!(keys.verify(&token, "refresh", now).is_err());
        assert!(keys
            .verify(&token, "access", now + chrono::Duration::seconds(3600))
            .is_err());
        assert!(TokenKeys::new("another-secret-another-secret!!")
            .verify(&token, "access", now)
            .is_err());

        // alg: none with the same claims is refused.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&claims).unwrap())
        );
        assert!(keys.verify(&none, "access", now).is_err());
    }
}
