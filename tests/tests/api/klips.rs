//! The klips function: CRUD with slugs, schema, versions, share rights and visibility,
//! annotations, and values that follow the data.

use pulseboard_tests::fixtures::{current_etag, delete, get_if_none_match, put, put_if_match};
use pulseboard_tests::{expect_error, json, TestApp};
use serde_json::{json, Value};

async fn new_klip(app: &TestApp, body: Value) -> Value {
    let (status, created) = json(app.post("/klips", body).await).await;
    assert_eq!(status, 201, "{created}");
    created["data"].clone()
}

#[tokio::test]
async fn a_new_klip_gets_a_slug_version_1_and_its_value() {
    let app = TestApp::spawn().await;
    let klip = q3_revenue(&app).await;
    assert_eq!(klip["slug"], "q3-revenue");
    assert_eq!(klip["version"], 1);
    assert_eq!(klip["value"]["current"], 0.0, "{klip}");
    assert_eq!(klip["value"]["status"], "bad");
}

/// Slugs are unique per company: a second one derived from the same name gets a suffix.
#[tokio::test]
async fn a_derived_slug_that_is_taken_gets_a_suffix() {
    let app = TestApp::spawn().await;
    q3_revenue(&app).await;
    let again = q3_revenue_count(&app).await;
    assert_eq!(again["slug"], "q3-revenue-2");
}

#[tokio::test]
async fn a_taken_slug_is_a_409() {
    let app = TestApp::spawn().await;
    q3_revenue(&app).await;
    expect_error(app.post("/klips", json!({"name": "x", "slug": "q3-revenue", "type": "number", "query": {"aggregate": "count"}})).await, 409, "conflict").await;
}

#[tokio::test]
async fn a_klip_is_found_by_its_slug() {
    let app = TestApp::spawn().await;
    let id = q3_revenue_id(&app).await;
    let response = app.get("/klips/q3-revenue").await;
    assert_eq!(response.status(), 200);
    let (_, shown) = json(response).await;
    assert_eq!(shown["data"]["id"], id.as_str());
}

/// The ETag of a read by slug answers 304 to an If-None-Match read by id.
#[tokio::test]
async fn if_none_match_with_the_current_etag_answers_304() {
    let app = TestApp::spawn().await;
    let id = q3_revenue_id(&app).await;
    let etag = current_etag(&app, "/klips/q3-revenue").await;
    let r = get_if_none_match(&app, &format!("/klips/{id}"), &etag).await;
    assert_eq!(r.status(), 304);
}

#[tokio::test]
async fn a_put_with_the_current_etag_bumps_the_version() {
    let app = TestApp::spawn().await;
    let id = q3_revenue_id(&app).await;
    let etag = current_etag(&app, "/klips/q3-revenue").await;
    let (status, updated) = json(
        put_if_match(
            &app,
            &format!("/klips/{id}"),
            &etag,
            json!({"name": "Q3 Revenue (EUR)"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["version"], 2);
}

/// A PUT with a stale ETag is a 412 and changes nothing.
#[tokio::test]
async fn a_put_with_a_stale_etag_is_a_412_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = q3_revenue_id(&app).await;
    let stale = rename_to_eur(&app, &id).await;
    let body = expect_error(
        put_if_match(
            &app,
            &format!("/klips/{id}"),
            &stale,
            json!({"name": "lost update"}),
        )
        .await,
        412,
        "precondition_failed",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("version"));
    let (_, shown) = json(app.get(&format!("/klips/{id}")).await).await;
    assert_eq!(shown["data"]["name"], "Q3 Revenue (EUR)");
}

#[tokio::test]
async fn an_unknown_type_and_a_missing_value_are_both_named() {
    let app = TestApp::spawn().await;
    let body = expect_error(
        app.post(
            "/klips",
            json!({"name": "bad", "type": "donut", "query": {"aggregate": "sum"}}),
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
        fields.contains(&"type") && fields.contains(&"query.value"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unknown_query_field_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let body = expect_error(app.post("/klips", json!({"name": "bad", "type": "line", "query": {"aggregate": "sum", "value": "x", "colour": 1}})).await, 400, "validation_failed").await;
    assert!(
        body["details"][0]["field"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unknown_data_source_is_a_400() {
    let app = TestApp::spawn().await;
    expect_error(app.post("/klips", json!({"name": "bad", "type": "line", "datasource_id": "nope", "query": {"aggregate": "count"}})).await, 400, "validation_failed").await;
}

#[tokio::test]
async fn the_schema_shows_the_klips_type() {
    let app = TestApp::spawn().await;
    let id = q3_revenue_id(&app).await;
    let (_, schema) = json(app.get(&format!("/klips/{id}/schema")).await).await;
    assert_eq!(schema["data"]["type"], "number");
}

/// A schema PUT is an update like any other: after one rename (version 2) it makes version 3.
#[tokio::test]
async fn a_schema_put_changes_the_type_as_a_new_version() {
    let app = TestApp::spawn().await;
    let id = q3_revenue_id(&app).await;
    rename_to_eur(&app, &id).await;
    let (status, _) = json(
        put(
            &app,
            &format!("/klips/{id}/schema"),
            json!({"type": "gauge", "query": {"aggregate": "count"}, "display": {"target": 0}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let (_, shown) = json(app.get(&format!("/klips/{id}")).await).await;
    assert_eq!(shown["data"]["type"], "gauge");
    assert_eq!(shown["data"]["version"], 3);
}

#[tokio::test]
async fn another_company_never_sees_a_klip_by_id_or_slug() {
    let app = TestApp::spawn().await;
    let id = q3_revenue_id(&app).await;
    q3_revenue_count(&app).await;
    let other = TestApp::spawn().await;
    expect_error(other.get(&format!("/klips/{id}")).await, 404, "not_found").await;
    expect_error(other.get("/klips/q3-revenue-2").await, 404, "not_found").await;
}

#[tokio::test]
async fn a_deleted_klip_is_a_404() {
    let app = TestApp::spawn().await;
    let id = q3_revenue_id(&app).await;
    delete_klip(&app, &id).await;
    expect_error(app.get(&format!("/klips/{id}")).await, 404, "not_found").await;
}

#[tokio::test]
async fn a_deleted_klip_leaves_the_list() {
    let app = TestApp::spawn().await;
    let id = q3_revenue_id(&app).await;
    q3_revenue_count(&app).await;
    delete_klip(&app, &id).await;
    let (_, list) = json(app.get("/klips").await).await;
    assert_eq!(list["meta"]["total"], 1);
}

#[tokio::test]
async fn viewers_see_what_is_shared_with_their_groups_or_theirs() {
    let app = TestApp::spawn().await;
    let (_, group) = json(app.post("/groups", json!({"name": "Sales"})).await).await;
    let gid = group["data"]["id"].as_str().unwrap().to_owned();
    let (viewer, viewer_key) = app.user_with_key(&["viewer"], None).await;
    let shared = new_klip(
        &app,
        json!({"name": "Shared", "type": "number", "query": {"aggregate": "count"}}),
    )
    .await;
    let hidden = new_klip(
        &app,
        json!({"name": "Hidden", "type": "number", "query": {"aggregate": "count"}}),
    )
    .await;
    let sid = shared["id"].as_str().unwrap();
    let (status, rights) = json(
        app.call(
            "PUT",
            &format!("/klips/{sid}/share-rights"),
            app.key(),
            Some(json!({"groups": [{"group_id": gid, "can_edit": false}]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{rights}");
    assert_eq!(rights["data"]["groups"][0]["group_id"], gid.as_str());
    expect_error(app.call("PUT", &format!("/klips/{sid}/share-rights"), app.key(), Some(json!({"groups": [{"group_id": "0123456789abcdef0123456789abcdef", "can_edit": true}]}))).await, 400, "validation_failed").await;

    // Not yet in the group: sees nothing.
    let (_, list) = json(app.call("GET", "/klips", &viewer_key, None).await).await;
    assert_eq!(list["meta"]["total"], 0);
    app.call(
        "PUT",
        &format!("/groups/{gid}/members/{}", viewer["id"].as_str().unwrap()),
        app.key(),
        None,
    )
    .await;
    let (_, list) = json(app.call("GET", "/klips", &viewer_key, None).await).await;
    assert_eq!(list["meta"]["total"], 1);
    assert_eq!(list["data"]["klips"][0]["id"], sid);
    expect_error(
        app.call(
            "GET",
            &format!("/klips/{}", hidden["id"].as_str().unwrap()),
            &viewer_key,
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    // Viewers cannot edit, even what they see.
    let body = expect_error(
        app.call(
            "PUT",
            &format!("/klips/{sid}"),
            &viewer_key,
            Some(json!({"name": "x"})),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(body["message"], "missing permission klip.edit");
}

#[tokio::test]
async fn annotations_crud() {
    let app = TestApp::spawn().await;
    let klip = new_klip(
        &app,
        json!({"name": "Sales", "type": "line", "query": {"aggregate": "count"}}),
    )
    .await;
    let id = klip["id"].as_str().unwrap();
    let path = format!("/klips/{id}/annotations");
    let (status, note) = json(
        app.call(
            "POST",
            &path,
            app.key(),
            Some(json!({"date": "2026-11-20", "text": "Black Friday starts"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{note}");
    let nid = note["data"]["id"].as_str().unwrap().to_owned();
    app.call(
        "POST",
        &path,
        app.key(),
        Some(json!({"date": "2026-11-01", "text": "DST ends"})),
    )
    .await;
    let (_, list) = json(app.get(&path).await).await;
    assert_eq!(list["meta"]["total"], 2);
    assert_eq!(list["data"]["annotations"][0]["text"], "DST ends");
    let (status, updated) = json(
        app.call(
            "PUT",
            &format!("{path}/{nid}"),
            app.key(),
            Some(json!({"text": "Black Friday"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(updated["data"]["text"], "Black Friday");
    expect_error(
        app.call(
            "POST",
            &path,
            app.key(),
            Some(json!({"date": "soon", "text": ""})),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(
        app.call("DELETE", &format!("{path}/{nid}"), app.key(), None)
            .await
            .status(),
        200
    );
    expect_error(app.get(&format!("{path}/{nid}")).await, 404, "not_found").await;
}

/// A CSV data source with a column `v` of 1 and 2, and a number Klip summing it (3);
/// answers their ids.
async fn klip_over_source(app: &TestApp) -> (String, String) {
    let (status, ds) = json(
        app.post(
            "/datasources",
            json!({"name": "Gone soon", "format": "csv"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{ds}");
    let ds_id = ds["data"]["id"].as_str().unwrap().to_owned();
    let r = app
        .http
        .put(app.url(&format!("/datasources/{ds_id}/data")))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body("v\n1\n2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let klip = new_klip(app, json!({"name": "Total", "type": "number", "datasource_id": ds_id, "query": {"value": "v", "aggregate": "sum"}})).await;
    assert_eq!(klip["value"]["current"], 3.0);
    (ds_id, klip["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_misspelt_column_is_the_klips_error_not_a_silent_zero() {
    let app = TestApp::spawn().await;
    let (_, id) = klip_over_source(&app).await;
    let (status, typo) = json(
        app.call(
            "PUT",
            &format!("/klips/{id}"),
            app.key(),
            Some(json!({"query": {"value": "vv", "aggregate": "sum"}})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{typo}");
    assert_eq!(
        typo["data"]["value"]["error"],
        "column 'vv' is not in the data"
    );
    assert!(typo["data"]["value"]["current"].is_null());
}

#[tokio::test]
async fn refresh_stores_the_error_of_a_deleted_data_source() {
    let app = TestApp::spawn().await;
    let (ds_id, id) = klip_over_source(&app).await;
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/datasources/{ds_id}?force=true"),
            app.key(),
            None
        )
        .await
        .status(),
        200
    );
    let (status, refreshed) = json(
        app.call("POST", &format!("/klips/{id}/@/refresh"), app.key(), None)
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert!(refreshed["data"]["value"]["error"]
        .as_str()
        .unwrap()
        .contains("no longer exists"));
    // Stored, so every later read shows it too.
    let (_, shown) = json(app.get(&format!("/klips/{id}")).await).await;
    assert!(shown["data"]["value"]["error"]
        .as_str()
        .unwrap()
        .contains("no longer exists"));
    assert!(shown["data"]["value"]["current"].is_null());
}

#[tokio::test]
async fn a_weak_validator_of_a_klips_etag_is_304() {
    let app = TestApp::spawn().await;
    let id = q3_revenue(&app).await["id"].as_str().unwrap().to_owned();
    let response = app.get(&format!("/klips/{id}")).await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let r = app
        .http
        .get(app.url(&format!("/klips/{id}")))
        .header("kf-api-key", app.key())
        .header("if-none-match", format!("W/{etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
}

#[tokio::test]
async fn annotations_page_like_every_list_but_are_not_sorted_by_name() {
    let app = TestApp::spawn().await;
    let id = q3_revenue(&app).await["id"].as_str().unwrap().to_owned();
    for day in ["2026-11-01", "2026-11-02", "2026-11-03"] {
        app.call(
            "POST",
            &format!("/klips/{id}/annotations"),
            app.key(),
            Some(json!({"date": day, "text": day})),
        )
        .await;
    }
    let (status, page) = json(app.get(&format!("/klips/{id}/annotations?limit=2")).await).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["meta"]["total"], 3);
    assert_eq!(page["meta"]["count"], 2);
    assert_eq!(
        page["meta"]["next"],
        format!("/api/v1/klips/{id}/annotations?limit=2&offset=2")
    );
    expect_error(
        app.get(&format!("/klips/{id}/annotations?sort=name")).await,
        400,
        "bad_request",
    )
    .await;
}

/// "Q3 Revenue" (slug `q3-revenue`), a currency number with a target of 100 and no data
/// source; answers it.
async fn q3_revenue(app: &TestApp) -> Value {
    new_klip(app, json!({"name": "Q3 Revenue", "type": "number", "query": {"value": "amount", "aggregate": "sum"}, "display": {"format": "currency", "target": 100}})).await
}

async fn q3_revenue_id(app: &TestApp) -> String {
    q3_revenue(app).await["id"].as_str().unwrap().to_owned()
}

/// "Q3 revenue", a count whose derived slug is `q3-revenue` too; answers it.
async fn q3_revenue_count(app: &TestApp) -> Value {
    new_klip(
        app,
        json!({"name": "Q3 revenue", "type": "number", "query": {"aggregate": "count"}}),
    )
    .await
}

/// Renames Klip `id` to "Q3 Revenue (EUR)" with a PUT under its current ETag (version 1 to
/// 2); answers that ETag, now stale.
async fn rename_to_eur(app: &TestApp, id: &str) -> String {
    let path = format!("/klips/{id}");
    let etag = current_etag(app, &path).await;
    let response = put_if_match(app, &path, &etag, json!({"name": "Q3 Revenue (EUR)"})).await;
    assert_eq!(response.status(), 200);
    etag
}

async fn delete_klip(app: &TestApp, id: &str) {
    assert_eq!(delete(app, &format!("/klips/{id}")).await.status(), 200);
}

/// `display.currency` is an ISO 4217 code: anything else is a 400 naming it, on create and
/// on update; a valid one is kept, and absent it is null (the company's currency applies).
#[tokio::test]
async fn display_currency_must_be_an_iso_4217_code() {
    let app = TestApp::spawn().await;
    for bad in [json!("eur"), json!("EURO"), json!("€"), json!(978)] {
        let body = expect_error(
            app.post(
                "/klips",
                json!({"name": "Revenue", "type": "number",
                "query": {"value": "amount"}, "display": {"format": "currency", "currency": bad}}),
            )
            .await,
            400,
            "validation_failed",
        )
        .await;
        assert_eq!(body["details"][0]["field"], "display.currency", "{body}");
    }
    let klip = q3_revenue(&app).await;
    assert_eq!(klip["display"]["currency"], Value::Null, "{klip}");
    let id = klip["id"].as_str().unwrap();
    let (status, updated) = json(
        put(
            &app,
            &format!("/klips/{id}"),
            json!({"display": {"format": "currency", "currency": "SEK"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["display"]["currency"], "SEK");
    let body = expect_error(
        put(
            &app,
            &format!("/klips/{id}"),
            json!({"display": {"format": "currency", "currency": "sek"}}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(body["details"][0]["field"], "display.currency", "{body}");
}

/// A report's amounts carry their currency: a Klip's own `display.currency` (EUR: `€`), or
/// for a Klip that names none the company's `currency` property (SEK: `SEK 1,234`).
#[tokio::test]
async fn report_amounts_are_in_the_klips_currency_or_the_companys() {
    let partner = TestApp::spawn().await;
    let (status, client) = json(
        partner
            .post("/clients", json!({"name": "Nordic", "status": "active"}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{client}");
    let cid = client["data"]["id"].as_str().unwrap().to_owned();
    let (status, body) = json(
        put(
            &partner,
            &format!("/clients/{cid}/properties"),
            json!({"properties": {"currency": "SEK"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The client's own 5 requests a second would refuse the setup's quick succession.
    let (status, body) = json(
        put(
            &partner,
            &format!("/clients/{cid}/resources"),
            json!({"resources": [{"name": "api.requests.perSecond", "value": 1000}]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let inside = |path: &str| format!("{path}?client_id={cid}");
    let create = |path: String, body: Value| {
        let partner = &partner;
        async move {
            let (status, created) =
                json(partner.call("POST", &path, partner.key(), Some(body)).await).await;
            assert_eq!(status, 201, "{path}: {created}");
            created["data"].clone()
        }
    };
    let ds = create(
        inside("/datasources"),
        json!({"name": "Sales", "format": "csv"}),
    )
    .await;
    let ds_id = ds["id"].as_str().unwrap();
    let r = partner
        .http
        .put(partner.url(&inside(&format!("/datasources/{ds_id}/data"))))
        .header("kf-api-key", partner.key())
        .header("content-type", "text/csv")
        .body("region,amount\nEMEA,1234\nAPAC,4321\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let euros = create(inside("/klips"), json!({"name": "Revenue", "type": "number", "datasource_id": ds_id,
        "query": {"value": "amount"}, "display": {"format": "currency", "currency": "EUR", "target": 6000}})).await;
    let kronor = create(
        inside("/klips"),
        json!({"name": "Costs", "type": "bar", "datasource_id": ds_id,
        "query": {"value": "amount", "group_by": "region"}, "display": {"format": "currency"}}),
    )
    .await;
    let report = create(
        inside("/reports"),
        json!({"name": "Money", "format": "html",
        "klip_ids": [euros["id"], kronor["id"]]}),
    )
    .await;
    let report_id = report["id"].as_str().unwrap();
    let r = partner
        .call(
            "POST",
            &inside(&format!("/reports/{report_id}/generate")),
            partner.key(),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status(), 202);
    let mut html = String::new();
    for _ in 0..150 {
        let r = partner
            .call(
                "GET",
                &inside(&format!("/reports/{report_id}/download")),
                partner.key(),
                None,
            )
            .await;
        if r.status() == 200 {
            html = r.text().await.unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        html.contains("<span class=\"value\">€5,555</span>"),
        "{html}"
    );
    assert!(html.contains("(target €6,000)"), "{html}");
    assert!(
        html.contains("SEK 4,321") && html.contains("SEK 1,234"),
        "{html}"
    );
    assert!(!html.contains('$'), "{html}");
}
