//! `GET /audit-events` (API.md §6 "audit"): the company's audit log, newest first, filtered
//! by `actor_id`, `resource_type`, `resource_id`, `action`, `since` and `until`. The
//! events are recorded from the table's stream by the audit recorder; the log of a client
//! account is read by acting in it (`client_id=`).

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::audit::{Action, ResourceType};
use platform::auth::Caller;
use platform::envelope;
use platform::paging::Listing;
use platform::store::audit::Shown;
use platform::{ApiError, ApiResult, AppState};
use serde::Deserialize;

/// The list's own filters (`since` is the lists' own parameter).
#[derive(Deserialize, Debug)]
pub struct AuditFilters {
    actor_id: Option<String>,
    resource_type: Option<ResourceType>,
    resource_id: Option<String>,
    action: Option<Action>,
    until: Option<String>,
}

/// `until=` as RFC 3339 or Unix seconds, as `since=`.
fn parse_until(raw: &str) -> ApiResult<DateTime<Utc>> {
    if let Some(t) = domain::time::parse(raw) {
        return Ok(t);
    }
    raw.parse::<i64>()
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "until must be RFC 3339 or Unix seconds, not '{raw}'"
            ))
        })
}

/// `GET /audit-events`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<AuditFilters>,
) -> ApiResult<Response> {
    // The log has one order (newest first) and no names to search.
    if let Some(name) = ["q", "sort"]
        .into_iter()
        .find(|name| list.params.get(name).is_some())
    {
        return Err(ApiError::BadRequest(format!(
            "unknown parameter '{name}': the audit log is listed newest first and filtered by actor_id, resource_type, resource_id, action, since and until"
        )));
    }
    let filters = &list.filters;
    let shown = Shown {
        actor_id: filters.actor_id.clone(),
        resource_type: filters.resource_type,
        resource_id: filters.resource_id.clone(),
        action: filters.action,
        since: list.paging.since,
        until: filters.until.as_deref().map(parse_until).transpose()?,
    };
    let page = state
        .store
        .audit_events()
        .page(
            caller.company_id(),
            &shown,
            state.clock.now(),
            list.paging.offset,
            list.paging.limit,
        )
        .await?;
    let views = page
        .events
        .iter()
        .map(|e| serde_json::to_value(e.view()))
        .collect::<Result<Vec<_>, _>>()?;
    let meta = list.meta(views.len(), page.total);
    Ok(envelope::list("audit_events", views, meta))
}
