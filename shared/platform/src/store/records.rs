//! Repositories of the records read and written whole by their ids: companies, users and
//! their email claims, API keys, custom roles, groups, reset tokens, token families,
//! favourite marks, published-link lookups and assets. A caller names what it wants; the
//! keys and items stay here (see the key design in [`super`]).

use super::accounts::{ApiKeys, Companies, Users};
use super::assets::{Assets, Lookup};
use super::sessions::RefreshTokens;
use super::{from_item, keys, to_item, Key, Store, StoreError};
use crate::auth::records::{
    ApiKeyRecord, Company, EmailClaim, FamilyRecord, Group, ResetRecord, Role, User,
};
use domain::asset::{Asset, Kind};
use domain::records::LinkTarget;
use serde::{Deserialize, Serialize};

/// A company's custom roles (the built-ins live in code).
#[derive(Clone, Copy)]
pub struct Roles<'a>(&'a Store);

/// A company's groups of users.
#[derive(Clone, Copy)]
pub struct Groups<'a>(&'a Store);

/// One-time password reset tokens, by the SHA-256 of the token.
#[derive(Clone, Copy)]
pub struct ResetTokens<'a>(&'a Store);

/// Each user's favourite dashboards, one mark per user and dashboard.
#[derive(Clone, Copy)]
pub struct Favorites<'a>(&'a Store);

/// Published links' token lookups: the SHA-256 of a token → the dashboard it shows.
#[derive(Clone, Copy)]
pub struct PublishedLinks<'a>(&'a Store);

impl Store {
    pub fn roles(&self) -> Roles<'_> {
        Roles(self)
    }
    pub fn groups(&self) -> Groups<'_> {
        Groups(self)
    }
    pub fn reset_tokens(&self) -> ResetTokens<'_> {
        ResetTokens(self)
    }
    pub fn favorites(&self) -> Favorites<'_> {
        Favorites(self)
    }
    pub fn published_links(&self) -> PublishedLinks<'_> {
        PublishedLinks(self)
    }
}

impl Companies<'_> {
    /// The company (or client account) `id`, if it exists.
    pub async fn get(self, id: &str) -> Result<Option<Company>, StoreError> {
        self.0.get(keys::company(id)).await
    }

    /// A partner's client accounts (the partner index: eventually consistent).
    pub async fn clients_of(self, partner: &str) -> Result<Vec<Company>, StoreError> {
        self.0.query_index(&keys::partner_index(partner)).await
    }
}

impl Users<'_> {
    /// User `id` of `company`, if it exists.
    pub async fn get(self, company: &str, id: &str) -> Result<Option<User>, StoreError> {
        self.0.get(keys::user(company, id)).await
    }

    /// Every user of `company`.
    pub async fn all(self, company: &str) -> Result<Vec<User>, StoreError> {
        self.0
            .query_prefix(&keys::company_pk(company), "USER#")
            .await
    }

    /// Where the address `email` (lowercase) is claimed, if it is.
    pub async fn claim(self, email: &str) -> Result<Option<EmailClaim>, StoreError> {
        self.0.get(keys::email(email)).await
    }
}

impl ApiKeys<'_> {
    /// Key `id` of `company`, if it exists.
    pub async fn get(self, company: &str, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.0.get(keys::api_key(company, id)).await
    }

    /// Every key of `company`.
    pub async fn all(self, company: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.0
            .query_prefix(&keys::company_pk(company), "APIKEY#")
            .await
    }
}

impl RefreshTokens<'_> {
    /// The family of refresh tokens `family`, if it exists.
    pub async fn family(self, family: &str) -> Result<Option<FamilyRecord>, StoreError> {
        self.0.get(keys::family(family)).await
    }
}

impl Roles<'_> {
    /// Custom role `id` of `company`, if it exists.
    pub async fn get(self, company: &str, id: &str) -> Result<Option<Role>, StoreError> {
        self.0.get(keys::role(company, id)).await
    }

    /// Every custom role of `company`.
    pub async fn all(self, company: &str) -> Result<Vec<Role>, StoreError> {
        self.0
            .query_prefix(&keys::company_pk(company), "ROLE#")
            .await
    }

    /// Stores a new role; a 409 with `conflict` if its id is taken.
    pub async fn create(self, role: &Role, conflict: &str) -> Result<(), StoreError> {
        let item = to_item(&keys::role(&role.company_id, &role.id), role)?;
        self.0.create_item(item, conflict).await
    }

    /// Replaces the role.
    pub async fn save(self, role: &Role) -> Result<(), StoreError> {
        self.0
            .put(&keys::role(&role.company_id, &role.id), role)
            .await
    }

    pub async fn delete(self, role: &Role) -> Result<(), StoreError> {
        self.0.delete(&keys::role(&role.company_id, &role.id)).await
    }
}

impl Groups<'_> {
    /// Group `id` of `company`, if it exists.
    pub async fn get(self, company: &str, id: &str) -> Result<Option<Group>, StoreError> {
        self.0.get(keys::group(company, id)).await
    }

    /// Every group of `company`.
    pub async fn all(self, company: &str) -> Result<Vec<Group>, StoreError> {
        self.0
            .query_prefix(&keys::company_pk(company), "GROUP#")
            .await
    }

    /// Stores a new group; a 409 with `conflict` if its id is taken.
    pub async fn create(self, group: &Group, conflict: &str) -> Result<(), StoreError> {
        self.0
            .create(&keys::group(&group.company_id, &group.id), group, conflict)
            .await
    }

    /// Replaces the group.
    pub async fn save(self, group: &Group) -> Result<(), StoreError> {
        self.0
            .put(&keys::group(&group.company_id, &group.id), group)
            .await
    }

    pub async fn delete(self, group: &Group) -> Result<(), StoreError> {
        self.0
            .delete(&keys::group(&group.company_id, &group.id))
            .await
    }
}

impl ResetTokens<'_> {
    /// The reset token whose SHA-256 is `hash`, if it exists.
    pub async fn get(self, hash: &str) -> Result<Option<ResetRecord>, StoreError> {
        self.0.get(keys::reset_token(hash)).await
    }

    /// Stores (or replaces) the reset token whose SHA-256 is `hash`.
    pub async fn put(self, hash: &str, record: &ResetRecord) -> Result<(), StoreError> {
        self.0.put(&keys::reset_token(hash), record).await
    }
}

/// A favourite mark as stored.
#[derive(Serialize, Deserialize)]
struct Mark {
    dashboard_id: String,
    user_id: String,
}

impl Favorites<'_> {
    /// Whether `user` marked `dashboard`.
    pub async fn is_marked(
        &self,
        company: &str,
        user: &str,
        dashboard: &str,
    ) -> Result<bool, StoreError> {
        let mark: Option<serde_json::Value> =
            self.0.get(keys::favorite(company, user, dashboard)).await?;
        Ok(mark.is_some())
    }

    /// The ids of the dashboards `user` marked.
    pub async fn of(self, company: &str, user: &str) -> Result<Vec<String>, StoreError> {
        let marks: Vec<serde_json::Value> = self
            .0
            .query_prefix(&keys::company_pk(company), &keys::favorites_prefix(user))
            .await?;
        Ok(marks
            .iter()
            .filter_map(|m| m["dashboard_id"].as_str().map(str::to_owned))
            .collect())
    }

    /// Marks `dashboard` as a favourite of `user` (again: no change).
    pub async fn mark(self, company: &str, user: &str, dashboard: &str) -> Result<(), StoreError> {
        let mark = Mark {
            dashboard_id: dashboard.to_owned(),
            user_id: user.to_owned(),
        };
        self.0
            .put(&keys::favorite(company, user, dashboard), &mark)
            .await
    }

    /// Takes the mark away (none: no change).
    pub async fn unmark(
        &self,
        company: &str,
        user: &str,
        dashboard: &str,
    ) -> Result<(), StoreError> {
        self.0
            .delete(&keys::favorite(company, user, dashboard))
            .await
    }
}

impl PublishedLinks<'_> {
    /// Where the link whose token's SHA-256 is `hash` leads, if it exists.
    pub async fn get(self, hash: &str) -> Result<Option<LinkTarget>, StoreError> {
        self.0.get(keys::published_link(hash)).await
    }

    /// Deletes the lookup of the link whose token's SHA-256 is `hash`.
    pub async fn delete(self, hash: &str) -> Result<(), StoreError> {
        self.0.delete(&keys::published_link(hash)).await
    }
}

impl Lookup {
    /// Creates the lookup of a new published link (its token's SHA-256 `hash`) with the
    /// dashboard's save.
    pub fn new_link(hash: &str, target: &LinkTarget) -> Result<Lookup, StoreError> {
        Ok(Lookup::Create(to_item(
            &keys::published_link(hash),
            target,
        )?))
    }

    /// Deletes the lookup of a withdrawn published link with the dashboard's save.
    pub fn drop_link(hash: &str) -> Lookup {
        Lookup::Delete(keys::published_link(hash))
    }
}

impl Assets<'_> {
    /// Asset `id` of the kind `A` in `company`, if it exists.
    pub async fn get<A: Asset>(self, company: &str, id: &str) -> Result<Option<A>, StoreError> {
        self.0.get(keys::asset(A::KIND, company, id)).await
    }

    /// The assets of kind `A` among `ids` in `company` that exist, in one consistent
    /// `BatchGetItem`, in the order of `ids`.
    pub async fn many<A: Asset>(
        &self,
        company: &str,
        ids: &[String],
    ) -> Result<Vec<A>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<Key> = ids
            .iter()
            .map(|id| keys::asset(A::KIND, company, id))
            .collect();
        self.0
            .get_many(&wanted)
            .await?
            .into_iter()
            .flatten()
            .map(from_item)
            .collect()
    }

    /// Every asset of the kind `A` in `company`.
    pub async fn all<A: Asset>(self, company: &str) -> Result<Vec<A>, StoreError> {
        self.0
            .query_prefix(&keys::company_pk(company), A::KIND.prefix())
            .await
    }
}

/// The kinds whose items a client account's delete finds outside its partition.
fn outside_of(sk: &str, item: &serde_json::Map<String, serde_json::Value>) -> Outside {
    use serde_json::Value;
    let text = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_owned);
    if sk.starts_with("USER#") {
        Outside::Keys(text("email").map(|e| keys::email(&e)).into_iter().collect())
    } else if sk.starts_with("APIKEY#") {
        Outside::Keys(
            text("hash")
                .map(|h| keys::key_hash(&h))
                .into_iter()
                .collect(),
        )
    } else if sk.starts_with(Kind::Dashboard.prefix()) {
        let links = item.get("published_links").and_then(Value::as_array);
        Outside::Keys(
            links
                .into_iter()
                .flatten()
                .filter_map(|link| link.get("token_hash").and_then(Value::as_str))
                .map(keys::published_link)
                .collect(),
        )
    } else if let Some(id) = sk.strip_prefix(Kind::Datasource.prefix()) {
        if domain::ids::is_id(id) {
            Outside::DataFiles(id.to_owned())
        } else {
            Outside::Keys(Vec::new())
        }
    } else {
        Outside::Keys(Vec::new())
    }
}

/// What an item of an account has outside its partition.
enum Outside {
    /// Items elsewhere in the table (email claims, key hashes, published-link lookups).
    Keys(Vec<Key>),
    /// The files of data source `id`, which the caller deletes.
    DataFiles(String),
}

/// One item of an account being deleted (see [`Companies::account_items`]).
pub struct AccountItem {
    key: Key,
    outside: Outside,
}

impl AccountItem {
    /// The data source whose files go with this item, if it is one.
    pub fn data_source(&self) -> Option<&str> {
        match &self.outside {
            Outside::DataFiles(id) => Some(id),
            Outside::Keys(_) => None,
        }
    }
}

impl Companies<'_> {
    /// Every item of the account `company` but the company item, each with what it has
    /// outside the partition, found from the few fields that name it (never by decoding
    /// the whole item, so an item that would not decode cannot leave its lookups behind).
    pub async fn account_items(self, company: &str) -> Result<Vec<AccountItem>, StoreError> {
        let items: Vec<serde_json::Map<String, serde_json::Value>> =
            self.0.query_prefix(&keys::company_pk(company), "").await?;
        Ok(items
            .into_iter()
            .filter_map(|item| {
                let sk = item.get("sk")?.as_str()?.to_owned();
                (sk != "COMPANY").then(|| AccountItem {
                    outside: outside_of(&sk, &item),
                    key: Key::new(keys::company_pk(company), sk),
                })
            })
            .collect())
    }

    /// Deletes an item of an account with the items it has elsewhere in the table (its
    /// files are the caller's: [`AccountItem::data_source`]); what is gone already is
    /// no error, so a delete that stopped midway can be repeated.
    pub async fn delete_account_item(self, item: &AccountItem) -> Result<(), StoreError> {
        if let Outside::Keys(keys) = &item.outside {
            for key in keys {
                self.0.delete(key).await?;
            }
        }
        self.0.delete(&item.key).await
    }

    /// Deletes the company item itself (an account's last step).
    pub async fn delete_company(self, company: &str) -> Result<(), StoreError> {
        self.0.delete(&keys::company(company)).await
    }
}
