//! What the audit log needs from the request path, at no round trip of its own:
//!
//! - **who acts**: admission runs each handler inside [`acting`] with its caller (a user,
//!   or an API key and its user's email); outside a request (the worker, the scheduler, a
//!   command) the actor is the system;
//! - **every write of an audited item says so**: the SDK interceptor [`Stamp`] adds
//!   `changed_by`, `changed_in` (the request id) and `changed_at` to each `PutItem`,
//!   `UpdateItem` and each put or update of a `TransactWriteItems` whose key is a company's
//!   audited item (`domain::audit::audited`), so the table's stream carries the actor of
//!   every create and update in the item's own new image;
//! - **a delete says who deleted**: the item is gone from the stream's new image, so the
//!   store writes a note (`GONE#<sk>`, kept two days) in the same transaction as the
//!   delete ([`deletion_note`]); the recorder reads it when the removal comes.
//!
//! The recorder (`functions/audit-recorder`) turns the stream's records into events.

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextMut;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::AttributeValue;
use domain::audit::{Actor, ActorType, CHANGED_AT, CHANGED_BY, CHANGED_IN};
use std::collections::HashMap;

tokio::task_local! {
    static ACTOR: Actor;
}

/// Runs `work` with `actor` as the author of its writes.
pub async fn acting<F: std::future::Future>(actor: Actor, work: F) -> F::Output {
    ACTOR.scope(actor, work).await
}

/// Who acts now: the caller of the request being handled, or the system.
pub fn current_actor() -> Actor {
    ACTOR
        .try_with(Clone::clone)
        .unwrap_or_else(|_| Actor::system())
}

/// The actor of a caller: its API key (with its user's email) or its user.
pub fn actor_of(caller: &crate::auth::Caller) -> Actor {
    let company = &caller.user.company_id;
    match &caller.api_key {
        Some(key) => Actor {
            kind: ActorType::ApiKey,
            id: Some(key.id.clone()),
            email: Some(caller.user.email.clone()),
            company_id: Some(company.clone()),
        },
        None => user_actor(&caller.user.id, &caller.user.email, company),
    }
}

/// A user of `company` as the actor.
pub fn user_actor(id: &str, email: &str, company: &str) -> Actor {
    Actor {
        kind: ActorType::User,
        id: Some(id.to_owned()),
        email: Some(email.to_owned()),
        company_id: Some(company.to_owned()),
    }
}

fn actor_value(actor: &Actor) -> AttributeValue {
    let text = |v: &Option<String>| match v {
        Some(s) => AttributeValue::S(s.clone()),
        None => AttributeValue::Null(true),
    };
    AttributeValue::M(HashMap::from([
        (
            "type".to_owned(),
            AttributeValue::S(actor.kind.as_str().into()),
        ),
        ("id".to_owned(), text(&actor.id)),
        ("email".to_owned(), text(&actor.email)),
        ("company_id".to_owned(), text(&actor.company_id)),
    ]))
}

/// The three stamps of a write made now.
fn stamps() -> [(&'static str, AttributeValue); 3] {
    let request = crate::metrics::request_id()
        .map(AttributeValue::S)
        .unwrap_or(AttributeValue::Null(true));
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    [
        (CHANGED_BY, actor_value(&current_actor())),
        (CHANGED_IN, request),
        (CHANGED_AT, AttributeValue::S(at)),
    ]
}

fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(s)) => s,
        _ => "",
    }
}

/// Whether a write to the item with this key (or whole item) is stamped: a company's
/// audited item, or the failed-login record of an email (its request id).
fn stamped(key: &HashMap<String, AttributeValue>) -> bool {
    let (pk, sk) = (text(key, "pk"), text(key, "sk"));
    domain::audit::is_audited_key(pk, sk) || pk.starts_with("LOGINFAIL#")
}

/// Adds the stamps to a whole item written.
pub fn stamp_item(item: &mut HashMap<String, AttributeValue>) {
    if stamped(item) {
        for (name, value) in stamps() {
            item.insert(name.to_owned(), value);
        }
    }
}

/// Adds the stamps to an update expression (into its `SET` clause, or a new one) with the
/// names and values they use.
pub fn stamp_update(
    key: &HashMap<String, AttributeValue>,
    expression: &mut Option<String>,
    names: &mut Option<HashMap<String, String>>,
    values: &mut Option<HashMap<String, AttributeValue>>,
) {
    if !stamped(key) {
        return;
    }
    let Some(current) = expression.as_deref() else {
        return;
    };
    let assignments = "#pb_changed_by = :pb_changed_by, #pb_changed_in = :pb_changed_in, #pb_changed_at = :pb_changed_at";
    *expression = Some(with_assignments(current, assignments));
    let names = names.get_or_insert_with(HashMap::new);
    let values = values.get_or_insert_with(HashMap::new);
    for (name, value) in stamps() {
        names.insert(format!("#pb_{name}"), name.to_owned());
        values.insert(format!(":pb_{name}"), value);
    }
}

/// `expression` with `assignments` added to its `SET` clause (the keyword as a whole word,
/// any case), or as a `SET` clause of their own.
fn with_assignments(expression: &str, assignments: &str) -> String {
    let bytes = expression.as_bytes();
    let mut at = 0;
    while let Some(found) = expression[at..].to_ascii_uppercase().find("SET") {
        let start = at + found;
        let end = start + 3;
        let before = start == 0 || bytes[start - 1].is_ascii_whitespace();
        let after = end < bytes.len() && bytes[end].is_ascii_whitespace();
        if before && after {
            return format!(
                "{}{assignments}, {}",
                &expression[..end + 1],
                expression[end + 1..].trim_start()
            );
        }
        at = end;
    }
    format!("{} SET {assignments}", expression.trim_end())
}

/// The note a delete of an audited item writes beside it (same transaction): who deleted
/// it, in which request, when; `None` for an item that is not audited.
pub fn deletion_note(
    key: &HashMap<String, AttributeValue>,
) -> Option<HashMap<String, AttributeValue>> {
    let (pk, sk) = (text(key, "pk"), text(key, "sk"));
    if !domain::audit::is_audited_key(pk, sk) {
        return None;
    }
    let ttl = chrono::Utc::now().timestamp() + domain::audit::NOTE_TTL_SECS;
    let mut note = HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        (
            "sk".to_owned(),
            AttributeValue::S(format!("{}{sk}", domain::audit::GONE_PREFIX)),
        ),
        ("ttl".to_owned(), AttributeValue::N(ttl.to_string())),
    ]);
    for (name, value) in stamps() {
        note.insert(name.to_owned(), value);
    }
    Some(note)
}

/// The SDK interceptor that stamps the writes of audited items (see the module
/// documentation). It changes nothing else of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stamp;

impl Intercept for Stamp {
    fn name(&self) -> &'static str {
        "PulseboardAuditStamp"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use aws_sdk_dynamodb::operation::{
            put_item::PutItemInput, transact_write_items::TransactWriteItemsInput,
            update_item::UpdateItemInput,
        };
        let input = context.input_mut();
        if let Some(put) = input.downcast_mut::<PutItemInput>() {
            if let Some(item) = put.item.as_mut() {
                stamp_item(item);
            }
        } else if let Some(update) = input.downcast_mut::<UpdateItemInput>() {
            let key = update.key.clone().unwrap_or_default();
            stamp_update(
                &key,
                &mut update.update_expression,
                &mut update.expression_attribute_names,
                &mut update.expression_attribute_values,
            );
        } else if let Some(tx) = input.downcast_mut::<TransactWriteItemsInput>() {
            for step in tx.transact_items.iter_mut().flatten() {
                if let Some(put) = step.put.as_mut() {
                    stamp_item(&mut put.item);
                }
                if let Some(update) = step.update.as_mut() {
                    let mut expression = Some(std::mem::take(&mut update.update_expression));
                    stamp_update(
                        &update.key,
                        &mut expression,
                        &mut update.expression_attribute_names,
                        &mut update.expression_attribute_values,
                    );
                    update.update_expression = expression.unwrap_or_default();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(pk.into())),
            ("sk".to_owned(), AttributeValue::S(sk.into())),
        ])
    }

    #[test]
    fn the_stamps_join_the_set_clause_or_make_one() {
        let a = "#pb_changed_by = :b";
        assert_eq!(
            with_assignments("SET a = :a REMOVE b", a),
            "SET #pb_changed_by = :b, a = :a REMOVE b"
        );
        assert_eq!(
            with_assignments("REMOVE locked_until SET x = :x", a),
            "REMOVE locked_until SET #pb_changed_by = :b, x = :x"
        );
        assert_eq!(
            with_assignments("ADD n :one", a),
            "ADD n :one SET #pb_changed_by = :b"
        );
        assert_eq!(
            with_assignments("set offset = :o", a),
            "set #pb_changed_by = :b, offset = :o"
        );
        // A name that merely contains the letters is no keyword.
        assert_eq!(
            with_assignments("ADD asset_count :one", a),
            "ADD asset_count :one SET #pb_changed_by = :b"
        );
    }

    #[tokio::test]
    async fn only_audited_items_are_stamped_with_the_acting_caller() {
        let actor = user_actor("u1", "a@b.c", "c");
        acting(actor.clone(), async {
            let mut item = key("C#c", "DASH#d");
            stamp_item(&mut item);
            let Some(AttributeValue::M(by)) = item.get(CHANGED_BY) else {
                panic!("{item:?}")
            };
            assert_eq!(by.get("id"), Some(&AttributeValue::S("u1".into())));
            let mut counter = key("RATE#c", "D#2026-01-01");
            stamp_item(&mut counter);
            assert!(!counter.contains_key(CHANGED_BY));
            let mut slug = key("C#c", "SLUG#DASH#x");
            stamp_item(&mut slug);
            assert!(!slug.contains_key(CHANGED_BY));
            assert!(deletion_note(&key("C#c", "DASH#d")).is_some());
            assert!(deletion_note(&key("C#c", "RUN#r#1")).is_none());
        })
        .await;
        assert_eq!(current_actor(), Actor::system());
    }
}
