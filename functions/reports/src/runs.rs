//! Runs: `generate` queues one (and does nothing else: the worker generates it when the
//! table's stream delivers the new item), `runs` lists and shows them, `download` answers a
//! succeeded run's file.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::ids::new_id;
use domain::reports::{run_id, Report, Run, RunFile, RunWindow};
use domain::{RunStatus, RunTrigger};
use platform::assets::find;
use platform::assets::resource::OnDelete;
use platform::auth::Caller;
use platform::envelope;
use platform::extract::{NoParams, OptionalJsonBody, Query};
use platform::paging::{Listed, Listing, SortField};
use platform::store::runs::QueueRefused;
use platform::store::WriteError;
use platform::{ApiError, ApiResult, AppState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Files above this are downloaded through a short-lived presigned URL (a Lambda response
/// holds at most 6 MB).
pub const INLINE_DOWNLOAD_LIMIT: u64 = 4 * 1024 * 1024;
/// How long a presigned download URL works.
const PRESIGNED_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// A run as the API shows it.
#[derive(Serialize)]
pub struct RunView<'a> {
    id: &'a str,
    report_id: &'a str,
    status: RunStatus,
    trigger: RunTrigger,
    progress: u8,
    attempt: u32,
    #[serde(with = "domain::time::utc")]
    date_created: DateTime<Utc>,
    #[serde(with = "domain::time::utc::option")]
    started_at: Option<DateTime<Utc>>,
    #[serde(with = "domain::time::utc::option")]
    finished_at: Option<DateTime<Utc>>,
    #[serde(with = "domain::time::utc::option")]
    data_as_of: Option<DateTime<Utc>>,
    window: Option<&'a RunWindow>,
    timezone: Option<&'a str>,
    error: Option<&'a str>,
    file: Option<&'a RunFile>,
    #[serde(with = "domain::time::utc::option")]
    due_at: Option<DateTime<Utc>>,
    deliveries: Vec<RunDeliveryView<'a>>,
}

/// One of a run's deliveries, as the run shows it.
#[derive(Serialize)]
pub struct RunDeliveryView<'a> {
    channel_id: &'a str,
    delivery_id: &'a str,
    status: domain::DeliveryStatus,
}

impl<'a> RunView<'a> {
    pub fn of(run: &'a Run) -> Self {
        RunView {
            id: &run.id,
            report_id: &run.report_id,
            status: run.job.status,
            trigger: run.job.trigger,
            progress: run.progress,
            attempt: run.job.attempt,
            date_created: run.job.date_created,
            started_at: run.job.started_at,
            finished_at: run.job.finished_at,
            data_as_of: run.data_as_of,
            window: run.window.as_ref(),
            timezone: run.timezone.as_deref(),
            error: run.job.error.as_deref(),
            file: run.file.as_ref(),
            due_at: run.job.due_at,
            deliveries: run
                .deliveries
                .iter()
                .map(|(channel, d)| RunDeliveryView {
                    channel_id: channel,
                    delivery_id: &d.delivery_id,
                    status: d.status,
                })
                .collect(),
        }
    }
}

fn run_location(report: &Report, run: &Run) -> String {
    format!(
        "{}/runs/{}",
        envelope::location("reports", &report.meta.id),
        run.id
    )
}

/// The `Idempotency-Key` header's hash; 400 for a key that is not 1 to 255 visible ASCII
/// characters.
fn idempotency_hash(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
        })?;
    Ok(Some(hex::encode(Sha256::digest(key.as_bytes()))))
}

async fn answer_existing(state: &AppState, report: &Report, run_id: &str) -> ApiResult<Response> {
    let run = state
        .store
        .runs()
        .get(&report.meta.company_id, &report.meta.id, run_id)
        .await?
        .ok_or_else(|| ApiError::internal("an idempotency key names a missing run"))?;
    Ok(envelope::accepted(
        &run_location(report, &run),
        RunView::of(&run),
    ))
}

/// `POST /reports/{id}/generate`'s optional body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GenerateBody {
    /// Deliver the run to the report's `deliver_to` channels when it succeeds.
    #[serde(default)]
    deliver: bool,
}

/// `POST /reports/{id}/generate [{"deliver": true}]`: queues a run and answers 202 with
/// it; the same `Idempotency-Key` again answers the same run.
pub async fn generate(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    headers: HeaderMap,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<GenerateBody>,
) -> ApiResult<Response> {
    let deliver = body.unwrap_or_default().deliver;
    let report: Report = find(&state, &caller, &id).await?;
    let key = idempotency_hash(&headers)?;
    let runs = state.store.runs();
    let (company, report_id) = (&report.meta.company_id, &report.meta.id);
    if let Some(hash) = &key {
        if let Some(existing) = runs.by_idempotency_key(company, report_id, hash).await? {
            return answer_existing(&state, &report, &existing).await;
        }
    }
    let now = state.clock.now();
    let mut run = Run::queued(
        run_id(now.timestamp_millis(), &new_id()),
        &report,
        RunTrigger::Api,
        now,
        Some(caller.user_id().to_owned()),
    );
    run.deliver = deliver;
    match runs
        .queue(&run, key.as_deref().map(|h| (h, now.timestamp())))
        .await
    {
        Ok(()) => Ok(envelope::accepted(
            &run_location(&report, &run),
            RunView::of(&run),
        )),
        // The same key at the same moment from another request: answer its run.
        Err(WriteError::Refused(QueueRefused::KeyUsed)) => {
            let hash = key.unwrap_or_default();
            match runs.by_idempotency_key(company, report_id, &hash).await? {
                Some(existing) => answer_existing(&state, &report, &existing).await,
                None => Err(ApiError::Conflict(
                    "the Idempotency-Key is being used; retry".into(),
                )),
            }
        }
        Err(WriteError::Refused(QueueRefused::Exists)) => {
            Err(ApiError::Conflict("run id collision; retry".into()))
        }
        Err(WriteError::Failed(e)) => Err(e.into()),
    }
}

struct ListedRun(Run);

impl Listed for ListedRun {
    fn name(&self) -> &str {
        &self.0.id
    }
    fn date_created(&self) -> DateTime<Utc> {
        self.0.job.date_created
    }
    fn last_updated(&self) -> DateTime<Utc> {
        self.0
            .job
            .finished_at
            .or(self.0.job.started_at)
            .unwrap_or(self.0.job.date_created)
    }
}

/// The run list's filter.
#[derive(Deserialize, Debug)]
pub struct RunFilters {
    status: Option<String>,
}

/// `GET /reports/{id}/runs`: newest first unless `sort` says otherwise; `status=` filters;
/// expired runs (older than the retention) are not shown. Newest first without `q` or
/// `since`, the page is read from the table as it is ordered (run ids sort by time): only
/// the page and what it skips, and `meta.total` from a count query, run at the same time.
/// Other orders, `q` and `since` read the report's runs whole (the retention bounds them).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    list: Listing<RunFilters>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut list = list;
    let newest_first = list.params.get("sort").is_none();
    if newest_first {
        list.paging.sort = SortField::DateCreated;
        list.paging.descending = true;
    }
    let status = match list.filters.status.as_deref() {
        Some(s) => Some(s.parse::<RunStatus>().map_err(|names| {
            ApiError::BadRequest(format!("status must be one of {names}, not '{s}'"))
        })?),
        None => None,
    };
    let report: Report = find(&state, &caller, &id).await?;
    let now = state.clock.now();
    let (company, report_id) = (&report.meta.company_id, &report.meta.id);
    let runs = state.store.runs();
    let (page, total) = if newest_first && list.paging.q.is_none() && list.paging.since.is_none() {
        let (page, total) = tokio::try_join!(
            runs.page(
                company,
                report_id,
                status,
                now,
                list.paging.offset,
                list.paging.limit
            ),
            runs.count(company, report_id, status, now),
        )?;
        (page.runs.into_iter().map(ListedRun).collect(), total)
    } else {
        let all: Vec<ListedRun> = runs
            .of_report(company, report_id)
            .await?
            .into_iter()
            .filter(|r| !r.expired(now) && status.is_none_or(|s| r.job.status == s))
            .map(ListedRun)
            .collect();
        list.paging.apply(all)
    };
    let views = page
        .iter()
        .map(|r| serde_json::to_value(RunView::of(&r.0)))
        .collect::<Result<Vec<_>, _>>()?;
    let meta = list.meta(views.len(), total);
    Ok(envelope::list("runs", views, meta))
}

async fn find_run(state: &AppState, report: &Report, run_id: &str) -> ApiResult<Run> {
    if !domain::ids::is_id(run_id) {
        return Err(ApiError::not_found("run", run_id));
    }
    state
        .store
        .runs()
        .shown(
            &report.meta.company_id,
            &report.meta.id,
            run_id,
            state.clock.now(),
        )
        .await?
        .ok_or_else(|| ApiError::not_found("run", run_id))
}

/// `GET /reports/{id}/runs/{run_id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    _: NoParams,
    Path((id, run_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let report: Report = find(&state, &caller, &id).await?;
    let run = find_run(&state, &report, &run_id).await?;
    Ok(envelope::ok(RunView::of(&run)))
}

/// `GET /reports/{id}/download`'s parameter: which run's file (the latest succeeded one's
/// when absent).
#[derive(Deserialize, Debug)]
pub struct Download {
    run_id: Option<String>,
}

/// `GET /reports/{id}/download[?run_id=]`: the file of the latest (or the named) succeeded
/// run; 409 `not_ready` while there is none or the named one is still queued or running.
pub async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Query(Download { run_id }): Query<Download>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let report: Report = find(&state, &caller, &id).await?;
    let run = match run_id {
        Some(run_id) => named_succeeded_run(&state, &report, &run_id).await?,
        None => latest_succeeded_run(&state, &report).await?,
    };
    run_file(&state, &run).await
}

/// The named run when it succeeded; 409 `not_ready` while it is queued or running, 409 when
/// it failed or was skipped.
async fn named_succeeded_run(state: &AppState, report: &Report, run_id: &str) -> ApiResult<Run> {
    let run = find_run(state, report, run_id).await?;
    match run.job.status {
        RunStatus::Succeeded => Ok(run),
        RunStatus::Queued | RunStatus::Running => Err(ApiError::NotReady(format!(
            "run '{}' is {}; its file is not ready yet",
            run.id, run.job.status
        ))),
        RunStatus::Failed | RunStatus::Skipped => Err(ApiError::Conflict(format!(
            "run '{}' {} and has no file{}",
            run.id,
            run.job.status,
            run.job
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ))),
    }
}

/// The report's latest succeeded run; 409 `not_ready` while there is none.
async fn latest_succeeded_run(state: &AppState, report: &Report) -> ApiResult<Run> {
    // The latest succeeded run is the report's kept one (one read); a report whose
    // runs all succeeded before it had one is looked for among them.
    let runs = state.store.runs();
    let (company, report_id) = (&report.meta.company_id, &report.meta.id);
    let kept = match &report.kept_run {
        Some(kept) => runs.get(company, report_id, kept).await?,
        None => None,
    };
    let latest = match kept {
        Some(run) => Some(run),
        None => runs
            .of_report(company, report_id)
            .await?
            .into_iter()
            .find(|r| r.job.status == RunStatus::Succeeded),
    };
    latest.ok_or_else(|| {
        ApiError::NotReady(format!(
            "report '{}' has no succeeded run yet; generate it and wait for the run",
            report.meta.slug
        ))
    })
}

/// A succeeded run's file: a redirect to a presigned URL when it is too large to answer
/// inline, else the file itself as an attachment.
async fn run_file(state: &AppState, run: &Run) -> ApiResult<Response> {
    let (Some(file), Some(key)) = (&run.file, &run.file_key) else {
        return Err(ApiError::internal(format!(
            "succeeded run {} has no file",
            run.id
        )));
    };
    if file.size > INLINE_DOWNLOAD_LIMIT {
        return presigned_redirect(state, key, file).await;
    }
    let bytes = state
        .store
        .files()
        .get(key)
        .await?
        .ok_or_else(|| ApiError::internal(format!("the file of run {} is missing", run.id)))?;
    Ok(attachment(bytes, file))
}

/// A 302 to a presigned URL of the file.
async fn presigned_redirect(state: &AppState, key: &str, file: &RunFile) -> ApiResult<Response> {
    let url = state
        .store
        .files()
        .presigned_get(key, &file.name, PRESIGNED_FOR)
        .await?;
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The file's bytes as an attachment, with its content type.
fn attachment(bytes: Vec<u8>, file: &RunFile) -> Response {
    let disposition = format!("attachment; filename=\"{}\"", file.name);
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&file.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// A deleted report's runs and their files go with it.
pub struct RemoveRuns;

impl OnDelete<Report> for RemoveRuns {
    async fn after_delete(state: &AppState, report: &Report) -> ApiResult<()> {
        let runs = state
            .store
            .runs()
            .of_report(&report.meta.company_id, &report.meta.id)
            .await?;
        for run in runs {
            if let Some(key) = &run.file_key {
                state.store.files().delete(key).await?;
            }
            state.store.runs().delete(&run).await?;
        }
        Ok(())
    }
}
