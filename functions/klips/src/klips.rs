//! Klip handlers: parse → authorize (the route table) → one store call → envelope.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use domain::klip::{Display, Query};
use domain::records::{Annotation, Dashboard, Datasource, Klip};
use domain::KlipType;
use platform::assets::resource::{self, Edit, OnDelete};
use platform::assets::{self, check_common, check_if_match, find, ok_with_etag, view, Meta};
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{JsonBody, NoParams};
use platform::paging::{Listing, NoFilters};
use platform::{ApiError, ApiResult, AppState, Problems};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KlipBody {
    name: Option<String>,
    description: Option<String>,
    slug: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    datasource_id: Option<String>,
    query: Option<Query>,
    display: Option<Display>,
}

/// `GET|PUT {id}/schema`: the query and display spec (PUT sends all of it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaBody {
    #[serde(rename = "type")]
    kind: String,
    datasource_id: Option<String>,
    query: Query,
    #[serde(default)]
    display: Display,
}

fn schema_of(klip: &Klip) -> Value {
    json!({"type": klip.kind, "datasource_id": klip.datasource_id, "query": klip.query, "display": klip.display})
}

/// Checks a Klip's type, query and display; answers the type when one was given and valid.
fn check_schema(
    kind: Option<&str>,
    query: Option<&Query>,
    display: Option<&Display>,
    problems: &mut Problems,
) -> Option<KlipType> {
    let parsed = match kind.map(str::parse::<KlipType>) {
        Some(Ok(kind)) => Some(kind),
        Some(Err(names)) => {
            problems.add(
                "type",
                format!("must be one of {names}, not '{}'", kind.unwrap_or_default()),
            );
            None
        }
        None => None,
    };
    let default_display = Display::default();
    if let Some(query) = query {
        if let Err(found) = domain::klip::validate(query, display.unwrap_or(&default_display)) {
            for (field, message) in found {
                problems.add(field, message);
            }
        }
    }
    parsed
}

/// The data source a Klip names (id or slug, visible to the caller), as its id.
async fn datasource_id(state: &AppState, caller: &Caller, given: &str) -> ApiResult<String> {
    match find::<Datasource>(state, caller, given).await {
        Ok(ds) => Ok(ds.meta.id),
        Err(ApiError::NotFound(_)) => Err(ApiError::field(
            "datasource_id",
            format!("data source '{given}' does not exist"),
        )),
        Err(e) => Err(e),
    }
}

/// Computes and stores the Klip's value from its data source's rows.
pub async fn compute(state: &AppState, caller: &Caller, klip: &mut Klip) -> ApiResult<()> {
    let tz = domain::data::timezone(caller.company.timezone.as_deref());
    klip.value = Some(platform::assets::stored::recompute_klip(state, klip, tz).await?);
    Ok(())
}

/// The Klip list's filters.
#[derive(Deserialize, Debug)]
pub struct KlipFilters {
    datasource_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<domain::KlipType>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<KlipFilters>,
) -> ApiResult<Response> {
    // `datasource_id=` takes an id or a slug, like Klip bodies do; an unknown one matches none.
    let source = match list.filters.datasource_id.as_deref() {
        Some(given) => Some(match find::<Datasource>(&state, &caller, given).await {
            Ok(ds) => ds.meta.id,
            Err(ApiError::NotFound(_)) => given.to_owned(),
            Err(e) => return Err(e),
        }),
        None => None,
    };
    let kind = list.filters.kind;
    resource::list(&state, &caller, &list, "klips", |k: &Klip| {
        source
            .as_ref()
            .is_none_or(|d| k.datasource_id.as_ref() == Some(d))
            && kind.is_none_or(|t| k.kind == t)
    })
    .await
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<KlipBody>,
) -> ApiResult<Response> {
    let mut problems = check_common(
        body.name.as_deref(),
        body.description.as_deref(),
        body.slug.as_deref(),
        true,
    );
    if body.kind.is_none() {
        problems.add("type", "is required");
    }
    if body.query.is_none() {
        problems.add("query", "is required");
    }
    let kind = check_schema(
        body.kind.as_deref(),
        body.query.as_ref(),
        body.display.as_ref(),
        &mut problems,
    );
    let Some(kind) = kind.filter(|_| problems.is_empty()) else {
        return Err(ApiError::problems(problems));
    };
    let datasource = match &body.datasource_id {
        Some(given) => Some(datasource_id(&state, &caller, given).await?),
        None => None,
    };
    let klip = Klip {
        meta: Meta::new(
            caller.company_id(),
            caller.user_id(),
            body.name.unwrap_or_default().trim().to_owned(),
            body.description,
            body.slug,
        ),
        kind,
        datasource_id: datasource,
        query: body.query.unwrap_or_default(),
        display: body.display.unwrap_or_default(),
        value: None,
        annotations: Vec::new(),
    };
    let mut klip = assets::create(&state, klip).await?;
    compute(&state, &caller, &mut klip).await?;
    Ok(envelope::created(
        &envelope::location("klips", &klip.meta.id),
        view(&klip)?,
    ))
}

/// `PUT /klips/{id}` (`resource::update`): a partial update; a Klip whose query, display or
/// data source changed is computed again.
impl Edit<Klip> for KlipBody {
    async fn apply(self, state: &AppState, caller: &Caller, klip: &mut Klip) -> ApiResult<()> {
        let body = self;
        let mut problems = check_common(
            body.name.as_deref(),
            body.description.as_deref(),
            body.slug.as_deref(),
            false,
        );
        let display = body.display.clone().unwrap_or_else(|| klip.display.clone());
        let kind = check_schema(
            body.kind.as_deref(),
            Some(body.query.as_ref().unwrap_or(&klip.query)),
            Some(&display),
            &mut problems,
        );
        problems.check()?;
        klip.meta.apply(body.name, body.description, body.slug);
        if let Some(v) = kind {
            klip.kind = v;
        }
        if let Some(given) = body.datasource_id {
            klip.datasource_id = Some(datasource_id(state, caller, &given).await?);
        }
        if let Some(q) = body.query {
            klip.query = q;
        }
        klip.display = display;
        Ok(())
    }

    async fn answer(
        state: &AppState,
        caller: &Caller,
        old: &Klip,
        saved: Klip,
    ) -> ApiResult<Value> {
        let mut klip = saved;
        let recompute = klip.query != old.query
            || klip.display != old.display
            || klip.datasource_id != old.datasource_id;
        if recompute {
            compute(state, caller, &mut klip).await?;
        }
        view(&klip)
    }
}

/// Deletes the Klip and removes its instances from every dashboard.
/// A deleted Klip leaves every dashboard that showed it.
pub struct OffDashboards;

impl OnDelete<Klip> for OffDashboards {
    async fn after_delete(state: &AppState, klip: &Klip) -> ApiResult<()> {
        let dashboards: Vec<Dashboard> = assets::all_of(state, &klip.meta.company_id).await?;
        for old in dashboards
            .into_iter()
            .filter(|d| d.klip_instances.iter().any(|i| i.klip_id == klip.meta.id))
        {
            let mut new = old.clone();
            new.klip_instances.retain(|i| i.klip_id != klip.meta.id);
            // A concurrent edit of that dashboard wins; try once more from a fresh read.
            if let Err(ApiError::PreconditionFailed(_)) = assets::save(state, &old, new).await {
                if let Some(fresh) = state
                    .store
                    .assets()
                    .get::<Dashboard>(&old.meta.company_id, &old.meta.id)
                    .await?
                {
                    let mut again = fresh.clone();
                    again.klip_instances.retain(|i| i.klip_id != klip.meta.id);
                    assets::save(state, &fresh, again).await?;
                }
            }
        }
        Ok(())
    }
}

pub async fn schema(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let klip: Klip = find(&state, &caller, &id).await?;
    Ok(ok_with_etag(&headers, klip.meta.version, schema_of(&klip)))
}

pub async fn put_schema(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SchemaBody>,
) -> ApiResult<Response> {
    let old: Klip = find(&state, &caller, &id).await?;
    check_if_match(&headers, &old.meta)?;
    let mut problems = Problems::new();
    let kind = check_schema(
        Some(&body.kind),
        Some(&body.query),
        Some(&body.display),
        &mut problems,
    );
    let Some(kind) = kind.filter(|_| problems.is_empty()) else {
        return Err(ApiError::problems(problems));
    };
    let mut klip = old.clone();
    klip.kind = kind;
    klip.datasource_id = match body.datasource_id {
        Some(given) => Some(datasource_id(&state, &caller, &given).await?),
        None => None,
    };
    klip.query = body.query;
    klip.display = body.display;
    let mut klip = assets::save(&state, &old, klip).await?;
    compute(&state, &caller, &mut klip).await?;
    Ok(envelope::ok(schema_of(&klip)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotationBody {
    date: Option<String>,
    text: Option<String>,
}

fn check_annotation(body: &AnnotationBody, creating: bool) -> ApiResult<()> {
    let mut problems = Problems::new();
    match body.date.as_deref() {
        None if creating => problems.add("date", "is required"),
        Some(d)
            if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err()
                && chrono::DateTime::parse_from_rfc3339(d).is_err() =>
        {
            problems.add("date", "must be YYYY-MM-DD or RFC 3339")
        }
        _ => {}
    }
    match body.text.as_deref().map(str::trim) {
        None if creating => problems.add("text", "is required"),
        Some(t) if t.is_empty() || t.chars().count() > 2000 => {
            problems.add("text", "must be 1 to 2000 characters")
        }
        _ => {}
    }
    problems.check().map_err(ApiError::from)
}

pub async fn annotations(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<NoFilters>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let list = list.plain()?;
    let klip: Klip = find(&state, &caller, &id).await?;
    let mut annotations = klip.annotations.clone();
    annotations.sort_by(|a, b| a.date.cmp(&b.date));
    let (page, total) = list.paging.slice(annotations);
    let meta = list.meta(page.len(), total);
    Ok(envelope::list(
        "annotations",
        page.into_iter().map(|a| json!(a)).collect(),
        meta,
    ))
}

fn find_annotation<'a>(klip: &'a Klip, annotation_id: &str) -> ApiResult<&'a Annotation> {
    klip.annotations
        .iter()
        .find(|a| a.id == annotation_id)
        .ok_or_else(|| ApiError::not_found("annotation", annotation_id))
}

pub async fn annotation(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path((id, annotation_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let klip: Klip = find(&state, &caller, &id).await?;
    Ok(envelope::ok(find_annotation(&klip, &annotation_id)?))
}

pub const MAX_ANNOTATIONS: usize = 500;

pub async fn add_annotation(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AnnotationBody>,
) -> ApiResult<Response> {
    check_annotation(&body, true)?;
    let old: Klip = find(&state, &caller, &id).await?;
    if old.annotations.len() >= MAX_ANNOTATIONS {
        return Err(ApiError::Conflict(format!(
            "a Klip holds at most {MAX_ANNOTATIONS} annotations"
        )));
    }
    let note = Annotation {
        id: domain::ids::new_id(),
        date: body.date.unwrap_or_default(),
        text: body.text.unwrap_or_default().trim().to_owned(),
        created_by: caller.user_id().to_owned(),
        date_created: state.clock.now(),
    };
    let mut klip = old.clone();
    klip.annotations.push(note.clone());
    let klip = assets::save(&state, &old, klip).await?;
    let location = format!(
        "{}/annotations/{}",
        envelope::location("klips", &klip.meta.id),
        note.id
    );
    Ok(envelope::created(&location, note))
}

pub async fn update_annotation(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path((id, annotation_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<AnnotationBody>,
) -> ApiResult<Response> {
    check_annotation(&body, false)?;
    let old: Klip = find(&state, &caller, &id).await?;
    find_annotation(&old, &annotation_id)?;
    let mut klip = old.clone();
    let mut updated = None;
    for note in klip
        .annotations
        .iter_mut()
        .filter(|a| a.id == annotation_id)
    {
        if let Some(d) = &body.date {
            note.date = d.clone();
        }
        if let Some(t) = &body.text {
            note.text = t.trim().to_owned();
        }
        updated = Some(note.clone());
    }
    assets::save(&state, &old, klip).await?;
    Ok(envelope::ok(updated))
}

pub async fn delete_annotation(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path((id, annotation_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let old: Klip = find(&state, &caller, &id).await?;
    find_annotation(&old, &annotation_id)?;
    let mut klip = old.clone();
    klip.annotations.retain(|a| a.id != annotation_id);
    assets::save(&state, &old, klip).await?;
    Ok(envelope::deleted())
}

/// Recomputes the value from the data source's current rows.
pub async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut klip: Klip = find(&state, &caller, &id).await?;
    compute(&state, &caller, &mut klip).await?;
    Ok(envelope::ok(view(&klip)?))
}
