//! Verification: everything about a claimed caller that can change (the key's revocation
//! and expiry, the user, the company, a client account, the password) is read again, in
//! one round trip.

use super::caller::{caller_from, custom_roles, AuthMethod, Caller, CompanySummary};
use super::credential::{Claimed, Credential};
use super::lockout::{check_lockout, record_failed_login};
use super::password;
use super::records::{ApiKeyRecord, Company, KeyHashRecord, User};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::accounts::KeyRefused;
use crate::store::keys;
use crate::store::OrApiError;
use chrono::{DateTime, Utc};
use domain::CompanyStatus;

/// The API key whose use is counted in the company's rate counter item, by the request's
/// counter update: a key acting in its own company, while that item has room for it. One
/// acting in a client account (`client_id=`) is counted in the client's item, and one beyond
/// the keys a day item keeps ([`Claimed::key_use_on_own_item`]) would make every request of
/// the company pay two write units: their uses are written to the key's own item instead
/// ([`use_key`]).
pub fn key_use_counted<'a>(claimed: &'a Claimed, client: Option<&str>) -> Option<&'a str> {
    match (&claimed.key, client) {
        (Some(key), None) if !claimed.key_use_on_own_item => Some(key.key_id.as_str()),
        _ => None,
    }
}

/// Why a key read back does not hold; `None` when it does. `presented` is the hash of the
/// key as presented: a key that names its records proves itself only by this hash.
fn key_refusal(
    record: Option<&ApiKeyRecord>,
    presented: Option<&str>,
    now: DateTime<Utc>,
) -> Option<KeyRefused> {
    match record {
        None => Some(KeyRefused::Unknown),
        Some(k) if presented.is_some_and(|h| h != k.hash) => Some(KeyRefused::Unknown),
        Some(k) if k.revoked_at.is_some() => Some(KeyRefused::Revoked),
        Some(k)
            if k.expires_at
                .is_some_and(|e| e <= domain::time::seconds(now)) =>
        {
            Some(KeyRefused::Expired)
        }
        Some(_) => None,
    }
}

fn key_refused(reason: KeyRefused) -> ApiError {
    ApiError::Unauthorized(
        match reason {
            KeyRefused::Revoked => "API key revoked",
            KeyRefused::Expired => "API key expired",
            KeyRefused::Unknown => "invalid API key",
        }
        .into(),
    )
}

/// Records a use of an API key on its own item and answers its record, failing when it is
/// revoked or expired.
async fn use_key(
    state: &AppState,
    key: &KeyHashRecord,
    hash: &str,
    now: DateTime<Utc>,
) -> ApiResult<ApiKeyRecord> {
    state
        .store
        .api_keys()
        .record_use(key, hash, now)
        .await
        .map_err(|e| e.into_api(key_refused))
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
    let (caller, _) = verify_reading(state, credential, claimed, client, now, None).await?;
    Ok(caller)
}

/// [`verify`], reading the item `also` in the same `BatchGetItem` (admission reads the
/// company's rate counter this way: [`crate::ratelimit::RateLimiter::second_to_learn`]);
/// answers it with the caller (`None` when there is no such item).
pub async fn verify_reading(
    state: &AppState,
    credential: &Credential,
    claimed: &Claimed,
    client: Option<&str>,
    now: DateTime<Utc>,
    also: Option<crate::store::Key>,
) -> ApiResult<(Caller, Option<crate::store::Item>)> {
    let found = read_claimed(state, claimed, client, now, also).await?;
    let user = current_user(found.user, claimed)?;
    let company = found.company.ok_or_else(|| {
        ApiError::Unauthorized("the company of these credentials no longer exists".into())
    })?;
    let method = authenticate(state, credential, &user, now).await?;
    if company.status == CompanyStatus::Disabled {
        return Err(ApiError::Forbidden("client account disabled".into()));
    }
    // Custom roles cost one more read, only for users who have them.
    let roles = custom_roles(state, &company.id, &user.roles).await?;
    let mut caller = caller_from(&company, user, &roles, found.key.as_ref(), method);
    if let Some(client_id) = client {
        act_in_client(&mut caller, client_id, found.client, &company)?;
    }
    Ok((caller, found.also))
}

/// What verification reads again of a claimed caller (each `None` when gone).
struct Found {
    user: Option<User>,
    company: Option<Company>,
    /// With `client_id=`, that client account.
    client: Option<Company>,
    /// The API key's record, when the credential is a key.
    key: Option<ApiKeyRecord>,
    /// The item read alongside for the caller of [`verify_reading`].
    also: Option<crate::store::Item>,
}

/// Reads the user, the company, (with client_id) the client, a key whose use the request's
/// counter update records and the item `also` in one consistent BatchGetItem; a key acting in a client
/// account records its use on its own item, alongside. A key that no longer holds is 401.
async fn read_claimed(
    state: &AppState,
    claimed: &Claimed,
    client: Option<&str>,
    now: DateTime<Utc>,
    also: Option<crate::store::Key>,
) -> ApiResult<Found> {
    let counted_key = key_use_counted(claimed, client).and(claimed.key.as_ref());
    let used_key = async {
        match &claimed.key {
            Some(k) if counted_key.is_none() => {
                let hash = claimed.key_hash.as_deref().unwrap_or_default();
                use_key(state, k, hash, now).await.map(Some)
            }
            _ => Ok(None),
        }
    };
    let mut wanted = wanted_items(claimed, client, counted_key);
    let reads_also = also.is_some();
    wanted.extend(also);
    let (found, used_key) = tokio::try_join!(state.store.get_many(&wanted).api(), used_key)?;
    let mut found = found.into_iter();
    let mut next = || found.next().flatten();
    let user: Option<User> = next().map(crate::store::from_item).transpose()?;
    let company: Option<Company> = next().map(crate::store::from_item).transpose()?;
    let client_company: Option<Company> = match client {
        Some(_) => next().map(crate::store::from_item).transpose()?,
        None => None,
    };
    let key = match counted_key {
        Some(_) => {
            let record: Option<ApiKeyRecord> = next().map(crate::store::from_item).transpose()?;
            if let Some(reason) = key_refusal(record.as_ref(), claimed.key_hash.as_deref(), now) {
                return Err(key_refused(reason));
            }
            record
        }
        None => used_key,
    };
    let also = if reads_also { next() } else { None };
    Ok(Found {
        user,
        company,
        client: client_company,
        key,
        also,
    })
}

/// The keys of the BatchGetItem, in the order [`read_claimed`] takes them: user, company,
/// (with client_id) the client, (when counted) the key.
fn wanted_items(
    claimed: &Claimed,
    client: Option<&str>,
    counted_key: Option<&KeyHashRecord>,
) -> Vec<crate::store::Key> {
    let mut wanted = vec![
        keys::user(&claimed.company_id, &claimed.user_id),
        keys::company(&claimed.company_id),
    ];
    if let Some(id) = client {
        wanted.push(keys::company(id));
    }
    if let Some(k) = counted_key {
        wanted.push(keys::api_key(&k.company_id, &k.key_id));
    }
    wanted
}

/// The user, while it exists and is still in the session the credential belongs to (401
/// otherwise).
fn current_user(user: Option<User>, claimed: &Claimed) -> ApiResult<User> {
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
    Ok(user)
}

/// How the caller authenticated; a password is checked here (lockout first, and a wrong
/// one recorded as a failed login).
async fn authenticate(
    state: &AppState,
    credential: &Credential,
    user: &User,
    now: DateTime<Utc>,
) -> ApiResult<AuthMethod> {
    Ok(match credential {
        Credential::ApiKey(_) => AuthMethod::ApiKey,
        Credential::Jwt(_) => AuthMethod::Jwt,
        Credential::Basic { email, password } => {
            check_lockout(user.locked_until, now)?;
            if !password::verify(password, &user.password_hash).await? {
                return Err(record_failed_login(state, email, Some(user), now).await);
            }
            AuthMethod::Basic
        }
    })
}

/// Makes the caller act inside its company's client account `client_id` (which needs
/// `client.access`; 404 for another company's, 403 for a disabled one).
fn act_in_client(
    caller: &mut Caller,
    client_id: &str,
    client_company: Option<Company>,
    company: &Company,
) -> ApiResult<()> {
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
    Ok(())
}
