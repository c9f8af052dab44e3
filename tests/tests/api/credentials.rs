//! API.md §2: the four credential forms, and credentials that do not hold.

use base64::Engine;
use pulseboard_tests::{expect_error, json, TestApp, PASSWORD};
use serde_json::json;

#[tokio::test]
async fn all_four_header_forms_authenticate() {
    let app = TestApp::spawn().await;
    let access = app.login().await["access"].as_str().unwrap().to_owned();
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{PASSWORD}", app.company.email));
    let requests = [
        ("kf-api-key", app.key().to_owned(), "api_key"),
        ("x-api-key", app.key().to_owned(), "api_key"),
        ("authorization", format!("Bearer {}", app.key()), "api_key"),
        ("authorization", format!("Bearer {access}"), "jwt"),
        ("authorization", format!("Basic {basic}"), "basic"),
    ];
    for (header, value, method) in requests {
        let response = app
            .http
            .get(app.url("/auth/verify"))
            .header(header, &value)
            .send()
            .await
            .unwrap();
        let (status, body) = json(response).await;
        assert_eq!(status, 200, "{header}: {body}");
        assert_eq!(body["data"]["valid"], true);
        assert_eq!(body["data"]["method"], method);
        assert_eq!(
            body["data"]["company"]["id"],
            app.company.company_id.as_str()
        );
        assert_eq!(body["data"]["user"]["email"], app.company.email.as_str());
        if method == "api_key" {
            assert!(body["data"]["api_key"]["prefix"]
                .as_str()
                .unwrap()
                .starts_with("pb_live_"));
        } else {
            assert!(body["data"]["api_key"].is_null());
        }
    }
}

async fn expect_401(response: reqwest::Response, message_part: &str) {
    let www = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(www.as_deref(), Some("Basic realm=\"pulseboard\", Bearer"));
    let body = expect_error(response, 401, "unauthorized").await;
    assert!(
        body["message"].as_str().unwrap().contains(message_part),
        "{body}"
    );
}

#[tokio::test]
async fn missing_wrong_and_malformed_credentials_are_401() {
    let app = TestApp::spawn().await;
    let url = app.url("/profile");
    expect_401(
        app.http.get(&url).send().await.unwrap(),
        "authentication required",
    )
    .await;
    let unknown = domain::ids::new_api_key(&domain::ids::KeyNames {
        company_id: app.company.company_id.clone(),
        user_id: domain::ids::new_id(),
        key_id: domain::ids::new_id(),
    })
    .secret;
    expect_401(
        app.http
            .get(&url)
            .header("kf-api-key", unknown)
            .send()
            .await
            .unwrap(),
        "invalid API key",
    )
    .await;
    expect_401(
        app.http
            .get(&url)
            .header("x-api-key", "pb_live_short")
            .send()
            .await
            .unwrap(),
        "invalid API key",
    )
    .await;
    expect_401(
        app.http
            .get(&url)
            .header("authorization", "Bearer not.a.jwt")
            .send()
            .await
            .unwrap(),
        "invalid access token",
    )
    .await;
    expect_401(
        app.http
            .get(&url)
            .header("authorization", "Digest abc")
            .send()
            .await
            .unwrap(),
        "unsupported",
    )
    .await;
    let wrong = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:wrong-password-1", app.company.email));
    expect_401(
        app.http
            .get(&url)
            .header("authorization", format!("Basic {wrong}"))
            .send()
            .await
            .unwrap(),
        "invalid email or password",
    )
    .await;
    expect_401(
        app.http
            .get(&url)
            .header("authorization", "Basic %%%")
            .send()
            .await
            .unwrap(),
        "malformed",
    )
    .await;
}

#[tokio::test]
async fn expired_key_fails_after_its_lifetime() {
    let app = TestApp::spawn().await;
    let key = app
        .create_key(json!({"name": "short", "expires_in_days": 30}))
        .await;
    let secret = key["key"].as_str().unwrap().to_owned();
    assert!(key["expires_at"].as_str().is_some());
    let ok = app
        .http
        .get(app.url("/profile"))
        .header("kf-api-key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    app.advance(chrono::Duration::days(31));
    expect_401(
        app.http
            .get(app.url("/profile"))
            .header("kf-api-key", &secret)
            .send()
            .await
            .unwrap(),
        "expired",
    )
    .await;
    // The never-expiring bootstrap key still works.
    assert_eq!(app.get("/profile").await.status(), 200);
}

#[tokio::test]
async fn revoked_key_fails_on_the_very_next_request() {
    let app = TestApp::spawn().await;
    let key = app.create_key(json!({"name": "to revoke"})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    // Two reads, so this instance remembers the caller and reads speculatively.
    for _ in 0..2 {
        let r = app
            .http
            .get(app.url("/api-keys"))
            .header("kf-api-key", &secret)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = app
        .http
        .delete(app.url(&format!("/api-keys/{}", key["id"].as_str().unwrap())))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap();
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"meta": {"success": true, "status": 200}}));
    expect_401(
        app.http
            .get(app.url("/api-keys"))
            .header("kf-api-key", &secret)
            .send()
            .await
            .unwrap(),
        "",
    )
    .await;
    let (status, body) = json(
        app.get(&format!("/api-keys/{}", key["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "revoked");
}

#[tokio::test]
async fn rotated_key_replaces_the_old_one() {
    let app = TestApp::spawn().await;
    let key = app
        .create_key(
            json!({"name": "rotating", "scopes": ["report.generate"], "expires_in_days": 90}),
        )
        .await;
    let old = key["key"].as_str().unwrap().to_owned();
    let response = app
        .post(
            &format!("/api-keys/{}/rotate", key["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, body) = json(response).await;
    let new = body["data"]["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(body["data"]["name"], "rotating");
    assert_eq!(body["data"]["scopes"], json!(["report.generate"]));
    assert_eq!(
        location,
        format!("/api/1.0/api-keys/{}", body["data"]["id"].as_str().unwrap())
    );
    expect_401(
        app.http
            .get(app.url("/profile"))
            .header("kf-api-key", &old)
            .send()
            .await
            .unwrap(),
        "revoked",
    )
    .await;
    assert_eq!(
        app.http
            .get(app.url("/profile"))
            .header("kf-api-key", &new)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn scoped_key_has_only_its_scopes() {
    let app = TestApp::spawn().await;
    let key = app
        .create_key(json!({"name": "reports only", "scopes": ["report.generate"]}))
        .await;
    let secret = key["key"].as_str().unwrap();
    let response = app
        .http
        .post(app.url("/api-keys"))
        .header("kf-api-key", secret)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    let body = expect_error(response, 403, "forbidden").await;
    assert_eq!(body["message"], "missing permission api_key.manage");
    // Reads are still allowed.
    assert_eq!(
        app.http
            .get(app.url("/profile"))
            .header("kf-api-key", secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (_, profile) = json(
        app.http
            .get(app.url("/profile?full=true"))
            .header("kf-api-key", secret)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(profile["data"]["permissions"], json!(["report.generate"]));

    // Scopes must be permission names the creator holds.
    let response = app
        .post(
            "/api-keys",
            json!({"name": "bad", "scopes": ["root.everything"]}),
        )
        .await;
    let body = expect_error(response, 400, "validation_failed").await;
    assert_eq!(body["details"][0]["field"], "scopes");
}

#[tokio::test]
async fn a_deleted_user_loses_keys_and_tokens() {
    let app = TestApp::spawn().await;
    let access = app.login().await["access"].as_str().unwrap().to_owned();
    let key = platform::store::keys::user(&app.company.company_id, &app.company.user_id);
    app.state.store.delete(&key).await.unwrap();
    expect_401(app.get("/profile").await, "no longer exists").await;
    expect_401(
        app.http
            .get(app.url("/profile"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap(),
        "no longer exists",
    )
    .await;
}

#[tokio::test]
async fn usage_count_and_last_used_are_kept() {
    let app = TestApp::spawn().await;
    let key = app.create_key(json!({"name": "counted"})).await;
    let secret = key["key"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(
            app.http
                .get(app.url("/profile"))
                .header("x-api-key", secret)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let (_, body) = json(
        app.get(&format!("/api-keys/{}", key["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(body["data"]["usage_count"], 3);
    assert!(body["data"]["last_used_at"].as_str().is_some());
    assert!(
        body["data"].get("hash").is_none() && body["data"].get("key").is_none(),
        "{body}"
    );
}

#[tokio::test]
async fn a_scoped_key_cannot_trade_itself_for_a_stronger_one() {
    let app = TestApp::spawn().await;
    let scoped = app
        .create_key(json!({"name": "integration", "scopes": ["api_key.manage", "dashboard.build"]}))
        .await;
    let secret = scoped["key"].as_str().unwrap();
    let full = app.create_key(json!({"name": "full"})).await;
    let full_id = full["id"].as_str().unwrap();
    let body = expect_error(
        app.call("POST", &format!("/api-keys/{full_id}/rotate"), secret, None)
            .await,
        403,
        "forbidden",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("can do more"),
        "{body}"
    );
    expect_error(
        app.call("DELETE", &format!("/api-keys/{full_id}"), secret, None)
            .await,
        403,
        "forbidden",
    )
    .await;
    // The full key still works; the scoped key may rotate itself (same scopes).
    assert_eq!(
        app.call("GET", "/profile", full["key"].as_str().unwrap(), None)
            .await
            .status(),
        200
    );
    let (status, rotated) = json(
        app.call(
            "POST",
            &format!("/api-keys/{}/rotate", scoped["id"].as_str().unwrap()),
            secret,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{rotated}");
    assert_eq!(
        rotated["data"]["scopes"],
        json!(["api_key.manage", "dashboard.build"])
    );
}

#[tokio::test]
async fn jsonp_is_refused_with_basic_credentials() {
    let app = TestApp::spawn().await;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{PASSWORD}", app.company.email));
    let r = app
        .http
        .get(app.url("/profile?callback=steal"))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let body = expect_error(r, 401, "unauthorized").await;
    assert!(
        body["message"].as_str().unwrap().contains("JSONP"),
        "{body}"
    );
}
