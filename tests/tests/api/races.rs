//! Two requests that overlap on one item: the one that writes second meets the database's
//! refusal and answers its documented 409 or 412, and the first one's change stays. Each
//! race is staged with [`Raced`]: the tested request goes through a proxy to DynamoDB Local
//! that holds back its write until another request (straight to the database) has changed
//! the same item.

use pulseboard_tests::race::{Raced, Racer};
use pulseboard_tests::{json, TestApp};
use serde_json::{json, Value};

/// A request of the app's admin that must answer 200: the change that wins the race.
fn winner(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> Racer {
    let request = app
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            app.url(path),
        )
        .header("kf-api-key", app.key());
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let label = format!("{method} {path}");
    Box::pin(async move {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 200, "the winning {label}: {text}");
    })
}

/// `POST path body` as the admin; answers the created id.
async fn create(app: &TestApp, path: &str, body: Value) -> String {
    let (status, created) = json(app.post(path, body).await).await;
    assert_eq!(status, 201, "{path}: {created}");
    created["data"]["id"].as_str().unwrap().to_owned()
}

/// Sends the losing request through `raced` after arming it on `needle` with `racer`;
/// asserts the racer ran and the answer is `status` with `code`.
async fn lose(
    app: &TestApp,
    raced: &Raced,
    needle: &str,
    racer: Racer,
    (method, path, body): (&str, String, Option<Value>),
    status: u16,
    code: &str,
) {
    let fired = raced.fired();
    raced.arm(needle, racer);
    let mut request = app
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}/api/v1{path}", raced.base),
        )
        .header("kf-api-key", app.key());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(
        raced.fired(),
        fired + 1,
        "{method} {path}: no write met the race ({got}: {text})"
    );
    assert_eq!(got, status, "{method} {path}: {text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"], code, "{method} {path}: {text}");
}

#[tokio::test]
async fn a_delete_that_loses_to_another_delete_is_409() {
    let app = TestApp::spawn().await;
    let raced = Raced::of(&app).await;
    let dashboard = create(&app, "/dashboards", json!({"name": "D"})).await;
    let klip = create(
        &app,
        "/klips",
        json!({"name": "K", "type": "number", "query": {"aggregate": "count"}}),
    )
    .await;
    let report = create(
        &app,
        "/reports",
        json!({"name": "R", "dashboard_id": dashboard}),
    )
    .await;
    let key = create(&app, "/api-keys", json!({"name": "k"})).await;
    let channel = create(
        &app,
        "/channels",
        json!({"name": "C", "type": "email", "email": {"to": ["ops@example.com"]}}),
    )
    .await;
    let alert = create(
        &app,
        "/alerts",
        json!({"name": "A", "klip_id": klip, "condition": {"type": "above", "value": 1},
               "channels": [channel]}),
    )
    .await;
    for path in [
        format!("/alerts/{alert}"),
        format!("/channels/{channel}"),
        format!("/reports/{report}"),
        format!("/klips/{klip}"),
        format!("/dashboards/{dashboard}"),
        format!("/api-keys/{key}"),
    ] {
        let id = path.rsplit('/').next().unwrap().to_owned();
        let racer = winner(&app, "DELETE", &path, None);
        lose(
            &app,
            &raced,
            &id,
            racer,
            ("DELETE", path.clone(), None),
            409,
            "conflict",
        )
        .await;
    }
}

#[tokio::test]
async fn a_client_account_changed_meanwhile_is_409_and_keeps_the_other_change() {
    let app = TestApp::spawn().await;
    let raced = Raced::of(&app).await;
    let client = create(
        &app,
        "/clients",
        json!({"name": "Acme", "status": "active"}),
    )
    .await;
    let (status, _) = json(
        app.call(
            "PUT",
            &format!("/clients/{client}/properties"),
            app.key(),
            Some(json!({"properties": {"region": "emea"}})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let losers: Vec<(&str, String, Option<Value>)> = vec![
        (
            "PUT",
            format!("/clients/{client}"),
            Some(json!({"seats": 3})),
        ),
        (
            "PUT",
            format!("/clients/{client}/features"),
            Some(json!({"features": [{"name": "public_dashboards", "enabled": false}]})),
        ),
        (
            "PUT",
            format!("/clients/{client}/properties"),
            Some(json!({"properties": {"tier": 2}})),
        ),
        (
            "DELETE",
            format!("/clients/{client}/properties?name=region"),
            None,
        ),
        (
            "PUT",
            format!("/clients/{client}/resources"),
            Some(json!({"resources": [{"name": "api.requests.perDay", "value": 20}]})),
        ),
    ];
    for (i, loser) in losers.into_iter().enumerate() {
        let name = format!("Raced {i}");
        let racer = winner(
            &app,
            "PUT",
            &format!("/clients/{client}"),
            Some(json!({"name": name})),
        );
        lose(&app, &raced, &client, racer, loser, 409, "conflict").await;
        let (_, shown) = json(app.get(&format!("/clients/{client}")).await).await;
        assert_eq!(shown["data"]["name"], name.as_str(), "{shown}");
    }
    // The losers changed nothing.
    let (_, shown) = json(app.get(&format!("/clients/{client}")).await).await;
    assert_ne!(shown["data"]["seats"], 3, "{shown}");
    let (_, props) = json(app.get(&format!("/clients/{client}/properties")).await).await;
    assert_eq!(
        props["data"]["properties"],
        json!({"region": "emea"}),
        "{props}"
    );
}

#[tokio::test]
async fn a_membership_change_of_a_user_changed_meanwhile_is_409() {
    let app = TestApp::spawn().await;
    let raced = Raced::of(&app).await;
    let group = create(&app, "/groups", json!({"name": "G"})).await;
    let (user, _) = app.user_with_key(&["viewer"], None).await;
    let uid = user["id"].as_str().unwrap().to_owned();
    let rename = |n: usize| {
        winner(
            &app,
            "PUT",
            &format!("/users/{uid}"),
            Some(json!({"first_name": format!("Raced{n}")})),
        )
    };
    lose(
        &app,
        &raced,
        &uid,
        rename(1),
        (
            "POST",
            format!("/groups/{group}/members"),
            Some(json!({"users": [uid]})),
        ),
        409,
        "conflict",
    )
    .await;
    lose(
        &app,
        &raced,
        &uid,
        rename(2),
        ("PUT", format!("/groups/{group}/members/{uid}"), None),
        409,
        "conflict",
    )
    .await;
    // A member now, then the removals race.
    let response = app
        .call(
            "PUT",
            &format!("/groups/{group}/members/{uid}"),
            app.key(),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    lose(
        &app,
        &raced,
        &uid,
        rename(3),
        ("DELETE", format!("/groups/{group}/members/{uid}"), None),
        409,
        "conflict",
    )
    .await;
    lose(
        &app,
        &raced,
        &uid,
        rename(4),
        ("DELETE", format!("/groups/{group}"), None),
        409,
        "conflict",
    )
    .await;
    let (_, shown) = json(app.get(&format!("/users/{uid}")).await).await;
    assert_eq!(shown["data"]["first_name"], "Raced4", "{shown}");
}

#[tokio::test]
async fn a_write_to_an_asset_saved_meanwhile_is_412_or_applied_again_without_if_match() {
    let app = TestApp::spawn().await;
    let raced = Raced::of(&app).await;
    let dashboard = create(&app, "/dashboards", json!({"name": "D"})).await;
    let (status, link) = json(
        app.post(
            &format!("/dashboards/{dashboard}/published-links"),
            json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{link}");
    let token = link["data"]["token"].as_str().unwrap().to_owned();
    let link = link["data"]["id"].as_str().unwrap().to_owned();
    let klip = create(
        &app,
        "/klips",
        json!({"name": "K", "type": "number", "query": {"aggregate": "count"}}),
    )
    .await;
    let annotation = create(
        &app,
        &format!("/klips/{klip}/annotations"),
        json!({"date": "2026-01-01", "text": "first"}),
    )
    .await;
    let source = create(&app, "/datasources", json!({"name": "S", "format": "csv"})).await;
    let rename = |path: String, n: usize| {
        winner(
            &app,
            "PUT",
            &path,
            Some(json!({"name": format!("Raced{n}")})),
        )
    };

    let dash = format!("/dashboards/{dashboard}");
    lose(
        &app,
        &raced,
        &dashboard,
        rename(dash.clone(), 1),
        ("DELETE", format!("{dash}/published-links/{link}"), None),
        412,
        "precondition_failed",
    )
    .await;
    // The refused revocation left the link whole: listed, and its token still answers.
    let (status, shown) = json(app.get(&format!("{dash}/published-links/{link}")).await).await;
    assert_eq!(status, 200, "{shown}");
    let public = app
        .http
        .get(app.url(&format!("/public/dashboards/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    let k = format!("/klips/{klip}");
    let annotations = format!("{k}/annotations");
    let losers: Vec<(&str, String, Option<Value>)> = vec![
        (
            "POST",
            annotations.clone(),
            Some(json!({"date": "2026-01-02", "text": "second"})),
        ),
        (
            "PUT",
            format!("{annotations}/{annotation}"),
            Some(json!({"text": "changed"})),
        ),
        ("DELETE", format!("{annotations}/{annotation}"), None),
    ];
    for (i, loser) in losers.into_iter().enumerate() {
        lose(
            &app,
            &raced,
            &klip,
            rename(k.clone(), 10 + i),
            loser,
            412,
            "precondition_failed",
        )
        .await;
    }
    let (_, notes) = json(app.get(&annotations).await).await;
    assert_eq!(notes["meta"]["total"], 1, "{notes}");
    assert_eq!(notes["data"]["annotations"][0]["text"], "first", "{notes}");

    let s = format!("/datasources/{source}");
    lose(
        &app,
        &raced,
        &source,
        rename(s.clone(), 20),
        ("POST", format!("{s}/disable"), None),
        412,
        "precondition_failed",
    )
    .await;
    let response = app
        .call("POST", &format!("{s}/disable"), app.key(), None)
        .await;
    assert_eq!(response.status(), 200);
    lose(
        &app,
        &raced,
        &source,
        rename(s.clone(), 21),
        ("POST", format!("{s}/enable"), None),
        412,
        "precondition_failed",
    )
    .await;
    let (_, shown) = json(app.get(&s).await).await;
    assert_eq!(shown["data"]["name"], "Raced21", "{shown}");
    assert_eq!(shown["data"]["disabled"], true, "{shown}");

    // A webhook channel renamed while its secret rotates: the rotation is refused, and
    // the secret it would have answered never signs.
    let hook = create(
        &app,
        "/channels",
        json!({"name": "H", "type": "webhook", "url": "https://93.184.215.14/in"}),
    )
    .await;
    let c = format!("/channels/{hook}");
    lose(
        &app,
        &raced,
        &hook,
        rename(c.clone(), 30),
        ("POST", format!("{c}/rotate-secret"), None),
        412,
        "precondition_failed",
    )
    .await;
    let (_, shown) = json(app.get(&c).await).await;
    assert_eq!(shown["data"]["name"], "Raced30", "{shown}");

    // An alert paused (without If-Match) while another request renames it: an update
    // without If-Match sets no precondition, so the pause is applied to the renamed alert
    // and both changes stay (with a stale If-Match it would be a 412).
    let alert = create(
        &app,
        "/alerts",
        json!({"name": "A", "klip_id": klip, "condition": {"type": "above", "value": 1},
               "channels": [hook]}),
    )
    .await;
    let a = format!("/alerts/{alert}");
    let fired = raced.fired();
    raced.arm(&alert, rename(a.clone(), 40));
    let response = app
        .http
        .put(format!("{}/api/v1{a}", raced.base))
        .header("kf-api-key", app.key())
        .json(&json!({"paused": true}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(
        raced.fired(),
        fired + 1,
        "no write met the race ({status}: {text})"
    );
    assert_eq!(status, 200, "{text}");
    let (_, shown) = json(app.get(&a).await).await;
    assert_eq!(shown["data"]["name"], "Raced40", "{shown}");
    assert_eq!(shown["data"]["paused"], true, "{shown}");
}

#[tokio::test]
async fn a_profile_edit_that_loses_to_a_password_reset_is_409_and_the_new_password_holds() {
    let app = TestApp::spawn().await;
    let raced = Raced::of(&app).await;
    let (user, _) = app.user_with_key(&["viewer"], None).await;
    let (uid, email) = (
        user["id"].as_str().unwrap().to_owned(),
        user["email"].as_str().unwrap().to_owned(),
    );
    let (status, reset) = json(
        app.call(
            "POST",
            &format!("/users/{uid}/reset-password"),
            app.key(),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{reset}");
    let new_password = "a-brand-new-password";
    let racer = winner(
        &app,
        "POST",
        "/auth/reset-password",
        Some(json!({"token": reset["data"]["token"], "password": new_password})),
    );
    lose(
        &app,
        &raced,
        &uid,
        racer,
        (
            "PUT",
            format!("/users/{uid}"),
            Some(json!({"first_name": "Edited"})),
        ),
        409,
        "conflict",
    )
    .await;
    let login = app
        .http
        .post(app.url("/auth/login"))
        .json(&json!({"email": email, "password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
}
