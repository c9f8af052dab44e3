//! The audit log (API.md §6 "audit"): recorded from the table's stream by the audit
//! recorder (delivered here as Lambda's mapping delivers it), read with `GET /audit-events`.

use pulseboard_tests::{expect_error, json, unique_email, Options, TestApp, PASSWORD};
use serde_json::{json, Value};
use std::time::Duration;

/// The audit log page `query` of `key`, once it holds at least `wanted` events (the stream
/// reaches the recorder a moment after each change); panics after 30 s.
async fn events_when(app: &TestApp, key: &str, query: &str, wanted: u64) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (status, body) = json(
            app.call("GET", &format!("/audit-events{query}"), key, None)
                .await,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // The page and the total are two reads made at once: an event the recorder writes
        // between them is counted but not listed yet, so both must show it.
        let listed = body["data"]["audit_events"].as_array().map_or(0, Vec::len) as u64;
        let limit = body["meta"]["limit"].as_u64().unwrap_or(25);
        if body["meta"]["total"].as_u64().unwrap() >= wanted && listed >= wanted.min(limit) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{query}: {wanted} events did not come: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn listed(body: &Value) -> Vec<Value> {
    body["data"]["audit_events"].as_array().unwrap().clone()
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn creates_updates_and_deletes_name_their_actor_request_and_fields() {
    let app = TestApp::spawn().await;
    let (user, key) = app.user_with_key(&["admin"], None).await;
    let email = user["email"].as_str().unwrap();
    let created = app
        .call("POST", "/dashboards", &key, Some(json!({"name": "Ops"})))
        .await;
    assert_eq!(created.status(), 201);
    let (_, dash) = json(created).await;
    let id = dash["data"]["id"].as_str().unwrap().to_owned();
    let path = format!("/dashboards/{id}");
    let updated = app
        .call(
            "PUT",
            &path,
            &key,
            Some(json!({"name": "Ops 2", "description": "weekly"})),
        )
        .await;
    assert_eq!(updated.status(), 200);
    let update_request = request_id(&updated);
    let deleted = app.call("DELETE", &path, &key, None).await;
    assert_eq!(deleted.status(), 200);
    let delete_request = request_id(&deleted);

    let body = events_when(&app, app.key(), &format!("?resource_id={id}"), 3).await;
    let events = listed(&body);
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["deleted", "updated", "created"],
        "newest first: {body}"
    );
    for e in &events {
        assert_eq!(e["actor"]["type"], "api_key", "{e}");
        assert_eq!(e["actor"]["email"], email, "{e}");
        assert_eq!(e["resource"]["type"], "dashboard");
        assert_eq!(e["resource"]["id"], id.as_str());
        assert_eq!(e["id"].as_str().unwrap().len(), 32);
    }
    // The delete names its actor and request, though the item is gone.
    assert_eq!(events[0]["request_id"], delete_request.as_str());
    assert_eq!(events[0]["resource"]["name"], "Ops 2", "{}", events[0]);
    assert_eq!(events[1]["request_id"], update_request.as_str());
    assert_eq!(
        events[1]["changes"],
        json!([
            {"field": "description", "from": null, "to": "weekly"},
            {"field": "name", "from": "Ops", "to": "Ops 2"}
        ])
    );
    // A key's actor id is the key's: filtering by it finds all three.
    let actor = events[0]["actor"]["id"].as_str().unwrap();
    let by_actor = events_when(
        &app,
        app.key(),
        &format!("?actor_id={actor}&resource_type=dashboard"),
        3,
    )
    .await;
    assert_eq!(by_actor["meta"]["total"], 3, "{by_actor}");
}

#[tokio::test]
async fn sign_ins_keys_roles_and_users_are_recorded() {
    let app = TestApp::spawn().await;
    // A sign-in, and a failed one.
    app.login().await;
    let failed = app
        .http
        .post(app.url("/auth/login"))
        .json(&json!({"email": app.company.email, "password": "not-the-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    let body = events_when(&app, app.key(), "?action=login", 1).await;
    let login = &listed(&body)[0];
    assert_eq!(login["actor"]["type"], "user");
    assert_eq!(login["actor"]["email"], app.company.email.as_str());
    assert_eq!(login["resource"]["type"], "user");
    let body = events_when(&app, app.key(), "?action=login_failed", 1).await;
    assert_eq!(
        listed(&body)[0]["resource"]["name"],
        app.company.email.as_str()
    );

    // A key created, rotated (the old one's `key_rotated`), revoked.
    let made = app.create_key(json!({"name": "ci"})).await;
    let kid = made["id"].as_str().unwrap().to_owned();
    let (status, rotated) = json(
        app.post(&format!("/api-keys/{kid}/rotate"), json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{rotated}");
    let new_id = rotated["data"]["id"].as_str().unwrap().to_owned();
    let revoked = app
        .call("DELETE", &format!("/api-keys/{new_id}"), app.key(), None)
        .await;
    assert_eq!(revoked.status(), 200);
    let body = events_when(&app, app.key(), &format!("?resource_id={kid}"), 2).await;
    let actions: Vec<Value> = listed(&body).iter().map(|e| e["action"].clone()).collect();
    assert_eq!(actions, [json!("key_rotated"), json!("created")], "{body}");
    assert_eq!(
        listed(&body)[0]["changes"],
        json!([{"field": "replaced_by", "from": null, "to": new_id}])
    );
    let body = events_when(&app, app.key(), "?action=key_revoked", 1).await;
    assert_eq!(listed(&body)[0]["resource"]["id"], new_id.as_str());
    assert_eq!(listed(&body)[0]["resource"]["type"], "api_key");

    // A role's permissions changed; a user's roles changed.
    let (_, role) = json(
        app.post(
            "/roles",
            json!({"name": "Auditor", "permissions": ["audit.read"]}),
        )
        .await,
    )
    .await;
    let rid = role["data"]["id"].as_str().unwrap().to_owned();
    let put = app
        .call(
            "PUT",
            &format!("/roles/{rid}"),
            app.key(),
            Some(json!({"name": "Auditor", "permissions": ["audit.read", "report.download"]})),
        )
        .await;
    assert_eq!(put.status(), 200);
    let body = events_when(
        &app,
        app.key(),
        &format!("?resource_id={rid}&action=updated"),
        1,
    )
    .await;
    let change = &listed(&body)[0]["changes"][0];
    assert_eq!(change["field"], "permissions");
    assert_eq!(change["from"], json!(["audit.read"]));
    assert_eq!(change["to"], json!(["audit.read", "report.download"]));
    let (user, _) = app.user_with_key(&["viewer"], None).await;
    let uid = user["id"].as_str().unwrap();
    let put = app
        .call(
            "PUT",
            &format!("/users/{uid}"),
            app.key(),
            Some(json!({"roles": ["editor"]})),
        )
        .await;
    assert_eq!(put.status(), 200, "{:?}", put.text().await);
    let body = events_when(
        &app,
        app.key(),
        &format!("?resource_id={uid}&action=updated"),
        1,
    )
    .await;
    let changes = &listed(&body)[0]["changes"];
    assert!(
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "roles" && c["to"] == json!(["editor"])),
        "{changes}"
    );
    // The company's first items were made by a command: the system.
    let body = events_when(&app, app.key(), "?resource_type=user&action=created", 2).await;
    let first = listed(&body).last().unwrap().clone();
    assert_eq!(
        first["actor"],
        json!({"type": "system", "id": null, "email": null}),
        "{first}"
    );
    assert_eq!(first["request_id"], Value::Null);
}

#[tokio::test]
async fn no_secret_reaches_an_event() {
    // Webhook channels may point at loopback here.
    let app = TestApp::spawn_with(Options {
        allowed_networks: vec![("127.0.0.1".parse().unwrap(), 32)],
        ..Options::default()
    })
    .await;
    let mut secrets = vec![PASSWORD.to_owned(), app.key().to_owned()];
    let (_, key) = app.user_with_key(&["admin"], None).await;
    secrets.push(key.clone());
    let made = app.create_key(json!({"name": "deploy"})).await;
    secrets.push(made["key"].as_str().unwrap().to_owned());
    let (status, ds) = json(app.post("/datasources", json!({"name": "Feed", "connector": "url", "format": "json",
        "properties": {"endpoint_url": "https://feeduser:urlpass-77@example.com/feed?token=qtoken-88", "json_path": "$.items",
                       "headers": {"X-Token": "header-secret-99"}}})).await).await;
    assert_eq!(status, 201, "{ds}");
    secrets.extend(["urlpass-77", "qtoken-88", "header-secret-99"].map(String::from));
    let ds_id = ds["data"]["id"].as_str().unwrap().to_owned();
    let put = app
        .call(
            "PUT",
            &format!("/datasources/{ds_id}/properties"),
            app.key(),
            Some(json!({"properties": {"headers": {"X-Token": "header-secret-100"}}})),
        )
        .await;
    assert_eq!(put.status(), 200, "{:?}", put.text().await);
    secrets.push("header-secret-100".into());
    let (status, ch) = json(app.post("/channels", json!({"name": "Hook", "type": "webhook", "url": "http://127.0.0.1:9/hook?sig=hooksig-55"})).await).await;
    assert_eq!(status, 201, "{ch}");
    secrets.push(ch["data"]["secret"].as_str().unwrap().to_owned());
    secrets.push("hooksig-55".into());
    let ch_id = ch["data"]["id"].as_str().unwrap().to_owned();
    let (status, rotated) = json(
        app.post(&format!("/channels/{ch_id}/rotate-secret"), json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    if let Some(s) = rotated["data"]["secret"].as_str() {
        secrets.push(s.to_owned());
    }
    let new_password = "An0ther-Passw0rd!";
    let (user, _) = app.user_with_key(&["viewer"], None).await;
    let uid = user["id"].as_str().unwrap();
    let put = app
        .call(
            "PUT",
            &format!("/users/{uid}"),
            app.key(),
            Some(json!({"password": new_password})),
        )
        .await;
    assert_eq!(put.status(), 200, "{:?}", put.text().await);
    secrets.push(new_password.into());

    // Wait for the last changes (the password, the rotation), then read every event.
    events_when(
        &app,
        app.key(),
        &format!("?resource_id={uid}&action=updated"),
        1,
    )
    .await;
    events_when(
        &app,
        app.key(),
        &format!("?resource_id={ch_id}&action=updated"),
        1,
    )
    .await;
    events_when(
        &app,
        app.key(),
        &format!("?resource_id={ds_id}&action=updated"),
        1,
    )
    .await;
    let (_, all) = json(app.get("/audit-events?limit=100").await).await;
    let text = all.to_string();
    assert!(all["meta"]["total"].as_u64().unwrap() >= 8, "{all}");
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "secret {secret} in the audit log: {text}"
        );
    }
    // What changed is still said, masked.
    let body = events_when(
        &app,
        app.key(),
        &format!("?resource_id={uid}&action=updated"),
        1,
    )
    .await;
    let fields: Vec<Value> = listed(&body)[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].clone())
        .collect();
    assert!(fields.contains(&json!("password_hash")), "{body}");
    assert!(text.contains("example.com/feed"), "{text}");
}

#[tokio::test]
async fn filters_paging_and_the_permission() {
    let app = TestApp::spawn().await;
    let before = chrono::Utc::now();
    for n in 0..5 {
        let r = app
            .post("/dashboards", json!({"name": format!("D{n}")}))
            .await;
        assert_eq!(r.status(), 201);
    }
    let body = events_when(
        &app,
        app.key(),
        "?resource_type=dashboard&action=created",
        5,
    )
    .await;
    assert_eq!(body["meta"]["total"], 5);
    let events = listed(&body);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["resource"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["D4", "D3", "D2", "D1", "D0"]);
    // Pages of 2, with links.
    let (_, page) = json(
        app.get("/audit-events?resource_type=dashboard&limit=2&offset=2")
            .await,
    )
    .await;
    assert_eq!(page["meta"]["count"], 2);
    assert_eq!(page["meta"]["total"], 5);
    assert_eq!(listed(&page)[0]["resource"]["name"], "D2");
    assert!(
        page["meta"]["next"].as_str().unwrap().contains("offset=4"),
        "{page}"
    );
    // since / until bound the time.
    let (_, none) = json(
        app.get(&format!(
            "/audit-events?resource_type=dashboard&until={}",
            before.timestamp() - 1
        ))
        .await,
    )
    .await;
    assert_eq!(none["meta"]["total"], 0, "{none}");
    let since = before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, after) = json(
        app.get(&format!(
            "/audit-events?resource_type=dashboard&since={}",
            urlencode(&since)
        ))
        .await,
    )
    .await;
    assert_eq!(after["meta"]["total"], 5, "{after}");
    // Bad filters and unknown parameters are 400s naming them.
    let e = expect_error(
        app.get("/audit-events?action=exploded").await,
        400,
        "bad_request",
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("action"), "{e}");
    let e = expect_error(
        app.get("/audit-events?resource_type=planet").await,
        400,
        "bad_request",
    )
    .await;
    assert!(
        e["message"].as_str().unwrap().contains("resource_type"),
        "{e}"
    );
    expect_error(app.get("/audit-events?sort=name").await, 400, "bad_request").await;
    expect_error(
        app.get("/audit-events?colour=red").await,
        400,
        "bad_request",
    )
    .await;
    expect_error(
        app.get("/audit-events?until=tomorrow").await,
        400,
        "bad_request",
    )
    .await;
    // Without audit.read: 403.
    let (_, viewer) = app.user_with_key(&["viewer"], None).await;
    let e = expect_error(
        app.call("GET", "/audit-events", &viewer, None).await,
        403,
        "forbidden",
    )
    .await;
    assert!(e["message"].as_str().unwrap().contains("audit.read"), "{e}");
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn tenants_and_client_accounts_see_only_their_own_events() {
    let partner = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let r = partner.post("/dashboards", json!({"name": "Mine"})).await;
    let (_, dash) = json(r).await;
    let did = dash["data"]["id"].as_str().unwrap().to_owned();
    events_when(&partner, partner.key(), &format!("?resource_id={did}"), 1).await;
    let (_, theirs) = json(other.get(&format!("/audit-events?resource_id={did}")).await).await;
    assert_eq!(theirs["meta"]["total"], 0, "{theirs}");
    assert!(!other
        .get("/audit-events?limit=100")
        .await
        .text()
        .await
        .unwrap()
        .contains(&did));

    // A client account: its creation is in the partner's log; what happens inside it is in
    // the client's log, and what the partner's people do there in the partner's too.
    let (status, client) = json(
        partner
            .post("/clients", json!({"name": "Acme", "status": "active"}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{client}");
    let cid = client["data"]["id"].as_str().unwrap().to_owned();
    // Room for the polling below (a client has its own, smaller, per-second limit).
    let limits = json!({"resources": [{"name": "api.requests.perSecond", "value": 1000}]});
    let r = partner
        .call(
            "PUT",
            &format!("/clients/{cid}/resources"),
            partner.key(),
            Some(limits),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body = events_when(
        &partner,
        partner.key(),
        &format!("?resource_type=client&resource_id={cid}&action=created"),
        1,
    )
    .await;
    assert_eq!(listed(&body)[0]["action"], "created");
    assert_eq!(listed(&body)[0]["resource"]["name"], "Acme");
    let r = partner
        .call(
            "POST",
            &format!("/dashboards?client_id={cid}"),
            partner.key(),
            Some(json!({"name": "Theirs"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let (_, inside) = json(r).await;
    let inside_id = inside["data"]["id"].as_str().unwrap().to_owned();
    let body = events_when(
        &partner,
        partner.key(),
        &format!("?client_id={cid}&resource_id={inside_id}"),
        1,
    )
    .await;
    assert_eq!(
        listed(&body)[0]["actor"]["email"],
        partner.company.email.as_str()
    );
    // The partner's own log shows its own people's actions inside the client too.
    let own = events_when(
        &partner,
        partner.key(),
        &format!("?resource_id={inside_id}"),
        1,
    )
    .await;
    assert_eq!(listed(&own)[0]["id"], listed(&body)[0]["id"]);
    // A user of the client acting there is in the client's log only.
    let (_, client_admin) = partner.user_with_key(&["admin"], Some(&cid)).await;
    let r = partner
        .call(
            "POST",
            "/dashboards",
            &client_admin,
            Some(json!({"name": "By the client"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let (_, by_client) = json(r).await;
    let by_client_id = by_client["data"]["id"].as_str().unwrap().to_owned();
    events_when(
        &partner,
        partner.key(),
        &format!("?client_id={cid}&resource_id={by_client_id}"),
        1,
    )
    .await;
    let (_, not_partner) = json(
        partner
            .get(&format!("/audit-events?resource_id={by_client_id}"))
            .await,
    )
    .await;
    assert_eq!(not_partner["meta"]["total"], 0, "{not_partner}");
    // A user of the client reads the client's log, never the partner's.
    let (_, log) = json(
        partner
            .call("GET", "/audit-events?limit=100", &client_admin, None)
            .await,
    )
    .await;
    assert!(!log.to_string().contains(&did), "{log}");
}

#[tokio::test]
async fn twenty_concurrent_creates_give_exactly_twenty_events() {
    let app = TestApp::spawn().await;
    let creates = (0..20).map(|n| {
        app.post(
            "/klips",
            json!({"name": format!("K{n}"), "type": "number", "query": {"aggregate": "count"}}),
        )
    });
    let answers = futures::future::join_all(creates).await;
    let mut ids = Vec::new();
    for r in answers {
        let (status, body) = json(r).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["data"]["id"].as_str().unwrap().to_owned());
    }
    let body = events_when(&app, app.key(), "?resource_type=klip&limit=100", 20).await;
    // A moment more: nothing doubles.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, body2) = json(app.get("/audit-events?resource_type=klip&limit=100").await).await;
    assert_eq!(body2["meta"]["total"], 20, "{body2}");
    let mut seen: Vec<String> = listed(&body)
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
}

/// A stream record as Lambda sends it.
fn record(event_id: &str, name: &str, company: &str, sk: &str, old: Value, new: Value) -> Value {
    json!({"eventID": event_id, "eventName": name, "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "dynamodb": {"ApproximateCreationDateTime": 1_800_000_000, "Keys": {"pk": {"S": format!("C#{company}")}, "sk": {"S": sk}},
            "OldImage": old, "NewImage": new, "SequenceNumber": format!("{}", 100 + event_id.len()), "SizeBytes": 10,
            "StreamViewType": "NEW_AND_OLD_IMAGES"}})
}

#[tokio::test]
async fn a_redelivered_batch_adds_nothing_and_an_unwritable_event_is_retried() {
    let app = TestApp::spawn().await;
    let company = domain::ids::new_id();
    let image = json!({"pk": {"S": format!("C#{company}")}, "sk": {"S": "DASH#d1"}, "id": {"S": "d1"}, "name": {"S": "Synthetic"}});
    let batch = json!({"Records": [
        record("evt-1", "INSERT", &company, "DASH#d1", json!({}), image.clone()),
        record("evt-2", "REMOVE", &company, "DASH#d1", image, json!({})),
        record("evt-3", "INSERT", &company, "SLUG#DASH#x", json!({}), json!({"id": {"S": "x"}})),
    ]});
    let now = chrono::Utc::now();
    let all = platform::store::audit::Shown::default();
    for _ in 0..3 {
        let answer = pulseboard_audit_recorder::handle(&app.state, batch.clone())
            .await
            .unwrap();
        assert_eq!(answer, json!({"batchItemFailures": []}));
    }
    let events = app
        .state
        .store
        .audit_events()
        .page(&company, &all, now, 0, 100)
        .await
        .unwrap();
    assert_eq!(events.total, 2, "{:?}", events.events);
    // A removal without a deletion note (here: none was written) is the system's.
    let removed = events
        .events
        .iter()
        .find(|e| e.action == domain::audit::Action::Deleted)
        .unwrap();
    assert_eq!(removed.actor, domain::audit::Actor::system());

    // A database that is down: every audited record comes back for a retry, none is lost.
    let state = app.state_with_database_down().await;
    let fresh = json!({"Records": [
        record("evt-9", "INSERT", &company, "KLIP#k9", json!({}), json!({"id": {"S": "k9"}, "name": {"S": "K"}})),
        record("evt-10", "INSERT", &company, "RUN#r#1", json!({}), json!({"id": {"S": "1"}})),
    ]});
    let answer = pulseboard_audit_recorder::handle(&state, fresh)
        .await
        .unwrap();
    let failed = answer["batchItemFailures"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{answer}");
    assert_eq!(failed[0]["itemIdentifier"], "105");
}

#[tokio::test]
async fn an_unknown_email_that_fails_to_sign_in_is_nobodys_event() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .post(app.url("/auth/login"))
        .json(&json!({"email": unique_email("ghost"), "password": "whatever-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The company's own log has no failed sign-in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, body) = json(app.get("/audit-events?action=login_failed").await).await;
    assert_eq!(body["meta"]["total"], 0, "{body}");
}

#[tokio::test]
async fn a_data_push_says_who_and_the_row_count_never_the_rows() {
    let app = TestApp::spawn().await;
    let (status, ds) = json(
        app.post("/datasources", json!({"name": "Sales", "format": "csv"}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{ds}");
    let id = ds["data"]["id"].as_str().unwrap().to_owned();
    let push = |method: reqwest::Method, csv: &'static str| {
        app.http
            .request(method, app.url(&format!("/datasources/{id}/data")))
            .header("kf-api-key", app.key())
            .header("content-type", "text/csv")
            .body(csv)
            .send()
    };
    let r = push(
        reqwest::Method::PUT,
        "day,secret_region,amount\n2026-11-01,rowsecret-north,5\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = push(
        reqwest::Method::POST,
        "day,secret_region,amount\n2026-11-02,rowsecret-south,7\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let body = events_when(
        &app,
        app.key(),
        &format!("?resource_id={id}&action=updated"),
        2,
    )
    .await;
    let events = listed(&body);
    assert_eq!(
        events[0]["changes"],
        json!([{"field": "row_count", "from": 1, "to": 2}]),
        "{body}"
    );
    assert_eq!(
        events[1]["changes"],
        json!([{"field": "row_count", "from": 0, "to": 1}]),
        "{body}"
    );
    assert_eq!(events[0]["actor"]["type"], "api_key");
    assert!(!body.to_string().contains("rowsecret"), "{body}");
}
