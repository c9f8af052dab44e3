//! Data source data: parsing pushed CSV or JSON (with precise errors naming the line or
//! field), inferring column types, keeping the raw file and the parsed rows in S3, and
//! recomputing the Klips that use a data source when its data changes.

use super::records::{Column, Datasource, Klip};
use super::Asset;
use crate::error::{ApiError, ApiResult};
use crate::klip::{evaluate, KlipValue};
use crate::state::AppState;
use crate::store::db_error;
use serde_json::{Map, Number, Value};

/// Pushed data above this is refused with 413, and so is data that would grow past it.
pub const MAX_DATA_BYTES: usize = 5 * 1024 * 1024;

pub type Row = Map<String, Value>;

/// Parsed data: its columns (with inferred types) and its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
}

/// `csv` or `json` from a request's Content-Type; 415 for anything else.
pub fn format_of(content_type: Option<&str>) -> ApiResult<&'static str> {
    let essence = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/csv" | "application/csv" => Ok("csv"),
        e if crate::extract::is_json_media_type(e) => Ok("json"),
        "" => Err(ApiError::UnsupportedMediaType(
            "missing Content-Type; send text/csv or application/json".into(),
        )),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "content type '{other}' is not supported; send text/csv or application/json"
        ))),
    }
}

/// Parses a CSV or JSON body into a table.
pub fn parse(format: &str, bytes: &[u8]) -> ApiResult<Table> {
    let (names, rows) = match format {
        "csv" => parse_csv(bytes)?,
        _ => parse_json(bytes)?,
    };
    Ok(Table {
        columns: infer_columns(&names, &rows),
        rows,
    })
}

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// RFC 4180 quoting, which the `csv` crate forgives: a quote inside an unquoted field, text
/// after a closing quote, or a quote never closed is a 400 naming its line.
fn check_quotes(bytes: &[u8]) -> ApiResult<()> {
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    let (mut line, mut opened_at) = (1usize, 1usize);
    for &b in bytes {
        state = match (state, b) {
            (State::FieldStart, b'"') => {
                opened_at = line;
                State::Quoted
            }
            (State::FieldStart | State::Unquoted, b',' | b'\r') => State::FieldStart,
            (State::FieldStart | State::Unquoted, b'\n') => {
                line += 1;
                State::FieldStart
            }
            (State::Unquoted, b'"') => {
                return Err(bad(format!("line {line}: a quote inside an unquoted field (quote the whole field and double the quote)")))
            }
            (State::FieldStart | State::Unquoted, _) => State::Unquoted,
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, b'\n') => {
                line += 1;
                State::Quoted
            }
            (State::Quoted, _) => State::Quoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (State::QuoteInQuoted, b',' | b'\r') => State::FieldStart,
            (State::QuoteInQuoted, b'\n') => {
                line += 1;
                State::FieldStart
            }
            (State::QuoteInQuoted, _) => {
                return Err(bad(format!("line {line}: text after a closing quote")))
            }
        };
    }
    if state == State::Quoted {
        return Err(bad(format!(
            "line {opened_at}: a quoted field is never closed"
        )));
    }
    Ok(())
}

fn parse_csv(bytes: &[u8]) -> ApiResult<(Vec<String>, Vec<Row>)> {
    check_quotes(bytes)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| bad(format!("CSV header: {e}")))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect::<Vec<_>>();
    if headers.is_empty() || headers.iter().all(String::is_empty) {
        return Err(bad("CSV has no header row".into()));
    }
    for (i, name) in headers.iter().enumerate() {
        if name.is_empty() {
            return Err(bad(format!("line 1: column {} has no name", i + 1)));
        }
        if headers[..i].contains(name) {
            return Err(bad(format!("line 1: column '{name}' appears twice")));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => bad(format!(
                    "line {line}: expected {expected_len} fields like the header, found {len}"
                )),
                csv::ErrorKind::Utf8 { .. } => bad(format!("line {line}: not valid UTF-8")),
                _ => bad(format!("line {line}: {e}")),
            }
        })?;
        let mut row = Row::new();
        for (name, cell) in headers.iter().zip(record.iter()) {
            row.insert(name.clone(), typed_cell(cell));
        }
        rows.push(row);
    }
    Ok((headers, rows))
}

/// A CSV cell as JSON: numbers and booleans typed, empty as null, the rest text.
fn typed_cell(cell: &str) -> Value {
    let trimmed = cell.trim();
    if trimmed.is_empty() {
        return Value::Null;
    }
    if let Some(n) = as_number(trimmed) {
        return Value::Number(n);
    }
    match trimmed.to_ascii_lowercase().as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(cell.to_owned()),
    }
}

fn as_number(text: &str) -> Option<Number> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Number::from(i));
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .and_then(Number::from_f64)
}

fn parse_json(bytes: &[u8]) -> ApiResult<(Vec<String>, Vec<Row>)> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidJson(format!("data is not valid JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(bad("JSON data must be an array of objects".into()));
    };
    let mut names: Vec<String> = Vec::new();
    let mut rows = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let index = i + 1;
        let Value::Object(row) = item else {
            return Err(bad(format!("row {index}: must be an object")));
        };
        if i == 0 {
            names = row.keys().cloned().collect();
        } else {
            if let Some(missing) = names.iter().find(|n| !row.contains_key(*n)) {
                return Err(bad(format!("row {index}: field '{missing}' is missing (every row needs the fields of row 1)")));
            }
            if let Some(extra) = row.keys().find(|k| !names.contains(k)) {
                return Err(bad(format!("row {index}: field '{extra}' is not in row 1")));
            }
        }
        if let Some((field, _)) = row.iter().find(|(_, v)| v.is_object() || v.is_array()) {
            return Err(bad(format!(
                "row {index}: field '{field}' must be a string, number, boolean or null"
            )));
        }
        rows.push(row);
    }
    Ok((names, rows))
}

/// The type of each column from its non-empty cells: number, datetime, boolean or text.
pub fn infer_columns(names: &[String], rows: &[Row]) -> Vec<Column> {
    names
        .iter()
        .map(|name| {
            let cells: Vec<&Value> = rows
                .iter()
                .filter_map(|r| r.get(name))
                .filter(|v| !v.is_null())
                .collect();
            let all = |f: &dyn Fn(&Value) -> bool| !cells.is_empty() && cells.iter().all(|v| f(v));
            let kind = if all(&|v| {
                v.is_number() || v.as_str().is_some_and(|s| as_number(s.trim()).is_some())
            }) {
                "number"
            } else if all(&|v| v.is_boolean()) {
                "boolean"
            } else if all(&|v| v.as_str().is_some_and(looks_like_time)) {
                "datetime"
            } else {
                "text"
            };
            Column {
                name: name.clone(),
                kind: kind.into(),
            }
        })
        .collect()
}

fn looks_like_time(text: &str) -> bool {
    let t = text.trim();
    chrono::DateTime::parse_from_rfc3339(t).is_ok()
        || chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok()
        || chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").is_ok()
        || chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M").is_ok()
        || chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").is_ok()
}

/// Appending needs the same columns, by name (and for CSV in the same order).
pub fn check_same_columns(existing: &[Column], new: &[Column], format: &str) -> ApiResult<()> {
    let a: Vec<&str> = existing.iter().map(|c| c.name.as_str()).collect();
    let b: Vec<&str> = new.iter().map(|c| c.name.as_str()).collect();
    let same = if format == "csv" {
        a == b
    } else {
        let (mut a2, mut b2) = (a.clone(), b.clone());
        a2.sort();
        b2.sort();
        a2 == b2
    };
    if same || existing.is_empty() {
        Ok(())
    } else {
        Err(bad(format!(
            "appended rows must have the columns [{}], not [{}]",
            a.join(", "),
            b.join(", ")
        )))
    }
}

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
    let s3 = &state.store.s3;
    let bucket = &state.store.bucket;
    let content_type = if ds.format == "csv" {
        "text/csv"
    } else {
        "application/json"
    };
    let rows_json = serde_json::to_vec(rows)?;
    let (company, id) = (&ds.meta.company_id, &ds.meta.id);
    let data_id = crate::ids::new_id();
    let raw_put = s3
        .put_object()
        .bucket(bucket)
        .key(raw_key(company, id, &data_id))
        .content_type(content_type)
        .body(raw.into())
        .send();
    let rows_put = s3
        .put_object()
        .bucket(bucket)
        .key(rows_key(company, id, &data_id))
        .content_type("application/json")
        .body(rows_json.into())
        .send();
    let (a, b) = tokio::join!(raw_put, rows_put);
    if let Err(e) = a
        .map_err(|e| db_error("PutObject", e))
        .and(b.map_err(|e| db_error("PutObject", e)))
    {
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
        if let Err(e) = state
            .store
            .s3
            .delete_object()
            .bucket(&state.store.bucket)
            .key(&key)
            .send()
            .await
        {
            tracing::warn!(key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "discarding data");
        }
    }
}

/// Deletes a copy a commit pushed out, unless the item still points at it.
pub async fn discard_unless_current(state: &AppState, ds: &Datasource, data_id: &str) {
    if ds.data_id.as_deref() != Some(data_id) && ds.previous_data_id.as_deref() != Some(data_id) {
        discard(state, ds, data_id).await;
    }
}

/// Deletes every stored copy of a data source (when the data source itself goes).
async fn delete_all(state: &AppState, ds: &Datasource) -> ApiResult<()> {
    let prefix = data_prefix(&ds.meta.company_id, &ds.meta.id);
    let listed = state
        .store
        .s3
        .list_objects_v2()
        .bucket(&state.store.bucket)
        .prefix(&prefix)
        .send()
        .await
        .map_err(|e| db_error("ListObjectsV2", e))?;
    for key in listed
        .contents
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| o.key)
    {
        state
            .store
            .s3
            .delete_object()
            .bucket(&state.store.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| db_error("DeleteObject", e))?;
    }
    Ok(())
}

async fn read_object(state: &AppState, key: &str) -> ApiResult<Option<Vec<u8>>> {
    match state
        .store
        .s3
        .get_object()
        .bucket(&state.store.bucket)
        .key(key)
        .send()
        .await
    {
        Ok(out) => {
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| ApiError::Unavailable(format!("reading data: {e}")))?;
            Ok(Some(bytes.into_bytes().to_vec()))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(db_error("GetObject", e)),
    }
}

/// The parsed rows of a data source (none yet: empty).
pub async fn rows(state: &AppState, ds: &Datasource) -> ApiResult<Vec<Row>> {
    let Some(data_id) = &ds.data_id else {
        return Ok(Vec::new());
    };
    match read_object(state, &rows_key(&ds.meta.company_id, &ds.meta.id, data_id)).await? {
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
    read_object(state, &raw_key(&ds.meta.company_id, &ds.meta.id, data_id)).await
}

/// Removes every stored copy of a data source's data.
pub async fn forget(state: &AppState, ds: &Datasource) -> ApiResult<()> {
    delete_all(state, ds).await
}

/// The time zone Klip ranges use: the company's, or America/New_York.
pub fn timezone(name: Option<&str>) -> chrono_tz::Tz {
    name.and_then(|n| n.parse().ok())
        .unwrap_or(chrono_tz::America::New_York)
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
    let item = serde_dynamo::to_attribute_value(&value)
        .map_err(|e| ApiError::internal(format!("encoding value: {e}")))?;
    let result = state
        .store
        .db
        .update_item()
        .table_name(&state.store.table)
        .set_key(Some(
            Klip::KIND
                .key(&klip.meta.company_id, &klip.meta.id)
                .to_item(),
        ))
        .update_expression("SET #value = :value")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_names("#value", "value")
        .expression_attribute_values(":value", item)
        .send()
        .await;
    match result {
        Ok(_) => Ok(value),
        // Deleted meanwhile: nothing to store.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(value)
        }
        Err(e) => Err(db_error("UpdateItem", e)),
    }
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
            .get::<Datasource>(Datasource::KIND.key(&klip.meta.company_id, id))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_types_and_errors() {
        let t = parse(
            "csv",
            b"date,region,sales,ok\n2026-11-01,EMEA,10.5,true\n2026-11-02,APAC,,false\n",
        )
        .unwrap();
        let kinds: Vec<&str> = t.columns.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["datetime", "text", "number", "boolean"]);
        assert_eq!(t.rows[0]["sales"], serde_json::json!(10.5));
        assert!(t.rows[1]["sales"].is_null());
        let err = parse("csv", b"a,b\n1,2\n3,4,5\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(parse("csv", b"a,a\n1,2\n")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(parse("csv", b"").is_err());
        // Quoting mistakes the csv crate would forgive.
        for (body, line) in [
            (&b"a,\"b\n1,2\n"[..], "line 1"),
            (b"a,b\n1,\"open\n", "line 2"),
            (b"a,b\n1,x\"y\"z\n", "line 2"),
            (b"a,b\n1,\"x\"y\n", "line 2"),
        ] {
            let err = parse("csv", body).unwrap_err().to_string();
            assert!(err.contains(line), "{err}");
        }
        let ok = parse("csv", b"a,b\n1,\"x, \"\"quoted\"\"\nnext line\"\n").unwrap();
        assert_eq!(
            ok.rows[0]["b"],
            serde_json::json!("x, \"quoted\"\nnext line")
        );
    }

    #[test]
    fn json_rows_must_agree() {
        let t = parse("json", br#"[{"a":1,"b":"x"},{"b":"y","a":2}]"#).unwrap();
        assert_eq!(t.columns.len(), 2);
        assert!(parse("json", br#"[{"a":1},{"b":2}]"#)
            .unwrap_err()
            .to_string()
            .contains("row 2"));
        assert!(parse("json", br#"[{"a":{"x":1}}]"#)
            .unwrap_err()
            .to_string()
            .contains("field 'a'"));
        assert!(matches!(
            parse("json", b"[{"),
            Err(ApiError::InvalidJson(_))
        ));
        assert!(parse("json", br#"{"a":1}"#).is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_of(Some("text/csv; charset=utf-8")).unwrap(), "csv");
        assert_eq!(format_of(Some("application/json")).unwrap(), "json");
        assert!(matches!(
            format_of(Some("text/plain")),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}
