//! Roles: the three built-ins (read-only) and custom roles with any set of permissions. A
//! change applies to every token and key of the role's users on their next request, because
//! the auth layer reads the roles on every request.

use crate::grants;
use crate::users::all_users;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::ids::{is_id, new_id};
use platform::auth::permissions::{builtin_role, BUILTIN_ROLES, PERMISSIONS};
use platform::auth::records::Role;
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{JsonBody, NoParams};
use platform::paging::{Listed, Listing, NoFilters};
use platform::store::{keys, to_item};
use platform::time::rfc3339;
use platform::{ApiError, ApiResult, AppState, Problems};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    name: Option<String>,
    description: Option<String>,
    permissions: Option<Vec<String>>,
}

struct Listable(Value);

impl Listed for Listable {
    fn name(&self) -> &str {
        self.0["name"].as_str().unwrap_or_default()
    }
    fn date_created(&self) -> DateTime<Utc> {
        time_of(&self.0["date_created"])
    }
    fn last_updated(&self) -> DateTime<Utc> {
        time_of(&self.0["last_updated"])
    }
}

/// A time of a role's view (built-in roles' are fixed; custom ones' are the stored times).
fn time_of(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(platform::time::parse)
        .unwrap_or_default()
}

fn builtin_view(id: &str) -> Value {
    let permissions: Vec<String> = builtin_role(id).unwrap_or_default().into_iter().collect();
    json!({"id": id, "name": id, "description": format!("built-in {id} role"), "permissions": permissions,
           "builtin": true, "date_created": "2026-11-22T00:00:00Z", "last_updated": "2026-11-22T00:00:00Z"})
}

fn custom_view(role: &Role) -> Value {
    json!({"id": role.id, "name": role.name, "description": role.description, "permissions": role.permissions,
           "builtin": false, "date_created": rfc3339(role.date_created), "last_updated": rfc3339(role.last_updated)})
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
        .get::<Role>(keys::role(caller.company_id(), id))
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

fn normalized(mut permissions: Vec<String>) -> Vec<String> {
    permissions.sort();
    permissions.dedup();
    permissions
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<NoFilters>,
) -> ApiResult<Response> {
    let custom: Vec<Role> = state
        .store
        .query_prefix(&keys::company_pk(caller.company_id()), "ROLE#")
        .await?;
    let roles: Vec<Listable> = BUILTIN_ROLES
        .iter()
        .map(|r| builtin_view(r))
        .chain(custom.iter().map(custom_view))
        .map(Listable)
        .collect();
    let (page, total) = list.paging.apply(roles);
    let views: Vec<Value> = page.into_iter().map(|l| l.0).collect();
    let meta = list.meta(views.len(), total);
    Ok(envelope::list("roles", views, meta))
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
        .get(keys::role(caller.company_id(), &id))
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
    let wanted: std::collections::BTreeSet<String> =
        body.permissions.iter().flatten().cloned().collect();
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
    let item = to_item(&keys::role(&role.company_id, &role.id), &role)?;
    state
        .store
        .create_item(item, "role id collision; retry")
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
    let now_held: std::collections::BTreeSet<String> = role.permissions.iter().cloned().collect();
    grants::within_caller(&caller, &now_held, "you cannot change this role")?;
    let wanted: std::collections::BTreeSet<String> =
        body.permissions.iter().flatten().cloned().collect();
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
    state
        .store
        .put(&keys::role(&role.company_id, &role.id), &role)
        .await?;
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
    state
        .store
        .delete(&keys::role(&role.company_id, &role.id))
        .await?;
    Ok(envelope::deleted())
}
