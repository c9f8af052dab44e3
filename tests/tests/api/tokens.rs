//! JWT access/refresh: expiry, tampering, `alg: none`, wrong secret, rotation, reuse
//! detection, logout, and failed-login lockout.

use base64::Engine;
use platform::auth::tokens::TokenKeys;
use pulseboard_tests::{expect_error, json, TestApp, PASSWORD};
use serde_json::json;

#[tokio::test]
async fn login_answers_tokens_user_and_company() {
    let app = TestApp::spawn().await;
    let data = app.login().await;
    assert_eq!(data["token_type"], "Bearer");
    assert_eq!(data["expires_in"], 3600);
    assert_eq!(data["user"]["email"], app.company.email.as_str());
    assert!(data["user"].get("password_hash").is_none());
    assert_eq!(data["company"]["id"], app.company.company_id.as_str());
    assert!(data["user"]["date_last_login"].as_str().is_some());
}

#[tokio::test]
async fn bad_access_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let access = app.login().await["access"].as_str().unwrap().to_owned();
    let get = |token: String| app.http.get(app.url("/profile")).bearer_auth(token).send();
    assert_eq!(get(access.clone()).await.unwrap().status(), 200);

    // Tampered payload (claims another user), same signature.
    let parts: Vec<&str> = access.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!(domain::ids::new_id());
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    expect_error(get(tampered).await.unwrap(), 401, "unauthorized").await;

    // alg: none.
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    expect_error(get(none).await.unwrap(), 401, "unauthorized").await;

    // Signed with another secret.
    let claims: platform::auth::tokens::Claims =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let forged = TokenKeys::new("some-other-secret-of-32-characters!")
        .issue(&claims)
        .unwrap();
    expect_error(get(forged).await.unwrap(), 401, "unauthorized").await;

    // A refresh token is not an access token.
    let refresh = app.login().await["refresh"].as_str().unwrap().to_owned();
    expect_error(get(refresh).await.unwrap(), 401, "unauthorized").await;

    // Expired after an hour.
    app.advance(chrono::Duration::seconds(3601));
    let body = expect_error(get(access).await.unwrap(), 401, "unauthorized").await;
    assert!(body["message"].as_str().unwrap().contains("expired"));
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .post(app.url("/auth/refresh"))
        .json(&json!({"refresh": token}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = TestApp::spawn().await;
    let first = app.login().await["refresh"].as_str().unwrap().to_owned();
    let (status, body) = json(refresh(&app, &first).await).await;
    assert_eq!(status, 200, "{body}");
    let second = body["data"]["refresh"].as_str().unwrap().to_owned();
    let access = body["data"]["access"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(
        app.http
            .get(app.url("/profile"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The old token is spent; presenting it again revokes the whole family.
    let body = expect_error(refresh(&app, &first).await, 401, "unauthorized").await;
    assert!(
        body["message"].as_str().unwrap().contains("already used"),
        "{body}"
    );
    expect_error(refresh(&app, &second).await, 401, "unauthorized").await;

    // Another login is another family and is unaffected.
    let other = app.login().await["refresh"].as_str().unwrap().to_owned();
    assert_eq!(refresh(&app, &other).await.status(), 200);
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let app = TestApp::spawn().await;
    let token = app.login().await["refresh"].as_str().unwrap().to_owned();
    let response = app
        .http
        .post(app.url("/auth/logout"))
        .json(&json!({"refresh": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    expect_error(refresh(&app, &token).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn refresh_tokens_expire_after_seven_days() {
    let app = TestApp::spawn().await;
    let token = app.login().await["refresh"].as_str().unwrap().to_owned();
    app.advance(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    expect_error(refresh(&app, &token).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn ten_failed_logins_lock_the_user_out_for_fifteen_minutes() {
    let app = TestApp::spawn().await;
    let attempt = |password: &'static str| {
        app.http
            .post(app.url("/auth/login"))
            .json(&json!({"email": app.company.email, "password": password}))
            .send()
    };
    for _ in 0..9 {
        expect_error(
            attempt("wrong-password-x").await.unwrap(),
            401,
            "unauthorized",
        )
        .await;
    }
    let response = attempt("wrong-password-x").await.unwrap();
    assert!(response.headers().get("retry-after").is_some());
    expect_error(response, 429, "too_many_attempts").await;
    // Even the right password is refused while locked, and so is Basic.
    expect_error(attempt(PASSWORD).await.unwrap(), 429, "too_many_attempts").await;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{PASSWORD}", app.company.email));
    let r = app
        .http
        .get(app.url("/profile"))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    expect_error(r, 429, "too_many_attempts").await;
    // The profile shows the lockout (API keys still work).
    let (_, profile) = json(app.get("/profile").await).await;
    assert_eq!(profile["data"]["is_locked_out"], true);

    app.advance(chrono::Duration::minutes(16));
    assert_eq!(attempt(PASSWORD).await.unwrap().status(), 200);
    let (_, profile) = json(app.get("/profile").await).await;
    assert_eq!(profile["data"]["is_locked_out"], false);
}

/// The access and refresh tokens of a fresh login of the admin.
async fn session(app: &TestApp) -> (String, String) {
    let login = app.login().await;
    (
        login["access"].as_str().unwrap().to_owned(),
        login["refresh"].as_str().unwrap().to_owned(),
    )
}

async fn assert_session_ended(app: &TestApp, access: &str, refresh: &str) {
    let r = app
        .http
        .get(app.url("/profile"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    let body = expect_error(r, 401, "unauthorized").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("session has ended"),
        "{body}"
    );
    let r = app
        .http
        .post(app.url("/auth/refresh"))
        .json(&json!({ "refresh": refresh }))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_password_set_by_an_admin_ends_the_users_sessions() {
    let app = TestApp::spawn().await;
    let (access, refresh) = session(&app).await;
    let r = app
        .call(
            "PUT",
            "/users/self",
            app.key(),
            Some(json!({"password": "another-long-password"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_session_ended(&app, &access, &refresh).await;
    // The old password no longer signs in, though this instance signed in with it before
    // (it checks a remembered address's password against the hash it had then only while
    // that is still the stored one).
    let r = app
        .http
        .post(app.url("/auth/login"))
        .json(&json!({"email": app.company.email, "password": pulseboard_tests::PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized").await;
    // The new password starts a new session.
    let r = app
        .http
        .post(app.url("/auth/login"))
        .json(&json!({"email": app.company.email, "password": "another-long-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_password_reset_ends_the_users_sessions() {
    let app = TestApp::spawn().await;
    let (access, refresh) = session(&app).await;
    let (_, token) = json(
        app.call(
            "POST",
            &format!("/users/{}/reset-password", app.company.user_id),
            app.key(),
            None,
        )
        .await,
    )
    .await;
    let r = app
        .http
        .post(app.url("/auth/reset-password"))
        .json(&json!({"token": token["data"]["token"], "password": "a-brand-new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_session_ended(&app, &access, &refresh).await;
}

#[tokio::test]
async fn ten_failures_across_a_quarter_hour_boundary_lock_the_user_out() {
    let app = TestApp::spawn().await;
    // Five seconds before a quarter-hour boundary (a fixed window would start anew there).
    let now = chrono::Utc::now().timestamp();
    let before_boundary = (now.div_euclid(900) + 1) * 900 - 5;
    app.freeze(chrono::DateTime::from_timestamp(before_boundary, 0).unwrap());
    let wrong = || {
        app.http
            .post(app.url("/auth/login"))
            .json(&json!({"email": app.company.email, "password": "not-the-password"}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(wrong().await.unwrap().status(), 401);
    }
    app.advance(chrono::Duration::seconds(10));
    for _ in 0..4 {
        assert_eq!(wrong().await.unwrap().status(), 401);
    }
    expect_error(wrong().await.unwrap(), 429, "too_many_attempts").await;
}

async fn login_as(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.http
        .post(app.url("/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_address_that_moves_to_another_user_signs_in_that_user() {
    // The server remembers where an address it signed in led, and reads the claim along
    // with that user: once the address belongs to someone else, the claim decides.
    let app = TestApp::spawn().await;
    let (first, _) = app.user_with_key(&["viewer"], None).await;
    let (first_id, email) = (
        first["id"].as_str().unwrap().to_owned(),
        first["email"].as_str().unwrap().to_owned(),
    );
    let (status, body) = json(login_as(&app, &email, PASSWORD).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user"]["id"], first_id.as_str());

    let moved = pulseboard_tests::unique_email("moved");
    let (status, body) = json(
        app.call(
            "PUT",
            &format!("/users/{first_id}"),
            app.key(),
            Some(json!({"email": moved})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    expect_error(login_as(&app, &email, PASSWORD).await, 401, "unauthorized").await;

    let other_password = "another-long-password";
    let (status, second) = json(
        app.call(
            "POST",
            "/users",
            app.key(),
            Some(json!({"email": email, "password": other_password, "roles": ["viewer"]})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{second}");
    // The first user's password no longer opens the address; the second user's does.
    expect_error(login_as(&app, &email, PASSWORD).await, 401, "unauthorized").await;
    let (status, body) = json(login_as(&app, &email, other_password).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user"]["id"], second["data"]["id"]);
    let (status, body) = json(login_as(&app, &moved, PASSWORD).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user"]["id"], first_id.as_str());
}

/// An access token carries its caller as of the login: a new instance answers the token's
/// first read with it while it verifies the token and counts the request (one round trip),
/// but only ever answers as the caller it verifies now: after a change the token's copy is
/// outdated and the answer is the changed caller's; after the session ends, a 401 that
/// counts nothing.
#[tokio::test]
async fn a_new_instance_answers_a_token_as_the_caller_verified_now() {
    let app = TestApp::spawn().await;
    let access = app.login().await["access"].as_str().unwrap().to_owned();
    let profile = |base: String| {
        let (app, access) = (&app, access.clone());
        async move {
            json(
                app.http
                    .get(format!("{base}/api/v1/profile?full=true"))
                    .bearer_auth(access)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (status, here) = profile(app.base.clone()).await;
    assert_eq!(status, 200, "{here}");
    let (status, fresh) = profile(app.another_instance().await).await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(fresh["data"], here["data"]);
    assert_eq!(fresh["data"]["email"], app.company.email.as_str());
    // The token's caller is exactly the one verification finds, so a new instance keeps the
    // answer it read with it (nothing read twice).
    let now = app.state.clock.now();
    let claims = app.state.tokens.verify(&access, "access", now).unwrap();
    let guess = claims
        .who
        .expect("a login's access token carries its caller")
        .into_caller(platform::auth::AuthMethod::Jwt);
    let credential = platform::auth::Credential::Jwt(access.clone());
    let claimed = platform::auth::credential::claim(&app.state, &credential, now)
        .await
        .unwrap();
    let verified = platform::auth::verify::verify(&app.state, &credential, &claimed, None, now)
        .await
        .unwrap();
    assert_eq!(guess, verified);
    // Another login (another device) moves the user's latest login, which the caller does
    // not carry: the first token's caller still holds.
    app.advance(chrono::Duration::seconds(2));
    app.login().await;
    let now = app.state.clock.now();
    let verified = platform::auth::verify::verify(&app.state, &credential, &claimed, None, now)
        .await
        .unwrap();
    assert_eq!(guess, verified);

    let change_self = |body: serde_json::Value| {
        let app = &app;
        async move {
            let r = app.call("PUT", "/users/self", app.key(), Some(body)).await;
            assert_eq!(r.status(), 200);
        }
    };
    // The user renamed after the login: a new instance answers with the new name.
    change_self(json!({"first_name": "Renamed"})).await;
    let (status, renamed) = profile(app.another_instance().await).await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["data"]["first_name"], "Renamed", "{renamed}");

    // The session ends (the password changes): a new instance refuses the token.
    change_self(json!({"password": "another-long-password"})).await;
    let (status, ended) = profile(app.another_instance().await).await;
    assert_eq!(status, 401, "{ended}");
    assert_eq!(ended["error"], "unauthorized", "{ended}");
}
