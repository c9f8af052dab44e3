//! The users function: users, roles, groups, seats, the last admin, resets and unlocking.

use pulseboard_tests::fixtures::{delete, put};
use pulseboard_tests::{expect_error, json, unique_email, TestApp, PASSWORD};
use serde_json::{json, Value};

#[tokio::test]
async fn a_new_user_is_a_201_with_its_location_and_a_lowercased_email() {
    let app = TestApp::spawn().await;
    let email = unique_email("Mixed.Case");
    let response = app.post("/users", ada(&email)).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (_, body) = json(response).await;
    let user = &body["data"];
    let id = user["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/1.0/users/{id}"));
    assert_eq!(user["email"], email.to_lowercase());
    assert_eq!(user["roles"], json!(["editor"]));
    assert_eq!(user["is_locked_out"], false);
    assert!(user["date_last_login"].is_null() && user.get("password_hash").is_none());
}

/// Emails are unique across companies and compared without case.
#[tokio::test]
async fn an_email_taken_in_another_case_in_another_company_is_a_409() {
    let app = TestApp::spawn().await;
    let email = unique_email("Mixed.Case");
    new_user(&app, &email).await;
    let other = TestApp::spawn().await;
    expect_error(
        other
            .post(
                "/users",
                json!({"email": email.to_uppercase(), "password": PASSWORD}),
            )
            .await,
        409,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn a_short_password_is_a_400_naming_the_password() {
    let app = TestApp::spawn().await;
    let body = expect_error(
        app.post(
            "/users",
            json!({"email": unique_email("p"), "password": "short"}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
    assert_eq!(body["details"][0]["field"], "password");
}

#[tokio::test]
async fn a_password_that_is_the_email_is_a_400_saying_so() {
    let app = TestApp::spawn().await;
    let e = unique_email("same");
    let body = expect_error(
        app.post("/users", json!({"email": e, "password": e})).await,
        400,
        "validation_failed",
    )
    .await;
    assert!(body["details"][0]["message"]
        .as_str()
        .unwrap()
        .contains("email"));
}

#[tokio::test]
async fn an_invalid_email_is_a_400() {
    let app = TestApp::spawn().await;
    expect_error(
        app.post("/users", json!({"email": "not-an-email"})).await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_role_is_a_400() {
    let app = TestApp::spawn().await;
    expect_error(
        app.post(
            "/users",
            json!({"email": unique_email("r"), "roles": ["owner"]}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn the_email_filter_ignores_case() {
    let app = TestApp::spawn().await;
    let email = unique_email("Mixed.Case");
    new_user(&app, &email).await;
    let (_, list) = json(
        app.get(&format!("/users?email={}", email.to_uppercase()))
            .await,
    )
    .await;
    assert_eq!(list["meta"]["total"], 1);
}

#[tokio::test]
async fn users_filter_by_external_id_and_include_their_roles() {
    let app = TestApp::spawn().await;
    new_user(&app, &unique_email("Mixed.Case")).await;
    let (_, list) = json(app.get("/users?external_id=ext-1&include_roles=true").await).await;
    assert_eq!(
        list["data"]["users"][0]["roles"],
        json!([{"id": "editor", "name": "editor"}])
    );
}

#[tokio::test]
async fn the_user_list_has_every_user_of_the_company() {
    let app = TestApp::spawn().await;
    new_user(&app, &unique_email("Mixed.Case")).await;
    let (_, list) = json(app.get("/users").await).await;
    assert_eq!(list["meta"]["total"], 2);
}

#[tokio::test]
async fn users_self_is_the_caller() {
    let app = TestApp::spawn().await;
    let (_, me) = json(app.get("/users/self").await).await;
    assert_eq!(me["data"]["id"], app.company.user_id.as_str());
}

#[tokio::test]
async fn a_new_user_can_log_in() {
    let app = TestApp::spawn().await;
    let email = unique_email("Mixed.Case");
    new_user(&app, &email).await;
    assert_eq!(login(&app, &email).await.status(), 200);
}

#[tokio::test]
async fn an_update_changes_the_name() {
    let app = TestApp::spawn().await;
    let id = new_user(&app, &unique_email("Mixed.Case")).await;
    let (status, updated) = json(
        put(
            &app,
            &format!("/users/{id}"),
            json!({"first_name": "Augusta"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(updated["data"]["first_name"], "Augusta");
}

#[tokio::test]
async fn a_deleted_user_is_a_404() {
    let app = TestApp::spawn().await;
    let id = new_user(&app, &unique_email("Mixed.Case")).await;
    delete_user(&app, &id).await;
    expect_error(app.get(&format!("/users/{id}")).await, 404, "not_found").await;
}

#[tokio::test]
async fn a_deleted_user_can_no_longer_log_in() {
    let app = TestApp::spawn().await;
    let email = unique_email("Mixed.Case");
    let id = new_user(&app, &email).await;
    assert_eq!(login(&app, &email).await.status(), 200);
    delete_user(&app, &id).await;
    expect_error(login(&app, &email).await, 401, "unauthorized").await;
}

/// The email of a deleted user can be taken again, even by another company.
#[tokio::test]
async fn a_deleted_users_email_is_free_again() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let email = unique_email("Mixed.Case");
    let id = new_user(&app, &email).await;
    delete_user(&app, &id).await;
    assert_eq!(
        other
            .post("/users", json!({"email": email, "password": PASSWORD}))
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn another_companys_users_are_404() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    expect_error(
        app.get(&format!("/users/{}", other.company.user_id)).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn deleting_a_user_revokes_their_keys_and_tokens_at_once() {
    let app = TestApp::spawn().await;
    let (user, key) = app.user_with_key(&["editor"], None).await;
    let id = user["id"].as_str().unwrap();
    assert_eq!(app.call("GET", "/profile", &key, None).await.status(), 200);
    assert_eq!(
        app.call("DELETE", &format!("/users/{id}"), app.key(), None)
            .await
            .status(),
        200
    );
    expect_error(
        app.call("GET", "/profile", &key, None).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn a_role_change_applies_to_keys_on_their_next_request() {
    let app = TestApp::spawn().await;
    let (user, key) = app.user_with_key(&["editor"], None).await;
    let id = user["id"].as_str().unwrap();
    assert_eq!(
        app.call("POST", "/api-keys", &key, Some(json!({"name": "ok"})))
            .await
            .status(),
        201
    );
    assert_eq!(app.call("GET", "/api-keys", &key, None).await.status(), 200);
    assert_eq!(
        app.call(
            "PUT",
            &format!("/users/{id}"),
            app.key(),
            Some(json!({"roles": ["viewer"]}))
        )
        .await
        .status(),
        200
    );
    let body = expect_error(
        app.call("POST", "/api-keys", &key, Some(json!({"name": "no"})))
            .await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(body["message"], "missing permission api_key.manage");
    let (_, profile) = json(app.call("GET", "/profile?full=true", &key, None).await).await;
    assert_eq!(profile["data"]["permissions"], json!(["report.download"]));
}

#[tokio::test]
async fn custom_roles_grant_their_permissions_and_builtins_are_fixed() {
    let app = TestApp::spawn().await;
    let (status, role) = json(
        app.post(
            "/roles",
            json!({"name": "Key maker", "permissions": ["api_key.manage"]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{role}");
    let role_id = role["data"]["id"].as_str().unwrap().to_owned();
    let (user, key) = app.user_with_key(&[role_id.as_str()], None).await;
    assert_eq!(
        app.call("POST", "/api-keys", &key, Some(json!({"name": "made"})))
            .await
            .status(),
        201
    );
    // Taking the permission out of the role applies at once.
    assert_eq!(
        app.call(
            "PUT",
            &format!("/roles/{role_id}"),
            app.key(),
            Some(json!({"permissions": ["report.generate"]}))
        )
        .await
        .status(),
        200
    );
    expect_error(
        app.call("POST", "/api-keys", &key, Some(json!({"name": "no"})))
            .await,
        403,
        "forbidden",
    )
    .await;
    // A held role cannot be deleted; built-ins never.
    expect_error(
        app.call("DELETE", &format!("/roles/{role_id}"), app.key(), None)
            .await,
        409,
        "conflict",
    )
    .await;
    expect_error(
        app.call("DELETE", "/roles/admin", app.key(), None).await,
        403,
        "forbidden",
    )
    .await;
    expect_error(
        app.call(
            "PUT",
            "/roles/viewer",
            app.key(),
            Some(json!({"permissions": []})),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    expect_error(
        app.post("/roles", json!({"name": "x", "permissions": ["fly"]}))
            .await,
        400,
        "validation_failed",
    )
    .await;
    let (_, roles) = json(app.get("/roles").await).await;
    assert_eq!(roles["meta"]["total"], 4);
    let (_, admin) = json(app.get("/roles/admin").await).await;
    assert!(admin["data"]["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "user.manage"));
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/users/{}", user["id"].as_str().unwrap()),
            app.key(),
            None
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.call("DELETE", &format!("/roles/{role_id}"), app.key(), None)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_last_admin_cannot_lose_the_role() {
    let app = TestApp::spawn().await;
    let me = &app.company.user_id;
    expect_error(
        app.call(
            "PUT",
            &format!("/users/{me}"),
            app.key(),
            Some(json!({"roles": ["editor"]})),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    expect_error(
        app.call("DELETE", &format!("/users/{me}"), app.key(), None)
            .await,
        409,
        "conflict",
    )
    .await;
    // With a second admin it can.
    app.user_with_key(&["admin"], None).await;
    assert_eq!(
        app.call(
            "PUT",
            &format!("/users/{me}"),
            app.key(),
            Some(json!({"roles": ["admin", "editor"]}))
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn reset_tokens_are_one_time_and_unlock_ends_a_lockout() {
    let app = TestApp::spawn().await;
    let (user, _) = app.user_with_key(&["viewer"], None).await;
    let id = user["id"].as_str().unwrap();
    let email = user["email"].as_str().unwrap();
    let login = |password: &'static str| {
        app.http
            .post(app.url("/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
    };

    for _ in 0..10 {
        login("wrong-password-x").await.unwrap();
    }
    expect_error(login(PASSWORD).await.unwrap(), 429, "too_many_attempts").await;
    let (_, shown) = json(app.get(&format!("/users/{id}")).await).await;
    assert_eq!(shown["data"]["is_locked_out"], true);
    let (status, unlocked) = json(
        app.call("POST", &format!("/users/{id}/@/unlock"), app.key(), None)
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(unlocked["data"]["is_locked_out"], false);
    assert_eq!(login(PASSWORD).await.unwrap().status(), 200);

    let (status, reset) = json(
        app.call(
            "POST",
            &format!("/users/{id}/@/reset-password"),
            app.key(),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    let token = reset["data"]["token"].as_str().unwrap().to_owned();
    let set = |password: &'static str| {
        app.http
            .post(app.url("/auth/reset-password"))
            .json(&json!({"token": token, "password": password}))
            .send()
    };
    expect_error(set("short").await.unwrap(), 400, "validation_failed").await;
    assert_eq!(set("a-brand-new-password").await.unwrap().status(), 200);
    expect_error(
        set("another-new-password").await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(login("a-brand-new-password").await.unwrap().status(), 200);
    expect_error(login(PASSWORD).await.unwrap(), 401, "unauthorized").await;
}

#[tokio::test]
async fn a_user_named_twice_in_one_add_becomes_one_member() {
    let app = TestApp::spawn().await;
    let (status, group) = json(app.post("/groups", json!({"name": "Twice"})).await).await;
    assert_eq!(status, 201);
    let gid = group["data"]["id"].as_str().unwrap().to_owned();
    let (user, _) = app.user_with_key(&["viewer"], None).await;
    let uid = user["id"].as_str().unwrap();
    // A second later: the user's first write and this one are not in the same second.
    app.advance(chrono::Duration::seconds(2));
    let (status, body) = json(
        app.call(
            "POST",
            &format!("/groups/{gid}/members"),
            app.key(),
            Some(json!({"users": [uid, uid]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["members"].as_array().unwrap().len(),
        1,
        "{body}"
    );
    let (_, members) = json(app.get(&format!("/groups/{gid}/members")).await).await;
    assert_eq!(members["meta"]["total"], 1, "{members}");
}

#[tokio::test]
async fn groups_and_members() {
    let app = TestApp::spawn().await;
    let (status, group) = json(
        app.post("/groups", json!({"name": "Sales", "description": "EMEA"}))
            .await,
    )
    .await;
    assert_eq!(status, 201);
    let gid = group["data"]["id"].as_str().unwrap().to_owned();
    let (user, _) = app.user_with_key(&["viewer"], None).await;
    let uid = user["id"].as_str().unwrap();
    assert_eq!(
        app.call(
            "PUT",
            &format!("/groups/{gid}/members/{uid}"),
            app.key(),
            None
        )
        .await
        .status(),
        200
    );
    let (_, members) = json(app.get(&format!("/groups/{gid}/members")).await).await;
    assert_eq!(members["meta"]["total"], 1);
    assert_eq!(members["data"]["members"][0]["id"], uid);
    let (_, shown) = json(app.get(&format!("/users/{uid}?include_groups=true")).await).await;
    assert_eq!(
        shown["data"]["groups"],
        json!([{"id": gid, "name": "Sales"}])
    );
    let (status, _) = json(
        app.call(
            "POST",
            &format!("/groups/{gid}/members"),
            app.key(),
            Some(json!({"users": [app.company.user_id]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.call(
            "DELETE",
            &format!("/groups/{gid}/members/{uid}"),
            app.key(),
            None
        )
        .await
        .status(),
        200
    );
    let (_, members) = json(app.get(&format!("/groups/{gid}/members")).await).await;
    assert_eq!(members["meta"]["total"], 1);
    // A user can be created straight into the group; deleting the group takes it off users.
    let (status, created) = json(
        app.post(
            "/users",
            json!({"email": unique_email("g"), "groups": [gid]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        app.call("DELETE", &format!("/groups/{gid}"), app.key(), None)
            .await
            .status(),
        200
    );
    let (_, shown) = json(
        app.get(&format!(
            "/users/{}",
            created["data"]["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(shown["data"]["groups"], json!([]));
    expect_error(
        app.post(
            "/users",
            json!({"email": unique_email("g"), "groups": [gid]}),
        )
        .await,
        400,
        "validation_failed",
    )
    .await;
}

/// Ada Lovelace, an editor with `email` and external id `ext-1`.
fn ada(email: &str) -> Value {
    json!({"first_name": "Ada", "last_name": "Lovelace", "email": email, "password": PASSWORD, "roles": ["editor"], "external_id": "ext-1"})
}

/// Creates [`ada`] with `email`; answers the user's id.
async fn new_user(app: &TestApp, email: &str) -> String {
    let (status, body) = json(app.post("/users", ada(email)).await).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

async fn delete_user(app: &TestApp, id: &str) {
    let (status, _) = json(delete(app, &format!("/users/{id}")).await).await;
    assert_eq!(status, 200);
}

/// A login with `email` and [`PASSWORD`].
async fn login(app: &TestApp, email: &str) -> reqwest::Response {
    app.http
        .post(app.url("/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_admins_demoting_themselves_at_once_leave_one_admin() {
    let app = TestApp::spawn().await;
    let (other, other_key) = app.user_with_key(&["admin"], None).await;
    let other_id = other["id"].as_str().unwrap().to_owned();
    let admin_id = app.company.user_id.clone();
    for trial in 0..10 {
        let demote = |key: String| {
            let app = &app;
            async move {
                app.call(
                    "PUT",
                    "/users/self",
                    &key,
                    Some(json!({"roles": ["editor"]})),
                )
                .await
                .status()
                .as_u16()
            }
        };
        let (a, b) = tokio::join!(demote(app.key().to_owned()), demote(other_key.clone()));
        let mut statuses = [a, b];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 409],
            "trial {trial}: exactly one may step down"
        );
        let (_, users) = json(app.get("/users?limit=100").await).await;
        let admins = users["data"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["roles"].as_array().unwrap().iter().any(|r| r == "admin"))
            .count();
        assert_eq!(admins, 1, "trial {trial}: {users}");
        // Whoever stepped down is made admin again by the remaining admin.
        let (remaining_key, demoted) = if a == 200 {
            (other_key.clone(), admin_id.clone())
        } else {
            (app.key().to_owned(), other_id.clone())
        };
        let r = app
            .call(
                "PUT",
                &format!("/users/{demoted}"),
                &remaining_key,
                Some(json!({"roles": ["admin"]})),
            )
            .await;
        assert_eq!(r.status(), 200, "trial {trial}");
    }
}

#[tokio::test]
async fn the_last_admin_cannot_be_deleted_or_demoted() {
    let app = TestApp::spawn().await;
    let admin = app.company.user_id.clone();
    let r = app
        .call("DELETE", &format!("/users/{admin}"), app.key(), None)
        .await;
    let body = expect_error(r, 409, "conflict").await;
    assert!(
        body["message"].as_str().unwrap().contains("last admin"),
        "{body}"
    );
    let r = app
        .call(
            "PUT",
            &format!("/users/{admin}"),
            app.key(),
            Some(json!({"roles": ["editor"]})),
        )
        .await;
    expect_error(r, 409, "conflict").await;
}
