//! Report schedules' budget (API.md §6 reports): a company's schedules may add up to
//! `reports.scheduledRunsPerDay` runs a day (default 1,440); a schedule past it is a 409
//! `limit_reached`, on create and on update. A cron counts (minutes it fires) × (hours it
//! fires) runs a day; a paused schedule counts none.

use pulseboard_tests::{expect_error, json, TestApp};
use serde_json::{json, Value};

/// A dashboard of the company (`client_id` inside a client); answers its id.
async fn dashboard(app: &TestApp, client: &str) -> String {
    let (status, body) = json(
        app.call(
            "POST",
            &format!("/dashboards{client}"),
            app.key(),
            Some(json!({"name": "Board"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

/// `method path` with `body`; answers the status and the body.
async fn send(app: &TestApp, method: &str, path: &str, body: Value) -> (u16, Value) {
    json(app.call(method, path, app.key(), Some(body)).await).await
}

async fn refused(app: &TestApp, method: &str, path: &str, body: Value) -> Value {
    let body = expect_error(
        app.call(method, path, app.key(), Some(body)).await,
        409,
        "limit_reached",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("reports.scheduledRunsPerDay"),
        "{body}"
    );
    body
}

fn scheduled(name: &str, dashboard: &str, cron: &str, paused: bool) -> Value {
    json!({"name": name, "dashboard_id": dashboard,
        "schedule": {"cron": cron, "timezone": "UTC", "paused": paused}})
}

#[tokio::test]
async fn schedules_past_the_daily_run_budget_are_refused_on_create_and_update() {
    let app = TestApp::spawn().await;
    let board = dashboard(&app, "").await;
    // Every minute: 1,440 runs a day, the whole default budget.
    let (status, every) = send(
        &app,
        "POST",
        "/reports",
        scheduled("Every minute", &board, "* * * * *", false),
    )
    .await;
    assert_eq!(status, 201, "{every}");
    let every = every["data"]["id"].as_str().unwrap().to_owned();
    // One more run a day is past it...
    let body = refused(
        &app,
        "POST",
        "/reports",
        scheduled("Daily", &board, "0 9 * * *", false),
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("1440"), "{body}");
    // ...while a paused schedule adds nothing, and a report without one neither.
    let (status, daily) = send(
        &app,
        "POST",
        "/reports",
        scheduled("Daily", &board, "0 9 * * *", true),
    )
    .await;
    assert_eq!(status, 201, "{daily}");
    let daily = daily["data"]["id"].as_str().unwrap().to_owned();
    let (status, body) = send(
        &app,
        "POST",
        "/reports",
        json!({"name": "Unscheduled", "dashboard_id": board}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Resuming the paused one is past it too (an update).
    refused(
        &app,
        "PUT",
        &format!("/reports/{daily}"),
        json!({"schedule": {"cron": "0 9 * * *", "timezone": "UTC"}}),
    )
    .await;
    // Every two minutes (720) leaves room: the one being saved replaces its old count.
    let (status, body) = send(
        &app,
        "PUT",
        &format!("/reports/{every}"),
        json!({"schedule": {"cron": "*/2 * * * *", "timezone": "UTC"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        &app,
        "PUT",
        &format!("/reports/{daily}"),
        json!({"schedule": {"cron": "0 9 * * *", "timezone": "UTC"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // 720 + 1 + 1,440 would be past it; an edit that leaves the schedule alone is not.
    refused(
        &app,
        "PUT",
        &format!("/reports/{every}"),
        json!({"schedule": {"cron": "* * * * *", "timezone": "UTC"}}),
    )
    .await;
    let (status, body) = send(
        &app,
        "PUT",
        &format!("/reports/{every}"),
        json!({"name": "Every other minute"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A cron counts (minutes) × (hours) a day it fires: 4 × 10 on weekdays = 40 runs,
    // 720 + 1 + 40 is within it, 50 reports every minute are not.
    let (status, body) = send(
        &app,
        "POST",
        "/reports",
        scheduled("Office hours", &board, "*/15 8-17 * * mon-fri", false),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    refused(
        &app,
        "POST",
        "/reports",
        scheduled("Greedy", &board, "* * * * *", false),
    )
    .await;
}

#[tokio::test]
async fn a_clients_schedule_budget_is_a_resource_the_partner_sets() {
    let partner = TestApp::spawn().await;
    let (status, client) = json(partner.post("/clients", json!({"name": "Hourly"})).await).await;
    assert_eq!(status, 201, "{client}");
    let cid = client["data"]["id"].as_str().unwrap().to_owned();
    let resources = format!("/clients/{cid}/resources");
    let (_, shown) = json(partner.get(&resources).await).await;
    assert!(
        shown["data"]["resources"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "reports.scheduledRunsPerDay", "value": 1440})),
        "{shown}"
    );
    let (status, shown) = send(
        &partner,
        "PUT",
        &resources,
        json!({"resources": [{"name": "reports.scheduledRunsPerDay", "value": 24}]}),
    )
    .await;
    assert_eq!(status, 200, "{shown}");
    assert!(
        shown["data"]["resources"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "reports.scheduledRunsPerDay", "value": 24})),
        "{shown}"
    );
    let (status, body) = send(
        &partner,
        "PUT",
        &resources,
        json!({"resources": [{"name": "reports.scheduledRunsPerDay", "value": -2}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let inside = format!("?client_id={cid}");
    let board = dashboard(&partner, &inside).await;
    let (status, body) = send(
        &partner,
        "POST",
        &format!("/reports{inside}"),
        scheduled("Hourly", &board, "0 * * * *", false),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    refused(
        &partner,
        "POST",
        &format!("/reports{inside}"),
        scheduled("Daily", &board, "30 9 * * *", false),
    )
    .await;
    // The partner's own company keeps the default.
    let own = dashboard(&partner, "").await;
    let (status, body) = send(
        &partner,
        "POST",
        "/reports",
        scheduled("Daily", &own, "30 9 * * *", false),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // -1: no budget.
    let (status, body) = send(
        &partner,
        "PUT",
        &resources,
        json!({"resources": [{"name": "reports.scheduledRunsPerDay", "value": -1}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        &partner,
        "POST",
        &format!("/reports{inside}"),
        scheduled("Daily", &board, "30 9 * * *", false),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}
