//! The repository of audit events: a company's events live in their own partition
//! (`AUDIT#<company>`), sorted by id (ids begin with the time, so newest first is a query
//! backwards), each written once (its id comes from the stream record: a conditional put)
//! and kept [`domain::audit::RETENTION_DAYS`] (its `ttl`). Also the deletion notes the
//! recorder reads (see `crate::audit`).

use super::{db_error, keys, n, s, Key, Store, StoreError};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use domain::audit::{Action, AuditEvent, ResourceType};

pub struct AuditEvents<'a>(&'a Store);

/// A filter clause: its text, the attribute names and the value it uses.
type Clause = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    AttributeValue,
);

impl Store {
    pub fn audit_events(&self) -> AuditEvents<'_> {
        AuditEvents(self)
    }
}

/// What a list of events keeps.
#[derive(Clone, Debug, Default)]
pub struct Shown {
    pub actor_id: Option<String>,
    pub resource_type: Option<ResourceType>,
    pub resource_id: Option<String>,
    pub action: Option<Action>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A page of events and how many there are in all.
pub struct Page {
    pub events: Vec<AuditEvent>,
    pub total: usize,
}

/// Who deleted an item, from its deletion note.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct DeletionNote {
    pub changed_by: domain::audit::Actor,
    #[serde(default)]
    pub changed_in: Option<String>,
    #[serde(default)]
    pub changed_at: Option<String>,
}

impl AuditEvents<'_> {
    /// Writes `event` unless it is there already (a record delivered again); answers
    /// whether it was new.
    pub async fn record(&self, event: &AuditEvent) -> Result<bool, StoreError> {
        let key = Key::new(keys::audit_pk(&event.company_id), event.id.clone());
        let item = super::to_item(&key, event)?;
        let store = self.0;
        match store
            .db
            .put_item()
            .table_name(&store.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(db_error("PutItem", e)),
        }
    }

    /// The deletion note of the item `pk`/`sk`, if one is kept.
    pub async fn deletion_note(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<DeletionNote>, StoreError> {
        let key = Key::new(pk, format!("{}{sk}", domain::audit::GONE_PREFIX));
        self.0.get(&key).await
    }

    fn query(
        &self,
        company: &str,
        shown: &Shown,
        now: DateTime<Utc>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let store = self.0;
        let from = shown
            .since
            .map_or_else(|| "0".to_owned(), domain::audit::id_floor);
        // `until` keeps its whole millisecond: everything below the next one.
        let to = shown.until.map_or_else(
            || "g".to_owned(),
            |t| domain::audit::id_floor(t + chrono::Duration::milliseconds(1)),
        );
        let mut filter = "(attribute_not_exists(#ttl) OR #ttl > :now)".to_owned();
        let mut query = store
            .db
            .query()
            .table_name(&store.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":pk", s(keys::audit_pk(company)))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to))
            .expression_attribute_values(":now", n(now.timestamp()))
            .consistent_read(true);
        let mut clauses: Vec<Clause> = Vec::new();
        if let Some(actor) = &shown.actor_id {
            clauses.push((
                "#actor.id = :actor",
                &[("#actor", "actor")],
                ":actor",
                s(actor.as_str()),
            ));
        }
        if let Some(kind) = shown.resource_type {
            clauses.push((
                "#resource.#type = :rtype",
                &[("#resource", "resource"), ("#type", "type")],
                ":rtype",
                s(kind.as_str()),
            ));
        }
        if let Some(id) = &shown.resource_id {
            clauses.push((
                "#resource.id = :rid",
                &[("#resource", "resource")],
                ":rid",
                s(id.as_str()),
            ));
        }
        if let Some(action) = shown.action {
            clauses.push((
                "#action = :action",
                &[("#action", "action")],
                ":action",
                s(action.as_str()),
            ));
        }
        for (clause, names, placeholder, value) in clauses {
            filter.push_str(" AND ");
            filter.push_str(clause);
            for (k, v) in names {
                query = query.expression_attribute_names(*k, *v);
            }
            query = query.expression_attribute_values(placeholder, value);
        }
        query.filter_expression(filter)
    }

    /// `skip` to `skip + take` of a company's events that `shown` keeps, newest first: one
    /// `Query` backwards over the company's events (reading the page and what it skips) and a
    /// `Select=COUNT` of the same range for the total, at the same time.
    pub async fn page(
        &self,
        company: &str,
        shown: &Shown,
        now: DateTime<Utc>,
        skip: usize,
        take: usize,
    ) -> Result<Page, StoreError> {
        let (events, total) = tokio::try_join!(
            self.read(company, shown, now, skip.saturating_add(take)),
            self.count(company, shown, now)
        )?;
        Ok(Page {
            events: events.into_iter().skip(skip).take(take).collect(),
            total,
        })
    }

    async fn read(
        &self,
        company: &str,
        shown: &Shown,
        now: DateTime<Utc>,
        wanted: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        Store::newest_matching(|| self.query(company, shown, now), wanted).await
    }

    async fn count(
        &self,
        company: &str,
        shown: &Shown,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        Store::count_matching(|| self.query(company, shown, now)).await
    }
}
