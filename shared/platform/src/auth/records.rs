//! The account records (their shapes and rules live in the domain: [`domain::accounts`])
//! and how the API shows a user; lists of them page, search and sort like any list.

pub use domain::accounts::*;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A role or group of a user as shown: its id, or (`include_roles`, `include_groups`) its id
/// and name.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum Membership {
    Id(String),
    Named { id: String, name: String },
}

/// A user as the API shows it (never the password hash).
#[derive(Serialize)]
pub struct UserView {
    pub id: String,
    pub company_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub roles: Vec<Membership>,
    pub groups: Vec<Membership>,
    pub external_id: Option<String>,
    #[serde(with = "domain::time::utc")]
    pub date_created: DateTime<Utc>,
    #[serde(with = "domain::time::utc")]
    pub last_updated: DateTime<Utc>,
    #[serde(default, with = "domain::time::utc::option")]
    pub date_last_login: Option<DateTime<Utc>>,
    pub is_locked_out: bool,
}

impl UserView {
    /// The view of a stored user (everything but its password hash and session epoch).
    pub fn of(user: &User, now: chrono::DateTime<chrono::Utc>) -> Self {
        UserView {
            id: user.id.clone(),
            company_id: user.company_id.clone(),
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            roles: user.roles.iter().cloned().map(Membership::Id).collect(),
            groups: user.groups.iter().cloned().map(Membership::Id).collect(),
            external_id: user.external_id.clone(),
            date_created: user.date_created,
            last_updated: user.last_updated,
            date_last_login: user.date_last_login,
            is_locked_out: super::check_lockout(user.locked_until, now).is_err(),
        }
    }
}

/// Lists of companies (client accounts), users and keys page, search and sort like any list
/// (a user's `name` for `q` and `sort=name` is their email).
macro_rules! listed {
    ($type:ty, $name:ident) => {
        impl crate::paging::Listed for $type {
            fn name(&self) -> &str {
                &self.$name
            }
            fn date_created(&self) -> DateTime<Utc> {
                self.date_created
            }
            fn last_updated(&self) -> DateTime<Utc> {
                self.last_updated
            }
        }
    };
}

listed!(Company, name);
listed!(User, email);
listed!(ApiKeyRecord, name);
listed!(Group, name);
