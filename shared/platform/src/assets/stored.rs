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

/// The parsed rows of a data source (none yet: empty).
pub async fn rows(state: &AppState, ds: &Datasource) -> ApiResult<Vec<Row>> {
    let Some(data_id) = &ds.data_id else {
        return Ok(Vec::new());
    };
    let key = rows_key(&ds.meta.company_id, &ds.meta.id, data_id);
    match state.store.files().get(&key).await? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("stored rows: {e}"))),
        None => Ok(Vec::new()),
    }
}

/// The raw file as pushed or fetched.
pub async fn raw(state: &AppState, ds: &Datasource) -> ApiResult<Option<Vec<u8>>> {
    let Some(data_id) = &ds.data_id else {
        return Ok(None);
    };
    let key = raw_key(&ds.meta.company_id, &ds.meta.id, data_id);
    state.store.files().get(&key).await
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
) -> ApiResult<KlipValue> {
    let value = evaluate(rows, &klip.query, &klip.display, tz, state.clock.now());
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
            Some(ds) => rows(state, &ds).await?,
            None => {
                let message = format!("data source '{id}' no longer exists");
                let now = crate::time::rfc3339(state.clock.now());
                return save_value(state, klip, KlipValue::failed(message, now)).await;
            }
        },
        None => Vec::new(),
    };
    store_value(state, klip, &rows, tz).await
}

/// Recomputes every Klip of the company that uses `ds`, from `rows`.
pub async fn recompute_klips(
    state: &AppState,
    ds: &Datasource,
    rows: &[Row],
    tz: chrono_tz::Tz,
) -> ApiResult<usize> {
    let klips: Vec<Klip> = super::all_of(state, &ds.meta.company_id).await?;
    let mut count = 0;
    for klip in klips
        .iter()
        .filter(|k| k.datasource_id.as_deref() == Some(ds.meta.id.as_str()))
    {
        store_value(state, klip, rows, tz).await?;
        count += 1;
    }
    Ok(count)
}
