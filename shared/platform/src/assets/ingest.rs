//! Ingesting data: committing a new copy of a data source's data, and refreshing a data
//! source — a URL connector fetches its endpoint (behind the SSRF guard
//! of `egress`) and stores what it got like a push; a failed fetch counts in
//! `refresh_fail_count` and `last_error` and keeps the last good data; a push source has
//! nothing to fetch and only recomputes its Klips. Shared by the datasources function and
//! dashboard refresh.

use super::stored;
use super::{save, Asset};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use domain::data::Table;
use domain::records::Datasource;
use serde_json::{json, Value};

/// Saves a change to the item, re-reading and re-applying it when someone else saved in
/// between — unless the caller sent `If-Match`, whose 412 then stands.
pub async fn save_retrying(
    state: &AppState,
    mut current: Datasource,
    strict: bool,
    apply: impl Fn(&mut Datasource),
) -> ApiResult<Datasource> {
    for attempt in 1..=3 {
        let mut new = current.clone();
        apply(&mut new);
        match save(state, &current, new).await {
            Err(ApiError::PreconditionFailed(_)) if !strict && attempt == 3 => break,
            Err(ApiError::PreconditionFailed(_)) if !strict => {
                let key = crate::store::keys::asset(
                    Datasource::KIND,
                    &current.meta.company_id,
                    &current.meta.id,
                );
                current = state
                    .store
                    .get(key)
                    .await?
                    .ok_or_else(|| ApiError::not_found("datasource", &current.meta.id))?;
            }
            other => return other,
        }
    }
    Err(ApiError::Conflict(
        "the data source is changing too often; retry".into(),
    ))
}

/// Stores new data for `ds` as a new copy, then commits it by saving the item (version + 1)
/// pointing at it; answers the saved data source. `apply` adds further changes to the item
/// (refresh counters). A save that fails discards the copy, so nothing half-written stays.
pub async fn commit(
    state: &AppState,
    ds: Datasource,
    strict: bool,
    raw: Vec<u8>,
    table: &Table,
    apply: impl Fn(&mut Datasource),
) -> ApiResult<Datasource> {
    let size = raw.len() as u64;
    let edge = domain::data::raw_edge(ds.format, &raw);
    let data_id = stored::store(state, &ds, raw, table).await?;
    let now = state.clock.now();
    // The copy this commit pushes out of the item (the one before the previous) is the only
    // one it may delete: any other copy may be another writer's, about to be committed.
    // Likewise the segments retired last time; the ones this commit replaces are retired now.
    let dropped = std::sync::Mutex::new(None::<String>);
    let dropped_segments = std::sync::Mutex::new(Vec::<String>::new());
    let saved = save_retrying(state, ds.clone(), strict, |d| {
        if let Ok(mut slot) = dropped.lock() {
            slot.clone_from(&d.previous_data_id);
        }
        if let Ok(mut slot) = dropped_segments.lock() {
            slot.clone_from(&d.retired_segments);
        }
        d.retired_segments = d.segments.drain(..).map(|s| s.id).collect();
        d.raw_edge = edge;
        d.data_version += 1;
        d.previous_data_id = d.data_id.take();
        d.data_id = Some(data_id.clone());
        d.lineage = Some(data_id.clone());
        d.columns = table.columns.clone();
        d.row_count = table.row_count();
        d.data_size = size;
        d.date_last_refresh = Some(now);
        apply(d);
    })
    .await;
    match saved {
        Ok(saved) => {
            if let Some(old) = dropped.into_inner().ok().flatten() {
                stored::discard_unless_current(state, &saved, &old).await;
            }
            let segments = dropped_segments.into_inner().unwrap_or_default();
            stored::discard_segments(state, &saved, &segments).await;
            Ok(saved)
        }
        Err(e) => {
            stored::discard(state, &ds, &data_id).await;
            Err(e)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Succeeded => json!({"status": "succeeded"}),
            Outcome::Failed(error) => json!({"status": "failed", "error": error}),
        }
    }
}

/// Refreshes one usable data source; answers it as saved and how the refresh went. An `Err`
/// is a failure of our own storage, not of the endpoint.
pub async fn refresh_source(
    state: &AppState,
    tz: chrono_tz::Tz,
    ds: Datasource,
) -> ApiResult<(Datasource, Outcome)> {
    if ds.connector != domain::Connector::Url {
        let loaded = stored::load(state, &ds).await?;
        stored::recompute_klips_with(state, &ds, tz, false, |each| {
            loaded.each_row(each).map(|_| ())
        })
        .await?;
        return Ok((ds, Outcome::Succeeded));
    }
    match crate::connector::fetch(&ds, &state.config.allowed_networks).await? {
        Ok(fetched) => {
            let ds = commit(state, ds, false, fetched.raw, &fetched.table, |d| {
                d.refresh_fail_count = 0;
                d.last_error = None;
            })
            .await?;
            stored::recompute_klips(state, &ds, &fetched.table, tz, false).await?;
            Ok((ds, Outcome::Succeeded))
        }
        Err(error) => {
            tracing::info!(datasource = %ds.meta.id, %error, "URL data source refresh failed");
            let ds = save_retrying(state, ds, false, |d| {
                d.refresh_fail_count += 1;
                d.last_error = Some(error.clone());
            })
            .await?;
            Ok((ds, Outcome::Failed(error)))
        }
    }
}

pub use domain::records::{plan_merge, Merge, COMPACT_AT};

/// Merges the segments of `ds` from index `first` on into one (see [`plan_merge`]),
/// conditional on the item still holding the copy and those segments; answers whether it
/// merged. The segments merged the time before are deleted after.
pub async fn merge_segments(state: &AppState, ds: &Datasource, first: usize) -> ApiResult<bool> {
    let merged = stored::store_merged_segments(state, ds, first).await?;
    if !state
        .store
        .assets()
        .merge_segments(ds, first, &merged)
        .await?
    {
        stored::discard_segments(state, ds, std::slice::from_ref(&merged.id)).await;
        return Ok(false);
    }
    stored::discard_segments(state, ds, &ds.retired_segments).await;
    Ok(true)
}

/// Merges every segment of `ds` (its data as read for it, `loaded`: see
/// [`stored::load_for_merge`]) into a new copy, when [`plan_merge`] says so; the file
/// and the rows stay exactly as they read, joined as text (the copy's rows are never parsed).
/// Conditional on the item still holding that copy and those segments (appends made
/// meanwhile stay segments); answers whether it compacted. What the previous compaction
/// retired, and the copy before the old one, are deleted after.
pub async fn compact(state: &AppState, ds: &Datasource, loaded: stored::Loaded) -> ApiResult<bool> {
    if plan_merge(ds) != Merge::IntoCopy || ds.data_id.is_none() {
        return Ok(false);
    }
    let data_id = stored::store_merged(state, ds, loaded).await?;
    let merged = ds.segments.len();
    if !state
        .store
        .assets()
        .compact_segments(ds, &data_id, merged)
        .await?
    {
        stored::discard(state, ds, &data_id).await;
        return Ok(false);
    }
    stored::discard_segments(state, ds, &ds.retired_segments).await;
    if let Some(old) = &ds.previous_data_id {
        stored::discard(state, ds, old).await;
    }
    Ok(true)
}
