//! Identifiers and secrets: 32-hex ids, API keys with their hash, refresh token ids.

use rand::Rng;
use sha2::{Digest, Sha256};

/// A new resource id: 128 random bits as 32 lowercase hex characters.
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
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

pub fn new_api_key() -> NewApiKey {
    let mut rng = rand::rng();
    let body: String = (0..SECRET_LEN)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    let secret = format!("{API_KEY_PREFIX}{body}{}", checksum(&body));
    NewApiKey {
        hash: ApiKeyHash::of(&secret),
        prefix: secret[..API_KEY_PREFIX.len() + 4].to_owned(),
        secret,
    }
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

/// True when `secret` has the shape and checksum of a Pulseboard key.
pub fn api_key_well_formed(secret: &str) -> bool {
    let Some(rest) = secret.strip_prefix(API_KEY_PREFIX) else {
        return false;
    };
    if rest.len() != SECRET_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, sum) = rest.split_at(SECRET_LEN);
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
        let key = new_api_key();
        assert!(key.secret.starts_with("pb_live_"));
        assert_eq!(key.secret.len(), 8 + 32 + 6);
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
