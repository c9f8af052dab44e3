//! Password hashing with argon2id (PHC strings), off the async threads.

use crate::error::ApiError;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

pub async fn hash(password: &str) -> Result<String, ApiError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal(format!("hashing password: {e}")))
    })
    .await
    .map_err(ApiError::internal)?
}

pub async fn verify(password: &str, phc: &str) -> Result<bool, ApiError> {
    let (password, phc) = (password.to_owned(), phc.to_owned());
    tokio::task::spawn_blocking(move || {
        // A user created without a password has no parsable hash: no password matches it.
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return Ok(false);
        };
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(ApiError::internal)?
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
