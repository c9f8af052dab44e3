//! Groups and their members (the users whose `groups` hold the group); share rights name
//! groups.

use crate::users::{all_users, find_user, update_user};
use axum::extract::{Path, State};
use axum::response::Response;
use domain::ids::{is_id, new_id};
use platform::auth::records::{Group, User, UserView};
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{JsonBody, NoParams};
use platform::paging::{Listing, NoFilters};
use platform::{ApiError, ApiResult, AppState, Problems};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    name: Option<String>,
    description: Option<String>,
    external_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersBody {
    users: Vec<String>,
}

async fn find_group(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Group> {
    if !is_id(id) {
        return Err(ApiError::not_found("group", id));
    }
    state
        .store
        .groups()
        .get(caller.company_id(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("group", id))
}

fn check_name(name: Option<&str>, required: bool) -> ApiResult<()> {
    match name.map(str::trim) {
        None if required => Err(ApiError::field("name", "is required")),
        Some(n) if n.is_empty() || n.chars().count() > 100 => {
            Err(ApiError::field("name", "must be 1 to 100 characters"))
        }
        _ => Ok(()),
    }
}

/// The groups list's filter.
#[derive(Deserialize, Debug)]
pub struct GroupFilters {
    external_id: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<GroupFilters>,
) -> ApiResult<Response> {
    let external = list.filters.external_id.as_deref();
    let groups: Vec<Group> = state
        .store
        .groups()
        .all(caller.company_id())
        .await?
        .into_iter()
        .filter(|g| external.is_none_or(|x| g.external_id.as_deref() == Some(x)))
        .collect();
    let (page, total) = list.paging.apply(groups);
    let views = page
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let meta = list.meta(views.len(), total);
    Ok(envelope::list("groups", views, meta))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(envelope::ok(find_group(&state, &caller, &id).await?))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<GroupBody>,
) -> ApiResult<Response> {
    check_name(body.name.as_deref(), true)?;
    let now = state.clock.now();
    let group = Group {
        id: new_id(),
        company_id: caller.company_id().to_owned(),
        name: body.name.unwrap_or_default().trim().to_owned(),
        description: body.description,
        external_id: body.external_id,
        date_created: now,
        last_updated: now,
    };
    state
        .store
        .groups()
        .create(&group, "group id collision; retry")
        .await?;
    Ok(envelope::created(
        &envelope::location("groups", &group.id),
        group,
    ))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<GroupBody>,
) -> ApiResult<Response> {
    check_name(body.name.as_deref(), false)?;
    let mut group = find_group(&state, &caller, &id).await?;
    if let Some(name) = body.name {
        group.name = name.trim().to_owned();
    }
    if body.description.is_some() {
        group.description = body.description;
    }
    if body.external_id.is_some() {
        group.external_id = body.external_id;
    }
    group.last_updated = state.clock.now();
    state.store.groups().save(&group).await?;
    Ok(envelope::ok(group))
}

/// Deletes the group and takes it out of every member's `groups`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let group = find_group(&state, &caller, &id).await?;
    for user in all_users(&state, &group.company_id)
        .await?
        .into_iter()
        .filter(|u| u.groups.contains(&group.id))
    {
        set_membership(&state, &user, &group.id, false).await?;
    }
    state.store.groups().delete(&group).await?;
    Ok(envelope::deleted())
}

async fn set_membership(
    state: &AppState,
    user: &User,
    group: &str,
    member: bool,
) -> ApiResult<User> {
    let mut new = user.clone();
    new.groups.retain(|g| g != group);
    if member {
        new.groups.push(group.to_owned());
    }
    if new.groups == user.groups {
        return Ok(new);
    }
    new.last_updated = state.clock.now();
    update_user(state, user, &new).await?;
    Ok(new)
}

pub async fn members(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<NoFilters>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let group = find_group(&state, &caller, &id).await?;
    let now = state.clock.now();
    let members: Vec<User> = all_users(&state, &group.company_id)
        .await?
        .into_iter()
        .filter(|u| u.groups.contains(&group.id))
        .collect();
    let (page, total) = list.paging.apply(members);
    let views = page
        .iter()
        .map(|m| serde_json::to_value(UserView::of(m, now)))
        .collect::<Result<Vec<Value>, _>>()?;
    let meta = list.meta(views.len(), total);
    Ok(envelope::list("members", views, meta))
}

pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let group = find_group(&state, &caller, &id).await?;
    let user = find_user(&state, &caller, &user_id).await?;
    let user = set_membership(&state, &user, &group.id, true).await?;
    Ok(envelope::ok(UserView::of(&user, state.clock.now())))
}

pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let group = find_group(&state, &caller, &id).await?;
    let user = find_user(&state, &caller, &user_id).await?;
    set_membership(&state, &user, &group.id, false).await?;
    Ok(envelope::deleted())
}

/// `POST /groups/{id}/members {"users":[ids]}` adds several users at once.
pub async fn add_members(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MembersBody>,
) -> ApiResult<Response> {
    let group = find_group(&state, &caller, &id).await?;
    let mut users = Vec::new();
    let mut problems = Problems::new();
    // A user named twice is added once (two writes of one user would conflict).
    let mut named = std::collections::HashSet::new();
    for user_id in body.users.iter().filter(|u| named.insert(u.as_str())) {
        match find_user(&state, &caller, user_id).await {
            Ok(u) => users.push(u),
            Err(ApiError::NotFound(_)) => {
                problems.add("users", format!("user '{user_id}' does not exist"))
            }
            Err(e) => return Err(e),
        }
    }
    problems.check()?;
    let now = state.clock.now();
    let mut views = Vec::new();
    for user in users {
        let user = set_membership(&state, &user, &group.id, true).await?;
        views.push(serde_json::to_value(UserView::of(&user, now))?);
    }
    Ok(envelope::ok(serde_json::json!({"members": views})))
}
