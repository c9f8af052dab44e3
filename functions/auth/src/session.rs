//! Login, refresh, logout, verify, profile and usage.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use platform::auth::records::{Company, EmailClaim, FamilyRecord, RefreshRecord, User, UserView};
use platform::auth::tokens::{Claims, TokenKeys, ACCESS_TTL_SECS};
use platform::auth::{check_lockout, password, record_failed_login, Caller, RequestUsage};
use platform::envelope;
use platform::extract::{JsonBody, NoParams, Params};
use platform::store::sessions::NotConsumed;
use platform::store::{keys, WriteError};
use platform::time::rfc3339;
use platform::{ApiError, ApiResult, AppState};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct CompanyView {
    id: String,
    name: String,
    plan: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    refresh: String,
}

#[derive(Serialize)]
struct TokenPair {
    access: String,
    refresh: String,
    token_type: &'static str,
    expires_in: i64,
}

/// Signs a new access + refresh pair and the refresh token's record (written by the caller).
fn token_pair(
    state: &AppState,
    user: &User,
    company: &str,
    family: &str,
) -> ApiResult<(TokenPair, RefreshRecord)> {
    let now = state.clock.now();
    let mut access = TokenKeys::new_claims(&user.id, company, "access", None, now);
    let mut refresh =
        TokenKeys::new_claims(&user.id, company, "refresh", Some(family.to_owned()), now);
    // Both end when the user's session epoch moves on (a password change, a lockout).
    access.sep = user.session_epoch;
    refresh.sep = user.session_epoch;
    let record = refresh_record(&refresh, family);
    Ok((
        TokenPair {
            access: state.tokens.issue(&access)?,
            refresh: state.tokens.issue(&refresh)?,
            token_type: "Bearer",
            expires_in: ACCESS_TTL_SECS,
        },
        record,
    ))
}

fn refresh_record(claims: &Claims, family: &str) -> RefreshRecord {
    RefreshRecord {
        jti: claims.jti.clone(),
        family: family.to_owned(),
        user_id: claims.sub.clone(),
        company_id: claims.cid.clone(),
        used: false,
        revoked: false,
        expires_at: chrono::DateTime::from_timestamp(claims.exp, 0)
            .map(rfc3339)
            .unwrap_or_default(),
        ttl: claims.exp + 86_400,
    }
}

pub async fn login(
    State(state): State<AppState>,
    _: NoParams,
    JsonBody(body): JsonBody<LoginBody>,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let email = body.email.trim().to_lowercase();
    // No address is longer (and a database key could not hold a much longer one).
    if email.len() > platform::auth::MAX_EMAIL_LEN {
        password::refuse_unknown(&body.password).await?;
        return Err(ApiError::Unauthorized("invalid email or password".into()));
    }
    let claim: Option<EmailClaim> = state.store.get(&keys::email(&email)).await?;
    let found = match claim {
        Some(c) => {
            let (user, company) = tokio::try_join!(
                state
                    .store
                    .get::<User>(keys::user(&c.company_id, &c.user_id)),
                state.store.get::<Company>(keys::company(&c.company_id)),
            )?;
            user.zip(company)
        }
        None => None,
    };
    let Some((user, company)) = found else {
        password::refuse_unknown(&body.password).await?;
        return Err(record_failed_login(&state, &email, None, now).await);
    };
    check_lockout(user.locked_until.as_deref(), now)?;
    if !password::verify(&body.password, &user.password_hash).await? {
        return Err(record_failed_login(&state, &email, Some(&user), now).await);
    }
    if company.status == domain::CompanyStatus::Disabled {
        return Err(ApiError::Forbidden("client account disabled".into()));
    }
    let family = domain::ids::new_id();
    let (pair, record) = token_pair(&state, &user, &company.id, &family)?;
    let family_record = FamilyRecord {
        family: family.clone(),
        user_id: user.id.clone(),
        revoked: false,
        ttl: record.ttl,
    };
    state
        .store
        .refresh_tokens()
        .start_family(&record, &family_record)
        .await?;
    let last_login = rfc3339(now);
    state.store.users().record_login(&user, &last_login).await?;
    let mut user = user;
    user.date_last_login = Some(last_login);
    Ok(envelope::ok(serde_json::json!({
        "access": pair.access,
        "refresh": pair.refresh,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
        "user": UserView::of(&user, now),
        "company": CompanyView { id: company.id, name: company.name, plan: company.plan },
    })))
}

/// Marks a refresh token used; on a second use, revokes its whole family.
async fn consume(state: &AppState, claims: &Claims) -> ApiResult<()> {
    let tokens = state.store.refresh_tokens();
    match tokens.consume(&claims.jti).await {
        Ok(()) => Ok(()),
        Err(WriteError::Refused(NotConsumed::Reused { family })) => {
            tokens.revoke_family(&family).await?;
            Err(ApiError::Unauthorized(
                "refresh token already used; every token of this login is now revoked".into(),
            ))
        }
        Err(WriteError::Refused(NotConsumed::Revoked)) => {
            Err(ApiError::Unauthorized("refresh token revoked".into()))
        }
        Err(WriteError::Refused(NotConsumed::Unknown)) => {
            Err(ApiError::Unauthorized("invalid refresh token".into()))
        }
        Err(WriteError::Failed(e)) => Err(e),
    }
}

pub async fn refresh(
    State(state): State<AppState>,
    _: NoParams,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let claims = state.tokens.verify(&body.refresh, "refresh", now)?;
    let family = claims
        .fam
        .clone()
        .ok_or_else(|| ApiError::Unauthorized("invalid refresh token".into()))?;
    let (consumed, family_record, user) = tokio::join!(
        consume(&state, &claims),
        state.store.get::<FamilyRecord>(keys::family(&family)),
        state
            .store
            .get::<User>(keys::user(&claims.cid, &claims.sub)),
    );
    consumed?;
    if family_record?.is_none_or(|f| f.revoked) {
        return Err(ApiError::Unauthorized("refresh token revoked".into()));
    }
    let user = user?
        .ok_or_else(|| ApiError::Unauthorized("the user of this token no longer exists".into()))?;
    if claims.sep != user.session_epoch {
        // The password changed (or the user was locked out) since this login: it ends.
        state.store.refresh_tokens().revoke_family(&family).await?;
        return Err(ApiError::Unauthorized(
            "this session has ended (the password changed or the user was locked out); log in again".into(),
        ));
    }
    let (pair, record) = token_pair(&state, &user, &claims.cid, &family)?;
    state.store.refresh_tokens().add(&record).await?;
    Ok(envelope::ok(pair))
}

pub async fn logout(
    State(state): State<AppState>,
    _: NoParams,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Response> {
    let claims = state
        .tokens
        .verify(&body.refresh, "refresh", state.clock.now())?;
    let family = claims
        .fam
        .clone()
        .ok_or_else(|| ApiError::Unauthorized("invalid refresh token".into()))?;
    let tokens = state.store.refresh_tokens();
    tokens.revoke_family(&family).await?;
    if !tokens.revoke(&claims.jti).await? {
        return Err(ApiError::Unauthorized("invalid refresh token".into()));
    }
    Ok(envelope::deleted())
}

pub async fn verify(caller: Caller, params: Params) -> ApiResult<Response> {
    params.only(&[])?;
    Ok(envelope::ok(serde_json::json!({
        "valid": true,
        "method": caller.method,
        "api_key": caller.api_key,
        "company": caller.company,
        "user": {"id": caller.user.id, "email": caller.user.email},
    })))
}

pub async fn profile(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult<Response> {
    params.only(&["full"])?;
    let mut view = serde_json::to_value(UserView::of_caller(&caller.user, state.clock.now()))?;
    if params.flag("full")? {
        view["permissions"] = serde_json::to_value(&caller.permissions)?;
        view["company"] = serde_json::to_value(&caller.company)?;
    }
    Ok(envelope::ok(view))
}

pub async fn usage(
    _: NoParams,
    Extension(RequestUsage(usage)): Extension<RequestUsage>,
) -> ApiResult<Response> {
    Ok(envelope::ok(usage))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    token: String,
    password: String,
}

/// `POST /auth/reset-password {token, password}`: spends a one-time token from
/// `POST /users/{id}/reset-password` and sets the password (and ends a lockout).
pub async fn reset_password(
    State(state): State<AppState>,
    _: NoParams,
    JsonBody(body): JsonBody<ResetBody>,
) -> ApiResult<Response> {
    use platform::auth::records::ResetRecord;
    let now = rfc3339(state.clock.now());
    let invalid = || ApiError::Unauthorized("invalid or expired reset token".into());
    let key = keys::reset_token(&domain::ids::ApiKeyHash::of(&body.token).0);
    let record: ResetRecord = state.store.get(&key).await?.ok_or_else(invalid)?;
    if record.used || record.expires_at <= now {
        return Err(invalid());
    }
    let user: User = state
        .store
        .get(keys::user(&record.company_id, &record.user_id))
        .await?
        .ok_or_else(invalid)?;
    password::check_policy(&body.password, &user.email)?;
    let hash = password::hash(&body.password).await?;
    state
        .store
        .users()
        .reset_password(&key, &user, &hash, &now)
        .await
        .map_err(|e| e.into_api(|()| invalid()))?;
    Ok(envelope::ok(
        serde_json::json!({"password_reset": true, "user_id": user.id}),
    ))
}
