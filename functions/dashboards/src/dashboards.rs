//! Dashboard handlers: CRUD, layout, Klip instances, share rights, favourites, refresh.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use domain::asset::{AssetView, MetaView};
use domain::records::{
    Dashboard, DashboardFields, Datasource, Klip, KlipFields, KlipInstance, Layout,
};
use platform::assets::ingest::refresh_source;
use platform::assets::resource::{self, Edit};
use platform::assets::{self, check_common, check_if_match, find, ok_with_etag, Asset, Meta};
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{Full, JsonBody, NoParams, Query};
use platform::paging::{Listing, NoFilters};
use platform::store::{OrApiError, StoreError};
use platform::{ApiError, ApiResult, AppState, Problems};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardBody {
    name: Option<String>,
    description: Option<String>,
    slug: Option<String>,
    layout: Option<Layout>,
}

async fn is_favorite(state: &AppState, caller: &Caller, dashboard: &str) -> ApiResult<bool> {
    Ok(state
        .store
        .favorites()
        .is_marked(caller.company_id(), caller.user_id(), dashboard)
        .await?)
}

/// The ids of the caller's favourite dashboards.
async fn favorites(state: &AppState, caller: &Caller) -> ApiResult<Vec<String>> {
    Ok(state
        .store
        .favorites()
        .of(caller.company_id(), caller.user_id())
        .await?)
}

/// The dashboard as the API shows it: its widgets carry their Klips' stored values
/// (`full` inlines each Klip).
/// The Klips this instance saw on the dashboard last time (none when it never did), so the
/// next read can fetch them together with the dashboard: one round trip instead of two
/// (`Caches::dashboard_klips`). Only which Klips is guessed: their contents always come from
/// the read itself, and a Klip the dashboard has now that the guess lacked is fetched after.
pub fn remembered_klips(state: &AppState, company: &str, dashboard: &str) -> Vec<String> {
    state
        .caches
        .dashboard_klips
        .get(&(company.to_owned(), dashboard.to_owned()))
        .unwrap_or_default()
}

fn remember_klips(state: &AppState, dashboard: &Dashboard) {
    state.caches.dashboard_klips.insert(
        (dashboard.meta.company_id.clone(), dashboard.meta.id.clone()),
        dashboard
            .klip_instances
            .iter()
            .map(|i| i.klip_id.clone())
            .collect(),
    );
}

/// Reads Klips of a company by id, in one consistent BatchGetItem.
pub async fn read_klips(
    state: &AppState,
    company: &str,
    ids: &[String],
) -> Result<HashMap<String, Klip>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(state
        .store
        .assets()
        .many::<Klip>(company, ids)
        .await?
        .into_iter()
        .map(|k| (k.meta.id.clone(), k))
        .collect())
}

/// A widget of a dashboard as its read shows it: the Klip instance (`id`, `klip_id`,
/// `region`, `position`) and, while its Klip exists, what the dashboard shows of it.
#[derive(Serialize)]
struct Widget<'a> {
    #[serde(flatten)]
    instance: &'a KlipInstance,
    #[serde(flatten)]
    shown: Option<Shown<'a>>,
}

/// What a dashboard shows of a widget's Klip: its name, type and stored value, and with
/// `full=true` the whole Klip when the caller may see it on its own.
#[derive(Serialize)]
struct Shown<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a domain::KlipType,
    value: &'a Option<domain::klip::KlipValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    klip: Option<AssetView<'a, KlipFields<'a>>>,
}

/// A dashboard as its reads and writes show it: its meta, layout, widgets and published
/// links, and whether it is one of the caller's favourites (when that was read).
#[derive(Serialize)]
struct Rendered<'a> {
    #[serde(flatten)]
    meta: MetaView<'a>,
    layout: &'a Layout,
    klip_instances: Vec<Widget<'a>>,
    published_links: Vec<crate::published::LinkView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_favorite: Option<bool>,
}

pub async fn render(
    state: &AppState,
    dashboard: &Dashboard,
    is_favorite: Option<bool>,
    full: Option<&Caller>,
) -> ApiResult<Value> {
    render_with(state, dashboard, is_favorite, full, HashMap::new()).await
}

/// [`render`] with Klips already read alongside the dashboard (`prefetched`, read by the
/// ids this instance remembered); the dashboard's other Klips are read now, and only the
/// dashboard's own Klips are shown.
pub async fn render_with(
    state: &AppState,
    dashboard: &Dashboard,
    is_favorite: Option<bool>,
    full: Option<&Caller>,
    prefetched: HashMap<String, Klip>,
) -> ApiResult<Value> {
    let missing: Vec<String> = dashboard
        .klip_instances
        .iter()
        .map(|i| i.klip_id.clone())
        .filter(|id| !prefetched.contains_key(id))
        .collect();
    let mut klips = prefetched;
    klips.extend(read_klips(state, &dashboard.meta.company_id, &missing).await?);
    remember_klips(state, dashboard);
    let mut instances = dashboard.klip_instances.clone();
    instances.sort_by(|a, b| (a.region.as_str(), a.position).cmp(&(b.region.as_str(), b.position)));
    let widgets = instances
        .iter()
        .map(|instance| {
            let shown = klips.get(&instance.klip_id).map(|klip| Shown {
                name: &klip.meta.name,
                kind: &klip.kind,
                value: &klip.value,
                // `full` inlines the Klips the caller may see on their own; the others
                // show only what the dashboard shows (name, type, value).
                klip: full
                    .is_some_and(|caller| assets::visible(caller, klip))
                    .then(|| klip.view()),
            });
            Widget { instance, shown }
        })
        .collect();
    Ok(serde_json::to_value(Rendered {
        meta: dashboard.meta.view(),
        layout: &dashboard.layout,
        klip_instances: widgets,
        published_links: dashboard
            .published_links
            .iter()
            .map(crate::published::link_view)
            .collect(),
        is_favorite,
    })?)
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<DashboardFilters>,
) -> ApiResult<Response> {
    let favorite_filter = list.filters.is_favorite;
    // The caller's favorites and the dashboards (the page, when the database cuts it) in
    // one round trip.
    let (favorite_ids, read) = tokio::try_join!(
        favorites(&state, &caller),
        assets::for_list::<Dashboard, _>(&state, &caller, &list)
    )?;
    let is_favorite = |d: &Dashboard| favorite_ids.contains(&d.meta.id);
    resource::page(
        &list,
        "dashboards",
        read,
        |d| favorite_filter.is_none_or(|f| is_favorite(d) == f),
        |d| {
            Ok(serde_json::to_value(Listed {
                dashboard: d.view(),
                is_favorite: is_favorite(d),
            })?)
        },
    )
}

/// The dashboard list's filter: the caller's favourites (or the others).
#[derive(Deserialize, Debug)]
pub struct DashboardFilters {
    is_favorite: Option<bool>,
}

/// A dashboard in the list: its view and whether it is one of the caller's favourites.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    dashboard: AssetView<'a, DashboardFields<'a>>,
    is_favorite: bool,
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Query(Full { full }): Query<Full>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let favorite_of = |dashboard_id: String| {
        let (state, caller) = (&state, &caller);
        async move {
            let marks = state.store.favorites();
            let marked = marks.is_marked(caller.company_id(), caller.user_id(), &dashboard_id);
            Ok::<_, ApiError>(marked.await?)
        }
    };
    // Addressed by id, the dashboard and the caller's favorite mark are read at once; by
    // slug, the mark needs the id first.
    // Addressed by id, the dashboard, the caller's favorite mark and the Klips this
    // instance saw on it last time are read at once.
    let (dashboard, favorite, prefetched): (Dashboard, bool, _) = if domain::ids::is_id(&id) {
        let guess = remembered_klips(&state, caller.company_id(), &id);
        let (dashboard, favorite, prefetched) = tokio::try_join!(
            find(&state, &caller, &id),
            favorite_of(id.clone()),
            read_klips(&state, caller.company_id(), &guess).api()
        )?;
        (dashboard, favorite, prefetched)
    } else {
        let dashboard: Dashboard = find(&state, &caller, &id).await?;
        let favorite = favorite_of(dashboard.meta.id.clone()).await?;
        (dashboard, favorite, HashMap::new())
    };
    let body = render_with(
        &state,
        &dashboard,
        Some(favorite),
        full.then_some(&caller),
        prefetched,
    )
    .await?;
    Ok(ok_with_etag(&headers, dashboard.meta.version, body))
}

fn check_layout(layout: &Layout, problems: &mut Problems) {
    if layout.kind.trim().is_empty() || layout.kind.len() > 50 {
        problems.add("layout.type", "must be 1 to 50 characters");
    }
    if !layout.state.is_object() {
        problems.add("layout.state", "must be an object");
    }
    // The dashboard is one database item (at most 400 KB, nested at most 32 levels).
    if depth(&layout.state) > MAX_LAYOUT_DEPTH {
        problems.add(
            "layout.state",
            format!("must be nested at most {MAX_LAYOUT_DEPTH} levels deep"),
        );
    }
    if has_empty_key(&layout.state) {
        problems.add(
            "layout.state",
            "object keys must not be empty, at any depth",
        );
    }
    if layout.state.to_string().len() > MAX_LAYOUT_BYTES {
        problems.add(
            "layout.state",
            format!("must be at most {} KB as JSON", MAX_LAYOUT_BYTES / 1024),
        );
    }
}

/// How deep a layout's state may nest (the database allows 32 levels in an item, and the
/// dashboard item holds the state a few levels down).
const MAX_LAYOUT_DEPTH: usize = 20;
/// How large a layout's state may be (the dashboard item has 400 KB in all).
const MAX_LAYOUT_BYTES: usize = 100 * 1024;

/// Whether an object anywhere in `value` has an empty key (the database stores the state as
/// a map, whose attribute names may not be empty).
fn has_empty_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| k.is_empty() || has_empty_key(v)),
        Value::Array(items) => items.iter().any(has_empty_key),
        _ => false,
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<DashboardBody>,
) -> ApiResult<Response> {
    let mut problems = check_common(
        body.name.as_deref(),
        body.description.as_deref(),
        body.slug.as_deref(),
        true,
    );
    if let Some(layout) = &body.layout {
        check_layout(layout, &mut problems);
    }
    problems.check()?;
    // `dashboard.combined.total`: how many dashboards the company may have (read with the
    // caller's company at admission), against the kept count (a company made before counts
    // were kept reads its dashboards).
    if let Some(limit) = caller.company.dashboard_limit {
        let company = caller.company_id();
        let count = if caller.company.assets_counted {
            state.store.assets().count::<Dashboard>(company).await? as i64
        } else {
            assets::all_of::<Dashboard>(&state, company).await?.len() as i64
        };
        if count >= limit {
            return Err(ApiError::Forbidden(format!(
                "dashboard.combined.total limit reached: this company may have {limit} dashboards"
            )));
        }
    }
    let dashboard = Dashboard {
        meta: Meta::new(
            caller.company_id(),
            caller.user_id(),
            body.name.unwrap_or_default().trim().to_owned(),
            body.description,
            body.slug,
        ),
        layout: body.layout.unwrap_or_default(),
        klip_instances: Vec::new(),
        favorites: Vec::new(),
        published_links: Vec::new(),
    };
    let dashboard = assets::create(&state, dashboard).await?;
    let body = render(&state, &dashboard, Some(false), None).await?;
    Ok(envelope::created(
        &envelope::location("dashboards", &dashboard.meta.id),
        body,
    ))
}

/// `PUT /dashboards/{id}` (`resource::update`): name, description, slug and layout; the
/// answer is the dashboard as its read shows it.
impl Edit<Dashboard> for DashboardBody {
    async fn apply(self, _: &AppState, _: &Caller, dashboard: &mut Dashboard) -> ApiResult<()> {
        let body = self;
        let mut problems = check_common(
            body.name.as_deref(),
            body.description.as_deref(),
            body.slug.as_deref(),
            false,
        );
        if let Some(layout) = &body.layout {
            check_layout(layout, &mut problems);
        }
        problems.check()?;
        dashboard.meta.apply(body.name, body.description, body.slug);
        if let Some(v) = body.layout {
            dashboard.layout = v;
        }
        Ok(())
    }

    async fn answer(
        state: &AppState,
        caller: &Caller,
        _: &Dashboard,
        dashboard: Dashboard,
    ) -> ApiResult<Value> {
        let favorite = is_favorite(state, caller, &dashboard.meta.id).await?;
        render(state, &dashboard, Some(favorite), None).await
    }
}

pub async fn layout(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let dashboard: Dashboard = find(&state, &caller, &id).await?;
    Ok(ok_with_etag(
        &headers,
        dashboard.meta.version,
        json!(dashboard.layout),
    ))
}

/// Klipfolio's rule: a layout PUT sends the whole layout (`type` and `state`).
pub async fn put_layout(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(layout): JsonBody<Layout>,
) -> ApiResult<Response> {
    let mut problems = Problems::new();
    check_layout(&layout, &mut problems);
    problems.check()?;
    let old: Dashboard = find(&state, &caller, &id).await?;
    check_if_match(&headers, &old.meta)?;
    let mut dashboard = old.clone();
    dashboard.layout = layout;
    let dashboard = assets::save(&state, &old, dashboard).await?;
    Ok(envelope::ok(json!(dashboard.layout)))
}

pub async fn instances(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<NoFilters>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let list = list.plain()?;
    let dashboard: Dashboard = find(&state, &caller, &id).await?;
    let rendered = render(&state, &dashboard, None, None).await?;
    let (page, total) = list.paging.slice(
        rendered["klip_instances"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    let meta = list.meta(page.len(), total);
    Ok(envelope::list("klip_instances", page, meta))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInstance {
    klip_id: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    position: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstancesBody {
    klips: Vec<NewInstance>,
}

pub const MAX_INSTANCES: usize = 100;

/// Klipfolio's `PUT {id}/klip-instances {"klips":[{klip_id, region, position}]}` adds them.
pub async fn add_instances(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<InstancesBody>,
) -> ApiResult<Response> {
    let old: Dashboard = find(&state, &caller, &id).await?;
    check_if_match(&headers, &old.meta)?;
    let mut dashboard = old.clone();
    let mut problems = Problems::new();
    for (i, new) in body.klips.iter().enumerate() {
        match find::<Klip>(&state, &caller, &new.klip_id).await {
            Ok(klip) => {
                let region = new.region.clone().unwrap_or_else(|| "main".into());
                if region.is_empty() || region.len() > 50 {
                    problems.add(format!("klips[{i}].region"), "must be 1 to 50 characters");
                }
                // Without a position: after the last one in its region.
                let position = new.position.unwrap_or_else(|| {
                    dashboard
                        .klip_instances
                        .iter()
                        .filter(|k| k.region == region)
                        .map(|k| k.position.saturating_add(1))
                        .max()
                        .unwrap_or(0)
                });
                dashboard.klip_instances.push(KlipInstance {
                    id: domain::ids::new_id(),
                    klip_id: klip.meta.id,
                    region,
                    position,
                });
            }
            Err(ApiError::NotFound(_)) => problems.add(
                format!("klips[{i}].klip_id"),
                format!("klip '{}' does not exist", new.klip_id),
            ),
            Err(e) => return Err(e),
        }
    }
    if dashboard.klip_instances.len() > MAX_INSTANCES {
        problems.add(
            "klips",
            format!("a dashboard holds at most {MAX_INSTANCES} Klips"),
        );
    }
    problems.check()?;
    let dashboard = assets::save(&state, &old, dashboard).await?;
    let rendered = render(&state, &dashboard, None, None).await?;
    Ok(envelope::ok(
        json!({"klip_instances": rendered["klip_instances"]}),
    ))
}

pub async fn remove_instance(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path((id, instance_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let old: Dashboard = find(&state, &caller, &id).await?;
    check_if_match(&headers, &old.meta)?;
    if !old.klip_instances.iter().any(|i| i.id == instance_id) {
        return Err(ApiError::not_found("klip instance", &instance_id));
    }
    let mut dashboard = old.clone();
    dashboard.klip_instances.retain(|i| i.id != instance_id);
    assets::save(&state, &old, dashboard).await?;
    Ok(envelope::deleted())
}

pub async fn favorite(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let dashboard: Dashboard = find(&state, &caller, &id).await?;
    state
        .store
        .favorites()
        .mark(caller.company_id(), caller.user_id(), &dashboard.meta.id)
        .await?;
    Ok(envelope::ok(
        json!({"id": dashboard.meta.id, "is_favorite": true}),
    ))
}

pub async fn unfavorite(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let dashboard: Dashboard = find(&state, &caller, &id).await?;
    state
        .store
        .favorites()
        .unmark(caller.company_id(), caller.user_id(), &dashboard.meta.id)
        .await?;
    Ok(envelope::deleted())
}

/// Refreshes the data sources the dashboard's Klips use (URL connectors fetch again) and
/// recomputes every Klip on it; answers the refreshed dashboard.
pub async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    Query(Full { full }): Query<Full>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let dashboard: Dashboard = find(&state, &caller, &id).await?;
    let company = caller.company_id();
    let klips: Vec<Klip> = assets::all_of::<Klip>(&state, company)
        .await?
        .into_iter()
        .filter(|k| {
            dashboard
                .klip_instances
                .iter()
                .any(|i| i.klip_id == k.meta.id)
        })
        .collect();
    let tz = domain::data::timezone(caller.company.timezone.as_deref());
    let mut sources: Vec<String> = klips
        .iter()
        .filter_map(|k| k.datasource_id.clone())
        .collect();
    sources.sort();
    sources.dedup();
    let mut refreshed = Vec::new();
    for source in &sources {
        let Some(ds) = state
            .store
            .assets()
            .get::<Datasource>(company, source)
            .await?
        else {
            continue;
        };
        if ds.disabled {
            refreshed.push(
                json!({"id": ds.meta.id, "status": "skipped", "error": "data source is disabled"}),
            );
            continue;
        }
        if ds.connector == domain::Connector::Url && !caller.can("datasource.refresh") {
            // Fetching endpoints is the data source's business: without the permission the
            // Klips are recomputed from the data already stored.
            refreshed.push(json!({"id": ds.meta.id, "status": "skipped", "error": "missing permission datasource.refresh"}));
            continue;
        }
        let (_, outcome) = refresh_source(&state, tz, ds.clone()).await?;
        let mut entry = outcome.to_json();
        entry["id"] = json!(ds.meta.id);
        refreshed.push(entry);
    }
    // Klips whose data source did not change (or has none) are recomputed too.
    for klip in &klips {
        platform::assets::stored::recompute_klip(&state, klip, tz).await?;
    }
    let dashboard: Dashboard = find(&state, &caller, &dashboard.meta.id).await?;
    let favorite = is_favorite(&state, &caller, &dashboard.meta.id).await?;
    let mut body = render(&state, &dashboard, Some(favorite), full.then_some(&caller)).await?;
    body["refreshed_datasources"] = Value::Array(refreshed);
    Ok(envelope::ok(body))
}
