//! What this instance remembers between requests. Only facts that cannot change are
//! trusted (a key hash maps to one key forever); the last verified caller per credential is
//! only a guess for speculative routes, which every request checks again.

use super::caller::Caller;
use super::records::KeyHashRecord;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct AuthMemory {
    key_hashes: Mutex<HashMap<String, KeyHashRecord>>,
    last_caller: Mutex<HashMap<String, Caller>>,
    /// Published links' owner companies, by token hash (a link's company never changes).
    link_owners: Mutex<HashMap<String, String>>,
}

const MEMORY_LIMIT: usize = 10_000;

impl AuthMemory {
    pub(crate) fn key(&self, hash: &str) -> Option<KeyHashRecord> {
        self.key_hashes.lock().ok()?.get(hash).cloned()
    }
    pub(crate) fn remember_key(&self, hash: &str, record: &KeyHashRecord) {
        if let Ok(mut map) = self.key_hashes.lock() {
            if map.len() >= MEMORY_LIMIT {
                map.clear();
            }
            map.insert(hash.to_owned(), record.clone());
        }
    }
    pub(crate) fn forget_key(&self, hash: &str) {
        if let Ok(mut map) = self.key_hashes.lock() {
            map.remove(hash);
        }
    }
    pub(crate) fn caller(&self, fingerprint: &str) -> Option<Caller> {
        self.last_caller.lock().ok()?.get(fingerprint).cloned()
    }
    pub(crate) fn remember_caller(&self, fingerprint: &str, caller: &Caller) {
        if let Ok(mut map) = self.last_caller.lock() {
            if map.len() >= MEMORY_LIMIT {
                map.clear();
            }
            map.insert(fingerprint.to_owned(), caller.clone());
        }
    }
    pub(crate) fn link_owner(&self, hash: &str) -> Option<String> {
        self.link_owners.lock().ok()?.get(hash).cloned()
    }
    pub(crate) fn remember_link_owner(&self, hash: &str, company: &str) {
        if let Ok(mut map) = self.link_owners.lock() {
            if map.len() >= MEMORY_LIMIT {
                map.clear();
            }
            map.insert(hash.to_owned(), company.to_owned());
        }
    }
    pub(crate) fn forget_link_owner(&self, hash: &str) {
        if let Ok(mut map) = self.link_owners.lock() {
            map.remove(hash);
        }
    }
    pub(crate) fn forget_caller(&self, fingerprint: &str) {
        if let Ok(mut map) = self.last_caller.lock() {
            map.remove(fingerprint);
        }
    }
}
