//! The scheduler's tick (every minute):
//! 1. read what is due in the `gsi1` due index: scheduled reports whose `next_run_at` has
//!    come, running jobs whose lease ended, and jobs still queued 10 minutes after they
//!    were queued (their stream record never reached the worker);
//! 2. a due report gets a run for its due time, with an id derived from (report, due time)
//!    and written only if absent, so overlapping ticks queue it once; the stream then
//!    delivers it like any run. After an outage only the latest missed time runs (if it is
//!    within [`GRACE_SECS`]); the earlier ones are recorded `skipped`. Then `next_run_at`
//!    moves on, conditionally on still being the time this tick handled;
//! 3. a URL data source whose `refresh_interval` came due gets a refresh job the same way;
//! 4. a job whose worker died, or that no worker got, is claimed and done here (or failed
//!    after its last attempt), one after another: once less than [`crate::stream::RESERVE`]
//!    of the invocation is left, the jobs not started stay due for the next tick;
//! 5. a delivery whose next attempt came (or whose attempt's worker died, or that the
//!    stream never brought) gets its attempt ([`crate::deliver`]);
//! 6. one step of the sweep of orphan data files (`platform::assets::stored::sweep`): files
//!    an interrupted write stored but never committed are deleted after an hour.

use crate::error::WorkError;
use crate::generate::{self, Outcome};
use chrono::{DateTime, Utc};
use domain::cron::Cron;
use domain::records::{Datasource, RefreshState};
use domain::reports::{run_id, RefreshJob, Report, Run};
use domain::{RunStatus, RunTrigger};
use platform::store::runs::{Due, QueueRefused};
use platform::store::WriteError;
use platform::time::rfc3339;
use platform::AppState;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::Instant;

/// A missed scheduled time older than this is recorded `skipped` instead of run.
pub const GRACE_SECS: i64 = 3600;
/// The most missed times one tick records as `skipped` for one report.
const MAX_SKIPPED: usize = 100;

/// What a tick did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Ticked {
    pub queued: usize,
    pub skipped: usize,
    pub taken_over: usize,
    /// Due jobs left for the next tick: too little of the invocation was left to start them.
    pub deferred: usize,
    /// Orphan data files deleted.
    pub swept: usize,
    /// Delivery attempts made (retries whose time came, and deliveries taken over).
    pub attempted: usize,
}

/// One tick (see the module documentation), within the invocation's time when `until` says
/// when it runs out.
pub async fn run(state: &AppState, until: Option<Instant>) -> Result<Ticked, WorkError> {
    let now = state.clock.now();
    let mut done = Ticked::default();
    let mut started = false;
    for due in state.store.runs().due(now).await? {
        if due.is_job() {
            // A job runs for seconds: the first always starts, later ones only with time left.
            let left = until.map(|until| until.saturating_duration_since(Instant::now()));
            if started && left.is_some_and(|left| left < crate::stream::RESERVE) {
                done.deferred += 1;
                continue;
            }
            started = true;
        }
        match due {
            Due::Run(run) => {
                let outcome = generate::run(state, &run.company_id, &run.report_id, &run.id).await;
                if outcome == Outcome::Done {
                    done.taken_over += 1;
                }
            }
            Due::Refresh(job) => {
                let outcome =
                    crate::refresh::run(state, &job.company_id, &job.datasource_id, &job.id).await;
                if outcome == Outcome::Done {
                    done.taken_over += 1;
                }
            }
            Due::Delivery(delivery) => {
                let outcome = crate::deliver::run(state, &delivery.company_id, &delivery.id).await;
                if outcome == Outcome::Done {
                    done.attempted += 1;
                }
            }
            Due::SourceRefresh(ds) => {
                if let Err(e) = refresh_due(state, ds, now, &mut done).await {
                    tracing::warn!(error = %e.chain(), "a due refresh could not be queued; the next tick retries");
                }
            }
            Due::Schedule(report) => {
                if let Err(e) = schedule(state, report, now, &mut done).await {
                    tracing::warn!(error = %e.chain(), "a due report could not be queued; the next tick retries");
                }
            }
        }
    }
    match platform::assets::stored::sweep(state, now).await {
        Ok(swept) => done.swept = swept.deleted,
        Err(e) => tracing::warn!(error = %e, "sweeping orphan data files; the next tick goes on"),
    }
    Ok(done)
}

/// A URL data source whose `refresh_interval` came due gets one refresh job per due time
/// (its id from the source and the time), and its next time moves on from now.
async fn refresh_due(
    state: &AppState,
    ds: Datasource,
    now: DateTime<Utc>,
    done: &mut Ticked,
) -> Result<(), WorkError> {
    let (Some(due), Some(interval)) = (ds.next_refresh_at, ds.refresh_interval) else {
        return Ok(());
    };
    let (company, id) = (&ds.meta.company_id, &ds.meta.id);
    if !ds.disabled {
        let mut job = RefreshJob::queued(
            scheduled_run_id(id, due),
            company,
            id,
            RunTrigger::Schedule,
            now,
        );
        job.job.due_at = Some(due);
        match state.store.refreshes().queue(&job).await {
            Ok(()) => {
                done.queued += 1;
                let queued = RefreshState {
                    status: RunStatus::Queued,
                    job_id: job.id.clone(),
                    trigger: RunTrigger::Schedule,
                    requested_at: job.job.date_created,
                    finished_at: None,
                    error: None,
                };
                state
                    .store
                    .refreshes()
                    .set_state(company, id, &queued)
                    .await?;
            }
            Err(WriteError::Refused(())) => {}
            Err(WriteError::Failed(e)) => return Err(e.into()),
        }
    }
    let next = now.max(due) + chrono::Duration::seconds(interval.max(60) as i64);
    state
        .store
        .refreshes()
        .advance(company, id, due, next)
        .await?;
    Ok(())
}

/// The id of the run of `report` due at `due`: the same for every tick.
fn scheduled_run_id(report: &str, due: DateTime<Utc>) -> String {
    let hash = hex::encode(Sha256::digest(format!("{report}@{}", rfc3339(due))));
    run_id(due.timestamp_millis(), &hash)
}

async fn schedule(
    state: &AppState,
    report: Report,
    now: DateTime<Utc>,
    done: &mut Ticked,
) -> Result<(), WorkError> {
    let (Some(schedule), Some(due)) = (&report.schedule, report.next_run_at) else {
        return Ok(());
    };
    let tz = domain::data::timezone(schedule.timezone.as_deref());
    let cron = Cron::parse(&schedule.cron).map_err(WorkError::fault)?;
    // Every due time up to now: the latest runs, the others are skipped.
    let mut times = vec![due];
    while let Some(next) = cron.next_after(*times.last().unwrap_or(&due), tz) {
        if next > now || times.len() > MAX_SKIPPED {
            break;
        }
        times.push(next);
    }
    let latest = times.pop().unwrap_or(due);
    let runs = state.store.runs();
    for missed in times.iter().rev().take(MAX_SKIPPED) {
        let mut run = Run::queued(
            scheduled_run_id(&report.meta.id, *missed),
            &report,
            RunTrigger::Schedule,
            now,
            None,
        );
        run.job.status = RunStatus::Skipped;
        run.job.due_at = Some(*missed);
        run.job.finished_at = Some(now);
        run.job.error = Some("missed while the scheduler was not running; a later time ran".into());
        match runs.queue(&run, None).await {
            Ok(()) => done.skipped += 1,
            Err(WriteError::Refused(_)) => {}
            Err(WriteError::Failed(e)) => return Err(e.into()),
        }
    }
    let mut run = Run::queued(
        scheduled_run_id(&report.meta.id, latest),
        &report,
        RunTrigger::Schedule,
        now,
        None,
    );
    run.job.due_at = Some(latest);
    // A scheduled run is delivered to the report's channels.
    run.deliver = !report.deliver_to.is_empty();
    if (now - latest).num_seconds() > GRACE_SECS {
        run.job.status = RunStatus::Skipped;
        run.job.finished_at = Some(now);
        run.job.error =
            Some("missed by more than an hour while the scheduler was not running".into());
    }
    match runs.queue(&run, None).await {
        Ok(()) if run.job.status == RunStatus::Queued => done.queued += 1,
        Ok(()) => done.skipped += 1,
        Err(WriteError::Refused(QueueRefused::Exists | QueueRefused::KeyUsed)) => {}
        Err(WriteError::Failed(e)) => return Err(e.into()),
    }
    let next = cron.next_after(now.max(latest), tz);
    runs.advance_schedule(&report.meta.company_id, &report.meta.id, due, next)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_time_always_gets_the_same_run_id() {
        let due = platform::time::parse("2026-12-01T14:00:00Z").unwrap();
        let a = scheduled_run_id("0123456789abcdef0123456789abcdef", due);
        assert_eq!(a, scheduled_run_id("0123456789abcdef0123456789abcdef", due));
        assert_ne!(a, scheduled_run_id("fedcba9876543210fedcba9876543210", due));
        assert!(domain::ids::is_id(&a));
    }
}
