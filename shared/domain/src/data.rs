//! Data source data as tables: parsing pushed or fetched CSV or JSON (with precise errors
//! naming the line or field), inferring column types, and writing a table back as a file.
//! Where the files are kept is the platform's business.

use crate::error::DataError;
use crate::records::Column;
use crate::sets::{ColumnType, Format};
use serde_json::{Map, Number, Value};

type DataResult<T> = Result<T, DataError>;

/// The most columns a data source has.
pub const MAX_COLUMNS: usize = 500;
/// The longest column name.
pub const MAX_COLUMN_NAME: usize = 128;

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
pub fn format_of(content_type: Option<&str>) -> DataResult<Format> {
    let essence = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/csv" | "application/csv" => Ok(Format::Csv),
        e if is_json_media_type(e) => Ok(Format::Json),
        "" => Err(DataError::UnsupportedMediaType(
            "missing Content-Type; send text/csv or application/json".into(),
        )),
        other => Err(DataError::UnsupportedMediaType(format!(
            "content type '{other}' is not supported; send text/csv or application/json"
        ))),
    }
}

/// Parses a CSV or JSON body into a table.
pub fn parse(format: Format, bytes: &[u8]) -> DataResult<Table> {
    let (names, rows) = match format {
        Format::Csv => parse_csv(bytes)?,
        Format::Json => parse_json(bytes)?,
    };
    Ok(Table {
        columns: infer_columns(&names, &rows),
        rows,
    })
}

fn bad(message: String) -> DataError {
    DataError::Invalid(message)
}

/// RFC 4180 quoting, which the `csv` crate forgives: a quote inside an unquoted field, text
/// after a closing quote, or a quote never closed is a 400 naming its line.
fn check_quotes(bytes: &[u8]) -> DataResult<()> {
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

fn parse_csv(bytes: &[u8]) -> DataResult<(Vec<String>, Vec<Row>)> {
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
    // The columns are kept on the data source's database item (400 KB in all).
    if headers.len() > MAX_COLUMNS {
        return Err(bad(format!(
            "line 1: {} columns; a data source has at most {MAX_COLUMNS}",
            headers.len()
        )));
    }
    for (i, name) in headers.iter().enumerate() {
        if name.chars().count() > MAX_COLUMN_NAME {
            return Err(bad(format!(
                "line 1: column {} has a name longer than {MAX_COLUMN_NAME} characters",
                i + 1
            )));
        }
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

fn parse_json(bytes: &[u8]) -> DataResult<(Vec<String>, Vec<Row>)> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| DataError::InvalidJson(format!("data is not valid JSON: {e}")))?;
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
            if names.len() > MAX_COLUMNS {
                return Err(bad(format!(
                    "row 1: {} fields; a data source has at most {MAX_COLUMNS} columns",
                    names.len()
                )));
            }
            if let Some(long) = names.iter().find(|n| n.chars().count() > MAX_COLUMN_NAME) {
                let shown: String = long.chars().take(40).collect();
                return Err(bad(format!(
                    "row 1: field '{shown}…' has a name longer than {MAX_COLUMN_NAME} characters"
                )));
            }
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
                ColumnType::Number
            } else if all(&|v| v.is_boolean()) {
                ColumnType::Boolean
            } else if all(&|v| v.as_str().is_some_and(looks_like_time)) {
                ColumnType::Datetime
            } else {
                ColumnType::Text
            };
            Column {
                name: name.clone(),
                kind,
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
pub fn check_same_columns(existing: &[Column], new: &[Column], format: Format) -> DataResult<()> {
    let a: Vec<&str> = existing.iter().map(|c| c.name.as_str()).collect();
    let b: Vec<&str> = new.iter().map(|c| c.name.as_str()).collect();
    let same = if format == Format::Csv {
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

/// The file `old` with the rows of the file `new` appended, both in `format`: for CSV the
/// records of `new` without its header (a line break first if `old` does not end with one),
/// for JSON the two arrays joined as text (both trimmed). Each file keeps its rows as
/// written. An `old` without rows is replaced by `new`.
pub fn splice(format: Format, old: &[u8], old_rows: u64, new: &[u8]) -> Vec<u8> {
    if old_rows == 0 {
        return new.to_vec();
    }
    match format {
        Format::Csv => {
            let mut out = old.to_vec();
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(csv_records(new));
            out
        }
        Format::Json => {
            let (old, new) = (old.trim_ascii(), new.trim_ascii());
            match (old.strip_suffix(b"]"), new.strip_prefix(b"[")) {
                (Some(old), Some(new)) => {
                    let mut out = Vec::with_capacity(old.len() + new.len() + 1);
                    out.extend_from_slice(old);
                    out.push(b',');
                    out.extend_from_slice(new);
                    out
                }
                _ => old.to_vec(),
            }
        }
    }
}

/// The records of a CSV file: what follows its header line.
fn csv_records(file: &[u8]) -> &[u8] {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(file);
    let start = match reader.headers() {
        Ok(_) => (reader.position().byte() as usize).min(file.len()),
        Err(_) => file.len(),
    };
    &file[start..]
}

/// What [`splice`] does at the end of a file with rows, as one number: for CSV 1 when the
/// file does not end with a line break (the next splice adds one), else 0; for JSON the
/// whitespace around the array (the next splice trims it).
pub fn raw_edge(format: Format, raw: &[u8]) -> u64 {
    match format {
        Format::Csv => u64::from(!raw.is_empty() && !raw.ends_with(b"\n")),
        Format::Json => (raw.len() - raw.trim_ascii().len()) as u64,
    }
}

/// How [`splice`]-ing `new` onto a file with rows whose [`raw_edge`] is `edge` changes its
/// length, and the edge after; so an append can keep `data_size` exact without reading the
/// file.
pub fn appended_size(format: Format, edge: u64, new: &[u8]) -> (i64, u64) {
    match format {
        Format::Csv => {
            let records = csv_records(new);
            let added = records.len() as i64 + if edge == 1 { 2 } else { 0 };
            (added, raw_edge(format, records))
        }
        Format::Json => (new.trim_ascii().len() as i64 - 1 - edge as i64, 0),
    }
}

/// Appended rows must not change a column's type: a cell that makes a number, datetime or
/// boolean column anything else is refused, naming the column. Columns whose new cells are
/// all empty take any type.
pub fn check_same_types(existing: &[Column], names: &[String], new_rows: &[Row]) -> DataResult<()> {
    for column in existing {
        if column.kind == ColumnType::Text || !names.contains(&column.name) {
            continue;
        }
        let new = infer_columns(std::slice::from_ref(&column.name), new_rows);
        let has_cells = new_rows
            .iter()
            .any(|r| r.get(&column.name).is_some_and(|v| !v.is_null()));
        if has_cells && new[0].kind != column.kind {
            return Err(bad(format!(
                "column '{}' holds {} values; the appended rows have {} values in it",
                column.name,
                column.kind.as_str(),
                new[0].kind.as_str()
            )));
        }
    }
    Ok(())
}

/// True for `application/json` and any `application/*+json` (the date-versioned types).
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The media type of a format, as stored and served.
pub fn media_type(format: Format) -> &'static str {
    format.media_type()
}

/// A table as a file of `format` (when the format changes, or fetched CSV feeds a JSON
/// source).
pub fn encode(format: Format, table: &Table) -> Result<Vec<u8>, String> {
    if format != Format::Csv {
        return serde_json::to_vec(&table.rows).map_err(|e| e.to_string());
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| format!("writing CSV: {e}");
    writer
        .write_record(table.columns.iter().map(|c| c.name.as_str()))
        .map_err(fail)?;
    for row in &table.rows {
        let cells = table.columns.iter().map(|c| match row.get(&c.name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        });
        writer.write_record(cells).map_err(fail)?;
    }
    writer.into_inner().map_err(|e| format!("writing CSV: {e}"))
}

/// The time zone Klip ranges use: the company's, or America/New_York.
pub fn timezone(name: Option<&str>) -> chrono_tz::Tz {
    name.and_then(|n| n.parse().ok())
        .unwrap_or(chrono_tz::America::New_York)
}

#[cfg(test)]
mod splice_tests {
    use super::*;

    /// Splices `appends` onto `first` and checks that [`appended_size`] predicted each length
    /// and the rows all parse.
    fn check(format: Format, first: &[u8], appends: &[&[u8]], rows: usize) {
        let mut file = first.to_vec();
        let mut size = file.len() as i64;
        let mut edge = raw_edge(format, &file);
        for new in appends {
            let (added, after) = appended_size(format, edge, new);
            file = splice(format, &file, 1, new);
            size += added;
            edge = after;
            assert_eq!(
                size,
                file.len() as i64,
                "{}",
                String::from_utf8_lossy(&file)
            );
            assert_eq!(
                edge,
                raw_edge(format, &file),
                "{}",
                String::from_utf8_lossy(&file)
            );
        }
        assert_eq!(parse(format, &file).unwrap().rows.len(), rows);
    }

    #[test]
    fn csv_sizes_follow_the_splice() {
        check(
            Format::Csv,
            b"a,b\n1,2\n",
            &[b"a,b\n3,4\n", b"a,b\r\n5,6"],
            3,
        );
        check(
            Format::Csv,
            b"a,b\r\n1,2",
            &[b"\"a\",b\r\n3,4", b"a,b\n5,6\n7,8\n"],
            4,
        );
        let out = splice(Format::Csv, b"a,b\n1,2\n", 1, b"a,b\n3,4\n5,6\n");
        assert_eq!(out, b"a,b\n1,2\n3,4\n5,6\n");
    }

    #[test]
    fn json_sizes_follow_the_splice() {
        check(
            Format::Json,
            b"  [{\"a\":1}]\n\n",
            &[b" [{\"a\":2}, {\"a\":3}]\n", b"[{\"a\":4}]"],
            4,
        );
        assert_eq!(
            splice(Format::Json, b"[]", 0, b"[{\"a\":1}]"),
            b"[{\"a\":1}]"
        );
    }

    #[test]
    fn appended_types_must_match() {
        let existing = parse(Format::Csv, b"day,n,who\n2026-01-01,1,a\n").unwrap();
        let ok = parse(Format::Csv, b"day,n,who\n2026-01-02,,7\n").unwrap();
        let names: Vec<String> = existing.columns.iter().map(|c| c.name.clone()).collect();
        check_same_types(&existing.columns, &names, &ok.rows).unwrap();
        let bad = parse(Format::Csv, b"day,n,who\n2026-01-02,many,b\n").unwrap();
        let err = check_same_types(&existing.columns, &names, &bad.rows).unwrap_err();
        assert!(err.to_string().contains("column 'n'"), "{err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_types_and_errors() {
        let t = parse(
            Format::Csv,
            b"date,region,sales,ok\n2026-11-01,EMEA,10.5,true\n2026-11-02,APAC,,false\n",
        )
        .unwrap();
        let kinds: Vec<&str> = t.columns.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(kinds, ["datetime", "text", "number", "boolean"]);
        assert_eq!(t.rows[0]["sales"], serde_json::json!(10.5));
        assert!(t.rows[1]["sales"].is_null());
        let err = parse(Format::Csv, b"a,b\n1,2\n3,4,5\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        assert!(parse(Format::Csv, b"a,a\n1,2\n")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(parse(Format::Csv, b"").is_err());
        // Quoting mistakes the csv crate would forgive.
        for (body, line) in [
            (&b"a,\"b\n1,2\n"[..], "line 1"),
            (b"a,b\n1,\"open\n", "line 2"),
            (b"a,b\n1,x\"y\"z\n", "line 2"),
            (b"a,b\n1,\"x\"y\n", "line 2"),
        ] {
            let err = parse(Format::Csv, body).unwrap_err().to_string();
            assert!(err.contains(line), "{err}");
        }
        let ok = parse(Format::Csv, b"a,b\n1,\"x, \"\"quoted\"\"\nnext line\"\n").unwrap();
        assert_eq!(
            ok.rows[0]["b"],
            serde_json::json!("x, \"quoted\"\nnext line")
        );
    }

    #[test]
    fn json_rows_must_agree() {
        let t = parse(Format::Json, br#"[{"a":1,"b":"x"},{"b":"y","a":2}]"#).unwrap();
        assert_eq!(t.columns.len(), 2);
        assert!(parse(Format::Json, br#"[{"a":1},{"b":2}]"#)
            .unwrap_err()
            .to_string()
            .contains("row 2"));
        assert!(parse(Format::Json, br#"[{"a":{"x":1}}]"#)
            .unwrap_err()
            .to_string()
            .contains("field 'a'"));
        assert!(matches!(
            parse(Format::Json, b"[{"),
            Err(DataError::InvalidJson(_))
        ));
        assert!(parse(Format::Json, br#"{"a":1}"#).is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(
            format_of(Some("text/csv; charset=utf-8")).unwrap(),
            Format::Csv
        );
        assert_eq!(format_of(Some("application/json")).unwrap(), Format::Json);
        assert!(matches!(
            format_of(Some("text/plain")),
            Err(DataError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn too_many_or_too_long_columns_are_refused_naming_the_line() {
        let wide: Vec<String> = (0..=MAX_COLUMNS).map(|i| format!("c{i}")).collect();
        let csv = format!("{}\n", wide.join(","));
        let err = parse(Format::Csv, csv.as_bytes()).unwrap_err().to_string();
        assert!(
            err.starts_with("line 1:") && err.contains("at most 500"),
            "{err}"
        );
        let long = "x".repeat(MAX_COLUMN_NAME + 1);
        let err = parse(Format::Csv, format!("a,{long}\n1,2\n").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("column 2") && err.contains("longer than 128"),
            "{err}"
        );
        let json = format!("[{{\"{long}\": 1}}]");
        let err = parse(Format::Json, json.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("row 1:"), "{err}");
    }
}
