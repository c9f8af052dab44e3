//! Reports as assets: create, update and list, with the checks that keep a report
//! generatable (its dashboard or Klips exist and are visible, its window is a preset, its
//! schedule a valid cron in a real zone) and its next due time.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::cron::Cron;
use domain::klip::{Range, RANGE_NAMES};
use domain::notify::Channel;
use domain::records::{Dashboard, Klip};
use domain::reports::{DeliveryOptions, Report, Schedule, MAX_DELIVER_TO};
use domain::ReportFormat;
use platform::assets::resource::{self, Edit};
use platform::assets::{self, check_common, find, view, Meta};
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{nullable, JsonBody, NoParams};
use platform::paging::Listing;
use platform::{ApiError, ApiResult, AppState, FieldError, Problems};
use serde::Deserialize;

/// The most Klips one report may name.
const MAX_KLIPS: usize = 50;

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    cron: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    paused: bool,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    description: Option<Option<String>>,
    slug: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    dashboard_id: Option<Option<String>>,
    klip_ids: Option<Vec<String>>,
    format: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    window: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    schedule: Option<Option<ScheduleBody>>,
    deliver_to: Option<Vec<String>>,
    delivery: Option<DeliveryOptions>,
}

/// A valid window preset (the Klip engine's ranges).
fn check_window(window: &str) -> Result<(), FieldError> {
    Range::parse(window).map(|_| ()).ok_or_else(|| {
        FieldError::new(
            "window",
            format!("must be one of {RANGE_NAMES}, not '{window}'"),
        )
    })
}

/// The schedule as stored (its zone resolved) and its next due time after `now` (none
/// while paused).
fn resolve_schedule(
    body: &ScheduleBody,
    company_zone: Option<&str>,
    now: DateTime<Utc>,
    problems: &mut Problems,
) -> Option<(Schedule, Option<chrono::DateTime<chrono::Utc>>)> {
    let zone_name = body
        .timezone
        .clone()
        .or_else(|| company_zone.map(str::to_owned))
        .unwrap_or_else(|| "America/New_York".to_owned());
    let zone = match zone_name.parse::<chrono_tz::Tz>() {
        Ok(zone) => Some(zone),
        Err(_) => {
            problems.add(
                "schedule.timezone",
                format!("'{zone_name}' is not an IANA time zone (such as Europe/Paris)"),
            );
            None
        }
    };
    let cron = match Cron::parse(&body.cron) {
        Ok(cron) => Some(cron),
        Err(message) => {
            problems.add("schedule.cron", message);
            None
        }
    };
    let (cron, zone) = (cron?, zone?);
    let next = cron.next_after(now, zone);
    if next.is_none() {
        problems.add(
            "schedule.cron",
            "never comes due (no such date within five years)",
        );
        return None;
    }
    Some((
        Schedule {
            cron: body.cron.trim().to_owned(),
            timezone: Some(zone_name),
            paused: body.paused,
        },
        next.filter(|_| !body.paused),
    ))
}

/// The Klip ids a report names, each resolved (id or slug) among the Klips the caller sees.
async fn resolve_klips(
    state: &AppState,
    caller: &Caller,
    given: &[String],
    problems: &mut Problems,
) -> ApiResult<Vec<String>> {
    if given.is_empty() || given.len() > MAX_KLIPS {
        problems.add("klip_ids", format!("must name 1 to {MAX_KLIPS} Klips"));
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(given.len());
    for (i, id) in given.iter().enumerate() {
        match find::<Klip>(state, caller, id).await {
            Ok(klip) if !ids.contains(&klip.meta.id) => ids.push(klip.meta.id),
            Ok(_) => problems.add(
                format!("klip_ids[{i}]"),
                format!("Klip '{id}' is named twice"),
            ),
            Err(ApiError::NotFound(_)) => problems.add(
                format!("klip_ids[{i}]"),
                format!("Klip '{id}' does not exist"),
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(ids)
}

/// The channel ids a report delivers to, each resolved (id or slug) among the caller's.
async fn resolve_channels(
    state: &AppState,
    caller: &Caller,
    given: &[String],
    problems: &mut Problems,
) -> ApiResult<Vec<String>> {
    if given.len() > MAX_DELIVER_TO {
        problems.add(
            "deliver_to",
            format!("may name at most {MAX_DELIVER_TO} channels"),
        );
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(given.len());
    for (i, id) in given.iter().enumerate() {
        match find::<Channel>(state, caller, id).await {
            Ok(channel) if !ids.contains(&channel.meta.id) => ids.push(channel.meta.id),
            Ok(_) => problems.add(
                format!("deliver_to[{i}]"),
                format!("channel '{id}' is named twice"),
            ),
            Err(ApiError::NotFound(_)) => problems.add(
                format!("deliver_to[{i}]"),
                format!("channel '{id}' does not exist"),
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(ids)
}

async fn resolve_dashboard(
    state: &AppState,
    caller: &Caller,
    given: &str,
    problems: &mut Problems,
) -> ApiResult<Option<String>> {
    match find::<Dashboard>(state, caller, given).await {
        Ok(d) => Ok(Some(d.meta.id)),
        Err(ApiError::NotFound(_)) => {
            problems.add(
                "dashboard_id",
                format!("dashboard '{given}' does not exist"),
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `reports.scheduledRunsPerDay`: a schedule that makes `report` add more runs a day than
/// `before` (its count before this write) must keep the sum over the company's reports
/// within the budget; 409 `limit_reached` otherwise. A schedule that adds no more runs than
/// before is always saved (a lowered budget refuses only what would add runs).
async fn check_run_budget(
    state: &AppState,
    caller: &Caller,
    report: &Report,
    before: u64,
) -> ApiResult<()> {
    let Some(budget) = caller.company.scheduled_runs_budget else {
        return Ok(());
    };
    let adds = report.scheduled_runs_per_day();
    if adds <= before {
        return Ok(());
    }
    let others: u64 = assets::all_of::<Report>(state, &report.meta.company_id)
        .await?
        .iter()
        .filter(|r| r.meta.id != report.meta.id)
        .map(Report::scheduled_runs_per_day)
        .sum();
    if others.saturating_add(adds) > budget {
        return Err(ApiError::LimitReached(format!(
            "reports.scheduledRunsPerDay limit reached: this company's schedules may add up to \
             {budget} runs a day; its other reports' schedules add {others} and this one {adds}"
        )));
    }
    Ok(())
}

/// What the report covers: a dashboard or a list of Klips, never both.
async fn apply_cover(
    state: &AppState,
    caller: &Caller,
    report: &mut Report,
    body: &ReportBody,
    creating: bool,
    problems: &mut Problems,
) -> ApiResult<()> {
    match (&body.dashboard_id, &body.klip_ids) {
        (Some(Some(_)), Some(_)) => {
            problems.add("dashboard_id", "give dashboard_id or klip_ids, not both")
        }
        (Some(Some(d)), None) => {
            report.dashboard_id = resolve_dashboard(state, caller, d, problems).await?;
            report.klip_ids.clear();
        }
        (_, Some(k)) => {
            report.klip_ids = resolve_klips(state, caller, k, problems).await?;
            report.dashboard_id = None;
        }
        (Some(None), None) if report.klip_ids.is_empty() => {
            problems.add("dashboard_id", "a report covers a dashboard or klip_ids")
        }
        (Some(None), None) => report.dashboard_id = None,
        (None, None) if creating => {
            problems.add("dashboard_id", "is required: give dashboard_id or klip_ids")
        }
        (None, None) => {}
    }
    Ok(())
}

/// Applies a create or update body to `report`, collecting every problem.
async fn apply(
    state: &AppState,
    caller: &Caller,
    report: &mut Report,
    body: ReportBody,
    creating: bool,
) -> ApiResult<()> {
    let description = body.description.as_ref().and_then(|d| d.as_deref());
    let runs_before = report.scheduled_runs_per_day();
    let mut problems = check_common(
        body.name.as_deref(),
        description,
        body.slug.as_deref(),
        creating,
    );
    match body.format.as_deref().map(str::parse::<ReportFormat>) {
        Some(Ok(format)) => report.format = format,
        Some(Err(names)) => problems.add(
            "format",
            format!(
                "must be one of {names}, not '{}'",
                body.format.as_deref().unwrap_or_default()
            ),
        ),
        None => {}
    }
    if let Some(window) = &body.window {
        if let Some(w) = window {
            if let Err(e) = check_window(w) {
                problems.push(e);
            }
        }
        report.window = window.clone();
    }
    apply_cover(state, caller, report, &body, creating, &mut problems).await?;
    if let Some(schedule) = &body.schedule {
        match schedule {
            Some(s) => {
                let now = state.clock.now();
                if let Some((schedule, next)) =
                    resolve_schedule(s, caller.company.timezone.as_deref(), now, &mut problems)
                {
                    report.schedule = Some(schedule);
                    report.next_run_at = next;
                }
            }
            None => {
                report.schedule = None;
                report.next_run_at = None;
            }
        }
    }
    if let Some(given) = &body.deliver_to {
        report.deliver_to = resolve_channels(state, caller, given, &mut problems).await?;
    }
    if let Some(delivery) = body.delivery {
        report.delivery = delivery;
    }
    problems.check()?;
    if body.schedule.is_some() {
        check_run_budget(state, caller, report, runs_before).await?;
    }
    report
        .meta
        .apply(body.name, body.description.flatten(), body.slug);
    Ok(())
}

/// The report list's filters.
#[derive(Deserialize, Debug)]
pub struct ReportFilters {
    format: Option<ReportFormat>,
    dashboard_id: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<ReportFilters>,
) -> ApiResult<Response> {
    let format = list.filters.format;
    let dashboard = list.filters.dashboard_id.as_deref();
    resource::list(&state, &caller, &list, "reports", |r: &Report| {
        format.is_none_or(|f| r.format == f)
            && dashboard.is_none_or(|d| r.dashboard_id.as_deref() == Some(d))
    })
    .await
}

/// `POST /reports`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    JsonBody(body): JsonBody<ReportBody>,
) -> ApiResult<Response> {
    let mut report = Report {
        meta: Meta::new(
            caller.company_id(),
            caller.user_id(),
            String::new(),
            None,
            None,
        ),
        dashboard_id: None,
        klip_ids: Vec::new(),
        format: ReportFormat::Html,
        window: None,
        schedule: None,
        next_run_at: None,
        last_run: None,
        kept_run: None,
        deliver_to: Vec::new(),
        delivery: DeliveryOptions::default(),
        delivered_digest: None,
    };
    apply(&state, &caller, &mut report, body, true).await?;
    let report = assets::create(&state, report).await?;
    Ok(envelope::created(
        &envelope::location("reports", &report.meta.id),
        view(&report)?,
    ))
}

/// `PUT /reports/{id}` (`resource::update`): a partial update; `"schedule": null` removes
/// the schedule.
impl Edit<Report> for ReportBody {
    async fn apply(self, state: &AppState, caller: &Caller, report: &mut Report) -> ApiResult<()> {
        apply(state, caller, report, self, false).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_resolve_their_zone_and_next_time() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T15:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut problems = Problems::new();
        let body = ScheduleBody {
            cron: "0 9 * * mon-fri".into(),
            timezone: None,
            paused: false,
        };
        let (schedule, next) = resolve_schedule(&body, None, now, &mut problems).unwrap();
        assert_eq!(schedule.timezone.as_deref(), Some("America/New_York"));
        assert_eq!(
            next.map(platform::time::rfc3339).as_deref(),
            Some("2026-11-30T14:00:00Z")
        );
        let bad = ScheduleBody {
            cron: "0 9 * *".into(),
            timezone: Some("Mars/Olympus".into()),
            paused: false,
        };
        assert!(resolve_schedule(&bad, None, now, &mut problems).is_none());
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["schedule.timezone", "schedule.cron"]);
    }
}
