//! Roles: the three built-ins (read-only) and custom roles with any set of permissions. A
//! change applies to every token and key of the role's users on their next request, because
//! the auth layer reads the roles on every request.

use crate::grants;
use crate::users::all_users;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::ids::{is_id, new_id};
use platform::auth::permissions::{builtin_role, Permission, BUILTIN_ROLES, PERMISSIONS};
use platform::auth::records::Role;
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{JsonBody, NoParams};
use platform::paging::{Listed, Listing, NoFilters};
use platform::{ApiError, ApiResult, AppState, Problems};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    name: Option<String>,
    description: Option<String>,
    permissions: Option<Vec<String>>,
}

/// A role as the API shows it: a built-in one (fixed permissions, named by its id) or a
/// company's own.
#[derive(Serialize, Debug)]
struct RoleView {
    id: String,
    name: String,
    description: Option<String>,
    permissions: Vec<Permission>,
    builtin: bool,
    #[serde(with = "domain::time::utc")]
    date_created: DateTime<Utc>,
    #[serde(with = "domain::time::utc")]
    last_updated: DateTime<Utc>,
}

impl Listed for RoleView {
    fn name(&self) -> &str {
        &self.name
    }
    fn date_created(&self) -> DateTime<Utc> {
        self.date_created
    }
    fn last_updated(&self) -> DateTime<Utc> {
        self.last_updated
    }
}

/// When the built-in roles came to be, as their views show it.
const BUILTIN_SINCE: &str = "2026-11-22T00:00:00Z";

fn builtin_view(id: &str) -> RoleView {
    let since = platform::time::parse(BUILTIN_SINCE).unwrap_or_default();
    RoleView {
        id: id.to_owned(),
        name: id.to_owned(),
        description: Some(format!("built-in {id} role")),
        permissions: builtin_role(id).unwrap_or_default().into_iter().collect(),
        builtin: true,
        date_created: since,
        last_updated: since,
    }
}

fn custom_view(role: &Role) -> RoleView {
    RoleView {
        id: role.id.clone(),
        name: role.name.clone(),
        description: role.description.clone(),
        permissions: role.permissions.clone(),
        builtin: false,
        date_created: role.date_created,
        last_updated: role.last_updated,
    }
}

async fn find_custom(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Role> {
    if builtin_role(id).is_some() {
        return Err(ApiError::Forbidden(format!(
            "built-in role '{id}' cannot be changed or deleted"
        )));
    }
    if !is_id(id) {
        return Err(ApiError::not_found("role", id));
    }
    state
        .store
        .roles()
        .get(caller.company_id(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("role", id))
}

fn validate(body: &RoleBody, creating: bool) -> ApiResult<()> {
    let mut problems = Problems::new();
    match body.name.as_deref().map(str::trim) {
        None if creating => problems.add("name", "is required"),
        Some(n) if n.is_empty() || n.chars().count() > 100 => {
            problems.add("name", "must be 1 to 100 characters")
        }
        Some(n) if BUILTIN_ROLES.contains(&n) => {
            problems.add("name", "is the name of a built-in role")
        }
        _ => {}
    }
    match &body.permissions {
        None if creating => problems.add("permissions", "is required"),
        Some(list) => {
            for p in list.iter().filter(|p| !PERMISSIONS.contains(&p.as_str())) {
                problems.add("permissions", format!("'{p}' is not a permission name"));
            }
        }
        None => {}
    }
    problems.check().map_err(ApiError::from)
}

/// The permissions named (each checked by [`validate`]), in order, each once.
fn normalized(names: Vec<String>) -> Vec<Permission> {
    let held: BTreeSet<Permission> = parsed(&names);
    held.into_iter().collect()
}

/// The permissions among `names` (a name that is none was refused by [`validate`]).
fn parsed(names: &[String]) -> BTreeSet<Permission> {
    names.iter().filter_map(|p| Permission::parse(p)).collect()
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<NoFilters>,
) -> ApiResult<Response> {
    let custom: Vec<Role> = state.store.roles().all(caller.company_id()).await?;
    let roles: Vec<RoleView> = BUILTIN_ROLES
        .iter()
        .map(|r| builtin_view(r))
        .chain(custom.iter().map(custom_view))
        .collect();
    let (page, total) = list.paging.apply(roles);
    let meta = list.meta(page.len(), total);
    Ok(envelope::list("roles", page, meta))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    if builtin_role(&id).is_some() {
        return Ok(envelope::ok(builtin_view(&id)));
    }
    if !is_id(&id) {
        return Err(ApiError::not_found("role", &id));
    }
    let role: Role = state
        .store
        .roles()
        .get(caller.company_id(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("role", &id))?;
    Ok(envelope::ok(custom_view(&role)))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<RoleBody>,
) -> ApiResult<Response> {
    validate(&body, true)?;
    let wanted = parsed(body.permissions.as_deref().unwrap_or_default());
    grants::within_caller(&caller, &wanted, "you cannot create this role")?;
    let now = state.clock.now();
    let role = Role {
        id: new_id(),
        company_id: caller.company_id().to_owned(),
        name: body.name.unwrap_or_default().trim().to_owned(),
        description: body.description,
        permissions: normalized(body.permissions.unwrap_or_default()),
        date_created: now,
        last_updated: now,
    };
    state
        .store
        .roles()
        .create(&role, "role id collision; retry")
        .await?;
    Ok(envelope::created(
        &envelope::location("roles", &role.id),
        custom_view(&role),
    ))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RoleBody>,
) -> ApiResult<Response> {
    let mut role = find_custom(&state, &caller, &id).await?;
    validate(&body, false)?;
    // Changing a role changes what its holders may do: the caller must hold what it holds
    // now and what it would hold.
    let now_held: BTreeSet<Permission> = role.permissions.iter().copied().collect();
    grants::within_caller(&caller, &now_held, "you cannot change this role")?;
    let wanted = parsed(body.permissions.as_deref().unwrap_or_default());
    grants::within_caller(&caller, &wanted, "you cannot change this role")?;
    if let Some(name) = body.name {
        role.name = name.trim().to_owned();
    }
    if body.description.is_some() {
        role.description = body.description;
    }
    if let Some(p) = body.permissions {
        role.permissions = normalized(p);
    }
    role.last_updated = state.clock.now();
    state.store.roles().save(&role).await?;
    Ok(envelope::ok(custom_view(&role)))
}

/// A role still held by users cannot be deleted (409 naming how many).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let role = find_custom(&state, &caller, &id).await?;
    let holders = all_users(&state, &role.company_id)
        .await?
        .into_iter()
        .filter(|u| u.roles.contains(&role.id))
        .count();
    if holders > 0 {
        return Err(ApiError::Conflict(format!(
            "role '{id}' is held by {holders} user(s); take it away from them first"
        )));
    }
    state.store.roles().delete(&role).await?;
    Ok(envelope::deleted())
}
