//! The clients function and `client_id=`: client accounts are companies of their own with
//! their own counters; a disabled client is locked out at once.

use pulseboard_tests::fixtures::{delete, put};
use pulseboard_tests::{expect_error, json, TestApp};
use serde_json::{json, Value};

fn header(r: &reqwest::Response, name: &str) -> i64 {
    r.headers()[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_client_with_a_daily_limit_of_twenty_is_limited_alone_and_disabling_it_locks_it_out() {
    let partner = TestApp::spawn().await;
    let (status, client) = json(
        partner
            .post(
                "/clients",
                json!({"name": "Acme", "status": "active", "external_id": "acme-1", "seats": 5}),
            )
            .await,
    )
    .await;
    assert_eq!(status, 201, "{client}");
    let cid = client["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(client["data"]["seats"], 5);
    let (status, resources) = json(partner.call("PUT", &format!("/clients/{cid}/resources"), partner.key(), Some(json!({"resources": [{"name": "api.requests.perDay", "value": 20}, {"name": "api.requests.perSecond", "value": 1000}]}))).await).await;
    assert_eq!(status, 200, "{resources}");
    assert_eq!(
        resources["data"]["resources"][0],
        json!({"name": "api.requests.perDay", "value": 20})
    );

    // The partner creates a user inside the client (2 requests against the client's day).
    let (_, client_key) = partner.user_with_key(&["editor"], Some(&cid)).await;
    let (_, before) = json(partner.get("/usage").await).await;
    let partner_used = before["data"]["used_today"].as_i64().unwrap();

    let mut last = None;
    for _ in 0..17 {
        let r = partner.call("GET", "/profile", &client_key, None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit"), 20);
        last = Some(header(&r, "x-ratelimit-remaining"));
    }
    assert_eq!(last, Some(1));
    // The partner acting in the client counts against the client: the 20th request.
    let r = partner
        .call(
            "GET",
            &format!("/users?client_id={cid}"),
            partner.key(),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 0);
    // The 21st, from the client's user and from the partner acting in it.
    expect_error(
        partner.call("GET", "/profile", &client_key, None).await,
        429,
        "rate_limited",
    )
    .await;
    expect_error(
        partner
            .call(
                "GET",
                &format!("/users?client_id={cid}"),
                partner.key(),
                None,
            )
            .await,
        429,
        "rate_limited",
    )
    .await;
    // The partner's own counter is untouched (only its own /usage calls).
    let (_, after) = json(partner.get("/usage").await).await;
    assert_eq!(
        after["data"]["used_today"].as_i64().unwrap(),
        partner_used + 1
    );

    // Disabling the client locks its keys out at once.
    let (status, _) = json(
        partner
            .call(
                "PUT",
                &format!("/clients/{cid}"),
                partner.key(),
                Some(json!({"status": "disabled"})),
            )
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let body = expect_error(
        partner.call("GET", "/profile", &client_key, None).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(body["message"], "client account disabled");
}

#[tokio::test]
async fn a_trial_client_is_on_the_trial_plan() {
    let partner = TestApp::spawn().await;
    let trial = new_client(&partner, json!({"name": "Trial Co", "status": "trial"})).await;
    assert_eq!(trial["plan"], "trial");
}

#[tokio::test]
async fn a_trial_client_may_make_1000_requests_a_day_and_5_a_second() {
    let partner = TestApp::spawn().await;
    let tid = trial_client(&partner).await;
    let (_, resources) = json(partner.get(&format!("/clients/{tid}/resources")).await).await;
    assert_eq!(
        resources["data"]["resources"][0],
        json!({"name": "api.requests.perDay", "value": 1000})
    );
    assert_eq!(
        resources["data"]["resources"][1],
        json!({"name": "api.requests.perSecond", "value": 5})
    );
}

#[tokio::test]
async fn the_client_list_filters_by_status() {
    let partner = TestApp::spawn().await;
    let tid = trial_client(&partner).await;
    other_client(&partner).await;
    let (_, list) = json(partner.get("/clients?status=trial").await).await;
    assert_eq!(list["meta"]["total"], 1);
    assert_eq!(list["data"]["clients"][0]["id"], tid.as_str());
}

#[tokio::test]
async fn the_client_list_sorted_by_name_has_every_client() {
    let partner = TestApp::spawn().await;
    trial_client(&partner).await;
    other_client(&partner).await;
    let (_, list) = json(partner.get("/clients?sort=name").await).await;
    assert_eq!(list["meta"]["total"], 2);
}

#[tokio::test]
async fn a_client_with_an_unknown_status_is_a_400() {
    let partner = TestApp::spawn().await;
    expect_error(
        partner
            .post("/clients", json!({"name": "x", "status": "paused"}))
            .await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn a_client_without_a_name_is_a_400() {
    let partner = TestApp::spawn().await;
    expect_error(
        partner.post("/clients", json!({"status": "active"})).await,
        400,
        "validation_failed",
    )
    .await;
}

/// A properties PUT upserts: the keys it names change, the others stay; GET answers the same
/// shape.
#[tokio::test]
async fn putting_client_properties_merges_them_into_the_stored_ones() {
    let partner = TestApp::spawn().await;
    let tid = trial_client(&partner).await;
    let path = format!("/clients/{tid}/properties");
    let (status, props) = json(
        put(
            &partner,
            &path,
            json!({"properties": {"region": "emea", "tier": 2}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        props["data"],
        json!({"properties": {"region": "emea", "tier": 2}})
    );
    put(&partner, &path, json!({"properties": {"region": "apac"}})).await;
    let (_, props) = json(partner.get(&path).await).await;
    assert_eq!(
        props["data"],
        json!({"properties": {"region": "apac", "tier": 2}})
    );
}

/// JSON numbers the database cannot store (`-5e-324` underflows, `1e300` overflows) are a 400
/// naming the property, and the stored properties stay as they were (found by schemathesis:
/// this was a 500).
#[tokio::test]
async fn a_property_number_the_database_cannot_store_is_a_400_and_changes_nothing() {
    let partner = TestApp::spawn().await;
    let tid = trial_client(&partner).await;
    let path = client_properties(&partner, &tid).await;
    for number in [-5e-324_f64, 1e300] {
        let body = expect_error(
            put(
                &partner,
                &path,
                json!({"properties": {"region": "emea", "tiny": number}}),
            )
            .await,
            400,
            "validation_failed",
        )
        .await;
        assert_eq!(body["details"][0]["field"], "properties.tiny", "{body}");
    }
    let (_, props) = json(partner.get(&path).await).await;
    assert_eq!(
        props["data"],
        json!({"properties": {"region": "apac", "tier": 2}})
    );
}

#[tokio::test]
async fn deleting_a_client_property_by_name_removes_only_that_one() {
    let partner = TestApp::spawn().await;
    let tid = trial_client(&partner).await;
    let path = client_properties(&partner, &tid).await;
    assert_eq!(
        delete(&partner, &format!("{path}?name=tier"))
            .await
            .status(),
        200
    );
    let (_, props) = json(partner.get(&path).await).await;
    assert_eq!(props["data"], json!({"properties": {"region": "apac"}}));
}

#[tokio::test]
async fn deleting_a_client_property_that_is_gone_is_a_404() {
    let partner = TestApp::spawn().await;
    let tid = trial_client(&partner).await;
    let path = client_properties(&partner, &tid).await;
    assert_eq!(
        delete(&partner, &format!("{path}?name=tier"))
            .await
            .status(),
        200
    );
    expect_error(
        delete(&partner, &format!("{path}?name=tier")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn every_client_feature_is_on_by_default() {
    let partner = TestApp::spawn().await;
    let tid = trial_client(&partner).await;
    let (_, features) = json(partner.get(&format!("/clients/{tid}/features")).await).await;
    assert!(features["data"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["enabled"] == true));
}

#[tokio::test]
async fn a_client_feature_switched_off_shows_as_off() {
    let partner = TestApp::spawn().await;
    let tid = trial_client(&partner).await;
    let (status, features) = json(
        put(
            &partner,
            &format!("/clients/{tid}/features"),
            json!({"features": [{"name": "public_dashboards", "enabled": false}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let public = features["data"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "public_dashboards")
        .unwrap()
        .clone();
    assert_eq!(
        public,
        json!({"name": "public_dashboards", "enabled": false})
    );
}

#[tokio::test]
async fn an_unknown_client_feature_is_a_400() {
    let partner = TestApp::spawn().await;
    let tid = trial_client(&partner).await;
    expect_error(
        put(
            &partner,
            &format!("/clients/{tid}/features"),
            json!({"features": [{"name": "teleport", "enabled": true}]}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn a_client_resource_of_zero_is_a_400() {
    let partner = TestApp::spawn().await;
    let tid = trial_client(&partner).await;
    expect_error(
        put(
            &partner,
            &format!("/clients/{tid}/resources"),
            json!({"resources": [{"name": "api.requests.perDay", "value": 0}]}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn a_client_with_one_seat_takes_one_user() {
    let partner = TestApp::spawn().await;
    let tid = trial_client(&partner).await;
    put(
        &partner,
        &format!("/clients/{tid}/resources"),
        json!({"resources": [{"name": "company.seats", "value": 1}]}),
    )
    .await;
    partner.user_with_key(&["viewer"], Some(&tid)).await;
    let response = partner
        .call(
            "POST",
            &format!("/users?client_id={tid}"),
            partner.key(),
            Some(json!({"email": pulseboard_tests::unique_email("x")})),
        )
        .await;
    let body = expect_error(response, 403, "forbidden").await;
    assert!(
        body["message"].as_str().unwrap().contains("company.seats"),
        "{body}"
    );
}

#[tokio::test]
async fn a_deleted_client_is_a_404() {
    let partner = TestApp::spawn().await;
    let tid = trial_client_with_room(&partner).await;
    delete_client(&partner, &tid).await;
    expect_error(
        partner.get(&format!("/clients/{tid}")).await,
        404,
        "not_found",
    )
    .await;
}

/// The files live outside the client's partition, in the bucket.
#[tokio::test]
async fn deleting_a_client_removes_its_data_source_files() {
    let partner = TestApp::spawn().await;
    let tid = trial_client_with_room(&partner).await;
    let (status, ds) = json(
        partner
            .call(
                "POST",
                &format!("/datasources?client_id={tid}"),
                partner.key(),
                Some(json!({"name": "Client data"})),
            )
            .await,
    )
    .await;
    assert_eq!(status, 201, "{ds}");
    let ds_id = ds["data"]["id"].as_str().unwrap().to_owned();
    let r = partner
        .http
        .put(partner.url(&format!("/datasources/{ds_id}/data?client_id={tid}")))
        .header("kf-api-key", partner.key())
        .header("content-type", "text/csv")
        .body("v\n1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let prefix = format!("{tid}/datasources/");
    let stored = partner.state.store.files().list(&prefix).await.unwrap();
    assert!(!stored.is_empty());
    delete_client(&partner, &tid).await;
    let stored = partner.state.store.files().list(&prefix).await.unwrap();
    assert!(stored.is_empty(), "data source files are gone");
}

/// The published-link lookups live outside the client's partition, keyed by token hash.
/// A dashboard in client `tid` with a published link: its id and the link's token.
async fn published_board(partner: &TestApp, tid: &str) -> (String, String) {
    let (_, dash) = json(
        partner
            .call(
                "POST",
                &format!("/dashboards?client_id={tid}"),
                partner.key(),
                Some(json!({"name": "Client board"})),
            )
            .await,
    )
    .await;
    let dash_id = dash["data"]["id"].as_str().unwrap().to_owned();
    let (_, link) = json(
        partner
            .call(
                "POST",
                &format!("/dashboards/{dash_id}/published-links?client_id={tid}"),
                partner.key(),
                Some(json!({})),
            )
            .await,
    )
    .await;
    let token = link["data"]["token"].as_str().unwrap().to_owned();
    (dash_id, token)
}

#[tokio::test]
async fn deleting_a_client_removes_its_published_link_lookups() {
    let partner = TestApp::spawn().await;
    let tid = trial_client_with_room(&partner).await;
    let (_, token) = published_board(&partner, &tid).await;
    delete_client(&partner, &tid).await;
    let link_item: Option<serde_json::Value> = partner
        .state
        .store
        .get(platform::store::keys::published_link(
            &domain::ids::ApiKeyHash::of(&token).0,
        ))
        .await
        .unwrap();
    assert!(link_item.is_none(), "published link lookups are gone");
}

/// A client delete finds what lives outside the client's partition from the fields that
/// name it: a dashboard item that no longer decodes (a field of the wrong type) still has
/// its published-link lookup removed (it was skipped, and the token kept resolving to a
/// deleted company's dashboard).
#[tokio::test]
async fn deleting_a_client_removes_the_lookups_of_an_item_that_does_not_decode() {
    let partner = TestApp::spawn().await;
    let tid = trial_client_with_room(&partner).await;
    let (dash_id, token) = published_board(&partner, &tid).await;
    let key = platform::store::keys::asset(domain::asset::Kind::Dashboard, &tid, &dash_id);
    let mut item: serde_json::Value = partner.state.store.get(key.clone()).await.unwrap().unwrap();
    item["layout"] = json!(5);
    partner.state.store.put(&key, &item).await.unwrap();
    delete_client(&partner, &tid).await;
    let lookup = platform::store::keys::published_link(&domain::ids::ApiKeyHash::of(&token).0);
    let link_item: Option<serde_json::Value> = partner.state.store.get(lookup).await.unwrap();
    assert!(link_item.is_none(), "the published link's lookup is gone");
    expect_error(
        partner
            .http
            .get(partner.url(&format!("/public/dashboards/{token}")))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn other_partners_clients_are_404_and_client_id_needs_client_access() {
    let partner = TestApp::spawn().await;
    let stranger = TestApp::spawn().await;
    let (_, client) = json(partner.post("/clients", json!({"name": "Mine"})).await).await;
    let cid = client["data"]["id"].as_str().unwrap();
    expect_error(
        stranger.get(&format!("/clients/{cid}")).await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        stranger.get(&format!("/profile?client_id={cid}")).await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        stranger.get("/profile?client_id=nope").await,
        404,
        "not_found",
    )
    .await;
    let (_, editor_key) = partner.user_with_key(&["editor"], None).await;
    let body = expect_error(
        partner
            .call(
                "GET",
                &format!("/profile?client_id={cid}"),
                &editor_key,
                None,
            )
            .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(body["message"], "missing permission client.access");
    // Acting in the client, the partner sees the client's company.
    let (_, verify) = json(partner.get(&format!("/auth/verify?client_id={cid}")).await).await;
    assert_eq!(verify["data"]["company"]["id"], cid);
    // A client cannot have clients.
    let response = partner
        .call(
            "POST",
            &format!("/clients?client_id={cid}"),
            partner.key(),
            Some(json!({"name": "nested"})),
        )
        .await;
    expect_error(response, 403, "forbidden").await;
}

/// Creates a client as `partner`; answers its `data`.
async fn new_client(partner: &TestApp, body: Value) -> Value {
    let (status, created) = json(partner.post("/clients", body).await).await;
    assert_eq!(status, 201, "{created}");
    created["data"].clone()
}

/// A client in trial; answers its id.
async fn trial_client(partner: &TestApp) -> String {
    let trial = new_client(partner, json!({"name": "Trial Co", "status": "trial"})).await;
    trial["id"].as_str().unwrap().to_owned()
}

/// A second client, in setup on the professional plan.
async fn other_client(partner: &TestApp) {
    new_client(
        partner,
        json!({"name": "Other", "status": "setup", "plan": "professional"}),
    )
    .await;
}

/// A trial client whose per-second limit (5) is raised to 1000, so a test's setup inside it
/// never meets it; answers its id.
async fn trial_client_with_room(partner: &TestApp) -> String {
    let tid = trial_client(partner).await;
    put(
        partner,
        &format!("/clients/{tid}/resources"),
        json!({"resources": [{"name": "api.requests.perSecond", "value": 1000}]}),
    )
    .await;
    tid
}

/// Gives client `tid` the properties `region: apac, tier: 2`; answers their path.
async fn client_properties(partner: &TestApp, tid: &str) -> String {
    let path = format!("/clients/{tid}/properties");
    put(
        partner,
        &path,
        json!({"properties": {"region": "apac", "tier": 2}}),
    )
    .await;
    path
}

async fn delete_client(partner: &TestApp, tid: &str) {
    assert_eq!(
        delete(partner, &format!("/clients/{tid}")).await.status(),
        200
    );
}

/// Client reads run alongside admission with the remembered caller (`.reads()`), and the
/// permission is checked on the verified caller too: a role that lost `client.access` since
/// is refused at once, with nothing of the clients in the answer.
#[tokio::test]
async fn a_remembered_caller_whose_role_lost_client_access_gets_a_403_on_the_next_read() {
    let partner = TestApp::spawn().await;
    let (status, client) = json(partner.post("/clients", json!({"name": "Secret Co"})).await).await;
    assert_eq!(status, 201, "{client}");
    let (status, role) = json(
        partner
            .post(
                "/roles",
                json!({"name": "Client reader", "permissions": ["client.access"]}),
            )
            .await,
    )
    .await;
    assert_eq!(status, 201, "{role}");
    let role_id = role["data"]["id"].as_str().unwrap().to_owned();
    let (_, key) = partner.user_with_key(&[role_id.as_str()], None).await;
    // Two reads, so this instance remembers the caller and the next read runs alongside
    // admission.
    for _ in 0..2 {
        let (status, list) = json(partner.call("GET", "/clients", &key, None).await).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["data"]["clients"][0]["name"], "Secret Co");
    }
    let r = partner
        .call(
            "PUT",
            &format!("/roles/{role_id}"),
            partner.key(),
            Some(json!({"permissions": ["report.generate"]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body = expect_error(
        partner.call("GET", "/clients", &key, None).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(body["message"], "missing permission client.access");
    assert!(!body.to_string().contains("Secret Co"), "{body}");
}
