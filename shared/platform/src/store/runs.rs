//! The repository of report runs. A run is generated exactly once: the worker claims it with
//! a conditional update that takes a lease (`queued`, or `running` with an expired lease →
//! `running`, `attempt + 1`), and its success is written only while it still holds that
//! lease. A running run is in the `gsi1` due index at its lease's end, so the scheduler's
//! tick finds a run whose worker died and claims it again (or fails it after the last
//! attempt): no run stays `running`. A queued run is in it 10 minutes after it was queued
//! (`jobs::UNDELIVERED_SECS`), so a run whose stream record never reached the worker is
//! done by the tick: no run stays `queued` either.

use super::{db_error, jobs, keys, n, s, t, Store, WriteError};
use crate::error::ApiError;
use crate::time::rfc3339;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use domain::reports::{Run, RunSummary};
use domain::RunStatus;

pub struct Runs<'a>(&'a Store);

impl Store {
    pub fn runs(&self) -> Runs<'_> {
        Runs(self)
    }
}

/// Why a run was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRefused {
    /// The idempotency key already queued a run.
    KeyUsed,
    /// A run with this id exists (another tick queued this due time).
    Exists,
}

pub use super::jobs::{NotClaimed, UNDELIVERED_SECS};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL_SECS: i64 = 24 * 3600;

#[derive(serde::Serialize, serde::Deserialize)]
struct IdempotencyClaim {
    run_id: String,
    ttl: i64,
}

/// The item of a run; a running or queued one is in the due index (see [`jobs::due_at`]).
fn run_item(run: &Run) -> Result<super::Item, ApiError> {
    jobs::item(
        &keys::run(&run.company_id, &run.report_id, &run.id),
        run,
        jobs::due_at(run.status, run.date_created, run.lease_until),
        &format!("{}#{}", run.company_id, run.id),
    )
}

impl Runs<'_> {
    /// Writes a new queued run (which the stream then delivers to the worker); with an
    /// idempotency key's hash, claims the key for it in the same transaction.
    pub async fn queue(
        &self,
        run: &Run,
        idempotency: Option<(&str, i64)>,
    ) -> Result<(), WriteError<QueueRefused>> {
        let mut tx = self.0.transaction();
        let created = tx.create_item(run_item(run)?)?;
        if let Some((hash, now)) = idempotency {
            tx.create(
                &keys::idempotency(&run.company_id, &run.report_id, hash),
                &IdempotencyClaim {
                    run_id: run.id.clone(),
                    ttl: now + IDEMPOTENCY_TTL_SECS,
                },
            )?;
        }
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(i) if i == created => WriteError::Refused(QueueRefused::Exists),
            WriteError::Refused(_) => WriteError::Refused(QueueRefused::KeyUsed),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    /// The run an idempotency key queued, if it is remembered.
    pub async fn by_idempotency_key(
        &self,
        company: &str,
        report: &str,
        hash: &str,
    ) -> Result<Option<String>, ApiError> {
        let claim: Option<IdempotencyClaim> =
            self.0.get(keys::idempotency(company, report, hash)).await?;
        Ok(claim.map(|c| c.run_id))
    }

    pub async fn get(
        &self,
        company: &str,
        report: &str,
        run: &str,
    ) -> Result<Option<Run>, ApiError> {
        self.0.get(keys::run(company, report, run)).await
    }

    /// Every run of a report, newest first.
    pub async fn of_report(&self, company: &str, report: &str) -> Result<Vec<Run>, ApiError> {
        let mut runs: Vec<Run> = self
            .0
            .query_prefix(&keys::company_pk(company), &keys::runs_of(report))
            .await?;
        runs.reverse();
        Ok(runs)
    }

    /// Claims a run for generation until `lease_until`: a queued run, or a running one
    /// whose lease ended before `now`, with fewer than `max_attempts` attempts. Answers the
    /// run as claimed.
    pub async fn claim(
        &self,
        company: &str,
        report: &str,
        run: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<Run, WriteError<NotClaimed>> {
        jobs::claim(
            self.0,
            &keys::run(company, report, run),
            &format!("{company}#{run}"),
            now,
            lease_until,
            max_attempts,
        )
        .await
    }

    /// Records progress while holding the lease (ignored when the lease was lost).
    pub async fn progress(&self, run: &Run, progress: u8) -> Result<(), ApiError> {
        self.0
            .update_if(
                &keys::run(&run.company_id, &run.report_id, &run.id),
                "SET progress = :p",
                "#status = :running AND lease_until = :lease",
                &[("#status", "status")],
                vec![
                    (":p", n(progress)),
                    (":running", s(RunStatus::Running.as_str())),
                    (":lease", t(run.lease_until.unwrap_or_default())),
                ],
            )
            .await
            .map(|_| ())
    }

    /// Writes the run's end (`succeeded` or `failed`, with its file or error) if the lease
    /// `held` is still the run's: refused when another worker took it over.
    pub async fn finish(&self, run: &Run, held: DateTime<Utc>) -> Result<(), WriteError<()>> {
        jobs::finish(self.0, run_item(run)?, held).await
    }

    /// Ends the lease now, so that the next delivery of the run's record (or the tick) can
    /// claim it again after a transient failure.
    pub async fn release(
        &self,
        run: &Run,
        held: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        jobs::release(
            self.0,
            &keys::run(&run.company_id, &run.report_id, &run.id),
            &format!("{}#{}", run.company_id, run.id),
            held,
            now,
        )
        .await
    }

    /// Fails a run nobody can finish any more (its last attempt's lease ended).
    pub async fn abandon(
        &self,
        run: &Run,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, ApiError> {
        jobs::abandon(
            self.0,
            &keys::run(&run.company_id, &run.report_id, &run.id),
            error,
            now,
        )
        .await
    }

    /// Shows a run's end on its report (without changing the report's version).
    pub async fn set_last_run(
        &self,
        company: &str,
        report: &str,
        summary: &RunSummary,
    ) -> Result<(), ApiError> {
        let value = super::to_attribute("summary", summary)?;
        self.0
            .update_if(
                &keys::asset(domain::asset::Kind::Report, company, report),
                "SET last_run = :run",
                "attribute_exists(pk)",
                &[],
                vec![(":run", value)],
            )
            .await
            .map(|_| ())
    }

    /// Moves a scheduled report's next due time from `due` to `next` (or takes it out of
    /// the due index), if no other tick did it first; answers whether this one did.
    pub async fn advance_schedule(
        &self,
        company: &str,
        report: &str,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, ApiError> {
        let key = keys::asset(domain::asset::Kind::Report, company, report);
        match next {
            Some(next) => {
                self.0
                    .update_if(
                        &key,
                        "SET next_run_at = :next, gsi1sk = :due_at",
                        "next_run_at = :due",
                        &[],
                        vec![
                            (":next", t(next)),
                            (":due", t(due)),
                            (
                                ":due_at",
                                s(format!("{}#{company}#{report}", rfc3339(next))),
                            ),
                        ],
                    )
                    .await
            }
            None => {
                self.0
                    .update_if(
                        &key,
                        "REMOVE next_run_at, gsi1pk, gsi1sk",
                        "next_run_at = :due",
                        &[],
                        vec![(":due", t(due))],
                    )
                    .await
            }
        }
    }

    /// Writes the queued `run` as a run whose stream record never reached the worker leaves
    /// it (tests): first `skipped`, an insert none of the stream's filters passes, then
    /// `queued`, a change none passes either.
    #[cfg(feature = "test-support")]
    pub async fn queue_undelivered(&self, run: &Run) -> Result<(), ApiError> {
        let skipped = Run {
            status: RunStatus::Skipped,
            ..run.clone()
        };
        for item in [run_item(&skipped)?, run_item(run)?] {
            self.0
                .db
                .put_item()
                .table_name(&self.0.table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(|e| db_error("PutItem", e))?;
        }
        Ok(())
    }

    /// Everything due at or before `now` in the due index (scheduled reports and runs whose
    /// lease ended), as stored items; eventually consistent, like every index read.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Vec<super::Item>, ApiError> {
        let store = self.0;
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = store
                .db
                .query()
                .table_name(&store.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :pk AND gsi1sk <= :now")
                .expression_attribute_values(":pk", s(keys::due_index()))
                .expression_attribute_values(
                    ":now",
                    AttributeValue::S(format!("{}#~", rfc3339(now))),
                )
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| db_error("Query", e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }
}
