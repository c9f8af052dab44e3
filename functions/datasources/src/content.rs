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
    let mut request = AppendRequest {
        state: &state,
        caller: &caller,
        headers: &headers,
        id: &id,
        body,
        written: None,
    };
    let (first, speculated) = request.read_while_writing().await;
    let appended = request.append_rereading(first, speculated).await;
    request.discard_early_segment(appended.kept).await;
    request.respond(appended.answer)
}

/// One `POST {id}/data` on its way through [`append`]: who appends to which source, with
/// which headers and body, and the segment written while the item was read.
struct AppendRequest<'a> {
    state: &'a AppState,
    caller: &'a Caller,
    headers: &'a HeaderMap,
    /// The id (or slug) the request named.
    id: &'a str,
    /// The body as read before the item (its error is the 413).
    body: ApiResult<axum::body::Bytes>,
    /// The segment written under the named id while the item was read, when it was.
    written: Option<String>,
}

/// What one attempt at an append answered, and whether it kept the segment.
struct Appended {
    /// The answer; `Ok(None)`: the remembered item may not answer, read it and try again.
    answer: ApiResult<Option<Response>>,
    /// The segment became the append's own: it committed it or may have (the outcome of the
    /// update is unknown), or it discarded it itself. Otherwise a segment written early is the
    /// caller's to delete.
    kept: bool,
}

impl Appended {
    /// An answer given before the segment was the append's to keep or discard.
    fn not_kept(answer: ApiResult<Option<Response>>) -> Self {
        Appended {
            answer,
            kept: false,
        }
    }

    /// An answer given once the segment was the append's to keep or discard.
    fn kept(answer: ApiResult<Option<Response>>) -> Self {
        Appended { answer, kept: true }
    }
}

/// What [`AppendRequest::prepare`] made of an append.
enum Prepared {
    /// Answered without a segment (`None`: the remembered item may not answer).
    Answered(Option<Response>),
    /// Rows to commit as a segment.
    Ready(Box<Ready>),
}

/// An append's rows, checked against the item they go to.
struct Ready {
    /// The item as read.
    ds: Datasource,
    /// The body as sent.
    body: Vec<u8>,
    /// The body's rows.
    new: Table,
}

/// What the append does after the store refused its update.
enum AfterRefusal {
    /// Updates again, on the item as it is now.
    Retry(Box<Datasource>),
    /// Answers: the segment was discarded, or the rows committed without it.
    Answer(ApiResult<Option<Response>>),
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

impl AppendRequest<'_> {
    /// Reads the item (or takes the one this instance remembers) while the segment is written
    /// under the named id, the two round trips overlapping; answers the item and whether it
    /// is the remembered one, and keeps the written segment's id.
    async fn read_while_writing(&mut self) -> (ApiResult<Datasource>, bool) {
        let early = self.early_segment();
        let known = self.remembered();
        let speculated = known.is_some();
        let (first, written) = tokio::join!(self.read(known), self.write_early(early));
        self.written = written;
        (first, speculated)
    }

    /// The segment to write before the item is read (a new id, the format sent, the body):
    /// only for an id, a body that was read and is not empty, and a Content-Type of a format.
    fn early_segment(&self) -> Option<(String, Format, axum::body::Bytes)> {
        let sent = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        match (&self.body, data::format_of(sent).ok()) {
            (Ok(bytes), Some(format)) if domain::ids::is_id(self.id) && !bytes.is_empty() => {
                Some((domain::ids::new_id(), format, bytes.clone()))
            }
            _ => None,
        }
    }

    /// Writes the early segment under the caller's company and the named id; answers its id
    /// when the write succeeded.
    async fn write_early(
        &self,
        early: Option<(String, Format, axum::body::Bytes)>,
    ) -> Option<String> {
        let (segment, format, bytes) = early?;
        let company = self.caller.company_id();
        let put = stored::put_segment(
            self.state,
            company,
            self.id,
            &segment,
            format,
            bytes.to_vec(),
        );
        put.await.is_ok().then_some(segment)
    }

    /// The item as this instance remembers it (see [`remembered_source`]), unless the
    /// request needs it read.
    fn remembered(&self) -> Option<Datasource> {
        // `If-Match` compares with the item as it is: always read.
        if self.headers.contains_key(header::IF_MATCH) || self.body.is_err() {
            return None;
        }
        remembered_source(self.state, self.caller, self.id)
    }

    /// The item: the remembered one, else read.
    async fn read(&self, known: Option<Datasource>) -> ApiResult<Datasource> {
        match known {
            Some(ds) => Ok(ds),
            None => lookup(self.state, self.caller, self.id).await,
        }
    }

    /// The body as read, or its 413.
    fn body(&self) -> ApiResult<axum::body::Bytes> {
        self.body
            .as_ref()
            .map(Clone::clone)
            .map_err(|_| too_large())
    }

    /// Appends on the item read first; when that was the remembered item and the append
    /// neither kept the segment nor answered, forgets it, reads the item and appends again.
    async fn append_rereading(&self, first: ApiResult<Datasource>, speculated: bool) -> Appended {
        let appended = self.append_to(first, speculated).await;
        if !speculated || appended.kept || matches!(appended.answer, Ok(Some(_))) {
            return appended;
        }
        // What was refused (or answered) on the remembered item may hold no longer: read it.
        forget_source(self.state, self.caller.company_id(), self.id);
        let first = lookup(self.state, self.caller, self.id).await;
        self.append_to(first, false).await
    }

    /// Deletes the segment written early unless the append kept it.
    async fn discard_early_segment(&self, kept: bool) {
        if let (Some(segment), false) = (&self.written, kept) {
            stored::discard_segment(self.state, self.caller.company_id(), self.id, segment).await;
        }
    }

    /// The append's response; after an error this instance no longer remembers the source.
    fn respond(&self, answer: ApiResult<Option<Response>>) -> ApiResult<Response> {
        match answer {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(ApiError::internal("an append answered nothing")),
            Err(e) => {
                forget_source(self.state, self.caller.company_id(), self.id);
                Err(e)
            }
        }
    }

    /// [`append`] once the item is read (`first`) and, maybe, the segment written
    /// (`self.written`). `speculated`: `first` is the item as this instance remembered it, so
    /// only an update it conditioned may answer from it (`Ok(None)`: read the item and try
    /// again).
    async fn append_to(&self, first: ApiResult<Datasource>, speculated: bool) -> Appended {
        let ready = match self.prepare(first, speculated).await {
            Ok(Prepared::Ready(ready)) => *ready,
            Ok(Prepared::Answered(answer)) => return Appended::not_kept(Ok(answer)),
            Err(e) => return Appended::not_kept(Err(e)),
        };
        let segment = match self.segment(&ready).await {
            Ok(segment) => segment,
            Err(e) => return Appended::not_kept(Err(e)),
        };
        // From here on the segment is this function's to keep or discard.
        self.commit(ready, segment).await
    }

    /// Checks the rows against the item read first; answers at once what needs no segment
    /// (no rows, or the source's first rows, committed as a whole copy), else the rows ready
    /// to commit as one.
    async fn prepare(&self, first: ApiResult<Datasource>, speculated: bool) -> ApiResult<Prepared> {
        let first = first?;
        check_media_type(&first, self.headers)?;
        let body = self.body()?.to_vec();
        usable(&first)?;
        check_if_match(self.headers, &first.meta)?;
        let new = data::parse(first.format, &body)?;
        if speculated && (first.row_count == 0 || new.row_count() == 0) {
            return Ok(Prepared::Answered(None));
        }
        if first.row_count == 0 || first.data_id.is_none() {
            let response =
                append_first_rows(self.state, self.caller, self.headers, first, &body, self.id)
                    .await?;
            return Ok(Prepared::Answered(Some(response)));
        }
        check_appendable(&first, &new)?;
        if new.row_count() == 0 {
            return Ok(Prepared::Answered(Some(respond(&first)?)));
        }
        Ok(Prepared::Ready(Box::new(Ready {
            ds: first,
            body,
            new,
        })))
    }

    /// The segment the rows go in: the one written early when it is under this item's id,
    /// else one stored now.
    async fn segment(&self, ready: &Ready) -> ApiResult<Segment> {
        let id = match self.written.as_deref() {
            // Written under the id the request named, which is this item's.
            Some(segment) if ready.ds.meta.id == self.id => segment.to_owned(),
            _ => stored::store_segment(self.state, &ready.ds, ready.body.clone()).await?,
        };
        Ok(Segment {
            id,
            rows: ready.new.row_count(),
        })
    }

    /// Commits the segment with one conditional update of the item, updating again on the
    /// item as it is now while the data was replaced or re-ended meanwhile (ten updates at
    /// most, then 409).
    async fn commit(&self, ready: Ready, segment: Segment) -> Appended {
        let if_version = if self.headers.contains_key(header::IF_MATCH) {
            Some(ready.ds.meta.version)
        } else {
            None
        };
        let now = self.state.clock.now();
        let Ready { mut ds, body, new } = ready;
        for _ in 0..10 {
            let refused = match self.update(&ds, &body, &segment, if_version, now).await {
                Ok(appended) => return appended,
                Err(refused) => refused,
            };
            ds = match self.after_refusal(refused, ds, &body, &new, &segment).await {
                Ok(AfterRefusal::Retry(now_there)) => *now_there,
                Ok(AfterRefusal::Answer(answer)) => return Appended::kept(answer),
                Err(e) => return Appended::kept(Err(e)),
            };
        }
        self.discard(&ds, &segment).await;
        Appended::kept(Err(ApiError::Conflict(
            "the data source is being replaced too often to append to; retry".into(),
        )))
    }

    /// One conditional update committing the segment to `ds`: the append's answer when the
    /// update was taken or failed, else why the store refused it.
    async fn update(
        &self,
        ds: &Datasource,
        body: &[u8],
        segment: &Segment,
        if_version: Option<u64>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Appended, AppendRefused> {
        let (added_bytes, edge_after) = data::appended_size(ds.format, ds.raw_edge, body);
        let append = Append {
            segment,
            added_bytes,
            edge_after,
            if_version,
            now,
            max_bytes: MAX_DATA_BYTES as u64,
        };
        match self.state.store.assets().append_segment(ds, append).await {
            Ok(saved) => {
                remember_source(self.state, &saved);
                Ok(Appended::kept(respond(&saved).map(Some)))
            }
            Err(WriteError::Failed(e)) => {
                // Held and refused, the update never left: the segment is the caller's to
                // delete. Otherwise the outcome is unknown (it may have landed): it stays.
                let kept = !platform::held::refused();
                Ok(Appended {
                    answer: Err(e.into()),
                    kept,
                })
            }
            Err(WriteError::Refused(why)) => Err(why),
        }
    }

    /// What an update the store refused leads to: after a move, an update on the item as it
    /// is now (or the rows committed as its first); otherwise the refusal's answer, the
    /// segment discarded from `ds`. An item that cannot be read again is the error, the
    /// segment left as it is.
    async fn after_refusal(
        &self,
        refused: AppendRefused,
        ds: Datasource,
        body: &[u8],
        new: &Table,
        segment: &Segment,
    ) -> ApiResult<AfterRefusal> {
        let error = match refused {
            // Replaced or re-ended meanwhile: append to what is there now.
            AppendRefused::Moved => return self.after_move(body, new, segment).await,
            AppendRefused::VersionChanged => ApiError::PreconditionFailed(
                "the data source changed since the version in If-Match".into(),
            ),
            AppendRefused::TooLarge => ApiError::PayloadTooLarge(format!(
                "appending would grow the data past the limit of 5 MiB ({MAX_DATA_BYTES} bytes)"
            )),
            AppendRefused::Disabled => {
                let now_there = lookup(self.state, self.caller, self.id).await?;
                match usable(&now_there) {
                    Err(e) => e,
                    Ok(()) => ApiError::Conflict("the data source is disabled".into()),
                }
            }
            AppendRefused::Gone => ApiError::not_found("datasource", self.id),
        };
        self.discard(&ds, segment).await;
        Ok(AfterRefusal::Answer(Err(error)))
    }

    /// After the data was replaced or re-ended meanwhile: the item as it is now, to update
    /// again when the rows still fit it; replaced by a file without rows, the rows committed
    /// as its first; otherwise the misfit's error, the segment discarded.
    async fn after_move(
        &self,
        body: &[u8],
        new: &Table,
        segment: &Segment,
    ) -> ApiResult<AfterRefusal> {
        let ds = lookup(self.state, self.caller, self.id).await?;
        if ds.row_count == 0 || ds.data_id.is_none() {
            // Replaced by a file without rows meanwhile: these are its first rows.
            self.discard(&ds, segment).await;
            let response =
                append_first_rows(self.state, self.caller, self.headers, ds, body, self.id).await?;
            return Ok(AfterRefusal::Answer(Ok(Some(response))));
        }
        // The rows were parsed as the item read first said: so must this one.
        let same = check_media_type(&ds, self.headers).and_then(|_| usable(&ds));
        if let Err(e) = same.and_then(|_| check_appendable(&ds, new)) {
            self.discard(&ds, segment).await;
            return Ok(AfterRefusal::Answer(Err(e)));
        }
        Ok(AfterRefusal::Retry(Box::new(ds)))
    }

    /// Deletes the uncommitted segment from `ds`'s data.
    async fn discard(&self, ds: &Datasource, segment: &Segment) {
        stored::discard_segments(self.state, ds, std::slice::from_ref(&segment.id)).await;
    }
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
        ..
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
