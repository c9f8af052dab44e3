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

/// Parsed data: its columns (with inferred types) and its rows, kept as they are stored (a
/// JSON array of objects, [`each_stored_row`]) rather than as parsed rows: a parsed row
/// costs many times its text, so a 5 MiB body never becomes hundreds of MiB of rows. The
/// rows are handed out one at a time ([`Table::each_row`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<Column>,
    /// Per column: whether some row has a non-null cell in it.
    filled: Vec<bool>,
    row_count: u64,
    stored: Vec<u8>,
}

impl Table {
    /// A table of `rows`, their columns named `names` (types inferred).
    pub fn from_rows(names: &[String], rows: &[Row]) -> Table {
        let mut builder = Builder::new(names.to_vec());
        rows.iter().for_each(|row| builder.push(row));
        builder.finish()
    }

    /// A table of stored rows (as [`Table::stored_rows`] gives them) whose columns are known.
    pub fn from_stored(columns: Vec<Column>, stored: Vec<u8>) -> Result<Table, String> {
        let mut filled = vec![false; columns.len()];
        let row_count = each_stored_row(&stored, |row| {
            for (column, filled) in columns.iter().zip(&mut filled) {
                *filled = *filled || row.get(&column.name).is_some_and(|v| !v.is_null());
            }
        })?;
        Ok(Table {
            columns,
            filled,
            row_count,
            stored,
        })
    }

    pub fn row_count(&self) -> u64 {
        self.row_count
    }

    /// The rows as stored: a JSON array of objects.
    pub fn stored_rows(&self) -> &[u8] {
        &self.stored
    }

    /// Hands every row to `each`, in order, one parsed row at a time.
    pub fn each_row(&self, each: impl FnMut(&Row)) {
        // Written by this module from parsed rows: it reads back.
        let _ = each_stored_row(&self.stored, each);
    }

    /// Every row, parsed (for a small table: a page, a test).
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        self.each_row(|row| rows.push(row.clone()));
        rows
    }
}

/// Builds a [`Table`] one row at a time: the row is written out as stored and its cells
/// counted towards each column's type, then dropped.
struct Builder {
    names: Vec<String>,
    kinds: Vec<Kinds>,
    row_count: u64,
    stored: Vec<u8>,
}

/// What a column's non-null cells so far could all be; its type is the first that all its
/// cells are of: number (JSON numbers and numeric text), boolean, datetime, else text (also
/// with no cells).
#[derive(Clone, Copy)]
struct Kinds {
    any: bool,
    number: bool,
    boolean: bool,
    datetime: bool,
}

impl Kinds {
    const ALL: Kinds = Kinds {
        any: false,
        number: true,
        boolean: true,
        datetime: true,
    };

    fn add(&mut self, cell: &Value) {
        if cell.is_null() {
            return;
        }
        self.any = true;
        // Each test is made only while it can still hold.
        self.number = self.number
            && (cell.is_number() || cell.as_str().is_some_and(|s| as_number(s.trim()).is_some()));
        self.boolean = self.boolean && cell.is_boolean();
        self.datetime = self.datetime && cell.as_str().is_some_and(looks_like_time);
    }

    fn kind(self) -> ColumnType {
        match self {
            Kinds { any: false, .. } => ColumnType::Text,
            Kinds { number: true, .. } => ColumnType::Number,
            Kinds { boolean: true, .. } => ColumnType::Boolean,
            Kinds { datetime: true, .. } => ColumnType::Datetime,
            _ => ColumnType::Text,
        }
    }
}

impl Builder {
    fn new(names: Vec<String>) -> Self {
        Builder {
            kinds: vec![Kinds::ALL; names.len()],
            names,
            row_count: 0,
            stored: b"[".to_vec(),
        }
    }

    fn push(&mut self, row: &Row) {
        for (name, kinds) in self.names.iter().zip(&mut self.kinds) {
            if let Some(cell) = row.get(name) {
                kinds.add(cell);
            }
        }
        if self.row_count > 0 {
            self.stored.push(b',');
        }
        // A map of JSON values always serializes.
        let _ = serde_json::to_writer(&mut self.stored, row);
        self.row_count += 1;
    }

    fn finish(mut self) -> Table {
        self.stored.push(b']');
        let columns = self
            .names
            .into_iter()
            .zip(&self.kinds)
            .map(|(name, kinds)| Column {
                name,
                kind: kinds.kind(),
            })
            .collect();
        Table {
            columns,
            filled: self.kinds.iter().map(|k| k.any).collect(),
            row_count: self.row_count,
            stored: self.stored,
        }
    }
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

/// Parses a CSV or JSON body into a table, one row at a time (no more than one row is ever
/// held parsed).
pub fn parse(format: Format, bytes: &[u8]) -> DataResult<Table> {
    match format {
        Format::Csv => parse_csv(bytes),
        Format::Json => parse_json(bytes),
    }
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

fn parse_csv(bytes: &[u8]) -> DataResult<Table> {
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
    let mut table = Builder::new(headers.clone());
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader.read_record(&mut record).map_err(|e| {
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
        if !more {
            break;
        }
        let mut row = Row::new();
        for (name, cell) in headers.iter().zip(record.iter()) {
            row.insert(name.clone(), typed_cell(cell));
        }
        table.push(&row);
    }
    Ok(table.finish())
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

/// JSON data's rows, taken one by one into the builder; a row's problem is kept in
/// `problem` (the deserializer only sees that it stopped).
struct JsonRows<'a> {
    table: &'a mut Option<Builder>,
    problem: &'a mut Option<DataError>,
}

impl<'de> serde::de::DeserializeSeed<'de> for JsonRows<'_> {
    type Value = ();
    fn deserialize<D: serde::de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl JsonRows<'_> {
    fn refuse<E: serde::de::Error>(self, problem: DataError) -> Result<(), E> {
        *self.problem = Some(problem);
        Err(E::custom("refused"))
    }
    fn not_an_array<E: serde::de::Error>(self) -> Result<(), E> {
        self.refuse(bad("JSON data must be an array of objects".into()))
    }
}

impl<'de> serde::de::Visitor<'de> for JsonRows<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of objects")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(item) = seq.next_element::<Value>()? {
            index += 1;
            let Value::Object(row) = item else {
                return self.refuse(bad(format!("row {index}: must be an object")));
            };
            if let Err(problem) = check_json_row(self.table, index, &row) {
                return self.refuse(problem);
            }
        }
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.not_an_array()
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.not_an_array()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.not_an_array()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.not_an_array()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.not_an_array()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.not_an_array()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.not_an_array()
    }
}

/// JSON data: an array of objects, checked as a whole first, then read row by row.
fn parse_json(bytes: &[u8]) -> DataResult<Table> {
    use serde::de::{DeserializeSeed, IgnoredAny};

    // Syntax first, as a whole (nothing is kept): a broken document is `invalid_json`
    // whatever its rows say.
    serde_json::from_slice::<IgnoredAny>(bytes)
        .map_err(|e| DataError::InvalidJson(format!("data is not valid JSON: {e}")))?;
    let (mut table, mut problem) = (None, None);
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let read = JsonRows {
        table: &mut table,
        problem: &mut problem,
    }
    .deserialize(&mut reader);
    if let Some(problem) = problem {
        return Err(problem);
    }
    read.map_err(|e| DataError::InvalidJson(format!("data is not valid JSON: {e}")))?;
    Ok(table.unwrap_or_else(|| Builder::new(Vec::new())).finish())
}

/// Row `index` (from 1) of JSON data: row 1 names the columns, every later row must have
/// exactly those fields, and every cell must be a string, number, boolean or null.
fn check_json_row(table: &mut Option<Builder>, index: usize, row: &Row) -> DataResult<()> {
    match table {
        None => {
            let names: Vec<String> = row.keys().cloned().collect();
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
            *table = Some(Builder::new(names));
        }
        Some(builder) => {
            if let Some(missing) = builder.names.iter().find(|n| !row.contains_key(*n)) {
                return Err(bad(format!("row {index}: field '{missing}' is missing (every row needs the fields of row 1)")));
            }
            if let Some(extra) = row.keys().find(|k| !builder.names.contains(k)) {
                return Err(bad(format!("row {index}: field '{extra}' is not in row 1")));
            }
        }
    }
    if let Some((field, _)) = row.iter().find(|(_, v)| v.is_object() || v.is_array()) {
        return Err(bad(format!(
            "row {index}: field '{field}' must be a string, number, boolean or null"
        )));
    }
    if let Some(builder) = table {
        builder.push(row);
    }
    Ok(())
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
    let mut out = old.to_vec();
    splice_onto(format, &mut out, old_rows, new);
    out
}

/// [`splice`] in place: `file` grows by what `new` adds (a compaction splices several
/// segments onto a file of megabytes without copying it each time).
pub fn splice_onto(format: Format, file: &mut Vec<u8>, old_rows: u64, new: &[u8]) {
    if old_rows == 0 {
        file.clear();
        file.extend_from_slice(new);
        return;
    }
    match format {
        Format::Csv => {
            if !file.is_empty() && !file.ends_with(b"\n") {
                file.extend_from_slice(b"\r\n");
            }
            file.extend_from_slice(csv_records(new));
        }
        Format::Json => {
            let new = new.trim_ascii();
            // The old file trimmed (leading spaces go last: that moves every byte)...
            let kept = file.trim_ascii_end().len();
            file.truncate(kept);
            // ... without its closing bracket, then "," and the new rows.
            if let (Some(b']'), Some(inner)) = (file.last(), new.strip_prefix(b"[")) {
                file.pop();
                file.push(b',');
                file.extend_from_slice(inner);
            }
            let leading = file.len() - file.trim_ascii_start().len();
            if leading > 0 {
                file.drain(..leading);
            }
        }
    }
}

/// Calls `each` with every row of a JSON array of objects (the rows as stored), one parsed
/// row at a time, in order: the array is never held parsed; answers how many rows there were.
pub fn each_stored_row(bytes: &[u8], each: impl FnMut(&Row)) -> Result<u64, String> {
    use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

    struct EachRow<F>(F);

    impl<'de, F: FnMut(&Row)> DeserializeSeed<'de> for EachRow<F> {
        type Value = u64;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de, F: FnMut(&Row)> Visitor<'de> for EachRow<F> {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of rows")
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<u64, A::Error> {
            let mut count = 0;
            while let Some(row) = seq.next_element::<Row>()? {
                (self.0)(&row);
                count += 1;
            }
            Ok(count)
        }
    }

    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let count = EachRow(each)
        .deserialize(&mut reader)
        .and_then(|count| reader.end().map(|()| count))
        .map_err(|e| format!("stored rows: {e}"))?;
    Ok(count)
}

/// Two stored-rows files (JSON arrays of rows) as one, the rows of `a` then those of `b`,
/// joined as text (neither is parsed).
pub fn join_stored_rows(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut joined = Vec::with_capacity(a.len() + b.len());
    joined.extend_from_slice(a);
    append_stored_rows(&mut joined, b);
    joined
}

/// [`join_stored_rows`] in place: the rows of `b` added to the stored rows in `a`.
pub fn append_stored_rows(a: &mut Vec<u8>, b: &[u8]) {
    fn inner(file: &[u8]) -> Option<&[u8]> {
        file.trim_ascii()
            .strip_prefix(b"[")
            .and_then(|inner| inner.strip_suffix(b"]"))
            .map(<[u8]>::trim_ascii)
    }
    let Some(added) = inner(b).filter(|rows| !rows.is_empty()) else {
        return;
    };
    match inner(a) {
        Some(rows) if !rows.is_empty() => {
            // Drop the closing bracket (and what whitespace follows it), add ",rows]".
            let end = a.iter().rposition(|&c| c == b']').unwrap_or(a.len());
            a.truncate(end);
            a.push(b',');
        }
        _ => {
            a.clear();
            a.push(b'[');
        }
    }
    a.extend_from_slice(added);
    a.push(b']');
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
pub fn check_same_types(existing: &[Column], new: &Table) -> DataResult<()> {
    for column in existing {
        if column.kind == ColumnType::Text {
            continue;
        }
        let Some(at) = new.columns.iter().position(|c| c.name == column.name) else {
            continue;
        };
        if new.filled[at] && new.columns[at].kind != column.kind {
            return Err(bad(format!(
                "column '{}' holds {} values; the appended rows have {} values in it",
                column.name,
                column.kind.as_str(),
                new.columns[at].kind.as_str()
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
        return Ok(table.stored.clone());
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| format!("writing CSV: {e}");
    writer
        .write_record(table.columns.iter().map(|c| c.name.as_str()))
        .map_err(fail)?;
    let mut failed = None;
    table.each_row(|row| {
        if failed.is_some() {
            return;
        }
        let cells = table.columns.iter().map(|c| match row.get(&c.name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        });
        if let Err(e) = writer.write_record(cells) {
            failed = Some(fail(e));
        }
    });
    if let Some(e) = failed {
        return Err(e);
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
        assert_eq!(parse(format, &file).unwrap().row_count(), rows as u64);
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
        check_same_types(&existing.columns, &ok).unwrap();
        let bad = parse(Format::Csv, b"day,n,who\n2026-01-02,many,b\n").unwrap();
        let err = check_same_types(&existing.columns, &bad).unwrap_err();
        assert!(err.to_string().contains("column 'n'"), "{err}");
    }
}

#[cfg(test)]
mod stored_rows_tests {
    use super::*;
    use serde_json::json;

    fn each(file: &[u8]) -> Result<Vec<Row>, String> {
        let mut rows = Vec::new();
        let count = each_stored_row(file, |row| rows.push(row.clone()))?;
        assert_eq!(count, rows.len() as u64);
        Ok(rows)
    }

    fn stored(rows: &[Value]) -> Vec<u8> {
        serde_json::to_vec(rows).unwrap()
    }

    #[test]
    fn rows_are_handed_over_one_by_one_in_order() {
        let rows = [json!({"a": 1, "b": "x"}), json!({"b": null, "a": 2.5})];
        let got = each(&stored(&rows)).unwrap();
        let got: Vec<Value> = got.into_iter().map(Value::Object).collect();
        assert_eq!(got, rows);
        // Column order is kept as stored.
        let keys: Vec<&String> = match &got[1] {
            Value::Object(row) => row.keys().collect(),
            _ => unreachable!(),
        };
        assert_eq!(keys, ["b", "a"]);
        assert!(each(b"[]").unwrap().is_empty());
        assert!(each(b" [ ] ").unwrap().is_empty());
    }

    #[test]
    fn broken_stored_rows_are_an_error() {
        for bad in [&b""[..], b"{}", b"[1]", b"[{\"a\":1}", b"[{\"a\":1}] x"] {
            assert!(each(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn joined_files_hold_the_rows_of_both_in_order() {
        let (a, b) = ([json!({"n": 1}), json!({"n": 2})], [json!({"n": 3})]);
        let joined = join_stored_rows(&stored(&a), &stored(&b));
        let all: Vec<Value> = a.iter().chain(&b).cloned().collect();
        assert_eq!(serde_json::from_slice::<Vec<Value>>(&joined).unwrap(), all);
        assert_eq!(join_stored_rows(b"[]", &stored(&b)), stored(&b));
        assert_eq!(join_stored_rows(&stored(&a), b" [] "), stored(&a));
        assert_eq!(
            serde_json::from_slice::<Vec<Value>>(&join_stored_rows(b"[]", b"[]")).unwrap(),
            Vec::<Value>::new()
        );
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
        assert_eq!(t.rows()[0]["sales"], serde_json::json!(10.5));
        assert!(t.rows()[1]["sales"].is_null());
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
            ok.rows()[0]["b"],
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
    fn json_that_is_no_array_is_invalid_data_and_broken_json_is_invalid_json() {
        let invalid = |body: &[u8]| matches!(parse(Format::Json, body), Err(DataError::Invalid(_)));
        let broken =
            |body: &[u8]| matches!(parse(Format::Json, body), Err(DataError::InvalidJson(_)));
        assert!(invalid(br#"{"a":1}"#));
        assert!(invalid(b"\"rows\""));
        assert!(invalid(b"3"));
        assert!(invalid(b"null"));
        assert!(broken(br#"{"a": ]"#));
        assert!(broken(br#"[{"a":1}] x"#));
        // Broken JSON is reported as such even after a row that is wrong.
        assert!(broken(b"[1, {"));
        assert_eq!(parse(Format::Json, b" [] ").unwrap().row_count(), 0);
    }

    #[test]
    fn a_table_keeps_its_rows_as_stored_and_reads_them_back() {
        let t = parse(Format::Csv, b"a,b\n1,x\n2,\n").unwrap();
        assert_eq!(t.row_count(), 2);
        assert_eq!(t.stored_rows(), br#"[{"a":1,"b":"x"},{"a":2,"b":null}]"#);
        let again = Table::from_stored(t.columns.clone(), t.stored_rows().to_vec()).unwrap();
        assert_eq!(again, t);
        let names = ["a".to_owned(), "b".to_owned()];
        assert_eq!(Table::from_rows(&names, &t.rows()), t);
        assert_eq!(encode(Format::Json, &t).unwrap(), t.stored_rows());
        assert_eq!(encode(Format::Csv, &t).unwrap(), b"a,b\n1,x\n2,\n");
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
