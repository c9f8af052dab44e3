//! Nobody grants more than they hold: a caller with `user.manage` may give a user only roles
//! whose permissions the caller holds itself, may put into a custom role only permissions it
//! holds, and may not act on (change, delete, lock out, unlock, reset the password of) a
//! user who holds a permission it lacks. Otherwise a key scoped to `user.manage` could make
//! itself an admin, or take over the admin's account with a reset token.

use platform::auth::permissions::{permissions_of, Permission};
use platform::auth::{custom_roles, Caller};
use platform::{ApiError, ApiResult, AppState};
use std::collections::BTreeSet;

/// Every permission the roles give (built-in and the company's custom roles).
pub async fn permissions_of_roles(
    state: &AppState,
    company: &str,
    roles: &[String],
) -> ApiResult<BTreeSet<Permission>> {
    let mut held = permissions_of(roles);
    for role in custom_roles(state, company, roles).await? {
        held.extend(role.permissions);
    }
    Ok(held)
}

/// 403 naming the first permission in `wanted` that the caller lacks.
pub fn within_caller(caller: &Caller, wanted: &BTreeSet<Permission>, what: &str) -> ApiResult<()> {
    match wanted.iter().find(|p| !caller.permissions.contains(*p)) {
        None => Ok(()),
        Some(p) => Err(ApiError::Forbidden(format!(
            "{what}: it holds permission {p}, which you do not"
        ))),
    }
}

/// 403 when `roles` would give a permission the caller lacks.
pub async fn may_grant(state: &AppState, caller: &Caller, roles: &[String]) -> ApiResult<()> {
    let wanted = permissions_of_roles(state, caller.company_id(), roles).await?;
    within_caller(caller, &wanted, "you cannot grant these roles")
}

/// 403 when the user (by their roles) holds a permission the caller lacks.
pub async fn may_act_on(state: &AppState, caller: &Caller, user_roles: &[String]) -> ApiResult<()> {
    let held = permissions_of_roles(state, caller.company_id(), user_roles).await?;
    within_caller(caller, &held, "you cannot act on this user")
}
