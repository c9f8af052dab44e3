//! Alerts as assets: create, update (a new Klip or condition starts again from `ok`;
//! `{"paused": false}` resumes), list, and the alert's events. Nobody may alert on a Klip
//! they cannot read; an alert's channels must exist in the company. The worker evaluates
//! alerts when their Klip's value changes (`report-worker/src/alerts.rs`).

use axum::extract::{Path, State};
use axum::response::Response;
use domain::alerts::{self, Alert, AlertState, Condition, Frequency};
use domain::notify::Channel;
use domain::records::Klip;
use platform::assets::resource::{self, Edit};
use platform::assets::{self, check_common, find, view, Meta};
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{nullable, JsonBody, NoParams};
use platform::paging::{Listed, Listing};
use platform::{ApiError, ApiResult, AppState, Problems};
use serde::Deserialize;

/// The most channels one alert notifies.
const MAX_CHANNELS: usize = 20;
/// The longest cooldown: a week.
const MAX_COOLDOWN_MINUTES: u32 = 7 * 24 * 60;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    slug: Option<String>,
    klip_id: Option<String>,
    condition: Option<Condition>,
    frequency: Option<Frequency>,
    cooldown_minutes: Option<u32>,
    notify_resolved: Option<bool>,
    channels: Option<Vec<String>>,
    paused: Option<bool>,
}

/// The alert list's filters.
#[derive(Deserialize, Debug)]
pub struct AlertFilters {
    klip_id: Option<String>,
    state: Option<AlertState>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<AlertFilters>,
) -> ApiResult<Response> {
    let (klip, wanted) = (list.filters.klip_id.clone(), list.filters.state);
    resource::list(&state, &caller, &list, "alerts", |a: &Alert| {
        klip.as_deref().is_none_or(|k| a.klip_id == k) && wanted.is_none_or(|s| a.state == s)
    })
    .await
}

/// The id of a channel of the company named by id or slug (whoever may manage alerts may
/// name the company's channels, without seeing them).
async fn channel_id(state: &AppState, company: &str, given: &str) -> ApiResult<Option<String>> {
    let id = if domain::ids::is_id(given) {
        given.to_owned()
    } else if domain::asset::check_slug(given).is_ok() {
        match state
            .store
            .assets()
            .id_of_slug::<Channel>(company, given)
            .await?
        {
            Some(id) => id,
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    let found: Option<Channel> = state.store.assets().get::<Channel>(company, &id).await?;
    Ok(found.map(|c| c.meta.id))
}

async fn resolve_channels(
    state: &AppState,
    caller: &Caller,
    given: &[String],
    problems: &mut Problems,
) -> ApiResult<Vec<String>> {
    if given.is_empty() || given.len() > MAX_CHANNELS {
        problems.add(
            "channels",
            format!("must name 1 to {MAX_CHANNELS} channels"),
        );
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(given.len());
    for (i, name) in given.iter().enumerate() {
        match channel_id(state, caller.company_id(), name).await? {
            Some(id) if !ids.contains(&id) => ids.push(id),
            Some(_) => problems.add(
                format!("channels[{i}]"),
                format!("channel '{name}' is named twice"),
            ),
            None => problems.add(
                format!("channels[{i}]"),
                format!("channel '{name}' does not exist"),
            ),
        }
    }
    Ok(ids)
}

/// Applies a create or update body to `alert`, collecting every problem.
async fn apply(
    state: &AppState,
    caller: &Caller,
    alert: &mut Alert,
    body: AlertBody,
    creating: bool,
) -> ApiResult<()> {
    let description = body.description.as_ref().and_then(|d| d.as_deref());
    let mut problems = check_common(
        body.name.as_deref(),
        description,
        body.slug.as_deref(),
        creating,
    );
    let mut restart = false;
    match &body.klip_id {
        Some(given) => match find::<Klip>(state, caller, given).await {
            Ok(klip) => {
                restart |= klip.meta.id != alert.klip_id;
                alert.klip_id = klip.meta.id;
            }
            Err(ApiError::NotFound(_)) => {
                problems.add("klip_id", format!("Klip '{given}' does not exist"))
            }
            Err(e) => return Err(e),
        },
        None if creating => problems.add("klip_id", "is required: the Klip to watch"),
        None => {}
    }
    match body.condition {
        Some(condition) => {
            for (field, message) in alerts::check_condition(&condition) {
                problems.add(field, message);
            }
            restart |= condition != alert.condition;
            alert.condition = condition;
        }
        None if creating => problems.add(
            "condition",
            "is required: {\"type\": \"above\", \"value\": 100}",
        ),
        None => {}
    }
    match &body.channels {
        Some(given) => {
            alert.channels = resolve_channels(state, caller, given, &mut problems).await?
        }
        None if creating => problems.add("channels", "is required: the channels to notify"),
        None => {}
    }
    if let Some(minutes) = body.cooldown_minutes {
        if minutes > MAX_COOLDOWN_MINUTES {
            problems.add(
                "cooldown_minutes",
                format!("must be at most {MAX_COOLDOWN_MINUTES} (a week)"),
            );
        }
        alert.cooldown_minutes = minutes;
    }
    problems.check()?;
    if let Some(frequency) = body.frequency {
        alert.frequency = frequency;
    }
    if let Some(notify) = body.notify_resolved {
        alert.notify_resolved = notify;
    }
    if let Some(paused) = body.paused {
        alert.paused = paused;
    }
    if restart && !creating {
        // Another Klip or condition: judged afresh from `ok` at the next change.
        alert.state = AlertState::Ok;
        alert.state_reason = None;
        alert.last_fired_at = None;
    }
    alert
        .meta
        .apply(body.name, body.description.flatten(), body.slug);
    Ok(())
}

/// `POST /alerts`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<AlertBody>,
) -> ApiResult<Response> {
    let mut alert = Alert {
        meta: Meta::new(
            caller.company_id(),
            caller.user_id(),
            String::new(),
            None,
            None,
        ),
        klip_id: String::new(),
        condition: Condition {
            kind: alerts::ConditionType::Above,
            value: None,
            direction: None,
        },
        frequency: Frequency::EveryTime,
        cooldown_minutes: alerts::DEFAULT_COOLDOWN_MINUTES,
        notify_resolved: true,
        channels: Vec::new(),
        paused: false,
        state: AlertState::Ok,
        state_reason: None,
        last_value: None,
        last_evaluated_at: None,
        last_fired_at: None,
        revision: 0,
    };
    apply(&state, &caller, &mut alert, body, true).await?;
    let alert = assets::create(&state, alert).await?;
    Ok(envelope::created(
        &envelope::location("alerts", &alert.meta.id),
        view(&alert)?,
    ))
}

/// `PUT /alerts/{id}` (`resource::update`): a partial update.
impl Edit<Alert> for AlertBody {
    async fn apply(self, state: &AppState, caller: &Caller, alert: &mut Alert) -> ApiResult<()> {
        apply(state, caller, alert, self, false).await
    }
}

struct ListedEvent(alerts::AlertEvent);

impl Listed for ListedEvent {
    fn name(&self) -> &str {
        &self.0.id
    }
    fn date_created(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.time
    }
    fn last_updated(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.time
    }
}

/// `GET /alerts/{id}/events`: newest first unless `sort` says otherwise.
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<NoFilters>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut list = list;
    if list.params.get("sort").is_none() {
        list.paging.sort = platform::paging::SortField::DateCreated;
        list.paging.descending = true;
    }
    let alert: Alert = find(&state, &caller, &id).await?;
    let all: Vec<ListedEvent> = state
        .store
        .alerts()
        .events(caller.company_id(), &alert.meta.id, state.clock.now())
        .await?
        .into_iter()
        .map(ListedEvent)
        .collect();
    let (page, total) = list.paging.apply(all);
    let views: Vec<serde_json::Value> = page.iter().map(|e| e.0.view()).collect();
    let meta = list.meta(views.len(), total);
    Ok(envelope::list("events", views, meta))
}

/// No filters of its own.
#[derive(Deserialize, Debug)]
pub struct NoFilters {}
