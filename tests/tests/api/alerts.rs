//! Alerts (API.md §6 alerts): evaluated by the report worker when a Klip's value changes
//! (the table's real stream brings the change), delivered to real receivers on loopback
//! (signatures checked by the reference `standardwebhooks` package), never on reads.

use super::notifications::{app, created, id, verified, Receiver};
use chrono::{Duration, Utc};
use domain::records::Klip;
use pulseboard_tests::{expect_error, json, TestApp};
use serde_json::{json, Value};

/// A number Klip (the sum of `amount`, no range) over a CSV source; answers (source, Klip).
async fn klip(app: &TestApp) -> (String, String) {
    let ds = created(
        app,
        "/datasources",
        json!({"name": "Amounts", "format": "csv"}),
    )
    .await;
    push(app, &id(&ds), &[10.0]).await;
    let k = created(
        app,
        "/klips",
        json!({"name": "Total", "type": "number", "datasource_id": id(&ds),
               "query": {"value": "amount", "aggregate": "sum"}, "display": {"target": 100}}),
    )
    .await;
    (id(&ds), id(&k))
}

/// Replaces the source's rows with `amounts` (the Klip is recomputed in the request).
async fn push(app: &TestApp, ds: &str, amounts: &[f64]) {
    let mut csv = String::from("amount\n");
    for a in amounts {
        csv.push_str(&format!("{a}\n"));
    }
    let r = app
        .http
        .put(app.url(&format!("/datasources/{ds}/data")))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn alert(app: &TestApp, path: &str) -> Value {
    let (status, body) = json(app.get(path).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Waits (up to 30 s) until `check` holds of the alert.
async fn alert_when(app: &TestApp, id: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        let a = alert(app, &format!("/alerts/{id}")).await;
        if check(&a) {
            return a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "alert {id} never got there: {}",
        alert(app, &format!("/alerts/{id}")).await
    );
}

/// Waits (up to 30 s) until the alert's version has stayed the same for a second: every
/// evaluation the stream still had for it (its Klip's creation, then its change; each reads
/// the Klip as it is now, so an early one may already judge the latest value) is done.
async fn settled(app: &TestApp, id: &str) -> Value {
    let mut last = alert(app, &format!("/alerts/{id}")).await;
    let mut still = 0;
    for _ in 0..300 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = alert(app, &format!("/alerts/{id}")).await;
        if now["version"] == last["version"] {
            still += 1;
            if still == 10 {
                return now;
            }
        } else {
            still = 0;
        }
        last = now;
    }
    panic!("alert {id} never stopped changing: {last}");
}

async fn events(app: &TestApp, alert: &str) -> Vec<Value> {
    let (status, body) = json(app.get(&format!("/alerts/{alert}/events")).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["events"].as_array().unwrap().clone()
}

async fn hook(app: &TestApp) -> (Receiver, String, String) {
    let receiver = Receiver::start(vec![]).await;
    let ch = created(
        app,
        "/channels",
        json!({"name": "Hook", "type": "webhook", "url": receiver.url}),
    )
    .await;
    let secret = ch["secret"].as_str().unwrap().to_owned();
    (receiver, id(&ch), secret)
}

#[tokio::test]
async fn an_alert_fires_once_stays_quiet_while_firing_and_resolves() {
    let app = app().await;
    let (ds, k) = klip(&app).await;
    let (receiver, channel, secret) = hook(&app).await;
    let a = created(
        &app,
        "/alerts",
        json!({"name": "Big total", "klip_id": k,
        "condition": {"type": "above", "value": 100}, "channels": [channel]}),
    )
    .await;
    assert_eq!(a["state"], "ok");
    assert_eq!(a["cooldown_minutes"], 60);
    assert_eq!(a["frequency"], "every_time");
    assert_eq!(a["notify_resolved"], true);
    // Above: ok → firing, one alert.firing.
    push(&app, &ds, &[100.0, 50.0]).await;
    let firing = alert_when(&app, &id(&a), |a| a["state"] == "firing").await;
    assert_eq!(firing["last_value"], 150.0, "{firing}");
    assert!(firing["last_fired_at"].is_string());
    let got = receiver.wait_for(1).await;
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["type"], "alert.firing", "{body}");
    assert_eq!(body["data"]["alert"]["id"], id(&a));
    assert_eq!(body["data"]["klip"]["id"], k);
    assert_eq!(body["data"]["value"], 150.0);
    assert_eq!(body["data"]["threshold"], 100.0);
    assert!(
        body["data"]["text"].as_str().unwrap().contains("above"),
        "{body}"
    );
    // Still above, within the cooldown: judged, nothing sent.
    push(&app, &ds, &[200.0]).await;
    alert_when(&app, &id(&a), |a| a["last_value"] == 200.0).await;
    // Reads never evaluate.
    let before = alert(&app, &format!("/alerts/{}", id(&a))).await["last_evaluated_at"].clone();
    for path in [
        format!("/klips/{k}"),
        format!("/datasources/{ds}"),
        "/dashboards".into(),
    ] {
        assert_eq!(app.get(&path).await.status(), 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(
        alert(&app, &format!("/alerts/{}", id(&a))).await["last_evaluated_at"],
        before
    );
    assert_eq!(receiver.count(), 1);
    // Below again: firing → ok, alert.resolved.
    push(&app, &ds, &[20.0]).await;
    alert_when(&app, &id(&a), |a| a["state"] == "ok").await;
    let got = receiver.wait_for(2).await;
    let body: Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(body["type"], "alert.resolved", "{body}");
    assert_eq!(verified(&secret, &got), vec![Ok(()), Ok(())]);
    let listed = events(&app, &id(&a)).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        (listed[0]["from"].as_str(), listed[0]["to"].as_str()),
        (Some("firing"), Some("ok"))
    );
    assert_eq!(
        (listed[1]["from"].as_str(), listed[1]["to"].as_str()),
        (Some("ok"), Some("firing"))
    );
    assert_eq!(listed[1]["deliveries"][0]["channel_id"], channel.as_str());
    let (_, deliveries) = json(app.get("/deliveries?kind=alert").await).await;
    assert_eq!(
        deliveries["data"]["deliveries"].as_array().unwrap().len(),
        2,
        "{deliveries}"
    );
}

/// Sets the Klip's stored value as a recompute would (the stream brings the change).
async fn set_value(app: &TestApp, k: &str, current: f64, previous: f64) {
    let klip: Klip = app
        .state
        .store
        .get(platform::store::keys::asset(
            domain::asset::Kind::Klip,
            &app.company.company_id,
            k,
        ))
        .await
        .unwrap()
        .unwrap();
    let mut value = klip.value.clone().unwrap();
    value.current = Some(current);
    value.previous = Some(previous);
    value.change_pct = Some((current - previous) / previous * 100.0);
    // Newer than any data version the source has: a recompute of the source's data that
    // lands late (the worker's, after the push in `klip`) cannot put its value back.
    value.data_version = Some(1_000_000 + value.data_version.unwrap_or(0));
    value.computed_at = Utc::now();
    app.state
        .store
        .assets()
        .set_klip_value(&klip, &value)
        .await
        .unwrap();
}

#[tokio::test]
async fn change_pct_follows_its_direction_and_first_time_pauses_after_firing() {
    let app = app().await;
    let (_, k) = klip(&app).await;
    let (receiver, channel, _) = hook(&app).await;
    let up = created(&app, "/alerts", json!({"name": "Up 10%", "klip_id": k, "frequency": "first_time",
        "condition": {"type": "change_pct", "value": 10, "direction": "up"}, "channels": [channel]})).await;
    let down = created(&app, "/alerts", json!({"name": "Down 10%", "klip_id": k,
        "condition": {"type": "change_pct", "value": 10, "direction": "down"}, "channels": [channel]})).await;
    let any = created(
        &app,
        "/alerts",
        json!({"name": "Any 10%", "klip_id": k, "notify_resolved": false,
        "condition": {"type": "change_pct", "value": 10}, "channels": [channel]}),
    )
    .await;
    set_value(&app, &k, 120.0, 100.0).await;
    let fired = alert_when(&app, &id(&up), |a| a["state"] == "firing").await;
    assert_eq!(fired["paused"], true, "first_time pauses itself: {fired}");
    alert_when(&app, &id(&any), |a| a["state"] == "firing").await;
    alert_when(&app, &id(&down), |a| a["last_value"] == 120.0).await;
    assert_eq!(
        alert(&app, &format!("/alerts/{}", id(&down))).await["state"],
        "ok"
    );
    receiver.wait_for(2).await;
    // Down 20%: `down` fires, `any` stays firing (quiet in its cooldown), `up` is paused.
    set_value(&app, &k, 80.0, 100.0).await;
    alert_when(&app, &id(&down), |a| a["state"] == "firing").await;
    alert_when(&app, &id(&any), |a| a["last_value"] == 80.0).await;
    receiver.wait_for(3).await;
    let up_now = alert(&app, &format!("/alerts/{}", id(&up))).await;
    assert_eq!(
        up_now["last_value"], 120.0,
        "a paused alert is not evaluated: {up_now}"
    );
    // Flat: `any` resolves without telling (notify_resolved false).
    set_value(&app, &k, 101.0, 100.0).await;
    alert_when(&app, &id(&any), |a| a["state"] == "ok").await;
    alert_when(&app, &id(&down), |a| a["state"] == "ok").await;
    receiver.wait_for(4).await; // down's alert.resolved
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let types: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        types.iter().filter(|t| *t == "alert.firing").count(),
        3,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| *t == "alert.resolved").count(),
        1,
        "{types:?}"
    );
}

#[tokio::test]
async fn target_thresholds_the_cooldown_and_one_firing_under_concurrent_evaluations() {
    let app = app().await;
    let (_, k) = klip(&app).await;
    let (receiver, channel, _) = hook(&app).await;
    let a = created(
        &app,
        "/alerts",
        json!({"name": "Over target", "klip_id": k, "cooldown_minutes": 5,
        "condition": {"type": "above", "value": "target"}, "channels": [channel]}),
    )
    .await;
    set_value(&app, &k, 150.0, 100.0).await;
    // The stream's worker and two more judge the same change at once: one firing.
    let stored: domain::alerts::Alert = app
        .state
        .store
        .get(platform::store::keys::asset(
            domain::asset::Kind::Alert,
            &app.company.company_id,
            &id(&a),
        ))
        .await
        .unwrap()
        .unwrap();
    let (x, y) = tokio::join!(
        pulseboard_report_worker::alerts::evaluate(&app.state, stored.clone()),
        pulseboard_report_worker::alerts::evaluate(&app.state, stored.clone()),
    );
    x.unwrap();
    y.unwrap();
    alert_when(&app, &id(&a), |a| a["state"] == "firing").await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(receiver.count(), 1);
    assert_eq!(events(&app, &id(&a)).await.len(), 1);
    // After the cooldown, still over: fired again.
    app.freeze(Utc::now() + Duration::minutes(6));
    let stored: domain::alerts::Alert = app
        .state
        .store
        .get(platform::store::keys::asset(
            domain::asset::Kind::Alert,
            &app.company.company_id,
            &id(&a),
        ))
        .await
        .unwrap()
        .unwrap();
    pulseboard_report_worker::alerts::evaluate(&app.state, stored)
        .await
        .unwrap();
    receiver.wait_for(2).await;
    let listed = events(&app, &id(&a)).await;
    assert_eq!(
        (listed[0]["from"].as_str(), listed[0]["to"].as_str()),
        (Some("firing"), Some("firing"))
    );
}

#[tokio::test]
async fn a_deleted_klip_puts_its_alerts_in_error_and_nothing_is_sent() {
    let app = app().await;
    let (_, k) = klip(&app).await;
    let (receiver, channel, _) = hook(&app).await;
    let a = created(
        &app,
        "/alerts",
        json!({"name": "A", "klip_id": k,
        "condition": {"type": "above", "value": 1000000}, "channels": [channel]}),
    )
    .await;
    let (status, _) = json(
        app.call("DELETE", &format!("/klips/{k}"), app.key(), None)
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let broken = alert_when(&app, &id(&a), |a| a["state"] == "error").await;
    assert!(
        broken["state_reason"].as_str().unwrap().contains("deleted"),
        "{broken}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let sent: Vec<String> = receiver.requests().into_iter().map(|r| r.body).collect();
    assert!(sent.is_empty(), "{sent:?}");
}

#[tokio::test]
async fn alerts_are_checked_scoped_to_their_company_and_to_klips_the_caller_reads() {
    let app = app().await;
    let other = super::notifications::app().await;
    let (_, k) = klip(&app).await;
    let (_, channel, _) = hook(&app).await;
    let body = expect_error(
        app.post(
            "/alerts",
            json!({"name": "A", "klip_id": k, "condition": {"type": "above"}, "channels": []}),
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
        fields.contains(&"condition.value") && fields.contains(&"channels"),
        "{body}"
    );
    let a = created(
        &app,
        "/alerts",
        json!({"name": "A", "klip_id": k,
        "condition": {"type": "above", "value": 1}, "channels": [channel]}),
    )
    .await;
    // Another company sees nothing of it and cannot watch the Klip.
    for (method, path) in [
        ("GET", format!("/alerts/{}", id(&a))),
        ("DELETE", format!("/alerts/{}", id(&a))),
        ("GET", format!("/alerts/{}/events", id(&a))),
    ] {
        expect_error(
            other.call(method, &path, other.key(), None).await,
            404,
            "not_found",
        )
        .await;
    }
    let body = expect_error(
        other
            .post(
                "/alerts",
                json!({"name": "B", "klip_id": k, "condition": {"type": "above", "value": 1},
                                     "channels": [channel]}),
            )
            .await,
        400,
        "validation_failed",
    )
    .await;
    assert!(
        body.to_string().contains("klip_id") && body.to_string().contains("channels[0]"),
        "{body}"
    );
    // A user who may manage alerts but not read the Klip cannot watch it.
    let (_, role) = json(
        app.post(
            "/roles",
            json!({"name": "Alerter", "permissions": ["alert.manage"]}),
        )
        .await,
    )
    .await;
    let (_, key) = app
        .user_with_key(&[role["data"]["id"].as_str().unwrap()], None)
        .await;
    let body = expect_error(
        app.call(
            "POST",
            "/alerts",
            &key,
            Some(json!({"name": "C", "klip_id": k,
            "condition": {"type": "above", "value": 1}, "channels": [channel]})),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert!(body.to_string().contains("klip_id"), "{body}");
    // Alerts need alert.manage.
    let (_, viewer) = app.user_with_key(&["viewer"], None).await;
    expect_error(
        app.call("GET", "/alerts", &viewer, None).await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn an_anomaly_alert_agrees_with_the_report_analysis() {
    let app = app().await;
    // 40 days of about 100 a day, and 500 yesterday (the latest complete day).
    let today = Utc::now()
        .with_timezone(&chrono_tz::America::New_York)
        .date_naive();
    let mut csv = String::from("day,n\n");
    for back in (0..40).rev() {
        let n = if back == 1 { 500 } else { 100 + back % 3 };
        csv.push_str(&format!("{},{n}\n", today - Duration::days(back)));
    }
    let ds = created(
        &app,
        "/datasources",
        json!({"name": "Daily", "format": "csv"}),
    )
    .await;
    let k = created(&app, "/klips", json!({"name": "Daily n", "type": "line", "datasource_id": id(&ds),
        "query": {"value": "n", "aggregate": "sum", "time_column": "day", "time_bucket": "day", "range": "last_30_days"}})).await;
    let (receiver, channel, _) = hook(&app).await;
    let a = created(
        &app,
        "/alerts",
        json!({"name": "Odd day", "klip_id": id(&k),
        "condition": {"type": "anomaly"}, "channels": [channel]}),
    )
    .await;
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
    // (Before the data, the Klip has no complete day: the alert may pass through `error`.)
    let fired = alert_when(&app, &id(&a), |a| a["state"] == "firing").await;
    assert_eq!(fired["last_value"], 500.0, "{fired}");
    let got = receiver.wait_for(1).await;
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    let text = body["data"]["text"].as_str().unwrap();
    assert!(text.contains("method:"), "{text}");
    // The report over the same Klip names an anomaly on the same day.
    let report = created(
        &app,
        "/reports",
        json!({"name": "Check", "klip_ids": [id(&k)], "format": "json"}),
    )
    .await;
    let (_, run) = json(
        app.post(&format!("/reports/{}/generate", id(&report)), json!({}))
            .await,
    )
    .await;
    let run = id(&run["data"]);
    for _ in 0..300 {
        let (_, r) = json(
            app.get(&format!("/reports/{}/runs/{run}", id(&report)))
                .await,
        )
        .await;
        if r["data"]["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let file = app
        .get(&format!("/reports/{}/download", id(&report)))
        .await
        .text()
        .await
        .unwrap();
    let yesterday = (today - Duration::days(1)).to_string();
    let doc: Value = serde_json::from_str(&file).unwrap();
    let anomalies: Vec<&Value> = doc["sections"][0]["insights"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "anomaly")
        .collect();
    assert!(
        anomalies
            .iter()
            .any(|i| i["values"]["date"] == yesterday.as_str()),
        "{doc}"
    );
}

#[tokio::test]
async fn an_evaluation_moves_the_alerts_version_so_an_edit_from_before_it_is_412() {
    let app = app().await;
    let (_, k) = klip(&app).await;
    let (_, channel, _) = hook(&app).await;
    let a = created(
        &app,
        "/alerts",
        json!({"name": "A", "klip_id": k,
        "condition": {"type": "above", "value": 1000}, "channels": [channel]}),
    )
    .await;
    let tag = pulseboard_tests::fixtures::current_etag(&app, &format!("/alerts/{}", id(&a))).await;
    set_value(&app, &k, 5.0, 4.0).await;
    alert_when(&app, &id(&a), |a| a["last_value"] == 5.0).await;
    let judged = settled(&app, &id(&a)).await;
    assert!(
        judged["version"].as_u64().unwrap() > a["version"].as_u64().unwrap(),
        "{judged}"
    );
    let r = pulseboard_tests::fixtures::put_if_match(
        &app,
        &format!("/alerts/{}", id(&a)),
        &tag,
        json!({"name": "Renamed"}),
    )
    .await;
    expect_error(r, 412, "precondition_failed").await;
    // With the current version the edit goes through, and keeps the evaluation's state.
    let tag = pulseboard_tests::fixtures::current_etag(&app, &format!("/alerts/{}", id(&a))).await;
    let r = pulseboard_tests::fixtures::put_if_match(
        &app,
        &format!("/alerts/{}", id(&a)),
        &tag,
        json!({"name": "Renamed"}),
    )
    .await;
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["last_value"], 5.0, "{body}");
}

/// An alert found by the Klip it watches: moved to another Klip, it is judged on that one's
/// changes and no longer on the first's.
#[tokio::test]
async fn an_alert_moved_to_another_klip_is_judged_on_that_klip() {
    let app = app().await;
    let (ds_a, k_a) = klip(&app).await;
    let (ds_b, k_b) = klip(&app).await;
    let (receiver, channel, _) = hook(&app).await;
    let a = created(
        &app,
        "/alerts",
        json!({"name": "Moves", "klip_id": k_a,
        "condition": {"type": "above", "value": 100}, "channels": [channel]}),
    )
    .await;
    let r = app
        .call(
            "PUT",
            &format!("/alerts/{}", id(&a)),
            app.key(),
            Some(json!({"klip_id": k_b})),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // The first Klip crosses the line: a witness still on it fires, the moved alert does
    // not (it no longer watches that Klip).
    let witness = created(
        &app,
        "/alerts",
        json!({"name": "Witness", "klip_id": k_a,
        "condition": {"type": "above", "value": 100}, "channels": [channel]}),
    )
    .await;
    push(&app, &ds_a, &[500.0]).await;
    alert_when(&app, &id(&witness), |a| a["state"] == "firing").await;
    let still = alert(&app, &format!("/alerts/{}", id(&a))).await;
    assert_eq!(still["state"], "ok", "{still}");
    // The second does: it fires.
    push(&app, &ds_b, &[300.0]).await;
    let firing = alert_when(&app, &id(&a), |a| a["state"] == "firing").await;
    assert_eq!(firing["last_value"], 300.0, "{firing}");
    let got = receiver.wait_for(2).await;
    let moved: Vec<Value> = got
        .iter()
        .map(|g| serde_json::from_str::<Value>(&g.body).unwrap())
        .filter(|b| b["data"]["alert"]["id"] == id(&a))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0]["data"]["klip"]["id"], k_b);
}
