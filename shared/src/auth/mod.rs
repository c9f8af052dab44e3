//! Authentication, permissions and rate limiting, once for every protected route.
//!
//! `authenticate` is a route layer. It reads one of the four credential forms (API.md §2),
//! counts the request against its company's limits and checks the credential *at the same
//! time* (the key's usage update, the user and the company are read while the counters are
//! bumped), so an authenticated request costs about one database round trip before its
//! handler runs. For reads whose routes opt in, the handler also runs concurrently, with the
//! caller this instance verified last time for the same credential; its answer is only used
//! when this request's own verification yields the very same caller, so a revoked key or a
//! changed role still fails on the next request.

pub mod apikeys;
pub mod password;
pub mod permissions;
pub mod records;
pub mod tokens;

use crate::error::{ApiError, ApiResult};
use crate::ids::{api_key_well_formed, ApiKeyHash};
use crate::ratelimit::{RateHeaders, Usage};
use crate::state::AppState;
use crate::store::{db_error, keys, n, s};
use crate::time::rfc3339;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use records::{ApiKeyRecord, Company, EmailClaim, KeyHashRecord, Role, User};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ApiKey,
    Jwt,
    Basic,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompanySummary {
    pub id: String,
    pub name: String,
    pub plan: String,
    #[serde(skip)]
    pub status: String,
    #[serde(skip)]
    pub parent_id: Option<String>,
    #[serde(skip)]
    pub per_second_limit: u64,
    #[serde(skip)]
    pub daily_limit: u64,
    #[serde(skip)]
    pub features: std::collections::BTreeMap<String, bool>,
    #[serde(skip)]
    pub timezone: Option<String>,
}

impl CompanySummary {
    pub fn of(company: &Company) -> Self {
        CompanySummary {
            id: company.id.clone(),
            name: company.name.clone(),
            plan: company.plan.clone(),
            status: company.status.clone(),
            parent_id: company.parent_id.clone(),
            per_second_limit: company.per_second_limit(),
            daily_limit: company.daily_limit(),
            features: company.effective_features(),
            timezone: company.timezone.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeySummary {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<String>,
}

/// The authenticated caller, as handlers see it (an extractor).
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    /// The company the request acts in: the caller's own, or with `client_id=` one of its
    /// client accounts (whose limits it then counts against).
    pub company: CompanySummary,
    /// With `client_id=`: the partner company the user belongs to.
    pub partner: Option<CompanySummary>,
    pub user: User,
    pub permissions: BTreeSet<String>,
    pub api_key: Option<KeySummary>,
    pub method: AuthMethod,
}

impl Caller {
    /// 403 naming the permission when the caller lacks it.
    pub fn require(&self, permission: &str) -> ApiResult<()> {
        if self.permissions.contains(permission) {
            Ok(())
        } else {
            Err(ApiError::missing_permission(permission))
        }
    }

    /// 403 naming the feature when the company has it switched off.
    pub fn require_feature(&self, feature: &str) -> ApiResult<()> {
        if self.company.features.get(feature).copied().unwrap_or(true) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "feature {feature} is not enabled for this company"
            )))
        }
    }

    /// The company the user belongs to (the partner when acting inside a client).
    pub fn home_company_id(&self) -> &str {
        self.partner
            .as_ref()
            .map(|p| p.id.as_str())
            .unwrap_or(&self.company.id)
    }

    pub fn can(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }

    pub fn company_id(&self) -> &str {
        &self.company.id
    }

    pub fn user_id(&self) -> &str {
        &self.user.id
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::internal("route has no authenticate layer"))
    }
}

/// The counts of this request, for `GET /usage` (absent when the handler ran speculatively).
#[derive(Clone, Debug)]
pub struct RequestUsage(pub Usage);

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
        "bearer" if value.starts_with(crate::ids::API_KEY_PREFIX) => {
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
struct Claimed {
    company_id: String,
    user_id: String,
    key: Option<KeyHashRecord>,
    /// Identifies the credential for the speculative-caller memory (never the secret).
    fingerprint: Option<String>,
}

/// What this instance remembers between requests. Only facts that cannot change are
/// trusted (a key hash maps to one key forever); the last verified caller per credential is
/// only a guess that every request checks again.
#[derive(Debug, Default)]
pub struct AuthMemory {
    key_hashes: Mutex<HashMap<String, KeyHashRecord>>,
    last_caller: Mutex<HashMap<String, Caller>>,
}

const MEMORY_LIMIT: usize = 10_000;

impl AuthMemory {
    fn key(&self, hash: &str) -> Option<KeyHashRecord> {
        self.key_hashes.lock().ok()?.get(hash).cloned()
    }
    fn remember_key(&self, hash: &str, record: &KeyHashRecord) {
        if let Ok(mut map) = self.key_hashes.lock() {
            if map.len() >= MEMORY_LIMIT {
                map.clear();
            }
            map.insert(hash.to_owned(), record.clone());
        }
    }
    fn forget_key(&self, hash: &str) {
        if let Ok(mut map) = self.key_hashes.lock() {
            map.remove(hash);
        }
    }
    fn caller(&self, fingerprint: &str) -> Option<Caller> {
        self.last_caller.lock().ok()?.get(fingerprint).cloned()
    }
    fn remember_caller(&self, fingerprint: &str, caller: &Caller) {
        if let Ok(mut map) = self.last_caller.lock() {
            if map.len() >= MEMORY_LIMIT {
                map.clear();
            }
            map.insert(fingerprint.to_owned(), caller.clone());
        }
    }
    fn forget_caller(&self, fingerprint: &str) {
        if let Ok(mut map) = self.last_caller.lock() {
            map.remove(fingerprint);
        }
    }
}

async fn claim(
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
            let record = match state.auth_memory.key(&hash) {
                Some(r) => r,
                None => {
                    let r: KeyHashRecord = state
                        .store
                        .get(&keys::key_hash(&hash))
                        .await?
                        .ok_or_else(|| ApiError::Unauthorized("invalid API key".into()))?;
                    state.auth_memory.remember_key(&hash, &r);
                    r
                }
            };
            Ok(Claimed {
                company_id: record.company_id.clone(),
                user_id: record.user_id.clone(),
                fingerprint: Some(format!("key:{hash}")),
                key: Some(record),
            })
        }
        Credential::Jwt(token) => {
            let claims = state.tokens.verify(token, "access", now)?;
            Ok(Claimed {
                company_id: claims.cid,
                user_id: claims.sub,
                key: None,
                fingerprint: Some(format!("jwt:{}", claims.jti)),
            })
        }
        Credential::Basic { email, .. } => {
            let claim: EmailClaim = state
                .store
                .get(&keys::email(email))
                .await?
                .ok_or_else(|| ApiError::Unauthorized("invalid email or password".into()))?;
            Ok(Claimed {
                company_id: claim.company_id,
                user_id: claim.user_id,
                key: None,
                fingerprint: None,
            })
        }
    }
}

/// Records a use of an API key and answers its record, failing when it is revoked or expired.
async fn use_key(
    state: &AppState,
    key: &KeyHashRecord,
    now: DateTime<Utc>,
) -> ApiResult<ApiKeyRecord> {
    use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
    let now_text = rfc3339(now);
    let result = state
        .store
        .db
        .update_item()
        .table_name(&state.store.table)
        .set_key(Some(keys::api_key(&key.company_id, &key.key_id).to_item()))
        .update_expression("SET last_used_at = :now ADD usage_count :one")
        .condition_expression(
            "attribute_exists(pk) AND attribute_not_exists(revoked_at) AND (attribute_not_exists(expires_at) OR expires_at > :now)",
        )
        .expression_attribute_values(":now", s(&now_text))
        .expression_attribute_values(":one", n(1))
        .return_values(ReturnValue::AllNew)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(out) => crate::store::from_item(out.attributes.unwrap_or_default()),
        Err(e) => match e.as_service_error() {
            Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(failed)) => {
                let old: Option<ApiKeyRecord> = failed.item.clone().and_then(|i| crate::store::from_item(i).ok());
                Err(ApiError::Unauthorized(match old {
                    Some(k) if k.revoked_at.is_some() => "API key revoked".into(),
                    Some(_) => "API key expired".into(),
                    None => "invalid API key".into(),
                }))
            }
            _ => Err(db_error("UpdateItem", e)),
        },
    }
}

/// 429 `too_many_attempts` while the user is locked out.
pub fn check_lockout(user: &User, now: DateTime<Utc>) -> ApiResult<()> {
    if let Some(until) = user
        .locked_until
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    {
        let until = until.with_timezone(&Utc);
        if until > now {
            return Err(ApiError::TooManyAttempts {
                message: "too many failed logins; this user is locked out for 15 minutes".into(),
                retry_after: (until - now).num_seconds().max(1) as u64,
            });
        }
    }
    Ok(())
}

pub const LOCKOUT_FAILURES: i64 = 10;
pub const LOCKOUT_WINDOW_SECS: i64 = 15 * 60;

/// Counts a failed login for `email` (atomic counter per 15-minute window); the 10th failure
/// locks the user out for 15 minutes. Answers the error to send.
pub async fn record_failed_login(
    state: &AppState,
    email: &str,
    user: Option<&User>,
    now: DateTime<Utc>,
) -> ApiError {
    let window = now.timestamp().div_euclid(LOCKOUT_WINDOW_SECS);
    let failures = match state
        .store
        .add_to_counter(
            &keys::login_failures(email, window),
            1,
            now.timestamp() + 2 * LOCKOUT_WINDOW_SECS,
        )
        .await
    {
        Ok(n) => n,
        Err(e) => return e,
    };
    if let (true, Some(user)) = (failures >= LOCKOUT_FAILURES, user) {
        let until = rfc3339(now + Duration::seconds(LOCKOUT_WINDOW_SECS));
        let locked = state
            .store
            .db
            .update_item()
            .table_name(&state.store.table)
            .set_key(Some(keys::user(&user.company_id, &user.id).to_item()))
            .update_expression("SET locked_until = :until")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":until", s(until))
            .send()
            .await;
        if let Err(e) = locked {
            return db_error("UpdateItem", e);
        }
        return ApiError::TooManyAttempts {
            message: "too many failed logins; this user is locked out for 15 minutes".into(),
            retry_after: LOCKOUT_WINDOW_SECS as u64,
        };
    }
    ApiError::Unauthorized("invalid email or password".into())
}

/// Builds the caller from the stored user, company, custom roles and (for keys) key record.
pub fn caller_from(
    company: &Company,
    user: User,
    roles: &[Role],
    key: Option<&ApiKeyRecord>,
    method: AuthMethod,
) -> Caller {
    let mut permissions = permissions::permissions_of(&user.roles);
    for role in roles.iter().filter(|r| user.roles.contains(&r.id)) {
        permissions.extend(role.permissions.iter().cloned());
    }
    if let Some(scopes) = key.and_then(|k| k.scopes.as_ref()) {
        permissions.retain(|p| scopes.contains(p));
    }
    Caller {
        company: CompanySummary::of(company),
        partner: None,
        user,
        permissions,
        api_key: key.map(|k| KeySummary {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.clone(),
            expires_at: k.expires_at.clone(),
        }),
        method,
    }
}

/// The custom roles among `role_ids` (built-ins are in code), read consistently.
pub async fn custom_roles(
    state: &AppState,
    company: &str,
    role_ids: &[String],
) -> ApiResult<Vec<Role>> {
    let reads = role_ids
        .iter()
        .filter(|r| permissions::builtin_role(r).is_none())
        .map(|r| state.store.get::<Role>(keys::role(company, r)));
    Ok(futures::future::try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// Checks the credential against the store: everything that can change is read again. With
/// `client` (`client_id=`), the caller acts inside that client account of its company.
async fn verify(
    state: &AppState,
    credential: &Credential,
    claimed: &Claimed,
    client: Option<&str>,
    now: DateTime<Utc>,
) -> ApiResult<Caller> {
    let store = &state.store;
    let key = async {
        match &claimed.key {
            Some(k) => use_key(state, k, now).await.map(Some),
            None => Ok(None),
        }
    };
    // User, company and (with client_id) client in one consistent BatchGetItem, alongside
    // the key's usage update.
    let mut wanted = vec![
        keys::user(&claimed.company_id, &claimed.user_id),
        keys::company(&claimed.company_id),
    ];
    if let Some(id) = client {
        wanted.push(keys::company(id));
    }
    let (found, key) = tokio::try_join!(store.get_many(&wanted), key)?;
    let mut found = found.into_iter();
    let mut next = || found.next().flatten();
    let user: Option<User> = next().map(crate::store::from_item).transpose()?;
    let company: Option<Company> = next().map(crate::store::from_item).transpose()?;
    let client_company: Option<Company> = next().map(crate::store::from_item).transpose()?;
    let user = user.ok_or_else(|| {
        ApiError::Unauthorized("the user of these credentials no longer exists".into())
    })?;
    let company = company.ok_or_else(|| {
        ApiError::Unauthorized("the company of these credentials no longer exists".into())
    })?;
    let method = match credential {
        Credential::ApiKey(_) => AuthMethod::ApiKey,
        Credential::Jwt(_) => AuthMethod::Jwt,
        Credential::Basic { email, password } => {
            check_lockout(&user, now)?;
            if !password::verify(password, &user.password_hash).await? {
                return Err(record_failed_login(state, email, Some(&user), now).await);
            }
            AuthMethod::Basic
        }
    };
    if company.status == "disabled" {
        return Err(ApiError::Forbidden("client account disabled".into()));
    }
    // Custom roles cost one more read, only for users who have them.
    let roles = custom_roles(state, &company.id, &user.roles).await?;
    let mut caller = caller_from(&company, user, &roles, key.as_ref(), method);
    if let Some(client_id) = client {
        caller.require("client.access")?;
        let client_company = client_company
            .filter(|c| c.parent_id.as_deref() == Some(company.id.as_str()))
            .ok_or_else(|| ApiError::not_found("client", client_id))?;
        if client_company.status == "disabled" {
            return Err(ApiError::Forbidden("client account disabled".into()));
        }
        caller.partner = Some(std::mem::replace(
            &mut caller.company,
            CompanySummary::of(&client_company),
        ));
    }
    Ok(caller)
}

/// One protected route: the permission it needs (checked here, for every function, before
/// the handler runs) and whether its handler may run concurrently with verification (safe
/// for reads whose answer depends only on the caller and stored data).
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    pub permission: Option<&'static str>,
    pub speculate: bool,
}

/// A read any authenticated caller may make (what it shows is scoped to the caller).
pub const fn read(path: &'static str) -> Rule {
    Rule {
        method: "GET",
        path,
        permission: None,
        speculate: true,
    }
}

/// A route that needs `permission` (or none), never run speculatively.
pub const fn write(
    method: &'static str,
    path: &'static str,
    permission: Option<&'static str>,
) -> Rule {
    Rule {
        method,
        path,
        permission,
        speculate: false,
    }
}

/// The state of the `authenticate` route layer: the app and the function's route table.
#[derive(Clone, Debug)]
pub struct Guard {
    pub state: AppState,
    pub rules: &'static [Rule],
}

impl Guard {
    pub fn new(state: AppState, rules: &'static [Rule]) -> Self {
        Guard { state, rules }
    }
}

/// The route layer: `route_layer(from_fn_with_state(Guard::new(state, RULES), authenticate))`.
pub async fn authenticate(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let state = guard.state;
    let matched = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let method = req.method().clone();
    let Some(rule) = guard.rules.iter().find(|r| {
        r.path == matched
            && (r.method == method.as_str() || (r.method == "GET" && method == Method::HEAD))
    }) else {
        let allowed: Vec<&str> = guard
            .rules
            .iter()
            .filter(|r| r.path == matched)
            .flat_map(|r| {
                if r.method == "GET" {
                    vec!["GET", "HEAD"]
                } else {
                    vec![r.method]
                }
            })
            .collect();
        if !allowed.is_empty() {
            // A method the table does not list for this path is not allowed, even if a
            // handler were mounted for it: only the table opens routes.
            return ApiError::MethodNotAllowed {
                method: method.to_string(),
                allow: allowed.join(","),
            }
            .into_response();
        }
        return ApiError::internal(format!(
            "route {method} {matched} is missing from its function's permission table"
        ))
        .into_response();
    };
    let now = state.clock.now();
    let credential = match credential(req.headers()) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let claimed = match claim(&state, &credential, now).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let client = crate::extract::Params::from_query(req.uri().query(), "")
        .get("client_id")
        .map(str::to_owned);
    if let Some(id) = client.as_deref().filter(|id| !crate::ids::is_id(id)) {
        return ApiError::not_found("client", id).into_response();
    }
    // Requests acting inside a client account count against the client's limits.
    let company = client.clone().unwrap_or_else(|| claimed.company_id.clone());
    // The remembered caller depends on the client acted in, too.
    let mut claimed = claimed;
    if let (Some(fingerprint), Some(client)) = (claimed.fingerprint.as_mut(), client.as_deref()) {
        fingerprint.push('@');
        fingerprint.push_str(client);
    }
    if let Some((error, headers)) = state.limiter.refused_from_memory(&company, now) {
        return with_rate_headers(error.into_response(), &headers);
    }

    let speculative = rule
        .speculate
        .then(|| {
            claimed
                .fingerprint
                .as_deref()
                .and_then(|f| state.auth_memory.caller(f))
        })
        .flatten();

    // Counting goes alongside verification when the credential itself proves the company
    // (a key's hash or a signed token). A password, or a client account not yet shown to be
    // the caller's, is checked first: nobody may spend a company's allowance by naming it.
    let count_after = matches!(credential, Credential::Basic { .. }) || client.is_some();
    let checks = async {
        if count_after {
            let verified = verify(&state, &credential, &claimed, client.as_deref(), now).await;
            let counted = match &verified {
                Ok(_) => state.limiter.count(&state.store, &company, now).await,
                Err(_) => Err(ApiError::internal(
                    "not counted: the credential did not hold",
                )),
            };
            (verified, counted)
        } else {
            tokio::join!(
                verify(&state, &credential, &claimed, client.as_deref(), now),
                state.limiter.count(&state.store, &company, now)
            )
        }
    };
    let (verified, counted, pending) = match speculative {
        Some(guess) => {
            let (parts, body) = req.into_parts();
            let spare = Request::from_parts(parts.clone(), Body::empty());
            let mut first = Request::from_parts(parts, body);
            first.extensions_mut().insert(guess.clone());
            let run = async {
                match rule.permission.map(|p| guess.require(p)) {
                    Some(Err(e)) => e.into_response(),
                    _ => next.clone().run(first).await,
                }
            };
            let ((verified, counted), response) = tokio::join!(checks, run);
            let same = verified.as_ref().is_ok_and(|v| *v == guess);
            (
                verified,
                counted,
                Pending::Speculated {
                    spare,
                    response: same.then_some(response),
                },
            )
        }
        None => {
            let (verified, counted) = checks.await;
            (verified, counted, Pending::Request(req))
        }
    };

    let caller = match verified {
        Ok(caller) => caller,
        Err(error) => {
            if let Ok(counted) = &counted {
                state
                    .limiter
                    .refund_unauthenticated(&state.store, &company, counted)
                    .await;
            }
            if let Some(fingerprint) = &claimed.fingerprint {
                state.auth_memory.forget_caller(fingerprint);
                let hash = fingerprint
                    .strip_prefix("key:")
                    .map(|f| f.split('@').next().unwrap_or(f));
                if let (Some(hash), ApiError::Unauthorized(_)) = (hash, &error) {
                    state.auth_memory.forget_key(hash);
                }
            }
            return error.into_response();
        }
    };
    let counted = match counted {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let (per_second, daily) = (caller.company.per_second_limit, caller.company.daily_limit);
    let headers = match state
        .limiter
        .settle(&state.store, &company, &counted, per_second, daily, now)
        .await
    {
        Ok(h) => h,
        Err((error, headers)) => return with_rate_headers(error.into_response(), &headers),
    };
    if let Some(fingerprint) = &claimed.fingerprint {
        state.auth_memory.remember_caller(fingerprint, &caller);
    }
    if let Some(permission) = rule.permission {
        if let Err(error) = caller.require(permission) {
            return with_rate_headers(error.into_response(), &headers);
        }
    }
    let response = match pending {
        Pending::Speculated {
            response: Some(response),
            ..
        } => response,
        Pending::Speculated {
            spare: mut req,
            response: None,
        }
        | Pending::Request(mut req) => {
            req.extensions_mut().insert(caller);
            req.extensions_mut()
                .insert(RequestUsage(Usage::new(&counted, per_second, daily)));
            next.run(req).await
        }
    };
    with_rate_headers(response, &headers)
}

/// The request still to answer after verification.
enum Pending {
    Request(Request),
    /// The handler already ran with the remembered caller; `response` is kept only when this
    /// request verified as that same caller. `spare` re-runs it otherwise.
    Speculated {
        spare: Request,
        response: Option<Response>,
    },
}

/// Counts an unauthenticated request (a published dashboard) against the owner company's
/// limits, exactly as an authenticated one; a refusal comes back as the response to send.
pub async fn admit_for(state: &AppState, company: &Company) -> Result<RateHeaders, Response> {
    let now = state.clock.now();
    if let Some((error, headers)) = state.limiter.refused_from_memory(&company.id, now) {
        return Err(with_rate_headers(error.into_response(), &headers));
    }
    let counted = state
        .limiter
        .count(&state.store, &company.id, now)
        .await
        .map_err(IntoResponse::into_response)?;
    state
        .limiter
        .settle(
            &state.store,
            &company.id,
            &counted,
            company.per_second_limit(),
            company.daily_limit(),
            now,
        )
        .await
        .map_err(|(error, headers)| with_rate_headers(error.into_response(), &headers))
}

/// Adds the `X-RateLimit-*` headers to a response.
pub fn with_rate_headers(mut response: Response, headers: &RateHeaders) -> Response {
    headers.apply(response.headers_mut());
    response
}

/// Builds a function's router so that every protected route is in its permission table: a
/// route without a rule panics when the router is built, so every test fails.
pub struct FunctionRoutes {
    state: AppState,
    rules: &'static [Rule],
    public_routes: &'static [(&'static str, &'static str)],
    public: axum::Router<AppState>,
    protected: axum::Router<AppState>,
}

impl FunctionRoutes {
    pub fn new(state: AppState, rules: &'static [Rule]) -> Self {
        FunctionRoutes {
            state,
            rules,
            public_routes: &[],
            public: axum::Router::new(),
            protected: axum::Router::new(),
        }
    }

    /// The function's routes that need no credentials, as (method, path): every `public`
    /// route must be listed, so the list (which the OpenAPI drift test reads) stays true.
    pub fn with_public(mut self, routes: &'static [(&'static str, &'static str)]) -> Self {
        self.public_routes = routes;
        self
    }

    /// A route that needs no credentials.
    pub fn public(mut self, path: &str, route: axum::routing::MethodRouter<AppState>) -> Self {
        assert!(
            self.public_routes.iter().any(|(_, p)| *p == path),
            "public route {path} is not in its function's PUBLIC list"
        );
        self.public = self.public.route(path, route);
        self
    }

    /// A route behind `authenticate`; its methods must be in the permission table.
    pub fn protected(mut self, path: &str, route: axum::routing::MethodRouter<AppState>) -> Self {
        assert!(
            self.rules.iter().any(|r| r.path == path),
            "route {path} has no entry in its function's permission table"
        );
        self.protected = self.protected.route(path, route);
        self
    }

    pub fn build(self) -> axum::Router {
        let guard = Guard::new(self.state.clone(), self.rules);
        let protected = if self.rules.is_empty() {
            self.protected
        } else {
            self.protected
                .route_layer(axum::middleware::from_fn_with_state(guard, authenticate))
        };
        self.public.merge(protected).with_state(self.state)
    }
}
