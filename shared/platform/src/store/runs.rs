//! The repository of report runs. A run is generated exactly once: the worker claims it with
//! a conditional update that takes a lease (`queued`, or `running` with an expired lease →
//! `running`, `attempt + 1`), and its success is written only while it still holds that
//! lease. A running run is in the `gsi1` due index at its lease's end, so the scheduler's
//! tick finds a run whose worker died and claims it again (or fails it after the last
//! attempt): no run stays `running`. A queued run is in it 10 minutes after it was queued
//! (`jobs::UNDELIVERED_SECS`), so a run whose stream record never reached the worker is
//! done by the tick: no run stays `queued` either.
//!
//! Run ids sort by time (the moment asked for, or due), so a report's runs are its sort-key
//! range `RUN#<report>#` in time order: a page of them, newest first, is one `Query`
//! backwards with `Limit` ([`Runs::page`]), and its total a `Select=COUNT` of the range
//! ([`Runs::count`]). A run expires [`retention_secs`] after it was created, through the
//! table's `ttl` (the worker deletes its file when the stream delivers the removal), except
//! its report's latest succeeded run (the report's `kept_run`), which has no `ttl` until a
//! newer one succeeds ([`Runs::keep_latest`]). Reads treat an expired run as gone: the table
//! removes it within days, not at once.

use super::StoreError;
use super::{db_error, jobs, keys, n, s, t, Store, WriteError};
use crate::time::rfc3339;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use domain::records::Datasource;
use domain::reports::{JobKind, RefreshJob, Report, Run, RunSummary};
use domain::RunStatus;

#[derive(Clone, Copy)]
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

/// How long a run is kept: `RUN_RETENTION_DAYS` (default 90) days after it was created.
pub fn retention_secs() -> i64 {
    static DAYS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let days = *DAYS.get_or_init(|| {
        std::env::var("RUN_RETENTION_DAYS")
            .ok()
            .and_then(|d| d.trim().parse::<i64>().ok())
            .filter(|d| (1..=36_500).contains(d))
            .unwrap_or(90)
    });
    days * 24 * 3600
}

/// When a run created at `created` (Unix seconds) expires.
fn expires(created: i64) -> i64 {
    created.saturating_add(retention_secs())
}

/// The creation second a run id carries (its first 12 hex digits are milliseconds).
fn created_of(run_id: &str) -> Option<i64> {
    let millis = i64::from_str_radix(run_id.get(..12)?, 16).ok()?;
    Some(millis / 1000)
}

/// A page of a report's runs and how many items the database read for it.
#[derive(Debug)]
pub struct RunsPage {
    pub runs: Vec<Run>,
    /// Items the queries evaluated (DynamoDB's `ScannedCount`): the page's and what it
    /// skipped, never the report's whole history.
    pub read: usize,
}

/// The filter of the runs a list shows: not expired at `now`, and in `status` if given.
fn shown_filter(
    status: Option<RunStatus>,
    now: DateTime<Utc>,
) -> (String, Vec<(&'static str, AttributeValue)>) {
    let mut expression = "(attribute_not_exists(#ttl) OR #ttl > :now)".to_owned();
    let mut values = vec![(":now", n(now.timestamp()))];
    if let Some(status) = status {
        expression.push_str(" AND #status = :status");
        values.push((":status", s(status.as_str())));
    }
    (expression, values)
}

/// The item of a run; a running or queued one is in the due index (see [`jobs::due_at`]).
fn run_item(run: &Run) -> Result<super::Item, StoreError> {
    jobs::item(
        &keys::run(&run.company_id, &run.report_id, &run.id),
        run,
        jobs::due_at(&run.job),
        &format!("{}#{}", run.company_id, run.id),
    )
}

impl Runs<'_> {
    /// Deletes the run's item (its file is the caller's to delete first).
    pub async fn delete(&self, run: &Run) -> Result<(), StoreError> {
        self.0
            .delete(&keys::run(&run.company_id, &run.report_id, &run.id))
            .await
    }

    /// Writes a new queued run (which the stream then delivers to the worker); with an
    /// idempotency key's hash, claims the key for it in the same transaction.
    pub async fn queue(
        &self,
        run: &Run,
        idempotency: Option<(&str, i64)>,
    ) -> Result<(), WriteError<QueueRefused>> {
        let mut tx = self.0.transaction();
        let mut run = run.clone();
        run.job.ttl = Some(expires(run.job.date_created.timestamp()));
        let run = &run;
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
    ) -> Result<Option<String>, StoreError> {
        let claim: Option<IdempotencyClaim> =
            self.0.get(keys::idempotency(company, report, hash)).await?;
        Ok(claim.map(|c| c.run_id))
    }

    pub async fn get(
        &self,
        company: &str,
        report: &str,
        run: &str,
    ) -> Result<Option<Run>, StoreError> {
        self.0.get(keys::run(company, report, run)).await
    }

    /// The run as the API shows it: none once expired at `now` (see [`retention_secs`]).
    pub async fn shown(
        &self,
        company: &str,
        report: &str,
        run: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Run>, StoreError> {
        Ok(self
            .get(company, report, run)
            .await?
            .filter(|r| !r.expired(now)))
    }

    /// A consistent `Query` of a report's run range that keeps the runs not expired at `now`
    /// (and in `status`): what [`Self::page`] and [`Self::count`] both read.
    fn shown_query(
        &self,
        company: &str,
        report: &str,
        status: Option<RunStatus>,
        now: DateTime<Utc>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let store = self.0;
        let (filter, values) = shown_filter(status, now);
        let mut query = store
            .db
            .query()
            .table_name(&store.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .filter_expression(filter)
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":pk", s(keys::company_pk(company)))
            .expression_attribute_values(":prefix", s(keys::runs_of(report)))
            .consistent_read(true);
        if status.is_some() {
            query = query.expression_attribute_names("#status", "status");
        }
        for (name, value) in values {
            query = query.expression_attribute_values(name, value);
        }
        query
    }

    /// Runs `skip` to `skip + take` of a report, newest first, among the ones not expired at
    /// `now` (and in `status`): one `Query` backwards over the report's run range, reading
    /// as many items as the page and what it skips hold (more only when the filter leaves
    /// some out).
    pub async fn page(
        &self,
        company: &str,
        report: &str,
        status: Option<RunStatus>,
        now: DateTime<Utc>,
        skip: usize,
        take: usize,
    ) -> Result<RunsPage, StoreError> {
        let wanted = skip.saturating_add(take);
        let mut runs = Vec::new();
        let mut read = 0;
        let mut start = None;
        while runs.len() < wanted {
            let left = wanted - runs.len();
            // A status filter leaves items out after the read: read more at a time then.
            let limit = if status.is_some() {
                left.max(100)
            } else {
                left
            };
            let out = self
                .shown_query(company, report, status, now)
                .scan_index_forward(false)
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| db_error("Query", e))?;
            read += usize::try_from(out.scanned_count).unwrap_or(0);
            for item in out.items.unwrap_or_default() {
                runs.push(super::from_item::<Run>(item)?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(RunsPage {
            runs: runs.into_iter().skip(skip).take(take).collect(),
            read,
        })
    }

    /// How many runs of a report are not expired at `now` (and in `status`): a
    /// `Select=COUNT` query of its run range, which answers a number, not the items (it
    /// still reads them, a 1 MB page per call).
    pub async fn count(
        &self,
        company: &str,
        report: &str,
        status: Option<RunStatus>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        Store::count_matching(|| self.shown_query(company, report, status, now)).await
    }

    /// Makes `run` (just succeeded, written without a `ttl`) its report's kept run if it is
    /// the newest succeeded one: the run it replaces gets its `ttl` (its creation plus the
    /// retention), after the swap, so the kept run never has one. A run that is not the
    /// newest succeeded gets its own `ttl`.
    pub async fn keep_latest(&self, run: &Run) -> Result<(), StoreError> {
        let key = keys::asset(domain::asset::Kind::Report, &run.company_id, &run.report_id);
        for _ in 0..5 {
            let report: Option<domain::reports::Report> = self.0.get(&key).await?;
            let previous = match report {
                None => return self.expire(run).await,
                Some(report) => report.kept_run,
            };
            if previous.as_deref().is_some_and(|p| p >= run.id.as_str()) {
                // A newer run succeeded first: this one expires like any other.
                return self.expire(run).await;
            }
            let swapped = match &previous {
                Some(p) => {
                    self.0
                        .update_if(
                            &key,
                            "SET kept_run = :id",
                            "kept_run = :old",
                            &[],
                            vec![(":id", s(&run.id)), (":old", s(p))],
                        )
                        .await?
                }
                None => {
                    self.0
                        .update_if(
                            &key,
                            "SET kept_run = :id",
                            "attribute_exists(pk) AND attribute_not_exists(kept_run)",
                            &[],
                            vec![(":id", s(&run.id))],
                        )
                        .await?
                }
            };
            if swapped {
                if let Some(p) = previous {
                    let superseded = Run {
                        id: p,
                        ..run.clone()
                    };
                    self.expire(&superseded).await?;
                }
                return Ok(());
            }
        }
        Err(StoreError::Unavailable {
            message: "the report's kept run kept changing; retry".into(),
            source: None,
        })
    }

    /// Gives the run `run.id` of `run`'s report its `ttl` (its creation plus the retention),
    /// if it still exists.
    async fn expire(&self, run: &Run) -> Result<(), StoreError> {
        let created = created_of(&run.id).unwrap_or(run.job.date_created.timestamp());
        self.0
            .update_if(
                &keys::run(&run.company_id, &run.report_id, &run.id),
                "SET #ttl = :ttl",
                "attribute_exists(pk)",
                &[("#ttl", "ttl")],
                vec![(":ttl", n(expires(created)))],
            )
            .await
            .map(|_| ())
    }

    /// Every run of a report, newest first.
    pub async fn of_report(&self, company: &str, report: &str) -> Result<Vec<Run>, StoreError> {
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
    pub async fn progress(&self, run: &Run, progress: u8) -> Result<(), StoreError> {
        self.0
            .update_if(
                &keys::run(&run.company_id, &run.report_id, &run.id),
                "SET progress = :p",
                "#status = :running AND lease_until = :lease",
                &[("#status", "status")],
                vec![
                    (":p", n(progress)),
                    (":running", s(RunStatus::Running.as_str())),
                    (":lease", t(run.job.lease_until.unwrap_or_default())),
                ],
            )
            .await
            .map(|_| ())
    }

    /// Writes the run's end (`succeeded` or `failed`, with its file or error) if the lease
    /// `held` is still the run's: refused when another worker took it over.
    /// A succeeded run is written without a `ttl` (it may be the report's latest, which is
    /// kept): [`Self::keep_latest`] then decides.
    pub async fn finish(&self, run: &Run, held: DateTime<Utc>) -> Result<(), WriteError<()>> {
        self.finish_delivering(run, held, &[]).await
    }

    /// [`Self::finish`], creating the run's `deliveries` in the same transaction: a run
    /// ends with every delivery it makes, or with none (and another worker's finish, which
    /// is refused, makes none), so a run is delivered once per channel.
    pub async fn finish_delivering(
        &self,
        run: &Run,
        held: DateTime<Utc>,
        deliveries: &[domain::notify::Delivery],
    ) -> Result<(), WriteError<()>> {
        let created = deliveries
            .iter()
            .map(super::deliveries::delivery_item)
            .collect::<Result<Vec<_>, _>>()?;
        if run.job.status == RunStatus::Succeeded {
            let mut run = run.clone();
            run.job.ttl = None;
            return jobs::finish_with(self.0, run_item(&run)?, held, created).await;
        }
        jobs::finish_with(self.0, run_item(run)?, held, created).await
    }

    /// Remembers what a report's latest delivered run showed (its digest), for
    /// `only_if_changed` (without changing the report's version).
    pub async fn set_delivered_digest(
        &self,
        company: &str,
        report: &str,
        digest: &str,
    ) -> Result<(), StoreError> {
        self.0
            .update_if(
                &keys::asset(domain::asset::Kind::Report, company, report),
                "SET delivered_digest = :digest",
                "attribute_exists(pk)",
                &[],
                vec![(":digest", s(digest))],
            )
            .await
            .map(|_| ())
    }

    /// Ends the lease now, so that the next delivery of the run's record (or the tick) can
    /// claim it again after a transient failure.
    pub async fn release(
        &self,
        run: &Run,
        held: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
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
    ) -> Result<bool, StoreError> {
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
    ) -> Result<(), StoreError> {
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
    ) -> Result<bool, StoreError> {
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
    pub async fn queue_undelivered(&self, run: &Run) -> Result<(), StoreError> {
        let mut skipped = run.clone();
        skipped.job.status = RunStatus::Skipped;
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

    /// Everything due at or before `now` in the due index, decoded (see [`Due`]); eventually
    /// consistent, like every index read. An item that does not decode is logged and left
    /// out: it cannot stop the rest from being done.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Vec<Due>, StoreError> {
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
            for item in page.items.unwrap_or_default() {
                match Due::of(item) {
                    Ok(due) => out.push(due),
                    Err(error) => {
                        tracing::error!(%error, "an item of the due index does not decode; skipped")
                    }
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }
}

/// What the due index holds, by what is due.
#[derive(Debug)]
pub enum Due {
    /// A report run whose worker's lease ended, or still queued after
    /// [`UNDELIVERED_SECS`]: to claim and do.
    Run(Run),
    /// The same for a data source refresh job.
    Refresh(RefreshJob),
    /// A URL data source whose `refresh_interval` came due: to queue a refresh job for.
    SourceRefresh(Datasource),
    /// A report whose schedule's `next_run_at` came: to queue a run for.
    Schedule(Report),
    /// A delivery whose next attempt came, whose attempt's lease ended, or still queued
    /// after `deliveries::UNDELIVERED_SECS`: to attempt.
    Delivery(domain::notify::Delivery),
}

impl Due {
    /// The item as what it is due for.
    fn of(item: super::Item) -> Result<Due, StoreError> {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(s)) => s.clone(),
            _ => String::new(),
        };
        let (entity, sk) = (text("entity"), text("sk"));
        Ok(match JobKind::parse(&entity) {
            Some(JobKind::Run) => Due::Run(super::from_item(item)?),
            Some(JobKind::Refresh) => Due::Refresh(super::from_item(item)?),
            Some(JobKind::Delivery) => Due::Delivery(super::from_item(item)?),
            None if sk.starts_with(domain::asset::Kind::Datasource.prefix()) => {
                Due::SourceRefresh(super::from_item(item)?)
            }
            None => Due::Schedule(super::from_item(item)?),
        })
    }

    /// A job to do now (rather than one to queue).
    pub fn is_job(&self) -> bool {
        matches!(self, Due::Run(_) | Due::Refresh(_) | Due::Delivery(_))
    }
}
