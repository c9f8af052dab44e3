//! The repository of data source refresh jobs (see [`super::jobs`] for the lease) and the
//! refresh state and schedule shown on each data source.

use super::StoreError;
use super::{jobs, keys, s, t, Store, WriteError};
use crate::time::rfc3339;
use chrono::{DateTime, Utc};
use domain::asset::{Asset, Kind};
use domain::records::{Datasource, RefreshState};
use domain::reports::RefreshJob;

pub use super::jobs::NotClaimed;

pub struct Refreshes<'a>(&'a Store);

impl Store {
    pub fn refreshes(&self) -> Refreshes<'_> {
        Refreshes(self)
    }
}

fn key_of(job: &RefreshJob) -> super::Key {
    keys::refresh_job(&job.company_id, &job.datasource_id, &job.id)
}

fn due_id(job: &RefreshJob) -> String {
    format!("{}#{}", job.company_id, job.id)
}

fn job_item(job: &RefreshJob) -> Result<super::Item, StoreError> {
    let due = jobs::due_at(&job.job);
    jobs::item(&key_of(job), job, due, &due_id(job))
}

impl Refreshes<'_> {
    /// Writes a new queued job (the stream delivers it to the worker); refused when a job
    /// with its id exists (another tick queued this due time).
    pub async fn queue(&self, job: &RefreshJob) -> Result<(), WriteError<()>> {
        let mut tx = self.0.transaction();
        tx.create_item(job_item(job)?)?;
        tx.commit().await.map_err(|e| match e {
            WriteError::Refused(_) => WriteError::Refused(()),
            WriteError::Failed(e) => WriteError::Failed(e),
        })
    }

    pub async fn get(
        &self,
        company: &str,
        datasource: &str,
        job: &str,
    ) -> Result<Option<RefreshJob>, StoreError> {
        self.0
            .get(keys::refresh_job(company, datasource, job))
            .await
    }

    pub async fn claim(
        &self,
        company: &str,
        datasource: &str,
        job: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<RefreshJob, WriteError<NotClaimed>> {
        jobs::claim(
            self.0,
            &keys::refresh_job(company, datasource, job),
            &format!("{company}#{job}"),
            now,
            lease_until,
            max_attempts,
        )
        .await
    }

    pub async fn finish(
        &self,
        job: &RefreshJob,
        held: DateTime<Utc>,
    ) -> Result<(), WriteError<()>> {
        jobs::finish(self.0, job_item(job)?, held).await
    }

    pub async fn release(
        &self,
        job: &RefreshJob,
        held: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        jobs::release(self.0, &key_of(job), &due_id(job), held, now).await
    }

    pub async fn abandon(
        &self,
        job: &RefreshJob,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        jobs::abandon(self.0, &key_of(job), error, now).await
    }

    /// Shows a refresh's state on its data source (without changing its version).
    pub async fn set_state(
        &self,
        company: &str,
        datasource: &str,
        state: &RefreshState,
    ) -> Result<(), StoreError> {
        let value = super::to_attribute("refresh", state)?;
        self.0
            .update_if(
                &keys::asset(Datasource::KIND, company, datasource),
                "SET refresh = :state",
                "attribute_exists(pk)",
                &[],
                vec![(":state", value)],
            )
            .await
            .map(|_| ())
    }

    /// Moves a data source's next automatic refresh from `due` to `next`, if no other tick
    /// did it first; answers whether this one did.
    pub async fn advance(
        &self,
        company: &str,
        datasource: &str,
        due: DateTime<Utc>,
        next: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.0
            .update_if(
                &keys::asset(Kind::Datasource, company, datasource),
                "SET next_refresh_at = :next, gsi1sk = :due_at",
                "next_refresh_at = :due",
                &[],
                vec![
                    (":next", t(next)),
                    (":due", t(due)),
                    (
                        ":due_at",
                        s(format!("{}#{company}#{datasource}", rfc3339(next))),
                    ),
                ],
            )
            .await
    }
}
