//! Issuing API keys: the key record, its immutable hash map entry, and the secret shown once.

use super::records::{ApiKeyRecord, KeyHashRecord};
use crate::error::ApiResult;
use crate::store::{keys, to_item, Item, Key};
use chrono::{DateTime, Duration, Utc};
use domain::ids::{new_api_key, new_id};

pub const EXPIRY_CHOICES: &[u32] = &[30, 90, 365];

/// What to issue.
pub struct KeySpec {
    pub company_id: String,
    pub user_id: String,
    pub created_by: String,
    pub name: String,
    pub description: Option<String>,
    pub expires_in_days: Option<u32>,
    pub scopes: Option<Vec<domain::accounts::Permission>>,
}

pub struct IssuedKey {
    pub record: ApiKeyRecord,
    pub secret: String,
    /// The two items to write together (key record, hash map entry).
    pub items: Vec<(Key, Item)>,
}

impl IssuedKey {
    /// The items to create, keys included.
    pub fn to_items(&self) -> Vec<Item> {
        self.items.iter().map(|(_, item)| item.clone()).collect()
    }
}

pub fn issue(spec: KeySpec, now: DateTime<Utc>) -> ApiResult<IssuedKey> {
    let id = new_id();
    let generated = new_api_key(&domain::ids::KeyNames {
        company_id: spec.company_id.clone(),
        user_id: spec.user_id.clone(),
        key_id: id.clone(),
    });
    let record = ApiKeyRecord {
        id: id.clone(),
        company_id: spec.company_id.clone(),
        user_id: spec.user_id.clone(),
        name: spec.name,
        description: spec.description,
        prefix: generated.prefix,
        hash: generated.hash.0.clone(),
        scopes: spec.scopes,
        expires_in_days: spec.expires_in_days,
        expires_at: spec.expires_in_days.map(|d| now + Duration::days(d as i64)),
        created_by: spec.created_by,
        date_created: now,
        last_updated: now,
        last_used_at: None,
        usage_count: 0,
        revoked_at: None,
    };
    let key = keys::api_key(&spec.company_id, &id);
    let hash_key = keys::key_hash(&generated.hash.0);
    let hash_record = KeyHashRecord {
        company_id: spec.company_id,
        key_id: id,
        user_id: spec.user_id,
    };
    let items = vec![
        (key.clone(), to_item(&key, &record)?),
        (hash_key.clone(), to_item(&hash_key, &hash_record)?),
    ];
    Ok(IssuedKey {
        record,
        secret: generated.secret,
        items,
    })
}
