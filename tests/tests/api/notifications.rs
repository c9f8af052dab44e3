//! Notifications (API.md §6 notifications, reports delivery): channels, deliveries made by
//! the report worker (reached through the table's real stream) to real HTTP receivers on
//! loopback and to the local SES server (`aws-ses-v2-local`, which `make test` starts);
//! webhook signatures verified by the reference `standardwebhooks` package (Python), not
//! by our own code.

use chrono::{DateTime, Duration, Utc};
use pulseboard_tests::{expect_error, json, Options, TestApp};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};

/// One request a receiver got.
#[derive(Clone, Debug)]
pub(super) struct Received {
    pub(super) headers: HashMap<String, String>,
    pub(super) body: String,
}

/// A real HTTP receiver on 127.0.0.1: it records every request and answers the next of its
/// scripted answers (status, headers), then 204.
#[derive(Clone)]
pub(super) struct Receiver {
    pub(super) url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(super) async fn start(answers: Vec<(u16, Vec<(&'static str, String)>)>) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        let (g, a) = (got.clone(), answers.clone());
        // A path of its own: a request meant for an earlier receiver on the same port (a
        // test that ended) is not counted here.
        let path = format!("/hook/{}", domain::ids::new_id());
        let mine = path.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
                let (g, a, mine) = (g.clone(), a.clone(), mine.clone());
                async move {
                    if uri.path() != mine {
                        return axum::response::Response::builder()
                            .status(404)
                            .body(axum::body::Body::from("not this receiver"))
                            .unwrap();
                    }
                    let headers = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    g.lock().unwrap().push(Received { headers, body });
                    let (status, extra) = a.lock().unwrap().pop_front().unwrap_or((204, vec![]));
                    let mut response = axum::response::Response::builder().status(status);
                    for (k, v) in extra {
                        response = response.header(k, v);
                    }
                    response.body(axum::body::Body::from("answer")).unwrap()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, got }
    }

    pub(super) fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    pub(super) fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until it got `n` requests.
    pub(super) async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..300 {
            if self.count() >= n {
                return self.requests();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the receiver got {} requests, not {n}", self.count());
    }
}

/// An app whose channels may point at loopback receivers (the worker's allow-list is the
/// same, see the harness).
pub(super) async fn app() -> TestApp {
    TestApp::spawn_with(Options {
        allowed_networks: vec![("127.0.0.1".parse().unwrap(), 32)],
        ..Options::default()
    })
    .await
}

pub(super) async fn created(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, body) = json(app.post(path, body).await).await;
    assert_eq!(status, 201, "{path}: {body}");
    body["data"].clone()
}

pub(super) fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// `POST /channels/{id}/test` → 202 with a queued `channel.test` delivery.
async fn test_delivery(app: &TestApp, channel: &str) -> Value {
    let (status, body) = json(
        app.post(&format!("/channels/{channel}/test"), json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let d = body["data"].clone();
    assert_eq!(d["status"], "queued", "{d}");
    assert_eq!(d["kind"], "test");
    assert_eq!(d["type"], "channel.test");
    assert_eq!(d["channel_id"], channel);
    assert!(d["event_id"].as_str().unwrap().starts_with("evt_"));
    d
}

pub(super) async fn delivery(app: &TestApp, id: &str) -> Value {
    let (status, body) = json(app.get(&format!("/deliveries/{id}")).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Waits (up to 30 s) until the delivery is in one of `statuses`.
pub(super) async fn delivery_in(app: &TestApp, id: &str, statuses: &[&str]) -> Value {
    for _ in 0..300 {
        let d = delivery(app, id).await;
        if statuses.contains(&d["status"].as_str().unwrap()) {
            return d;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "delivery {id} did not become one of {statuses:?}: {}",
        delivery(app, id).await
    );
}

async fn channel(app: &TestApp, id: &str) -> Value {
    let (status, body) = json(app.get(&format!("/channels/{id}")).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Verifies requests with the reference implementation (`standardwebhooks` from PyPI, run
/// by `tests/receivers/verify_webhooks.py`): one answer per request, in order.
pub(super) fn verified(secret: &str, requests: &[Received]) -> Vec<Result<(), String>> {
    let command = std::env::var("PULSEBOARD_WEBHOOK_VERIFY")
        .expect("PULSEBOARD_WEBHOOK_VERIFY is not set: run the tests with `make test`");
    let mut words = command.split_whitespace();
    let mut child = std::process::Command::new(words.next().unwrap())
        .args(words)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the webhook verifier starts");
    let mut stdin = child.stdin.take().unwrap();
    for r in requests {
        let line = json!({"secret": secret, "headers": {
            "webhook-id": r.headers["webhook-id"],
            "webhook-timestamp": r.headers["webhook-timestamp"],
            "webhook-signature": r.headers["webhook-signature"],
        }, "body": r.body});
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let answers: Vec<Result<(), String>> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(&l.unwrap()).unwrap();
            if v["ok"] == true {
                Ok(())
            } else {
                Err(v["error"].as_str().unwrap_or("").to_owned())
            }
        })
        .collect();
    assert!(child.wait().unwrap().success());
    assert_eq!(answers.len(), requests.len());
    answers
}

pub(super) fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn webhooks_are_signed_per_standard_webhooks_and_retried_under_the_same_id() {
    let app = app().await;
    let receiver = Receiver::start(vec![(503, vec![])]).await;
    let ch = created(
        &app,
        "/channels",
        json!({"name": "Ops hook", "type": "webhook", "url": receiver.url}),
    )
    .await;
    let secret = ch["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{ch}");
    assert_eq!(ch["type"], "webhook");
    assert_eq!(ch["disabled"], false);
    // The secret is answered once: never by a read.
    let shown = channel(&app, &id(&ch)).await;
    assert!(shown.get("secret").is_none(), "{shown}");
    let (_, list) = json(app.get("/channels").await).await;
    assert!(!list.to_string().contains(&secret));

    let d = test_delivery(&app, &id(&ch)).await;
    // The worker's first attempt meets a 503: retried after the backoff (30 s ± 10%).
    receiver.wait_for(1).await;
    let first = delivery_in(&app, &id(&d), &["retrying", "delivered"]).await;
    assert_eq!(first["attempts"], 1, "{first}");
    assert_eq!(first["last_attempt"]["response_status"], 503, "{first}");
    let wait = at(&first["next_attempt_at"]) - at(&first["last_attempt"]["at"]);
    assert!((26..=34).contains(&wait.num_seconds()), "{first}");
    // The second attempt, when its time comes (the tick's job; done here with the clock
    // moved on, or by another test's tick first: the outcome is the same).
    app.freeze(at(&first["next_attempt_at"]) + Duration::seconds(1));
    pulseboard_report_worker::deliver::run(&app.state, &app.company.company_id, &id(&d)).await;
    let done = delivery_in(&app, &id(&d), &["delivered"]).await;
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(done["history"].as_array().unwrap().len(), 2, "{done}");
    assert_eq!(done["history"][0]["response_status"], 503);
    assert_eq!(done["history"][1]["response_status"], 204);
    assert!(done["delivered_at"].is_string() && done["next_attempt_at"].is_null());
    let requests = receiver.wait_for(2).await;
    assert_eq!(requests.len(), 2);
    // The same event id on every attempt, the same body, each attempt's own timestamp.
    assert_eq!(
        requests[0].headers["webhook-id"],
        d["event_id"].as_str().unwrap()
    );
    assert_eq!(
        requests[1].headers["webhook-id"],
        requests[0].headers["webhook-id"]
    );
    assert_eq!(requests[0].body, requests[1].body);
    assert_eq!(requests[0].headers["content-type"], "application/json");
    let body: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["type"], "channel.test");
    assert_eq!(body["data"]["channel"]["id"], id(&ch));
    for answer in verified(&secret, &requests) {
        assert_eq!(answer, Ok(()));
    }
    // A wrong secret does not verify (the verifier is not a yes-machine).
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(verified(other, &requests[..1])[0].is_err());
    let shown = channel(&app, &id(&ch)).await;
    assert_eq!(shown["last_delivery"]["status"], "delivered", "{shown}");
    assert_eq!(shown["consecutive_failures"], 0);

    // Rotation: a new secret answered once; for a day both sign.
    let (status, rotated) = json(
        app.post(&format!("/channels/{}/rotate-secret", id(&ch)), json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["data"]["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    app.freeze(Utc::now());
    let d2 = test_delivery(&app, &id(&ch)).await;
    let requests = receiver.wait_for(3).await;
    delivery_in(&app, &id(&d2), &["delivered"]).await;
    let third = &requests[2..3];
    assert_eq!(
        third[0].headers["webhook-signature"].split(' ').count(),
        2,
        "{:?}",
        third[0].headers
    );
    assert_eq!(verified(&new_secret, third), vec![Ok(())]);
    assert_eq!(verified(&secret, third), vec![Ok(())]);
}

#[tokio::test]
async fn a_4xx_fails_at_once_a_retry_keeps_the_event_and_410_disables_the_channel() {
    let app = app().await;
    let receiver = Receiver::start(vec![(400, vec![]), (410, vec![])]).await;
    let ch = created(
        &app,
        "/channels",
        json!({"name": "Strict", "type": "webhook", "url": receiver.url}),
    )
    .await;
    let d = test_delivery(&app, &id(&ch)).await;
    let failed = delivery_in(&app, &id(&d), &["failed"]).await;
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("400"),
        "{failed}"
    );
    assert_eq!(channel(&app, &id(&ch)).await["consecutive_failures"], 1);
    // Retry: queued again under the same event id.
    let (status, again) = json(
        app.post(&format!("/deliveries/{}/retry", id(&d)), json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["data"]["event_id"], d["event_id"]);
    assert_eq!(again["data"]["status"], "queued");
    // The receiver now answers 410: the delivery fails and the channel is disabled.
    let gone = delivery_in(&app, &id(&d), &["failed"]).await;
    let requests = receiver.wait_for(2).await;
    assert_eq!(
        requests[1].headers["webhook-id"],
        requests[0].headers["webhook-id"]
    );
    assert_eq!(gone["last_attempt"]["response_status"], 410, "{gone}");
    let shown = channel(&app, &id(&ch)).await;
    assert_eq!(shown["disabled"], true, "{shown}");
    assert!(
        shown["disabled_reason"].as_str().unwrap().contains("410"),
        "{shown}"
    );
    // A disabled channel queues nothing; a delivered one cannot be retried.
    expect_error(
        app.post(&format!("/channels/{}/test", id(&ch)), json!({}))
            .await,
        409,
        "conflict",
    )
    .await;
    // PUT {"disabled": false} re-enables it.
    let (status, body) = json(
        app.call(
            "PUT",
            &format!("/channels/{}", id(&ch)),
            app.key(),
            Some(json!({"disabled": false})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["disabled"], false);
    assert!(body["data"]["disabled_reason"].is_null());
    let d3 = test_delivery(&app, &id(&ch)).await;
    delivery_in(&app, &id(&d3), &["delivered"]).await;
    expect_error(
        app.post(&format!("/deliveries/{}/retry", id(&d3)), json!({}))
            .await,
        409,
        "conflict",
    )
    .await;
    // A deleted channel: gone from the API; a delivery still due to it fails saying why.
    let (status, body) = json(
        app.call("DELETE", &format!("/channels/{}", id(&ch)), app.key(), None)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    expect_error(
        app.get(&format!("/channels/{}", id(&ch))).await,
        404,
        "not_found",
    )
    .await;
    let (_, again) = json(
        app.post(&format!("/deliveries/{}/retry", id(&d)), json!({}))
            .await,
    )
    .await;
    assert_eq!(again["data"]["status"], "queued", "{again}");
    let orphan = delivery_in(&app, &id(&d), &["failed"]).await;
    assert_eq!(orphan["error"], "the channel was deleted", "{orphan}");
}

#[tokio::test]
async fn ten_failed_deliveries_in_a_row_disable_a_channel() {
    let app = app().await;
    let receiver = Receiver::start((0..20).map(|_| (422, vec![])).collect()).await;
    let ch = created(
        &app,
        "/channels",
        json!({"name": "Broken", "type": "slack", "url": receiver.url}),
    )
    .await;
    for n in 1..=10 {
        let d = test_delivery(&app, &id(&ch)).await;
        delivery_in(&app, &id(&d), &["failed"]).await;
        let shown = channel(&app, &id(&ch)).await;
        assert_eq!(shown["consecutive_failures"], n, "{shown}");
        assert_eq!(shown["disabled"], n == 10, "{shown}");
    }
    let shown = channel(&app, &id(&ch)).await;
    assert!(
        shown["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("10 failed deliveries"),
        "{shown}"
    );
    assert_eq!(receiver.count(), 10);
}

/// A small data source, a Klip over it and a report of the Klip delivering to `channels`.
async fn report_to(app: &TestApp, channels: &[String], options: Value) -> String {
    let ds = created(
        app,
        "/datasources",
        json!({"name": "Sales", "format": "csv"}),
    )
    .await;
    let today = Utc::now().date_naive();
    let mut csv = String::from("day,amount\n");
    for back in (0..10).rev() {
        csv.push_str(&format!(
            "{},{}\n",
            today - Duration::days(back),
            100 + back * 7
        ));
    }
    let r = app
        .http
        .put(app.url(&format!("/datasources/{}/data", id(&ds))))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let klip = created(app, "/klips", json!({"name": "Daily sales", "type": "line", "datasource_id": id(&ds),
        "query": {"value": "amount", "aggregate": "sum", "time_column": "day", "time_bucket": "day", "range": "last_30_days"}})).await;
    let report = created(
        app,
        "/reports",
        json!({"name": "Sales daily", "klip_ids": [id(&klip)], "format": "csv",
               "deliver_to": channels, "delivery": options}),
    )
    .await;
    assert_eq!(report["deliver_to"], json!(channels));
    id(&report)
}

async fn generate_delivering(app: &TestApp, report: &str) -> String {
    let (status, body) = json(
        app.post(
            &format!("/reports/{report}/generate"),
            json!({"deliver": true}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    id(&body["data"])
}

async fn finished_run(app: &TestApp, report: &str, run: &str) -> Value {
    for _ in 0..300 {
        let (status, body) = json(app.get(&format!("/reports/{report}/runs/{run}")).await).await;
        assert_eq!(status, 200, "{body}");
        let s = body["data"]["status"].as_str().unwrap();
        if s != "queued" && s != "running" {
            return body["data"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("run {run} did not finish");
}

/// The emails the local SES server holds whose subject is `subject`.
async fn emails(subject: &str) -> Vec<Value> {
    let ses = std::env::var("AWS_ENDPOINT_URL_SESV2")
        .expect("AWS_ENDPOINT_URL_SESV2 is not set: run the tests with `make test`");
    let store: Value = reqwest::get(format!("{ses}/store"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    store["emails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == subject)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_report_is_delivered_once_to_a_webhook_slack_and_email() {
    let app = app().await;
    let hook = Receiver::start(vec![]).await;
    let slack = Receiver::start(vec![(200, vec![])]).await;
    let address = format!("ops-{}@example.com", domain::ids::new_id());
    let webhook = created(
        &app,
        "/channels",
        json!({"name": "Hook", "type": "webhook", "url": hook.url}),
    )
    .await;
    let slack_ch = created(
        &app,
        "/channels",
        json!({"name": "Slack", "type": "slack", "url": slack.url}),
    )
    .await;
    let email = created(
        &app,
        "/channels",
        json!({"name": "Ops mail", "type": "email", "email": {"to": [address]}}),
    )
    .await;
    let channels = vec![id(&webhook), id(&slack_ch), id(&email)];
    let report = report_to(&app, &channels, json!({"attach": true})).await;
    let run = generate_delivering(&app, &report).await;
    let done = finished_run(&app, &report, &run).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let listed = done["deliveries"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 3, "{done}");
    for d in &listed {
        delivery_in(&app, d["delivery_id"].as_str().unwrap(), &["delivered"]).await;
    }
    // The run shows each delivery's end.
    let done = finished_run(&app, &report, &run).await;
    for d in done["deliveries"].as_array().unwrap() {
        assert_eq!(d["status"], "delivered", "{done}");
    }
    // The webhook: report.delivered with the report, the run, a working link and the
    // analysis as data, signed.
    let requests = hook.wait_for(1).await;
    let body: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["type"], "report.delivered", "{body}");
    assert_eq!(body["data"]["report"]["id"], report);
    assert_eq!(body["data"]["run"]["id"], run);
    assert!(body["data"]["highlights"].is_array() && body["data"]["insights"].is_array());
    let link = body["data"]["file"]["url"].as_str().unwrap();
    let file = reqwest::get(link).await.unwrap();
    assert_eq!(file.status(), 200, "{link}");
    assert!(file.text().await.unwrap().contains("Daily sales"));
    assert_eq!(
        verified(webhook["secret"].as_str().unwrap(), &requests),
        vec![Ok(())]
    );
    // Slack: text and blocks with the same facts.
    let posted: Value = serde_json::from_str(&slack.wait_for(1).await[0].body).unwrap();
    assert!(
        posted["text"].as_str().unwrap().contains("Sales daily"),
        "{posted}"
    );
    assert!(
        posted["blocks"]
            .to_string()
            .contains(link.split('?').next().unwrap()),
        "{posted}"
    );
    // Email: from the local SES server, with the CSV attached.
    let mails = emails("Report: Sales daily").await;
    let mail = mails
        .iter()
        .find(|m| m["destination"]["to"].to_string().contains(&address))
        .unwrap_or_else(|| panic!("no email to {address}: {mails:?}"));
    assert!(mail["body"]["html"]
        .as_str()
        .unwrap()
        .contains("<h2>Report: Sales daily</h2>"));
    let attached = &mail["attachments"][0];
    assert_eq!(attached["contentType"], "text/csv", "{mail}");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(attached["content"].as_str().unwrap())
        .unwrap();
    assert!(String::from_utf8(bytes).unwrap().contains("Daily sales"));

    // The same run's record again (a redelivered stream record, a second worker): nothing
    // is generated or sent twice.
    pulseboard_report_worker::generate::run(&app.state, &app.company.company_id, &report, &run)
        .await;
    for d in &listed {
        pulseboard_report_worker::deliver::run(
            &app.state,
            &app.company.company_id,
            d["delivery_id"].as_str().unwrap(),
        )
        .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!((hook.count(), slack.count()), (1, 1));
    assert_eq!(
        emails("Report: Sales daily")
            .await
            .iter()
            .filter(|m| m["destination"]["to"].to_string().contains(&address))
            .count(),
        1
    );
    let (_, page) = json(app.get("/deliveries?kind=report").await).await;
    assert_eq!(
        page["data"]["deliveries"].as_array().unwrap().len(),
        3,
        "{page}"
    );
    // Without `deliver`, an API run delivers nothing.
    let (_, quiet) = json(
        app.post(&format!("/reports/{report}/generate"), json!({}))
            .await,
    )
    .await;
    let quiet = finished_run(&app, &report, &id(&quiet["data"])).await;
    assert_eq!(quiet["deliveries"], json!([]), "{quiet}");
}

#[tokio::test]
async fn only_if_changed_suppresses_a_run_that_shows_nothing_new() {
    let app = app().await;
    let hook = Receiver::start(vec![]).await;
    let ch = created(
        &app,
        "/channels",
        json!({"name": "Hook", "type": "webhook", "url": hook.url}),
    )
    .await;
    let report = report_to(&app, &[id(&ch)], json!({"only_if_changed": true})).await;
    let first = generate_delivering(&app, &report).await;
    let first = finished_run(&app, &report, &first).await;
    delivery_in(
        &app,
        first["deliveries"][0]["delivery_id"].as_str().unwrap(),
        &["delivered"],
    )
    .await;
    let second = generate_delivering(&app, &report).await;
    let second = finished_run(&app, &report, &second).await;
    assert_eq!(second["deliveries"][0]["status"], "suppressed", "{second}");
    let d = delivery(
        &app,
        second["deliveries"][0]["delivery_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(d["status"], "suppressed");
    assert_eq!(d["attempts"], 0);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(hook.count(), 1);
}

#[tokio::test]
async fn two_workers_attempting_one_delivery_send_it_once_and_a_dead_ones_is_taken_over() {
    let app = app().await;
    let hook = Receiver::start(vec![]).await;
    let ch = created(
        &app,
        "/channels",
        json!({"name": "Hook", "type": "webhook", "url": hook.url}),
    )
    .await;
    // A delivery waiting for its next attempt (the stream passes only queued ones: this one
    // is the tick's).
    let now = Utc::now();
    let event = domain::notify::Event::fresh("channel.test", now, json!({}));
    let mut d = domain::notify::Delivery::queued(
        &event,
        &app.company.company_id,
        &id(&ch),
        domain::DeliveryKind::Test,
        Default::default(),
        now,
    );
    d.status = domain::DeliveryStatus::Retrying;
    d.next_attempt_at = Some(now + Duration::seconds(30));
    app.state.store.deliveries().create(&d).await.unwrap();
    // Not due yet: nobody may attempt it.
    app.freeze(now + Duration::seconds(5));
    pulseboard_report_worker::deliver::run(&app.state, &app.company.company_id, &d.id).await;
    assert_eq!(hook.count(), 0);
    // Its time came: two workers at once send it once.
    app.freeze(now + Duration::seconds(31));
    let company = app.company.company_id.clone();
    tokio::join!(
        pulseboard_report_worker::deliver::run(&app.state, &company, &d.id),
        pulseboard_report_worker::deliver::run(&app.state, &company, &d.id),
    );
    assert_eq!(hook.count(), 1);
    assert_eq!(delivery(&app, &d.id).await["status"], "delivered");

    // A worker that died mid-attempt: the delivery stays `sending` until its lease ends,
    // then it is in the due index and the next attempt takes it over.
    let event = domain::notify::Event::fresh("channel.test", now, json!({}));
    let mut dead = domain::notify::Delivery::queued(
        &event,
        &company,
        &id(&ch),
        domain::DeliveryKind::Test,
        Default::default(),
        now,
    );
    dead.status = domain::DeliveryStatus::Retrying;
    dead.next_attempt_at = Some(now);
    app.state.store.deliveries().create(&dead).await.unwrap();
    let lease = now + Duration::seconds(60);
    app.state
        .store
        .deliveries()
        .claim(&company, &dead.id, now + Duration::seconds(1), lease)
        .await
        .unwrap();
    assert_eq!(delivery(&app, &dead.id).await["status"], "sending");
    let due = app
        .state
        .store
        .runs()
        .due(lease + Duration::seconds(1))
        .await
        .unwrap();
    assert!(due
        .iter()
        .any(|x| matches!(x, platform::store::runs::Due::Delivery(x) if x.id == dead.id)));
    app.freeze(now + Duration::seconds(30));
    pulseboard_report_worker::deliver::run(&app.state, &company, &dead.id).await;
    assert_eq!(hook.count(), 1, "the lease still holds");
    app.freeze(lease + Duration::seconds(1));
    pulseboard_report_worker::deliver::run(&app.state, &company, &dead.id).await;
    let taken = delivery(&app, &dead.id).await;
    assert_eq!(taken["status"], "delivered", "{taken}");
    assert_eq!(taken["attempts"], 2, "{taken}");
    assert_eq!(hook.count(), 2);
}

#[tokio::test]
async fn channel_urls_that_reach_private_addresses_are_refused_when_saved_and_when_sent() {
    // Without an allow-list: loopback, private and metadata addresses are refused.
    let strict = TestApp::spawn().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.8/x",
        "http://[::1]/x",
        "ftp://example.com/x",
    ] {
        let body = expect_error(
            strict
                .post(
                    "/channels",
                    json!({"name": "Bad", "type": "webhook", "url": url}),
                )
                .await,
            400,
            "validation_failed",
        )
        .await;
        assert_eq!(body["details"][0]["field"], "url", "{url}: {body}");
    }
    // The shape of a channel is checked too, naming every problem.
    let body = expect_error(
        strict
            .post(
                "/channels",
                json!({"name": "Mail", "type": "email", "url": "https://example.com",
                                         "email": {"to": ["not an address"]}}),
            )
            .await,
        400,
        "validation_failed",
    )
    .await;
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"url") && fields.contains(&"email.to[0]"),
        "{body}"
    );
    expect_error(
        strict
            .post("/channels", json!({"name": "X", "type": "pager"}))
            .await,
        400,
        "validation_failed",
    )
    .await;
    // A redirect to a private address is refused before connecting.
    let app = app().await;
    let redirect = Receiver::start(vec![(
        307,
        vec![("location", "http://169.254.169.254/latest".into())],
    )])
    .await;
    let ch = created(
        &app,
        "/channels",
        json!({"name": "Sly", "type": "webhook", "url": redirect.url}),
    )
    .await;
    let d = test_delivery(&app, &id(&ch)).await;
    let failed = delivery_in(&app, &id(&d), &["failed"]).await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("refused") && error.contains("169.254.169.254"),
        "{failed}"
    );
    assert_eq!(failed["attempts"], 1);
    // The answer masks the URL's credentials and query values.
    let masked = created(
        &app,
        "/channels",
        json!({"name": "Masked", "type": "slack",
        "url": format!("{}?token=s3cret", redirect.url.replace("http://", "http://user:pw@"))}),
    )
    .await;
    let shown = masked["url"].as_str().unwrap();
    assert!(
        !shown.contains("s3cret") && !shown.contains(":pw@"),
        "{shown}"
    );
}

#[tokio::test]
async fn channels_and_deliveries_of_another_company_are_not_found() {
    let app = app().await;
    let other = app_for_other().await;
    let hook = Receiver::start(vec![]).await;
    let ch = created(
        &app,
        "/channels",
        json!({"name": "Mine", "type": "webhook", "url": hook.url}),
    )
    .await;
    let d = test_delivery(&app, &id(&ch)).await;
    delivery_in(&app, &id(&d), &["delivered"]).await;
    for (method, path) in [
        ("GET", format!("/channels/{}", id(&ch))),
        ("PUT", format!("/channels/{}", id(&ch))),
        ("DELETE", format!("/channels/{}", id(&ch))),
        ("POST", format!("/channels/{}/test", id(&ch))),
        ("POST", format!("/channels/{}/rotate-secret", id(&ch))),
        ("GET", format!("/deliveries/{}", id(&d))),
        ("POST", format!("/deliveries/{}/retry", id(&d))),
    ] {
        let body = (method != "GET" && method != "DELETE").then(|| json!({}));
        expect_error(
            other.call(method, &path, other.key(), body).await,
            404,
            "not_found",
        )
        .await;
    }
    let (_, list) = json(other.get("/deliveries").await).await;
    assert_eq!(list["data"]["deliveries"], json!([]), "{list}");
    let (_, list) = json(other.get("/channels").await).await;
    assert_eq!(list["data"]["channels"], json!([]), "{list}");
    // A report of the other company cannot name the channel.
    let body = expect_error(
        other.post("/reports", json!({"name": "R", "klip_ids": ["0123456789abcdef0123456789abcdef"], "deliver_to": [id(&ch)]})).await,
        400,
        "validation_failed",
    )
    .await;
    assert!(body.to_string().contains("deliver_to[0]"), "{body}");
}

async fn app_for_other() -> TestApp {
    app().await
}

#[tokio::test]
async fn deliveries_past_the_daily_budget_fail_with_its_name() {
    let app = app().await;
    let mut company: platform::auth::records::Company = app
        .state
        .store
        .get(platform::store::keys::company(&app.company.company_id))
        .await
        .unwrap()
        .unwrap();
    company.deliveries_per_day = Some(2);
    app.state
        .store
        .put(
            &platform::store::keys::company(&app.company.company_id),
            &company,
        )
        .await
        .unwrap();
    let hook = Receiver::start(vec![]).await;
    let ch = created(
        &app,
        "/channels",
        json!({"name": "Hook", "type": "webhook", "url": hook.url}),
    )
    .await;
    let mut ends = Vec::new();
    for _ in 0..3 {
        let d = test_delivery(&app, &id(&ch)).await;
        ends.push(delivery_in(&app, &id(&d), &["delivered", "failed"]).await);
    }
    assert_eq!(ends[0]["status"], "delivered");
    assert_eq!(ends[1]["status"], "delivered");
    assert_eq!(ends[2]["status"], "failed", "{}", ends[2]);
    assert!(
        ends[2]["error"]
            .as_str()
            .unwrap()
            .contains("deliveries.perDay"),
        "{}",
        ends[2]
    );
    assert_eq!(hook.count(), 2);
    // A budget refusal is not the channel's failure.
    assert_eq!(channel(&app, &id(&ch)).await["consecutive_failures"], 0);
    let (_, failed) = json(
        app.get(&format!("/deliveries?status=failed&channel_id={}", id(&ch)))
            .await,
    )
    .await;
    assert_eq!(
        failed["data"]["deliveries"].as_array().unwrap().len(),
        1,
        "{failed}"
    );
    // Pages, newest first, with the total of all.
    let (_, first) = json(
        app.get(&format!("/deliveries?limit=2&channel_id={}", id(&ch)))
            .await,
    )
    .await;
    let listed = first["data"]["deliveries"].as_array().unwrap();
    assert_eq!(
        (listed.len(), first["meta"]["total"].as_u64()),
        (2, Some(3)),
        "{first}"
    );
    assert_eq!(listed[0]["id"], ends[2]["id"], "newest first: {first}");
    let (_, rest) = json(
        app.get(&format!(
            "/deliveries?limit=2&offset=2&channel_id={}",
            id(&ch)
        ))
        .await,
    )
    .await;
    assert_eq!(rest["data"]["deliveries"][0]["id"], ends[0]["id"], "{rest}");
    // Another order reads them whole: oldest first (times are to the second, so ties
    // keep no particular order).
    let (_, oldest) = json(
        app.get(&format!(
            "/deliveries?sort=date_created&channel_id={}",
            id(&ch)
        ))
        .await,
    )
    .await;
    let times: Vec<&str> = oldest["data"]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["date_created"].as_str().unwrap())
        .collect();
    assert_eq!(times.len(), 3, "{oldest}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{oldest}");
    expect_error(app.get("/deliveries?status=lost").await, 400, "bad_request").await;
    expect_error(app.get("/deliveries?colour=red").await, 400, "bad_request").await;
}

#[tokio::test]
async fn a_scheduled_run_is_delivered_once_however_many_ticks_see_it() {
    let app = app().await;
    let hook = Receiver::start(vec![]).await;
    let ch = created(
        &app,
        "/channels",
        json!({"name": "Hook", "type": "webhook", "url": hook.url}),
    )
    .await;
    let report = report_to(&app, &[id(&ch)], json!({})).await;
    let (status, body) = json(
        app.call(
            "PUT",
            &format!("/reports/{report}"),
            app.key(),
            Some(json!({"schedule": {"cron": "* * * * *", "timezone": "UTC"}})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let due = at(&body["data"]["next_run_at"]);
    app.freeze(due + Duration::seconds(1));
    let tick: Value = serde_json::from_str(pulseboard_report_worker::TICK_INPUT).unwrap();
    let (a, b) = tokio::join!(
        pulseboard_report_worker::handle(&app.state, tick.clone()),
        pulseboard_report_worker::handle(&app.state, tick),
    );
    a.unwrap();
    b.unwrap();
    let (_, runs) = json(app.get(&format!("/reports/{report}/runs")).await).await;
    let run = runs["data"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["trigger"] == "schedule")
        .unwrap_or_else(|| panic!("no scheduled run: {runs}"))
        .clone();
    let done = finished_run(&app, &report, &id(&run)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let listed = done["deliveries"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{done}");
    delivery_in(
        &app,
        listed[0]["delivery_id"].as_str().unwrap(),
        &["delivered"],
    )
    .await;
    let requests = hook.wait_for(1).await;
    let body: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["data"]["run"]["trigger"], "schedule", "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(hook.count(), 1);
}

#[tokio::test]
async fn deliveries_are_read_with_channel_manage_or_alert_manage_and_channels_only_with_channel_manage(
) {
    let app = app().await;
    let (status, role) = json(
        app.post(
            "/roles",
            json!({"name": "Alert keeper", "permissions": ["alert.manage"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{role}");
    let role = id(&role["data"]);
    let (_, alerts_only) = app.user_with_key(&[role.as_str()], None).await;
    let (status, body) = json(app.call("GET", "/deliveries", &alerts_only, None).await).await;
    assert_eq!(status, 200, "{body}");
    let body = expect_error(
        app.call("GET", "/channels", &alerts_only, None).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(body["message"], "missing permission channel.manage");
    let (_, viewer) = app.user_with_key(&["viewer"], None).await;
    let body = expect_error(
        app.call("GET", "/deliveries", &viewer, None).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        body["message"],
        "missing permission channel.manage or alert.manage"
    );
}

#[tokio::test]
async fn workers_racing_to_generate_one_run_deliver_it_once() {
    let app = app().await;
    let hook = Receiver::start(vec![]).await;
    let ch = created(
        &app,
        "/channels",
        json!({"name": "Hook", "type": "webhook", "url": hook.url}),
    )
    .await;
    let report = report_to(&app, &[id(&ch)], json!({})).await;
    let run = generate_delivering(&app, &report).await;
    // The stream's worker and two more claim the same run at once.
    let company = app.company.company_id.clone();
    tokio::join!(
        pulseboard_report_worker::generate::run(&app.state, &company, &report, &run),
        pulseboard_report_worker::generate::run(&app.state, &company, &report, &run),
    );
    let done = finished_run(&app, &report, &run).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempt"], 1, "one claim generated it: {done}");
    let listed = done["deliveries"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{done}");
    delivery_in(
        &app,
        listed[0]["delivery_id"].as_str().unwrap(),
        &["delivered"],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(hook.count(), 1);
    let (_, all) = json(
        app.get(&format!("/deliveries?channel_id={}", id(&ch)))
            .await,
    )
    .await;
    assert_eq!(
        all["data"]["deliveries"].as_array().unwrap().len(),
        1,
        "{all}"
    );
}
