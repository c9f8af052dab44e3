//! Login lockout: ten failed logins for one email lock its user out for 15 minutes.

use super::records::User;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use chrono::{DateTime, Duration, Utc};

/// 429 `too_many_attempts` while the user is locked out.
pub fn check_lockout(locked_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> ApiResult<()> {
    if let Some(until) = locked_until {
        if until > now {
            return Err(ApiError::TooManyAttempts {
                message: "too many failed logins; this user is locked out for 15 minutes".into(),
                retry_after: (until - now).num_seconds().max(1) as u64,
            });
        }
    }
    Ok(())
}

pub const LOCKOUT_FAILURES: i64 = 10;
pub const LOCKOUT_WINDOW_SECS: i64 = 15 * 60;

/// Records a failed login for `email`; the 10th failure within any 15 minutes (a rolling
/// window) locks the user out for 15 minutes. Answers the error to send.
pub async fn record_failed_login(
    state: &AppState,
    email: &str,
    user: Option<&User>,
    now: DateTime<Utc>,
) -> ApiError {
    let failures = match state
        .store
        .login_failures()
        .record(email, now.timestamp(), LOCKOUT_WINDOW_SECS)
        .await
    {
        Ok(n) => n as i64,
        Err(e) => return e.into(),
    };
    if let (true, Some(user)) = (failures >= LOCKOUT_FAILURES, user) {
        let until = now + Duration::seconds(LOCKOUT_WINDOW_SECS);
        if let Err(e) = state.store.users().lock_until(user, until).await {
            return e.into();
        }
        return ApiError::TooManyAttempts {
            message: "too many failed logins; this user is locked out for 15 minutes".into(),
            retry_after: LOCKOUT_WINDOW_SECS as u64,
        };
    }
    ApiError::Unauthorized("invalid email or password".into())
}
