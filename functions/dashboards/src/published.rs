//! Published links: a token that shows one dashboard without credentials, counted against
//! the owner company's limits, until it expires or is revoked. Needs the company's
//! `public_dashboards` feature.

use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::ids::{new_id, ApiKeyHash};
use domain::records::LinkTarget as LinkRecord;
use domain::records::{Dashboard, PublishedLink};
use platform::admission::LinkOwner;
use platform::assets::resource::OnDelete;
use platform::assets::{self, check_if_match, find};
use platform::auth::records::Company;
use platform::auth::records::Feature;
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{NoParams, OptionalJsonBody};
use platform::paging::{Listing, NoFilters};
use platform::store::assets::Lookup;
use platform::{ApiError, ApiResult, AppState};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A deleted dashboard's links stop answering at once.
pub struct Unpublish;

impl OnDelete<Dashboard> for Unpublish {
    async fn after_delete(state: &AppState, dashboard: &Dashboard) -> ApiResult<()> {
        for link in &dashboard.published_links {
            state
                .store
                .published_links()
                .delete(&link.token_hash)
                .await?;
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// 1 to 365 days, or null for a link that never expires.
    expires_in_days: Option<u32>,
}

/// A published link as the API shows it: never its token's hash; the token and its URL
/// only in the answer that made it.
#[derive(Serialize)]
pub struct LinkView<'a> {
    id: &'a str,
    #[serde(with = "domain::time::utc::option")]
    expires_at: Option<DateTime<Utc>>,
    created_by: &'a str,
    #[serde(with = "domain::time::utc")]
    date_created: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

pub fn link_view(link: &PublishedLink) -> LinkView<'_> {
    LinkView {
        id: &link.id,
        expires_at: link.expires_at,
        created_by: &link.created_by,
        date_created: link.date_created,
        token: None,
        url: None,
    }
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<NoFilters>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let list = list.plain()?;
    let dashboard: Dashboard = find(&state, &caller, &id).await?;
    let (page, total) = list
        .paging
        .slice(dashboard.published_links.iter().map(link_view).collect());
    let meta = list.meta(page.len(), total);
    Ok(envelope::list("published_links", page, meta))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<LinkBody>,
) -> ApiResult<Response> {
    caller.require_feature("public_dashboards")?;
    let body = body.unwrap_or_default();
    if body
        .expires_in_days
        .is_some_and(|d| !(1..=365).contains(&d))
    {
        return Err(ApiError::field(
            "expires_in_days",
            "must be 1 to 365, or null for a link that never expires",
        ));
    }
    let old: Dashboard = find(&state, &caller, &id).await?;
    check_if_match(&headers, &old.meta)?;
    let now = state.clock.now();
    let token = format!("pbp_{}{}", new_id(), new_id());
    let token_hash = ApiKeyHash::of(&token).0;
    let link = PublishedLink {
        id: new_id(),
        token_hash: token_hash.clone(),
        expires_at: body
            .expires_in_days
            .map(|d| now + chrono::Duration::days(d as i64)),
        created_by: caller.user_id().to_owned(),
        date_created: now,
    };
    let record = LinkRecord {
        company_id: old.meta.company_id.clone(),
        dashboard_id: old.meta.id.clone(),
        link_id: link.id.clone(),
        expires_at: link.expires_at,
    };
    // The link and its token's lookup are stored together, or neither.
    let lookup = Lookup::new_link(&token_hash, &record)?;
    let mut dashboard = old.clone();
    dashboard.published_links.push(link.clone());
    assets::save_with(&state, &old, dashboard, Some(lookup)).await?;
    let view = LinkView {
        token: Some(&token),
        url: Some(format!("/api/1.0/public/dashboards/{token}")),
        ..link_view(&link)
    };
    let location = format!(
        "{}/published-links/{}",
        envelope::location("dashboards", &old.meta.id),
        link.id
    );
    Ok(envelope::created(&location, view))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path((id, link_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let dashboard: Dashboard = find(&state, &caller, &id).await?;
    let link = dashboard
        .published_links
        .iter()
        .find(|l| l.id == link_id)
        .ok_or_else(|| ApiError::not_found("published link", &link_id))?;
    Ok(envelope::ok(link_view(link)))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path((id, link_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let old: Dashboard = find(&state, &caller, &id).await?;
    let link = old
        .published_links
        .iter()
        .find(|l| l.id == link_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("published link", &link_id))?;
    // The link and its token's lookup go together: from this moment the token answers 404;
    // a save that loses to another (412) leaves both, so the token still works.
    let lookup = Lookup::drop_link(&link.token_hash);
    let mut dashboard = old.clone();
    dashboard.published_links.retain(|l| l.id != link_id);
    assets::save_with(&state, &old, dashboard, Some(lookup)).await?;
    Ok(envelope::deleted())
}

/// The dashboard a published link shows, as the admission pipeline's resolver read it, with
/// the Klips read alongside it (those this instance saw on it last time) and the owner's
/// time zone.
#[derive(Clone)]
pub struct PublishedDashboard(
    Dashboard,
    HashMap<String, domain::records::Klip>,
    Option<String>,
    /// The owner's currency (its `currency` property, else USD) for `currency` Klips that
    /// name none.
    String,
);

/// Where a link this instance resolved before leads (`Caches::links`): a link's company,
/// dashboard and expiry never change, so it lets the next request read the link (to see
/// that it still exists) together with what it leads to.
fn remembered_link(state: &AppState, hash: &str) -> Option<LinkRecord> {
    state.caches.links.get(hash)
}

fn remember_link(state: &AppState, hash: &str, record: &LinkRecord) {
    state.caches.links.insert(hash.to_owned(), record.clone());
}

fn forget_link(state: &AppState, hash: &str) {
    state.caches.links.remove(hash);
}

/// Resolves a published link's token for the admission pipeline: the owner company (whose
/// limits the request counts against) and the dashboard; 404 once revoked or expired, or
/// when the owner switched `public_dashboards` off. A link this instance resolved before is
/// read together with its company, dashboard and Klips (one round trip); a new one first,
/// then those (two).
pub fn resolve<'a>(
    state: &'a AppState,
    token: &'a str,
) -> futures::future::BoxFuture<'a, ApiResult<LinkOwner>> {
    Box::pin(async move {
        let hash = ApiKeyHash::of(token).0;
        let read = match remembered_link(state, &hash) {
            Some(known) => read_remembered_link(state, &hash, known).await?,
            None => read_new_link(state, &hash).await?,
        };
        let LinkRead {
            record,
            company,
            dashboard,
            klips,
        } = read;
        let (company, dashboard) = shown(state, &hash, &record, company, dashboard)?;
        remember_link(state, &hash, &record);
        Ok(link_owner(company, dashboard, klips))
    })
}

/// What a published link leads to, as read: its record, the owner company, the dashboard
/// and the Klips read alongside it.
struct LinkRead {
    record: LinkRecord,
    company: Option<Company>,
    dashboard: Option<Dashboard>,
    klips: HashMap<String, domain::records::Klip>,
}

/// The answer to a token that leads nowhere (any more).
fn link_not_found() -> ApiError {
    ApiError::NotFound(
        "published dashboard not found (revoked or expired links answer this too)".into(),
    )
}

/// Reads a remembered link's record together with its company, dashboard and Klips (one
/// round trip); a failed read, or a record that is gone or changed, forgets it.
async fn read_remembered_link(
    state: &AppState,
    hash: &str,
    known: LinkRecord,
) -> ApiResult<LinkRead> {
    let guess = crate::dashboards::remembered_klips(state, &known.company_id, &known.dashboard_id);
    let read = tokio::try_join!(
        state.store.published_links().get(hash),
        state.store.companies().get(&known.company_id),
        state
            .store
            .assets()
            .get::<Dashboard>(&known.company_id, &known.dashboard_id),
        crate::dashboards::read_klips(state, &known.company_id, &guess),
    );
    let (record, company, dashboard, klips) = read.inspect_err(|_| forget_link(state, hash))?;
    match record {
        // A link's record never changes: the same one leads to the same things.
        Some(record) if record == known => Ok(LinkRead {
            record,
            company,
            dashboard,
            klips,
        }),
        _ => {
            forget_link(state, hash);
            Err(link_not_found())
        }
    }
}

/// Reads a new link's record, then its company, dashboard and Klips (two round trips).
async fn read_new_link(state: &AppState, hash: &str) -> ApiResult<LinkRead> {
    let record: LinkRecord = state
        .store
        .published_links()
        .get(hash)
        .await?
        .ok_or_else(link_not_found)?;
    let guess =
        crate::dashboards::remembered_klips(state, &record.company_id, &record.dashboard_id);
    let (company, dashboard, klips) = tokio::try_join!(
        state.store.companies().get(&record.company_id),
        state
            .store
            .assets()
            .get::<Dashboard>(&record.company_id, &record.dashboard_id),
        crate::dashboards::read_klips(state, &record.company_id, &guess),
    )?;
    Ok(LinkRead {
        record,
        company,
        dashboard,
        klips,
    })
}

/// The company and dashboard a link shows while it is live; an expired link, a company or
/// dashboard that is gone, or an owner that is disabled or switched `public_dashboards` off
/// forgets it and answers 404.
fn shown(
    state: &AppState,
    hash: &str,
    record: &LinkRecord,
    company: Option<Company>,
    dashboard: Option<Dashboard>,
) -> ApiResult<(Company, Dashboard)> {
    let now = domain::time::seconds(state.clock.now());
    if record.expires_at.is_some_and(|e| e <= now) {
        forget_link(state, hash);
        return Err(link_not_found());
    }
    let (Some(company), Some(dashboard)) = (company, dashboard) else {
        forget_link(state, hash);
        return Err(link_not_found());
    };
    if company.status == domain::CompanyStatus::Disabled
        || !company.feature_enabled(Feature::PublicDashboards)
    {
        forget_link(state, hash);
        return Err(link_not_found());
    }
    Ok((company, dashboard))
}

/// The owner company, with the dashboard, its Klips, the owner's time zone and currency for
/// the handler.
fn link_owner(
    company: Company,
    dashboard: Dashboard,
    klips: HashMap<String, domain::records::Klip>,
) -> LinkOwner {
    let mut extensions = http::Extensions::new();
    let zone = company.timezone.clone();
    let currency = domain::document::company_currency(&company.properties);
    extensions.insert(PublishedDashboard(dashboard, klips, zone, currency));
    LinkOwner {
        company,
        extensions,
    }
}

/// `GET /public/dashboards/{token}`: no credentials; admission resolved the link and counted
/// the request against the owner's limits. A browser (`Accept: text/html`) gets the
/// dashboard as one self-contained page; API clients get JSON.
pub async fn show_public(
    State(state): State<AppState>,
    _: NoParams,
    headers: axum::http::HeaderMap,
    Extension(PublishedDashboard(dashboard, prefetched, zone, currency)): Extension<
        PublishedDashboard,
    >,
) -> ApiResult<Response> {
    let wants_html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html {
        return page(&state, &dashboard, prefetched, zone.as_deref(), &currency).await;
    }
    let mut body =
        crate::dashboards::render_with(&state, &dashboard, None, None, prefetched).await?;
    if let Some(obj) = body.as_object_mut() {
        // What a visitor needs, not who built it or how it is shared.
        for private in ["share_rights", "published_links", "created_by"] {
            obj.remove(private);
        }
    }
    Ok(envelope::ok(body))
}

/// What a published page may load: nothing but its own inline styles (its charts are
/// inline SVG), and it may not be framed.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The published dashboard as one page: each widget's Klip with its stored value, change,
/// status, chart and what the analysis finds in it (the report renderer's page).
async fn page(
    state: &AppState,
    dashboard: &Dashboard,
    prefetched: HashMap<String, domain::records::Klip>,
    zone: Option<&str>,
    currency: &str,
) -> ApiResult<Response> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let mut instances = dashboard.klip_instances.clone();
    instances.sort_by(|a, b| (a.region.as_str(), a.position).cmp(&(b.region.as_str(), b.position)));
    let missing: Vec<String> = instances
        .iter()
        .map(|i| i.klip_id.clone())
        .filter(|id| !prefetched.contains_key(id))
        .collect();
    let mut klips = prefetched;
    klips.extend(crate::dashboards::read_klips(state, &dashboard.meta.company_id, &missing).await?);
    let key = page_key(dashboard, &instances, &klips, zone, currency);
    let html = match state.caches.published_pages.get(&key) {
        Some(html) => html,
        None => {
            let html = std::sync::Arc::new(render_page(
                state, dashboard, &instances, &klips, zone, currency,
            )?);
            state.caches.published_pages.insert(key, html.clone());
            html
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html.as_ref().clone(),
    )
        .into_response())
}

/// What the page is rendered from (see `Caches::published_pages`).
fn page_key(
    dashboard: &Dashboard,
    instances: &[domain::records::KlipInstance],
    klips: &HashMap<String, domain::records::Klip>,
    zone: Option<&str>,
    currency: &str,
) -> String {
    use std::fmt::Write;
    let mut key = format!(
        "{}@{}|{}|{currency}",
        dashboard.meta.id,
        dashboard.meta.version,
        zone.unwrap_or("")
    );
    for instance in instances {
        let _ = write!(key, "|{}", instance.klip_id);
        if let Some(klip) = klips.get(&instance.klip_id) {
            let computed = klip
                .value
                .as_ref()
                .map(|v| v.computed_at.timestamp_micros());
            let _ = write!(key, "@{}:{computed:?}", klip.meta.version);
        }
    }
    key
}

/// The page's HTML: each widget's Klip with its analysis.
fn render_page(
    state: &AppState,
    dashboard: &Dashboard,
    instances: &[domain::records::KlipInstance],
    klips: &HashMap<String, domain::records::Klip>,
    zone: Option<&str>,
    currency: &str,
) -> ApiResult<Vec<u8>> {
    let computed: Vec<domain::document::Computed> = instances
        .iter()
        .filter_map(|i| klips.get(&i.klip_id))
        .filter_map(|klip| {
            klip.value.clone().map(|value| domain::document::Computed {
                klip: klip.clone(),
                value,
                previous_groups: Vec::new(),
                previous_year: None,
            })
        })
        .collect();
    let cover = domain::document::Cover {
        report_id: &dashboard.meta.id,
        title: &dashboard.meta.name,
        description: dashboard.meta.description.as_deref(),
        window: None,
    };
    let tz = domain::data::timezone(zone);
    let document =
        domain::document::build_with_currency(&cover, &computed, tz, currency, state.clock.now());
    // The HTML writer itself, not `render`: this function never writes PDF or XLSX, and
    // naming them here would link their writers into its package.
    Ok(domain::document::html(&document).into_bytes())
}
