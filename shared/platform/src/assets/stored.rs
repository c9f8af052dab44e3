//! Where data source data is kept and what is derived from it: each write of a data source's
//! data is a new copy in S3 (the raw file and the parsed rows), committed by the item
//! pointing at it; and the Klip values computed from those rows, stored on the Klips.

use super::Asset;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::StoreError;
use domain::data::Row;
use domain::klip::{Evaluation, KlipValue, Snapshot};
use domain::records::{Datasource, Klip};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    let (company, id) = (&ds.meta.company_id, &ds.meta.id);
    put_segment(state, company, id, &segment, ds.format, raw).await?;
    Ok(segment)
}

/// [`store_segment`] by the names alone, before the item is read (see the append): the
/// caller discards it with [`discard_segment`] unless it commits it.
pub async fn put_segment(
    state: &AppState,
    company: &str,
    id: &str,
    segment: &str,
    format: domain::Format,
    raw: Vec<u8>,
) -> ApiResult<()> {
    let key = segment_key(company, id, segment, "raw");
    Ok(state
        .store
        .files()
        .put(&key, format.media_type(), raw)
        .await?)
}

/// Deletes one segment written by [`put_segment`] and not committed; a failure is only
/// logged (the sweep deletes what is left).
pub async fn discard_segment(state: &AppState, company: &str, id: &str, segment: &str) {
    let key = segment_key(company, id, segment, "raw");
    if let Err(e) = state.store.files().delete(&key).await {
        tracing::warn!(key, error = %e, "discarding a segment");
    }
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
    table: &domain::data::Table,
) -> ApiResult<String> {
    store_encoded(state, ds, raw, table.stored_rows().to_vec()).await
}

/// [`store`] with the rows already written as stored rows (a JSON array of objects).
pub async fn store_encoded(
    state: &AppState,
    ds: &Datasource,
    raw: Vec<u8>,
    rows_json: Vec<u8>,
) -> ApiResult<String> {
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
        return Err(e.into());
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

/// A data source's data as one read gets it: the current copy's rows as stored (JSON text,
/// parsed only while they are fed, one row at a time) and each appended segment's body as
/// sent. What a recompute or a compaction holds in memory is these bytes, never the rows.
pub struct Loaded {
    format: domain::Format,
    copy: Option<Vec<u8>>,
    /// How many rows the copy holds (as the item says).
    copy_rows: u64,
    segments: Vec<Part>,
    /// The position of the first row held among the data's rows: 0, or where the first
    /// segment held starts ([`load_after`]).
    first_row: u64,
}

/// One appended segment as read: its id, how many rows it holds, its body as sent.
struct Part {
    id: String,
    rows: u64,
    raw: Vec<u8>,
}

/// Reads the current copy's rows and every segment, concurrently (none yet: no rows).
pub async fn load(state: &AppState, ds: &Datasource) -> ApiResult<Loaded> {
    let (copy, segments) = tokio::try_join!(load_copy(state, ds, 0), load_segments(state, ds, 0))?;
    Ok(Loaded {
        format: ds.format,
        copy,
        copy_rows: segment_starts(ds)[0],
        segments,
        first_row: 0,
    })
}

/// [`load`] for a compaction: the segments first, then the copy's rows into a buffer with
/// room for theirs, so [`Loaded::into_merged`] grows it in place (room never written is
/// never resident).
pub async fn load_for_merge(state: &AppState, ds: &Datasource) -> ApiResult<Loaded> {
    let segments = load_segments(state, ds, 0).await?;
    // Stored rows repeat the column names: a few times the body as sent at most.
    let room = segments.iter().map(|p| 8 * p.raw.len() + 16).sum::<usize>() + 16;
    Ok(Loaded {
        format: ds.format,
        copy: load_copy(state, ds, room).await?,
        copy_rows: segment_starts(ds)[0],
        segments,
        first_row: 0,
    })
}

/// The current copy's rows (none yet: none), with room for `room` more bytes.
async fn load_copy(state: &AppState, ds: &Datasource, room: usize) -> ApiResult<Option<Vec<u8>>> {
    let Some(data_id) = &ds.data_id else {
        return Ok(None);
    };
    let (company, id) = (&ds.meta.company_id, &ds.meta.id);
    let key = rows_key(company, id, data_id);
    match state.store.files().get_reserving(&key, room).await? {
        Some(rows) => Ok(Some(rows)),
        // Committed copies are never deleted while the item points at them.
        None => Err(ApiError::internal(format!(
            "copy {data_id} of the data is missing"
        ))),
    }
}

/// Where each segment of `ds` starts among its rows (after the copy's), and where they end.
fn segment_starts(ds: &Datasource) -> Vec<u64> {
    let appended: u64 = ds.segments.iter().map(|s| s.rows).sum();
    let mut start = ds.row_count.saturating_sub(appended);
    let mut starts = vec![start];
    for segment in &ds.segments {
        start += segment.rows;
        starts.push(start);
    }
    starts
}

/// Reads only the rows from position `from` on, when a segment starts there (or the data
/// ends there): the segments from that one, never the copy. None when `from` falls
/// elsewhere (inside the copy or a segment).
pub async fn load_after(state: &AppState, ds: &Datasource, from: u64) -> ApiResult<Option<Loaded>> {
    if from == 0 {
        return Ok(None);
    }
    let Some(first) = segment_starts(ds).iter().position(|s| *s == from) else {
        return Ok(None);
    };
    Ok(Some(Loaded {
        format: ds.format,
        copy: None,
        copy_rows: 0,
        segments: load_segments(state, ds, first).await?,
        first_row: from,
    }))
}

/// The bodies of the segments of `ds` from index `first` on, concurrently.
async fn load_segments(state: &AppState, ds: &Datasource, first: usize) -> ApiResult<Vec<Part>> {
    let (company, id) = (&ds.meta.company_id, &ds.meta.id);
    let files = state.store.files();
    let wanted = ds.segments.get(first..).unwrap_or_default();
    let keys: Vec<String> = wanted
        .iter()
        .map(|s| segment_key(company, id, &s.id, "raw"))
        .collect();
    let bodies = futures::future::try_join_all(keys.iter().map(|k| files.get(k))).await?;
    bodies
        .into_iter()
        .zip(wanted)
        .map(|(raw, segment)| {
            let raw = raw.ok_or_else(|| {
                ApiError::internal(format!("segment {} of the data is missing", segment.id))
            })?;
            Ok(Part {
                id: segment.id.clone(),
                rows: segment.rows,
                raw,
            })
        })
        .collect()
}

impl Loaded {
    /// Feeds every row to `each` in order, the copy's then each segment's; answers how many.
    pub fn each_row(&self, mut each: impl FnMut(&Row)) -> ApiResult<u64> {
        let mut count = 0;
        self.each_row_from(0, |_, row| {
            count += 1;
            each(row)
        })?;
        Ok(count)
    }

    /// Feeds `each` every row from position `from` on with its position, in order; the copy
    /// and the segments that end before `from` are skipped without being parsed.
    pub fn each_row_from(&self, from: u64, mut each: impl FnMut(u64, &Row)) -> ApiResult<()> {
        let mut position = self.first_row;
        if let Some(bytes) = &self.copy {
            if from >= self.copy_rows {
                position += self.copy_rows;
            } else {
                domain::data::each_stored_row(bytes, |row| {
                    if position >= from {
                        each(position, row);
                    }
                    position += 1;
                })
                .map_err(ApiError::internal)?;
            }
        }
        for part in &self.segments {
            if position + part.rows <= from {
                position += part.rows;
                continue;
            }
            self.segment(part)?.each_row(|row| {
                if position >= from {
                    each(position, row);
                }
                position += 1;
            });
        }
        Ok(())
    }

    /// The position among the data's rows of the first row held (0 unless [`load_after`]).
    pub fn first_row(&self) -> u64 {
        self.first_row
    }

    /// The rows of the copy and every segment as one stored-rows file (what a compaction
    /// writes), joined as text in the copy's own buffer: the copy's rows are not parsed, nor
    /// copied when [`load_for_merge`] left room. Also answers each segment's rows and body.
    fn into_merged(mut self) -> ApiResult<(Vec<u8>, Vec<Part>)> {
        if self.first_row != 0 {
            return Err(ApiError::internal("merging rows read without the copy"));
        }
        let mut merged = self.copy.take().unwrap_or_else(|| b"[]".to_vec());
        for part in &self.segments {
            domain::data::append_stored_rows(&mut merged, self.segment(part)?.stored_rows());
        }
        Ok((merged, self.segments))
    }

    /// The rows of the copy and every segment as one stored-rows file (see `into_merged`).
    pub fn merged_rows(self) -> ApiResult<Vec<u8>> {
        Ok(self.into_merged()?.0)
    }

    fn segment(&self, part: &Part) -> ApiResult<domain::data::Table> {
        domain::data::parse(self.format, &part.raw)
            .map_err(|e| ApiError::internal(format!("segment {}: {e}", part.id)))
    }
}

/// Writes the segments of `ds` from index `first` on as one new segment (their bodies
/// spliced as appends always are: one CSV header, JSON arrays joined, so the data reads
/// exactly the same) and answers it; the caller commits it, or discards it.
pub async fn store_merged_segments(
    state: &AppState,
    ds: &Datasource,
    first: usize,
) -> ApiResult<domain::records::Segment> {
    let parts = load_segments(state, ds, first).await?;
    let mut parts = parts.into_iter();
    let Some(head) = parts.next() else {
        return Err(ApiError::internal("merging no segments"));
    };
    let (mut file, mut rows) = (head.raw, head.rows);
    for part in parts {
        domain::data::splice_onto(ds.format, &mut file, rows, &part.raw);
        rows += part.rows;
    }
    let id = domain::ids::new_id();
    let (company, source) = (&ds.meta.company_id, &ds.meta.id);
    put_segment(state, company, source, &id, ds.format, file).await?;
    Ok(domain::records::Segment { id, rows })
}

/// Writes the data of `ds` as read for a compaction (`loaded`, from [`load_for_merge`]) as
/// one new copy and answers its `data_id` (the caller commits it, or discards it): first the
/// rows, grown in place and let go once written, then the file, the copy's with each
/// segment spliced on as appended. At most one of the two is held at a time.
pub async fn store_merged(state: &AppState, ds: &Datasource, loaded: Loaded) -> ApiResult<String> {
    let (company, id) = (&ds.meta.company_id, &ds.meta.id);
    let Some(old) = &ds.data_id else {
        return Err(ApiError::internal("compacting data without a copy"));
    };
    let copy_rows = loaded.copy_rows;
    let (rows, parts) = loaded.into_merged()?;
    let data_id = domain::ids::new_id();
    let files = state.store.files();
    let written = async {
        files
            .put(&rows_key(company, id, &data_id), "application/json", rows)
            .await?;
        let room = parts.iter().map(|p| p.raw.len() + 2).sum();
        let mut file = files
            .get_reserving(&raw_key(company, id, old), room)
            .await?
            .ok_or_else(|| StoreError::fault(format!("copy {old} of the data is missing")))?;
        let mut row_count = copy_rows;
        for part in &parts {
            domain::data::splice_onto(ds.format, &mut file, row_count, &part.raw);
            row_count += part.rows;
        }
        drop(parts);
        files
            .put(
                &raw_key(company, id, &data_id),
                ds.format.media_type(),
                file,
            )
            .await
    };
    match written.await {
        Ok(()) => Ok(data_id),
        Err(e) => {
            discard(state, ds, &data_id).await;
            Err(e.into())
        }
    }
}

/// The parsed rows of a data source (none yet: empty): the current copy's, then each
/// segment's in order (read concurrently; a segment is parsed from the body as appended).
/// Holds every row: for a page of rows or a rewrite; computing goes through [`load`].
pub async fn rows(state: &AppState, ds: &Datasource) -> ApiResult<Vec<Row>> {
    let loaded = load(state, ds).await?;
    let mut rows = Vec::new();
    loaded.each_row(|row| rows.push(row.clone()))?;
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
    forget_files(state, &ds.meta.company_id, &ds.meta.id).await
}

/// Removes every file of data source `id` of `company` (see [`forget`]).
pub async fn forget_files(state: &AppState, company: &str, id: &str) -> ApiResult<()> {
    let files = state.store.files();
    for key in files.list(&data_prefix(company, id)).await? {
        files.delete(&key).await?;
    }
    Ok(())
}

/// Stores a Klip's value as it is (also a failure such as a deleted data source). A value
/// too large to be stored with its Klip (a grouped Klip with 30,000 keys) is stored as a
/// Klip error that says so ([`fitted`]): the same rows would give the same value, so
/// retrying could never succeed.
pub async fn save_value(state: &AppState, klip: &Klip, value: KlipValue) -> ApiResult<KlipValue> {
    let value = fitted(klip, value)?;
    match state.store.assets().set_klip_value(klip, &value).await {
        Ok(()) => Ok(value),
        // The Klip grew meanwhile (annotations): the value no longer fits beside it.
        Err(StoreError::TooLarge(_)) if value.error.is_none() => {
            let failed = too_large(&value, crate::store::MAX_ITEM_BYTES);
            state.store.assets().set_klip_value(klip, &failed).await?;
            Ok(failed)
        }
        Err(e) => Err(e.into()),
    }
}

/// `value`, or a Klip error in its place when it would take the Klip's item past
/// [`crate::store::MAX_ITEM_BYTES`].
fn fitted(klip: &Klip, value: KlipValue) -> ApiResult<KlipValue> {
    use crate::store::{attribute_size, item_size, to_attribute, MAX_ITEM_BYTES};
    let size = attribute_size(&to_attribute("value", &value)?);
    if size < MAX_ITEM_BYTES / 2 {
        return Ok(value);
    }
    let mut rest = klip.clone();
    rest.value = None;
    let rest: crate::store::Item = serde_dynamo::to_item(&rest)
        .map_err(|e| ApiError::internal(format!("encoding item: {e}")))?;
    // The key attributes and the value's name come on top.
    let room = MAX_ITEM_BYTES.saturating_sub(item_size(&rest) + 256);
    if size <= room {
        return Ok(value);
    }
    tracing::info!(klip = %klip.meta.id, size, room, "a Klip value too large to store");
    Ok(too_large(&value, size))
}

/// The Klip error stored instead of a value of `size` bytes.
fn too_large(value: &KlipValue, size: usize) -> KlipValue {
    let message = format!(
        "the value is too large to store ({} KB: {} series points, {} groups; a Klip holds at most {} KB): narrow the query with filters, a limit or a coarser time_bucket",
        size.div_ceil(1024),
        value.series.len(),
        value.groups.len(),
        crate::store::MAX_ITEM_BYTES / 1024,
    );
    KlipValue {
        data_version: value.data_version,
        ..KlipValue::failed(message, value.computed_at)
    }
}

/// Recomputes one Klip from its data source's current rows (streamed from storage) and
/// stores the value; a Klip whose data source is gone gets that as its error.
pub async fn recompute_klip(
    state: &AppState,
    klip: &Klip,
    tz: chrono_tz::Tz,
) -> ApiResult<KlipValue> {
    let now = state.clock.now();
    let mut evaluation = Evaluation::start(&klip.query, &klip.display, tz, now, false);
    let data_version = match &klip.datasource_id {
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
                // The progress is read alongside the data and written alongside the value:
                // the worker's next pass then goes on from here (see [`Progress`]).
                let (loaded, mut progress) =
                    tokio::try_join!(load(state, &ds), read_progress(state, &ds))?;
                loaded.each_row(|row| evaluation.feed(row))?;
                drop(loaded);
                let snapshot = evaluation.snapshot().filter(|_| ds.lineage.is_some());
                let mut value = evaluation.finish().value;
                value.data_version = Some(ds.data_version);
                let remember = async {
                    if let Some(snapshot) = snapshot {
                        progress.lineage.clone_from(&ds.lineage);
                        progress.klips.insert(klip.meta.id.clone(), snapshot);
                        save_progress(state, &ds, &progress).await;
                    }
                };
                let (saved, ()) = tokio::join!(save_value(state, klip, value), remember);
                return saved;
            }
            None => {
                let message = format!("data source '{id}' no longer exists");
                return save_value(state, klip, KlipValue::failed(message, now)).await;
            }
        },
        None => None,
    };
    let mut value = evaluation.finish().value;
    value.data_version = data_version;
    save_value(state, klip, value).await
}

/// Recomputes every Klip of the company that uses `ds`, from `table` (the data of
/// `ds.data_version`); with `skip_current`, those whose value was computed from that
/// version already are left as they are (the worker, after an inline recompute).
pub async fn recompute_klips(
    state: &AppState,
    ds: &Datasource,
    table: &domain::data::Table,
    tz: chrono_tz::Tz,
    skip_current: bool,
) -> ApiResult<usize> {
    recompute_klips_with(state, ds, tz, skip_current, |each| {
        table.each_row(each);
        Ok(())
    })
    .await
}

/// [`recompute_klips`] over the rows `feed` hands, in order, to the function it is given
/// (see [`store_values`]); nothing is read when no Klip is due.
pub async fn recompute_klips_with(
    state: &AppState,
    ds: &Datasource,
    tz: chrono_tz::Tz,
    skip_current: bool,
    feed: impl FnOnce(&mut dyn FnMut(&Row)) -> ApiResult<()>,
) -> ApiResult<usize> {
    let due = due_klips(state, ds, skip_current).await?;
    store_values(state, ds, tz, &due, feed).await
}

/// The company's Klips that use `ds`; with `skip_current`, without those whose value was
/// computed from `ds.data_version` already.
pub async fn due_klips(
    state: &AppState,
    ds: &Datasource,
    skip_current: bool,
) -> ApiResult<Vec<Klip>> {
    Ok(klips_using(state, ds)
        .await?
        .into_iter()
        .filter(|k| !skip_current || is_due(k, ds))
        .collect())
}

/// The company's Klips that use `ds`.
pub async fn klips_using(state: &AppState, ds: &Datasource) -> ApiResult<Vec<Klip>> {
    let klips: Vec<Klip> = super::all_of(state, &ds.meta.company_id).await?;
    Ok(klips
        .into_iter()
        .filter(|k| k.datasource_id.as_deref() == Some(ds.meta.id.as_str()))
        .collect())
}

/// Whether `klip` (which uses `ds`) has no value computed from `ds.data_version` yet.
pub fn is_due(klip: &Klip, ds: &Datasource) -> bool {
    klip.value.as_ref().and_then(|v| v.data_version) < Some(ds.data_version)
}

/// Computes `klips` (which use `ds`) over the rows `feed` hands to the function it is given,
/// all in that one pass and each holding only its running aggregates (see [`Evaluation`]),
/// so the rows may stream from storage ([`Loaded::each_row`]); stores the values, at
/// `ds.data_version`. Answers how many.
pub async fn store_values(
    state: &AppState,
    ds: &Datasource,
    tz: chrono_tz::Tz,
    klips: &[Klip],
    feed: impl FnOnce(&mut dyn FnMut(&Row)) -> ApiResult<()>,
) -> ApiResult<usize> {
    if klips.is_empty() {
        return Ok(0);
    }
    let now = state.clock.now();
    let mut evaluations: Vec<Evaluation> = klips
        .iter()
        .map(|k| Evaluation::start(&k.query, &k.display, tz, now, false))
        .collect();
    feed(&mut |row| evaluations.iter_mut().for_each(|e| e.feed(row)))?;
    // The worker's next pass goes on from these (the progress of the other Klips, if any,
    // is dropped: they start over).
    let mut progress = Progress {
        lineage: ds.lineage.clone(),
        klips: BTreeMap::new(),
    };
    let mut saves = Vec::with_capacity(klips.len());
    for (klip, evaluation) in klips.iter().zip(evaluations) {
        if let Some(snapshot) = evaluation.snapshot() {
            progress.klips.insert(klip.meta.id.clone(), snapshot);
        }
        let mut value = evaluation.finish().value;
        value.data_version = Some(ds.data_version);
        saves.push(save_value(state, klip, value));
    }
    let remember = async {
        if ds.lineage.is_some() {
            save_progress(state, ds, &progress).await;
        }
    };
    let (saved, ()) = tokio::join!(futures::future::try_join_all(saves), remember);
    saved?;
    Ok(klips.len())
}

fn progress_key(company: &str, id: &str) -> String {
    format!("{}progress.json", data_prefix(company, id))
}

/// What the worker's passes over a data source leave for the next one: each Klip's
/// evaluation after the rows it had seen (a [`Snapshot`]), for the data's `lineage`. The
/// next pass feeds a Klip only the rows after those, and reads only the segments that hold
/// them, when the Klip's query, time zone and period are still the same and its rows end
/// where a segment starts; otherwise that Klip starts over from every row. A cache: losing
/// it, or a snapshot that does not fit, costs one full pass.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    lineage: Option<String>,
    klips: BTreeMap<String, Snapshot>,
}

/// At most this much progress is kept per data source (a Klip grouped by a column with a
/// distinct text in every row keeps a group per row): above it, the next pass starts over.
const MAX_PROGRESS_BYTES: usize = 4 << 20;

/// The progress kept for the data of `ds` as it is (nothing for another lineage).
pub async fn read_progress(state: &AppState, ds: &Datasource) -> ApiResult<Progress> {
    let Some(lineage) = &ds.lineage else {
        return Ok(Progress::default());
    };
    let key = progress_key(&ds.meta.company_id, &ds.meta.id);
    let Some(bytes) = state.store.files().get(&key).await? else {
        return Ok(Progress::default());
    };
    let progress: Progress = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        tracing::warn!(key, error = %e, "unreadable Klip progress: starting over");
        Progress::default()
    });
    if progress.lineage.as_ref() != Some(lineage) {
        return Ok(Progress::default());
    }
    Ok(progress)
}

/// One worker pass over a data source's rows for the Klips due: each Klip's evaluation and
/// the row it needs next (0: all of them).
pub struct Pass<'k> {
    klips: &'k [Klip],
    evaluations: Vec<(Evaluation<'k>, u64)>,
}

impl<'k> Pass<'k> {
    /// Each of `klips` goes on from its snapshot in `progress` when it can (see
    /// [`Progress`]), or starts over.
    pub fn plan(
        ds: &Datasource,
        tz: chrono_tz::Tz,
        now: chrono::DateTime<chrono::Utc>,
        klips: &'k [Klip],
        progress: &Progress,
    ) -> Self {
        let starts = segment_starts(ds);
        let evaluations = klips
            .iter()
            .map(|k| {
                let resumed = progress
                    .klips
                    .get(&k.meta.id)
                    .filter(|snapshot| starts.contains(&snapshot.rows()))
                    .and_then(|snapshot| {
                        Evaluation::resume(&k.query, &k.display, tz, now, snapshot.clone())
                    });
                match resumed {
                    Some(evaluation) => {
                        let from = evaluation.rows_fed();
                        (evaluation, from)
                    }
                    None => (Evaluation::start(&k.query, &k.display, tz, now, false), 0),
                }
            })
            .collect();
        Pass { klips, evaluations }
    }

    /// The first row some Klip needs (the data's end when none needs any).
    pub fn from(&self, ds: &Datasource) -> u64 {
        self.evaluations
            .iter()
            .map(|(_, from)| *from)
            .min()
            .unwrap_or(ds.row_count)
    }

    /// Feeds each Klip the rows of `loaded` it has not seen, in one pass (rows no Klip needs
    /// are not parsed where they fill the copy or a segment).
    pub fn feed(&mut self, loaded: &Loaded) -> ApiResult<()> {
        let from = self.evaluations.iter().map(|(_, from)| *from).min();
        let Some(from) = from else {
            return Ok(());
        };
        if from < loaded.first_row() {
            return Err(ApiError::internal("a Klip needs rows that were not read"));
        }
        loaded.each_row_from(from, |position, row| {
            for (evaluation, from) in &mut self.evaluations {
                if position >= *from {
                    evaluation.feed(row);
                }
            }
        })
    }

    /// Stores every Klip's value, at `ds.data_version`, and the progress for the next pass
    /// (keeping what `progress` held for the Klips in `keep`, the others using `ds`);
    /// answers how many values.
    pub async fn store(
        self,
        state: &AppState,
        ds: &Datasource,
        keep: &[String],
        mut progress: Progress,
    ) -> ApiResult<usize> {
        let mut values = Vec::with_capacity(self.klips.len());
        let mut snapshots = BTreeMap::new();
        for (klip, (evaluation, _)) in self.klips.iter().zip(self.evaluations) {
            if ds.lineage.is_some() {
                if let Some(snapshot) = evaluation.snapshot() {
                    snapshots.insert(klip.meta.id.clone(), snapshot);
                }
            }
            let mut value = evaluation.finish().value;
            value.data_version = Some(ds.data_version);
            values.push(save_value(state, klip, value));
        }
        futures::future::try_join_all(values).await?;
        if ds.lineage.is_some() && !snapshots.is_empty() {
            progress.klips.retain(|id, _| keep.contains(id));
            progress.klips.extend(snapshots);
            progress.lineage.clone_from(&ds.lineage);
            save_progress(state, ds, &progress).await;
        }
        Ok(self.klips.len())
    }
}

/// Writes the progress (a cache: a failure is only logged, and the next pass starts over).
async fn save_progress(state: &AppState, ds: &Datasource, progress: &Progress) {
    let key = progress_key(&ds.meta.company_id, &ds.meta.id);
    let files = state.store.files();
    let written = match serde_json::to_vec(progress) {
        Ok(bytes) if bytes.len() <= MAX_PROGRESS_BYTES => {
            files.put(&key, "application/json", bytes).await
        }
        // Too large to be worth reading back: none, so no stale one is resumed either.
        Ok(_) => files.delete(&key).await,
        Err(e) => Err(StoreError::failed("encoding the progress", e)),
    };
    if let Err(e) = written {
        tracing::warn!(key, error = %e, "saving Klip progress");
    }
}

/// A data file nothing has referenced for this long is an orphan, left by a write that
/// stopped between storing its file and committing it (a crash, a timeout, a lost
/// connection): the sweep deletes it. Far longer than any write may take (a request's
/// deadline is under 30 s, the worker's timeout 150 s).
pub const ORPHAN_AFTER_SECS: i64 = 3600;
/// The files one sweep looks at (one `ListObjectsV2` page).
const SWEEP_PAGE: i32 = 1000;

/// Where the sweep goes on from (the last key it looked at; none: the start).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct SweepCursor {
    after: Option<String>,
}

/// What a data file's key names: its data source, and the copy or segment it belongs to.
#[derive(Debug, PartialEq, Eq)]
enum DataFile<'a> {
    Copy {
        company: &'a str,
        id: &'a str,
        data_id: &'a str,
    },
    Segment {
        company: &'a str,
        id: &'a str,
        segment: &'a str,
    },
}

impl<'a> DataFile<'a> {
    /// Reads a key written by [`store`] or [`store_segment`]; other files are not data.
    fn parse(key: &'a str) -> Option<Self> {
        let parts: Vec<&str> = key.split('/').collect();
        match parts.as_slice() {
            [company, "datasources", id, "segments", segment, "raw"] => Some(DataFile::Segment {
                company,
                id,
                segment,
            }),
            [company, "datasources", id, data_id, "raw" | "rows.json"] => Some(DataFile::Copy {
                company,
                id,
                data_id,
            }),
            _ => None,
        }
    }

    fn source(&self) -> (&'a str, &'a str) {
        match self {
            DataFile::Copy { company, id, .. } | DataFile::Segment { company, id, .. } => {
                (company, id)
            }
        }
    }

    /// Whether the data source's item (if it still exists) points at this file.
    fn referenced_by(&self, ds: Option<&Datasource>) -> bool {
        let Some(ds) = ds else { return false };
        match self {
            DataFile::Copy { data_id, .. } => {
                ds.data_id.as_deref() == Some(data_id)
                    || ds.previous_data_id.as_deref() == Some(data_id)
            }
            DataFile::Segment { segment, .. } => {
                ds.segments.iter().any(|s| s.id == *segment)
                    || ds.retired_segments.iter().any(|s| s == segment)
            }
        }
    }
}

/// One step of the sweep of orphan data files, over the whole bucket (run by the worker's
/// tick): see [`sweep_under`].
pub async fn sweep(state: &AppState, now: chrono::DateTime<chrono::Utc>) -> ApiResult<Swept> {
    sweep_under(state, now, "").await
}

/// What one step of a sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Orphan files deleted.
    pub deleted: usize,
    /// Whether this step reached the last file (the next one starts over).
    pub finished: bool,
}

/// One step of the sweep of orphan data files under `prefix`: looks at the next page of
/// files, deletes the data files that no data source item references and that are older
/// than [`ORPHAN_AFTER_SECS`], and remembers where to go on from (back to the start after the
/// last page).
///
/// A file older than that which no item references can never become referenced: writes
/// commit only the files they stored themselves, within their deadline.
pub async fn sweep_under(
    state: &AppState,
    now: chrono::DateTime<chrono::Utc>,
    prefix: &str,
) -> ApiResult<Swept> {
    let cursor_key = crate::store::keys::sweep_cursor(prefix);
    let cursor: SweepCursor = state.store.get(&cursor_key).await?.unwrap_or_default();
    let files = state.store.files();
    let (listed, next) = files
        .list_after(prefix, cursor.after.as_deref(), SWEEP_PAGE)
        .await?;
    let cutoff = now - chrono::Duration::seconds(ORPHAN_AFTER_SECS);
    let old: Vec<(&str, DataFile)> = listed
        .iter()
        .filter(|f| f.written.is_some_and(|t| t < cutoff))
        .filter_map(|f| DataFile::parse(&f.key).map(|d| (f.key.as_str(), d)))
        .collect();
    let mut sources: Vec<(&str, &str)> = old.iter().map(|(_, d)| d.source()).collect();
    sources.sort_unstable();
    sources.dedup();
    let keys: Vec<crate::store::Key> = sources
        .iter()
        .map(|(company, id)| {
            crate::store::keys::asset(domain::asset::Kind::Datasource, company, id)
        })
        .collect();
    let items = state.store.get_many(&keys).await?;
    let mut found: std::collections::HashMap<(&str, &str), Datasource> = Default::default();
    for (source, item) in sources.iter().zip(items) {
        if let Some(item) = item {
            found.insert(*source, crate::store::from_item(item)?);
        }
    }
    let orphans: Vec<String> = old
        .iter()
        .filter(|(_, file)| !file.referenced_by(found.get(&file.source())))
        .map(|(key, _)| (*key).to_owned())
        .collect();
    let mut deleted = 0;
    // Sixteen at a time (join_all over chunks: a stream of borrowing futures would not be
    // `Send` for the worker's spawned tasks).
    for chunk in orphans.chunks(16) {
        let results = futures::future::join_all(chunk.iter().map(|key| files.delete(key))).await;
        for (key, result) in chunk.iter().zip(results) {
            match result {
                Ok(()) => {
                    deleted += 1;
                    tracing::info!(key, "deleted an orphan data file");
                }
                Err(e) => tracing::warn!(key, error = %e, "deleting an orphan data file"),
            }
        }
    }
    let finished = next.is_none();
    state
        .store
        .put(&cursor_key, &SweepCursor { after: next })
        .await?;
    Ok(Swept { deleted, finished })
}

#[cfg(test)]
mod tests {
    use super::DataFile;

    #[test]
    fn data_file_keys_name_their_source_and_part() {
        assert_eq!(
            DataFile::parse("c1/datasources/d1/x9/raw"),
            Some(DataFile::Copy {
                company: "c1",
                id: "d1",
                data_id: "x9"
            })
        );
        assert_eq!(
            DataFile::parse("c1/datasources/d1/x9/rows.json").map(|d| d.source()),
            Some(("c1", "d1"))
        );
        assert_eq!(
            DataFile::parse("c1/datasources/d1/segments/s7/raw"),
            Some(DataFile::Segment {
                company: "c1",
                id: "d1",
                segment: "s7"
            })
        );
        // report files and anything else are not data files
        for key in [
            "c1/reports/r1/run1.pdf",
            "c1/datasources/d1/x9/other",
            "c1/datasources/d1/segments/s7/raw/extra",
        ] {
            assert_eq!(DataFile::parse(key), None, "{key}");
        }
    }
}
