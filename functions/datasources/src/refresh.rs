//! Refreshing: `POST /datasources/{id}/refresh` (within the request) and the bulk
//! `POST /datasources/@/refresh {"datasources":[..]}` (queued for the report worker).
//!
//! A URL data source fetches its endpoint (`connector`) and stores what it got like a push;
//! a failed fetch counts in `refresh_fail_count` and `last_error` and keeps the last good
//! data. A push data source has nothing to fetch: refreshing recomputes its Klips from the
//! stored rows. Either way the answer is the data source with `refresh.status`.

use crate::datasources::{lookup, usable};
use axum::extract::{Path, State};
use axum::response::Response;
use domain::data;
use domain::ids::new_id;
use domain::records::RefreshState;
use domain::reports::{run_id, RefreshJob};
use domain::{RunStatus, RunTrigger};
use platform::assets::ingest::refresh_source;
use platform::assets::view;
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{JsonBody, NoParams};
use platform::store::WriteError;
use platform::{ApiError, ApiResult, AppState};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The most data sources one bulk request may name.
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
    // The data source's view, its `refresh` being this refresh's outcome.
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
fn result(
    id: &str,
    requested: &str,
    status: &str,
    job: Option<&str>,
    error: Option<&str>,
) -> Value {
    json!({"id": id, "requested": requested, "status": status, "job_id": job, "error": error})
}

/// `POST /datasources/@/refresh {"datasources":[ids or slugs]}` → 202 after queuing one
/// refresh job per usable data source; the report worker does them (reached through the
/// table's stream), and each data source's `refresh.status` shows how it goes
/// (`queued` → `running` → `succeeded` | `failed`). Unknown ids or slugs (or another
/// company's) are `not_found`; disabled sources `failed`.
pub async fn bulk_refresh(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<BulkBody>,
) -> ApiResult<Response> {
    if body.datasources.is_empty() || body.datasources.len() > MAX_BULK {
        return Err(ApiError::field(
            "datasources",
            format!("must name 1 to {MAX_BULK} data sources by id or slug"),
        ));
    }
    let now = state.clock.now();
    let mut results = Vec::with_capacity(body.datasources.len());
    let mut failed = Map::new();
    let mut queued = 0;
    for requested in &body.datasources {
        let ds = match lookup(&state, &caller, requested).await {
            Ok(ds) => ds,
            Err(error @ ApiError::NotFound(_)) => {
                let message = error.to_string();
                failed.insert(requested.clone(), Value::String(message.clone()));
                results.push(result(
                    requested,
                    requested,
                    "not_found",
                    None,
                    Some(&message),
                ));
                continue;
            }
            Err(error) => return Err(error),
        };
        let id = ds.meta.id.clone();
        if let Err(error) = usable(&ds) {
            let message = error.to_string();
            failed.insert(id.clone(), Value::String(message.clone()));
            results.push(result(&id, requested, "failed", None, Some(&message)));
            continue;
        }
        let job = RefreshJob::queued(
            run_id(now.timestamp_millis(), &new_id()),
            caller.company_id(),
            &id,
            RunTrigger::Api,
            now,
        );
        match state.store.refreshes().queue(&job).await {
            Ok(()) => {}
            Err(WriteError::Refused(())) => {
                return Err(ApiError::Conflict("refresh job id collision; retry".into()))
            }
            Err(WriteError::Failed(e)) => return Err(e.into()),
        }
        let shown = RefreshState {
            status: RunStatus::Queued,
            job_id: job.id.clone(),
            trigger: RunTrigger::Api,
            requested_at: job.job.date_created,
            finished_at: None,
            error: None,
        };
        state
            .store
            .refreshes()
            .set_state(caller.company_id(), &id, &shown)
            .await?;
        queued += 1;
        results.push(result(&id, requested, "queued", Some(&job.id), None));
    }
    Ok(envelope::accepted(
        "/api/1.0/datasources",
        json!({
            "total_datasources_requested": body.datasources.len(),
            "total_queued": queued,
            "results": results,
            "failed_results": failed,
        }),
    ))
}
