//! Credentials: the four header forms of API.md §2, and who a credential *claims* to be,
//! found without the database where possible (a signed token names its user; a key hash
//! maps to one key forever, so this instance remembers it).

use super::records::{EmailClaim, KeyHashRecord};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::keys;
use axum::http::{header, HeaderMap};
use base64::Engine;
use chrono::{DateTime, Utc};
use domain::ids::{api_key_names, api_key_well_formed, ApiKeyHash};

/// One credential, as presented.
#[derive(Clone, Debug)]
pub enum Credential {
    ApiKey(String),
    Jwt(String),
    Basic { email: String, password: String },
}

const CREDENTIALS_HELP: &str = "authentication required: send an API key (kf-api-key, X-API-Key or Authorization: Bearer), a bearer access token, or HTTP Basic credentials";

/// Reads the credential from the four header forms of API.md §2.
pub fn credential(headers: &HeaderMap) -> ApiResult<Credential> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(key) = text("kf-api-key").or_else(|| text("x-api-key")) {
        return Ok(Credential::ApiKey(key.to_owned()));
    }
    let Some(authorization) = text(header::AUTHORIZATION.as_str()) else {
        return Err(ApiError::Unauthorized(CREDENTIALS_HELP.into()));
    };
    let (scheme, value) = authorization.split_once(' ').unwrap_or((authorization, ""));
    let value = value.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" if value.starts_with(domain::ids::API_KEY_PREFIX) => {
            Ok(Credential::ApiKey(value.to_owned()))
        }
        "bearer" if !value.is_empty() => Ok(Credential::Jwt(value.to_owned())),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::Unauthorized("malformed Basic credentials".into()))?;
            let (email, password) = decoded
                .split_once(':')
                .ok_or_else(|| ApiError::Unauthorized("malformed Basic credentials".into()))?;
            Ok(Credential::Basic {
                email: email.to_owned(),
                password: password.to_owned(),
            })
        }
        _ => Err(ApiError::Unauthorized(format!(
            "unsupported Authorization scheme; {CREDENTIALS_HELP}"
        ))),
    }
}

/// Who a credential claims to be, found without touching the database where possible.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub company_id: String,
    pub user_id: String,
    pub key: Option<KeyHashRecord>,
    /// Identifies the credential for the speculative-caller memory (never the secret).
    pub fingerprint: Option<String>,
    /// A token's session epoch (checked against the user's by verification).
    pub session_epoch: Option<u64>,
    /// A key's hash as presented: verification compares it with the key record's (a key
    /// that names its records is claimed from its text alone).
    pub key_hash: Option<String>,
    /// A signed token's snapshot of its caller as of the token's issue: the guess a
    /// speculative route runs with on an instance that has not verified this token yet.
    pub snapshot: Option<Box<super::Caller>>,
    /// The key's use goes on its own item, not on the company's day counter item, because
    /// that item already holds as many keys as it keeps (set by admission, see
    /// [`crate::ratelimit::RateLimiter::key_fits`]).
    pub key_use_on_own_item: bool,
}

/// Who `credential` claims to be: the records a key names (or, for a key from before keys
/// named them, its hash's lookup, remembered), a token's signature, or the email claim of
/// a Basic login. Nothing here proves the caller yet; `verify` does.
pub async fn claim(
    state: &AppState,
    credential: &Credential,
    now: DateTime<Utc>,
) -> ApiResult<Claimed> {
    match credential {
        Credential::ApiKey(secret) => {
            if !api_key_well_formed(secret) {
                return Err(ApiError::Unauthorized("invalid API key".into()));
            }
            let hash = ApiKeyHash::of(secret).0;
            let named = api_key_names(secret).map(|names| KeyHashRecord {
                company_id: names.company_id,
                key_id: names.key_id,
                user_id: names.user_id,
            });
            let record = match named.or_else(|| state.caches.key_hashes.get(&hash)) {
                Some(r) => r,
                None => {
                    let r: KeyHashRecord = state
                        .store
                        .get(&keys::key_hash(&hash))
                        .await?
                        .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?;
                    state.caches.key_hashes.insert(hash.clone(), r.clone());
                    r
                }
            };
            Ok(Claimed {
                company_id: record.company_id.clone(),
                user_id: record.user_id.clone(),
                fingerprint: Some(format!("key:{hash}")),
                key: Some(record),
                key_hash: Some(hash),
                snapshot: None,
                session_epoch: None,
                key_use_on_own_item: false,
            })
        }
        Credential::Jwt(token) => {
            let claims = state.tokens.verify(token, "access", now)?;
            Ok(Claimed {
                company_id: claims.cid,
                user_id: claims.sub,
                key: None,
                fingerprint: Some(format!("jwt:{}", claims.jti)),
                key_hash: None,
                snapshot: claims
                    .who
                    .map(|who| Box::new(who.into_caller(super::AuthMethod::Jwt))),
                session_epoch: Some(claims.sep),
                key_use_on_own_item: false,
            })
        }
        Credential::Basic { email, password } => {
            let known = if email.len() > super::MAX_EMAIL_LEN {
                None
            } else {
                state.store.get::<EmailClaim>(&keys::email(email)).await?
            };
            let Some(claim) = known else {
                // As slow as a wrong password, so timing does not tell which emails exist.
                super::password::refuse_unknown(password).await?;
                return Err(ApiError::Unauthorized("invalid email or password".into()));
            };
            Ok(Claimed {
                company_id: claim.company_id,
                user_id: claim.user_id,
                key: None,
                fingerprint: None,
                key_hash: None,
                snapshot: None,
                session_epoch: None,
                key_use_on_own_item: false,
            })
        }
    }
}
