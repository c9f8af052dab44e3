//! Data sources themselves: list, create, read, update, delete, `properties`, enable and
//! disable, and share rights. Their data is in `content`, refreshing in `refresh`.

use crate::content;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use domain::records::{Datasource, DatasourceProperties, Klip, HEADER_MASK};
use domain::{Connector, Format};
use platform::assets::{
    all_of, check_common, check_if_match, create as create_asset, find, ok_with_etag, remove,
    resource, save, view, Meta,
};
use platform::auth::Caller;
use platform::connector::valid_json_path;
use platform::envelope;
use platform::extract::{nullable, JsonBody, NoParams, Query};
use platform::paging::Listing;
use platform::{ApiError, ApiResult, AppState, Problems};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The longest automatic refresh interval, in seconds (a week).
const MAX_REFRESH_INTERVAL: u64 = 7 * 24 * 3600;
const MAX_HEADERS: usize = 20;
/// Headers the connector sets itself (or that would break the request).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
];

/// The data source named by an id or slug in the caller's company, if the caller may see
/// it. Anything that is neither an id nor a slug is a 404 at once (it could not be stored,
/// and would be too long for a key).
pub async fn lookup(state: &AppState, caller: &Caller, id_or_slug: &str) -> ApiResult<Datasource> {
    find::<Datasource>(state, caller, id_or_slug).await
}

/// 200 with the data source and its `ETag`.
pub fn respond(ds: &Datasource) -> ApiResult<Response> {
    Ok(ok_with_etag(&HeaderMap::new(), ds.meta.version, view(ds)?))
}

/// A disabled data source takes no data and no refreshes: 409.
pub fn usable(ds: &Datasource) -> ApiResult<()> {
    if ds.disabled {
        Err(ApiError::Conflict(format!(
            "data source '{}' is disabled; enable it with POST /datasources/{}/enable first",
            ds.meta.slug, ds.meta.id
        )))
    } else {
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasourceBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    slug: Option<String>,
    connector: Option<String>,
    format: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    refresh_interval: Option<Option<u64>>,
    properties: Option<DatasourceProperties>,
}

fn one_of(problems: &mut Problems, field: &str, value: Option<&str>, allowed: &[&str]) {
    if let Some(v) = value.filter(|v| !allowed.contains(v)) {
        problems.add(
            field,
            format!("must be one of {}, not '{v}'", allowed.join(", ")),
        );
    }
}

/// A URL data source with a `refresh_interval` refreshes by itself: its first time is one
/// interval from now, kept while the interval and connector stay as they were.
fn schedule_refresh(
    ds: &mut Datasource,
    old: Option<&Datasource>,
    now: chrono::DateTime<chrono::Utc>,
) {
    let interval = ds
        .refresh_interval
        .filter(|n| *n > 0 && ds.connector == Connector::Url && !ds.disabled);
    ds.next_refresh_at = match (interval, old) {
        (None, _) => None,
        (Some(_), Some(old))
            if old.refresh_interval == ds.refresh_interval && old.next_refresh_at.is_some() =>
        {
            old.next_refresh_at
        }
        (Some(n), _) => Some(now + chrono::Duration::seconds(n as i64)),
    };
}

/// A name of a closed set that validation already accepted.
fn chosen<T: std::str::FromStr>(value: Option<&str>) -> Option<T> {
    value.and_then(|v| v.parse().ok())
}

fn check_body(body: &DatasourceBody, creating: bool) -> Problems {
    let description = body.description.as_ref().and_then(|d| d.as_deref());
    let mut problems = check_common(
        body.name.as_deref(),
        description,
        body.slug.as_deref(),
        creating,
    );
    one_of(
        &mut problems,
        "connector",
        body.connector.as_deref(),
        Connector::NAMES,
    );
    one_of(
        &mut problems,
        "format",
        body.format.as_deref(),
        Format::NAMES,
    );
    if let Some(Some(n)) = body.refresh_interval {
        if n != 0 && !(60..=MAX_REFRESH_INTERVAL).contains(&n) {
            problems.add(
                "refresh_interval",
                format!("must be 0 (no automatic refresh) or 60 to {MAX_REFRESH_INTERVAL} seconds"),
            );
        }
    }
    problems
}

/// What every data source must satisfy after a change: valid properties, and an
/// `endpoint_url` for URL connectors.
fn check_source(ds: &Datasource) -> Problems {
    let mut problems = Problems::new();
    let p = &ds.properties;
    if let Some(url) = &p.endpoint_url {
        let parsed = reqwest::Url::parse(url);
        match parsed {
            _ if url.len() > 2048 => {
                problems.add("properties.endpoint_url", "must be at most 2048 characters")
            }
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
            Ok(u) => problems.add(
                "properties.endpoint_url",
                format!(
                    "must be an http or https URL with a host, not {}:",
                    u.scheme()
                ),
            ),
            Err(e) => problems.add(
                "properties.endpoint_url",
                format!("is not a valid URL: {e}"),
            ),
        }
    } else if ds.connector == Connector::Url {
        problems.add(
            "properties.endpoint_url",
            "is required for a url data source",
        );
    }
    if p.headers.len() > MAX_HEADERS {
        problems.add(
            "properties.headers",
            format!("at most {MAX_HEADERS} headers"),
        );
    }
    for (name, value) in &p.headers {
        let field = format!("properties.headers.{name}");
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.add(field, "is not a valid header name");
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            problems.add(field, "is set by the connector itself");
        } else if HeaderValue::from_str(value).is_err() {
            problems.add(field, "is not a valid header value");
        }
    }
    if let Some(path) = p.json_path.as_deref().filter(|p| !valid_json_path(p)) {
        problems.add(
            "properties.json_path",
            format!("must be '$' or a dot path such as '$.items' or '$.data.rows', not '{path}'"),
        );
    }
    problems
}

/// The data source list's filters.
#[derive(Deserialize, Debug)]
pub struct DatasourceFilters {
    connector: Option<String>,
    format: Option<String>,
    disabled: Option<bool>,
}

/// `GET /datasources`: visible data sources, with `connector`, `format` and `disabled`
/// filters.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<DatasourceFilters>,
) -> ApiResult<Response> {
    let DatasourceFilters {
        connector,
        format,
        disabled,
    } = &list.filters;
    let (connector, format, disabled) = (connector.as_deref(), format.as_deref(), *disabled);
    let mut problems = Problems::new();
    one_of(&mut problems, "connector", connector, Connector::NAMES);
    one_of(&mut problems, "format", format, Format::NAMES);
    if let Some(bad) = problems.first() {
        return Err(ApiError::BadRequest(format!(
            "{} {}",
            bad.field, bad.message
        )));
    }
    resource::list(&state, &caller, &list, "datasources", |d: &Datasource| {
        connector.is_none_or(|c| d.connector.as_str() == c)
            && format.is_none_or(|f| d.format.as_str() == f)
            && disabled.is_none_or(|x| d.disabled == x)
    })
    .await
}

/// `POST /datasources`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<DatasourceBody>,
) -> ApiResult<Response> {
    check_body(&body, true).check()?;
    let name = body.name.unwrap_or_default().trim().to_owned();
    let ds = Datasource {
        meta: Meta::new(
            caller.company_id(),
            caller.user_id(),
            name,
            body.description.flatten(),
            body.slug,
        ),
        connector: chosen(body.connector.as_deref()).unwrap_or(Connector::Push),
        format: chosen(body.format.as_deref()).unwrap_or(Format::Csv),
        refresh_interval: body.refresh_interval.flatten(),
        properties: body.properties.unwrap_or_default(),
        disabled: false,
        columns: Vec::new(),
        row_count: 0,
        data_size: 0,
        date_last_refresh: None,
        refresh_fail_count: 0,
        last_error: None,
        data_id: None,
        previous_data_id: None,
        segments: Vec::new(),
        retired_segments: Vec::new(),
        lineage: None,
        raw_edge: 0,
        data_version: 0,
        refresh: None,
        next_refresh_at: None,
    };
    check_source(&ds).check()?;
    let mut ds = ds;
    schedule_refresh(&mut ds, None, state.clock.now());
    let ds = create_asset(&state, ds).await?;
    Ok(envelope::created(
        &envelope::location("datasources", &ds.meta.id),
        view(&ds)?,
    ))
}

/// `PUT /datasources/{id}`: a partial update honouring `If-Match`.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<DatasourceBody>,
) -> ApiResult<Response> {
    check_body(&body, false).check()?;
    let old = lookup(&state, &caller, &id).await?;
    check_if_match(&headers, &old.meta)?;
    let mut ds = old.clone();
    if let Some(name) = body.name {
        ds.meta.name = name.trim().to_owned();
    }
    if let Some(description) = body.description {
        ds.meta.description = description;
    }
    if let Some(slug) = body.slug {
        ds.meta.slug = slug;
    }
    if let Some(connector) = chosen(body.connector.as_deref()) {
        ds.connector = connector;
    }
    if let Some(format) = chosen(body.format.as_deref()) {
        ds.format = format;
    }
    if let Some(interval) = body.refresh_interval {
        ds.refresh_interval = interval;
    }
    if let Some(mut properties) = body.properties {
        properties.keep_masked(&old.properties);
        ds.properties = properties;
    }
    check_source(&ds).check()?;
    schedule_refresh(&mut ds, Some(&old), state.clock.now());
    let mut new_copy = None;
    if ds.format != old.format && old.data_size > 0 {
        // The stored file follows the format, so `format=raw` keeps answering what it says.
        new_copy = Some(content::reencode(&state, &mut ds, old.format).await?);
    }
    let saved = save(&state, &old, ds.clone()).await;
    match (saved, new_copy) {
        (Ok(saved), Some(_)) => {
            // Only the copy this save pushed out goes; others may be another writer's.
            if let Some(pushed_out) = &old.previous_data_id {
                platform::assets::stored::discard_unless_current(&state, &saved, pushed_out).await;
            }
            respond(&saved)
        }
        (Ok(saved), None) => respond(&saved),
        (Err(e), Some(copy)) => {
            platform::assets::stored::discard(&state, &ds, &copy).await;
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

/// `?force=true`: delete a data source that Klips still use.
#[derive(Deserialize, Debug, Default)]
pub struct Force {
    #[serde(default)]
    force: bool,
}

/// `DELETE /datasources/{id}[?force=true]`: 409 naming the Klips that use it, unless forced;
/// its data goes too.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Query(Force { force }): Query<Force>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let ds = lookup(&state, &caller, &id).await?;
    check_if_match(&headers, &ds.meta)?;
    if !force {
        let users: Vec<Klip> = all_of::<Klip>(&state, &ds.meta.company_id)
            .await?
            .into_iter()
            .filter(|k| k.datasource_id.as_deref() == Some(ds.meta.id.as_str()))
            .collect();
        if !users.is_empty() {
            let names: Vec<String> = users
                .iter()
                .map(|k| format!("'{}' ({})", k.meta.name, k.meta.id))
                .collect();
            return Err(ApiError::Conflict(format!(
                "data source '{}' is used by {} Klip{}: {}; delete or change them first, or delete with ?force=true",
                ds.meta.slug,
                users.len(),
                if users.len() == 1 { "" } else { "s" },
                names.join(", ")
            )));
        }
    }
    remove(&state, &ds).await?;
    // The item is gone, so the request succeeded; data left behind is only logged.
    if let Err(error) = platform::assets::stored::forget(&state, &ds).await {
        tracing::warn!(datasource = %ds.meta.id, %error, "deleting the data of a deleted data source failed");
    }
    Ok(envelope::deleted())
}

/// `GET /datasources/{id}/properties`, Klipfolio's shape.
pub async fn properties(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let ds = lookup(&state, &caller, &id).await?;
    Ok(envelope::ok(json!({"properties": ds.properties.shown()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertiesBody {
    properties: Map<String, Value>,
}

/// Merges the given properties into `current`; `null` removes one.
fn merge_properties(
    current: &DatasourceProperties,
    given: Map<String, Value>,
) -> ApiResult<DatasourceProperties> {
    let mut out = current.clone();
    let mut problems = Problems::new();
    for (key, value) in given {
        let field = format!("properties.{key}");
        match (key.as_str(), value) {
            ("endpoint_url", Value::Null) => out.endpoint_url = None,
            ("endpoint_url", Value::String(s)) => out.endpoint_url = Some(s),
            ("json_path", Value::Null) => out.json_path = None,
            ("json_path", Value::String(s)) => out.json_path = Some(s),
            ("headers", Value::Null) => out.headers.clear(),
            ("headers", Value::Object(map)) => {
                let mut headers = BTreeMap::new();
                for (name, v) in map {
                    match v {
                        // The mask shown for a stored value keeps that value.
                        Value::String(s) if s == HEADER_MASK => {
                            if let Some(stored) = current.headers.get(&name) {
                                headers.insert(name, stored.clone());
                            }
                        }
                        Value::String(s) => {
                            headers.insert(name, s);
                        }
                        _ => problems.add(format!("{field}.{name}"), "must be a string"),
                    }
                }
                out.headers = headers;
            }
            ("endpoint_url" | "json_path", _) => problems.add(field, "must be a string or null"),
            ("headers", _) => problems.add(field, "must be an object of strings or null"),
            _ => problems.add(
                field,
                "is not a data source property; use endpoint_url, headers or json_path",
            ),
        }
    }
    problems.check()?;
    Ok(out)
}

/// `PUT /datasources/{id}/properties {"properties":{..}}`: merges the given keys.
pub async fn put_properties(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PropertiesBody>,
) -> ApiResult<Response> {
    let old = lookup(&state, &caller, &id).await?;
    check_if_match(&headers, &old.meta)?;
    let mut ds = old.clone();
    ds.properties = merge_properties(&old.properties, body.properties)?;
    check_source(&ds).check()?;
    let ds = save(&state, &old, ds).await?;
    Ok(envelope::ok(json!({"properties": ds.properties.shown()})))
}

async fn set_disabled(
    state: &AppState,
    caller: &Caller,
    id: &str,
    disabled: bool,
) -> ApiResult<Response> {
    let old = lookup(state, caller, id).await?;
    if old.disabled == disabled {
        return respond(&old);
    }
    let mut ds = old.clone();
    ds.disabled = disabled;
    respond(&save(state, &old, ds).await?)
}

/// `POST /datasources/{id}/enable`.
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_disabled(&state, &caller, &id, false).await
}

/// `POST /datasources/{id}/disable`: data pushes and refreshes answer 409 until enabled.
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    set_disabled(&state, &caller, &id, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_merge_and_refuse_unknown_keys() {
        let current = DatasourceProperties {
            endpoint_url: Some("https://a.example/x".into()),
            headers: BTreeMap::from([("X-Token".into(), "1".into())]),
            json_path: Some("$.items".into()),
        };
        let given = json!({"json_path": null, "headers": {"Authorization": "Bearer t"}});
        let merged = merge_properties(&current, given.as_object().unwrap().clone()).unwrap();
        assert_eq!(merged.endpoint_url, current.endpoint_url);
        assert_eq!(merged.json_path, None);
        assert_eq!(merged.headers.len(), 1);
        assert_eq!(merged.headers["Authorization"], "Bearer t");
        let bad = json!({"colour": "red", "endpoint_url": 3});
        match merge_properties(&current, bad.as_object().unwrap().clone()) {
            Err(ApiError::Validation { details, .. }) => {
                let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
                assert_eq!(fields, ["properties.colour", "properties.endpoint_url"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
