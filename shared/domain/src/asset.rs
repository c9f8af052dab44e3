//! What every asset (data source, Klip, dashboard) has: a kind, a [`Meta`] (id, slug, name,
//! version, share rights) and the rules for the fields people choose (name, description,
//! slug). Storing assets is the platform's business.

use crate::error::{FieldError, Problems};
use crate::ids::is_id;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Datasource,
    Klip,
    Dashboard,
    Report,
    Channel,
    Alert,
}

impl Kind {
    /// The sort-key prefix of its items (and of its slug claims, after `SLUG#`).
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Datasource => "DS#",
            Kind::Klip => "KLIP#",
            Kind::Dashboard => "DASH#",
            Kind::Report => "REPORT#",
            Kind::Channel => "CHAN#",
            Kind::Alert => "ALERT#",
        }
    }
    /// The permission that lets a caller see and edit every asset of the kind in its
    /// company (others see what they created or what is shared with their groups).
    pub fn edit_permission(self) -> &'static str {
        match self {
            Kind::Datasource => "datasource.edit",
            Kind::Klip => "klip.edit",
            Kind::Dashboard => "dashboard.edit",
            Kind::Report => "report.edit",
            Kind::Channel => "channel.manage",
            Kind::Alert => "alert.manage",
        }
    }
    /// The singular name, as in messages and permission names (`klip.edit`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Datasource => "datasource",
            Kind::Klip => "klip",
            Kind::Dashboard => "dashboard",
            Kind::Report => "report",
            Kind::Channel => "channel",
            Kind::Alert => "alert",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShareRight {
    pub group_id: String,
    pub can_edit: bool,
}

/// What every asset has.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub id: String,
    pub company_id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub slug: String,
    pub version: u64,
    pub created_by: String,
    #[serde(with = "crate::time::utc")]
    pub date_created: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub last_updated: DateTime<Utc>,
    #[serde(default)]
    pub share_rights: Vec<ShareRight>,
}

impl Meta {
    /// Whether a user sees the asset: one who may edit assets of its kind (`edits_kind`)
    /// sees every one in the company; others see what they created and what is shared with
    /// one of their `groups`.
    pub fn visible_to(&self, user_id: &str, groups: &[String], edits_kind: bool) -> bool {
        edits_kind
            || self.created_by == user_id
            || self
                .share_rights
                .iter()
                .any(|r| groups.contains(&r.group_id))
    }

    /// A new asset's meta in `company_id`, made by `created_by`; creating it fills id, the
    /// times, slug and version.
    pub fn new(
        company_id: &str,
        created_by: &str,
        name: String,
        description: Option<String>,
        slug: Option<String>,
    ) -> Self {
        Meta {
            id: String::new(),
            company_id: company_id.to_owned(),
            name,
            description,
            slug: slug.unwrap_or_default(),
            version: 0,
            created_by: created_by.to_owned(),
            date_created: DateTime::UNIX_EPOCH,
            last_updated: DateTime::UNIX_EPOCH,
            share_rights: Vec::new(),
        }
    }
}

/// What the API shows of an asset's meta: all of it but the company.
#[derive(Debug, Serialize)]
pub struct MetaView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub description: &'a Option<String>,
    pub slug: &'a str,
    pub version: u64,
    pub created_by: &'a str,
    #[serde(with = "crate::time::utc")]
    pub date_created: DateTime<Utc>,
    #[serde(with = "crate::time::utc")]
    pub last_updated: DateTime<Utc>,
    pub share_rights: &'a [ShareRight],
}

impl Meta {
    pub fn view(&self) -> MetaView<'_> {
        MetaView {
            id: &self.id,
            name: &self.name,
            description: &self.description,
            slug: &self.slug,
            version: self.version,
            created_by: &self.created_by,
            date_created: self.date_created,
            last_updated: self.last_updated,
            share_rights: &self.share_rights,
        }
    }
}

/// An asset as the API shows it: its meta's view, then the view of its own fields.
#[derive(Debug, Serialize)]
pub struct AssetView<'a, F> {
    #[serde(flatten)]
    pub meta: MetaView<'a>,
    #[serde(flatten)]
    pub fields: F,
}

impl Meta {
    /// An update body's name, description and slug (absent ones stay as they are).
    pub fn apply(
        &mut self,
        name: Option<String>,
        description: Option<String>,
        slug: Option<String>,
    ) {
        if let Some(name) = name {
            self.name = name.trim().to_owned();
        }
        if description.is_some() {
            self.description = description;
        }
        if let Some(slug) = slug {
            self.slug = slug;
        }
    }
}

/// A stored asset: the record with its meta.
pub trait Asset: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: Kind;
    /// What the API shows of the asset's own fields (besides its meta): never the stored
    /// bookkeeping, and secrets masked.
    type Fields<'a>: Serialize + Send
    where
        Self: 'a;
    fn fields(&self) -> Self::Fields<'_>;
    /// The asset as the API shows it.
    fn view(&self) -> AssetView<'_, Self::Fields<'_>> {
        AssetView {
            meta: self.meta().view(),
            fields: self.fields(),
        }
    }
    fn meta(&self) -> &Meta;
    fn meta_mut(&mut self) -> &mut Meta;
    /// When the asset is next due for background work (a scheduled report).
    fn due_at(&self) -> Option<DateTime<Utc>> {
        None
    }
    /// The Klip the asset watches (an alert): its changes are evaluated against it, and the
    /// store indexes it under that Klip so they are found in one query.
    fn watched_klip(&self) -> Option<&str> {
        None
    }
}

/// Checks a slug the caller chose.
pub fn check_slug(slug: &str) -> Result<(), FieldError> {
    let ok = (1..=64).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !is_id(slug);
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "slug",
            "must be 1 to 64 of a-z, 0-9 and '-' (and not look like an id)",
        ))
    }
}

/// Name, description and slug of a create or update body.
pub fn check_common(
    name: Option<&str>,
    description: Option<&str>,
    slug: Option<&str>,
    creating: bool,
) -> Problems {
    let mut problems = Problems::new();
    match name.map(str::trim) {
        None if creating => problems.add("name", "is required"),
        Some(n) if n.is_empty() || n.chars().count() > 200 => {
            problems.add("name", "must be 1 to 200 characters")
        }
        _ => {}
    }
    if description.is_some_and(|d| d.chars().count() > 2000) {
        problems.add("description", "must be at most 2000 characters");
    }
    if let Some(slug) = slug {
        if let Err(e) = check_slug(slug) {
            problems.push(e);
        }
    }
    problems
}
