//! The success envelope of API.md §4: `{"meta":{"success":true,"status":N,..},"data":..}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};

/// Where created objects live, as the contract spells it: `/api/1.0/<plural>/<id>`.
pub fn location(plural: &str, id: &str) -> String {
    format!("/api/1.0/{plural}/{id}")
}

fn respond(status: StatusCode, body: Value, location: Option<&str>) -> Response {
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response();
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        response.headers_mut().insert(header::LOCATION, loc);
    }
    response
}

fn to_value(data: &impl Serialize) -> Value {
    serde_json::to_value(data).unwrap_or(Value::Null)
}

/// 200 with one object (or any data).
pub fn ok(data: impl Serialize) -> Response {
    respond(
        StatusCode::OK,
        json!({"meta": {"success": true, "status": 200}, "data": to_value(&data)}),
        None,
    )
}

/// 201 with `Location` and `meta.location`.
pub fn created(location: &str, data: impl Serialize) -> Response {
    respond(
        StatusCode::CREATED,
        json!({"meta": {"success": true, "status": 201, "location": location}, "data": to_value(&data)}),
        Some(location),
    )
}

/// 202 for long work: the job object and where to poll it.
pub fn accepted(location: &str, data: impl Serialize) -> Response {
    respond(
        StatusCode::ACCEPTED,
        json!({"meta": {"success": true, "status": 202, "location": location}, "data": to_value(&data)}),
        Some(location),
    )
}

/// 200 with `meta` only, for deletes.
pub fn deleted() -> Response {
    respond(
        StatusCode::OK,
        json!({"meta": {"success": true, "status": 200}}),
        None,
    )
}

/// 200 with a list page: `meta` from the paging, `data` `{ "<plural>": [...] }`.
pub fn list<T: Serialize>(
    plural: &str,
    items: Vec<T>,
    mut meta: serde_json::Map<String, Value>,
) -> Response {
    meta.insert("success".into(), Value::Bool(true));
    meta.insert("status".into(), json!(200));
    let mut data = serde_json::Map::new();
    data.insert(plural.to_owned(), to_value(&items));
    respond(StatusCode::OK, json!({"meta": meta, "data": data}), None)
}
