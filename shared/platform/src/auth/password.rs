//! Password hashing with argon2id (PHC strings), off the async threads.

use crate::error::ApiError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// 16 random bytes (the thread's generator, seeded from the system's), as a PHC salt.
fn new_salt() -> Result<SaltString, argon2::password_hash::Error> {
    let bytes: [u8; 16] = rand::random();
    SaltString::encode_b64(&bytes)
}

pub async fn hash(password: &str) -> Result<String, ApiError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        new_salt()
            .and_then(|salt| {
                Argon2::default()
                    .hash_password(password.as_bytes(), &salt)
                    .map(|h| h.to_string())
            })
            .map_err(|e| ApiError::internal(format!("hashing password: {e}")))
    })
    .await
    .map_err(ApiError::internal)?
}

/// A hash no password is checked against for real: verifying against it costs what a real
/// check costs, so an unknown email (or a user without a password) takes as long to refuse
/// as a wrong password, and timing tells nobody which emails exist.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        new_salt()
            .and_then(|salt| {
                Argon2::default()
                    .hash_password(b"pulseboard timing equaliser", &salt)
                    .map(|h| h.to_string())
            })
            .unwrap_or_default()
    })
}

pub async fn verify(password: &str, phc: &str) -> Result<bool, ApiError> {
    let (password, phc) = (password.to_owned(), phc.to_owned());
    tokio::task::spawn_blocking(move || {
        // A user created without a password has no parsable hash: no password matches it,
        // after as much work as a real check.
        let (parsed, real) = match PasswordHash::new(&phc) {
            Ok(parsed) => (parsed, true),
            Err(_) => match PasswordHash::new(dummy_hash()) {
                Ok(parsed) => (parsed, false),
                Err(_) => return Ok(false),
            },
        };
        let matched = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(real && matched)
    })
    .await
    .map_err(ApiError::internal)?
}

/// Does the work of a password check and refuses: for an email nobody has.
pub async fn refuse_unknown(password: &str) -> Result<(), ApiError> {
    verify(password, "").await.map(|_| ())
}

/// The password policy: at least 10 characters, and not the email address.
pub fn check_policy(password: &str, email: &str) -> Result<(), ApiError> {
    if password.chars().count() < 10 {
        return Err(ApiError::field(
            "password",
            "must be at least 10 characters",
        ));
    }
    if password.trim().eq_ignore_ascii_case(email.trim()) {
        return Err(ApiError::field("password", "must not be the email address"));
    }
    Ok(())
}
