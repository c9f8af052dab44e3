//! The stored records of data sources, Klips and dashboards.

use crate::asset::{Asset, Kind, Meta};
use crate::klip::{Display, KlipValue, Query};
use crate::sets::{ColumnType, Connector, Format, KlipType};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasourceProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Dot path to the array of rows in a JSON answer, e.g. `$.items`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
}

/// A URL with its password and every query value replaced by the mask (names kept); text
/// that is no URL is shown as it is.
pub fn mask_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(HEADER_MASK));
    }
    if parsed.query().is_some() {
        let names: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let mut pairs = parsed.query_pairs_mut();
        pairs.clear();
        for name in names {
            pairs.append_pair(&name, HEADER_MASK);
        }
    }
    parsed.to_string()
}

/// `new` (from a request) with its masked password and query values taken from `old` (the
/// stored URL), parameter by name; anything not masked is `new`'s own.
pub fn unmask_url(new: &str, old: &str) -> String {
    let (Ok(mut parsed), Ok(stored)) = (url::Url::parse(new), url::Url::parse(old)) else {
        return new.to_owned();
    };
    let encoded_mask = form_urlencoded::byte_serialize(HEADER_MASK.as_bytes()).collect::<String>();
    if matches!(parsed.password(), Some(p) if p == HEADER_MASK || p == encoded_mask) {
        let _ = parsed.set_password(stored.password());
    }
    if parsed.query().is_some() {
        let old_pairs: Vec<(String, String)> = stored
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let value = match old_pairs.iter().find(|(name, _)| *name == k) {
                    Some((_, stored)) if v == HEADER_MASK => stored.clone(),
                    _ => v.into_owned(),
                };
                (k.into_owned(), value)
            })
            .collect();
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (k, v) in pairs {
            query.append_pair(&k, &v);
        }
    }
    parsed.to_string()
}

/// What the API shows instead of a stored header value: headers often hold credentials
/// for the endpoint, so they are write-only. Sending the mask back keeps the stored value.
pub const HEADER_MASK: &str = "********";

impl DatasourceProperties {
    /// Puts back stored header values, and the password and query values of the stored
    /// `endpoint_url`, where `self` (from a request) holds the mask.
    pub fn keep_masked(&mut self, stored: &DatasourceProperties) {
        for (name, value) in self.headers.iter_mut() {
            if value == HEADER_MASK {
                if let Some(old) = stored.headers.get(name) {
                    value.clone_from(old);
                }
            }
        }
        if let (Some(new), Some(old)) = (&self.endpoint_url, &stored.endpoint_url) {
            self.endpoint_url = Some(unmask_url(new, old));
        }
    }

    /// As shown: header values, and the password and query values of `endpoint_url`,
    /// masked (they often hold credentials for the endpoint).
    pub fn shown(&self) -> DatasourceProperties {
        let mut out = self.clone();
        for value in out.headers.values_mut() {
            *value = HEADER_MASK.to_owned();
        }
        out.endpoint_url = out.endpoint_url.as_deref().map(mask_url);
        out
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Datasource {
    pub meta: Meta,
    pub connector: Connector,
    pub format: Format,
    #[serde(default)]
    pub refresh_interval: Option<u64>,
    #[serde(default)]
    pub properties: DatasourceProperties,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub columns: Vec<Column>,
    #[serde(default)]
    pub row_count: u64,
    #[serde(default)]
    pub data_size: u64,
    #[serde(default, with = "crate::time::utc::option")]
    pub date_last_refresh: Option<DateTime<Utc>>,
    #[serde(default)]
    pub refresh_fail_count: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    /// The stored copy of the data that is current (see `data::store`), and the one before
    /// it, kept for readers that fetched the item just before a commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_data_id: Option<String>,
    /// Appended rows not yet merged into the current copy, oldest first: each append is one
    /// immutable segment, and the data is the copy followed by its segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
    /// Segments merged away (or replaced) last time, deleted the time after, so a reader that
    /// fetched the item just before can still read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_segments: Vec<String>,
    /// Names the rows' history: set anew by each commit of whole new data (a replace, a
    /// refresh, a source's first rows), kept by appends and compactions, which only add rows
    /// at the end or regroup them into fewer objects. While it stays, the first N rows stay
    /// the same, so the worker's Klip snapshots after N rows hold (see
    /// `platform::assets::stored`). None on items written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<String>,
    /// What the next append's splice changes at the end of the file (see
    /// [`crate::data::appended_size`]).
    #[serde(default)]
    pub raw_edge: u64,
    /// Goes up by one with every change of the data (replace, append, refresh); Klip values
    /// carry the version they were computed from.
    #[serde(default)]
    pub data_version: u64,
    /// The latest background refresh (bulk or on the interval), as the worker reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshState>,
    /// When a URL source with a `refresh_interval` refreshes by itself next (RFC 3339).
    #[serde(
        default,
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_refresh_at: Option<DateTime<Utc>>,
}

/// One append of rows, stored as its own object.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Segment {
    pub id: String,
    pub rows: u64,
}

/// Where a data source's latest background refresh is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RefreshState {
    pub status: crate::RunStatus,
    pub job_id: String,
    pub trigger: crate::RunTrigger,
    #[serde(with = "crate::time::utc")]
    pub requested_at: DateTime<Utc>,
    #[serde(
        default,
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the API shows of a data source: not where its data is stored (copies, segments,
/// lineage, splice edge), and its properties' secrets masked.
#[derive(Debug, Serialize)]
pub struct DatasourceFields<'a> {
    pub connector: Connector,
    pub format: Format,
    pub refresh_interval: Option<u64>,
    pub properties: DatasourceProperties,
    pub disabled: bool,
    pub columns: &'a [Column],
    pub row_count: u64,
    pub data_size: u64,
    #[serde(with = "crate::time::utc::option")]
    pub date_last_refresh: Option<DateTime<Utc>>,
    pub refresh_fail_count: u64,
    pub last_error: &'a Option<String>,
    pub data_version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<&'a RefreshState>,
    #[serde(
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_refresh_at: Option<DateTime<Utc>>,
}

impl Asset for Datasource {
    const KIND: Kind = Kind::Datasource;
    type Fields<'a> = DatasourceFields<'a>;
    fn fields(&self) -> DatasourceFields<'_> {
        DatasourceFields {
            connector: self.connector,
            format: self.format,
            refresh_interval: self.refresh_interval,
            properties: self.properties.shown(),
            disabled: self.disabled,
            columns: &self.columns,
            row_count: self.row_count,
            data_size: self.data_size,
            date_last_refresh: self.date_last_refresh,
            refresh_fail_count: self.refresh_fail_count,
            last_error: &self.last_error,
            data_version: self.data_version,
            refresh: self.refresh.as_ref(),
            next_refresh_at: self.next_refresh_at,
        }
    }
    fn due_at(&self) -> Option<DateTime<Utc>> {
        self.next_refresh_at
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Annotation {
    pub id: String,
    /// The date (or time) on the Klip's axis the note is about.
    pub date: String,
    pub text: String,
    pub created_by: String,
    #[serde(with = "crate::time::utc")]
    pub date_created: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Klip {
    pub meta: Meta,
    #[serde(rename = "type")]
    pub kind: KlipType,
    pub datasource_id: Option<String>,
    pub query: Query,
    pub display: Display,
    /// The latest computed value, stored so reading a dashboard does not recompute.
    #[serde(default)]
    pub value: Option<KlipValue>,
    #[serde(default)]
    pub annotations: Vec<Annotation>,
}

/// What the API shows of a Klip: all its fields.
#[derive(Debug, Serialize)]
pub struct KlipFields<'a> {
    #[serde(rename = "type")]
    pub kind: KlipType,
    pub datasource_id: &'a Option<String>,
    pub query: &'a Query,
    pub display: &'a Display,
    pub value: &'a Option<KlipValue>,
    pub annotations: &'a [Annotation],
}

impl Asset for Klip {
    const KIND: Kind = Kind::Klip;
    type Fields<'a> = KlipFields<'a>;
    fn fields(&self) -> KlipFields<'_> {
        KlipFields {
            kind: self.kind,
            datasource_id: &self.datasource_id,
            query: &self.query,
            display: &self.display,
            value: &self.value,
            annotations: &self.annotations,
        }
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(rename = "type")]
    pub kind: String,
    pub state: Value,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            kind: "grid".into(),
            state: Value::Object(Default::default()),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KlipInstance {
    pub id: String,
    pub klip_id: String,
    pub region: String,
    pub position: u32,
}

/// Where a published link's token leads: the item stored under the token's hash (so a
/// view finds its dashboard without the token itself being stored). A link never changes
/// where it leads; it is only revoked (the item deleted) or expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTarget {
    pub company_id: String,
    pub dashboard_id: String,
    pub link_id: String,
    #[serde(default, with = "crate::time::utc::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PublishedLink {
    pub id: String,
    /// SHA-256 of the token; the token itself is shown once.
    pub token_hash: String,
    #[serde(default, with = "crate::time::utc::option")]
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: String,
    #[serde(with = "crate::time::utc")]
    pub date_created: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Dashboard {
    pub meta: Meta,
    #[serde(default)]
    pub layout: Layout,
    #[serde(default)]
    pub klip_instances: Vec<KlipInstance>,
    /// Users who marked it a favourite.
    #[serde(default)]
    pub favorites: Vec<String>,
    #[serde(default)]
    pub published_links: Vec<PublishedLink>,
}

/// What the API shows of a dashboard in a list: its layout and Klip instances (who marked
/// it a favourite is each caller's own business, and its published links have their own
/// list).
#[derive(Debug, Serialize)]
pub struct DashboardFields<'a> {
    pub layout: &'a Layout,
    pub klip_instances: &'a [KlipInstance],
}

impl Asset for Dashboard {
    const KIND: Kind = Kind::Dashboard;
    type Fields<'a> = DashboardFields<'a>;
    fn fields(&self) -> DashboardFields<'_> {
        DashboardFields {
            layout: &self.layout,
            klip_instances: &self.klip_instances,
        }
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
}

/// How many appended segments a data source may have before the worker merges some (see
/// [`plan_merge`]), so a read of the data is at most this many objects plus one.
pub const COMPACT_AT: usize = 8;

/// What the worker merges of a data source's segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Nothing: fewer than [`COMPACT_AT`] segments.
    Nothing,
    /// Every segment into a new copy ([`compact`]).
    IntoCopy,
    /// The segments from this index on into one segment ([`merge_segments`]).
    Segments(usize),
}

/// Which segments to merge at [`COMPACT_AT`] segments. Into the copy once they hold half as
/// many rows as it: the copy (megabytes at a large source) is then rewritten only after the
/// data grew by half, so each row is copied a bounded number of times, not once every few
/// appends. Before that, the newest segments merge among themselves, size-tiered: the
/// longest run at the end that the segment before it outweighs (so a run of small appends
/// becomes one object and older, larger merges are left alone), or all of them when none
/// does. The copy is not read.
pub fn plan_merge(ds: &Datasource) -> Merge {
    let segments = &ds.segments;
    if segments.len() < COMPACT_AT {
        return Merge::Nothing;
    }
    let appended: u64 = segments.iter().map(|s| s.rows).sum();
    let copy_rows = ds.row_count.saturating_sub(appended);
    if appended.saturating_mul(2) >= copy_rows {
        return Merge::IntoCopy;
    }
    // The smallest `first` (a run of at least two) whose predecessor outweighs the run.
    let mut after = vec![0u64; segments.len() + 1];
    for i in (0..segments.len()).rev() {
        after[i] = after[i + 1] + segments[i].rows;
    }
    let first = (1..segments.len() - 1)
        .find(|&i| segments[i - 1].rows > after[i])
        .unwrap_or(0);
    Merge::Segments(first)
}

#[cfg(test)]
mod url_mask_tests {
    use super::*;

    #[test]
    fn urls_show_no_password_or_query_values_and_masks_sent_back_keep_them() {
        let stored = "https://bot:s3cret@example.com/feed?api_key=abc123&region=eu#top";
        let shown = mask_url(stored);
        assert!(
            !shown.contains("s3cret") && !shown.contains("abc123") && !shown.contains("=eu"),
            "{shown}"
        );
        assert!(
            shown.contains("api_key=") && shown.contains("region="),
            "{shown}"
        );
        // Sent back as shown: the stored secrets stay.
        assert_eq!(
            unmask_url(&shown, stored),
            url::Url::parse(stored).unwrap().to_string()
        );
        // A changed parameter is taken, the masked one kept.
        let edited = shown.replace("region=********", "region=us");
        let kept = unmask_url(&edited, stored);
        assert!(
            kept.contains("api_key=abc123") && kept.contains("region=us"),
            "{kept}"
        );
        assert_eq!(mask_url("not a url"), "not a url");
        assert_eq!(mask_url("https://example.com/a"), "https://example.com/a");
    }
}

/// Each asset's view shows every stored field but the ones named here as hidden, with its
/// meta (less the company) first and its secrets masked: a field added to a record must be
/// added to its view or named hidden here.
#[cfg(test)]
mod view_tests {
    use super::*;
    use crate::klip::KlipValue;
    use crate::reports::Report;
    use serde_json::json;

    fn meta() -> Value {
        json!({"id": "0123456789abcdef0123456789abcdef", "company_id": "c", "name": "N",
               "description": "d", "slug": "n", "version": 3, "created_by": "u",
               "date_created": "2026-01-01T00:00:00Z", "last_updated": "2026-01-02T00:00:00Z",
               "share_rights": [{"group_id": "g", "can_edit": true}]})
    }

    /// The stored record less its meta and `hidden`, after the meta less the company.
    fn expected<A: Asset>(asset: &A, hidden: &[&str]) -> Value {
        let mut out = serde_json::to_value(asset.meta()).unwrap();
        out.as_object_mut().unwrap().remove("company_id");
        let stored = serde_json::to_value(asset).unwrap();
        for (k, v) in stored.as_object().unwrap() {
            if k != "meta" && !hidden.contains(&k.as_str()) {
                out[k] = v.clone();
            }
        }
        out
    }

    fn check<A: Asset>(stored: Value, hidden: &[&str], mask: impl Fn(&mut Value)) {
        let asset: A = serde_json::from_value(stored.clone()).unwrap();
        // Every field was given, so none is left to its default.
        assert_eq!(serde_json::to_value(&asset).unwrap(), stored);
        let mut want = expected(&asset, hidden);
        mask(&mut want);
        assert_eq!(serde_json::to_value(asset.view()).unwrap(), want);
    }

    #[test]
    fn a_data_source_shows_all_but_its_storage_and_masks_its_secrets() {
        check::<Datasource>(
            json!({"meta": meta(), "connector": "url", "format": "csv", "refresh_interval": 3600,
                   "properties": {"endpoint_url": "https://a:pw@example.com/x?key=s", "headers": {"Authorization": "2026-01-02T03:04:05Z"}, "json_path": "$.items"},
                   "disabled": true, "columns": [{"name": "n", "type": "number"}], "row_count": 2,
                   "data_size": 9, "date_last_refresh": "2026-01-02T00:00:00Z", "refresh_fail_count": 1,
                   "last_error": "e", "data_id": "d1", "previous_data_id": "d0",
                   "segments": [{"id": "s", "rows": 1}], "retired_segments": ["r"], "lineage": "l",
                   "raw_edge": 4, "data_version": 7,
                   "refresh": {"status": "succeeded", "job_id": "j", "trigger": "api", "requested_at": "2026-01-02T03:04:05Z", "finished_at": "2026-01-02T03:04:05Z", "error": "e"},
                   "next_refresh_at": "2026-01-03T00:00:00Z"}),
            &[
                "data_id",
                "previous_data_id",
                "segments",
                "retired_segments",
                "raw_edge",
                "lineage",
            ],
            |v| {
                v["properties"]["headers"]["Authorization"] = json!(HEADER_MASK);
                v["properties"]["endpoint_url"] =
                    json!(mask_url("https://a:pw@example.com/x?key=s"));
            },
        );
    }

    #[test]
    fn a_klip_shows_all_its_fields() {
        let value = KlipValue::failed(
            "no data".into(),
            crate::time::parse("2026-01-02T00:00:00Z").unwrap(),
        );
        check::<Klip>(
            json!({"meta": meta(), "type": "line", "datasource_id": "0123456789abcdef0123456789abcdee",
                   "query": serde_json::to_value(Query::default()).unwrap(),
                   "display": serde_json::to_value(Display::default()).unwrap(),
                   "value": value,
                   "annotations": [{"id": "a", "date": "2026-01-01", "text": "2026-01-02T03:04:05Z", "created_by": "u", "date_created": "2026-01-02T03:04:05Z"}]}),
            &[],
            |_| {},
        );
    }

    #[test]
    fn a_dashboard_shows_its_layout_and_instances_not_who_favours_it_or_its_links() {
        check::<Dashboard>(
            json!({"meta": meta(), "layout": {"type": "grid", "state": {"a": 1}},
                   "klip_instances": [{"id": "i", "klip_id": "k", "region": "r", "position": 0}],
                   "favorites": ["u"],
                   "published_links": [{"id": "p", "token_hash": "h", "expires_at": null, "created_by": "u", "date_created": "2026-01-02T03:04:05Z"}]}),
            &["favorites", "published_links"],
            |_| {},
        );
    }

    #[test]
    fn a_report_shows_all_its_fields() {
        check::<Report>(
            json!({"meta": meta(), "dashboard_id": "0123456789abcdef0123456789abcdee", "klip_ids": ["k"],
                   "format": "pdf", "window": "last_30_days",
                   "schedule": {"cron": "0 8 * * 1", "timezone": "UTC", "paused": false},
                   "next_run_at": "2026-01-05T08:00:00Z",
                   "last_run": {"id": "r", "status": "succeeded", "trigger": "api", "date_created": "2026-01-02T03:04:05Z", "finished_at": "2026-01-02T03:04:05Z"},
                   "deliver_to": ["0123456789abcdef0123456789abcded"],
                   "delivery": {"only_if_changed": true, "attach": false},
                   "delivered_digest": "abc"}),
            &["delivered_digest"],
            |_| {},
        );
    }

    #[test]
    fn a_channel_shows_all_but_its_secrets_and_masks_its_url() {
        check::<crate::notify::Channel>(
            json!({"meta": meta(), "type": "webhook", "email": null,
                   "url": "https://user:pw@hooks.example/in?token=t",
                   "disabled": true, "disabled_reason": "410", "consecutive_failures": 3,
                   "last_delivery": {"status": "failed", "at": "2026-01-02T03:04:05Z", "response_status": 410},
                   "secret": "whsec_a", "previous_secret": "whsec_b",
                   "previous_until": "2026-01-03T00:00:00Z"}),
            &["secret", "previous_secret", "previous_until", "email"],
            |want| want["url"] = json!(mask_url("https://user:pw@hooks.example/in?token=t")),
        );
    }
}

#[cfg(test)]
mod merge_tests {
    use super::Datasource;
    use super::{plan_merge, Merge};
    use serde_json::json;

    /// A source with `copy` rows in its copy and segments of these row counts.
    fn source(copy: u64, segments: &[u64]) -> Datasource {
        let listed: Vec<_> = segments
            .iter()
            .enumerate()
            .map(|(i, rows)| json!({"id": format!("s{i}"), "rows": rows}))
            .collect();
        serde_json::from_value(json!({
            "meta": {"id": "d", "company_id": "c", "name": "D", "slug": "d", "version": 1,
                     "created_by": "u", "date_created": "2026-01-01T00:00:00Z", "last_updated": "2026-01-01T00:00:00Z"},
            "connector": "push", "format": "csv", "data_id": "x",
            "row_count": copy + segments.iter().sum::<u64>(),
            "segments": listed,
        }))
        .unwrap()
    }

    #[test]
    fn segments_merge_among_themselves_until_they_hold_half_the_copy() {
        assert_eq!(plan_merge(&source(1000, &[20; 7])), Merge::Nothing);
        // Equal small appends: all of them become one.
        assert_eq!(plan_merge(&source(1000, &[20; 8])), Merge::Segments(0));
        // An earlier merge that outweighs the newest run is left alone.
        assert_eq!(
            plan_merge(&source(1000, &[160, 20, 20, 20, 20, 20, 20, 20])),
            Merge::Segments(1)
        );
        assert_eq!(
            plan_merge(&source(10_000, &[160, 140, 120, 100, 80, 20, 20, 20])),
            Merge::Segments(5)
        );
        // Half the copy appended: into the copy.
        assert_eq!(plan_merge(&source(320, &[20; 8])), Merge::IntoCopy);
        assert_eq!(plan_merge(&source(1, &[2; 8])), Merge::IntoCopy);
    }
}
