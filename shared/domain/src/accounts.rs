//! Accounts as stored: companies (with their plan, features and limits), users and their
//! email claims, API keys and their hash entries, custom roles, groups, reset tokens and
//! refresh-token families; and the rules that are theirs alone (a plan's quota, which
//! features are on, what a built-in role grants). No I/O: the platform reads and writes
//! them (its store) and decides with them (its admission).

use crate::CompanyStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

named! {
    /// A company's plan (API.md §3): it sets the daily request quota when the company has no
    /// override of its own.
    Plan {
        Trial = "trial",
        Standard = "standard",
        Professional = "professional",
        Enterprise = "enterprise",
    }
}

impl Plan {
    /// Daily request quota of the plan (API.md §3).
    pub fn daily_limit(self) -> u64 {
        match self {
            Plan::Trial => 1_000,
            Plan::Standard => 10_000,
            Plan::Professional => 50_000,
            Plan::Enterprise => 250_000,
        }
    }
}

named! {
    /// Company features a plan or partner can switch off (Klipfolio's names plus ours);
    /// every feature is on unless the company's `features` says otherwise.
    Feature {
        DownloadableReports = "downloadable_reports",
        Embeds = "embeds",
        PublicDashboards = "public_dashboards",
        ScheduledEmails = "scheduled_emails",
        ScheduledReports = "scheduled_reports",
    }
}

named! {
    /// What a caller may do (API.md §6, Klipfolio's names): roles grant them, keys' scopes
    /// narrow them, routes require them.
    Permission {
        UserManage = "user.manage",
        ClientBuild = "client.build",
        ClientAccess = "client.access",
        ClientEdit = "client.edit",
        ClientShare = "client.share",
        ClientDelete = "client.delete",
        AuditRead = "audit.read",
        ApiKeyManage = "api_key.manage",
        DashboardBuild = "dashboard.build",
        DashboardEdit = "dashboard.edit",
        DashboardDelete = "dashboard.delete",
        DashboardShare = "dashboard.share",
        DashboardPublish = "dashboard.publish",
        KlipBuild = "klip.build",
        KlipEdit = "klip.edit",
        KlipDelete = "klip.delete",
        KlipShare = "klip.share",
        DatasourceCreate = "datasource.create",
        DatasourceEdit = "datasource.edit",
        DatasourceDelete = "datasource.delete",
        DatasourceRefresh = "datasource.refresh",
        DatasourceDownload = "datasource.download",
        DatasourceShare = "datasource.share",
        ReportBuild = "report.build",
        ReportEdit = "report.edit",
        ReportDelete = "report.delete",
        ReportGenerate = "report.generate",
        ReportDownload = "report.download",
        ChannelManage = "channel.manage",
        AlertManage = "alert.manage",
    }
}

named! {
    /// The roles every company has (custom roles are records: [`Role`]).
    BuiltinRole {
        Admin = "admin",
        Editor = "editor",
        Viewer = "viewer",
    }
}

impl BuiltinRole {
    /// Whether the role grants `permission`: an admin everything; an editor all but
    /// managing users, reading the audit log and client accounts; a viewer only downloading
    /// reports.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            BuiltinRole::Admin => true,
            BuiltinRole::Editor => !matches!(
                permission,
                UserManage
                    | AuditRead
                    | ClientBuild
                    | ClientAccess
                    | ClientEdit
                    | ClientShare
                    | ClientDelete
            ),
            BuiltinRole::Viewer => permission == ReportDownload,
        }
    }

    /// Every permission the role grants.
    pub fn permissions(self) -> BTreeSet<Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(|p| self.grants(*p))
            .collect()
    }
}

/// The permissions the built-in roles among `roles` grant together (custom role ids add
/// nothing here: their permissions are in their records).
pub fn builtin_permissions(roles: &[String]) -> BTreeSet<Permission> {
    roles
        .iter()
        .filter_map(|r| BuiltinRole::parse(r))
        .flat_map(BuiltinRole::permissions)
        .collect()
}

/// Client-account resources (API.md §6 clients).
pub const RESOURCES: &[&str] = &[
    "api.requests.perDay",
    "api.requests.perSecond",
    "company.seats",
    "dashboard.combined.total",
    "deliveries.perDay",
    "reports.scheduledRunsPerDay",
];

/// `deliveries.perDay` when a company has no override.
pub const DEFAULT_DELIVERIES_PER_DAY: u64 = 1_000;

/// `reports.scheduledRunsPerDay` when a company has no override: a schedule every minute.
pub const DEFAULT_SCHEDULED_RUNS_PER_DAY: u64 = 1_440;

pub const DEFAULT_PER_SECOND_LIMIT: u64 = 5;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Company {
    pub id: String,
    pub name: String,
    pub plan: Plan,
    pub status: CompanyStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Overrides (`api.requests.perSecond`, `api.requests.perDay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_limit: Option<u64>,
    #[serde(with = "crate::time::utc")]
    pub date_created: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub last_updated: DateTime<Utc>,
    /// Moves on with every whole-item write, whose condition it is (two writes within one
    /// second leave `last_updated` as it was).
    #[serde(default)]
    pub revision: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `company.seats`: users allowed (-1 or absent = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<i64>,
    /// Users that exist, kept by the same transactions that create and delete them.
    #[serde(default)]
    pub user_count: i64,
    /// Admins among its users, kept by the same transactions that give or take the role:
    /// removing an admin is conditional on another one remaining. Absent on companies made
    /// before it existed (counted on first need).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_count: Option<i64>,
    /// `dashboard.combined.total`: dashboards allowed (-1 or absent = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_limit: Option<i64>,
    /// `reports.scheduledRunsPerDay`: runs a day the company's schedules may add up to
    /// (absent = [`DEFAULT_SCHEDULED_RUNS_PER_DAY`], -1 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_runs_per_day: Option<i64>,
    /// `deliveries.perDay`: notifications the company may send a day (absent =
    /// [`DEFAULT_DELIVERIES_PER_DAY`], -1 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliveries_per_day: Option<i64>,
    #[serde(default)]
    pub features: BTreeMap<String, bool>,
    #[serde(default)]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// IANA zone for Klip ranges; America/New_York when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Its assets have been counted since it was made (each kind's number kept by the
    /// transactions that create and delete them) and their ids sort by creation (see
    /// [`crate::ids::ordered_id`]), so a list in creation order is paged in the database.
    /// False on companies made before either was true: their lists page in memory.
    #[serde(default)]
    pub assets_counted: bool,
}

impl Company {
    /// A company with nothing but its name, plan and status set.
    pub fn new(
        id: String,
        name: String,
        plan: Plan,
        status: CompanyStatus,
        now: DateTime<Utc>,
    ) -> Self {
        Company {
            id,
            name,
            plan,
            status,
            parent_id: None,
            per_second_limit: None,
            daily_limit: None,
            date_created: now,
            last_updated: now,
            revision: 0,
            description: None,
            external_id: None,
            seats: None,
            user_count: 0,
            admin_count: Some(0),
            dashboard_limit: None,
            scheduled_runs_per_day: None,
            deliveries_per_day: None,
            features: BTreeMap::new(),
            properties: BTreeMap::new(),
            timezone: None,
            assets_counted: true,
        }
    }

    /// Whether `feature` is on (every feature is, unless `features` switches it off).
    pub fn feature_enabled(&self, feature: Feature) -> bool {
        self.features.get(feature.as_str()).copied().unwrap_or(true)
    }

    /// Every feature with its effective state.
    pub fn effective_features(&self) -> BTreeMap<String, bool> {
        Feature::ALL
            .iter()
            .map(|f| (f.as_str().to_owned(), self.feature_enabled(*f)))
            .collect()
    }

    pub fn daily_limit(&self) -> u64 {
        self.daily_limit.unwrap_or_else(|| self.plan.daily_limit())
    }

    /// `reports.scheduledRunsPerDay` as a budget; `None`: unlimited.
    pub fn scheduled_runs_budget(&self) -> Option<u64> {
        match self.scheduled_runs_per_day {
            None => Some(DEFAULT_SCHEDULED_RUNS_PER_DAY),
            Some(n) => u64::try_from(n).ok(),
        }
    }

    /// `deliveries.perDay` as a budget; `None`: unlimited.
    pub fn deliveries_budget(&self) -> Option<u64> {
        match self.deliveries_per_day {
            None => Some(DEFAULT_DELIVERIES_PER_DAY),
            Some(n) => u64::try_from(n).ok(),
        }
    }

    pub fn per_second_limit(&self) -> u64 {
        self.per_second_limit.unwrap_or(DEFAULT_PER_SECOND_LIMIT)
    }

    /// Anonymous views of the company's published links a day, all links together: an
    /// allowance of their own, as large as the API's daily limit but never taken from it.
    pub fn public_daily_limit(&self) -> u64 {
        self.daily_limit()
    }

    /// Anonymous views of one published link a day: a quarter of
    /// [`Self::public_daily_limit`], so one busy (or abused) link leaves the others theirs.
    pub fn public_link_daily_limit(&self) -> u64 {
        (self.public_daily_limit() / 4).max(1)
    }

    /// Anonymous views of the company's published links a second (each link and all
    /// together): the API's per-second limit.
    pub fn public_per_second_limit(&self) -> u64 {
        self.per_second_limit()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: String,
    pub company_id: String,
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(with = "crate::time::utc")]
    pub date_created: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub last_updated: DateTime<Utc>,
    /// Moves on with every whole-item write, whose condition it is (two writes within one
    /// second leave `last_updated` as it was).
    #[serde(default)]
    pub revision: u64,
    #[serde(
        default,
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub date_last_login: Option<DateTime<Utc>>,
    /// RFC 3339; the user is locked out until then.
    #[serde(
        default,
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub locked_until: Option<DateTime<Utc>>,
    /// Moves on with every password change and lockout; tokens carry the epoch they were
    /// issued in and stop working when it moves on.
    #[serde(default)]
    pub session_epoch: u64,
}

/// Where an email lives: the service-wide uniqueness claim and login lookup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EmailClaim {
    pub company_id: String,
    pub user_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub company_id: String,
    pub user_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub prefix: String,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Permission>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
    #[serde(
        default,
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: String,
    #[serde(with = "crate::time::utc")]
    pub date_created: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub last_updated: DateTime<Utc>,
    #[serde(
        default,
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub usage_count: u64,
    #[serde(
        default,
        with = "crate::time::utc::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The immutable map from a key's hash to where the key lives.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyHashRecord {
    pub company_id: String,
    pub key_id: String,
    pub user_id: String,
}

/// A custom role of a company (the built-ins live in code).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Role {
    pub id: String,
    pub company_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
    #[serde(with = "crate::time::utc")]
    pub date_created: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub last_updated: DateTime<Utc>,
}

/// A group of a company's users: its members are the users whose `groups` hold its id;
/// share rights name groups.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub company_id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(with = "crate::time::utc")]
    pub date_created: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub last_updated: DateTime<Utc>,
}

/// A one-time password reset token, stored by the SHA-256 of the token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResetRecord {
    pub company_id: String,
    pub user_id: String,
    pub used: bool,
    #[serde(with = "crate::time::utc")]
    pub expires_at: DateTime<Utc>,
    pub ttl: i64,
}

/// A refresh token as stored: single use, in a family that one login starts.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RefreshRecord {
    pub jti: String,
    pub family: String,
    pub user_id: String,
    pub company_id: String,
    pub used: bool,
    pub revoked: bool,
    #[serde(with = "crate::time::utc")]
    pub expires_at: DateTime<Utc>,
    pub ttl: i64,
}

/// A login's family of refresh tokens: revoked as a whole on logout or on reuse.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct FamilyRecord {
    pub family: String,
    pub user_id: String,
    pub revoked: bool,
    pub ttl: i64,
}
