//! Users: CRUD with unique case-insensitive emails, the password policy, seats, the last
//! admin, one-time reset tokens and unlocking.

use crate::grants;
use axum::extract::{Path, State};
use axum::response::Response;
use domain::ids::{is_id, new_id, ApiKeyHash};
use platform::auth::permissions::builtin_role;
use platform::auth::records::{
    ApiKeyRecord, Company, Membership, ResetRecord, Role, User, UserView,
};
use platform::auth::{password, Caller};
use platform::envelope;
use platform::extract::{JsonBody, NoParams, Query};
use platform::paging::Listing;
use platform::store::accounts::{NewUserRefused, UserChangeRefused, UserDeleteRefused};
use platform::store::WriteError;
use platform::time::rfc3339;
use platform::{ApiError, ApiResult, AppState, Problems};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    password: Option<String>,
    roles: Option<Vec<String>>,
    groups: Option<Vec<String>>,
    external_id: Option<String>,
}

pub async fn all_users(state: &AppState, company: &str) -> ApiResult<Vec<User>> {
    Ok(state.store.users().all(company).await?)
}

/// `self`, or a user of the caller's company; anything else is 404.
pub async fn find_user(state: &AppState, caller: &Caller, id: &str) -> ApiResult<User> {
    if id == "self" {
        if caller.partner.is_some() {
            return Err(ApiError::not_found("user", id));
        }
        return state
            .store
            .users()
            .get(caller.company_id(), caller.user_id())
            .await?
            .ok_or_else(|| ApiError::not_found("user", id));
    }
    if !is_id(id) {
        return Err(ApiError::not_found("user", id));
    }
    state
        .store
        .users()
        .get(caller.company_id(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("user", id))
}

/// `include_roles` and `include_groups`: a user's roles and groups as objects (id and name)
/// instead of ids.
#[derive(Deserialize, Default, Debug, Clone, Copy)]
pub struct Include {
    #[serde(default)]
    include_roles: bool,
    #[serde(default)]
    include_groups: bool,
}

/// The users list's query: two filters and the inclusions.
#[derive(Deserialize, Debug)]
pub struct UserFilters {
    email: Option<String>,
    external_id: Option<String>,
    #[serde(default)]
    include_roles: bool,
    #[serde(default)]
    include_groups: bool,
}

/// The view, with roles and groups as objects when asked to include them.
async fn view(
    state: &AppState,
    caller: &Caller,
    user: &User,
    include: Include,
) -> ApiResult<Value> {
    let mut view = UserView::of(user, state.clock.now());
    if include.include_roles {
        view.roles = futures::future::try_join_all(
            user.roles
                .iter()
                .map(|r| role_summary(state, caller.company_id(), r)),
        )
        .await?;
    }
    if include.include_groups {
        let mut groups = Vec::new();
        for g in &user.groups {
            if let Some(group) = state.store.groups().get(caller.company_id(), g).await? {
                groups.push(Membership::Named {
                    id: group.id,
                    name: group.name,
                });
            }
        }
        view.groups = groups;
    }
    Ok(serde_json::to_value(view)?)
}

async fn role_summary(state: &AppState, company: &str, id: &str) -> ApiResult<Membership> {
    let name = match builtin_role(id) {
        Some(_) => id.to_owned(),
        None => {
            let role: Option<Role> = state.store.roles().get(company, id).await?;
            role.map(|r| r.name).unwrap_or_default()
        }
    };
    Ok(Membership::Named {
        id: id.to_owned(),
        name,
    })
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(char::is_whitespace)
}

/// Checks the fields given; `current` is the user being updated.
async fn validate(
    state: &AppState,
    caller: &Caller,
    body: &UserBody,
    current: Option<&User>,
) -> ApiResult<()> {
    let mut problems = Problems::new();
    if current.is_none() && body.email.is_none() {
        problems.add("email", "is required");
    }
    if let Some(email) = &body.email {
        if !valid_email(email.trim()) {
            problems.add("email", "must be an email address");
        }
    }
    for (field, value) in [
        ("first_name", &body.first_name),
        ("last_name", &body.last_name),
        ("external_id", &body.external_id),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > 100) {
            problems.add(field, "must be at most 100 characters");
        }
    }
    if let Some(password) = &body.password {
        let email = body
            .email
            .as_deref()
            .or(current.map(|u| u.email.as_str()))
            .unwrap_or("");
        if let Err(ApiError::Validation { details, .. }) = password::check_policy(password, email) {
            problems.extend(details);
        }
    }
    if let Some(roles) = &body.roles {
        if roles.is_empty() {
            problems.add("roles", "must name at least one role");
        }
        for role in roles {
            let exists = builtin_role(role).is_some()
                || (is_id(role)
                    && state
                        .store
                        .roles()
                        .get(caller.company_id(), role)
                        .await?
                        .is_some());
            if !exists {
                problems.add("roles", format!("role '{role}' does not exist"));
            }
        }
    }
    if let Some(groups) = &body.groups {
        for group in groups {
            let exists = is_id(group)
                && state
                    .store
                    .groups()
                    .get(caller.company_id(), group)
                    .await?
                    .is_some();
            if !exists {
                problems.add("groups", format!("group '{group}' does not exist"));
            }
        }
    }
    problems.check().map_err(ApiError::from)
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<UserFilters>,
) -> ApiResult<Response> {
    let filters = &list.filters;
    let email = filters.email.as_deref().map(str::to_lowercase);
    let external = filters.external_id.as_deref();
    let include = Include {
        include_roles: filters.include_roles,
        include_groups: filters.include_groups,
    };
    let users: Vec<User> = all_users(&state, caller.company_id())
        .await?
        .into_iter()
        .filter(|u| email.as_ref().is_none_or(|e| &u.email == e))
        .filter(|u| external.is_none_or(|x| u.external_id.as_deref() == Some(x)))
        .collect();
    let (page, total) = list.paging.apply(users);
    let mut views = Vec::with_capacity(page.len());
    for u in &page {
        views.push(view(&state, &caller, u, include).await?);
    }
    let meta = list.meta(views.len(), total);
    Ok(envelope::list("users", views, meta))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Query(include): Query<Include>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user = find_user(&state, &caller, &id).await?;
    Ok(envelope::ok(view(&state, &caller, &user, include).await?))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<UserBody>,
) -> ApiResult<Response> {
    validate(&state, &caller, &body, None).await?;
    let roles = body.roles.clone().unwrap_or_else(|| vec!["viewer".into()]);
    grants::may_grant(&state, &caller, &roles).await?;
    let now = state.clock.now();
    let email = body.email.clone().unwrap_or_default().trim().to_lowercase();
    let password_hash = match &body.password {
        Some(p) => password::hash(p).await?,
        // No password: the user sets one with a reset token before logging in.
        None => "!".into(),
    };
    let company_id = caller.company_id().to_owned();
    let user = User {
        id: new_id(),
        company_id: company_id.clone(),
        email: email.clone(),
        first_name: body.first_name.unwrap_or_default(),
        last_name: body.last_name.unwrap_or_default(),
        password_hash,
        roles: body.roles.unwrap_or_else(|| vec!["viewer".into()]),
        groups: body.groups.unwrap_or_default(),
        external_id: body.external_id,
        date_created: now,
        last_updated: now,
        revision: 0,
        date_last_login: None,
        locked_until: None,
        session_epoch: 0,
    };
    let seats = async {
        let company: Option<Company> = state
            .store
            .companies()
            .get(&company_id)
            .await
            .ok()
            .flatten();
        company.and_then(|c| c.seats).unwrap_or(0)
    };
    match state.store.users().create(&user).await {
        Ok(()) => {}
        Err(WriteError::Refused(NewUserRefused::NoSeat)) => {
            return Err(ApiError::Forbidden(format!(
                "company.seats limit reached: this company has {} seats",
                seats.await
            )))
        }
        Err(WriteError::Refused(NewUserRefused::EmailTaken)) => {
            return Err(ApiError::Conflict(format!(
                "email '{email}' is already registered"
            )))
        }
        Err(WriteError::Failed(e)) => return Err(e.into()),
    }
    let location = envelope::location("users", &user.id);
    Ok(envelope::created(
        &location,
        view(&state, &caller, &user, Include::default()).await?,
    ))
}

fn is_admin(user: &User) -> bool {
    user.roles.iter().any(|r| r == "admin")
}

/// Counts the company's admins once if it predates the count (removing an admin is
/// conditional on it).
async fn admin_count_known(state: &AppState, company: &str) -> ApiResult<()> {
    if let Some(company) = state.store.companies().get(company).await? {
        state.store.users().ensure_admin_count(&company).await?;
    }
    Ok(())
}

fn last_admin(user: &User, action: &str) -> ApiError {
    ApiError::Conflict(format!(
        "user '{}' is the last admin and cannot {action}",
        user.id
    ))
}

/// Saves `new` over `old` (409 when someone saved the user meanwhile, or the new email is
/// taken).
pub async fn update_user(state: &AppState, old: &User, new: &User) -> ApiResult<()> {
    if is_admin(old) && !is_admin(new) {
        admin_count_known(state, &old.company_id).await?;
    }
    state.store.users().replace(old, new).await.map_err(|e| {
        e.into_api(|reason| match reason {
            UserChangeRefused::LastAdmin => last_admin(old, "lose the admin role"),
            UserChangeRefused::Changed => {
                ApiError::Conflict("the user changed meanwhile; read it again and retry".into())
            }
            UserChangeRefused::EmailTaken => {
                ApiError::Conflict(format!("email '{}' is already registered", new.email))
            }
        })
    })
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UserBody>,
) -> ApiResult<Response> {
    let old = find_user(&state, &caller, &id).await?;
    validate(&state, &caller, &body, Some(&old)).await?;
    grants::may_act_on(&state, &caller, &old.roles).await?;
    if let Some(roles) = &body.roles {
        grants::may_grant(&state, &caller, roles).await?;
    }
    let mut user = old.clone();
    if let Some(roles) = body.roles.clone() {
        user.roles = roles;
    }
    if let Some(v) = body.first_name {
        user.first_name = v;
    }
    if let Some(v) = body.last_name {
        user.last_name = v;
    }
    if let Some(v) = body.email {
        user.email = v.trim().to_lowercase();
    }
    if let Some(v) = body.groups {
        user.groups = v;
    }
    if let Some(v) = body.external_id {
        user.external_id = Some(v);
    }
    if let Some(p) = body.password {
        user.password_hash = password::hash(&p).await?;
        // Every session of the user ends with the old password.
        user.session_epoch += 1;
    }
    user.last_updated = state.clock.now();
    update_user(&state, &old, &user).await?;
    Ok(envelope::ok(
        view(&state, &caller, &user, Include::default()).await?,
    ))
}

/// Deletes the user, frees the email and the seat, and revokes the user's keys; tokens fail on
/// their next request because the user is gone. Their assets remain.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user = find_user(&state, &caller, &id).await?;
    grants::may_act_on(&state, &caller, &user.roles).await?;
    if is_admin(&user) {
        admin_count_known(&state, &user.company_id).await?;
    }
    state.store.users().delete(&user).await.map_err(|e| {
        e.into_api(|reason| match reason {
            UserDeleteRefused::LastAdmin => last_admin(&user, "be deleted"),
            UserDeleteRefused::Gone => {
                ApiError::Conflict(format!("user '{id}' was deleted meanwhile"))
            }
        })
    })?;
    let now = state.clock.now();
    let keys_of_user: Vec<ApiKeyRecord> = state.store.api_keys().all(&user.company_id).await?;
    for key in keys_of_user
        .into_iter()
        .filter(|k| k.user_id == user.id && k.revoked_at.is_none())
    {
        let revoke = state
            .store
            .api_keys()
            .revoke(&key, now, "the key was revoked meanwhile")
            .await;
        if let Err(e) = revoke {
            tracing::warn!(key = key.id, error = %e, "revoking a deleted user's key");
        }
    }
    Ok(envelope::deleted())
}

pub const RESET_TOKEN_TTL_SECS: i64 = 3600;

/// A one-time reset token for the user (valid an hour), for `POST /auth/reset-password`.
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user = find_user(&state, &caller, &id).await?;
    grants::may_act_on(&state, &caller, &user.roles).await?;
    let now = state.clock.now();
    let token = format!("{}{}", new_id(), new_id());
    let expires = now + chrono::Duration::seconds(RESET_TOKEN_TTL_SECS);
    let record = ResetRecord {
        company_id: user.company_id.clone(),
        user_id: user.id.clone(),
        used: false,
        expires_at: expires,
        ttl: expires.timestamp() + 86_400,
    };
    state
        .store
        .reset_tokens()
        .put(&ApiKeyHash::of(&token).0, &record)
        .await?;
    Ok(envelope::ok(
        json!({"user_id": user.id, "token": token, "expires_at": rfc3339(record.expires_at)}),
    ))
}

/// Ends a failed-login lockout at once.
pub async fn unlock(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let user = find_user(&state, &caller, &id).await?;
    grants::may_act_on(&state, &caller, &user.roles).await?;
    state.store.users().unlock(&user).await?;
    state.store.login_failures().forget(&user.email).await?;
    let mut user = user;
    user.locked_until = None;
    Ok(envelope::ok(
        view(&state, &caller, &user, Include::default()).await?,
    ))
}
