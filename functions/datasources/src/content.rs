//! A data source's data: `PUT {id}/data` replaces it, `POST {id}/data` appends rows,
//! `GET {id}/data` pages through the rows or answers the raw file.
//!
//! The data lives in S3 (`platform::assets::stored`), its description (`columns`, `row_count`,
//! `data_size`, `date_last_refresh`) on the data source's item. New data is written to S3
//! first and the item saved after, so any error before that — a bad body, a failed upload —
//! leaves the previous data and its description as they were. Then the Klips that use the
//! source are recomputed, so dashboards read fresh values without computing.

use crate::datasources::{lookup, respond, usable};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use domain::data::{self, Table, MAX_DATA_BYTES};
use domain::data::{encode, media_type};
use domain::records::{Datasource, Segment};
use domain::Format;
use platform::assets::check_if_match;
use platform::assets::ingest::commit;
use platform::assets::stored;
use platform::assets::Asset;
use platform::auth::Caller;
use platform::envelope;
use platform::extract::NoParams;
use platform::paging::Listing;
use platform::store::assets::{Append, AppendRefused};
use platform::store::WriteError;
use platform::{ApiError, ApiResult, AppState};
use serde::Deserialize;
use serde_json::Value;

/// Reads a data body: its Content-Type must be the source's format (415 naming it), and it
/// may not exceed 5 MiB (413 naming the limit).
async fn read_body(ds: &Datasource, headers: &HeaderMap, body: Body) -> ApiResult<Vec<u8>> {
    check_media_type(ds, headers)?;
    let bytes = axum::body::to_bytes(body, MAX_DATA_BYTES)
        .await
        .map_err(|_| too_large())?;
    Ok(bytes.to_vec())
}

/// The body's Content-Type is the source's format (415 naming it otherwise).
fn check_media_type(ds: &Datasource, headers: &HeaderMap) -> ApiResult<()> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let expected = media_type(ds.format);
    if data::format_of(content_type).ok() != Some(ds.format) {
        let got = content_type
            .map(|c| format!("'{c}'"))
            .unwrap_or_else(|| "no Content-Type".into());
        return Err(ApiError::UnsupportedMediaType(format!(
            "data source '{}' takes {expected} (its format is {}); the request sent {got}",
            ds.meta.slug, ds.format
        )));
    }
    Ok(())
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "data may be at most 5 MiB ({MAX_DATA_BYTES} bytes)"
    ))
}

/// Recomputes the Klips that use `ds`. The data is saved by then, so a failure here is
/// logged rather than failing the push (a retried append would add the rows twice); the
/// next push or refresh recomputes them.
pub async fn recompute_after_push(
    state: &AppState,
    caller: &Caller,
    ds: &Datasource,
    table: &Table,
) {
    let tz = data::timezone(caller.company.timezone.as_deref());
    if let Err(error) = stored::recompute_klips(state, ds, table, tz, false).await {
        tracing::warn!(datasource = %ds.meta.id, %error, "recomputing Klips after a data push failed");
    }
}

/// `PUT {id}/data`: replaces the data.
pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let ds = lookup(&state, &caller, &id).await?;
    usable(&ds)?;
    check_if_match(&headers, &ds.meta)?;
    let raw = read_body(&ds, &headers, body).await?;
    let table = data::parse(ds.format, &raw)?;
    let ds = commit(
        &state,
        ds,
        headers.contains_key(header::IF_MATCH),
        raw,
        &table,
        |_| {},
    )
    .await?;
    recompute_after_push(&state, &caller, &ds, &table).await;
    drop(table);
    // The body and its rows were up to megabytes: give them back (see platform::memory).
    platform::memory::release_free();
    respond(&ds)
}

/// `POST {id}/data`: appends rows with the same columns (and column types).
///
/// To data that has rows, an append is one new segment (the body as sent, one S3 object)
/// committed by one conditional update of the item: appends commute, so concurrent ones
/// all succeed and none answers 409; only `If-Match` can refuse one (412). The Klips that
/// use the source are recomputed by the worker, on the item's change in the table's stream.
/// The first rows of a source are committed as a whole copy, like a replace.
///
/// Addressed by id, the segment is written while the item is read (the two round trips
/// overlap), and deleted again when the append turns out not to take it: a bad body, another
/// tenant's id (404: the object was under the caller's own company), the source's first rows.
/// A source this instance appended to before is not read at all (see [`remembered_source`]):
/// the update's condition proves what the append relied on, and anything else reads it.
pub async fn append(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    // Read before the item; its errors still come in the order of `read_body` (404, 415, 413).
    let body = axum::body::to_bytes(body, MAX_DATA_BYTES)
        .await
        .map_err(|_| too_large());
    let sent = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let early = match (&body, data::format_of(sent).ok()) {
        (Ok(bytes), Some(format)) if domain::ids::is_id(&id) && !bytes.is_empty() => {
            Some((domain::ids::new_id(), format, bytes.clone()))
        }
        _ => None,
    };
    let company = caller.company_id().to_owned();
    let write_early = async {
        match &early {
            Some((segment, format, bytes)) => {
                let put =
                    stored::put_segment(&state, &company, &id, segment, *format, bytes.to_vec());
                put.await.is_ok().then(|| segment.clone())
            }
            None => None,
        }
    };
    // `If-Match` compares with the item as it is: always read.
    let known = if headers.contains_key(header::IF_MATCH) || body.is_err() {
        None
    } else {
        remembered_source(&state, &caller, &id)
    };
    let speculated = known.is_some();
    let read = async {
        match known {
            Some(ds) => Ok(ds),
            None => lookup(&state, &caller, &id).await,
        }
    };
    let (first, written) = tokio::join!(read, write_early);
    let mut kept = false;
    let mut answer = append_to(
        &state,
        &caller,
        &headers,
        &id,
        first,
        body.as_ref().map(Clone::clone).map_err(|_| too_large()),
        written.as_deref(),
        speculated,
        &mut kept,
    )
    .await;
    if speculated && !kept && !matches!(answer, Ok(Some(_))) {
        // What was refused (or answered) on the remembered item may hold no longer: read it.
        forget_source(&state, &company, &id);
        let first = lookup(&state, &caller, &id).await;
        answer = append_to(
            &state,
            &caller,
            &headers,
            &id,
            first,
            body,
            written.as_deref(),
            false,
            &mut kept,
        )
        .await;
    }
    if let (Some(segment), false) = (&written, kept) {
        stored::discard_segment(&state, &company, &id, segment).await;
    }
    match answer {
        Ok(Some(response)) => Ok(response),
        Ok(None) => Err(ApiError::internal("an append answered nothing")),
        Err(e) => {
            forget_source(&state, &company, &id);
            Err(e)
        }
    }
}

/// The data source this instance appended to last, as saved then (without its segment
/// lists), so the next append to one needs no read: the append's update holds only while
/// the item still points at the same copy with the same end, is enabled and exists, and the
/// copy fixes the format and the columns, so an append the update takes is one the item as
/// it is would have taken. Who may append is checked anew: only the caller's permission to
/// edit data sources, or being the source's creator (which never changes), counts here, not
/// share rights (which do). Kept in `Caches::appended_sources`.
fn remembered_source(state: &AppState, caller: &Caller, id: &str) -> Option<Datasource> {
    if !domain::ids::is_id(id) {
        return None;
    }
    let key = (caller.company_id().to_owned(), id.to_owned());
    let ds = state.caches.appended_sources.get(&key)?;
    let may = caller.can(&format!("{}.edit", <Datasource as Asset>::KIND.name()))
        || ds.meta.created_by == caller.user_id();
    may.then_some(ds)
}

fn remember_source(state: &AppState, saved: &Datasource) {
    if saved.disabled || saved.data_id.is_none() || saved.row_count == 0 {
        return forget_source(state, &saved.meta.company_id, &saved.meta.id);
    }
    let mut kept = saved.clone();
    kept.segments.clear();
    kept.retired_segments.clear();
    state
        .caches
        .appended_sources
        .insert((saved.meta.company_id.clone(), saved.meta.id.clone()), kept);
}

fn forget_source(state: &AppState, company: &str, id: &str) {
    state
        .caches
        .appended_sources
        .remove(&(company.to_owned(), id.to_owned()));
}

/// [`append`] once the item is read (`first`) and, maybe, the segment written (`written`);
/// sets `kept` when the append committed that segment or may have (the outcome of the
/// update is unknown): otherwise it is the caller's to delete. `speculated`: `first` is the
/// item as this instance remembered it, so only an update it conditioned may answer from it
/// (None: read the item and try again).
#[allow(clippy::too_many_arguments)]
async fn append_to(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: &str,
    first: ApiResult<Datasource>,
    body: ApiResult<axum::body::Bytes>,
    written: Option<&str>,
    speculated: bool,
    kept: &mut bool,
) -> ApiResult<Option<Response>> {
    let first = first?;
    check_media_type(&first, headers)?;
    let body = body?.to_vec();
    let strict = headers.contains_key(header::IF_MATCH);
    usable(&first)?;
    check_if_match(headers, &first.meta)?;
    let new = data::parse(first.format, &body)?;
    if speculated && (first.row_count == 0 || new.row_count() == 0) {
        return Ok(None);
    }
    if first.row_count == 0 || first.data_id.is_none() {
        return append_first_rows(state, caller, headers, first, &body, id)
            .await
            .map(Some);
    }
    check_appendable(&first, &new)?;
    if new.row_count() == 0 {
        return respond(&first).map(Some);
    }
    let segment_id = match written {
        // Written under the id the request named, which is this item's.
        Some(segment) if first.meta.id == id => segment.to_owned(),
        _ => stored::store_segment(state, &first, body.clone()).await?,
    };
    // From here on the segment is this function's to keep or discard.
    *kept = true;
    let segment = Segment {
        id: segment_id,
        rows: new.row_count(),
    };
    let if_version = if strict {
        Some(first.meta.version)
    } else {
        None
    };
    let now = state.clock.now();
    let mut ds = first;
    for _ in 0..10 {
        let (added_bytes, edge_after) = data::appended_size(ds.format, ds.raw_edge, &body);
        let append = Append {
            segment: &segment,
            added_bytes,
            edge_after,
            if_version,
            now,
            max_bytes: MAX_DATA_BYTES as u64,
        };
        let refused = match state.store.assets().append_segment(&ds, append).await {
            Ok(saved) => {
                remember_source(state, &saved);
                return respond(&saved).map(Some);
            }
            Err(WriteError::Failed(e)) => {
                // Held and refused, the update never left: the segment is the caller's to
                // delete. Otherwise the outcome is unknown (it may have landed): it stays.
                if platform::held::refused() {
                    *kept = false;
                }
                return Err(e.into());
            }
            Err(WriteError::Refused(why)) => why,
        };
        let answer = match refused {
            // Replaced or re-ended meanwhile: append to what is there now.
            AppendRefused::Moved => {
                ds = lookup(state, caller, id).await?;
                if ds.row_count == 0 || ds.data_id.is_none() {
                    // Replaced by a file without rows meanwhile: these are its first rows.
                    stored::discard_segments(state, &ds, std::slice::from_ref(&segment.id)).await;
                    return append_first_rows(state, caller, headers, ds, &body, id)
                        .await
                        .map(Some);
                }
                // The rows were parsed as the item read first said: so must this one.
                let same = check_media_type(&ds, headers).and_then(|_| usable(&ds));
                match same.and_then(|_| check_appendable(&ds, &new)) {
                    Ok(()) => continue,
                    Err(e) => Err(e),
                }
            }
            AppendRefused::VersionChanged => Err(ApiError::PreconditionFailed(
                "the data source changed since the version in If-Match".into(),
            )),
            AppendRefused::TooLarge => Err(ApiError::PayloadTooLarge(format!(
                "appending would grow the data past the limit of 5 MiB ({MAX_DATA_BYTES} bytes)"
            ))),
            AppendRefused::Disabled => {
                let ds = lookup(state, caller, id).await?;
                usable(&ds)
                    .and_then(|_| Err(ApiError::Conflict("the data source is disabled".into())))
            }
            AppendRefused::Gone => Err(ApiError::not_found("datasource", id)),
        };
        stored::discard_segments(state, &ds, std::slice::from_ref(&segment.id)).await;
        return answer;
    }
    stored::discard_segments(state, &ds, std::slice::from_ref(&segment.id)).await;
    Err(ApiError::Conflict(
        "the data source is being replaced too often to append to; retry".into(),
    ))
}

/// The appended rows fit the source: the same columns (for CSV in the same order), and no
/// cell that changes a column's type.
fn check_appendable(ds: &Datasource, new: &Table) -> ApiResult<()> {
    if !new.columns.is_empty() {
        data::check_same_columns(&ds.columns, &new.columns, ds.format)?;
    }
    data::check_same_types(&ds.columns, new)?;
    Ok(())
}

/// The first rows of a source: merged with whatever file there is (a CSV header without
/// rows) and committed as a whole copy, strictly on the version read and retried on a
/// race, so no rows are lost; the Klips are recomputed at once.
async fn append_first_rows(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    first: Datasource,
    body: &[u8],
    id: &str,
) -> ApiResult<Response> {
    let strict = headers.contains_key(header::IF_MATCH);
    let mut ds = first;
    const ATTEMPTS: u32 = 10;
    for attempt in 1..=ATTEMPTS {
        match append_once(state, caller, headers, ds.clone(), body).await {
            Err(ApiError::PreconditionFailed(_)) if !strict && attempt < ATTEMPTS => {
                // A short random pause spreads out writers that keep colliding.
                let pause =
                    5 + u64::from(domain::ids::new_id().as_bytes()[0] % 20) * attempt as u64;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                ds = lookup(state, caller, id).await?;
                // Someone else's rows arrived first: this is an ordinary append now.
                if ds.row_count > 0 && ds.data_id.is_some() {
                    return Box::pin(append(
                        State(state.clone()),
                        caller.clone(),
                        NoParams,
                        Path(id.to_owned()),
                        headers.clone(),
                        Body::from(body.to_vec()),
                    ))
                    .await;
                }
            }
            // Without If-Match a lost race is not the caller's precondition: 409.
            Err(ApiError::PreconditionFailed(_)) if !strict => break,
            other => return other,
        }
    }
    Err(ApiError::Conflict(
        "the data source is changing too often; retry".into(),
    ))
}

/// One append: merge the new rows into the current copy and commit it, strictly on the
/// version read.
async fn append_once(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    ds: Datasource,
    body: &[u8],
) -> ApiResult<Response> {
    usable(&ds)?;
    check_if_match(headers, &ds.meta)?;
    let body = body.to_vec();
    let new = data::parse(ds.format, &body)?;
    if !new.columns.is_empty() {
        data::check_same_columns(&ds.columns, &new.columns, ds.format)?;
    }
    if new.row_count() == 0 && !ds.columns.is_empty() {
        return respond(&ds);
    }
    let (old_rows, old_raw) = tokio::try_join!(stored::rows(state, &ds), stored::raw(state, &ds))?;
    let names: Vec<String> = if ds.columns.is_empty() {
        &new.columns
    } else {
        &ds.columns
    }
    .iter()
    .map(|c| c.name.clone())
    .collect();
    // The first rows of the source (and what rows a file-less item had): small.
    let mut rows = old_rows;
    rows.extend(new.rows());
    let table = Table::from_rows(&names, &rows);
    let raw = match old_raw {
        Some(old) => data::splice(ds.format, &old, ds.row_count, &body),
        // No file although there are rows: write one from the rows.
        None if ds.row_count > 0 => Vec::new(),
        None => body,
    };
    // Whatever the splice made of it, the file must hold exactly the rows.
    let raw = if raw.is_empty() {
        encode(ds.format, &table).map_err(ApiError::internal)?
    } else {
        raw
    };
    if raw.len() > MAX_DATA_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "appending would grow the data to {} bytes, over the limit of 5 MiB ({MAX_DATA_BYTES} bytes)",
            raw.len()
        )));
    }
    let ds = commit(state, ds, true, raw, &table, |_| {}).await?;
    recompute_after_push(state, caller, &ds, &table).await;
    respond(&ds)
}

/// `GET {id}/data`'s own parameter: `format=rows` (the default) or `raw`.
#[derive(Deserialize, Debug)]
pub struct DataQuery {
    format: Option<String>,
}

/// `GET {id}/data`: the rows, paged like any list (`data.rows`), or with `format=raw` the file
/// itself.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<DataQuery>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let Listing {
        paging,
        filters,
        params,
    } = list;
    if let Some(name) = ["q", "sort", "since"]
        .into_iter()
        .find(|p| params.get(p).is_some())
    {
        return Err(ApiError::BadRequest(format!(
            "query parameter '{name}' does not apply to data rows"
        )));
    }
    let raw = match filters.format.as_deref() {
        None | Some("rows") => false,
        Some("raw") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format must be 'raw' (the file) or 'rows' (paged rows, the default), not '{other}'"
            )))
        }
    };
    if raw {
        if let Some(name) = ["offset", "limit", "page", "page_size"]
            .into_iter()
            .find(|p| params.get(p).is_some())
        {
            return Err(ApiError::BadRequest(format!(
                "query parameter '{name}' does not apply to format=raw, which answers the whole file"
            )));
        }
    }
    let ds = lookup(&state, &caller, &id).await?;
    if raw {
        let file = stored::raw(&state, &ds).await?.ok_or_else(|| {
            ApiError::NotFound(format!(
                "data source '{}' has no data yet; send some with PUT .../data",
                ds.meta.slug
            ))
        })?;
        let extension = ds.format.as_str();
        let disposition = format!("inline; filename=\"{}.{extension}\"", ds.meta.slug);
        let mut response = file.into_response();
        let headers = response.headers_mut();
        let content_type = format!("{}; charset=utf-8", media_type(ds.format));
        for (name, value) in [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        return Ok(response);
    }
    // Only the page is kept: the rows stream from the stored bytes.
    let range = paging.offset..paging.offset.saturating_add(paging.limit);
    let mut page: Vec<Value> = Vec::new();
    let mut index = 0;
    stored::load(&state, &ds).await?.each_row(|row| {
        if range.contains(&index) {
            page.push(Value::Object(row.clone()));
        }
        index += 1;
    })?;
    let total = index;
    let meta = paging.meta(&params, page.len(), total);
    Ok(envelope::list("rows", page, meta))
}

/// Rewrites the stored file in the data source's (new) format, the rows as they are, as a new
/// copy that `ds` now points at (committed when the caller saves `ds`); answers the copy's id.
/// `from`: the format the data was in (its appended segments are still in it).
pub async fn reencode(state: &AppState, ds: &mut Datasource, from: Format) -> ApiResult<String> {
    // The rows stay as stored (never all parsed at once) while the file is rewritten. The
    // segments are the bodies as appended: in the format they were sent in.
    let mut before = ds.clone();
    before.format = from;
    let stored_rows = stored::load(state, &before).await?.merged_rows()?;
    drop(before);
    let table = Table::from_stored(ds.columns.clone(), stored_rows).map_err(ApiError::internal)?;
    let raw = encode(ds.format, &table).map_err(ApiError::internal)?;
    ds.data_size = raw.len() as u64;
    ds.raw_edge = data::raw_edge(ds.format, &raw);
    ds.data_version += 1;
    // The new copy holds the appended rows too (the old segments go with the old copy).
    ds.retired_segments = ds.segments.drain(..).map(|s| s.id).collect();
    let data_id = stored::store(state, ds, raw, &table).await?;
    ds.previous_data_id = ds.data_id.replace(data_id.clone());
    Ok(data_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_both_formats() {
        let table = data::parse(
            Format::Csv,
            b"day,region,sales,ok\n2026-11-01,\"EMEA, North\",10.5,true\n2026-11-02,APAC,,false\n",
        )
        .unwrap();
        let csv = encode(Format::Csv, &table).unwrap();
        assert_eq!(data::parse(Format::Csv, &csv).unwrap(), table);
        let json = encode(Format::Json, &table).unwrap();
        assert_eq!(
            data::parse(Format::Json, &json).unwrap().rows(),
            table.rows()
        );
    }
}
