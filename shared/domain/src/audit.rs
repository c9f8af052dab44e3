//! The audit log's records and rules: what a change of a company's item says as an event
//! (`created`, `updated` with the fields that changed, `deleted`, a sign-in, a key revoked),
//! and what an event never shows (secrets, hashes, tokens, data rows, the values the
//! system keeps for itself). The recorder (a consumer of the table's stream) decides the
//! actor and writes the event; this module is pure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How long an event is kept (then its item expires).
pub const RETENTION_DAYS: i64 = 400;

/// The attributes every write of a company's item carries (stamped by the store): who made
/// the change, in which request, and when (milliseconds).
pub const CHANGED_BY: &str = "changed_by";
pub const CHANGED_IN: &str = "changed_in";
pub const CHANGED_AT: &str = "changed_at";

/// The sort-key prefix of a deletion's note: written with the delete, in the same
/// transaction, it names who deleted the item (the item itself is gone from the stream's
/// new image).
pub const GONE_PREFIX: &str = "GONE#";

/// How long a deletion's note is kept: longer than the stream keeps its records (24 h).
pub const NOTE_TTL_SECS: i64 = 2 * 24 * 3600;

named! {
    /// Who made a change.
    ActorType {
        User = "user",
        ApiKey = "api_key",
        System = "system",
        PublicLink = "public_link",
    }
}

named! {
    /// What happened.
    Action {
        Created = "created",
        Updated = "updated",
        Deleted = "deleted",
        Login = "login",
        LoginFailed = "login_failed",
        KeyRotated = "key_rotated",
        KeyRevoked = "key_revoked",
    }
}

named! {
    /// What changed: the singular of its path.
    ResourceType {
        Alert = "alert",
        ApiKey = "api_key",
        Channel = "channel",
        Client = "client",
        Company = "company",
        Dashboard = "dashboard",
        Datasource = "datasource",
        Group = "group",
        Klip = "klip",
        Report = "report",
        Role = "role",
        User = "user",
    }
}

/// Who made a change: a user (signed in), an API key (and the email of its user), the
/// system (the worker, the scheduler, a command), or a published link.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: ActorType,
    pub id: Option<String>,
    pub email: Option<String>,
    /// The company the actor belongs to (a partner's, when it acts inside a client account):
    /// kept with the event, not shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_id: Option<String>,
}

/// An actor as the API shows it.
#[derive(Serialize)]
pub struct ActorView<'a> {
    #[serde(rename = "type")]
    pub kind: ActorType,
    pub id: Option<&'a str>,
    pub email: Option<&'a str>,
}

impl Actor {
    pub fn system() -> Actor {
        Actor {
            kind: ActorType::System,
            id: None,
            email: None,
            company_id: None,
        }
    }
}

/// The resource an event is about.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: ResourceType,
    pub id: String,
    pub name: Option<String>,
}

/// One changed field of an update.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FieldChange {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

/// An event as stored and as the API shows it (`company_id` and `ttl` stay inside).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub company_id: String,
    #[serde(with = "crate::time::utc_millis")]
    pub time: DateTime<Utc>,
    pub actor: Actor,
    pub action: Action,
    pub resource: Resource,
    #[serde(default)]
    pub changes: Vec<FieldChange>,
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

/// The event's public shape (no company, no time to live).
#[derive(Serialize)]
pub struct AuditEventView<'a> {
    pub id: &'a str,
    #[serde(with = "crate::time::utc_millis")]
    pub time: DateTime<Utc>,
    pub actor: ActorView<'a>,
    pub action: Action,
    pub resource: &'a Resource,
    pub changes: &'a [FieldChange],
    pub request_id: Option<&'a str>,
}

impl AuditEvent {
    pub fn view(&self) -> AuditEventView<'_> {
        AuditEventView {
            id: &self.id,
            time: self.time,
            actor: ActorView {
                kind: self.actor.kind,
                id: self.actor.id.as_deref(),
                email: self.actor.email.as_deref(),
            },
            action: self.action,
            resource: &self.resource,
            changes: &self.changes,
            request_id: self.request_id.as_deref(),
        }
    }
}

/// An event's id: 32 lowercase hex characters, the time in milliseconds (12) then a hash of
/// the stream record's own id (20): ids sort by time, and the same record always gives the
/// same id (a batch delivered again writes nothing twice).
pub fn event_id(time: DateTime<Utc>, record_id: &str) -> String {
    use sha2::Digest;
    let millis = time.timestamp_millis().clamp(0, 0xffff_ffff_ffff);
    let digest = hex::encode(sha2::Sha256::digest(record_id.as_bytes()));
    format!("{millis:012x}{}", &digest[..20])
}

/// The smallest event id at `time` or later (for `since`), and the smallest after `time`'s
/// millisecond (for `until`, inclusive).
pub fn id_floor(time: DateTime<Utc>) -> String {
    format!(
        "{:012x}",
        time.timestamp_millis().clamp(0, 0xffff_ffff_ffff)
    )
}

/// The kind of change a stream record reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

impl ChangeKind {
    pub fn parse(event_name: &str) -> Option<ChangeKind> {
        match event_name {
            "INSERT" => Some(ChangeKind::Insert),
            "MODIFY" => Some(ChangeKind::Modify),
            "REMOVE" => Some(ChangeKind::Remove),
            _ => None,
        }
    }
}

/// The audited kinds of item: a company's items whose sort key starts so.
const AUDITED: &[(&str, ResourceType)] = &[
    ("USER#", ResourceType::User),
    ("APIKEY#", ResourceType::ApiKey),
    ("ROLE#", ResourceType::Role),
    ("GROUP#", ResourceType::Group),
    ("DS#", ResourceType::Datasource),
    ("KLIP#", ResourceType::Klip),
    ("DASH#", ResourceType::Dashboard),
    ("REPORT#", ResourceType::Report),
    ("CHAN#", ResourceType::Channel),
    ("ALERT#", ResourceType::Alert),
];

/// The sort keys (prefixes, and the company's own item) of the audited items, for the
/// stream's filter.
pub fn audited_sort_keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = AUDITED.iter().map(|(p, _)| *p).collect();
    keys.push(COMPANY_SK);
    keys
}

/// The sort key of a company's own item.
pub const COMPANY_SK: &str = "COMPANY";

/// The resource type and id of a company's item with sort key `sk`, if it is audited (a
/// company's own item is `company`; the recorder makes a client account's `client`).
pub fn audited(sk: &str) -> Option<(ResourceType, &str)> {
    if sk == COMPANY_SK {
        return Some((ResourceType::Company, ""));
    }
    AUDITED.iter().find_map(|(prefix, kind)| {
        sk.strip_prefix(prefix)
            .filter(|id| !id.is_empty() && !id.contains('#'))
            .map(|id| (*kind, id))
    })
}

/// Whether a write to the item `pk`/`sk` is audited (a company's audited item).
pub fn is_audited_key(pk: &str, sk: &str) -> bool {
    pk.starts_with("C#") && audited(sk).is_some()
}

/// Fields the system keeps for itself (counts, derived values, bookkeeping): a change of
/// only these is no event, and they are never listed.
const KEPT_BY_SYSTEM: &[&str] = &[
    "pk",
    "sk",
    "gsi1pk",
    "gsi1sk",
    "ttl",
    "entity",
    "id",
    "company_id",
    "version",
    "revision",
    "date_created",
    "created_by",
    "last_updated",
    CHANGED_BY,
    CHANGED_IN,
    CHANGED_AT,
    // accounts
    "user_count",
    "admin_count",
    "session_epoch",
    "date_last_login",
    "locked_until",
    "last_used_at",
    "usage_count",
    "used_days",
    "replaced_by",
    // data sources: their data and its bookkeeping (never rows)
    "columns",
    "row_count",
    "data_size",
    "date_last_refresh",
    "refresh_fail_count",
    "last_error",
    "data_id",
    "previous_data_id",
    "segments",
    "retired_segments",
    "lineage",
    "raw_edge",
    "data_version",
    "refresh",
    "next_refresh_at",
    // Klips' computed values
    "value",
    // reports' runs
    "next_run_at",
    "last_run",
    "kept_run",
    "delivered_digest",
    // channels' delivery record
    "disabled_reason",
    "consecutive_failures",
    "last_delivery",
    "previous_until",
    // alerts' evaluation
    "state",
    "state_reason",
    "last_value",
    "last_evaluated_at",
    "last_fired_at",
];

/// Whether a field holds a secret (its values are never shown, only that it changed).
fn is_secret(field: &str) -> bool {
    let f = field.to_ascii_lowercase();
    ["password", "secret", "hash", "token", "signature"]
        .iter()
        .any(|s| f.contains(s))
}

/// The mask that stands for a secret's value.
pub const MASK: &str = crate::records::HEADER_MASK;

/// A field's value as an event may show it: secrets masked, header values masked, URLs
/// with their password and query values masked (as the API shows them), at any depth.
fn shown(field: &str, value: &Value) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    if is_secret(field) {
        return Value::String(MASK.to_owned());
    }
    match value {
        Value::String(s) if field.ends_with("url") => Value::String(crate::records::mask_url(s)),
        Value::Object(map) if field == "headers" => Value::Object(
            map.keys()
                .map(|k| (k.clone(), Value::String(MASK.to_owned())))
                .collect(),
        ),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shown(k, v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| shown(field, v)).collect()),
        other => other.clone(),
    }
}

/// What a change of an audited item says, before the recorder adds its actor, time and id.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    pub action: Action,
    pub resource: Resource,
    pub changes: Vec<FieldChange>,
    /// Only a data source's data changed (a push, a replace, a refresh): an event when a
    /// user or a key did it, not when the system refreshed it.
    pub data_only: bool,
}

/// The name an item goes by: its `name`, a user's email.
fn name_of(kind: ResourceType, item: &Map<String, Value>) -> Option<String> {
    let field = if kind == ResourceType::User {
        "email"
    } else {
        "name"
    };
    item.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn has(item: &Map<String, Value>, field: &str) -> bool {
    item.get(field).is_some_and(|v| !v.is_null())
}

/// An item with the fields of its `meta` (an asset's) at the top.
fn lift_meta(item: &Map<String, Value>) -> Map<String, Value> {
    let mut out = item.clone();
    if let Some(Value::Object(meta)) = out.remove("meta") {
        for (k, v) in meta {
            out.entry(k).or_insert(v);
        }
    }
    out
}

/// The fields that changed from `old` to `new`, shown as an event may show them (a field
/// absent on one side is `null` there), in name order.
pub fn changed_fields(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<FieldChange> {
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| !KEPT_BY_SYSTEM.contains(&name.as_str()))
        .filter_map(|name| {
            let from = old.get(name).cloned().unwrap_or(Value::Null);
            let to = new.get(name).cloned().unwrap_or(Value::Null);
            (from != to).then(|| FieldChange {
                field: name.clone(),
                from: shown(name, &from),
                to: shown(name, &to),
            })
        })
        .collect()
}

/// The most an event's changes may hold (as JSON text): a DynamoDB item holds 400 KB.
pub const MAX_CHANGES_BYTES: usize = 256 * 1024;

/// What a value too large to keep in an event shows instead.
pub const TOO_LARGE: &str = "(too large to show)";

/// Keeps an event's changes within [`MAX_CHANGES_BYTES`]: the largest values, one after
/// another, show [`TOO_LARGE`] instead (the fields still say they changed).
pub fn fit_changes(changes: &mut [FieldChange]) {
    let size = |v: &Value| v.to_string().len();
    let mut total: usize = changes.iter().map(|c| size(&c.from) + size(&c.to)).sum();
    while total > MAX_CHANGES_BYTES {
        let Some(largest) = changes
            .iter_mut()
            .flat_map(|c| [&mut c.from, &mut c.to])
            .filter(|v| v.as_str() != Some(TOO_LARGE))
            .max_by_key(|v| size(v))
        else {
            return;
        };
        total -= size(largest);
        *largest = Value::String(TOO_LARGE.to_owned());
        total += size(largest);
    }
}

/// What the change of the audited item `sk` from `old` to `new` says (`None`: nothing an
/// audit log shows, such as a change of values the system keeps). The images are the
/// items as plain JSON.
pub fn describe(
    change: ChangeKind,
    sk: &str,
    old: Option<&Map<String, Value>>,
    new: Option<&Map<String, Value>>,
) -> Option<Draft> {
    let (mut kind, mut id) = audited(sk)?;
    // An asset keeps its name, description, slug and sharing under `meta`: seen at the top.
    let (old, new) = (old.map(lift_meta), new.map(lift_meta));
    let (old, new) = (old.as_ref(), new.as_ref());
    let image = new.or(old)?;
    let owned_id;
    if kind == ResourceType::Company {
        owned_id = image.get("id").and_then(Value::as_str)?.to_owned();
        id = &owned_id;
        if has(image, "parent_id") {
            kind = ResourceType::Client;
        }
    }
    let resource = Resource {
        kind,
        id: id.to_owned(),
        name: name_of(kind, image),
    };
    let (action, changes) = match change {
        ChangeKind::Insert => (Action::Created, changed_fields(&Map::new(), new?)),
        ChangeKind::Remove => (Action::Deleted, Vec::new()),
        ChangeKind::Modify => return modified(resource, old?, new?),
    };
    Some(Draft {
        action,
        resource,
        changes,
        data_only: false,
    })
}

/// What a change of an audited item from `old` to `new` says (see [`describe`]).
fn modified(
    resource: Resource,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) -> Option<Draft> {
    let kind = resource.kind;
    let draft = |action, changes, data_only| {
        Some(Draft {
            action,
            resource,
            changes,
            data_only,
        })
    };
    let moved = |field: &str| old.get(field) != new.get(field) && has(new, field);
    if kind == ResourceType::User && moved("date_last_login") {
        return draft(Action::Login, Vec::new(), false);
    }
    if kind == ResourceType::ApiKey && moved("revoked_at") && !has(old, "revoked_at") {
        let replaced = new.get("replaced_by").cloned().unwrap_or(Value::Null);
        if replaced.is_null() {
            return draft(Action::KeyRevoked, Vec::new(), false);
        }
        let change = FieldChange {
            field: "replaced_by".into(),
            from: Value::Null,
            to: replaced,
        };
        return draft(Action::KeyRotated, vec![change], false);
    }
    let changes = changed_fields(old, new);
    if !changes.is_empty() {
        return draft(Action::Updated, changes, false);
    }
    // A data source whose data changed: its row count, never its rows.
    if kind == ResourceType::Datasource && moved("data_version") {
        let rows = |image: &Map<String, Value>| image.get("row_count").cloned();
        let change = FieldChange {
            field: "row_count".into(),
            from: rows(old).unwrap_or(Value::Null),
            to: rows(new).unwrap_or(Value::Null),
        };
        return draft(Action::Updated, vec![change], true);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn an_update_lists_the_fields_users_changed_and_masks_secrets() {
        let old = map(json!({"name": "A", "version": 1, "last_updated": "x",
            "properties": {"endpoint_url": "https://u:pw@example.com/x?token=abc",
                           "headers": {"Authorization": "Bearer s3cr3t"}},
            "secret": "whsec_1", "value": {"current": 1}}));
        let new = map(json!({"name": "B", "version": 2, "last_updated": "y",
            "properties": {"endpoint_url": "https://u:pw2@example.com/x?token=def",
                           "headers": {"Authorization": "Bearer other"}},
            "secret": "whsec_2", "value": {"current": 2}}));
        let draft = describe(ChangeKind::Modify, "DS#abc", Some(&old), Some(&new)).unwrap();
        assert_eq!(draft.action, Action::Updated);
        assert_eq!(draft.resource.kind, ResourceType::Datasource);
        assert_eq!(draft.resource.name.as_deref(), Some("B"));
        let fields: Vec<&str> = draft.changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["name", "properties", "secret"]);
        let text = serde_json::to_string(&draft.changes).unwrap();
        for secret in [
            "pw2", "pw@", "abc", "def", "s3cr3t", "other", "whsec_1", "whsec_2",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("example.com"));
    }

    #[test]
    fn a_change_of_system_values_only_is_no_event() {
        let old = map(json!({"meta": {"name": "K", "version": 3}, "value": {"current": 1}}));
        let new = map(json!({"meta": {"name": "K", "version": 4}, "value": {"current": 2}}));
        let renamed = map(json!({"meta": {"name": "L", "version": 5}, "value": {"current": 2}}));
        let d = describe(ChangeKind::Modify, "KLIP#k", Some(&new), Some(&renamed)).unwrap();
        assert_eq!(
            d.changes,
            [FieldChange {
                field: "name".into(),
                from: json!("K"),
                to: json!("L")
            }]
        );
        assert_eq!(
            describe(ChangeKind::Modify, "KLIP#k", Some(&old), Some(&new)),
            None
        );
        assert_eq!(
            describe(ChangeKind::Modify, "RUN#r#1", Some(&old), Some(&new)),
            None
        );
        assert_eq!(
            describe(ChangeKind::Insert, "SLUG#KLIP#k", None, Some(&new)),
            None
        );
    }

    #[test]
    fn a_data_change_says_its_row_count_never_its_rows() {
        let old = map(
            json!({"meta": {"name": "Sales"}, "data_version": 3, "row_count": 10,
            "segments": [{"id": "s1"}]}),
        );
        let new = map(
            json!({"meta": {"name": "Sales"}, "data_version": 4, "row_count": 30,
            "segments": [{"id": "s1"}, {"id": "s2"}]}),
        );
        let d = describe(ChangeKind::Modify, "DS#d", Some(&old), Some(&new)).unwrap();
        assert!(d.data_only);
        assert_eq!(
            d.changes,
            [FieldChange {
                field: "row_count".into(),
                from: json!(10),
                to: json!(30)
            }]
        );
        // A compaction (segments merged, the same data) is no event.
        let compacted = map(
            json!({"meta": {"name": "Sales"}, "data_version": 4, "row_count": 30,
            "segments": [{"id": "s3"}]}),
        );
        assert_eq!(
            describe(ChangeKind::Modify, "DS#d", Some(&new), Some(&compacted)),
            None
        );
    }

    #[test]
    fn sign_ins_key_revocations_and_clients_are_named() {
        let old = map(json!({"email": "a@b.c", "date_last_login": null}));
        let new = map(json!({"email": "a@b.c", "date_last_login": "2026-01-01T00:00:00Z"}));
        let d = describe(ChangeKind::Modify, "USER#u", Some(&old), Some(&new)).unwrap();
        assert_eq!(
            (d.action, d.resource.name.as_deref()),
            (Action::Login, Some("a@b.c"))
        );
        let old = map(json!({"name": "k"}));
        let new = map(json!({"name": "k", "revoked_at": "2026-01-01T00:00:00Z"}));
        let d = describe(ChangeKind::Modify, "APIKEY#k", Some(&old), Some(&new)).unwrap();
        assert_eq!(d.action, Action::KeyRevoked);
        let mut rotated = new.clone();
        rotated.insert("replaced_by".into(), json!("k2"));
        let d = describe(ChangeKind::Modify, "APIKEY#k", Some(&old), Some(&rotated)).unwrap();
        assert_eq!(d.action, Action::KeyRotated);
        let client = map(json!({"id": "c1", "name": "Acme", "parent_id": "p"}));
        let d = describe(ChangeKind::Insert, "COMPANY", None, Some(&client)).unwrap();
        assert_eq!(
            (d.resource.kind, d.resource.id.as_str()),
            (ResourceType::Client, "c1")
        );
        let d = describe(ChangeKind::Remove, "USER#u", Some(&old), None).unwrap();
        assert_eq!(d.action, Action::Deleted);
    }

    #[test]
    fn changes_too_large_for_an_item_are_cut_largest_first() {
        let big = "x".repeat(MAX_CHANGES_BYTES);
        let mut changes = vec![
            FieldChange {
                field: "layout".into(),
                from: json!(big),
                to: json!("small"),
            },
            FieldChange {
                field: "name".into(),
                from: json!("a"),
                to: json!("b"),
            },
        ];
        fit_changes(&mut changes);
        assert_eq!(changes[0].from, json!(TOO_LARGE));
        assert_eq!(changes[0].to, json!("small"));
        assert_eq!(changes[1].to, json!("b"));
    }

    #[test]
    fn ids_sort_by_time_and_follow_the_record() {
        let t = DateTime::parse_from_rfc3339("2026-12-07T10:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = event_id(t, "rec-1");
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(a, event_id(t, "rec-1"));
        assert_ne!(a, event_id(t, "rec-2"));
        let later = event_id(t + chrono::Duration::milliseconds(1), "rec-0");
        assert!(later > a);
        assert!(a >= id_floor(t) && later >= id_floor(t));
    }
}
