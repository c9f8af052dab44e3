//! Generating one run, exactly once:
//! 1. **claim** it with a lease (a conditional update: `queued`, or `running` whose lease
//!    ended → `running`, `attempt + 1`); a run already done or held by a live lease is left
//!    alone, and one whose last attempt's lease ended is failed;
//! 2. **compute** each covered Klip's value for the run's window, from its data source's
//!    current rows, and the analysis ([`domain::document`]);
//! 3. **write** the file under the run's fixed key (a retry overwrites its own file, never
//!    makes a second);
//! 4. **finish**: `succeeded` with the file, written only while this worker still holds the
//!    lease; the report's `last_run` follows.
//!
//! A failure of our storage (the database or the bucket unavailable) is transient: the
//! lease is released and the caller retries (the stream's redelivery, or the tick). Any
//! other failure is permanent: the run ends `failed` with a sentence saying why.

use crate::error::WorkError;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use domain::document::{self, Cover};
use domain::klip::Range;
use domain::records::{Dashboard, Datasource, Klip};
use domain::reports::{Report, Run, RunFile};
use domain::RunStatus;
use platform::auth::records::Company;
use platform::store::runs::NotClaimed;
use platform::store::StoreError;
use platform::store::WriteError;
use platform::{ApiError, AppState};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// How long a claim holds a run: longer than the worker's timeout, so a live worker never
/// loses its lease, and short enough that a dead one's run is taken over soon.
pub const LEASE_SECS: i64 = 180;
/// Claims after which a run that still did not finish is failed.
pub const MAX_ATTEMPTS: u32 = 3;

/// How handling a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished (succeeded or failed), or nothing to do.
    Done,
    /// Our storage failed; try the run again later.
    Retry(String),
}

/// Why a generation stopped.
enum Stop {
    /// Ends the run `failed` with this sentence.
    Fail(String),
    /// Releases the lease for a later attempt.
    Retry(String),
}

impl From<WorkError> for Stop {
    fn from(error: WorkError) -> Self {
        if error.is_transient() {
            return Stop::Retry(error.to_string());
        }
        tracing::warn!(error = %error.chain(), "a report run failed");
        Stop::Fail(format!("the report could not be generated: {error}"))
    }
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        WorkError::from(error).into()
    }
}

impl From<ApiError> for Stop {
    fn from(error: ApiError) -> Self {
        WorkError::from(error).into()
    }
}

/// Claims and generates a run (see the module documentation).
pub async fn run(state: &AppState, company: &str, report: &str, run_id: &str) -> Outcome {
    let now = state.clock.now();
    let lease = now + Duration::seconds(LEASE_SECS);
    let claimed = state
        .store
        .runs()
        .claim(company, report, run_id, now, lease, MAX_ATTEMPTS)
        .await;
    let mut run = match claimed {
        Ok(run) => run,
        Err(WriteError::Refused(NotClaimed::Missing)) => return Outcome::Done,
        Err(WriteError::Refused(NotClaimed::Unavailable)) => {
            return abandon_if_dead(state, company, report, run_id, now).await
        }
        Err(WriteError::Failed(e)) => return Outcome::Retry(e.to_string()),
    };
    tracing::info!(run = %run.id, report, attempt = run.job.attempt, "generating a report run");
    match generate(state, &mut run, now).await {
        Ok(made) => {
            run.job.status = RunStatus::Succeeded;
            run.progress = 100;
            run.job.finished_at = Some(state.clock.now());
            finish(state, run, lease, made).await
        }
        Err(Stop::Fail(error)) => {
            tracing::warn!(run = %run.id, %error, "report run failed");
            run.job.status = RunStatus::Failed;
            run.job.error = Some(error);
            run.job.finished_at = Some(state.clock.now());
            run.file = None;
            run.file_key = None;
            finish(state, run, lease, Made::default()).await
        }
        Err(Stop::Retry(error)) => {
            tracing::warn!(run = %run.id, %error, "report run will be retried");
            let released = state
                .store
                .runs()
                .release(&run, lease, state.clock.now())
                .await;
            if let Err(e) = released {
                tracing::warn!(run = %run.id, error = %e, "could not release the lease");
            }
            Outcome::Retry(error)
        }
    }
}

/// A run nobody can claim: if it is running with an ended lease and no attempts left, it
/// is failed (so no run stays `running`); otherwise it is done or another worker has it.
/// Whether a job's worker died for the last time: still running, its lease over, and no
/// attempt left (then the job is failed rather than claimed again).
pub(crate) fn worker_died(
    status: RunStatus,
    lease_until: Option<DateTime<Utc>>,
    attempt: u32,
    now: DateTime<Utc>,
) -> bool {
    let lease_ended = lease_until.is_some_and(|l| l < domain::time::seconds(now));
    status == RunStatus::Running && lease_ended && attempt >= MAX_ATTEMPTS
}

async fn abandon_if_dead(
    state: &AppState,
    company: &str,
    report: &str,
    run_id: &str,
    now: DateTime<Utc>,
) -> Outcome {
    let run = match state.store.runs().get(company, report, run_id).await {
        Ok(Some(run)) => run,
        Ok(None) => return Outcome::Done,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    if worker_died(run.job.status, run.job.lease_until, run.job.attempt, now) {
        let error = format!(
            "the report could not be generated in {} attempts (the worker stopped before finishing)",
            run.job.attempt
        );
        match state.store.runs().abandon(&run, &error, now).await {
            Ok(true) => {
                let mut failed = run.clone();
                failed.job.status = RunStatus::Failed;
                failed.job.finished_at = Some(now);
                let _ = state
                    .store
                    .runs()
                    .set_last_run(company, report, &failed.summary())
                    .await;
            }
            Ok(false) => {}
            Err(e) => return Outcome::Retry(e.to_string()),
        }
    }
    Outcome::Done
}

/// What a generation made besides the file: the run's deliveries, and the digest to
/// remember as the last delivered one when they are sent.
#[derive(Default)]
struct Made {
    deliveries: Vec<domain::notify::Delivery>,
    delivered_digest: Option<String>,
}

async fn finish(state: &AppState, run: Run, lease: DateTime<Utc>, made: Made) -> Outcome {
    let finished = state
        .store
        .runs()
        .finish_delivering(&run, lease, &made.deliveries)
        .await;
    match finished {
        Ok(()) => {
            if let Some(digest) = &made.delivered_digest {
                if let Err(e) = state
                    .store
                    .runs()
                    .set_delivered_digest(&run.company_id, &run.report_id, digest)
                    .await
                {
                    tracing::warn!(run = %run.id, error = %e, "could not remember the delivered digest");
                }
            }
            // The newest succeeded run is kept past the retention; the one it replaces
            // expires. On failure the run stays without a `ttl` (kept, not lost).
            if run.job.status == RunStatus::Succeeded {
                if let Err(e) = state.store.runs().keep_latest(&run).await {
                    tracing::warn!(run = %run.id, error = %e, "could not record the kept run");
                }
            }
            let summary = run.summary();
            if let Err(e) = state
                .store
                .runs()
                .set_last_run(&run.company_id, &run.report_id, &summary)
                .await
            {
                tracing::warn!(run = %run.id, error = %e, "could not show the run on its report");
            }
            Outcome::Done
        }
        // Another worker took the run over after our lease ended: its outcome stands.
        Err(WriteError::Refused(())) => Outcome::Done,
        Err(WriteError::Failed(e)) => Outcome::Retry(e.to_string()),
    }
}

/// The Klips a report covers, in order (a dashboard's in the order of its instances).
async fn covered(state: &AppState, report: &Report) -> Result<Vec<String>, Stop> {
    let company = &report.meta.company_id;
    match &report.dashboard_id {
        Some(id) => {
            let dashboard: Dashboard = state
                .store
                .assets()
                .get::<Dashboard>(company, id)
                .await?
                .ok_or_else(|| Stop::Fail(format!("dashboard '{id}' no longer exists")))?;
            let mut ids: Vec<String> = Vec::new();
            for instance in &dashboard.klip_instances {
                if !ids.contains(&instance.klip_id) {
                    ids.push(instance.klip_id.clone());
                }
            }
            if ids.is_empty() {
                return Err(Stop::Fail(format!(
                    "dashboard '{}' has no Klips to report on",
                    dashboard.meta.slug
                )));
            }
            Ok(ids)
        }
        None => Ok(report.klip_ids.clone()),
    }
}

/// Steps 2 and 3: the file, written; `run` gets its window, zone, data time and file.
/// The moment a run reports as of: its due time (a scheduled run) or its creation, never
/// later than `now`.
fn as_of(run: &Run, now: DateTime<Utc>) -> DateTime<Utc> {
    run.job.due_at.unwrap_or(run.job.date_created).min(now)
}

async fn generate(state: &AppState, run: &mut Run, now: DateTime<Utc>) -> Result<Made, Stop> {
    // The file's "now": when the run was due (a schedule) or asked for, not when a worker got
    // to it, so a retried or redelivered run writes the same numbers and words.
    let now = as_of(run, now);
    let company_id = run.company_id.clone();
    let report: Report = state
        .store
        .assets()
        .get::<Report>(&company_id, &run.report_id)
        .await?
        .ok_or_else(|| Stop::Fail("the report was deleted".into()))?;
    let (tz, currency) = zone_and_currency(state, &company_id).await?;
    let window: Option<Range> = match &report.window {
        Some(w) => Some(
            Range::parse(w)
                .ok_or_else(|| Stop::Fail(format!("window '{w}' is not a range preset")))?,
        ),
        None => None,
    };
    let ids = covered(state, &report).await?;
    let read = read_klips(state, &company_id, &ids).await?;
    let klips = compute(&read, window, tz, now)?;
    if klips.is_empty() {
        return Err(Stop::Fail(
            "none of the report's Klips exists any more".into(),
        ));
    }
    let _ = state.store.runs().progress(run, 50).await;
    let cover = Cover {
        report_id: &report.meta.id,
        title: &report.meta.name,
        description: report.meta.description.as_deref(),
        window: report.window.as_deref(),
    };
    let doc = document::build_with_currency(&cover, &klips, tz, &currency, now);
    store_file(state, run, &report, &doc).await?;
    run.window = Some(doc.window.clone());
    run.timezone = Some(tz.name().to_owned());
    run.data_as_of = read.data_as_of;
    deliveries(state, run, &report, &doc).await
}

/// The company's time zone and currency (a `currency` Klip that names none is in the
/// company's).
async fn zone_and_currency(state: &AppState, company_id: &str) -> Result<(Tz, String), Stop> {
    let company: Option<Company> = state.store.companies().get(company_id).await?;
    let currency = company.as_ref().map_or_else(
        || domain::analysis::text::DEFAULT_CURRENCY.to_owned(),
        |c| document::company_currency(&c.properties),
    );
    let zone_name = company.and_then(|c| c.timezone);
    Ok((domain::data::timezone(zone_name.as_deref()), currency))
}

/// The report's Klips as read, each data source's stored rows (read once, however many
/// Klips use it; `None` when the source was deleted), and the latest refresh among them.
struct ReadKlips {
    klips: Vec<Klip>,
    data_of: HashMap<String, Option<platform::assets::stored::Loaded>>,
    data_as_of: Option<DateTime<Utc>>,
}

/// Every covered Klip in one BatchGetItem (a Klip deleted since is left out: the report
/// covers what is left), and the data of their sources.
async fn read_klips(state: &AppState, company_id: &str, ids: &[String]) -> Result<ReadKlips, Stop> {
    let mut read = ReadKlips {
        klips: Vec::new(),
        data_of: HashMap::new(),
        data_as_of: None,
    };
    for klip in state.store.assets().many::<Klip>(company_id, ids).await? {
        if let Some(ds_id) = &klip.datasource_id {
            if !read.data_of.contains_key(ds_id) {
                let data = match state
                    .store
                    .assets()
                    .get::<Datasource>(company_id, ds_id)
                    .await?
                {
                    Some(ds) => {
                        if ds.date_last_refresh > read.data_as_of {
                            read.data_as_of = ds.date_last_refresh;
                        }
                        Some(platform::assets::stored::load(state, &ds).await?)
                    }
                    None => None,
                };
                read.data_of.insert(ds_id.clone(), data);
            }
        }
        read.klips.push(klip);
    }
    Ok(read)
}

/// Each Klip computed by streaming its source's rows from the bytes read once, however many
/// Klips share them: no source is ever held as parsed rows.
fn compute(
    read: &ReadKlips,
    window: Option<Range>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Vec<document::Computed>, Stop> {
    let mut klips: Vec<document::Computed> = Vec::with_capacity(read.klips.len());
    for klip in &read.klips {
        let data = klip
            .datasource_id
            .as_ref()
            .and_then(|id| read.data_of.get(id))
            .and_then(Option::as_ref);
        let mut failed = None;
        klips.push(document::compute_streamed(klip, window, tz, now, |each| {
            if let Some(data) = data {
                failed = data.each_row(each).err();
            }
        }));
        if let Some(e) = failed {
            return Err(e.into());
        }
    }
    Ok(klips)
}

/// Renders the document in the report's format and stores it as the run's file (one fixed
/// key per run: a retried generation overwrites its own file).
async fn store_file(
    state: &AppState,
    run: &mut Run,
    report: &Report,
    doc: &document::Document,
) -> Result<(), Stop> {
    let bytes = document::render(doc, report.format)
        .ok_or_else(|| Stop::Fail(format!("the {} file could not be written", report.format)))?;
    let key = platform::store::files::report_key(
        &run.company_id,
        &report.meta.id,
        &run.id,
        report.format.as_str(),
    );
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let size = bytes.len() as u64;
    state
        .store
        .files()
        .put(&key, report.format.media_type(), bytes)
        .await?;
    run.file = Some(RunFile {
        content_type: report.format.media_type().to_owned(),
        size,
        sha256,
        name: run.file_name(&report.meta.slug, report.format),
    });
    run.file_key = Some(key);
    Ok(())
}

/// The run's deliveries, when it is to be delivered (see [`crate::report_delivery`]).
async fn deliveries(
    state: &AppState,
    run: &mut Run,
    report: &Report,
    doc: &document::Document,
) -> Result<Made, Stop> {
    if !run.deliver || report.deliver_to.is_empty() {
        return Ok(Made::default());
    }
    // The event says what the run is once this succeeds (it is written with it).
    run.job.status = domain::RunStatus::Succeeded;
    run.job.finished_at = Some(state.clock.now());
    run.progress = 100;
    let digest = crate::report_delivery::digest(doc);
    let suppressed = report.delivery.only_if_changed
        && report.delivered_digest.as_deref() == Some(digest.as_str());
    let now = state.clock.now();
    let deliveries =
        crate::report_delivery::build(state, run, report, doc, suppressed, now).await?;
    Ok(Made {
        deliveries,
        delivered_digest: (!suppressed).then_some(digest),
    })
}

#[cfg(test)]
mod as_of_tests {
    use super::as_of;
    use chrono::{DateTime, Utc};
    use domain::reports::{Report, Run};
    use domain::RunTrigger;

    #[test]
    fn a_run_is_as_of_when_it_was_due_or_asked_for_never_later_than_now() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let report: Report = serde_json::from_value(serde_json::json!({
            "meta": {"id": "r", "company_id": "c", "name": "R", "slug": "r", "version": 1,
                     "created_by": "u", "date_created": "2026-12-01T00:00:00Z",
                     "last_updated": "2026-12-01T00:00:00Z"},
            "format": "html"
        }))
        .unwrap();
        let run = |asked: &str, due: Option<&str>| {
            let mut run = Run::queued("x".into(), &report, RunTrigger::Api, t(asked), None);
            run.job.due_at = due.map(t);
            run
        };
        let now = t("2026-12-02T09:00:00Z");
        let asked = "2026-12-02T08:59:30Z";
        assert_eq!(as_of(&run(asked, None), now), t(asked));
        let due = "2026-12-02T08:00:00Z";
        assert_eq!(as_of(&run(asked, Some(due)), now), t(due));
        // A clock ahead of the worker's: now.
        assert_eq!(as_of(&run("2026-12-02T10:00:00Z", None), now), now);
    }
}
