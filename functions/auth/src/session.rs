//! Login, refresh, logout, verify, profile and usage.

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use platform::auth::records::{Company, EmailClaim, FamilyRecord, RefreshRecord, User, UserView};
use platform::auth::tokens::{Claims, TokenKeys, ACCESS_TTL_SECS};
use platform::auth::{
    check_lockout, password, record_failed_login, AuthMethod, Caller, CallerSnapshot, RequestUsage,
};
use platform::cache::KnownLogin;
use platform::envelope;
use platform::extract::{Full, JsonBody, NoParams, Query};
use platform::store::sessions::NotConsumed;
use platform::store::OrApiError;
use platform::store::WriteError;
use platform::{ApiError, ApiResult, AppState};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct CompanyView {
    id: String,
    name: String,
    plan: platform::auth::records::Plan,
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

/// Signs a new access + refresh pair of the user (in its session epoch `sep`) and the
/// refresh token's record (written by the caller).
fn token_pair(
    state: &AppState,
    user: &str,
    sep: u64,
    company: &str,
    family: &str,
    who: Option<CallerSnapshot>,
) -> ApiResult<(TokenPair, RefreshRecord)> {
    let now = state.clock.now();
    let mut access = TokenKeys::new_claims(user, company, "access", None, now);
    let mut refresh = TokenKeys::new_claims(user, company, "refresh", Some(family.to_owned()), now);
    // Both end when the user's session epoch moves on (a password change, a lockout).
    access.sep = sep;
    refresh.sep = sep;
    access.who.clone_from(&who);
    refresh.who = who;
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
        expires_at: chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
        ttl: claims.exp + 86_400,
    }
}

/// `POST /auth/login`: checks the address and password, the user's lockout and the company,
/// and starts a session: a token pair, with the user and company.
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
    let (found, checked) = find_login(&state, &email, &body.password).await?;
    let Some((user, company)) = found else {
        password::refuse_unknown(&body.password).await?;
        return Err(record_failed_login(&state, &email, None, now).await);
    };
    check_lockout(user.locked_until, now)?;
    check_password(&state, &email, &body.password, &user, checked, now).await?;
    if company.status == domain::CompanyStatus::Disabled {
        return Err(ApiError::Forbidden("client account disabled".into()));
    }
    remember_claim(&state, &email, &company.id, &user.id, &user.password_hash);
    start_session(&state, user, company, now).await
}

/// Where a login's address leads: the user and company (none when the address or either is
/// gone), and whether the password matched when it was checked alongside the read (`None`:
/// not checked yet).
type Found = (Option<(User, Company)>, Option<bool>);

/// Reads where the address leads: its claim, then the user and company it names.
async fn find_login(state: &AppState, email: &str, password: &str) -> ApiResult<Found> {
    match remembered_claim(state, email) {
        Some(known) => find_remembered(state, email, password, known).await,
        None => match state.store.users().claim(email).await? {
            Some(c) => Ok((read_user(state, &c).await?, None)),
            None => Ok((None, None)),
        },
    }
}

/// An address this instance signed in before: its claim is read together with the user
/// and company it led to, and the password is checked against the hash it had then, all
/// at once. They count only when the claim still leads there and the hash is unchanged;
/// otherwise the password is checked again against the stored hash.
async fn find_remembered(
    state: &AppState,
    email: &str,
    password: &str,
    known: KnownLogin,
) -> ApiResult<Found> {
    let ((claim, user, company), matched) = tokio::try_join!(
        async {
            tokio::try_join!(
                state.store.users().claim(email),
                state.store.users().get(&known.company_id, &known.user_id),
                state.store.companies().get(&known.company_id),
            )
        }
        .api(),
        password::verify(password, &known.password_hash),
    )?;
    match claim {
        Some(c) if c.company_id == known.company_id && c.user_id == known.user_id => {
            let same_hash = user
                .as_ref()
                .is_some_and(|u| u.password_hash == known.password_hash);
            Ok((user.zip(company), same_hash.then_some(matched)))
        }
        other => {
            forget_claim(state, email);
            match other {
                Some(c) => Ok((read_user(state, &c).await?, None)),
                None => Ok((None, None)),
            }
        }
    }
}

/// The password matches the user's (checked now unless it was alongside the read); a
/// wrong one is recorded as a failed login (401).
async fn check_password(
    state: &AppState,
    email: &str,
    password: &str,
    user: &User,
    checked: Option<bool>,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<()> {
    let matched = match checked {
        Some(matched) => matched,
        None => password::verify(password, &user.password_hash).await?,
    };
    if !matched {
        return Err(record_failed_login(state, email, Some(user), now).await);
    }
    Ok(())
}

/// Starts the user's session: a new token family with its first refresh token, and the
/// login time; answers the tokens with the user and company.
async fn start_session(
    state: &AppState,
    user: User,
    company: Company,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<Response> {
    let family = domain::ids::new_id();
    let who = snapshot_after_login(&user, &company);
    let (pair, record) = token_pair(
        state,
        &user.id,
        user.session_epoch,
        &company.id,
        &family,
        who,
    )?;
    let family_record = FamilyRecord {
        family: family.clone(),
        user_id: user.id.clone(),
        revoked: false,
        ttl: record.ttl,
    };
    // The session and the login time are independent writes: together, one round trip.
    let (tokens, users) = (state.store.refresh_tokens(), state.store.users());
    // The signed-in user is the author of the login's writes (the audit log's `login`).
    let actor = platform::audit::user_actor(&user.id, &user.email, &user.company_id);
    platform::audit::acting(actor, async {
        tokio::try_join!(
            tokens.start_family(&record, &family_record),
            users.record_login(&user, now),
        )
    })
    .await?;
    let mut user = user;
    user.date_last_login = Some(now);
    Ok(envelope::ok(serde_json::json!({
        "access": pair.access,
        "refresh": pair.refresh,
        "token_type": pair.token_type,
        "expires_in": pair.expires_in,
        "user": UserView::of(&user, now),
        "company": CompanyView { id: company.id, name: company.name, plan: company.plan },
    })))
}

/// The caller the user will verify as after this login (any lockout lifted), which the tokens carry as a new instance's guess; none for a user with a custom
/// role (the role would cost a read here: such a user's first request on an instance
/// verifies before it reads).
fn snapshot_after_login(user: &User, company: &Company) -> Option<CallerSnapshot> {
    if user
        .roles
        .iter()
        .any(|r| platform::auth::permissions::builtin_role(r).is_none())
    {
        return None;
    }
    let mut user = user.clone();
    user.locked_until = None;
    let caller = platform::auth::caller_from(company, user, &[], None, AuthMethod::Jwt);
    CallerSnapshot::of(&caller)
}

/// The user and company an email claim leads to (none when either is gone).
async fn read_user(state: &AppState, claim: &EmailClaim) -> ApiResult<Option<(User, Company)>> {
    let (user, company) = tokio::try_join!(
        state.store.users().get(&claim.company_id, &claim.user_id),
        state.store.companies().get(&claim.company_id),
    )?;
    Ok(user.zip(company))
}

/// Where an address this instance signed in led (company, user) and the password hash the
/// user had then (`Caches::logins`): only a guess of what to read and check alongside the
/// claim; the claim and user read with it decide.
fn remembered_claim(state: &AppState, email: &str) -> Option<KnownLogin> {
    state.caches.logins.get(email)
}

fn remember_claim(state: &AppState, email: &str, company: &str, user: &str, password_hash: &str) {
    let known = KnownLogin {
        company_id: company.to_owned(),
        user_id: user.to_owned(),
        password_hash: password_hash.to_owned(),
    };
    state.caches.logins.insert(email.to_owned(), known);
}

fn forget_claim(state: &AppState, email: &str) {
    state.caches.logins.remove(email);
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
        Err(WriteError::Failed(e)) => Err(e.into()),
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
    // The new pair is signed for the token's own session epoch, and its record written
    // while the old token is consumed and the family and user are read (one round trip):
    // the new tokens go out only when everything holds, and a record whose tokens never
    // went out is of no use to anyone (it is marked revoked all the same).
    let (pair, record) = token_pair(
        &state,
        &claims.sub,
        claims.sep,
        &claims.cid,
        &family,
        claims.who.clone(),
    )?;
    let tokens = state.store.refresh_tokens();
    let (consumed, family_record, user, added) = tokio::join!(
        consume(&state, &claims),
        state.store.refresh_tokens().family(&family).api(),
        state.store.users().get(&claims.cid, &claims.sub).api(),
        tokens.add(&record),
    );
    let checked = check_refresh(&state, &claims, &family, consumed, family_record, user).await;
    if checked.is_err() && added.is_ok() {
        if let Err(e) = tokens.revoke(&record.jti).await {
            tracing::warn!(error = %e, "could not revoke an unused refresh token record");
        }
    }
    checked?;
    added?;
    Ok(envelope::ok(pair))
}

/// What a refresh needs besides its signature: the token unused, its family not revoked, its
/// user still there in the same session epoch.
async fn check_refresh(
    state: &AppState,
    claims: &Claims,
    family: &str,
    consumed: ApiResult<()>,
    family_record: ApiResult<Option<FamilyRecord>>,
    user: ApiResult<Option<User>>,
) -> ApiResult<()> {
    consumed?;
    if family_record?.is_none_or(|f| f.revoked) {
        return Err(ApiError::Unauthorized("refresh token revoked".into()));
    }
    let user = user?
        .ok_or_else(|| ApiError::Unauthorized("the user of this token no longer exists".into()))?;
    if claims.sep != user.session_epoch {
        // The password changed (or the user was locked out) since this login: it ends.
        state.store.refresh_tokens().revoke_family(family).await?;
        return Err(ApiError::Unauthorized(
            "this session has ended (the password changed or the user was locked out); log in again".into(),
        ));
    }
    Ok(())
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

pub async fn verify(caller: Caller, _: NoParams) -> ApiResult<Response> {
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
    Query(Full { full }): Query<Full>,
) -> ApiResult<Response> {
    // The user as stored (read alongside admission: this is a speculative read), for what
    // the caller does not carry: the time of the latest login, which any login moves.
    let user = state
        .store
        .users()
        .get(&caller.user.company_id, &caller.user.id)
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized("the user of these credentials no longer exists".into())
        })?;
    Ok(envelope::ok(Profile {
        user: UserView::of(&user, state.clock.now()),
        permissions: full.then_some(&caller.permissions),
        company: full.then_some(&caller.company),
    }))
}

/// `GET /profile`: the caller's user, and with `full=true` their permissions and company.
#[derive(Serialize)]
struct Profile<'a> {
    #[serde(flatten)]
    user: UserView,
    #[serde(skip_serializing_if = "Option::is_none")]
    permissions: Option<&'a std::collections::BTreeSet<platform::auth::records::Permission>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    company: Option<&'a platform::auth::CompanySummary>,
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
    let now = state.clock.now();
    let invalid = || ApiError::Unauthorized("invalid or expired reset token".into());
    let token_hash = domain::ids::ApiKeyHash::of(&body.token).0;
    let record: ResetRecord = state
        .store
        .reset_tokens()
        .get(&token_hash)
        .await?
        .ok_or_else(invalid)?;
    if record.used || record.expires_at <= domain::time::seconds(now) {
        return Err(invalid());
    }
    let user: User = state
        .store
        .users()
        .get(&record.company_id, &record.user_id)
        .await?
        .ok_or_else(invalid)?;
    password::check_policy(&body.password, &user.email)?;
    let hash = password::hash(&body.password).await?;
    // The holder of the user's reset token acts as the user (the audit log's author).
    let actor = platform::audit::user_actor(&user.id, &user.email, &user.company_id);
    platform::audit::acting(
        actor,
        state
            .store
            .users()
            .reset_password(&token_hash, &user, &hash, now),
    )
    .await
    .map_err(|e| e.into_api(|()| invalid()))?;
    Ok(envelope::ok(
        serde_json::json!({"password_reset": true, "user_id": user.id}),
    ))
}
