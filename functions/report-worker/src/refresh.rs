//! Refreshing one data source in the background (a bulk refresh or its `refresh_interval`),
//! exactly once per job: claimed with a lease like a report run, the data source's
//! `refresh.status` following `queued` → `running` → `succeeded` | `failed`. A URL source
//! fetches its endpoint behind the egress guard; a push source recomputes its Klips.

use crate::error::WorkError;
use crate::generate::{Outcome, LEASE_SECS, MAX_ATTEMPTS};
use chrono::Duration;
use domain::records::{Datasource, RefreshState};
use domain::reports::RefreshJob;
use domain::RunStatus;
use platform::assets::ingest::{self, refresh_source};
use platform::auth::records::Company;
use platform::store::refreshes::NotClaimed;
use platform::store::WriteError;
use platform::{ApiError, AppState};

fn state_of(job: &RefreshJob) -> RefreshState {
    RefreshState {
        status: job.job.status,
        job_id: job.id.clone(),
        trigger: job.job.trigger,
        requested_at: job.job.date_created,
        finished_at: job.job.finished_at,
        error: job.job.error.clone(),
    }
}

/// Claims and does a refresh job.
pub async fn run(state: &AppState, company: &str, datasource: &str, job_id: &str) -> Outcome {
    let now = state.clock.now();
    let lease = now + Duration::seconds(LEASE_SECS);
    let refreshes = state.store.refreshes();
    let mut job = match refreshes
        .claim(company, datasource, job_id, now, lease, MAX_ATTEMPTS)
        .await
    {
        Ok(job) => job,
        Err(WriteError::Refused(NotClaimed::Missing)) => return Outcome::Done,
        Err(WriteError::Refused(NotClaimed::Unavailable)) => {
            return abandon_if_dead(state, company, datasource, job_id).await
        }
        Err(WriteError::Failed(e)) => return Outcome::Retry(e.to_string()),
    };
    let _ = refreshes
        .set_state(company, datasource, &state_of(&job))
        .await;
    let result = refresh(state, company, datasource).await;
    match result {
        Err(e) if e.is_transient() => {
            let _ = refreshes.release(&job, lease, state.clock.now()).await;
            return Outcome::Retry(e.to_string());
        }
        Ok(None) => job.job.status = RunStatus::Succeeded,
        Ok(Some(error)) | Err(WorkError::Refused(ApiError::Validation { message: error, .. })) => {
            job.job.status = RunStatus::Failed;
            job.job.error = Some(error);
        }
        Err(other) => {
            tracing::warn!(error = %other.chain(), datasource, "a refresh failed");
            job.job.status = RunStatus::Failed;
            job.job.error = Some(other.to_string());
        }
    }
    job.job.finished_at = Some(state.clock.now());
    job.job.ttl = Some(state.clock.now().timestamp() + 7 * 86_400);
    match refreshes.finish(&job, lease).await {
        Ok(()) => {
            let _ = refreshes
                .set_state(company, datasource, &state_of(&job))
                .await;
            Outcome::Done
        }
        Err(WriteError::Refused(())) => Outcome::Done,
        Err(WriteError::Failed(e)) => Outcome::Retry(e.to_string()),
    }
}

/// The refresh itself: `Ok(None)` when it succeeded, `Ok(Some(why))` when the endpoint
/// failed (the data source keeps its last good data).
async fn refresh(
    state: &AppState,
    company: &str,
    datasource: &str,
) -> Result<Option<String>, WorkError> {
    let ds: Datasource = state
        .store
        .assets()
        .get::<Datasource>(company, datasource)
        .await?
        .ok_or_else(|| ApiError::Conflict("the data source was deleted".into()))?;
    if ds.disabled {
        return Ok(Some("the data source is disabled".into()));
    }
    let owner: Option<Company> = state.store.companies().get(company).await?;
    let tz = domain::data::timezone(owner.and_then(|c| c.timezone).as_deref());
    match refresh_source(state, tz, ds).await? {
        (_, ingest::Outcome::Succeeded) => Ok(None),
        (_, ingest::Outcome::Failed(error)) => Ok(Some(error)),
    }
}

async fn abandon_if_dead(
    state: &AppState,
    company: &str,
    datasource: &str,
    job_id: &str,
) -> Outcome {
    let now = state.clock.now();
    let refreshes = state.store.refreshes();
    let job = match refreshes.get(company, datasource, job_id).await {
        Ok(Some(job)) => job,
        Ok(None) => return Outcome::Done,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    if crate::generate::worker_died(job.job.status, job.job.lease_until, job.job.attempt, now) {
        let error = "the refresh did not finish in its attempts (the worker stopped)";
        if let Ok(true) = refreshes.abandon(&job, error, now).await {
            let mut failed = job.clone();
            failed.job.status = RunStatus::Failed;
            failed.job.error = Some(error.into());
            failed.job.finished_at = Some(now);
            let _ = refreshes
                .set_state(company, datasource, &state_of(&failed))
                .await;
        }
    }
    Outcome::Done
}
