//! What an instance may remember between requests ([`Caches`], one per process, in
//! `AppState`), each use a small bounded cache with a time to live ([`TtlCache`]). One
//! Lambda instance serves one request at a time, but `pulseboard serve` and the tests serve
//! many.
//!
//! Each use states what it holds, how long, and why an entry that outlived a change is safe;
//! the cache itself only promises that no entry is served after its time to live and that
//! it never holds more than its capacity (at capacity the expired entries go first, then the
//! oldest half, so a flood of distinct keys costs a bounded amount of memory).

use crate::auth::caller::Caller;
use crate::auth::records::KeyHashRecord;
use domain::records::{Datasource, LinkTarget};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// For entries that hold facts which never change: kept until capacity pushes them out.
pub const FOREVER: Duration = Duration::MAX;

/// Everything an instance remembers between requests, owned by [`crate::AppState`]: one
/// [`TtlCache`] per use, each with its rule (what it holds, how long, and why an entry that
/// outlived a change is safe). Nothing here is trusted where it could have changed: an
/// entry is either an immutable fact or a guess that the request checks.
#[derive(Debug)]
pub struct Caches {
    /// API key hash → the key's id, company and user. A hash leads to one key forever (a
    /// rotation makes a new key); revocation and expiry are read on every request.
    pub key_hashes: TtlCache<String, KeyHashRecord>,
    /// Credential fingerprint (never the secret) → the caller it was last verified as: the
    /// guess a speculative route runs with. Every request is verified again, and an answer is
    /// kept only when the verified caller is this one, so a stale guess costs a second run.
    pub callers: TtlCache<String, Caller>,
    /// Credential fingerprints this instance saw fail verification (401): a signed token
    /// whose session ended is not guessed from its snapshot again, but verified before it
    /// is counted, like any credential this instance has not seen hold.
    pub failed: TtlCache<String, ()>,
    /// Published link token hash → where it leads. A link never changes where it leads; a
    /// view reads the link item anyway (with the dashboard, one round trip), so a revoked or
    /// expired link is refused all the same. Admission reads the owner company from it.
    pub links: TtlCache<String, LinkTarget>,
    /// Sign-in address → the company and user it led to and the password hash the user had
    /// then: what a login reads and checks alongside the address's claim. The claim and user
    /// read with it decide; a changed hash or claim means checking again. An hour bounds how
    /// long a password hash stays in memory after its last sign-in here.
    pub logins: TtlCache<String, KnownLogin>,
    /// (company, data source) → the source as this instance last appended to it (without
    /// its segment lists): the next append needs no read, because its update holds only
    /// while the stored item still points at the same copy and end (see the datasources
    /// function); a stale entry only makes that update fail and the append read.
    pub appended_sources: TtlCache<(String, String), Datasource>,
    /// (company, dashboard) → the Klips this instance last saw on it, read together with the
    /// dashboard next time. Only which Klips is guessed; a Klip the guess lacked is read
    /// after, one the dashboard no longer has is not shown.
    pub dashboard_klips: TtlCache<(String, String), Vec<String>>,
    /// Published dashboard pages as rendered (HTML), by what they were rendered from (the
    /// dashboard's and each Klip's version and value time, the owner's zone and currency):
    /// an anonymous view of an unchanged dashboard reuses the page and its analysis for up
    /// to a minute instead of computing it again; the minute bounds how stale "today" is.
    /// Few, since one can be a megabyte of SVG.
    pub published_pages: TtlCache<String, Arc<Vec<u8>>>,
}

/// See [`Caches::logins`].
#[derive(Debug, Clone)]
pub struct KnownLogin {
    pub company_id: String,
    pub user_id: String,
    pub password_hash: String,
}

impl Default for Caches {
    fn default() -> Self {
        const MINUTE: Duration = Duration::from_secs(60);
        Caches {
            key_hashes: TtlCache::new(10_000, FOREVER),
            callers: TtlCache::new(10_000, FOREVER),
            failed: TtlCache::new(10_000, 60 * MINUTE),
            links: TtlCache::new(10_000, FOREVER),
            logins: TtlCache::new(10_000, 60 * MINUTE),
            appended_sources: TtlCache::new(1_000, FOREVER),
            dashboard_klips: TtlCache::new(10_000, FOREVER),
            published_pages: TtlCache::new(16, MINUTE),
        }
    }
}

#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    capacity: usize,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// The value stored under `key` within its time to live.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.entries.lock().ok()?;
        let (stored, value) = entries.get(key)?;
        (stored.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Stores `value` under `key` from now on.
    pub fn insert(&self, key: K, value: V) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let ttl = self.ttl;
            entries.retain(|_, (stored, _)| stored.elapsed() < ttl);
            if entries.len() >= self.capacity {
                let mut ages: Vec<Instant> = entries.values().map(|(at, _)| *at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                entries.retain(|_, (stored, _)| *stored > cut);
            }
        }
        entries.insert(key, (Instant::now(), value));
    }

    pub fn remove<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_size_stays_bounded() {
        let cache = TtlCache::new(4, Duration::from_millis(50));
        cache.insert("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&"a"), None);
        let cache = TtlCache::new(4, Duration::from_secs(60));
        for i in 0..100 {
            cache.insert(i, i);
            assert!(cache.len() <= 4);
        }
        assert_eq!(cache.get(&99), Some(99));
    }
}
