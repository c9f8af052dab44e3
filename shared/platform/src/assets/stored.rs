//! Where data source data is kept and what is derived from it: each write of a data source's
//! data is a new copy in S3 (the raw file and the parsed rows), committed by the item
//! pointing at it; and the Klip values computed from those rows, stored on the Klips.

use super::Asset;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use domain::data::Row;
use domain::klip::{evaluate, KlipValue};
use domain::records::{Datasource, Klip};

/// Where one stored copy of a data source's data lives. Every write goes to a fresh
/// `data_id`, and the item's `data_id` points at the current copy: saving the item (with its
/// version check) is what commits new data, so concurrent writers never overwrite each
/// other's files, and a failed write leaves the current copy untouched.
fn data_prefix(company: &str, id: &str) -> String {
    format!("{company}/datasources/{id}/")
}

fn raw_key(company: &str, id: &str, data_id: &str) -> String {
    format!("{}{data_id}/raw", data_prefix(company, id))
}

fn rows_key(company: &str, id: &str, data_id: &str) -> String {
    format!("{}{data_id}/rows.json", data_prefix(company, id))
}

/// Where the appended segments of a data source live (independent of the copy they extend,
/// so an append need not be redone when the copy is replaced or compacted under it).
fn segment_key(company: &str, id: &str, segment: &str, part: &str) -> String {
    format!("{}segments/{segment}/{part}", data_prefix(company, id))
}

/// Writes one append (the body as sent) as a new segment and answers its id; the caller
/// commits it by adding it to the item's `segments` (or discards it). Its rows are the
/// body's, parsed again when read: one object per append.
pub async fn store_segment(state: &AppState, ds: &Datasource, raw: Vec<u8>) -> ApiResult<String> {
    let segment = domain::ids::new_id();
    let key = segment_key(&ds.meta.company_id, &ds.meta.id, &segment, "raw");
    state
        .store
        .files()
        .put(&key, ds.format.media_type(), raw)
        .await?;
    Ok(segment)
}

/// Deletes segments (uncommitted, or merged away two compactions ago); failures are only
/// logged.
pub async fn discard_segments(state: &AppState, ds: &Datasource, segments: &[String]) {
    let (company, id) = (&ds.meta.company_id, &ds.meta.id);
    for segment in segments {
        let key = segment_key(company, id, segment, "raw");
        if let Err(e) = state.store.files().delete(&key).await {
            tracing::warn!(key, error = %e, "discarding a segment");
        }
    }
}

/// Writes the raw file and the parsed rows as a new copy and answers its `data_id`; the
/// caller commits it by saving the item with `data_id` set (or discards it).
pub async fn store(
    state: &AppState,
    ds: &Datasource,
    raw: Vec<u8>,
    rows: &[Row],
) -> ApiResult<String> {
    let rows_json = serde_json::to_vec(rows)?;
    let (company, id) = (&ds.meta.company_id, &ds.meta.id);
    let data_id = domain::ids::new_id();
    let files = state.store.files();
    let raw_key = raw_key(company, id, &data_id);
    let rows_key = rows_key(company, id, &data_id);
    let (a, b) = tokio::join!(
        files.put(&raw_key, ds.format.media_type(), raw),
        files.put(&rows_key, "application/json", rows_json),
    );
    if let Err(e) = a.and(b) {
        discard(state, ds, &data_id).await;
        return Err(e);
    }
    Ok(data_id)
}

/// Deletes one copy (an uncommitted write); failures are only logged.
pub async fn discard(state: &AppState, ds: &Datasource, data_id: &str) {
    let (company, id) = (&ds.meta.company_id, &ds.meta.id);
    for key in [
        raw_key(company, id, data_id),
        rows_key(company, id, data_id),
    ] {
        if let Err(e) = state.store.files().delete(&key).await {
            tracing::warn!(key, error = %e, "discarding data");
        }
    }
}

/// Deletes a copy a commit pushed out, unless the item still points at it.
pub async fn discard_unless_current(state: &AppState, ds: &Datasource, data_id: &str) {
    if ds.data_id.as_deref() != Some(data_id) && ds.previous_data_id.as_deref() != Some(data_id) {
        discard(state, ds, data_id).await;
    }
}

/// The parsed rows of a data source (none yet: empty): the current copy's, then each
/// segment's in order (read concurrently; a segment is parsed from the body as appended).
pub async fn rows(state: &AppState, ds: &Datasource) -> ApiResult<Vec<Row>> {
    let (company, id) = (&ds.meta.company_id, &ds.meta.id);
    let files = state.store.files();
    let copy = async {
        match &ds.data_id {
            Some(data_id) => files.get(&rows_key(company, id, data_id)).await,
            None => Ok(None),
        }
    };
    let keys: Vec<String> = ds
        .segments
        .iter()
        .map(|s| segment_key(company, id, &s.id, "raw"))
        .collect();
    let segments = futures::future::try_join_all(keys.iter().map(|k| files.get(k)));
    let (copy, segments) = tokio::try_join!(copy, segments)?;
    let mut rows: Vec<Row> = match copy {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("stored rows: {e}")))?,
        None => Vec::new(),
    };
    for (raw, segment) in segments.into_iter().zip(&ds.segments) {
        let raw = raw.ok_or_else(|| {
            ApiError::internal(format!("segment {} of the data is missing", segment.id))
        })?;
        let mut table = domain::data::parse(ds.format, &raw)
            .map_err(|e| ApiError::internal(format!("segment {}: {e}", segment.id)))?;
        rows.append(&mut table.rows);
    }
    Ok(rows)
}

/// The raw file as pushed or fetched, with each appended segment spliced on as an append
/// writes it (CSV records without their header, JSON arrays joined).
pub async fn raw(state: &AppState, ds: &Datasource) -> ApiResult<Option<Vec<u8>>> {
    let Some(data_id) = &ds.data_id else {
        return Ok(None);
    };
    let (company, id) = (&ds.meta.company_id, &ds.meta.id);
    let files = state.store.files();
    let mut keys = vec![raw_key(company, id, data_id)];
    keys.extend(
        ds.segments
            .iter()
            .map(|s| segment_key(company, id, &s.id, "raw")),
    );
    let parts = futures::future::try_join_all(keys.iter().map(|k| files.get(k))).await?;
    let mut parts = parts.into_iter();
    let Some(mut file) = parts.next().flatten() else {
        return Ok(None);
    };
    let appended: u64 = ds.segments.iter().map(|s| s.rows).sum();
    let mut row_count = ds.row_count.saturating_sub(appended);
    for (part, segment) in parts.zip(&ds.segments) {
        let part = part.ok_or_else(|| {
            ApiError::internal(format!("segment {} of the data is missing", segment.id))
        })?;
        file = domain::data::splice(ds.format, &file, row_count, &part);
        row_count += segment.rows;
    }
    Ok(Some(file))
}

/// Removes every stored copy of a data source's data (when the data source itself goes).
pub async fn forget(state: &AppState, ds: &Datasource) -> ApiResult<()> {
    let files = state.store.files();
    for key in files
        .list(&data_prefix(&ds.meta.company_id, &ds.meta.id))
        .await?
    {
        files.delete(&key).await?;
    }
    Ok(())
}

/// Evaluates a Klip over rows and stores the value (without changing the Klip's version:
/// the value is derived from its data, not an edit).
pub async fn store_value(
    state: &AppState,
    klip: &Klip,
    rows: &[Row],
    tz: chrono_tz::Tz,
    data_version: Option<u64>,
) -> ApiResult<KlipValue> {
    let mut value = evaluate(rows, &klip.query, &klip.display, tz, state.clock.now());
    value.data_version = data_version;
    save_value(state, klip, value).await
}

/// Stores a Klip's value as it is (also a failure such as a deleted data source).
pub async fn save_value(state: &AppState, klip: &Klip, value: KlipValue) -> ApiResult<KlipValue> {
    state.store.assets().set_klip_value(klip, &value).await?;
    Ok(value)
}

/// Recomputes one Klip from its data source's current rows and stores the value; a Klip
/// whose data source is gone gets that as its error.
pub async fn recompute_klip(
    state: &AppState,
    klip: &Klip,
    tz: chrono_tz::Tz,
) -> ApiResult<KlipValue> {
    let rows = match &klip.datasource_id {
        Some(id) => match state
            .store
            .get::<Datasource>(crate::store::keys::asset(
                Datasource::KIND,
                &klip.meta.company_id,
                id,
            ))
            .await?
        {
            Some(ds) => {
                let rows = rows(state, &ds).await?;
                return store_value(state, klip, &rows, tz, Some(ds.data_version)).await;
            }
            None => {
                let message = format!("data source '{id}' no longer exists");
                let now = crate::time::rfc3339(state.clock.now());
                return save_value(state, klip, KlipValue::failed(message, now)).await;
            }
        },
        None => Vec::new(),
    };
    store_value(state, klip, &rows, tz, None).await
}

/// Recomputes every Klip of the company that uses `ds`, from `rows` (the rows of
/// `ds.data_version`); with `skip_current`, those whose value was computed from that
/// version already are left as they are (the worker, after an inline recompute).
pub async fn recompute_klips(
    state: &AppState,
    ds: &Datasource,
    rows: &[Row],
    tz: chrono_tz::Tz,
    skip_current: bool,
) -> ApiResult<usize> {
    let klips: Vec<Klip> = super::all_of(state, &ds.meta.company_id).await?;
    let mut count = 0;
    for klip in klips
        .iter()
        .filter(|k| k.datasource_id.as_deref() == Some(ds.meta.id.as_str()))
    {
        let current = klip.value.as_ref().and_then(|v| v.data_version);
        if skip_current && current >= Some(ds.data_version) {
            continue;
        }
        store_value(state, klip, rows, tz, Some(ds.data_version)).await?;
        count += 1;
    }
    Ok(count)
}
