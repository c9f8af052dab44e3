//! API.md §3: per-company per-second and daily limits on DynamoDB atomic counters.

use chrono::{TimeZone, Utc};
use chrono_tz::America::New_York;
use pulseboard_tests::{expect_error, json, Options, TestApp};
use serde_json::json;

/// Unix seconds of the next 00:00 in New York, computed here independently of the server.
fn next_new_york_midnight() -> i64 {
    let today = Utc::now().with_timezone(&New_York).date_naive();
    let midnight = today.succ_opt().unwrap().and_hms_opt(0, 0, 0).unwrap();
    New_York
        .from_local_datetime(&midnight)
        .earliest()
        .unwrap()
        .timestamp()
}

fn header(r: &reqwest::Response, name: &str) -> i64 {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Noon in New York today: an instant far from both a second and a day boundary.
fn new_york_noon_today() -> chrono::DateTime<Utc> {
    let today = Utc::now().with_timezone(&New_York).date_naive();
    New_York
        .from_local_datetime(&today.and_hms_milli_opt(12, 0, 0, 500).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

/// A company with this per-second limit, on a server whose clock stands still (so a burst
/// falls in one rate-limit second whatever the machine's load: racing the wall clock made
/// these tests flaky), at the start of a second after its key was used once (so this
/// instance remembers the key's caller, outside the measured second).
async fn one_still_second(per_second_limit: u64) -> TestApp {
    let app = TestApp::spawn_with(Options {
        per_second_limit: Some(per_second_limit),
        ..Options::default()
    })
    .await;
    app.freeze(new_york_noon_today());
    app.get("/profile").await;
    app.advance(chrono::Duration::seconds(1));
    app
}

#[tokio::test]
async fn a_burst_admits_exactly_the_per_second_limit() {
    let app = one_still_second(5).await;
    let responses = futures::future::join_all((0..30).map(|_| app.get("/api-keys"))).await;
    let admitted = responses.iter().filter(|r| r.status() == 200).count();
    assert_eq!(
        admitted,
        5,
        "statuses: {:?}",
        responses
            .iter()
            .map(|r| r.status().as_u16())
            .collect::<Vec<_>>()
    );
    for r in responses.into_iter().filter(|r| r.status() != 200) {
        assert_eq!(r.headers()["retry-after"], "1");
        assert!(r.headers().contains_key("x-ratelimit-limit"));
        let body = expect_error(r, 429, "rate_limited").await;
        assert!(
            body["message"].as_str().unwrap().contains("per second"),
            "{body}"
        );
    }
    // The next second admits again, and refused requests used no daily quota:
    // 1 + 5 admitted + this one.
    app.advance(chrono::Duration::seconds(1));
    let (status, usage) = json(app.get("/usage").await).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["data"]["used_today"], 7, "{usage}");
}

/// A burst over the limit costs the limit's writes, not one per request: while as many of a
/// company's requests as its limit are counting, the rest wait for them and are refused from
/// memory once they reached it, so only the admitted ones ever touch the counter.
#[tokio::test]
async fn a_concurrent_burst_over_the_limit_counts_only_the_admitted_requests() {
    let app = one_still_second(4).await;
    let responses = futures::future::join_all((0..24).map(|_| app.get("/profile"))).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        20,
        "{statuses:?}"
    );
    // The second's count is the four admitted: the twenty refused never wrote it.
    let (today, in_second) = counters(&app, &app.company.company_id).await;
    assert_eq!((today, in_second), (5, 4));
}

/// The same holds for a key this instance has never seen: its requests are verified first
/// (reads only), then take their turn among the company's requests counting, so the burst
/// still counts only the admitted ones.
#[tokio::test]
async fn a_burst_of_a_key_this_instance_has_not_seen_counts_only_the_admitted_requests() {
    let app = one_still_second(4).await;
    let key = app.create_key(json!({"name": "fresh"})).await;
    let secret = key["key"].as_str().unwrap().to_owned();
    app.advance(chrono::Duration::seconds(1));
    let responses =
        futures::future::join_all((0..24).map(|_| app.call("GET", "/profile", &secret, None)))
            .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        20,
        "{statuses:?}"
    );
    // One warm-up, one key creation and the four admitted; the second counts only those.
    let (today, in_second) = counters(&app, &app.company.company_id).await;
    assert_eq!((today, in_second), (6, 4));
}

/// A key's uses are the requests it had admitted: one refused over the daily limit was
/// counted, and its count (the key's use with it) is given back.
#[tokio::test]
async fn a_request_refused_over_the_daily_limit_is_not_a_use_of_its_key() {
    let app = TestApp::spawn_with(Options {
        daily_limit: Some(4),
        ..Options::default()
    })
    .await;
    let key = app.create_key(json!({"name": "daily"})).await;
    let (id, secret) = (key["id"].as_str().unwrap(), key["key"].as_str().unwrap());
    for _ in 0..3 {
        assert_eq!(
            app.call("GET", "/profile", secret, None).await.status(),
            200
        );
    }
    expect_error(
        app.call("GET", "/profile", secret, None).await,
        429,
        "rate_limited",
    )
    .await;
    let date = Utc::now().with_timezone(&New_York).date_naive().to_string();
    let counter = platform::store::keys::rate_day(&app.company.company_id, &date);
    let item = app.state.store.raw_item(&counter).await.unwrap().unwrap();
    assert_eq!(platform::store::number(&item, "n"), Some(4));
    assert_eq!(platform::store::counters::key_uses_of(&item)[id].count, 3);
}

/// The request that reaches the limit tells this instance the next one is over it: that one
/// is refused without counting.
#[tokio::test]
async fn the_request_after_the_one_that_reached_the_limit_is_refused_without_counting() {
    let app = one_still_second(2).await;
    for _ in 0..2 {
        assert_eq!(app.get("/profile").await.status(), 200);
    }
    let r = app.get("/profile").await;
    assert_eq!(r.headers()["retry-after"], "1");
    expect_error(r, 429, "rate_limited").await;
    assert_eq!(counters(&app, &app.company.company_id).await, (3, 2));
    // The next second admits again.
    app.advance(chrono::Duration::seconds(1));
    assert_eq!(app.get("/profile").await.status(), 200);
}

#[tokio::test]
async fn the_eleventh_request_of_a_ten_request_day_is_refused_until_new_york_midnight() {
    let app = TestApp::spawn_with(Options {
        daily_limit: Some(10),
        ..Options::default()
    })
    .await;
    let reset = next_new_york_midnight();
    let (status, usage) = json(app.get("/usage").await).await;
    assert_eq!(status, 200);
    assert_eq!(usage["data"]["daily_limit"], 10);
    assert_eq!(usage["data"]["used_today"], 1);
    assert_eq!(usage["data"]["remaining_today"], 9);
    assert_eq!(usage["data"]["per_second_limit"], 10_000);
    let reset_at =
        chrono::DateTime::parse_from_rfc3339(usage["data"]["reset_at"].as_str().unwrap()).unwrap();
    assert_eq!(reset_at.timestamp(), reset);
    assert_eq!(
        usage["data"]["date"],
        Utc::now().with_timezone(&New_York).date_naive().to_string()
    );
    for expected_remaining in (0..9).rev() {
        let r = app.get("/profile").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit"), 10);
        assert_eq!(header(&r, "x-ratelimit-remaining"), expected_remaining);
        assert_eq!(header(&r, "x-ratelimit-reset"), reset);
    }
    for _ in 0..2 {
        let r = app.get("/profile").await;
        let retry_after = header(&r, "retry-after");
        let expected = reset - Utc::now().timestamp();
        assert!(
            (retry_after - expected).abs() <= 2,
            "Retry-After {retry_after}, expected about {expected}"
        );
        assert_eq!(header(&r, "x-ratelimit-remaining"), 0);
        let body = expect_error(r, 429, "rate_limited").await;
        assert!(
            body["message"].as_str().unwrap().contains("daily"),
            "{body}"
        );
    }
    // Refused requests did not use quota: the stored day counter stays at the limit.
    let date = Utc::now().with_timezone(&New_York).date_naive().to_string();
    let key = platform::store::keys::rate_day(&app.company.company_id, &date);
    let item = app.state.store.raw_item(&key).await.unwrap().unwrap();
    assert_eq!(platform::store::number(&item, "n"), Some(10));
}

#[tokio::test]
async fn two_companies_never_share_counters() {
    let a = TestApp::spawn_with(Options {
        daily_limit: Some(3),
        ..Options::default()
    })
    .await;
    let b = TestApp::spawn_with(Options {
        daily_limit: Some(3),
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(a.get("/profile").await.status(), 200);
    }
    expect_error(a.get("/profile").await, 429, "rate_limited").await;
    let r = b.get("/profile").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining"), 2);
}

#[tokio::test]
async fn rate_headers_are_on_every_authenticated_response() {
    let app = TestApp::spawn_with(Options {
        daily_limit: Some(100),
        ..Options::default()
    })
    .await;
    let scoped = app.create_key(json!({"name": "none", "scopes": []})).await;
    let responses = vec![
        app.get("/profile").await,
        app.get("/api-keys/00000000000000000000000000000000").await,
        app.get("/api-keys?limit=1000").await,
        app.http
            .post(app.url("/api-keys"))
            .header("kf-api-key", scoped["key"].as_str().unwrap())
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap(),
        app.post("/api-keys", json!({"name": 1})).await,
    ];
    let mut last_remaining = i64::MAX;
    for r in &responses {
        let remaining = header(r, "x-ratelimit-remaining");
        assert_eq!(header(r, "x-ratelimit-limit"), 100);
        assert_eq!(header(r, "x-ratelimit-reset"), next_new_york_midnight());
        assert!(
            remaining < last_remaining,
            "every authenticated request counts, whatever its outcome"
        );
        last_remaining = remaining;
    }
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    // The key creation above counted too (one request between the first two checks).
    assert_eq!(statuses, vec![200, 404, 400, 403, 400]);
    // An unauthenticated response has none.
    let r = app.http.get(app.url("/profile")).send().await.unwrap();
    assert!(r.headers().get("x-ratelimit-limit").is_none());
}

/// The day counter item of a company today: (requests today, requests in its second).
async fn counters(app: &TestApp, company: &str) -> (i64, i64) {
    let date = Utc::now().with_timezone(&New_York).date_naive().to_string();
    let key = platform::store::keys::rate_day(company, &date);
    let out = app.state.store.raw_item(&key).await.unwrap();
    match out.as_ref() {
        Some(item) => (
            platform::store::number(item, "n").unwrap_or(0),
            platform::store::number(item, "c").unwrap_or(0),
        ),
        None => (0, 0),
    }
}

#[tokio::test]
async fn requests_that_do_not_authenticate_spend_nothing_of_the_company_they_name() {
    use base64::Engine;
    let victim = TestApp::spawn_with(Options {
        per_second_limit: Some(5),
        ..Options::default()
    })
    .await;
    let outsider = TestApp::spawn().await;
    // Wrong passwords in the name of the victim's admin.
    let wrong = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:not-the-password", victim.company.email));
    for _ in 0..6 {
        let r = victim
            .http
            .get(victim.url("/profile"))
            .header("authorization", format!("Basic {wrong}"))
            .send()
            .await
            .unwrap();
        assert!(r.status() == 401 || r.status() == 429, "{}", r.status());
    }
    // Another company naming the victim as its client account.
    for _ in 0..6 {
        let r = outsider
            .get(&format!("/profile?client_id={}", victim.company.company_id))
            .await;
        assert_eq!(r.status(), 404);
    }
    assert_eq!(counters(&victim, &victim.company.company_id).await, (0, 0));
    // A revoked key of the victim: counted alongside its check, then given back.
    let key = victim.create_key(json!({"name": "old"})).await;
    victim
        .call(
            "DELETE",
            &format!("/api-keys/{}", key["id"].as_str().unwrap()),
            victim.key(),
            None,
        )
        .await;
    let (day_before, _) = counters(&victim, &victim.company.company_id).await;
    for _ in 0..3 {
        assert_eq!(
            victim
                .call("GET", "/profile", key["key"].as_str().unwrap(), None)
                .await
                .status(),
            401
        );
    }
    let (day_after, _) = counters(&victim, &victim.company.company_id).await;
    assert_eq!(day_after, day_before, "refused credentials use no quota");
    // A key that names the victim's admin key's records (company, user, key) with another
    // secret: refused as an invalid key, on this instance and on a new one, counting
    // nothing, and no use of the real key recorded (not even acting in a client, whose
    // requests record the key's use on its own item).
    let names = domain::ids::api_key_names(victim.key()).expect("today's keys name records");
    let forged = domain::ids::new_api_key(&names).secret;
    assert_ne!(forged, victim.key());
    assert_eq!(domain::ids::api_key_names(&forged), Some(names.clone()));
    let fresh = victim.another_instance().await;
    for base in [victim.base.clone(), fresh] {
        for path in [
            "/profile",
            "/profile?client_id=00000000000000000000000000000000",
        ] {
            let r = victim
                .http
                .get(format!("{base}/api/v1{path}"))
                .header("kf-api-key", &forged)
                .send()
                .await
                .unwrap();
            expect_error(r, 401, "unauthorized").await;
        }
    }
    assert_eq!(
        counters(&victim, &victim.company.company_id).await.0,
        day_before,
        "a forged key uses no quota"
    );
    let stored = victim
        .state
        .store
        .raw_item(&platform::store::keys::api_key(
            &names.company_id,
            &names.key_id,
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        platform::store::number(&stored, "usage_count").unwrap_or(0),
        0,
        "no use of the real key recorded"
    );
    // The victim itself is not blocked.
    assert_eq!(victim.get("/profile").await.status(), 200);
}

#[tokio::test]
async fn a_failed_login_or_a_strangers_client_id_learns_nothing_of_a_company_over_its_limit() {
    use base64::Engine;
    let victim = TestApp::spawn_with(Options {
        per_second_limit: Some(1),
        ..Options::default()
    })
    .await;
    let outsider = TestApp::spawn().await;
    victim.freeze(new_york_noon_today());
    // The company goes over its per-second limit (this instance remembers the refusal).
    assert_eq!(victim.get("/profile").await.status(), 200);
    expect_error(victim.get("/profile").await, 429, "rate_limited").await;
    let wrong = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:not-the-password", victim.company.email));
    let r = victim
        .http
        .get(victim.url("/profile"))
        .header("authorization", format!("Basic {wrong}"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("x-ratelimit-remaining").is_none());
    expect_error(r, 401, "unauthorized").await;
    let r = outsider
        .get(&format!("/profile?client_id={}", victim.company.company_id))
        .await;
    assert!(r.headers().get("x-ratelimit-remaining").is_none());
    expect_error(r, 404, "not_found").await;
}

#[tokio::test]
async fn a_flood_of_a_dead_token_takes_none_of_its_companys_allowance() {
    let app = TestApp::spawn_with(Options {
        per_second_limit: Some(5),
        ..Options::default()
    })
    .await;
    // The clock stands still (a token issued now stays valid), moved on by hand.
    app.freeze(new_york_noon_today());
    let login = app.login().await;
    let access = login["access"].as_str().unwrap().to_owned();
    let with_token = |token: String| {
        let app = &app;
        async move {
            app.http
                .get(app.url("/profile"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // The token held once (this instance remembers it), then its session ends.
    assert_eq!(with_token(access.clone()).await, 200);
    let r = app
        .call(
            "PUT",
            "/users/self",
            app.key(),
            Some(json!({"password": "another-long-password"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(with_token(access.clone()).await, 401);
    // In the next second: 60 requests with the dead token, and while they are in flight
    // the company's 5 allowed ones.
    app.advance(chrono::Duration::seconds(1));
    let flood = futures::future::join_all((0..60).map(|_| with_token(access.clone())));
    let valid = async {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        futures::future::join_all((0..5).map(|_| {
            let app = &app;
            async move { app.get("/profile").await.status() }
        }))
        .await
    };
    let (flooded, valid) = tokio::join!(flood, valid);
    assert!(flooded.iter().all(|s| *s == 401), "{flooded:?}");
    assert!(valid.iter().all(|s| *s == 200), "{valid:?}");
    // And the sixth is the one over the limit.
    expect_error(app.get("/profile").await, 429, "rate_limited").await;
}

/// A published link's anonymous views count on allowances of their own (each link a quarter
/// of the company's allowance for public views, which is as large as its daily API limit):
/// a flood of views gets 429s on the link, and the owner's own requests go on.
#[tokio::test]
async fn anonymous_views_of_a_published_link_never_use_up_the_owners_requests() {
    let app = TestApp::spawn_with(Options {
        daily_limit: Some(12),
        per_second_limit: Some(1_000),
        ..Options::default()
    })
    .await;
    let (status, dash) = json(app.post("/dashboards", json!({"name": "Wallboard"})).await).await;
    assert_eq!(status, 201, "{dash}");
    let id = dash["data"]["id"].as_str().unwrap().to_owned();
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (status, link) = json(
            app.post(&format!("/dashboards/{id}/published-links"), json!({}))
                .await,
        )
        .await;
        assert_eq!(status, 201, "{link}");
        tokens.push(link["data"]["token"].as_str().unwrap().to_owned());
    }
    let view = |token: &str| {
        app.http
            .get(app.url(&format!("/public/dashboards/{token}")))
            .send()
    };
    // The first link: 3 views a day (12 / 4), then 429s on the link only.
    for _ in 0..3 {
        assert_eq!(view(&tokens[0]).await.unwrap().status(), 200);
    }
    for _ in 0..20 {
        let refused = view(&tokens[0]).await.unwrap();
        assert!(refused.headers().contains_key("retry-after"));
        assert!(!refused.headers().contains_key("x-ratelimit-remaining"));
        expect_error(refused, 429, "rate_limited").await;
    }
    // The second link has its own allowance.
    assert_eq!(view(&tokens[1]).await.unwrap().status(), 200);
    // The owner has used 3 requests (the dashboard and two links) and goes on.
    let (status, usage) = json(app.get("/usage").await).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["data"]["used_today"], 4, "{usage}");
    for _ in 0..8 {
        assert_eq!(app.get("/profile").await.status(), 200);
    }
}

/// `GET /profile` with the admin's key on the instance served at `base`; its status.
async fn profile_on(app: &TestApp, base: String) -> reqwest::StatusCode {
    app.http
        .get(format!("{base}/api/v1/profile"))
        .header("kf-api-key", app.key())
        .send()
        .await
        .unwrap()
        .status()
}

/// A new instance knows nothing of the second the company's counter item counts, so its
/// first count sends both guesses at once (add to this second, start it): exactly one
/// holds, whether the item counts an older second or this one already, so the request is
/// counted once, in one round trip.
#[tokio::test]
async fn a_new_instances_first_request_is_counted_once_whatever_second_the_item_counts() {
    let app = one_still_second(100).await;
    let get = |base: String| profile_on(&app, base);
    // The item counts an earlier second: the new instance starts this one.
    assert_eq!(get(app.another_instance().await).await, 200);
    assert_eq!(counters(&app, &app.company.company_id).await, (2, 1));
    // The item counts this second already: the next new instance adds to it.
    assert_eq!(get(app.another_instance().await).await, 200);
    assert_eq!(counters(&app, &app.company.company_id).await, (3, 2));
    // Both at once, from two more new instances: each counted once.
    let (a, b) = tokio::join!(async { get(app.another_instance().await).await }, async {
        get(app.another_instance().await).await
    });
    assert_eq!((a.as_u16(), b.as_u16()), (200, 200));
    assert_eq!(counters(&app, &app.company.company_id).await, (5, 4));
}

#[tokio::test]
async fn warm_instances_taking_turns_count_every_request_once_in_every_second() {
    let app = one_still_second(100).await;
    let get = |base: String| {
        let app = &app;
        async move { assert_eq!(profile_on(app, base).await, 200) }
    };
    let (a, b) = (app.base.clone(), app.another_instance().await);
    let company = app.company.company_id.clone();
    get(a.clone()).await;
    get(b.clone()).await;
    assert_eq!(counters(&app, &company).await, (3, 2));
    let mut today = 3;
    for round in 0..4 {
        app.advance(chrono::Duration::seconds(1));
        // Either instance may come first in a second (B, once it has seen A count first,
        // sends both guesses for a new second; A, its one guess): each request once.
        let (first, second) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        get(first.clone()).await;
        assert_eq!(
            counters(&app, &company).await,
            (today + 1, 1),
            "round {round}"
        );
        get(second.clone()).await;
        get(second.clone()).await;
        today += 3;
        assert_eq!(counters(&app, &company).await, (today, 3), "round {round}");
    }
}
