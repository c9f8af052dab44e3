//! The stored shapes of companies, users and API keys, as the auth layer reads them.

use serde::{Deserialize, Serialize};

/// Daily request quota of a plan (API.md §3).
pub fn plan_daily_limit(plan: &str) -> u64 {
    match plan {
        "trial" => 1_000,
        "professional" => 50_000,
        "enterprise" => 250_000,
        _ => 10_000,
    }
}

pub const PLANS: &[&str] = &["trial", "standard", "professional", "enterprise"];
pub const DEFAULT_PER_SECOND_LIMIT: u64 = 5;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Company {
    pub id: String,
    pub name: String,
    pub plan: String,
    /// active | trial | setup | disabled
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Overrides (`api.requests.perSecond`, `api.requests.perDay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_limit: Option<u64>,
    pub date_created: String,
    pub last_updated: String,
}

impl Company {
    pub fn daily_limit(&self) -> u64 {
        self.daily_limit
            .unwrap_or_else(|| plan_daily_limit(&self.plan))
    }

    pub fn per_second_limit(&self) -> u64 {
        self.per_second_limit.unwrap_or(DEFAULT_PER_SECOND_LIMIT)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: String,
    pub company_id: String,
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub date_created: String,
    pub last_updated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_last_login: Option<String>,
    /// RFC 3339; the user is locked out until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<String>,
}

/// Where an email lives: the service-wide uniqueness claim and login lookup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EmailClaim {
    pub company_id: String,
    pub user_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub company_id: String,
    pub user_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub prefix: String,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub created_by: String,
    pub date_created: String,
    pub last_updated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    #[serde(default)]
    pub usage_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// The immutable map from a key's hash to where the key lives.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyHashRecord {
    pub company_id: String,
    pub key_id: String,
    pub user_id: String,
}
