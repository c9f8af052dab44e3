//! The authenticated caller, as handlers see it: who acts, in which company, with which
//! permissions. It carries no secrets (no password hash, no key secret), so nothing a
//! handler logs or returns can leak one.

use super::permissions;
use super::records::{ApiKeyRecord, Company, Permission, Plan, Role, User};
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::Usage;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeSet;

/// How the caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ApiKey,
    Jwt,
    Basic,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompanySummary {
    pub id: String,
    pub name: String,
    pub plan: Plan,
    #[serde(skip)]
    pub status: domain::CompanyStatus,
    #[serde(skip)]
    pub parent_id: Option<String>,
    #[serde(skip)]
    pub per_second_limit: u64,
    #[serde(skip)]
    pub daily_limit: u64,
    #[serde(skip)]
    pub features: std::collections::BTreeMap<String, bool>,
    #[serde(skip)]
    pub timezone: Option<String>,
    /// `dashboard.combined.total`: how many dashboards the company may have.
    #[serde(skip)]
    pub dashboard_limit: Option<i64>,
    /// `reports.scheduledRunsPerDay`: runs a day its schedules may add up to (`None`:
    /// unlimited).
    #[serde(skip)]
    pub scheduled_runs_budget: Option<u64>,
    /// Its assets are counted and their ids sort by creation (see
    /// [`domain::accounts::Company::assets_counted`]).
    #[serde(skip)]
    pub assets_counted: bool,
}

impl CompanySummary {
    pub fn of(company: &Company) -> Self {
        CompanySummary {
            id: company.id.clone(),
            name: company.name.clone(),
            plan: company.plan,
            status: company.status,
            parent_id: company.parent_id.clone(),
            per_second_limit: company.per_second_limit(),
            daily_limit: company.daily_limit(),
            features: company.effective_features(),
            timezone: company.timezone.clone(),
            dashboard_limit: company.dashboard_limit,
            scheduled_runs_budget: company.scheduled_runs_budget(),
            assets_counted: company.assets_counted,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeySummary {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Option<Vec<Permission>>,
    #[serde(default, with = "domain::time::utc::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The user behind a caller: the stored user without its password hash.
#[derive(Clone, Debug, PartialEq)]
pub struct CallerUser {
    pub id: String,
    pub company_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub external_id: Option<String>,
    pub date_created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
    pub session_epoch: u64,
}

impl CallerUser {
    pub fn of(user: User) -> Self {
        CallerUser {
            id: user.id,
            company_id: user.company_id,
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            roles: user.roles,
            groups: user.groups,
            external_id: user.external_id,
            date_created: user.date_created,
            last_updated: user.last_updated,
            locked_until: user.locked_until,
            session_epoch: user.session_epoch,
        }
    }
}

/// The authenticated caller, as handlers see it (an extractor).
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    /// The company the request acts in: the caller's own, or with `client_id=` one of its
    /// client accounts (whose limits it then counts against).
    pub company: CompanySummary,
    /// With `client_id=`: the partner company the user belongs to.
    pub partner: Option<CompanySummary>,
    pub user: CallerUser,
    pub permissions: BTreeSet<Permission>,
    pub api_key: Option<KeySummary>,
    pub method: AuthMethod,
}

impl Caller {
    /// 403 naming the permission when the caller lacks it. A route that takes any of
    /// several permissions names them joined by `|` (`channel.manage|alert.manage`): any
    /// one of them will do.
    pub fn require(&self, permission: &str) -> ApiResult<()> {
        if self.can(permission) {
            Ok(())
        } else {
            Err(ApiError::missing_permission(permission))
        }
    }

    /// 403 naming the feature when the company has it switched off.
    pub fn require_feature(&self, feature: &str) -> ApiResult<()> {
        if self.company.features.get(feature).copied().unwrap_or(true) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "feature {feature} is not enabled for this company"
            )))
        }
    }

    /// Whether the caller holds `permission` (any one of several joined by `|`). A name
    /// that is no permission is held by nobody (every route's is checked by a test).
    pub fn can(&self, permission: &str) -> bool {
        permission
            .split('|')
            .filter_map(Permission::parse)
            .any(|p| self.permissions.contains(&p))
    }

    pub fn company_id(&self) -> &str {
        &self.company.id
    }

    pub fn user_id(&self) -> &str {
        &self.user.id
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::internal("route has no authenticate layer"))
    }
}

/// The counts of this request, for `GET /usage` (absent when the handler ran speculatively).
#[derive(Clone, Debug)]
pub struct RequestUsage(pub Usage);

/// Builds the caller from the stored user, company, custom roles and (for keys) key record.
pub fn caller_from(
    company: &Company,
    user: User,
    roles: &[Role],
    key: Option<&ApiKeyRecord>,
    method: AuthMethod,
) -> Caller {
    let mut permissions = permissions::permissions_of(&user.roles);
    for role in roles.iter().filter(|r| user.roles.contains(&r.id)) {
        permissions.extend(role.permissions.iter().copied());
    }
    if let Some(scopes) = key.and_then(|k| k.scopes.as_ref()) {
        permissions.retain(|p| scopes.contains(p));
    }
    Caller {
        company: CompanySummary::of(company),
        partner: None,
        user: CallerUser::of(user),
        permissions,
        api_key: key.map(|k| KeySummary {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.clone(),
            expires_at: k.expires_at,
        }),
        method,
    }
}

/// The custom roles among `role_ids` (built-ins are in code), read consistently.
pub async fn custom_roles(
    state: &AppState,
    company: &str,
    role_ids: &[String],
) -> ApiResult<Vec<Role>> {
    let reads = role_ids
        .iter()
        .filter(|r| permissions::builtin_role(r).is_none())
        .map(|r| state.store.roles().get(company, r));
    Ok(futures::future::try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// A caller as an access token carries it (claim `who`), signed with the token: what a
/// new instance runs a read with while it verifies the token, counts the request and reads,
/// all at once (see [`crate::admission`]). Only a guess: the answer is kept when the
/// caller verified now is this very one, so a snapshot outdated by a change since the token
/// was issued costs a second run, never a wrong answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallerSnapshot {
    company: CompanySnapshot,
    user: UserSnapshot,
    permissions: Vec<Permission>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct CompanySnapshot {
    id: String,
    name: String,
    plan: Plan,
    status: domain::CompanyStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
    per_second_limit: u64,
    daily_limit: u64,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    features: std::collections::BTreeMap<String, bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dashboard_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheduled_runs_budget: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    assets_counted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct UserSnapshot {
    id: String,
    email: String,
    first_name: String,
    last_name: String,
    roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    #[serde(with = "domain::time::utc")]
    date_created: DateTime<Utc>,
    #[serde(with = "domain::time::utc")]
    last_updated: DateTime<Utc>,
    #[serde(default, with = "domain::time::utc::option")]
    locked_until: Option<DateTime<Utc>>,
    session_epoch: u64,
}

impl CallerSnapshot {
    /// The snapshot of a caller acting in its own company (`None` for any other: a
    /// partner acting in a client, or a key's caller).
    pub fn of(caller: &Caller) -> Option<Self> {
        if caller.partner.is_some() || caller.api_key.is_some() {
            return None;
        }
        let (c, u) = (&caller.company, &caller.user);
        Some(CallerSnapshot {
            company: CompanySnapshot {
                id: c.id.clone(),
                name: c.name.clone(),
                plan: c.plan,
                status: c.status,
                parent_id: c.parent_id.clone(),
                per_second_limit: c.per_second_limit,
                daily_limit: c.daily_limit,
                features: c.features.clone(),
                timezone: c.timezone.clone(),
                dashboard_limit: c.dashboard_limit,
                scheduled_runs_budget: c.scheduled_runs_budget,
                assets_counted: c.assets_counted,
            },
            user: UserSnapshot {
                id: u.id.clone(),
                email: u.email.clone(),
                first_name: u.first_name.clone(),
                last_name: u.last_name.clone(),
                roles: u.roles.clone(),
                groups: u.groups.clone(),
                external_id: u.external_id.clone(),
                date_created: u.date_created,
                last_updated: u.last_updated,
                locked_until: u.locked_until,
                session_epoch: u.session_epoch,
            },
            permissions: caller.permissions.iter().copied().collect(),
        })
    }

    /// The caller this snapshot was taken of, authenticated by `method`.
    pub fn into_caller(self, method: AuthMethod) -> Caller {
        let (c, u) = (self.company, self.user);
        Caller {
            company: CompanySummary {
                id: c.id.clone(),
                name: c.name,
                plan: c.plan,
                status: c.status,
                parent_id: c.parent_id,
                per_second_limit: c.per_second_limit,
                daily_limit: c.daily_limit,
                features: c.features,
                timezone: c.timezone,
                dashboard_limit: c.dashboard_limit,
                scheduled_runs_budget: c.scheduled_runs_budget,
                assets_counted: c.assets_counted,
            },
            partner: None,
            user: CallerUser {
                id: u.id,
                company_id: c.id,
                email: u.email,
                first_name: u.first_name,
                last_name: u.last_name,
                roles: u.roles,
                groups: u.groups,
                external_id: u.external_id,
                date_created: u.date_created,
                last_updated: u.last_updated,
                locked_until: u.locked_until,
                session_epoch: u.session_epoch,
            },
            permissions: self.permissions.into_iter().collect(),
            api_key: None,
            method,
        }
    }
}
