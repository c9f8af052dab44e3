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
use domain::data::{self, Row, Table, MAX_DATA_BYTES};
use domain::data::{encode, media_type};
use domain::records::Datasource;
use domain::Format;
use platform::assets::check_if_match;
use platform::assets::ingest::commit;
use platform::assets::stored;
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{NoParams, Params};
use platform::paging::Paging;
use platform::{ApiError, ApiResult, AppState};
use serde_json::Value;

/// Appends the records of `new` (without its header) to the CSV file `old`.
fn append_csv(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(new);
    // The body was parsed already, so its header reads; the position is where records start.
    let start = match reader.headers() {
        Ok(_) => (reader.position().byte() as usize).min(new.len()),
        Err(_) => new.len(),
    };
    let mut out = old.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&new[start..]);
    out
}

/// Joins two non-empty JSON arrays as text, keeping both as they were written.
fn append_json(old: &[u8], new: &[u8]) -> Option<Vec<u8>> {
    let (old, new) = (old.trim_ascii(), new.trim_ascii());
    let old = old.strip_suffix(b"]")?;
    let new = new.strip_prefix(b"[")?;
    let mut out = Vec::with_capacity(old.len() + new.len() + 1);
    out.extend_from_slice(old);
    out.push(b',');
    out.extend_from_slice(new);
    Some(out)
}

/// Reads a data body: its Content-Type must be the source's format (415 naming it), and it
/// may not exceed 5 MiB (413 naming the limit).
async fn read_body(ds: &Datasource, headers: &HeaderMap, body: Body) -> ApiResult<Vec<u8>> {
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
    let bytes = axum::body::to_bytes(body, MAX_DATA_BYTES)
        .await
        .map_err(|_| too_large())?;
    Ok(bytes.to_vec())
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
    rows: &[Row],
) {
    let tz = data::timezone(caller.company.timezone.as_deref());
    if let Err(error) = stored::recompute_klips(state, ds, rows, tz).await {
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
    recompute_after_push(&state, &caller, &ds, &table.rows).await;
    respond(&ds)
}

/// `POST {id}/data`: appends rows with the same columns.
pub async fn append(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let first = lookup(&state, &caller, &id).await?;
    let body = read_body(&first, &headers, body).await?;
    let strict = headers.contains_key(header::IF_MATCH);
    // Another writer committing in between would make this append's merge stale: start over
    // from the new data (unless the caller pinned a version with If-Match), so no rows are lost.
    let mut ds = first;
    const ATTEMPTS: u32 = 10;
    for attempt in 1..=ATTEMPTS {
        match append_once(&state, &caller, &headers, ds.clone(), &body).await {
            Err(ApiError::PreconditionFailed(_)) if !strict && attempt < ATTEMPTS => {
                // A short random pause spreads out writers that keep colliding.
                let pause =
                    5 + u64::from(domain::ids::new_id().as_bytes()[0] % 20) * attempt as u64;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                ds = lookup(&state, &caller, &id).await?;
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
    if new.rows.is_empty() && !ds.columns.is_empty() {
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
    let mut rows = old_rows;
    rows.extend(new.rows);
    let table = Table {
        columns: data::infer_columns(&names, &rows),
        rows,
    };
    let raw = match old_raw {
        Some(old) if ds.format == Format::Csv => append_csv(&old, &body),
        Some(old) if ds.row_count > 0 => append_json(&old, &body).unwrap_or_default(),
        // No file although there are rows: write one from the rows.
        None if ds.row_count > 0 => Vec::new(),
        _ => body,
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
    recompute_after_push(state, caller, &ds, &table.rows).await;
    respond(&ds)
}

/// `GET {id}/data`: the rows, paged like any list (`data.rows`), or with `format=raw` the file
/// itself.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let paging = Paging::from_params(&params, &["format"])?;
    if let Some(name) = ["q", "sort", "since"]
        .into_iter()
        .find(|p| params.get(p).is_some())
    {
        return Err(ApiError::BadRequest(format!(
            "query parameter '{name}' does not apply to data rows"
        )));
    }
    let raw = match params.get("format") {
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
    let rows = stored::rows(&state, &ds).await?;
    let total = rows.len();
    let page: Vec<Value> = rows
        .into_iter()
        .skip(paging.offset)
        .take(paging.limit)
        .map(Value::Object)
        .collect();
    let meta = paging.meta(&params, page.len(), total);
    Ok(envelope::list("rows", page, meta))
}

/// Rewrites the stored file in the data source's (new) format, the rows as they are, as a new
/// copy that `ds` now points at (committed when the caller saves `ds`); answers the copy's id.
pub async fn reencode(state: &AppState, ds: &mut Datasource) -> ApiResult<String> {
    let rows = stored::rows(state, ds).await?;
    let table = Table {
        columns: ds.columns.clone(),
        rows,
    };
    let raw = encode(ds.format, &table).map_err(ApiError::internal)?;
    ds.data_size = raw.len() as u64;
    let data_id = stored::store(state, ds, raw, &table.rows).await?;
    ds.previous_data_id = ds.data_id.replace(data_id.clone());
    Ok(data_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_appends_without_the_second_header() {
        let out = append_csv(b"a,b\n1,2\n", b"a,b\n3,4\n5,6\n");
        assert_eq!(out, b"a,b\n1,2\n3,4\n5,6\n");
        let out = append_csv(b"a,b\r\n1,2", b"\"a\",b\r\n3,4\r\n");
        let table = data::parse(Format::Csv, &out).unwrap();
        assert_eq!(table.rows.len(), 2);
        assert_eq!(table.rows[1]["a"], 3);
    }

    #[test]
    fn json_appends_as_text() {
        let out = append_json(b"[{\"a\":1}]\n", b" [{\"a\":2}, {\"a\":3}]").unwrap();
        let table = data::parse(Format::Json, &out).unwrap();
        assert_eq!(table.rows.len(), 3);
        assert!(append_json(b"{}", b"[]").is_none());
    }

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
        assert_eq!(data::parse(Format::Json, &json).unwrap().rows, table.rows);
    }
}
