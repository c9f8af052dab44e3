//! Deliveries: the list (newest first; `channel_id`, `status` and `kind` filter), one
//! delivery with its attempts, and `retry` of a failed one (queued again under the same
//! `event_id`, so a receiver that deduplicates on `webhook-id` sees it once).

use axum::extract::{Path, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::notify::Delivery;
use domain::{DeliveryKind, DeliveryStatus};
use platform::auth::Caller;
use platform::envelope;
use platform::extract::NoParams;
use platform::paging::{Listed, Listing, SortField};
use platform::store::deliveries::Shown;
use platform::{ApiError, ApiResult, AppState};
use serde::Deserialize;

struct ListedDelivery(Delivery);

impl Listed for ListedDelivery {
    fn name(&self) -> &str {
        &self.0.id
    }
    fn date_created(&self) -> DateTime<Utc> {
        self.0.date_created
    }
    fn last_updated(&self) -> DateTime<Utc> {
        self.0
            .last_attempt
            .as_ref()
            .map_or(self.0.date_created, |a| a.at)
    }
}

/// The delivery list's filters.
#[derive(Deserialize, Debug)]
pub struct DeliveryFilters {
    channel_id: Option<String>,
    status: Option<DeliveryStatus>,
    kind: Option<DeliveryKind>,
}

/// `GET /deliveries`: newest first unless `sort` says otherwise. Newest first without `q`
/// or `since`, the page is read from the table as it is ordered (only the page and what it
/// skips, and the total from a count); other orders read the company's deliveries whole
/// (the retention, 30 days, bounds them).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<DeliveryFilters>,
) -> ApiResult<Response> {
    let mut list = list;
    let newest_first = list.params.get("sort").is_none();
    if newest_first {
        list.paging.sort = SortField::DateCreated;
        list.paging.descending = true;
    }
    let filters = &list.filters;
    let shown = Shown {
        channel_id: filters.channel_id.clone(),
        status: filters.status,
        kind: filters.kind,
    };
    let now = state.clock.now();
    let deliveries = state.store.deliveries();
    let (page, total) = if newest_first && list.paging.q.is_none() && list.paging.since.is_none() {
        let page = deliveries
            .page(
                caller.company_id(),
                &shown,
                now,
                list.paging.offset,
                list.paging.limit,
            )
            .await?;
        (
            page.deliveries.into_iter().map(ListedDelivery).collect(),
            page.total,
        )
    } else {
        let all: Vec<ListedDelivery> = deliveries
            .of_company(caller.company_id(), now)
            .await?
            .into_iter()
            .filter(|d| {
                shown
                    .channel_id
                    .as_deref()
                    .is_none_or(|c| d.channel_id == c)
                    && shown.status.is_none_or(|s| d.status == s)
                    && shown.kind.is_none_or(|k| d.kind == k)
            })
            .map(ListedDelivery)
            .collect();
        list.paging.apply(all)
    };
    let views = page
        .iter()
        .map(|d| serde_json::to_value(d.0.view()))
        .collect::<Result<Vec<_>, _>>()?;
    let meta = list.meta(views.len(), total);
    Ok(envelope::list("deliveries", views, meta))
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Delivery> {
    let not_found = || ApiError::not_found("delivery", id);
    if !domain::ids::is_id(id) {
        return Err(not_found());
    }
    state
        .store
        .deliveries()
        .get(caller.company_id(), id)
        .await?
        .filter(|d| d.ttl.is_none_or(|ttl| ttl > state.clock.now().timestamp()))
        .ok_or_else(not_found)
}

/// `GET /deliveries/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let delivery = find(&state, &caller, &id).await?;
    Ok(envelope::ok(delivery.view()))
}

/// `POST /deliveries/{id}/retry`: a failed delivery is queued again (202 with it); any
/// other status is a 409 saying where it is.
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let delivery = find(&state, &caller, &id).await?;
    let now = state.clock.now();
    let requeued = state
        .store
        .deliveries()
        .retry(caller.company_id(), &delivery.id, now)
        .await?;
    if !requeued {
        let status = state
            .store
            .deliveries()
            .get(caller.company_id(), &delivery.id)
            .await?
            .map_or(delivery.status, |d| d.status);
        return Err(ApiError::Conflict(format!(
            "only a failed delivery can be retried; this one is {status}"
        )));
    }
    let shown = state
        .store
        .deliveries()
        .get(caller.company_id(), &delivery.id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", &id))?;
    Ok(envelope::accepted(
        &envelope::location("deliveries", &shown.id),
        shown.view(),
    ))
}
