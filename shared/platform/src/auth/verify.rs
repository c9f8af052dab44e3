//! Verification: everything about a claimed caller that can change (the key's revocation
//! and expiry, the user, the company, a client account, the password) is read again, in
//! one round trip alongside the key's usage update.

use super::caller::{caller_from, custom_roles, AuthMethod, Caller, CompanySummary};
use super::credential::{Claimed, Credential};
use super::lockout::{check_lockout, record_failed_login};
use super::password;
use super::records::{ApiKeyRecord, Company, KeyHashRecord, User};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::accounts::KeyRefused;
use crate::store::keys;
use chrono::{DateTime, Utc};
use domain::CompanyStatus;

/// Records a use of an API key and answers its record, failing when it is revoked or expired.
async fn use_key(
    state: &AppState,
    key: &KeyHashRecord,
    now: DateTime<Utc>,
) -> ApiResult<ApiKeyRecord> {
    state
        .store
        .api_keys()
        .record_use(key, now)
        .await
        .map_err(|e| {
            e.into_api(|reason| {
                ApiError::Unauthorized(
                    match reason {
                        KeyRefused::Revoked => "API key revoked",
                        KeyRefused::Expired => "API key expired",
                        KeyRefused::Unknown => "invalid API key",
                    }
                    .into(),
                )
            })
        })
}

/// Checks the credential against the store: everything that can change is read again. With
/// `client` (`client_id=`), the caller acts inside that client account of its company.
pub async fn verify(
    state: &AppState,
    credential: &Credential,
    claimed: &Claimed,
    client: Option<&str>,
    now: DateTime<Utc>,
) -> ApiResult<Caller> {
    let store = &state.store;
    let key = async {
        match &claimed.key {
            Some(k) => use_key(state, k, now).await.map(Some),
            None => Ok(None),
        }
    };
    // User, company and (with client_id) client in one consistent BatchGetItem, alongside
    // the key's usage update.
    let mut wanted = vec![
        keys::user(&claimed.company_id, &claimed.user_id),
        keys::company(&claimed.company_id),
    ];
    if let Some(id) = client {
        wanted.push(keys::company(id));
    }
    let (found, key) = tokio::try_join!(store.get_many(&wanted), key)?;
    let mut found = found.into_iter();
    let mut next = || found.next().flatten();
    let user: Option<User> = next().map(crate::store::from_item).transpose()?;
    let company: Option<Company> = next().map(crate::store::from_item).transpose()?;
    let client_company: Option<Company> = next().map(crate::store::from_item).transpose()?;
    let user = user.ok_or_else(|| {
        ApiError::Unauthorized("the user of these credentials no longer exists".into())
    })?;
    if claimed
        .session_epoch
        .is_some_and(|epoch| epoch != user.session_epoch)
    {
        return Err(ApiError::Unauthorized(
            "this session has ended (the password changed or the user was locked out); log in again".into(),
        ));
    }
    let company = company.ok_or_else(|| {
        ApiError::Unauthorized("the company of these credentials no longer exists".into())
    })?;
    let method = match credential {
        Credential::ApiKey(_) => AuthMethod::ApiKey,
        Credential::Jwt(_) => AuthMethod::Jwt,
        Credential::Basic { email, password } => {
            check_lockout(user.locked_until, now)?;
            if !password::verify(password, &user.password_hash).await? {
                return Err(record_failed_login(state, email, Some(&user), now).await);
            }
            AuthMethod::Basic
        }
    };
    if company.status == CompanyStatus::Disabled {
        return Err(ApiError::Forbidden("client account disabled".into()));
    }
    // Custom roles cost one more read, only for users who have them.
    let roles = custom_roles(state, &company.id, &user.roles).await?;
    let mut caller = caller_from(&company, user, &roles, key.as_ref(), method);
    if let Some(client_id) = client {
        caller.require("client.access")?;
        let client_company = client_company
            .filter(|c| c.parent_id.as_deref() == Some(company.id.as_str()))
            .ok_or_else(|| ApiError::not_found("client", client_id))?;
        if client_company.status == CompanyStatus::Disabled {
            return Err(ApiError::Forbidden("client account disabled".into()));
        }
        caller.partner = Some(std::mem::replace(
            &mut caller.company,
            CompanySummary::of(&client_company),
        ));
    }
    Ok(caller)
}
