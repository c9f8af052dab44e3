//! API keys: create (shown once, hashed at rest), show, list, `users/{id}/api-key`, and
//! other tenants' ids.

use pulseboard_tests::{expect_error, json, TestApp};
use serde_json::json;

#[tokio::test]
async fn a_created_key_is_shown_once_and_stored_only_as_a_hash() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/api-keys",
            json!({"name": "ci", "description": "for CI", "expires_in_days": 365}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, body) = json(response).await;
    let key = &body["data"];
    let secret = key["key"].as_str().unwrap();
    assert!(secret.starts_with("pb_live_") && secret.len() >= 40);
    assert_eq!(
        location,
        format!("/api/1.0/api-keys/{}", key["id"].as_str().unwrap())
    );
    assert_eq!(body["meta"]["location"], location.as_str());
    assert_eq!(body["meta"]["status"], 201);
    assert_eq!(key["status"], "active");
    assert_eq!(key["expires_in_days"], 365);

    let (status, shown) = json(
        app.get(&format!("/api-keys/{}", key["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert!(shown["data"].get("key").is_none());
    assert_eq!(shown["data"]["prefix"], &secret[..12]);

    // Nothing in the table holds the secret itself.
    let items = app.state.store.scan_all().await.unwrap();
    let dump = format!("{items:?}");
    assert!(!dump.contains(secret));
}

#[tokio::test]
async fn users_api_key_creates_a_key_for_self_or_a_404_for_strangers() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .post(app.url(&format!("/users/{}/api-key", app.company.user_id)))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["user_id"], app.company.user_id.as_str());
    let secret = body["data"]["key"].as_str().unwrap();
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

    let response = app
        .post(
            "/users/self/api-key",
            json!({"name": "mine", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(response.status(), 201);

    let other = TestApp::spawn().await;
    let response = app
        .http
        .post(app.url(&format!("/users/{}/api-key", other.company.user_id)))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap();
    expect_error(response, 404, "not_found").await;
}

#[tokio::test]
async fn other_companies_keys_are_404_never_a_leak() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let foreign = other.create_key(json!({"name": "theirs"})).await;
    let id = foreign["id"].as_str().unwrap();
    expect_error(app.get(&format!("/api-keys/{id}")).await, 404, "not_found").await;
    let r = app
        .http
        .delete(app.url(&format!("/api-keys/{id}")))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;
    expect_error(
        app.post(&format!("/api-keys/{id}/rotate"), json!({})).await,
        404,
        "not_found",
    )
    .await;
    expect_error(app.get("/api-keys/not-an-id").await, 404, "not_found").await;
    // Their key still works.
    let secret = foreign["key"].as_str().unwrap();
    assert_eq!(
        other
            .http
            .get(other.url("/profile"))
            .header("kf-api-key", secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // And listing another company's user is a 404 too.
    expect_error(
        app.get(&format!("/api-keys?user_id={}", other.company.user_id))
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_key_for_another_user_cannot_carry_scopes_that_user_lacks() {
    let app = TestApp::spawn().await;
    let (viewer, _) = app.user_with_key(&["viewer"], None).await;
    let path = format!("/users/{}/api-key", viewer["id"].as_str().unwrap());
    let body = expect_error(
        app.post(
            &path,
            json!({"name": "too strong", "scopes": ["user.manage"]}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert!(
        body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("user.manage"),
        "{body}"
    );
    assert_eq!(
        app.post(
            &path,
            json!({"name": "fine", "scopes": ["report.download"]})
        )
        .await
        .status(),
        201
    );
}
