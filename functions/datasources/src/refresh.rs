//! Refreshing: `POST /datasources/{id}/refresh` and the bulk
//! `POST /datasources/@/refresh {"datasources":[..]}`.
//!
//! A URL data source fetches its endpoint (`connector`) and stores what it got like a push;
//! a failed fetch counts in `refresh_fail_count` and `last_error` and keeps the last good
//! data. A push data source has nothing to fetch: refreshing recomputes its Klips from the
//! stored rows. Either way the answer is the data source with `refresh.status`.

use crate::datasources::{lookup, usable};
use axum::extract::{Path, State};
use axum::response::Response;
use domain::data;
use platform::assets::ingest::{refresh_source, Outcome};
use platform::assets::view;
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{JsonBody, NoParams};
use platform::{ApiError, ApiResult, AppState, FieldError};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The most data sources one bulk request may name (they are refreshed one after another
/// within the request, each fetch allowed up to `connector::TIMEOUT`).
pub const MAX_BULK: usize = 25;

/// `POST /datasources/{id}/refresh`: 200 with the data source and `refresh`, also when the
/// endpoint failed (the failure is the data source's state, not the request's).
pub async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let ds = lookup(&state, &caller, &id).await?;
    usable(&ds)?;
    let (ds, outcome) = refresh_source(
        &state,
        data::timezone(caller.company.timezone.as_deref()),
        ds,
    )
    .await?;
    let mut value = view(&ds)?;
    value["refresh"] = outcome.to_json();
    Ok(envelope::ok(value))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    datasources: Vec<String>,
}

/// One entry of a bulk answer.
fn result(id: &str, requested: &str, status: &str, error: Option<&str>) -> Value {
    json!({"id": id, "requested": requested, "status": status, "error": error})
}

/// `POST /datasources/@/refresh {"datasources":[ids or slugs]}` → 202 with a result per
/// entry; ids or slugs that are unknown (or another company's) are reported as `not_found`.
///
/// There is no job queue yet, so the sources are refreshed one after another within this
/// request and the 202 carries the finished results; with a queue the same answer shape
/// would carry `queued` entries instead.
pub async fn bulk_refresh(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<BulkBody>,
) -> ApiResult<Response> {
    if body.datasources.is_empty() || body.datasources.len() > MAX_BULK {
        return Err(ApiError::validation(vec![FieldError::new(
            "datasources",
            format!("must name 1 to {MAX_BULK} data sources by id or slug"),
        )]));
    }
    let mut results = Vec::with_capacity(body.datasources.len());
    let mut failed = Map::new();
    let mut refreshed = 0;
    for requested in &body.datasources {
        let ds = match lookup(&state, &caller, requested).await {
            Ok(ds) => ds,
            Err(error @ ApiError::NotFound(_)) => {
                let message = error.to_string();
                failed.insert(requested.clone(), Value::String(message.clone()));
                results.push(result(requested, requested, "not_found", Some(&message)));
                continue;
            }
            Err(error) => return Err(error),
        };
        let id = ds.meta.id.clone();
        let outcome = match usable(&ds) {
            Err(error) => Outcome::Failed(error.to_string()),
            Ok(()) => match refresh_source(
                &state,
                data::timezone(caller.company.timezone.as_deref()),
                ds,
            )
            .await
            {
                Ok((_, outcome)) => outcome,
                Err(ApiError::Internal(cause)) => {
                    tracing::error!(datasource = %id, %cause, "bulk refresh failed");
                    Outcome::Failed("internal error while storing the data; retry".into())
                }
                Err(error) => Outcome::Failed(error.to_string()),
            },
        };
        match outcome {
            Outcome::Succeeded => {
                refreshed += 1;
                results.push(result(&id, requested, "succeeded", None));
            }
            Outcome::Failed(error) => {
                failed.insert(id.clone(), Value::String(error.clone()));
                results.push(result(&id, requested, "failed", Some(&error)));
            }
        }
    }
    Ok(envelope::accepted(
        "/api/1.0/datasources",
        json!({
            "total_datasources_requested": body.datasources.len(),
            "total_refreshed": refreshed,
            "results": results,
            "failed_results": failed,
        }),
    ))
}
