//! Identifiers and secrets: 32-hex ids, API keys with their hash, refresh token ids.

use rand::Rng;
use sha2::{Digest, Sha256};

/// A new resource id: 128 random bits as 32 lowercase hex characters.
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

/// A new id that sorts by time: 12 hex digits of `millis` (milliseconds since 1970), then 80
/// random bits. Ids made in one millisecond sort at random, which is how a list sorted by
/// creation time orders them anyway (by id, after the second they were made in).
pub fn ordered_id(millis: i64) -> String {
    crate::reports::run_id(millis, &new_id())
}

pub fn is_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Every API key starts with this, so secret scanners can recognise leaked keys.
pub const API_KEY_PREFIX: &str = "pb_live_";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SECRET_LEN: usize = 32; // 32 base62 chars ~ 190 bits
const CHECKSUM_LEN: usize = 6;

/// A freshly generated API key: the secret (shown once) and what is stored.
pub struct NewApiKey {
    pub secret: String,
    pub hash: ApiKeyHash,
    /// The first characters, shown in lists so a user can tell keys apart.
    pub prefix: String,
}

/// SHA-256 of an API key, hex. Keys carry 190 random bits, so a fast hash is safe here and
/// keeps the lookup on every request cheap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ApiKeyHash(pub String);

impl ApiKeyHash {
    pub fn of(secret: &str) -> Self {
        ApiKeyHash(hex::encode(Sha256::digest(secret.as_bytes())))
    }
}

/// Base62 characters of one 128-bit id in a key (62^22 > 2^128).
const ID_LEN: usize = 22;

/// Who a key names: the ids of its company, user and key record (not secret: the API shows
/// them; the key's random part is what proves it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyNames {
    pub company_id: String,
    pub user_id: String,
    pub key_id: String,
}

/// A new key of `names`: `pb_live_` + 32 random base62 characters + the three ids (22
/// base62 characters each) + a checksum of all of it. Naming its records lets a new
/// instance verify the key in one read of them (its hash is compared with the key
/// record's), with no lookup of the hash first. (Ids that are not 32 hex digits cannot be
/// named: such a key has the earlier form, found by its hash.)
pub fn new_api_key(names: &KeyNames) -> NewApiKey {
    let mut rng = rand::rng();
    let mut body: String = (0..SECRET_LEN)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    let ids = [&names.company_id, &names.user_id, &names.key_id];
    if ids.iter().all(|id| is_id(id)) {
        for id in ids {
            body.push_str(&id_to_base62(id));
        }
    }
    let secret = format!("{API_KEY_PREFIX}{body}{}", checksum(&body));
    NewApiKey {
        hash: ApiKeyHash::of(&secret),
        prefix: secret[..API_KEY_PREFIX.len() + 4].to_owned(),
        secret,
    }
}

/// A 32-hex id as 22 base62 characters.
fn id_to_base62(id: &str) -> String {
    let mut n = u128::from_str_radix(id, 16).unwrap_or_default();
    let mut out = [b'0'; ID_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn id_from_base62(text: &str) -> Option<String> {
    let mut n: u128 = 0;
    for b in text.bytes() {
        let digit = BASE62.iter().position(|&c| c == b)? as u128;
        n = n.checked_mul(62)?.checked_add(digit)?;
    }
    Some(format!("{n:032x}"))
}

/// The records a well-formed key of today's form names; `None` for a key from before keys
/// named them (`pb_live_` + 32 + checksum: found by its hash) or a malformed one.
pub fn api_key_names(secret: &str) -> Option<KeyNames> {
    if !api_key_well_formed(secret) {
        return None;
    }
    let rest = &secret[API_KEY_PREFIX.len()..];
    let ids = rest.get(SECRET_LEN..SECRET_LEN + 3 * ID_LEN)?;
    if rest.len() != SECRET_LEN + 3 * ID_LEN + CHECKSUM_LEN {
        return None;
    }
    let id = |i: usize| id_from_base62(&ids[i * ID_LEN..(i + 1) * ID_LEN]);
    Some(KeyNames {
        company_id: id(0)?,
        user_id: id(1)?,
        key_id: id(2)?,
    })
}

/// CRC32 of the body in base62 (like GitHub's tokens): lets scanners and this service reject
/// a mistyped key without a database lookup.
fn checksum(body: &str) -> String {
    let mut crc = crc32(body.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True when `secret` has the shape and checksum of a Pulseboard key: today's form (naming
/// its records) or the earlier one without the names.
pub fn api_key_well_formed(secret: &str) -> bool {
    let Some(rest) = secret.strip_prefix(API_KEY_PREFIX) else {
        return false;
    };
    let lengths = [
        SECRET_LEN + CHECKSUM_LEN,
        SECRET_LEN + 3 * ID_LEN + CHECKSUM_LEN,
    ];
    if !lengths.contains(&rest.len()) || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, sum) = rest.split_at(rest.len() - CHECKSUM_LEN);
    checksum(body) == sum
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// A URL-safe slug from a name: lowercase ASCII letters, digits and single dashes.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed = out.trim_end_matches('-');
    trimmed
        .chars()
        .take(64)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex() {
        let id = new_id();
        assert!(is_id(&id), "{id}");
        assert_ne!(new_id(), id);
        assert!(!is_id("XYZ"));
    }

    #[test]
    fn keys_have_prefix_checksum_and_hash() {
        let names = KeyNames {
            company_id: new_id(),
            user_id: new_id(),
            key_id: new_id(),
        };
        let key = new_api_key(&names);
        assert!(key.secret.starts_with("pb_live_"));
        assert_eq!(key.secret.len(), 8 + 32 + 66 + 6);
        assert_eq!(api_key_names(&key.secret), Some(names.clone()));
        // The form from before keys named their records is still well formed, names none.
        let body = "a".repeat(32);
        let old = format!("pb_live_{body}{}", checksum(&body));
        assert!(api_key_well_formed(&old));
        assert_eq!(api_key_names(&old), None);
        // The largest id survives the round trip.
        let max = "f".repeat(32);
        assert_eq!(id_from_base62(&id_to_base62(&max)), Some(max));
        assert!(api_key_well_formed(&key.secret));
        assert_eq!(key.hash, ApiKeyHash::of(&key.secret));
        assert_eq!(key.hash.0.len(), 64);
        // One changed character breaks the checksum.
        let mut broken = key.secret.clone().into_bytes();
        broken[10] = if broken[10] == b'a' { b'b' } else { b'a' };
        assert!(!api_key_well_formed(&String::from_utf8(broken).unwrap()));
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn slugs() {
        assert_eq!(slugify("Q3 Sales — EMEA!"), "q3-sales-emea");
        assert_eq!(slugify("  "), "");
    }
}
