//! The **audit recorder**: a consumer of the table's stream of its own (its event source
//! mapping beside the report worker's), which turns each change of a company's audited
//! items into an audit event (`domain::audit` says what a change says):
//!
//! - creates and updates name their actor, request and time from the stamps every write of
//!   an audited item carries (`platform::audit`);
//! - a removal names them from the deletion note written in the delete's transaction (a
//!   removal by the table's time to live, or one without a note, is the system's);
//! - a sign-in is a user's `date_last_login` moving; a failed sign-in is the failed-login
//!   record of an email that belongs to a user;
//! - a client account's own item is recorded in its partner's log (`client`), and what a
//!   partner's people do inside a client account is in both logs.
//!
//! Each event's id derives from its stream record and is written only if absent, so a batch
//! delivered again writes nothing twice. A record whose event could not be written (the
//! database busy or down) is answered as a batch item failure: the stream delivers it again,
//! and after the mapping's retries it goes to the failure queue.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use chrono::{DateTime, Utc};
use domain::audit::{Action, Actor, AuditEvent, ChangeKind, Resource, ResourceType};
use platform::store::StoreError;
use platform::AppState;
use serde_json::{json, Map, Value};

/// The event source mapping's filters (the template's `FilterCriteria` says the same): a
/// change of a company's audited item, and a change of an email's failed-login record.
pub fn filter_patterns() -> [String; 2] {
    let sort_keys: Vec<Value> = domain::audit::audited_sort_keys()
        .into_iter()
        .map(|sk| {
            if sk.ends_with('#') {
                json!({ "prefix": sk })
            } else {
                json!(sk)
            }
        })
        .collect();
    [
        json!({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "C#"}]}, "sk": {"S": sort_keys}}}})
            .to_string(),
        json!({"eventName": ["INSERT", "MODIFY"],
               "dynamodb": {"Keys": {"pk": {"S": [{"prefix": "LOGINFAIL#"}]}}}})
        .to_string(),
    ]
}

fn key_text<'a>(record: &'a EventRecord, name: &str) -> &'a str {
    match record.change.keys.get(name) {
        Some(serde_dynamo::AttributeValue::S(s)) => s.as_str(),
        _ => "",
    }
}

/// Whether the record passes [`filter_patterns`].
pub fn passes_filter(record: &EventRecord) -> bool {
    let (pk, sk) = (key_text(record, "pk"), key_text(record, "sk"));
    domain::audit::is_audited_key(pk, sk)
        || (pk.starts_with("LOGINFAIL#") && record.event_name != "REMOVE")
}

/// An image as plain JSON (`None` when the record has none).
fn json_image(image: &serde_dynamo::Item) -> Option<Map<String, Value>> {
    if image.is_empty() {
        return None;
    }
    serde_dynamo::from_item(image.clone()).ok()
}

fn text(image: Option<&Map<String, Value>>, field: &str) -> Option<String> {
    image?.get(field)?.as_str().map(str::to_owned)
}

/// The stamps of a write: who, in which request, when.
struct Stamp {
    actor: Actor,
    request_id: Option<String>,
    at: Option<DateTime<Utc>>,
}

impl Stamp {
    fn of(image: Option<&Map<String, Value>>) -> Stamp {
        let actor = image
            .and_then(|i| i.get(domain::audit::CHANGED_BY))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_else(Actor::system);
        Stamp {
            actor,
            request_id: text(image, domain::audit::CHANGED_IN),
            at: text(image, domain::audit::CHANGED_AT).and_then(|t| domain::time::parse(&t)),
        }
    }

    fn system() -> Stamp {
        Stamp {
            actor: Actor::system(),
            request_id: None,
            at: None,
        }
    }
}

/// How far a deletion note's time may be from its removal's (the stream's time has whole
/// seconds): a note further off belongs to another deletion of an item with the same key.
const NOTE_SLACK_SECS: i64 = 60;

/// Who removed the item of `record`: its deletion note, or the system (a removal by the
/// table's time to live, or one made without a note).
async fn remover(state: &AppState, record: &EventRecord) -> Result<Stamp, StoreError> {
    let by_ttl = record
        .user_identity
        .as_ref()
        .is_some_and(|u| u.type_ == "Service");
    if by_ttl {
        return Ok(Stamp::system());
    }
    let (pk, sk) = (key_text(record, "pk"), key_text(record, "sk"));
    let Some(note) = state.store.audit_events().deletion_note(pk, sk).await? else {
        return Ok(Stamp::system());
    };
    let at = note.changed_at.as_deref().and_then(domain::time::parse);
    let removed = record.change.approximate_creation_date_time;
    if at.is_some_and(|at| (at - removed).num_seconds().abs() > NOTE_SLACK_SECS) {
        return Ok(Stamp::system());
    }
    Ok(Stamp {
        actor: note.changed_by,
        request_id: note.changed_in,
        at,
    })
}

/// The event a record of a company's item says, if any.
async fn company_event(
    state: &AppState,
    record: &EventRecord,
) -> Result<Option<(String, domain::audit::Draft, Stamp)>, StoreError> {
    let Some(change) = ChangeKind::parse(&record.event_name) else {
        return Ok(None);
    };
    let (pk, sk) = (key_text(record, "pk"), key_text(record, "sk"));
    let Some(mut company) = pk.strip_prefix("C#").map(str::to_owned) else {
        return Ok(None);
    };
    let (old, new) = (
        json_image(&record.change.old_image),
        json_image(&record.change.new_image),
    );
    let Some(draft) = domain::audit::describe(change, sk, old.as_ref(), new.as_ref()) else {
        return Ok(None);
    };
    if draft.resource.kind == ResourceType::Client {
        // A client account's own item is its partner's record.
        match text(new.as_ref().or(old.as_ref()), "parent_id") {
            Some(partner) => company = partner,
            None => return Ok(None),
        }
    }
    let stamp = match (change, draft.action) {
        (ChangeKind::Remove, _) => remover(state, record).await?,
        (_, Action::Login) => {
            let mut stamp = Stamp::of(new.as_ref());
            stamp.actor = platform::audit::user_actor(
                &draft.resource.id,
                draft.resource.name.as_deref().unwrap_or(""),
                &company,
            );
            stamp
        }
        _ => Stamp::of(new.as_ref()),
    };
    // The system's own data refreshes are no one's action.
    if draft.data_only && stamp.actor.kind == domain::audit::ActorType::System {
        return Ok(None);
    }
    Ok(Some((company, draft, stamp)))
}

/// The `login_failed` event of an email's failed-login record, if the email is a user's.
async fn failed_login_event(
    state: &AppState,
    record: &EventRecord,
) -> Result<Option<(String, domain::audit::Draft, Stamp)>, StoreError> {
    let Some(email) = key_text(record, "pk").strip_prefix("LOGINFAIL#") else {
        return Ok(None);
    };
    let Some(claim) = state.store.users().claim(email).await? else {
        return Ok(None);
    };
    let mut stamp = Stamp::of(json_image(&record.change.new_image).as_ref());
    stamp.actor = platform::audit::user_actor(&claim.user_id, email, &claim.company_id);
    let draft = domain::audit::Draft {
        action: Action::LoginFailed,
        resource: Resource {
            kind: ResourceType::User,
            id: claim.user_id,
            name: Some(email.to_owned()),
        },
        changes: Vec::new(),
        data_only: false,
    };
    Ok(Some((claim.company_id, draft, stamp)))
}

/// Records the event of one record (nothing when it says none); answers whether an event
/// was written (`false` also when it was there already).
pub async fn record(state: &AppState, record: &EventRecord) -> Result<bool, StoreError> {
    let found = if key_text(record, "pk").starts_with("LOGINFAIL#") {
        failed_login_event(state, record).await?
    } else {
        company_event(state, record).await?
    };
    let Some((company_id, draft, stamp)) = found else {
        return Ok(false);
    };
    let time = stamp
        .at
        .unwrap_or(record.change.approximate_creation_date_time);
    let retention = chrono::Duration::days(domain::audit::RETENTION_DAYS);
    let mut event = AuditEvent {
        id: domain::audit::event_id(time, &record.event_id),
        company_id,
        time,
        actor: stamp.actor,
        action: draft.action,
        resource: draft.resource,
        changes: draft.changes,
        request_id: stamp.request_id,
        ttl: Some((time + retention).timestamp()),
    };
    domain::audit::fit_changes(&mut event.changes);
    // A partner's people acting inside a client account: the partner's own log shows
    // their actions too (the same event, in the partner's partition).
    let partner = event
        .actor
        .company_id
        .clone()
        .filter(|actor_company| *actor_company != event.company_id);
    let events = state.store.audit_events();
    match partner {
        Some(partner) => {
            let copy = AuditEvent {
                company_id: partner,
                ..event.clone()
            };
            let (new, _) = tokio::try_join!(events.record(&event), events.record(&copy))?;
            Ok(new)
        }
        None => events.record(&event).await,
    }
}

/// How many records of a batch are recorded at once.
const AT_ONCE: usize = 8;

/// Records a stream batch; answers the sequence numbers of the records to deliver again
/// (their event could not be written).
pub async fn record_batch(state: &AppState, batch: &Event) -> Vec<String> {
    use futures::StreamExt;
    let passing: Vec<&EventRecord> = batch.records.iter().filter(|r| passes_filter(r)).collect();
    let mut recordings = Vec::with_capacity(passing.len());
    for r in &passing {
        recordings.push(record(state, r));
    }
    let outcomes: Vec<Result<bool, StoreError>> = futures::stream::iter(recordings)
        .buffered(AT_ONCE)
        .collect()
        .await;
    let mut failures = Vec::new();
    for (r, outcome) in passing.iter().zip(outcomes) {
        if let Err(error) = outcome {
            let source = std::error::Error::source(&error).map(ToString::to_string);
            tracing::warn!(%error, ?source, "an audit event returned to the stream for a retry");
            failures.extend(r.change.sequence_number.clone());
        }
    }
    failures
}

/// Handles one invocation: a stream batch, answered with its batch item failures.
pub async fn handle(state: &AppState, event: Value) -> Result<Value, String> {
    let batch: Event =
        serde_json::from_value(event).map_err(|e| format!("not a DynamoDB stream event: {e}"))?;
    let failures = record_batch(state, &batch).await;
    Ok(json!({
        "batchItemFailures": failures
            .into_iter()
            .map(|id| json!({"itemIdentifier": id}))
            .collect::<Vec<_>>()
    }))
}
