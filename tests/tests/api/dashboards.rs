//! The dashboards function, and the end-to-end path of the asset API: data → Klips →
//! dashboard values that match hand-computed numbers, then new rows and a refresh.

use chrono::{Duration, Utc};
use chrono_tz::America::New_York;
use pulseboard_tests::fixtures::{delete, put};
use pulseboard_tests::{expect_error, json, TestApp};
use serde_json::{json, Value};

async fn created(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, created) = json(app.post(path, body).await).await;
    assert_eq!(status, 201, "{path}: {created}");
    created["data"].clone()
}

fn approx(value: &Value, expected: f64) {
    let got = value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"));
    assert!(
        (got - expected).abs() < 1e-9,
        "expected {expected}, got {got}"
    );
}

/// Daily sales for the last ten New York days: EMEA sells 10·(d+1), APAC 5·(d+1) on the day
/// `d` days ago.
fn sales_csv() -> String {
    let today = Utc::now().with_timezone(&New_York).date_naive();
    let mut csv = String::from("date,region,amount\n");
    for d in 0..10i64 {
        let day = today - Duration::days(d);
        csv.push_str(&format!(
            "{day},EMEA,{}\n{day},APAC,{}\n",
            10 * (d + 1),
            5 * (d + 1)
        ));
    }
    csv
}

#[tokio::test]
async fn data_to_klips_to_a_dashboard_with_hand_computed_values() {
    let app = TestApp::spawn().await;
    let ds = created(
        &app,
        "/datasources",
        json!({"name": "Daily sales", "format": "csv"}),
    )
    .await;
    let ds_id = ds["id"].as_str().unwrap().to_owned();
    let r = app
        .http
        .put(app.url(&format!("/datasources/{ds_id}/data")))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body(sales_csv())
        .send()
        .await
        .unwrap();
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["row_count"], 20);

    // A number with a target, a daily line, a bar chart by region.
    let number = created(&app, "/klips", json!({"name": "Sales this week", "type": "number", "datasource_id": ds_id,
        "query": {"value": "amount", "aggregate": "sum", "time_column": "date", "range": "last_7_days"},
        "display": {"format": "currency", "target": 450, "higher_is_better": true}})).await;
    let line = created(&app, "/klips", json!({"name": "Daily sales", "type": "line", "datasource_id": "daily-sales",
        "query": {"value": "amount", "aggregate": "sum", "time_column": "date", "time_bucket": "day", "range": "last_7_days"}})).await;
    let bar = created(
        &app,
        "/klips",
        json!({"name": "By region", "type": "bar", "datasource_id": ds_id,
        "query": {"value": "amount", "aggregate": "sum", "group_by": "region", "sort": "-value"}}),
    )
    .await;

    let dash = created(&app, "/dashboards", json!({"name": "Sales overview"})).await;
    let dash_id = dash["id"].as_str().unwrap().to_owned();
    let body = json!({"klips": [
        {"klip_id": number["id"], "region": "top", "position": 0},
        {"klip_id": line["slug"], "region": "main", "position": 0},
        {"klip_id": bar["id"], "region": "main", "position": 1},
    ]});
    let (status, added) = json(
        app.call(
            "PUT",
            &format!("/dashboards/{dash_id}/klip-instances"),
            app.key(),
            Some(body),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{added}");

    let widgets = |body: &Value| body["data"]["klip_instances"].as_array().unwrap().clone();
    let (status, shown) = json(app.get(&format!("/tabs/{dash_id}")).await).await;
    assert_eq!(status, 200, "{shown}");
    let w = widgets(&shown);
    assert_eq!(w.len(), 3);
    // Sorted by region then position: main/0 line, main/1 bar, top/0 number.
    let (line_w, bar_w, number_w) = (&w[0], &w[1], &w[2]);
    assert_eq!(number_w["klip_id"], number["id"]);
    // Last 7 days (today included): 15·(1+…+7) = 420; the 7 before: days 7..9 only, 15·(8+9+10) = 405.
    approx(&number_w["value"]["current"], 420.0);
    approx(&number_w["value"]["previous"], 405.0);
    approx(&number_w["value"]["change"], 15.0);
    approx(&number_w["value"]["change_pct"], 15.0 / 405.0 * 100.0);
    assert_eq!(
        number_w["value"]["status"], "warning",
        "420 is within 10% under the 450 target"
    );
    let series = line_w["value"]["series"].as_array().unwrap();
    assert_eq!(series.len(), 7);
    let today = Utc::now().with_timezone(&New_York).date_naive();
    assert_eq!(series[6]["x"], today.to_string());
    approx(&series[6]["y"], 15.0);
    assert_eq!(series[0]["x"], (today - Duration::days(6)).to_string());
    approx(&series[0]["y"], 105.0);
    assert_eq!(
        bar_w["value"]["groups"],
        json!([{"key": "EMEA", "value": 550.0}, {"key": "APAC", "value": 275.0}])
    );

    // New rows: EMEA sells 100 more today. Pushing recomputes; refresh answers the dashboard.
    let today_row = format!("date,region,amount\n{today},EMEA,100\n");
    let r = app
        .http
        .post(app.url(&format!("/datasources/{ds_id}/data")))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body(today_row)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let (status, refreshed) = json(
        app.call(
            "POST",
            &format!("/dashboards/{dash_id}/@/refresh"),
            app.key(),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    let w = widgets(&refreshed);
    approx(&w[2]["value"]["current"], 520.0);
    assert_eq!(w[2]["value"]["status"], "good");
    approx(&w[0]["value"]["series"][6]["y"], 115.0);
    assert_eq!(
        w[1]["value"]["groups"][0],
        json!({"key": "EMEA", "value": 650.0})
    );

    // full=true inlines each Klip.
    let (_, full) = json(app.get(&format!("/dashboards/{dash_id}?full=true")).await).await;
    assert_eq!(widgets(&full)[2]["klip"]["query"]["range"], "last_7_days");
}

#[tokio::test]
async fn a_new_dashboard_gets_a_slug_and_is_no_favorite() {
    let app = TestApp::spawn().await;
    let dash = ops(&app).await;
    assert_eq!(dash["slug"], "ops");
    assert_eq!(dash["is_favorite"], false);
}

/// The layout PUT sends the whole layout: a type without a state is a 400.
#[tokio::test]
async fn a_partial_layout_is_a_400() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    expect_error(
        put(
            &app,
            &format!("/dashboards/{id}/layout"),
            json!({"type": "grid"}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn a_layout_put_replaces_the_layout() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    let (status, layout) = json(
        put(
            &app,
            &format!("/dashboards/{id}/layout"),
            json!({"type": "columns", "state": {"widths": [1, 2]}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        layout["data"],
        json!({"type": "columns", "state": {"widths": [1, 2]}})
    );
}

/// A layout state holding a number the database cannot store is a 400 naming it.
#[tokio::test]
async fn a_layout_number_the_database_cannot_store_is_a_400() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    let body = expect_error(
        put(
            &app,
            &format!("/dashboards/{id}/layout"),
            json!({"type": "columns", "state": {"widths": [1, 1e300]}}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(
        body["details"][0]["field"], "layout.state.widths[1]",
        "{body}"
    );
}

#[tokio::test]
async fn a_favorite_is_the_callers_own() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    favorite(&app, &id).await;
    let (_, shown) = json(app.get("/dashboards/ops").await).await;
    assert_eq!(shown["data"]["is_favorite"], true);
    let (_, editor_key) = app.user_with_key(&["editor"], None).await;
    let (_, theirs) = json(app.call("GET", "/dashboards/ops", &editor_key, None).await).await;
    assert_eq!(theirs["data"]["is_favorite"], false);
}

#[tokio::test]
async fn the_list_filters_favorites() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    favorite(&app, &id).await;
    let (_, favs) = json(app.get("/dashboards?is_favorite=true").await).await;
    assert_eq!(favs["meta"]["total"], 1);
}

#[tokio::test]
async fn a_favorite_can_be_taken_back() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    favorite(&app, &id).await;
    assert_eq!(
        delete(&app, &format!("/dashboards/{id}/favorite"))
            .await
            .status(),
        200
    );
    let (_, shown) = json(app.get("/dashboards/ops").await).await;
    assert_eq!(shown["data"]["is_favorite"], false);
}

#[tokio::test]
async fn an_unknown_klip_in_the_instances_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    let body = expect_error(
        put(
            &app,
            &format!("/dashboards/{id}/klip-instances"),
            json!({"klips": [{"klip_id": "missing"}]}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(body["details"][0]["field"], "klips[0].klip_id");
}

#[tokio::test]
async fn klip_instances_are_listed_with_the_klips_name() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    let klip = count_klip(&app).await;
    add_instance(&app, &id, &klip).await;
    let (_, list) = json(app.get(&format!("/dashboards/{id}/klip-instances")).await).await;
    assert_eq!(list["meta"]["total"], 1);
    assert_eq!(list["data"]["klip_instances"][0]["name"], "Count");
}

/// The same Klip twice: both widgets carry it (it is read once).
#[tokio::test]
async fn the_same_klip_twice_gives_two_widgets_that_carry_it() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    let klip = count_klip(&app).await;
    let widgets = same_klip_twice(&app, &id, &klip).await;
    let names: Vec<&str> = widgets
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Count", "Count"]);
}

#[tokio::test]
async fn a_klip_instance_can_be_removed() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    let klip = count_klip(&app).await;
    let widgets = same_klip_twice(&app, &id, &klip).await;
    let second = widgets[1]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        delete(&app, &format!("/dashboards/{id}/klip-instances/{second}"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn deleting_a_klip_removes_its_instances() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    let klip = count_klip(&app).await;
    add_instance(&app, &id, &klip).await;
    let (_, list) = json(app.get(&format!("/dashboards/{id}/klip-instances")).await).await;
    let instance = list["data"]["klip_instances"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        delete(&app, &format!("/klips/{}", klip["id"].as_str().unwrap()))
            .await
            .status(),
        200
    );
    let (_, list) = json(app.get(&format!("/dashboards/{id}/klip-instances")).await).await;
    assert_eq!(list["meta"]["total"], 0);
    expect_error(
        delete(&app, &format!("/dashboards/{id}/klip-instances/{instance}")).await,
        404,
        "not_found",
    )
    .await;
}

/// A delete with a stale If-Match is a 412 and leaves the dashboard to a plain delete.
/// (If-Match compares versions: the layout change makes a v1 tag stale.)
#[tokio::test]
async fn a_delete_with_a_stale_etag_is_a_412_and_deletes_nothing() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    let response = put(
        &app,
        &format!("/dashboards/{id}/layout"),
        json!({"type": "columns", "state": {"widths": [1, 2]}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let r = app
        .http
        .delete(app.url(&format!("/dashboards/{id}")))
        .header("kf-api-key", app.key())
        .header("if-match", "\"v1-000000000000\"")
        .send()
        .await
        .unwrap();
    expect_error(r, 412, "precondition_failed").await;
    assert_eq!(app.get(&format!("/dashboards/{id}")).await.status(), 200);
    assert_eq!(
        delete(&app, &format!("/dashboards/{id}")).await.status(),
        200
    );
}

#[tokio::test]
async fn a_deleted_dashboard_is_a_404() {
    let app = TestApp::spawn().await;
    let id = ops_id(&app).await;
    assert_eq!(
        delete(&app, &format!("/dashboards/{id}")).await.status(),
        200
    );
    expect_error(
        app.get(&format!("/dashboards/{id}")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn published_links_need_no_credentials_count_apart_from_the_owner_and_stop_when_revoked_or_expired(
) {
    let app = TestApp::spawn().await;
    let dash = created(&app, "/dashboards", json!({"name": "Public KPIs"})).await;
    let id = dash["id"].as_str().unwrap().to_owned();
    let (status, link) = json(
        app.call(
            "POST",
            &format!("/dashboards/{id}/published-links"),
            app.key(),
            Some(json!({"expires_in_days": 7})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{link}");
    let token = link["data"]["token"].as_str().unwrap().to_owned();
    let link_id = link["data"]["id"].as_str().unwrap().to_owned();
    assert!(link["data"]["expires_at"].as_str().is_some());
    assert_eq!(
        link["data"]["url"],
        format!("/api/1.0/public/dashboards/{token}")
    );

    let (_, before) = json(app.get("/usage").await).await;
    let public = app
        .http
        .get(app.url(&format!("/public/dashboards/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200);
    // A visitor is not shown the owner's quota (nor counted in it, below).
    assert!(!public.headers().contains_key("x-ratelimit-remaining"));
    assert!(!public.headers().contains_key("x-ratelimit-limit"));
    let (_, body) = json(public).await;
    assert_eq!(body["data"]["name"], "Public KPIs");
    assert!(body["data"].get("share_rights").is_none());
    // JSONP works there too.
    let text = app
        .http
        .get(app.url(&format!("/public/dashboards/{token}?callback=kpis")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("kpis({"), "{text}");
    // Public views have an allowance of their own: only the /usage call itself counted.
    let (_, after) = json(app.get("/usage").await).await;
    assert_eq!(
        after["data"]["used_today"].as_i64().unwrap(),
        before["data"]["used_today"].as_i64().unwrap() + 1
    );

    // Expired after 7 days.
    app.advance(chrono::Duration::days(8));
    expect_error(
        app.http
            .get(app.url(&format!("/public/dashboards/{token}")))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    // A link without expiry works until revoked.
    let (_, forever) = json(
        app.call(
            "POST",
            &format!("/dashboards/{id}/published-links"),
            app.key(),
            None,
        )
        .await,
    )
    .await;
    let token2 = forever["data"]["token"].as_str().unwrap().to_owned();
    assert!(forever["data"]["expires_at"].is_null());
    assert_eq!(
        app.http
            .get(app.url(&format!("/public/dashboards/{token2}")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let link2 = forever["data"]["id"].as_str().unwrap();
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/dashboards/{id}/published-links/{link2}"),
            app.key(),
            None
        )
        .await
        .status(),
        200
    );
    // Revoked: 404 at once. The server had resolved this link before, so it counted the
    // next request while resolving it again; that count is given back, and the link is
    // then resolved first and counts nothing.
    let (_, before_gone) = json(app.get("/usage").await).await;
    for _ in 0..2 {
        expect_error(
            app.http
                .get(app.url(&format!("/public/dashboards/{token2}")))
                .send()
                .await
                .unwrap(),
            404,
            "not_found",
        )
        .await;
    }
    let (_, after_gone) = json(app.get("/usage").await).await;
    assert_eq!(
        after_gone["data"]["used_today"].as_i64().unwrap(),
        before_gone["data"]["used_today"].as_i64().unwrap() + 1,
        "only the /usage call counts"
    );
    expect_error(
        app.call(
            "DELETE",
            &format!("/dashboards/{id}/published-links/{link_id}-x"),
            app.key(),
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    expect_error(
        app.http
            .get(app.url("/public/dashboards/not-a-token"))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn publishing_needs_the_public_dashboards_feature() {
    let partner = TestApp::spawn().await;
    let (_, client) = json(partner.post("/clients", json!({"name": "No public"})).await).await;
    let cid = client["data"]["id"].as_str().unwrap().to_owned();
    partner
        .call(
            "PUT",
            &format!("/clients/{cid}/features"),
            partner.key(),
            Some(json!({"features": [{"name": "public_dashboards", "enabled": false}]})),
        )
        .await;
    let (status, dash) = json(
        partner
            .call(
                "POST",
                &format!("/dashboards?client_id={cid}"),
                partner.key(),
                Some(json!({"name": "Inside"})),
            )
            .await,
    )
    .await;
    assert_eq!(status, 201, "{dash}");
    let id = dash["data"]["id"].as_str().unwrap();
    let r = partner
        .call(
            "POST",
            &format!("/dashboards/{id}/published-links?client_id={cid}"),
            partner.key(),
            Some(json!({})),
        )
        .await;
    let body = expect_error(r, 403, "forbidden").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("public_dashboards"),
        "{body}"
    );
    // The client's dashboard is invisible from the partner's own company.
    expect_error(
        partner.get(&format!("/dashboards/{id}")).await,
        404,
        "not_found",
    )
    .await;
    // And its dashboard.combined.total limit holds.
    partner
        .call(
            "PUT",
            &format!("/clients/{cid}/resources"),
            partner.key(),
            Some(json!({"resources": [{"name": "dashboard.combined.total", "value": 1}]})),
        )
        .await;
    let body = expect_error(
        partner
            .call(
                "POST",
                &format!("/dashboards?client_id={cid}"),
                partner.key(),
                Some(json!({"name": "Second"})),
            )
            .await,
        403,
        "forbidden",
    )
    .await;
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("dashboard.combined.total"));
}

/// "Ops", a dashboard with a grid layout; answers it.
async fn ops(app: &TestApp) -> Value {
    created(
        app,
        "/dashboards",
        json!({"name": "Ops", "layout": {"type": "grid", "state": {"columns": 3}}}),
    )
    .await
}

async fn ops_id(app: &TestApp) -> String {
    ops(app).await["id"].as_str().unwrap().to_owned()
}

/// Makes dashboard `id` a favorite of the bootstrap admin.
async fn favorite(app: &TestApp, id: &str) {
    assert_eq!(
        app.call(
            "PUT",
            &format!("/dashboards/{id}/favorite"),
            app.key(),
            None
        )
        .await
        .status(),
        200
    );
}

/// "Count", a number Klip without a data source.
async fn count_klip(app: &TestApp) -> Value {
    created(
        app,
        "/klips",
        json!({"name": "Count", "type": "number", "query": {"aggregate": "count"}}),
    )
    .await
}

/// Adds `klip` to dashboard `id`, first in the main region.
async fn add_instance(app: &TestApp, id: &str, klip: &Value) {
    put(
        app,
        &format!("/dashboards/{id}/klip-instances"),
        json!({"klips": [{"klip_id": klip["id"], "region": "main", "position": 0}]}),
    )
    .await;
}

/// Adds `klip` to dashboard `id` twice; answers the dashboard's widgets.
async fn same_klip_twice(app: &TestApp, id: &str, klip: &Value) -> Vec<Value> {
    add_instance(app, id, klip).await;
    put(
        app,
        &format!("/dashboards/{id}/klip-instances"),
        json!({"klips": [{"klip_id": klip["id"]}]}),
    )
    .await;
    let (_, twice) = json(app.get(&format!("/dashboards/{id}")).await).await;
    twice["data"]["klip_instances"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_browser_opening_a_published_link_gets_the_dashboard_as_one_safe_page() {
    let app = TestApp::spawn().await;
    let ds = created(
        &app,
        "/datasources",
        json!({"name": "Sales", "format": "csv"}),
    )
    .await;
    let ds_id = ds["id"].as_str().unwrap().to_owned();
    let r = app
        .http
        .put(app.url(&format!("/datasources/{ds_id}/data")))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv")
        .body(sales_csv())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let line = created(&app, "/klips", json!({"name": "Daily <sales>", "type": "line", "datasource_id": ds_id,
        "query": {"value": "amount", "time_column": "date", "time_bucket": "day", "range": "last_7_days"},
        "display": {"target": 500}})).await;
    let bars = created(
        &app,
        "/klips",
        json!({"name": "By region", "type": "bar", "datasource_id": ds_id,
        "query": {"value": "amount", "group_by": "region"}}),
    )
    .await;
    let dash = created(&app, "/dashboards", json!({"name": "Sales board"})).await;
    let id = dash["id"].as_str().unwrap().to_owned();
    let (status, _) = json(
        app.call(
            "PUT",
            &format!("/dashboards/{id}/klip-instances"),
            app.key(),
            Some(json!({"klips": [
                {"klip_id": line["id"], "region": "main", "position": 0},
                {"klip_id": bars["id"], "region": "main", "position": 1}]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let (_, link) = json(
        app.call(
            "POST",
            &format!("/dashboards/{id}/published-links"),
            app.key(),
            Some(json!({})),
        )
        .await,
    )
    .await;
    let token = link["data"]["token"].as_str().unwrap().to_owned();
    let r = app
        .http
        .get(app.url(&format!("/public/dashboards/{token}")))
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(r.headers().get("x-ratelimit-remaining").is_none());
    let html = r.text().await.unwrap();
    // `scripts/report-images.sh` screenshots it.
    if let Ok(dir) = std::env::var("PULSEBOARD_REPORT_DIR") {
        std::fs::write(std::path::Path::new(&dir).join("published.html"), &html).unwrap();
    }
    assert!(html.contains("<h1>Sales board</h1>"), "{html}");
    // Names are escaped; both widgets are there in order, with a chart each.
    let (first, second) = (
        html.find("Daily &lt;sales&gt;").expect("the line Klip"),
        html.find("By region").expect("the bar Klip"),
    );
    assert!(first < second);
    assert!(html.matches("<svg").count() >= 2, "{html}");
    assert!(
        html.contains("EMEA") && html.contains("target 500"),
        "{html}"
    );
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    // An API client still gets JSON.
    let r = app
        .http
        .get(app.url(&format!("/public/dashboards/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
}

/// A published page's HTML (and the analysis in it) is computed once and kept for the next
/// views of the same dashboard and values; a change to a Klip is on the very next view.
#[tokio::test]
async fn a_published_page_is_computed_once_per_change_of_what_it_shows() {
    let app = TestApp::spawn().await;
    let ds = created(
        &app,
        "/datasources",
        json!({"name": "Sales", "format": "csv"}),
    )
    .await;
    let ds_id = ds["id"].as_str().unwrap().to_owned();
    let put = |csv: String| {
        app.http
            .put(app.url(&format!("/datasources/{ds_id}/data")))
            .header("kf-api-key", app.key())
            .header("content-type", "text/csv")
            .body(csv)
            .send()
    };
    assert_eq!(put(sales_csv()).await.unwrap().status(), 200);
    let klip = created(&app, "/klips", json!({"name": "Daily sales", "type": "line", "datasource_id": ds_id,
        "query": {"value": "amount", "time_column": "date", "time_bucket": "day", "range": "last_7_days"}})).await;
    let dash = created(&app, "/dashboards", json!({"name": "Board"})).await;
    let id = dash["id"].as_str().unwrap().to_owned();
    let instances = json!({"klips": [{"klip_id": klip["id"], "region": "main", "position": 0}]});
    let path = format!("/dashboards/{id}/klip-instances");
    assert_eq!(
        app.call("PUT", &path, app.key(), Some(instances))
            .await
            .status(),
        200
    );
    let (_, link) = json(
        app.post(&format!("/dashboards/{id}/published-links"), json!({}))
            .await,
    )
    .await;
    let page_url = app.url(&format!(
        "/public/dashboards/{}",
        link["data"]["token"].as_str().unwrap()
    ));
    let page = || async {
        let r = app
            .http
            .get(&page_url)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let first = page().await;
    assert_eq!(app.state.caches.published_pages.len(), 1);
    assert_eq!(page().await, first, "the same page, from the cache");
    assert_eq!(app.state.caches.published_pages.len(), 1);
    // A rename is a new Klip version: the next view shows it.
    let klip_path = format!("/klips/{}", klip["id"].as_str().unwrap());
    let renamed = app
        .call(
            "PUT",
            &klip_path,
            app.key(),
            Some(json!({"name": "Sales per day"})),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    let second = page().await;
    assert!(second.contains("Sales per day") && !second.contains("Daily sales"));
    assert_eq!(app.state.caches.published_pages.len(), 2);
}

/// Updates without `If-Match` set no precondition: four at once on one dashboard all land
/// (each one that lost the race to another applies its body to a fresh read), and the
/// version counts every one. With a stale `If-Match` the answer is still 412.
#[tokio::test]
async fn concurrent_updates_without_if_match_all_land_and_a_stale_if_match_is_412() {
    let app = TestApp::spawn().await;
    let d = created(&app, "/dashboards", json!({"name": "Busy"})).await;
    let path = format!("/dashboards/{}", d["id"].as_str().unwrap());
    let puts = (0..4).map(|i| {
        app.call(
            "PUT",
            &path,
            app.key(),
            Some(json!({"description": format!("edit {i}")})),
        )
    });
    for r in futures::future::join_all(puts).await {
        let (status, body) = json(r).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, now) = json(app.get(&path).await).await;
    assert_eq!(now["data"]["version"], 5, "{now}");
    let r = pulseboard_tests::fixtures::put_if_match(
        &app,
        &path,
        "\"v1-0\"",
        json!({"description": "stale"}),
    )
    .await;
    expect_error(r, 412, "precondition_failed").await;
}

/// The ids of a dashboard list's page as `key` sees it, and its `total`.
async fn listed(app: &TestApp, key: &str, query: &str) -> (Vec<String>, u64) {
    let (status, body) = json(
        app.call("GET", &format!("/dashboards?{query}"), key, None)
            .await,
    )
    .await;
    assert_eq!(status, 200, "{query}: {body}");
    let ids = body["data"]["dashboards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, body["meta"]["total"].as_u64().unwrap())
}

#[tokio::test]
async fn a_list_in_creation_order_is_paged_by_the_database_as_memory_pages_it() {
    let app = TestApp::spawn().await;
    let key = app.key().to_owned();
    // Three made in one frozen instant (same second, same millisecond: the order of their
    // ids decides), then four a second apart.
    let start = Utc::now();
    app.freeze(start);
    let mut made = Vec::new();
    for i in 0..7 {
        if i >= 3 {
            app.freeze(start + Duration::seconds(i));
        }
        let d = created(&app, "/dashboards", json!({"name": format!("Board {i}")})).await;
        made.push(d["id"].as_str().unwrap().to_owned());
    }
    // Ids sort by creation time: those a second apart in the order they were made.
    assert!(made[3..].windows(2).all(|w| w[0] < w[1]), "{made:?}");
    assert!(made[..3].iter().all(|early| *early < made[3]), "{made:?}");
    let doomed = made.remove(4);
    let gone = delete(&app, &format!("/dashboards/{doomed}")).await;
    assert_eq!(gone.status(), 200);

    // The admin sees every dashboard: the default order is read page by page from the
    // database (with the kept count as the total); a favourites filter reads them all and
    // pages in memory. Both must agree, in either paging style.
    let company = &app.company.company_id;
    let counted = app
        .state
        .store
        .assets()
        .count::<platform::assets::records::Dashboard>(company)
        .await
        .unwrap();
    let (all, total) = listed(&app, &key, "is_favorite=false&limit=100").await;
    assert_eq!(total as usize, all.len());
    assert_eq!(counted, total, "the kept count is the number of dashboards");
    for id in &made {
        assert!(all.contains(id), "{id} missing from {all:?}");
    }
    assert!(!all.contains(&doomed));
    let mut paged = Vec::new();
    for offset in (0..all.len() + 2).step_by(2) {
        let (page, t) = listed(&app, &key, &format!("limit=2&offset={offset}")).await;
        assert_eq!(t, total, "offset {offset}");
        paged.extend(page);
    }
    assert_eq!(paged, all, "the database's pages are memory's order");
    let (page, t) = listed(&app, &key, "page=2&page_size=3").await;
    assert_eq!((page.as_slice(), t), (&all[3..6.min(all.len())], total));
    // Newest first: the database reads the partition backwards, ties included.
    let (newest, _) = listed(&app, &key, "is_favorite=false&limit=100&sort=-date_created").await;
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(
        newest, reversed,
        "newest first is the oldest first reversed"
    );
    let mut paged = Vec::new();
    for offset in (0..all.len() + 2).step_by(3) {
        let query = format!("limit=3&offset={offset}&sort=-date_created");
        let (page, t) = listed(&app, &key, &query).await;
        assert_eq!(t, total, "{query}");
        paged.extend(page);
    }
    assert_eq!(
        paged, newest,
        "the database's pages, newest first, are memory's order"
    );

    // A viewer sees only what is shared with it: its list is read whole, as before.
    let (_, viewer_key) = app.user_with_key(&["viewer"], None).await;
    let (theirs, theirs_total) = listed(&app, &viewer_key, "limit=100").await;
    assert_eq!(theirs.len() as u64, theirs_total);
    assert!(theirs.iter().all(|id| !made.contains(id)), "{theirs:?}");
}

#[tokio::test]
async fn a_company_made_before_assets_were_counted_pages_its_lists_in_memory() {
    use platform::assets::records::Dashboard;
    use platform::store::keys;
    let app = TestApp::spawn().await;
    for i in 0..5 {
        created(&app, "/dashboards", json!({"name": format!("Old {i}")})).await;
    }
    // As a company made before: no count of its dashboards, and not marked as counted.
    let store = &app.state.store;
    let company_id = &app.company.company_id;
    let count_key = keys::asset_count(platform::assets::Kind::Dashboard, company_id);
    store.delete(&count_key).await.unwrap();
    let mut company: domain::accounts::Company =
        store.get(keys::company(company_id)).await.unwrap().unwrap();
    assert!(company.assets_counted, "a new company's assets are counted");
    company.assets_counted = false;
    store
        .put(&keys::company(company_id), &company)
        .await
        .unwrap();
    assert_eq!(
        store.assets().count::<Dashboard>(company_id).await.unwrap(),
        0
    );

    // A new instance (nothing remembered) reads the company as it is now: its list is
    // read whole, so the total is every dashboard, not what a count would say.
    let base = app.another_instance().await;
    let (status, body) = json(
        app.http
            .get(format!("{base}/api/v1/dashboards?limit=2"))
            .header("kf-api-key", app.key())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (all, total) = listed(&app, app.key(), "is_favorite=false&limit=100").await;
    assert_eq!(body["meta"]["total"].as_u64(), Some(total));
    assert!(total >= 5, "{total}");
    assert_eq!(body["meta"]["count"], 2);
    let page: Vec<&str> = body["data"]["dashboards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, [all[0].as_str(), all[1].as_str()]);
}
