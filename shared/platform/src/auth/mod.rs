//! Authentication and permissions: who a request is from and what it may do.
//!
//! The pieces, in the order the admission pipeline ([`crate::admission`]) uses them:
//! - [`credential`]: the four credential forms of API.md §2 and who a credential claims to
//!   be (no database for a token or a remembered key hash);
//! - [`verify`]: everything that can change is read again (one round trip);
//! - [`caller`]: the verified [`Caller`] handlers get, without secrets;
//! - [`lockout`]: failed-login counting and lockout;
//! - [`permissions`], [`records`], [`tokens`], [`apikeys`], [`password`]: names, stored
//!   shapes, JWTs, key secrets and password hashing.

pub mod apikeys;
pub mod caller;
pub mod credential;
pub mod hs256;
pub mod lockout;
pub mod password;
pub mod permissions;
pub mod records;
pub mod tokens;
pub mod verify;

pub use caller::{
    caller_from, custom_roles, AuthMethod, Caller, CallerSnapshot, CallerUser, CompanySummary,
    KeySummary, RequestUsage,
};
pub use credential::{credential, Credential};
pub use lockout::{check_lockout, record_failed_login, LOCKOUT_FAILURES, LOCKOUT_WINDOW_SECS};

/// The longest email address there is (RFC 5321); longer ones are refused before any
/// lookup.
pub const MAX_EMAIL_LEN: usize = 254;
