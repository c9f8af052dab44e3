//! Reports (API.md §6): CRUD, `generate` → a queued run that the report worker, reached
//! through the table's real stream, finishes by itself; runs; downloads in html, csv and
//! json; idempotency; schedules on the scheduler's tick.

use chrono::{Duration, Utc};
use chrono_tz::America::New_York;
use pulseboard_tests::{expect_error, json, TestApp};
use serde_json::{json, Value};

/// 30 days of daily signups ending today (New York), about 100 a day, with a spike of 400
/// ten days ago.
fn signups_csv() -> (String, String) {
    let today = Utc::now().with_timezone(&New_York).date_naive();
    let spike = (today - Duration::days(10)).to_string();
    let mut csv = String::from("day,signups\n");
    for back in (0..30).rev() {
        let day = today - Duration::days(back);
        let n = if back == 10 { 400 } else { 100 + back % 3 };
        csv.push_str(&format!("{day},{n}\n"));
    }
    (csv, spike)
}

async fn created(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, body) = json(app.post(path, body).await).await;
    assert_eq!(status, 201, "{path}: {body}");
    body["data"].clone()
}

struct Setup {
    dashboard: String,
    klip: String,
    spike: String,
}

/// A data source with the signups, a daily Klip over the last 30 days and a dashboard
/// showing it.
async fn setup(app: &TestApp) -> Setup {
    let ds = created(
        app,
        "/datasources",
        json!({"name": "Signups", "format": "csv"}),
    )
    .await;
    let (csv, spike) = signups_csv();
    let r = app
        .http
        .put(app.url(&format!("/datasources/{}/data", ds["id"].as_str().unwrap())))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let klip = created(app, "/klips", json!({"name": "Daily signups", "type": "line", "datasource_id": ds["id"],
        "query": {"value": "signups", "aggregate": "sum", "time_column": "day", "time_bucket": "day", "range": "last_30_days"}})).await;
    let dash = created(app, "/dashboards", json!({"name": "Growth"})).await;
    let (status, body) = json(
        app.call(
            "PUT",
            &format!(
                "/dashboards/{}/klip-instances",
                dash["id"].as_str().unwrap()
            ),
            app.key(),
            Some(json!({"klips": [{"klip_id": klip["id"], "region": "main", "position": 0}]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    Setup {
        dashboard: dash["id"].as_str().unwrap().to_owned(),
        klip: klip["id"].as_str().unwrap().to_owned(),
        spike,
    }
}

/// `POST {report}/generate`: asserts the 202 and answers the run.
async fn generate(app: &TestApp, report: &str) -> Value {
    let r = app
        .post(&format!("/reports/{report}/generate"), json!({}))
        .await;
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let (status, body) = json(r).await;
    assert_eq!(status, 202, "{body}");
    let run = body["data"].clone();
    assert_eq!(run["status"], "queued");
    assert_eq!(run["trigger"], "api");
    assert_eq!(
        location,
        format!(
            "/api/1.0/reports/{report}/runs/{}",
            run["id"].as_str().unwrap()
        )
    );
    run
}

/// Waits (up to 30 s) until the run is no longer queued or running; answers it.
async fn finished(app: &TestApp, report: &str, run: &str) -> Value {
    for _ in 0..150 {
        let (status, body) = json(app.get(&format!("/reports/{report}/runs/{run}")).await).await;
        assert_eq!(status, 200, "{body}");
        let status = body["data"]["status"].as_str().unwrap().to_owned();
        if status != "queued" && status != "running" {
            return body["data"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("run {run} did not finish within 30 seconds");
}

async fn download(app: &TestApp, report: &str) -> reqwest::Response {
    app.get(&format!("/reports/{report}/download")).await
}

#[tokio::test]
async fn a_generated_html_report_is_made_by_the_worker_and_names_the_planted_spike() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Growth weekly", "dashboard_id": s.dashboard, "format": "html"}),
    )
    .await;
    let id = report["id"].as_str().unwrap();
    let run = generate(&app, id).await;
    let done = finished(&app, id, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["attempt"], 1);
    assert_eq!(done["timezone"], "America/New_York");
    assert!(done["started_at"].is_string() && done["finished_at"].is_string());
    assert_eq!(done["file"]["content_type"], "text/html; charset=utf-8");
    let r = download(&app, id).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"growth-weekly-")
            && disposition.ends_with(".html\""),
        "{disposition}"
    );
    let html = r.text().await.unwrap();
    assert_eq!(html.len() as u64, done["file"]["size"].as_u64().unwrap());
    assert!(html.contains("<svg") && html.contains("Daily signups"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );
    assert!(
        html.contains(&s.spike),
        "the spike of {} is named: {html}",
        s.spike
    );
}

#[tokio::test]
async fn a_json_report_has_the_dashboards_numbers_and_the_anomaly_as_data() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Growth data", "klip_ids": [s.klip], "format": "json"}),
    )
    .await;
    let id = report["id"].as_str().unwrap();
    let run = generate(&app, id).await;
    let done = finished(&app, id, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let r = download(&app, id).await;
    assert_eq!(r.headers()["content-type"], "application/json");
    let (_, file) = json(r).await;
    let (_, dashboard) = json(app.get(&format!("/dashboards/{}", s.dashboard)).await).await;
    let shown = &dashboard["data"]["klip_instances"][0]["value"];
    let section = &file["sections"][0];
    assert_eq!(section["klip_id"], s.klip.as_str());
    assert_eq!(section["value"]["current"], shown["current"], "{file}");
    assert_eq!(section["value"]["series"], shown["series"]);
    let anomaly = section["insights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "anomaly")
        .unwrap_or_else(|| panic!("no anomaly in {section}"));
    assert_eq!(anomaly["values"]["date"], s.spike.as_str());
    assert_eq!(anomaly["values"]["actual"], 400.0);
    assert!(
        anomaly["method"].as_str().unwrap().contains("z"),
        "{anomaly}"
    );
    assert!(
        anomaly["text"].as_str().unwrap().contains("400"),
        "{anomaly}"
    );
}

#[tokio::test]
async fn a_csv_report_has_one_row_per_value_and_point() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Growth csv", "klip_ids": [s.klip], "format": "csv"}),
    )
    .await;
    let id = report["id"].as_str().unwrap();
    let run = generate(&app, id).await;
    assert_eq!(
        finished(&app, id, run["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    let r = download(&app, id).await;
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("klip_id,klip,measure,x,value"));
    let series: Vec<&str> = text.lines().filter(|l| l.contains(",series,")).collect();
    assert_eq!(series.len(), 30, "{text}");
    assert!(
        text.contains(&format!("{},Daily signups,series,{},400", s.klip, s.spike)),
        "{text}"
    );
}

#[tokio::test]
async fn a_file_over_the_inline_limit_downloads_through_a_presigned_url() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Growth csv", "klip_ids": [s.klip], "format": "csv"}),
    )
    .await;
    let id = report["id"].as_str().unwrap();
    let run = generate(&app, id).await;
    let run_id = run["id"].as_str().unwrap();
    assert_eq!(finished(&app, id, run_id).await["status"], "succeeded");
    let inline = download(&app, id).await.text().await.unwrap();
    // The run's file as a large one (a report over 4 MiB takes long to make): only its
    // recorded size decides how it is handed out.
    let key = platform::store::keys::run(&app.company.company_id, id, run_id);
    let mut stored: Value = app.state.store.get(&key).await.unwrap().unwrap();
    stored["file"]["size"] = json!(5_000_000);
    app.state.store.put(&key, &stored).await.unwrap();

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(app.url(&format!("/reports/{id}/download")))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    // The presigned URL serves the same file, without credentials.
    let fetched = reqwest::get(&location).await.unwrap();
    assert_eq!(fetched.status(), 200, "{location}");
    assert_eq!(fetched.text().await.unwrap(), inline);
}

#[tokio::test]
async fn the_same_idempotency_key_answers_the_same_run() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Once", "klip_ids": [s.klip], "format": "json"}),
    )
    .await;
    let id = report["id"].as_str().unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = app
            .http
            .post(app.url(&format!("/reports/{id}/generate")))
            .header("kf-api-key", app.key())
            .header("idempotency-key", "nightly-2026-12-02")
            .send()
            .await
            .unwrap();
        let (status, body) = json(r).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["data"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1]);
    let (_, runs) = json(app.get(&format!("/reports/{id}/runs")).await).await;
    assert_eq!(runs["meta"]["total"], 1, "{runs}");
}

#[tokio::test]
async fn runs_list_newest_first() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Many", "klip_ids": [s.klip], "format": "json"}),
    )
    .await;
    let id = report["id"].as_str().unwrap();
    let first = generate(&app, id).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = generate(&app, id).await;
    let (status, runs) = json(app.get(&format!("/reports/{id}/runs")).await).await;
    assert_eq!(status, 200, "{runs}");
    let listed: Vec<&str> = runs["data"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            second["id"].as_str().unwrap(),
            first["id"].as_str().unwrap()
        ]
    );
}

#[tokio::test]
async fn download_is_not_ready_until_a_run_succeeds() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Not yet", "klip_ids": [s.klip]}),
    )
    .await;
    assert_eq!(report["format"], "html", "html is the default");
    expect_error(
        download(&app, report["id"].as_str().unwrap()).await,
        409,
        "not_ready",
    )
    .await;
}

#[tokio::test]
async fn a_pdf_report_is_made_by_the_worker() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Paper", "klip_ids": [s.klip], "format": "pdf"}),
    )
    .await;
    let id = report["id"].as_str().unwrap();
    let run = generate(&app, id).await;
    let done = finished(&app, id, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let r = download(&app, id).await;
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.ends_with(".pdf\""), "{disposition}");
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    assert_eq!(bytes.len() as u64, done["file"]["size"].as_u64().unwrap());
}

#[tokio::test]
async fn a_generation_that_cannot_succeed_ends_failed_with_a_clear_error() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Orphan", "klip_ids": [s.klip], "format": "json"}),
    )
    .await;
    let id = report["id"].as_str().unwrap();
    // Its only Klip goes before the run.
    let r = app
        .call("DELETE", &format!("/klips/{}", s.klip), app.key(), None)
        .await;
    assert_eq!(r.status(), 200);
    let run = generate(&app, id).await;
    let done = finished(&app, id, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert!(done["error"].as_str().unwrap().contains("Klips"), "{done}");
    assert!(done["file"].is_null());
    let named = app
        .get(&format!(
            "/reports/{id}/download?run_id={}",
            run["id"].as_str().unwrap()
        ))
        .await;
    expect_error(named, 409, "conflict").await;
    let (_, shown) = json(app.get(&format!("/reports/{id}")).await).await;
    assert_eq!(shown["data"]["last_run"]["status"], "failed", "{shown}");
}

/// A run the worker generated: its report and run ids, its view once finished, and the
/// stream's INSERT records of it (as `queued`) with the given sequence numbers, which a
/// worker that gets them again finds nothing to claim in.
struct Redelivered {
    id: String,
    run_id: String,
    done: Value,
    records: Value,
}

async fn a_generated_run(app: &TestApp, name: &str, sequences: &[&str]) -> Redelivered {
    let s = setup(app).await;
    let report = created(
        app,
        "/reports",
        json!({"name": name, "klip_ids": [s.klip], "format": "json"}),
    )
    .await;
    let id = report["id"].as_str().unwrap().to_owned();
    let run = generate(app, &id).await;
    let run_id = run["id"].as_str().unwrap().to_owned();
    let done = finished(app, &id, &run_id).await;
    assert_eq!(done["status"], "succeeded");
    let mut queued = app
        .state
        .store
        .runs()
        .get(&app.company.company_id, &id, &run_id)
        .await
        .unwrap()
        .unwrap();
    queued.job.status = domain::RunStatus::Queued;
    let image: serde_dynamo::Item = serde_dynamo::to_item(&queued).unwrap();
    let records: Vec<Value> = sequences
        .iter()
        .map(|sequence| {
            json!({"eventID": sequence, "eventName": "INSERT", "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {"NewImage": image, "SequenceNumber": sequence, "SizeBytes": 1}})
        })
        .collect();
    Redelivered {
        id,
        run_id,
        done,
        records: json!({ "Records": records }),
    }
}

#[tokio::test]
async fn a_redelivered_stream_record_generates_nothing_twice() {
    let app = TestApp::spawn().await;
    // The same INSERT record again, as a stream redelivers it.
    let Redelivered {
        id,
        run_id,
        done,
        records: record,
    } = a_generated_run(&app, "Replay", &["42"]).await;
    let answer = pulseboard_report_worker::handle(&app.state, record)
        .await
        .unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]));
    let (_, after) = json(app.get(&format!("/reports/{id}/runs/{run_id}")).await).await;
    assert_eq!(after["data"]["attempt"], 1, "not claimed again");
    assert_eq!(after["data"]["file"], done["file"]);
    assert_eq!(after["data"]["finished_at"], done["finished_at"]);
}

#[tokio::test]
async fn a_batch_out_of_time_starts_its_first_job_and_returns_the_rest_to_the_stream() {
    let app = TestApp::spawn().await;
    // Three deliveries of the run's INSERT (each finds nothing left to claim when it runs).
    let Redelivered {
        id,
        run_id,
        records: batch,
        ..
    } = a_generated_run(&app, "Late", &["42", "43", "44"]).await;
    // The invocation's time is up: the first record still runs, the others go back.
    let late = pulseboard_report_worker::handle_until(
        &app.state,
        batch.clone(),
        Some(std::time::Instant::now()),
    )
    .await
    .unwrap();
    assert_eq!(
        late["batchItemFailures"],
        json!([{"itemIdentifier": "43"}, {"itemIdentifier": "44"}])
    );
    // With the time a batch keeps for its jobs left, every record runs.
    let in_time = pulseboard_report_worker::handle_until(
        &app.state,
        batch,
        Some(std::time::Instant::now() + 2 * pulseboard_report_worker::stream::RESERVE),
    )
    .await
    .unwrap();
    assert_eq!(in_time["batchItemFailures"], json!([]));
    let (_, after) = json(app.get(&format!("/reports/{id}/runs/{run_id}")).await).await;
    assert_eq!(after["data"]["attempt"], 1, "not claimed again");
}

/// Runs of a new report queued a little over the tick's wait ago (a second apart) whose
/// stream records never reached the worker (they went to the failure queue); and when
/// the first was queued.
async fn undelivered_runs(
    app: &TestApp,
    count: usize,
) -> (String, Vec<domain::reports::Run>, chrono::DateTime<Utc>) {
    let s = setup(app).await;
    let shown = created(
        app,
        "/reports",
        json!({"name": "Lost", "klip_ids": [s.klip], "format": "json"}),
    )
    .await;
    let id = shown["id"].as_str().unwrap().to_owned();
    let report: domain::reports::Report = app
        .state
        .store
        .get(platform::store::keys::asset(
            domain::asset::Kind::Report,
            &app.company.company_id,
            &id,
        ))
        .await
        .unwrap()
        .unwrap();
    let undelivered = Duration::seconds(platform::store::runs::UNDELIVERED_SECS);
    let first = Utc::now() - undelivered - Duration::seconds(30);
    let mut runs = Vec::new();
    for n in 0..count {
        let queued_at = first + Duration::seconds(n as i64);
        let run = domain::reports::Run::queued(
            domain::reports::run_id(queued_at.timestamp_millis(), &domain::ids::new_id()),
            &report,
            domain::RunTrigger::Api,
            queued_at,
            None,
        );
        app.state
            .store
            .runs()
            .queue_undelivered(&run)
            .await
            .unwrap();
        runs.push(run);
    }
    (id, runs, first)
}

#[tokio::test]
async fn a_queued_run_no_worker_got_is_done_by_the_tick() {
    let app = TestApp::spawn().await;
    let (id, runs, queued_at) = undelivered_runs(&app, 1).await;
    let run = &runs[0];
    let key = platform::store::keys::run(&app.company.company_id, &id, &run.id);
    let undelivered = Duration::seconds(platform::store::runs::UNDELIVERED_SECS);
    // Not the tick's before its wait is over (the stream's, normally)...
    let early = app
        .state
        .store
        .runs()
        .due(queued_at + undelivered - Duration::seconds(1))
        .await;
    let is_this = |due: &platform::store::runs::Due| matches!(due, platform::store::runs::Due::Run(r) if r.id == run.id);
    assert!(!early.unwrap().iter().any(is_this));
    // ...then the tick does it. (Just past its wait, not now: a tick does whatever else is
    // due in the table too. Another test's tick may take it first; the run ends the same.)
    app.freeze(queued_at + undelivered + Duration::seconds(1));
    let tick: Value = serde_json::from_str(pulseboard_report_worker::TICK_INPUT).unwrap();
    pulseboard_report_worker::handle(&app.state, tick)
        .await
        .unwrap();
    let done = finished(&app, &id, &run.id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempt"], 1, "{done}");
    // Done, it left the due index: no tick takes it again.
    let raw = app.state.store.raw_item(&key).await.unwrap().unwrap();
    assert!(!raw.contains_key("gsi1pk"), "{raw:?}");
}

#[tokio::test]
async fn a_tick_out_of_time_starts_one_job_and_leaves_the_rest_due() {
    let app = TestApp::spawn().await;
    let tick: Value = serde_json::from_str(pulseboard_report_worker::TICK_INPUT).unwrap();
    // The due index is the whole table's: a tick of a test running alongside may take this
    // test's second run before this tick reaches it (then nothing is left to defer). Such an
    // attempt is made again with new runs, at most three times.
    let mut attempts = 0;
    let (id, runs) = loop {
        attempts += 1;
        let (id, runs, queued_at) = undelivered_runs(&app, 2).await;
        let undelivered = Duration::seconds(platform::store::runs::UNDELIVERED_SECS);
        app.freeze(queued_at + undelivered + Duration::seconds(2));
        // The invocation's time is up: one job still runs, the others wait for the next tick.
        let late = pulseboard_report_worker::handle_until(
            &app.state,
            tick.clone(),
            Some(std::time::Instant::now()),
        )
        .await
        .unwrap();
        assert_eq!(late["taken_over"], 1, "{late}");
        if late["deferred"].as_u64().unwrap() >= 1 {
            break (id, runs);
        }
        assert!(
            attempts < 3,
            "nothing deferred in {attempts} attempts: {late}"
        );
    };
    // The next tick, with time, does what is left.
    pulseboard_report_worker::handle(&app.state, tick)
        .await
        .unwrap();
    for run in &runs {
        let done = finished(&app, &id, &run.id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["attempt"], 1, "{done}");
    }
}

#[tokio::test]
async fn schedules_are_validated_and_echo_their_zone_and_next_time() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let (status, body) = json(
        app.post(
            "/reports",
            json!({"name": "Bad", "klip_ids": [s.klip],
            "schedule": {"cron": "0 25 * * *", "timezone": "Mars/Olympus"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["schedule.timezone", "schedule.cron"], "{body}");
    let report = created(
        &app,
        "/reports",
        json!({"name": "Mornings", "klip_ids": [s.klip],
        "schedule": {"cron": "0 9 * * mon-fri"}}),
    )
    .await;
    assert_eq!(report["schedule"]["timezone"], "America/New_York");
    let next =
        chrono::DateTime::parse_from_rfc3339(report["next_run_at"].as_str().unwrap()).unwrap();
    let local = next.with_timezone(&New_York);
    assert_eq!((local.format("%H:%M").to_string()), "09:00");
    assert!(next > Utc::now());
}

#[tokio::test]
async fn a_scheduled_report_runs_once_per_due_time() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Every minute", "klip_ids": [s.klip], "format": "json",
        "schedule": {"cron": "* * * * *", "timezone": "UTC"}}),
    )
    .await;
    let id = report["id"].as_str().unwrap();
    let due = report["next_run_at"].as_str().unwrap().to_owned();
    // The scheduler's clock stands one second past the due time (so no later minute is due
    // too, whenever the test runs); two ticks overlap.
    let due_at = chrono::DateTime::parse_from_rfc3339(&due)
        .unwrap()
        .with_timezone(&Utc);
    app.freeze(due_at + Duration::seconds(1));
    let tick: Value = serde_json::from_str(pulseboard_report_worker::TICK_INPUT).unwrap();
    let (a, b) = tokio::join!(
        pulseboard_report_worker::handle(&app.state, tick.clone()),
        pulseboard_report_worker::handle(&app.state, tick.clone()),
    );
    let queued = a.unwrap()["queued"].as_u64().unwrap() + b.unwrap()["queued"].as_u64().unwrap();
    assert!(queued >= 1);
    let (_, runs) = json(app.get(&format!("/reports/{id}/runs")).await).await;
    let listed = runs["data"]["runs"].as_array().unwrap().clone();
    let for_due: Vec<&Value> = listed
        .iter()
        .filter(|r| r["due_at"] == due.as_str())
        .collect();
    assert_eq!(for_due.len(), 1, "one run for the due time: {runs}");
    assert_eq!(for_due[0]["trigger"], "schedule");
    let run_id = for_due[0]["id"].as_str().unwrap();
    assert_eq!(finished(&app, id, run_id).await["status"], "succeeded");
    let (_, shown) = json(app.get(&format!("/reports/{id}")).await).await;
    assert!(
        shown["data"]["next_run_at"].as_str().unwrap() > due.as_str(),
        "the schedule moved on: {shown}"
    );
}

#[tokio::test]
async fn another_companys_report_is_a_404() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Mine", "klip_ids": [s.klip]}),
    )
    .await;
    let id = report["id"].as_str().unwrap();
    for path in [
        format!("/reports/{id}"),
        format!("/reports/{id}/runs"),
        format!("/reports/{id}/download"),
    ] {
        expect_error(other.get(&path).await, 404, "not_found").await;
    }
    expect_error(
        other
            .post(&format!("/reports/{id}/generate"), json!({}))
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn the_saved_worker_events_run_through_the_worker() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "Saved events", "klip_ids": [s.klip], "format": "json"}),
    )
    .await;
    let id = report["id"].as_str().unwrap();
    let run = generate(&app, id).await;
    let run_id = run["id"].as_str().unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events/worker");
    let stream = std::fs::read_to_string(dir.join("stream-queued-run.json"))
        .unwrap()
        .replace("{{COMPANY_ID}}", &app.company.company_id)
        .replace("{{REPORT_ID}}", id)
        .replace("{{RUN_ID}}", run_id);
    // Delivered twice (by the saved event and by the stream): generated once.
    let answer =
        pulseboard_report_worker::handle(&app.state, serde_json::from_str(&stream).unwrap())
            .await
            .unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let done = finished(&app, id, run_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempt"], 1);
    let tick = std::fs::read_to_string(dir.join("scheduler-tick.json")).unwrap();
    let ticked = pulseboard_report_worker::handle(&app.state, serde_json::from_str(&tick).unwrap())
        .await
        .unwrap();
    assert!(ticked["queued"].is_u64(), "{ticked}");
}

/// `GET {report}/runs` with `query`: asserts the 200; answers the run ids and `meta.total`.
async fn run_page(app: &TestApp, report: &str, query: &str) -> (Vec<String>, u64) {
    let (status, body) = json(app.get(&format!("/reports/{report}/runs{query}")).await).await;
    assert_eq!(status, 200, "{body}");
    let ids = body["data"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, body["meta"]["total"].as_u64().unwrap())
}

#[tokio::test]
async fn runs_page_newest_first_and_expire_after_the_retention_except_the_latest_success() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let report = created(
        &app,
        "/reports",
        json!({"name": "History", "klip_ids": [s.klip], "format": "json"}),
    )
    .await;
    let id = report["id"].as_str().unwrap().to_owned();
    let company = app.company.company_id.clone();
    let kept = generate(&app, &id).await["id"].as_str().unwrap().to_owned();
    assert_eq!(finished(&app, &id, &kept).await["status"], "succeeded");
    // 150 failed runs of the two hours before it and one just after, written to the table
    // as the worker leaves them (no stream job: they are not queued).
    let stored: domain::reports::Report = app
        .state
        .store
        .get(platform::store::keys::asset(
            domain::asset::Kind::Report,
            &company,
            &id,
        ))
        .await
        .unwrap()
        .unwrap();
    let now = Utc::now();
    let failed_at = |at: chrono::DateTime<Utc>| {
        let mut run = domain::reports::Run::queued(
            domain::reports::run_id(at.timestamp_millis(), &domain::ids::new_id()),
            &stored,
            domain::RunTrigger::Api,
            at,
            None,
        );
        run.job.status = domain::RunStatus::Failed;
        run.job.finished_at = Some(at);
        run.job.error = Some("planted".into());
        run
    };
    let mut oldest = String::new();
    for i in 0..150 {
        let run = failed_at(now - Duration::hours(2) + Duration::seconds(i * 10));
        if i == 0 {
            oldest = run.id.clone();
        }
        app.state.store.runs().queue(&run, None).await.unwrap();
    }
    let newest = failed_at(now + Duration::seconds(5));
    app.state.store.runs().queue(&newest, None).await.unwrap();

    // Newest first, with the right total, in both paging styles and with status=.
    let (ids, total) = run_page(&app, &id, "?limit=1").await;
    assert_eq!((ids, total), (vec![newest.id.clone()], 152));
    // The page is read from the table as it is ordered: one item for a page of one.
    let page = app
        .state
        .store
        .runs()
        .page(&company, &id, None, Utc::now(), 0, 1)
        .await
        .unwrap();
    assert_eq!(page.runs.len(), 1);
    assert_eq!(page.runs[0].id, newest.id);
    assert_eq!(page.read, 1, "the page read only its own item");
    let started = std::time::Instant::now();
    for _ in 0..20 {
        run_page(&app, &id, "?limit=1").await;
    }
    eprintln!(
        "runs?limit=1 over 152 runs: {:.1} ms a request",
        started.elapsed().as_secs_f64() * 1000.0 / 20.0
    );
    let (ids, total) = run_page(&app, &id, "?offset=1&limit=2").await;
    assert_eq!(ids[0], kept);
    assert_eq!(total, 152);
    let (ids, total) = run_page(&app, &id, "?page=152&page_size=1").await;
    assert_eq!((ids, total), (vec![oldest.clone()], 152));
    let (ids, total) = run_page(&app, &id, "?status=succeeded&limit=5").await;
    assert_eq!((ids, total), (vec![kept.clone()], 1));
    let (ids, _) = run_page(&app, &id, "?sort=date_created&limit=1").await;
    assert_eq!(ids, [oldest.clone()]);

    // 91 days on: every run is older than the retention but the latest succeeded one.
    app.advance(Duration::days(91));
    let (ids, total) = run_page(&app, &id, "").await;
    assert_eq!((ids, total), (vec![kept.clone()], 1));
    expect_error(
        app.get(&format!("/reports/{id}/runs/{oldest}")).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(download(&app, &id).await.status(), 200);
    // A newer success takes its place: the one kept before expires with the others.
    let next = generate(&app, &id).await["id"].as_str().unwrap().to_owned();
    assert_eq!(finished(&app, &id, &next).await["status"], "succeeded");
    // The worker keeps the new run after it wrote it succeeded: up to 30 s on a loaded machine.
    let mut listed = (Vec::new(), 0);
    for _ in 0..300 {
        listed = run_page(&app, &id, "").await;
        if listed.1 == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(listed, (vec![next.clone()], 1));
    // The superseded run has its time to live now; when the table removes it, the stream
    // hands the removal to the worker, which deletes its file.
    let superseded = app
        .state
        .store
        .runs()
        .get(&company, &id, &kept)
        .await
        .unwrap()
        .unwrap();
    assert!(superseded.job.ttl.is_some(), "{superseded:?}");
    let file = superseded.file_key.clone().unwrap();
    assert!(app.state.store.files().get(&file).await.unwrap().is_some());
    let key = platform::store::keys::run(&company, &id, &kept);
    app.state.store.delete(&key).await.unwrap();
    let image: serde_dynamo::Item = serde_dynamo::to_item(&superseded).unwrap();
    let removal = json!({"Records": [{"eventID": "1", "eventName": "REMOVE",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"Keys": {"pk": {"S": key.pk}, "sk": {"S": key.sk}}, "OldImage": image,
            "SequenceNumber": "1", "SizeBytes": 1}}]});
    let answer = pulseboard_report_worker::handle(&app.state, removal)
        .await
        .unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]));
    assert!(app.state.store.files().get(&file).await.unwrap().is_none());
    let r = download(&app, &id).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains(
                &(Utc::now() + Duration::days(91))
                    .format("%Y-%m-%d")
                    .to_string()
            ),
        "the new run's file"
    );
}
