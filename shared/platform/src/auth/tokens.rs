//! JWT access and refresh tokens, HS256 pinned, expiry checked against the injected clock.

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
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    pub fn new(secret: &str) -> Self {
        // Only HS256 verifies; `alg: none` or any other algorithm is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false; // checked against the injected clock below
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn issue(&self, claims: &Claims) -> Result<String, ApiError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("signing token: {e}")))
    }

    /// Verifies signature, algorithm, type and expiry.
    pub fn verify(&self, token: &str, typ: &str, now: DateTime<Utc>) -> Result<Claims, ApiError> {
        let what = if typ == "access" {
            "access token"
        } else {
            "refresh token"
        };
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| ApiError::Unauthorized(format!("invalid {what}")))?;
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

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
