//! Repositories of accounts: users (with their email claims and the company's seat count),
//! API keys, reset tokens and client companies. Each method names one write and keeps its
//! condition next to the reason for it.

use super::StoreError;
use super::{keys, n, s, t, Key, Store, WriteError};
use crate::auth::apikeys::IssuedKey;
use crate::auth::records::{ApiKeyRecord, Company, EmailClaim, KeyHashRecord, User};
use crate::time::rfc3339;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

/// Users, their email claims and the seats they take.
#[derive(Clone, Copy)]
pub struct Users<'a>(pub(super) &'a Store);

/// API keys: their records and immutable hash entries.
#[derive(Clone, Copy)]
pub struct ApiKeys<'a>(pub(super) &'a Store);

/// Companies and client accounts.
#[derive(Clone, Copy)]
pub struct Companies<'a>(pub(super) &'a Store);

impl Store {
    pub fn users(&self) -> Users<'_> {
        Users(self)
    }
    pub fn api_keys(&self) -> ApiKeys<'_> {
        ApiKeys(self)
    }
    pub fn companies(&self) -> Companies<'_> {
        Companies(self)
    }
}

/// Why a new user was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewUserRefused {
    /// Every seat of the company (`company.seats`) is taken.
    NoSeat,
    EmailTaken,
}

/// Why a user's replacement was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserChangeRefused {
    /// Someone saved the user since it was read.
    Changed,
    EmailTaken,
    /// The change would leave the company without an admin.
    LastAdmin,
}

/// Why a user was not deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserDeleteRefused {
    Gone,
    /// The user is the company's last admin.
    LastAdmin,
}

fn is_admin(user: &User) -> bool {
    user.roles.iter().any(|r| r == "admin")
}

fn tx_company_key(user: &User) -> Key {
    keys::company(&user.company_id)
}

/// The change of the company's admin count a role change makes, if any.
fn admin_change(company: Key, was: bool, is: bool) -> Option<(Key, i64)> {
    match (was, is) {
        (true, false) => Some((company, -1)),
        (false, true) => Some((company, 1)),
        _ => None,
    }
}

/// Adds `delta` to the admin count; taking one away is conditional on another remaining.
fn admin_count_step(
    tx: &mut super::Transaction<'_>,
    company: &Key,
    delta: i64,
) -> Result<usize, StoreError> {
    if delta < 0 {
        tx.update(
            company,
            "ADD admin_count :d",
            Some("admin_count > :one"),
            vec![(":d", n(delta)), (":one", n(1))],
        )
    } else {
        tx.update(company, "ADD admin_count :d", None, vec![(":d", n(delta))])
    }
}

/// Why an API key could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefused {
    Revoked,
    Expired,
    Unknown,
}

impl Users<'_> {
    /// Stores a new user and its email claim, and takes one of the company's seats, all or
    /// nothing.
    pub async fn create(&self, user: &User) -> Result<(), WriteError<NewUserRefused>> {
        let mut tx = self.0.transaction();
        let seat = tx.update(
            &keys::company(&user.company_id),
            "ADD user_count :one, admin_count :admins",
            Some("attribute_exists(pk) AND (attribute_not_exists(seats) OR seats < :zero OR attribute_not_exists(user_count) OR user_count < seats)"),
            vec![(":one", n(1)), (":zero", n(0)), (":admins", n(i64::from(is_admin(user))))],
        )?;
        tx.create(&keys::user(&user.company_id, &user.id), user)?;
        tx.create(
            &keys::email(&user.email),
            &EmailClaim {
                company_id: user.company_id.clone(),
                user_id: user.id.clone(),
            },
        )?;
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(i) if i == seat => WriteError::Refused(NewUserRefused::NoSeat),
            WriteError::Refused(_) => WriteError::Refused(NewUserRefused::EmailTaken),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    /// Replaces `old` with `new` unless someone saved it in between. Logins and lockouts
    /// change `date_last_login` and `locked_until` in place, without touching
    /// `last_updated`, so those are compared too: the whole-item write must not put stale
    /// values back. A changed email moves the email claim.
    pub async fn replace(
        &self,
        old: &User,
        new: &User,
    ) -> Result<(), WriteError<UserChangeRefused>> {
        let mut condition = String::from("attribute_exists(pk) AND ");
        condition.push_str(REVISION_CONDITION);
        let mut values = vec![
            (":seen", t(old.last_updated)),
            (":rev", n(old.revision as i64)),
        ];
        let mut new = new.clone();
        new.revision = old.revision + 1;
        let new = &new;
        for (attribute, placeholder, seen) in [
            ("locked_until", ":locked", &old.locked_until),
            ("date_last_login", ":login", &old.date_last_login),
        ] {
            match seen {
                Some(v) => {
                    condition.push_str(&format!(" AND {attribute} = {placeholder}"));
                    values.push((placeholder, t(*v)));
                }
                None => condition.push_str(&format!(" AND attribute_not_exists({attribute})")),
            }
        }
        let mut tx = self.0.transaction();
        let user = tx.put_item_if(
            super::to_item(&keys::user(&new.company_id, &new.id), new)?,
            &condition,
            &[],
            values,
        )?;
        let admin_change = admin_change(tx_company_key(new), is_admin(old), is_admin(new));
        let last_admin = match admin_change {
            Some((key, delta)) => Some(admin_count_step(&mut tx, &key, delta)?),
            None => None,
        };
        if old.email != new.email {
            tx.delete(&keys::email(&old.email))?;
            tx.create(
                &keys::email(&new.email),
                &EmailClaim {
                    company_id: new.company_id.clone(),
                    user_id: new.id.clone(),
                },
            )?;
        }
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(i) if i == user => WriteError::Refused(UserChangeRefused::Changed),
            WriteError::Refused(i) if Some(i) == last_admin => {
                WriteError::Refused(UserChangeRefused::LastAdmin)
            }
            WriteError::Refused(_) => WriteError::Refused(UserChangeRefused::EmailTaken),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    /// Deletes the user and its email claim and frees its seat (and, for an admin, only if
    /// another admin remains); refused when the user is already gone or is the last admin.
    pub async fn delete(&self, user: &User) -> Result<(), WriteError<UserDeleteRefused>> {
        let mut tx = self.0.transaction();
        tx.delete_existing(&keys::user(&user.company_id, &user.id))?;
        tx.delete(&keys::email(&user.email))?;
        let company = keys::company(&user.company_id);
        let last_admin = if is_admin(user) {
            tx.update(
                &company,
                "ADD user_count :minus, admin_count :minus",
                Some("admin_count > :one"),
                vec![(":minus", n(-1)), (":one", n(1))],
            )
            .map(Some)?
        } else {
            tx.update(
                &company,
                "ADD user_count :minus",
                None,
                vec![(":minus", n(-1))],
            )?;
            None
        };
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(i) if Some(i) == last_admin => {
                WriteError::Refused(UserDeleteRefused::LastAdmin)
            }
            WriteError::Refused(_) => WriteError::Refused(UserDeleteRefused::Gone),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    /// Makes sure the company's `admin_count` exists (companies made before it was kept are
    /// counted once, from their users).
    pub async fn ensure_admin_count(&self, company: &Company) -> Result<(), StoreError> {
        if company.admin_count.is_some() {
            return Ok(());
        }
        let users: Vec<User> = self
            .0
            .query_prefix(&keys::company_pk(&company.id), "USER#")
            .await?;
        let admins = users.iter().filter(|u| is_admin(u)).count() as i64;
        self.0
            .update_if(
                &keys::company(&company.id),
                "SET admin_count = :n",
                "attribute_exists(pk) AND attribute_not_exists(admin_count)",
                &[],
                vec![(":n", n(admins))],
            )
            .await
            .map(|_| ())
    }

    /// A successful login: its time, and the end of any lockout.
    pub async fn record_login(&self, user: &User, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.0
            .update_if(
                &keys::user(&user.company_id, &user.id),
                "SET date_last_login = :now REMOVE locked_until",
                "attribute_exists(pk)",
                &[],
                vec![(":now", t(at))],
            )
            .await
            .map(|_| ())
    }

    /// Locks the user out until `until` (RFC 3339).
    pub async fn lock_until(&self, user: &User, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.0
            .update_if(
                &keys::user(&user.company_id, &user.id),
                "SET locked_until = :until ADD session_epoch :one, revision :one",
                "attribute_exists(pk)",
                &[],
                vec![(":until", t(until)), (":one", n(1))],
            )
            .await
            .map(|_| ())
    }

    /// Ends a lockout.
    pub async fn unlock(&self, user: &User) -> Result<(), StoreError> {
        self.0
            .update_if(
                &keys::user(&user.company_id, &user.id),
                "REMOVE locked_until",
                "attribute_exists(pk)",
                &[],
                Vec::new(),
            )
            .await
            .map(|_| ())
    }

    /// Spends a one-time reset token and sets the user's password (ending any lockout), all
    /// or nothing; refused when the token was used or expired meanwhile, or the user is gone.
    pub async fn reset_password(
        &self,
        token_hash: &str,
        user: &User,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<(), WriteError<()>> {
        let mut tx = self.0.transaction();
        tx.update(
            &keys::reset_token(token_hash),
            "SET used = :t",
            Some("attribute_exists(pk) AND used = :f AND expires_at > :now"),
            vec![
                (":t", AttributeValue::Bool(true)),
                (":f", AttributeValue::Bool(false)),
                (":now", t(now)),
            ],
        )?;
        tx.update(
            &keys::user(&user.company_id, &user.id),
            "SET password_hash = :h, last_updated = :now REMOVE locked_until ADD session_epoch :one, revision :one",
            Some("attribute_exists(pk)"),
            vec![(":h", s(password_hash)), (":now", t(now)), (":one", n(1))],
        )?;
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(_) => WriteError::Refused(()),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }
}

impl ApiKeys<'_> {
    /// Records a use of the key and answers its record; refused when it is revoked or
    /// expired. Only a key acting in a client account makes this write (its request is
    /// counted against the client); every other request with a key reads the key's record
    /// with the caller and counts its use on the company's rate counter item (see
    /// `crate::auth::verify::key_use_counted`). Either way a revocation holds on the very
    /// next request everywhere.
    pub async fn record_use(
        &self,
        key: &KeyHashRecord,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, WriteError<KeyRefused>> {
        // A held handler writes only once admitted (see crate::held).
        crate::held::admitted().await?;
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
        let store = self.0;
        let result = store
            .db
            .update_item()
            .table_name(&store.table)
            .set_key(Some(keys::api_key(&key.company_id, &key.key_id).to_item()))
            .update_expression("SET last_used_at = :now ADD usage_count :one")
            .condition_expression(
                "attribute_exists(pk) AND #hash = :hash AND attribute_not_exists(revoked_at) AND (attribute_not_exists(expires_at) OR expires_at > :now)",
            )
            .expression_attribute_names("#hash", "hash")
            .expression_attribute_values(":hash", s(hash))
            .expression_attribute_values(":now", t(now))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(super::from_item(out.attributes.unwrap_or_default())?),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let old: Option<ApiKeyRecord> =
                        failed.item.clone().and_then(|i| super::from_item(i).ok());
                    Err(WriteError::Refused(match old {
                        // A key naming this record whose secret is not its own.
                        Some(k) if k.hash != hash => KeyRefused::Unknown,
                        Some(k) if k.revoked_at.is_some() => KeyRefused::Revoked,
                        Some(_) => KeyRefused::Expired,
                        None => KeyRefused::Unknown,
                    }))
                }
                _ => Err(WriteError::Failed(super::db_error("UpdateItem", e))),
            },
        }
    }

    /// Moves one day's uses of a key, held by its company's day counter item until that
    /// item expired, into the key's own `usage_count` and `last_used_at` (the latest kept).
    /// Once per day and key: a marker attribute `folded#{day}` makes a delivery of the same
    /// day again change nothing (the marker of the day a week before is removed, so a key
    /// keeps at most a few). Nothing happens to a key deleted since.
    pub async fn fold_day(
        &self,
        company: &str,
        key_id: &str,
        day: chrono::NaiveDate,
        count: u64,
        last: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let key = keys::api_key(company, key_id);
        let marker = format!("folded#{day}");
        let old_marker = format!("folded#{}", day - chrono::Days::new(7));
        let names = [("#f", marker.as_str()), ("#old", old_marker.as_str())];
        let once = "attribute_exists(pk) AND attribute_not_exists(#f)";
        if let Some(last) = last {
            let newer = self
                .0
                .update_if(
                    &key,
                    "ADD usage_count :n SET #f = :t, last_used_at = :last REMOVE #old",
                    &format!(
                        "{once} AND (attribute_not_exists(last_used_at) OR last_used_at < :last)"
                    ),
                    &names,
                    vec![
                        (":n", n(count)),
                        (":t", AttributeValue::Bool(true)),
                        (":last", t(last)),
                    ],
                )
                .await?;
            if newer {
                return Ok(());
            }
        }
        // The key's own last use is later (or the day was folded already, or the key is gone).
        self.0
            .update_if(
                &key,
                "ADD usage_count :n SET #f = :t REMOVE #old",
                once,
                &names,
                vec![(":n", n(count)), (":t", AttributeValue::Bool(true))],
            )
            .await
            .map(|_| ())
    }

    /// Stores a newly issued key (record and hash entry).
    pub async fn create(&self, issued: &IssuedKey) -> Result<(), StoreError> {
        let mut tx = self.0.transaction();
        for item in issued.to_items() {
            tx.create_item(item)?;
        }
        tx.commit_or_conflict("key collision; retry").await
    }

    /// Revokes `old` and stores its replacement, all or nothing; 409 when `old` was revoked
    /// meanwhile.
    pub async fn rotate(
        &self,
        old: &ApiKeyRecord,
        new: &IssuedKey,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.0.transaction();
        revocation(&mut tx, old, now, Some(&new.record.id))?;
        for item in new.to_items() {
            tx.create_item(item)?;
        }
        tx.commit_or_conflict("the key was revoked meanwhile").await
    }

    /// Revokes a key; its hash entry stays, so its holder is told "revoked" rather than
    /// "invalid". 409 with `conflict` when it was revoked meanwhile.
    pub async fn revoke(
        &self,
        record: &ApiKeyRecord,
        now: DateTime<Utc>,
        conflict: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.0.transaction();
        revocation(&mut tx, record, now, None)?;
        tx.commit_or_conflict(conflict).await
    }
}

/// Revokes a key; a rotation names the key that replaces it (`replaced_by`: the audit log
/// says `key_rotated`).
fn revocation(
    tx: &mut super::Transaction<'_>,
    record: &ApiKeyRecord,
    now: DateTime<Utc>,
    replaced_by: Option<&str>,
) -> Result<usize, StoreError> {
    let mut values = vec![(":now", t(now))];
    let expression = match replaced_by {
        Some(id) => {
            values.push((":new", s(id)));
            "SET revoked_at = :now, last_updated = :now, replaced_by = :new"
        }
        None => "SET revoked_at = :now, last_updated = :now",
    };
    tx.update(
        &keys::api_key(&record.company_id, &record.id),
        expression,
        Some("attribute_exists(pk) AND attribute_not_exists(revoked_at)"),
        values,
    )
}

/// The item of a company; a client account also gets its place in its partner's `gsi1`
/// list.
/// The item is still the one read: its `revision` (`:rev`), or for an item written before
/// revisions, its `last_updated` (`:seen`).
const REVISION_CONDITION: &str =
    "(revision = :rev OR (attribute_not_exists(revision) AND last_updated = :seen))";

fn company_item(company: &Company) -> Result<super::Item, StoreError> {
    let mut item = super::to_item(&keys::company(&company.id), company)?;
    if let Some(partner) = &company.parent_id {
        item.insert("gsi1pk".into(), s(keys::partner_index(partner)));
        item.insert(
            "gsi1sk".into(),
            s(format!("{}#{}", rfc3339(company.date_created), company.id)),
        );
    }
    Ok(item)
}

impl Companies<'_> {
    /// Stores a new client account.
    pub async fn create_client(&self, client: &Company) -> Result<(), StoreError> {
        self.0
            .create_item(company_item(client)?, "client id collision; retry")
            .await
    }

    /// Replaces a client company unless it changed since it was read; its user and admin
    /// counts are kept by the user transactions, so they must not have moved either (`new`
    /// keeps `old`'s).
    pub async fn replace(&self, old: &Company, new: &Company) -> Result<(), StoreError> {
        let mut new = new.clone();
        new.user_count = old.user_count;
        new.admin_count = old.admin_count;
        new.revision = old.revision + 1;
        let mut condition = format!(
            "attribute_exists(pk) AND {REVISION_CONDITION} AND (attribute_not_exists(user_count) OR user_count = :users)",
        );
        let mut values = vec![
            (":seen", t(old.last_updated)),
            (":rev", n(old.revision as i64)),
            (":users", n(old.user_count)),
        ];
        match old.admin_count {
            Some(admins) => {
                condition.push_str(" AND admin_count = :admins");
                values.push((":admins", n(admins)));
            }
            None => condition.push_str(" AND attribute_not_exists(admin_count)"),
        }
        let mut tx = self.0.transaction();
        tx.put_item_if(company_item(&new)?, &condition, &[], values)?;
        tx.commit_or_conflict("the client changed meanwhile; read it again and retry")
            .await
    }
}
