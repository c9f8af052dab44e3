//! API keys: list, create (the secret shown once), show, revoke, rotate, and Klipfolio's
//! `POST /users/{id}/api-key`.

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use platform::auth::apikeys::{self, KeySpec, EXPIRY_CHOICES};
use platform::auth::permissions::Permission;
use platform::auth::records::ApiKeyRecord;
use platform::auth::{Caller, CallerUser};
use platform::envelope;
use platform::extract::{JsonBody, NoParams, OptionalJsonBody};
use platform::paging::Listing;
use platform::store::counters::KeyUses;
use platform::store::OrApiError;
use platform::{ApiError, ApiResult, AppState, Problems};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    name: Option<String>,
    description: Option<String>,
    /// 30, 90, 365 or null (never).
    #[serde(default)]
    expires_in_days: Option<u32>,
    scopes: Option<Vec<String>>,
}

/// A key as the API shows it: never the secret (only at creation) nor the hash.
#[derive(Serialize)]
struct KeyView {
    id: String,
    name: String,
    description: Option<String>,
    prefix: String,
    scopes: Option<Vec<Permission>>,
    expires_in_days: Option<u32>,
    #[serde(with = "domain::time::utc::option")]
    expires_at: Option<DateTime<Utc>>,
    user_id: String,
    created_by: String,
    #[serde(with = "domain::time::utc")]
    date_created: DateTime<Utc>,
    #[serde(with = "domain::time::utc")]
    last_updated: DateTime<Utc>,
    #[serde(with = "domain::time::utc::option")]
    last_used_at: Option<DateTime<Utc>>,
    usage_count: u64,
    #[serde(with = "domain::time::utc::option")]
    revoked_at: Option<DateTime<Utc>>,
    /// active | revoked | expired
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

fn key_status(record: &ApiKeyRecord, now: DateTime<Utc>) -> &'static str {
    if record.revoked_at.is_some() {
        "revoked"
    } else if record
        .expires_at
        .is_some_and(|e| e <= domain::time::seconds(now))
    {
        "expired"
    } else {
        "active"
    }
}

/// A key as shown: `uses` are the uses its company's rate counter items still hold (those
/// not yet folded into the key's own `usage_count` and `last_used_at`).
fn view(
    record: ApiKeyRecord,
    secret: Option<String>,
    now: DateTime<Utc>,
    uses: KeyUses,
) -> KeyView {
    let status = key_status(&record, now);
    KeyView {
        id: record.id,
        name: record.name,
        description: record.description,
        prefix: record.prefix,
        scopes: record.scopes,
        expires_in_days: record.expires_in_days,
        expires_at: record.expires_at,
        user_id: record.user_id,
        created_by: record.created_by,
        date_created: record.date_created,
        last_updated: record.last_updated,
        last_used_at: record.last_used_at.max(uses.last),
        usage_count: record.usage_count + uses.count,
        revoked_at: record.revoked_at,
        status,
        key: secret,
    }
}

/// The user whose keys a request concerns: the caller, or (with `user.manage`) another user
/// of the same company. Unknown and foreign users are 404.
async fn target_user(state: &AppState, caller: &Caller, id: &str) -> ApiResult<CallerUser> {
    if id == "self" || id == caller.user_id() {
        return Ok(caller.user.clone());
    }
    caller.require("user.manage")?;
    state
        .store
        .users()
        .get(caller.company_id(), id)
        .await?
        .map(CallerUser::of)
        .ok_or_else(|| ApiError::not_found("user", id))
}

/// A scoped key may only revoke or rotate keys whose permissions are within its own scopes;
/// otherwise it could trade itself for a stronger key.
fn check_not_stronger(caller: &Caller, target: &ApiKeyRecord) -> ApiResult<()> {
    let Some(mine) = caller.api_key.as_ref().and_then(|k| k.scopes.as_ref()) else {
        return Ok(());
    };
    let within = target
        .scopes
        .as_ref()
        .is_some_and(|theirs| theirs.iter().all(|s| mine.contains(s)));
    if within {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "a key scoped to [{}] cannot manage key '{}', which can do more",
            mine.iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            target.id
        )))
    }
}

/// A key of the caller's company the caller may see: their own, or any with `user.manage`.
async fn visible_key(state: &AppState, caller: &Caller, id: &str) -> ApiResult<ApiKeyRecord> {
    let record = if domain::ids::is_id(id) {
        state.store.api_keys().get(caller.company_id(), id).await?
    } else {
        None
    };
    match record {
        Some(r) if r.user_id == caller.user_id() || caller.can("user.manage") => Ok(r),
        _ => Err(ApiError::not_found("api key", id)),
    }
}

/// The key list's filters: whose keys (`self` when absent) and which status.
#[derive(Deserialize, Debug)]
pub struct KeyFilters {
    user_id: Option<String>,
    status: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<KeyFilters>,
) -> ApiResult<Response> {
    let filters = &list.filters;
    let user = target_user(
        &state,
        &caller,
        filters.user_id.as_deref().unwrap_or("self"),
    )
    .await?;
    let now = state.clock.now();
    let status = filters.status.as_deref();
    if let Some(bad) = status.filter(|s| !["active", "revoked", "expired"].contains(s)) {
        return Err(ApiError::BadRequest(format!(
            "status must be active, revoked or expired, not '{bad}'"
        )));
    }
    let (records, uses) = tokio::try_join!(
        state.store.api_keys().all(&user.company_id),
        state.store.rate_counters().key_uses(&user.company_id),
    )?;
    let mine: Vec<ApiKeyRecord> = records
        .into_iter()
        .filter(|r| r.user_id == user.id)
        .filter(|r| status.is_none_or(|s| s == key_status(r, now)))
        .collect();
    let (page, total) = list.paging.apply(mine);
    let views: Vec<serde_json::Value> = page
        .into_iter()
        .map(|r| {
            let used = uses.get(&r.id).copied().unwrap_or_default();
            serde_json::to_value(view(r, None, now, used))
        })
        .collect::<Result<_, _>>()?;
    let meta = list.meta(views.len(), total);
    Ok(envelope::list("api_keys", views, meta))
}

/// Checks a key request. `owner` is the permissions of the key's user when that is not the
/// caller: a scope must be held by both.
fn validate(
    body: &NewKeyBody,
    caller: &Caller,
    owner: Option<&std::collections::BTreeSet<Permission>>,
    default_name: &str,
) -> ApiResult<KeyChoice> {
    let mut problems = Problems::new();
    let name = body
        .name
        .clone()
        .unwrap_or_else(|| default_name.to_owned())
        .trim()
        .to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        problems.add("name", "must be 1 to 100 characters");
    }
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1000)
    {
        problems.add("description", "must be at most 1000 characters");
    }
    if let Some(days) = body.expires_in_days {
        if !EXPIRY_CHOICES.contains(&days) {
            problems.add(
                "expires_in_days",
                "must be 30, 90, 365 or null (never expires)",
            );
        }
    }
    let scopes = match &body.scopes {
        Some(scopes) => {
            let mut unique = Vec::new();
            for scope in scopes {
                match Permission::parse(scope) {
                    None => problems.add("scopes", format!("'{scope}' is not a permission name")),
                    Some(p) if !caller.permissions.contains(&p) => problems.add(
                        "scopes",
                        format!("you do not hold '{scope}', so a key of yours cannot"),
                    ),
                    Some(p) if owner.is_some_and(|held| !held.contains(&p)) => problems.add(
                        "scopes",
                        format!("the key's user does not hold '{scope}', so their key cannot"),
                    ),
                    Some(p) => unique.push(p),
                }
            }
            unique.sort();
            unique.dedup();
            Some(unique)
        }
        // A scoped key that creates a key passes its own scopes on, never more.
        None => caller.api_key.as_ref().and_then(|k| k.scopes.clone()),
    };
    problems.check()?;
    Ok(KeyChoice {
        name,
        description: body.description.clone(),
        expires_in_days: body.expires_in_days,
        scopes,
    })
}

struct KeyChoice {
    name: String,
    description: Option<String>,
    expires_in_days: Option<u32>,
    scopes: Option<Vec<Permission>>,
}

async fn issue_for(
    state: &AppState,
    caller: &Caller,
    user: &CallerUser,
    choice: KeyChoice,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let issued = apikeys::issue(
        KeySpec {
            // A key lives in its user's company (a partner's own key stays the partner's
            // even when it was made while acting inside a client).
            company_id: user.company_id.clone(),
            user_id: user.id.clone(),
            created_by: caller.user_id().to_owned(),
            name: choice.name,
            description: choice.description,
            expires_in_days: choice.expires_in_days,
            scopes: choice.scopes,
        },
        now,
    )?;
    state.store.api_keys().create(&issued).await?;
    let location = envelope::location("api-keys", &issued.record.id);
    Ok(envelope::created(
        &location,
        view(issued.record, Some(issued.secret), now, KeyUses::default()),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<NewKeyBody>,
) -> ApiResult<Response> {
    let choice = validate(&body, &caller, None, "")?;
    let user = caller.user.clone();
    issue_for(&state, &caller, &user, choice).await
}

/// Klipfolio's `POST /users/{id}/api-key`: a key for a user (another user needs
/// `user.manage`); the body is optional.
pub async fn create_for_user(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<NewKeyBody>,
) -> ApiResult<Response> {
    let body = body.unwrap_or_default();
    let user = target_user(&state, &caller, &id).await?;
    let owner = if user.id == caller.user_id() {
        None
    } else {
        let roles = platform::auth::custom_roles(&state, &user.company_id, &user.roles).await?;
        let mut held = platform::auth::permissions::permissions_of(&user.roles);
        held.extend(
            roles
                .iter()
                .filter(|r| user.roles.contains(&r.id))
                .flat_map(|r| r.permissions.iter().copied()),
        );
        // A key of a user who holds more than the caller would be a stronger key than the
        // caller's own: nobody acts beyond what they hold.
        if let Some(p) = held.iter().find(|p| !caller.permissions.contains(*p)) {
            return Err(ApiError::Forbidden(format!(
                "you cannot make a key for this user: they hold permission {p}, which you do not"
            )));
        }
        Some(held)
    };
    let choice = validate(
        &body,
        &caller,
        owner.as_ref(),
        &format!("API key for {}", user.email),
    )?;
    issue_for(&state, &caller, &user, choice).await
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (record, uses) = tokio::try_join!(
        visible_key(&state, &caller, &id),
        state
            .store
            .rate_counters()
            .key_uses(caller.company_id())
            .api(),
    )?;
    let used = uses.get(&record.id).copied().unwrap_or_default();
    Ok(envelope::ok(view(record, None, state.clock.now(), used)))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let record = visible_key(&state, &caller, &id).await?;
    check_not_stronger(&caller, &record)?;
    if record.revoked_at.is_some() {
        return Ok(envelope::deleted());
    }
    let now = state.clock.now();
    // Every request with the key reads its record (consistently) or updates it under the
    // condition that it is not revoked, so it fails on its very next request everywhere.
    state
        .store
        .api_keys()
        .revoke(&record, now, "the key was revoked meanwhile")
        .await?;
    Ok(envelope::deleted())
}

/// Revokes a key and issues its replacement (same name, scopes and lifetime) at once.
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let record = visible_key(&state, &caller, &id).await?;
    check_not_stronger(&caller, &record)?;
    if record.revoked_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "api key '{id}' is revoked; create a new one"
        )));
    }
    let now = state.clock.now();
    let issued = apikeys::issue(
        KeySpec {
            company_id: record.company_id.clone(),
            user_id: record.user_id.clone(),
            created_by: caller.user_id().to_owned(),
            name: record.name.clone(),
            description: record.description.clone(),
            expires_in_days: record.expires_in_days,
            scopes: record.scopes.clone(),
        },
        now,
    )?;
    state.store.api_keys().rotate(&record, &issued, now).await?;
    let location = envelope::location("api-keys", &issued.record.id);
    Ok(envelope::created(
        &location,
        view(issued.record, Some(issued.secret), now, KeyUses::default()),
    ))
}
