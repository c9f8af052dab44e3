//! Client accounts: CRUD, `properties`, `resources` (limits and seats) and `features`, in
//! Klipfolio's shapes.

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::ids::{is_id, new_id};
use domain::CompanyStatus;
use platform::assets::stored;
use platform::auth::records::{Company, Plan, RESOURCES};

/// The features a client account can have switched off.
const FEATURES: &[&str] = platform::auth::records::Feature::NAMES;
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{Full, JsonBody, NoParams, Query};
use platform::paging::Listing;
use platform::{ApiError, ApiResult, AppState, Problems};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const STATUSES: &[&str] = CompanyStatus::NAMES;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientBody {
    name: Option<String>,
    description: Option<String>,
    status: Option<String>,
    seats: Option<i64>,
    external_id: Option<String>,
    plan: Option<String>,
}

/// A client account as the API shows it; with `full=true` also its properties, resources
/// and features.
#[derive(Serialize)]
struct ClientView<'a> {
    id: &'a str,
    name: &'a str,
    description: &'a Option<String>,
    status: CompanyStatus,
    /// -1 is unlimited.
    seats: i64,
    external_id: &'a Option<String>,
    plan: Plan,
    parent_id: &'a Option<String>,
    user_count: i64,
    #[serde(with = "domain::time::utc")]
    date_created: DateTime<Utc>,
    #[serde(with = "domain::time::utc")]
    last_updated: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<&'a BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<Value>,
}

fn view(c: &Company) -> ClientView<'_> {
    ClientView {
        id: &c.id,
        name: &c.name,
        description: &c.description,
        status: c.status,
        seats: c.seats.unwrap_or(-1),
        external_id: &c.external_id,
        plan: c.plan,
        parent_id: &c.parent_id,
        user_count: c.user_count,
        date_created: c.date_created,
        last_updated: c.last_updated,
        properties: None,
        resources: None,
        features: None,
    }
}

/// The view with the client's properties, resources and features.
fn full_view(c: &Company) -> ClientView<'_> {
    ClientView {
        properties: Some(&c.properties),
        resources: Some(resource_list(c)),
        features: Some(feature_list(c)),
        ..view(c)
    }
}

/// A client account of the caller's company; any other id is 404.
async fn find_client(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Company> {
    let found = if is_id(id) {
        state.store.companies().get(id).await?
    } else {
        None
    };
    found
        .filter(|c| c.parent_id.as_deref() == Some(caller.company_id()))
        .ok_or_else(|| ApiError::not_found("client", id))
}

/// Saves `new` if nobody changed the client since `old` was read.
/// Saves the whole client item, so it also checks `user_count` (which user creation and
/// deletion change atomically without touching `last_updated`): a count that moved is not
/// written back stale.
async fn save(state: &AppState, old: &Company, new: &Company) -> ApiResult<()> {
    Ok(state.store.companies().replace(old, new).await?)
}

fn validate(body: &ClientBody, creating: bool) -> ApiResult<()> {
    let mut problems = Problems::new();
    match body.name.as_deref().map(str::trim) {
        None if creating => problems.add("name", "is required"),
        Some(n) if n.is_empty() || n.chars().count() > 200 => {
            problems.add("name", "must be 1 to 200 characters")
        }
        _ => {}
    }
    if let Some(status) = body.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        problems.add(
            "status",
            format!("must be one of {}, not '{status}'", STATUSES.join(", ")),
        );
    }
    if let Some(plan) = body.plan.as_deref().filter(|p| Plan::parse(p).is_none()) {
        problems.add(
            "plan",
            format!("must be one of {}, not '{plan}'", Plan::NAMES.join(", ")),
        );
    }
    if body.seats.is_some_and(|s| s < -1) {
        problems.add("seats", "must be -1 (unlimited) or more");
    }
    problems.check().map_err(ApiError::from)
}

/// The client list's filters.
#[derive(Deserialize, Debug)]
pub struct ClientFilters {
    status: Option<String>,
    external_id: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<ClientFilters>,
) -> ApiResult<Response> {
    let ClientFilters {
        status,
        external_id,
    } = &list.filters;
    let (status, external_id) = (status.as_deref(), external_id.as_deref());
    if let Some(bad) = status.filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::BadRequest(format!(
            "status must be one of {}, not '{bad}'",
            STATUSES.join(", ")
        )));
    }
    let clients: Vec<Company> = state
        .store
        .companies()
        .clients_of(caller.company_id())
        .await?
        .into_iter()
        .filter(|c| status.is_none_or(|s| c.status.as_str() == s))
        .filter(|c| external_id.is_none_or(|x| c.external_id.as_deref() == Some(x)))
        .collect();
    let (page, total) = list.paging.apply(clients);
    let views = page
        .iter()
        .map(|c| serde_json::to_value(view(c)))
        .collect::<Result<Vec<Value>, _>>()?;
    let meta = list.meta(views.len(), total);
    Ok(envelope::list("clients", views, meta))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Query(Full { full }): Query<Full>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let client = find_client(&state, &caller, &id).await?;
    Ok(envelope::ok(match full {
        true => full_view(&client),
        false => view(&client),
    }))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<ClientBody>,
) -> ApiResult<Response> {
    if caller.company.parent_id.is_some() {
        return Err(ApiError::Forbidden(
            "a client account cannot have client accounts of its own".into(),
        ));
    }
    validate(&body, true)?;
    let now = state.clock.now();
    let status = body
        .status
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CompanyStatus::Active);
    // A trial client gets the trial plan's limits unless a plan or override says otherwise.
    let plan = body.plan.as_deref().and_then(Plan::parse).unwrap_or({
        if status == CompanyStatus::Trial {
            Plan::Trial
        } else {
            Plan::Standard
        }
    });
    let mut client = Company::new(
        new_id(),
        body.name.unwrap_or_default().trim().to_owned(),
        plan,
        status,
        now,
    );
    client.parent_id = Some(caller.company_id().to_owned());
    client.description = body.description;
    client.external_id = body.external_id;
    client.seats = body.seats.filter(|s| *s >= 0);
    state.store.companies().create_client(&client).await?;
    Ok(envelope::created(
        &envelope::location("clients", &client.id),
        view(&client),
    ))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ClientBody>,
) -> ApiResult<Response> {
    validate(&body, false)?;
    let old = find_client(&state, &caller, &id).await?;
    let mut client = old.clone();
    if let Some(v) = body.name {
        client.name = v.trim().to_owned();
    }
    if body.description.is_some() {
        client.description = body.description;
    }
    if let Some(v) = body.status.as_deref().and_then(|s| s.parse().ok()) {
        client.status = v;
    }
    if let Some(v) = body.seats {
        client.seats = (v >= 0).then_some(v);
    }
    if body.external_id.is_some() {
        client.external_id = body.external_id;
    }
    if let Some(v) = body.plan.as_deref().and_then(Plan::parse) {
        client.plan = v;
    }
    client.last_updated = state.clock.now();
    save(&state, &old, &client).await?;
    Ok(envelope::ok(view(&client)))
}

/// Deletes the client account and everything it owns (users, keys, assets); its users' emails
/// become free again.
/// `DELETE /clients/{id}`: the client account and everything of it. A company's items are
/// too many for one transaction, so the account is first disabled (one conditional write:
/// from then on its credentials get 403 and nothing of it can be used or changed), then its
/// items go one by one with what lives outside its partition (email claims, key hashes,
/// published-link lookups, data files), the company item last. A delete that stops midway
/// (the database fails, the function times out) leaves a disabled account, never half of a
/// working one, and the same `DELETE` again finishes it: every step deletes what may already
/// be gone. What lies outside is found from the few fields that name it, never by decoding
/// the whole item, so an item that would not decode cannot leave its lookups behind.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let client = find_client(&state, &caller, &id).await?;
    if client.status != CompanyStatus::Disabled {
        let mut disabled = client.clone();
        disabled.status = CompanyStatus::Disabled;
        disabled.last_updated = state.clock.now();
        save(&state, &client, &disabled).await?;
    }
    let accounts = state.store.companies();
    for item in accounts.account_items(&client.id).await? {
        if let Some(datasource) = item.data_source() {
            stored::forget_files(&state, &client.id, datasource).await?;
        }
        accounts.delete_account_item(&item).await?;
    }
    accounts.delete_company(&client.id).await?;
    Ok(envelope::deleted())
}

pub async fn properties(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let client = find_client(&state, &caller, &id).await?;
    Ok(envelope::ok(json!({"properties": client.properties})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertiesBody {
    properties: serde_json::Map<String, Value>,
}

/// Upserts the given properties (others stay).
pub async fn put_properties(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PropertiesBody>,
) -> ApiResult<Response> {
    let mut problems = Problems::new();
    for (k, v) in &body.properties {
        if k.is_empty() || k.len() > 100 {
            problems.add(
                format!("properties.{k}"),
                "names must be 1 to 100 characters",
            );
        }
        if v.is_object() || v.is_array() {
            problems.add(
                format!("properties.{k}"),
                "values must be strings, numbers, booleans or null",
            );
        }
    }
    problems.check()?;
    let old = find_client(&state, &caller, &id).await?;
    let mut client = old.clone();
    client.properties.extend(body.properties);
    client.last_updated = state.clock.now();
    save(&state, &old, &client).await?;
    Ok(envelope::ok(json!({"properties": client.properties})))
}

/// `DELETE {id}/properties?name=`'s parameter (required).
#[derive(Deserialize, Debug)]
pub struct PropertyName {
    name: Option<String>,
}

/// `DELETE {id}/properties?name=` removes one property.
pub async fn delete_property(
    State(state): State<AppState>,
    caller: Caller,
    Query(PropertyName { name }): Query<PropertyName>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let name =
        name.ok_or_else(|| ApiError::BadRequest("query parameter 'name' is required".into()))?;
    let old = find_client(&state, &caller, &id).await?;
    if !old.properties.contains_key(&name) {
        return Err(ApiError::not_found("property", &name));
    }
    let mut client = old.clone();
    client.properties.remove(&name);
    client.last_updated = state.clock.now();
    save(&state, &old, &client).await?;
    Ok(envelope::deleted())
}

fn resource_list(c: &Company) -> Value {
    json!([
        {"name": "api.requests.perDay", "value": c.daily_limit()},
        {"name": "api.requests.perSecond", "value": c.per_second_limit()},
        {"name": "company.seats", "value": c.seats.unwrap_or(-1)},
        {"name": "dashboard.combined.total", "value": c.dashboard_limit.unwrap_or(-1)},
        {"name": "deliveries.perDay", "value": c.deliveries_budget().map_or(-1, |b| b as i64)},
        {"name": "reports.scheduledRunsPerDay", "value": c.scheduled_runs_budget().map_or(-1, |b| b as i64)},
    ])
}

pub async fn resources(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let client = find_client(&state, &caller, &id).await?;
    Ok(envelope::ok(json!({"resources": resource_list(&client)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    name: String,
    /// null goes back to the plan's default.
    value: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesBody {
    resources: Vec<Resource>,
}

/// Sets limits; a new daily or per-second limit applies from the client's next request.
pub async fn put_resources(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ResourcesBody>,
) -> ApiResult<Response> {
    let old = find_client(&state, &caller, &id).await?;
    let mut client = old.clone();
    let mut problems = Problems::new();
    for (i, r) in body.resources.iter().enumerate() {
        let field = format!("resources[{i}].value");
        let positive = |v: Option<i64>| {
            v.map(|v| if v >= 1 { Ok(v as u64) } else { Err(()) })
                .transpose()
        };
        let limited = |v: Option<i64>| v.map(|v| if v >= -1 { Ok(v) } else { Err(()) }).transpose();
        match r.name.as_str() {
            "api.requests.perDay" => match positive(r.value) {
                Ok(v) => client.daily_limit = v,
                Err(()) => problems.add(field, "must be at least 1"),
            },
            "api.requests.perSecond" => match positive(r.value) {
                Ok(v) => client.per_second_limit = v,
                Err(()) => problems.add(field, "must be at least 1"),
            },
            "company.seats" => match limited(r.value) {
                Ok(v) => client.seats = v.filter(|v| *v >= 0),
                Err(()) => problems.add(field, "must be -1 (unlimited) or more"),
            },
            "dashboard.combined.total" => match limited(r.value) {
                Ok(v) => client.dashboard_limit = v.filter(|v| *v >= 0),
                Err(()) => problems.add(field, "must be -1 (unlimited) or more"),
            },
            // Counted when a delivery is first attempted: past it, deliveries fail.
            "deliveries.perDay" => match limited(r.value) {
                Ok(v) => client.deliveries_per_day = v,
                Err(()) => problems.add(field, "must be -1 (unlimited) or more"),
            },
            // Checked when a schedule is saved: a lower budget refuses no schedule already
            // saved, only ones that would add runs past it.
            "reports.scheduledRunsPerDay" => match limited(r.value) {
                Ok(v) => client.scheduled_runs_per_day = v,
                Err(()) => problems.add(field, "must be -1 (unlimited) or more"),
            },
            other => problems.add(
                format!("resources[{i}].name"),
                format!("'{other}' is not one of {}", RESOURCES.join(", ")),
            ),
        }
    }
    problems.check()?;
    client.last_updated = state.clock.now();
    save(&state, &old, &client).await?;
    Ok(envelope::ok(json!({"resources": resource_list(&client)})))
}

fn feature_list(c: &Company) -> Value {
    Value::Array(
        c.effective_features()
            .into_iter()
            .map(|(name, enabled)| json!({"name": name, "enabled": enabled}))
            .collect(),
    )
}

pub async fn features(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let client = find_client(&state, &caller, &id).await?;
    Ok(envelope::ok(json!({"features": feature_list(&client)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    name: String,
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesBody {
    features: Vec<Feature>,
}

pub async fn put_features(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<FeaturesBody>,
) -> ApiResult<Response> {
    let mut problems = Problems::new();
    for (i, f) in body.features.iter().enumerate() {
        if !FEATURES.contains(&f.name.as_str()) {
            problems.add(
                format!("features[{i}].name"),
                format!("'{}' is not one of {}", f.name, FEATURES.join(", ")),
            );
        }
    }
    problems.check()?;
    let old = find_client(&state, &caller, &id).await?;
    let mut client = old.clone();
    for f in body.features {
        client.features.insert(f.name, f.enabled);
    }
    client.last_updated = state.clock.now();
    save(&state, &old, &client).await?;
    Ok(envelope::ok(json!({"features": feature_list(&client)})))
}
