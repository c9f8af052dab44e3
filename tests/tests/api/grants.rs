//! Nobody grants more than they hold (issue: privilege escalation through `user.manage`): a
//! key scoped to `user.manage`, or a custom role holding only it, cannot create an admin,
//! make itself admin, put permissions it lacks into a role, or act on a user who holds more
//! (reset the admin's password, change or delete the admin, make a key for the admin).

use pulseboard_tests::{expect_error, json, unique_email, TestApp, PASSWORD};
use serde_json::json;

/// A key of the admin scoped to `user.manage` only.
async fn user_manager(app: &TestApp) -> String {
    app.create_key(json!({"name": "people", "scopes": ["user.manage"]}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_user_manage_key_cannot_create_an_admin() {
    let app = TestApp::spawn().await;
    let key = user_manager(&app).await;
    let r = app
        .call(
            "POST",
            "/users",
            &key,
            Some(json!({"email": unique_email("x"), "password": PASSWORD, "roles": ["admin"]})),
        )
        .await;
    let body = expect_error(r, 403, "forbidden").await;
    assert!(
        body["message"].as_str().unwrap().contains("cannot grant"),
        "{body}"
    );
    // A role within its scopes it may grant.
    let (status, role) = json(
        app.call(
            "POST",
            "/roles",
            app.key(),
            Some(json!({"name": "People", "permissions": ["user.manage"]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{role}");
    let r = app
        .call("POST", "/users", &key, Some(json!({"email": unique_email("y"), "password": PASSWORD, "roles": [role["data"]["id"]]})))
        .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn a_user_manager_cannot_make_itself_admin() {
    let app = TestApp::spawn().await;
    let (status, role) = json(
        app.call(
            "POST",
            "/roles",
            app.key(),
            Some(json!({"name": "People", "permissions": ["user.manage"]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{role}");
    let (user, key) = app
        .user_with_key(&[role["data"]["id"].as_str().unwrap()], None)
        .await;
    let r = app
        .call(
            "PUT",
            &format!("/users/{}", user["id"].as_str().unwrap()),
            &key,
            Some(json!({"roles": ["admin"]})),
        )
        .await;
    expect_error(r, 403, "forbidden").await;
    let r = app
        .call(
            "POST",
            "/roles",
            &key,
            Some(json!({"name": "All", "permissions": ["user.manage", "client.delete"]})),
        )
        .await;
    expect_error(r, 403, "forbidden").await;
    let (_, profile) = json(app.call("GET", "/users/self", &key, None).await).await;
    assert_eq!(
        profile["data"]["roles"],
        json!([role["data"]["id"]]),
        "nothing changed"
    );
}

#[tokio::test]
async fn a_user_manage_key_cannot_act_on_the_admin() {
    let app = TestApp::spawn().await;
    let key = user_manager(&app).await;
    let admin = &app.company.user_id;
    for (method, path, body) in [
        ("POST", format!("/users/{admin}/reset-password"), None),
        (
            "PUT",
            format!("/users/{admin}"),
            Some(json!({"first_name": "Mallory"})),
        ),
        ("DELETE", format!("/users/{admin}"), None),
        ("POST", format!("/users/{admin}/unlock"), None),
        ("POST", format!("/users/{admin}/api-key"), None),
    ] {
        let r = app.call(method, &path, &key, body).await;
        let status = r.status().as_u16();
        let (_, body) = json(r).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    let (_, me) = json(app.get(&format!("/users/{admin}")).await).await;
    assert_ne!(
        me["data"]["first_name"], "Mallory",
        "the admin is unchanged: {me}"
    );
    assert_eq!(me["data"]["roles"], json!(["admin"]));
}
