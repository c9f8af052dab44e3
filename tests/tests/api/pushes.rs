//! Data pushes at scale: an append is one segment and one conditional update, so concurrent
//! appends all succeed (no 409s), nothing is lost or doubled, the worker recomputes the
//! Klips off the request path and compacts the segments, and `If-Match` or a column whose
//! type would change still refuse an append without changing anything.

use domain::asset::Asset;
use domain::records::Datasource;
use platform::store::keys;
use pulseboard_tests::{expect_error, json, TestApp};
use serde_json::{json, Value};

async fn source(app: &TestApp) -> String {
    let (status, body) = json(
        app.post("/datasources", json!({"name": "Pushed", "format": "csv"}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

async fn send(
    app: &TestApp,
    method: &str,
    id: &str,
    body: String,
    if_match: Option<&str>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app
        .http
        .request(method, app.url(&format!("/datasources/{id}/data")))
        .header("kf-api-key", app.key())
        .header("content-type", "text/csv");
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    request.body(body).send().await.unwrap()
}

/// Every row's `n`, in order.
async fn ns(app: &TestApp, id: &str) -> Vec<i64> {
    let (status, body) = json(app.get(&format!("/datasources/{id}/data?limit=100")).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .collect()
}

async fn stored(app: &TestApp, id: &str) -> Datasource {
    app.state
        .store
        .get(keys::asset(Datasource::KIND, &app.company.company_id, id))
        .await
        .unwrap()
        .unwrap()
}

/// Polls (up to 30 s) until `done` holds for the stored data source.
async fn until(app: &TestApp, id: &str, what: &str, done: impl Fn(&Datasource) -> bool) {
    for _ in 0..150 {
        if done(&stored(app, id).await) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!(
        "{what} did not happen within 30 seconds: {:?}",
        stored(app, id).await
    );
}

#[tokio::test]
async fn concurrent_appends_all_succeed_and_compaction_keeps_every_row_once() {
    let app = TestApp::spawn().await;
    let id = source(&app).await;
    let r = send(&app, "PUT", &id, "n,who\n0,seed\n".into(), None).await;
    assert_eq!(r.status(), 200);
    // 24 senders at once, two rows each: no 409, every row exactly once.
    let appends = (1..=24).map(|i| {
        let (app, id) = (&app, &id);
        async move {
            let body = format!("n,who\n{},s{i}\n{},s{i}\n", 2 * i - 1, 2 * i);
            send(app, "POST", id, body, None).await
        }
    });
    for response in futures::future::join_all(appends).await {
        let status = response.status();
        assert_eq!(status, 200, "{:?}", response.text().await);
    }
    let mut seen = ns(&app, &id).await;
    seen.sort();
    assert_eq!(seen, (0..=48).collect::<Vec<_>>());
    let (_, shown) = json(app.get(&format!("/datasources/{id}")).await).await;
    assert_eq!(shown["data"]["row_count"], 49);
    assert!(shown["data"].get("segments").is_none(), "{shown}");

    // The worker merges the segments into one copy; the rows and the file stay as they were.
    let before = ns(&app, &id).await;
    until(&app, &id, "compaction", |ds| ds.segments.len() < 8).await;
    assert_eq!(ns(&app, &id).await, before);
    let r = app.get(&format!("/datasources/{id}/data?format=raw")).await;
    let file = r.text().await.unwrap();
    assert_eq!(file.matches("n,who").count(), 1, "one header: {file}");
    assert_eq!(file.lines().count(), 50);
    let (_, shown) = json(app.get(&format!("/datasources/{id}")).await).await;
    assert_eq!(shown["data"]["data_size"], file.len(), "{shown}");
}

#[tokio::test]
async fn an_append_reaches_the_klips_through_the_worker_with_its_data_version() {
    let app = TestApp::spawn().await;
    let id = source(&app).await;
    let r = send(&app, "PUT", &id, "n,who\n1,a\n2,b\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let (status, klip) = json(
        app.post(
            "/klips",
            json!({"name": "Total", "type": "number", "datasource_id": id,
                "query": {"value": "n", "aggregate": "sum"}}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{klip}");
    let klip_id = klip["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(klip["data"]["value"]["current"], 3.0);

    let (status, appended) =
        json(send(&app, "POST", &id, "n,who\n10,c\n".into(), None).await).await;
    assert_eq!(status, 200, "{appended}");
    let version = appended["data"]["data_version"].as_u64().unwrap();
    let mut value = Value::Null;
    for _ in 0..150 {
        let (_, shown) = json(app.get(&format!("/klips/{klip_id}")).await).await;
        value = shown["data"]["value"].clone();
        if value["current"] == 13.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(value["current"], 13.0, "{value}");
    assert_eq!(value["data_version"], version, "{value}");
}

#[tokio::test]
async fn a_stale_if_match_refuses_an_append_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = source(&app).await;
    let r = send(&app, "PUT", &id, "n,who\n1,a\n".into(), None).await;
    let old_tag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = send(&app, "POST", &id, "n,who\n2,b\n".into(), Some(&old_tag)).await;
    assert_eq!(r.status(), 200, "the current version: {:?}", r.text().await);
    let r = send(&app, "POST", &id, "n,who\n3,c\n".into(), Some(&old_tag)).await;
    expect_error(r, 412, "precondition_failed").await;
    assert_eq!(ns(&app, &id).await, vec![1, 2]);
    // The refused append left no segment behind.
    let prefix = format!("{}/datasources/{id}/segments/", app.company.company_id);
    let segments = app.state.store.files().list(&prefix).await.unwrap();
    assert_eq!(
        segments.len(),
        1,
        "only the accepted append's segment: {segments:?}"
    );
}

#[tokio::test]
async fn an_append_that_would_change_a_columns_type_is_a_400_naming_it() {
    let app = TestApp::spawn().await;
    let id = source(&app).await;
    let r = send(&app, "PUT", &id, "n,who\n1,a\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let body = expect_error(
        send(&app, "POST", &id, "n,who\nmany,b\n".into(), None).await,
        400,
        "bad_request",
    )
    .await;
    assert!(body.to_string().contains("'n'"), "{body}");
    assert_eq!(ns(&app, &id).await, vec![1]);
}

#[tokio::test]
async fn readers_see_the_old_data_or_the_new_never_a_mix() {
    let app = TestApp::spawn().await;
    let id = source(&app).await;
    let file = |who: &str, count: i64| {
        let mut csv = String::from("n,who\n");
        for n in 0..count {
            csv.push_str(&format!("{n},{who}\n"));
        }
        csv
    };
    let r = send(&app, "PUT", &id, file("a", 5), None).await;
    assert_eq!(r.status(), 200);
    // An append on top, so the data is a copy and a segment when the replaces start.
    let r = send(&app, "POST", &id, "n,who\n5,a\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let writer = async {
        for round in 0..12 {
            let (who, count) = if round % 2 == 0 { ("b", 7) } else { ("a", 6) };
            let r = send(&app, "PUT", &id, file(who, count), None).await;
            assert_eq!(r.status(), 200);
        }
    };
    let reader = async {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..40 {
            let (status, body) =
                json(app.get(&format!("/datasources/{id}/data?limit=100")).await).await;
            assert_eq!(status, 200, "{body}");
            let rows = body["data"]["rows"].as_array().unwrap().clone();
            let whos: std::collections::BTreeSet<&str> =
                rows.iter().map(|r| r["who"].as_str().unwrap()).collect();
            assert_eq!(whos.len(), 1, "a mix: {rows:?}");
            let who = *whos.iter().next().unwrap();
            let expected = if who == "a" { 6 } else { 7 };
            assert_eq!(rows.len(), expected, "{rows:?}");
            seen.insert(who.to_owned());
        }
        seen
    };
    let ((), seen) = tokio::join!(writer, reader);
    assert!(!seen.is_empty());
}

/// An interrupted push (stopped between storing its file and committing it) leaves files no
/// item points at; the sweep deletes them once they are an hour old, and nothing else.
#[tokio::test]
async fn the_sweep_deletes_only_orphan_data_files_older_than_an_hour() {
    use platform::assets::stored::{sweep_under, ORPHAN_AFTER_SECS};
    let app = TestApp::spawn().await;
    let id = source(&app).await;
    let r = send(&app, "PUT", &id, "n,who\n1,a\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let r = send(&app, "POST", &id, "n,who\n2,b\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let company = app.company.company_id.clone();
    let files = app.state.store.files();
    // What an interrupted replace and an interrupted append leave behind, and the files of
    // a data source whose item is gone.
    let orphans = [
        format!("{company}/datasources/{id}/interrupted/raw"),
        format!("{company}/datasources/{id}/interrupted/rows.json"),
        format!("{company}/datasources/{id}/segments/interrupted/raw"),
        format!("{company}/datasources/deleted-source/copy/raw"),
    ];
    for key in &orphans {
        files
            .put(key, "text/csv", b"n,who\n9,z\n".to_vec())
            .await
            .unwrap();
    }
    // A report file is not data, whatever its age.
    let report = format!("{company}/reports/r1/run.csv");
    files
        .put(&report, "text/csv", b"x\n".to_vec())
        .await
        .unwrap();
    let prefix = format!("{company}/");
    let all = || async { files.list(&prefix).await.unwrap() };
    let before = all().await;
    assert_eq!(before.len(), 2 + 1 + orphans.len() + 1, "{before:?}");

    // Within the hour nothing goes: a write may still be committing its file.
    let now = chrono::Utc::now();
    let swept = sweep_under(&app.state, now, &prefix).await.unwrap();
    assert_eq!((swept.deleted, swept.finished), (0, true));
    assert_eq!(all().await, before);

    // An hour later the orphans go, and only they.
    let later = now + chrono::Duration::seconds(ORPHAN_AFTER_SECS + 60);
    let swept = sweep_under(&app.state, later, &prefix).await.unwrap();
    assert_eq!((swept.deleted, swept.finished), (orphans.len(), true));
    let after = all().await;
    for key in &orphans {
        assert!(!after.contains(key), "{key} is still there: {after:?}");
    }
    assert!(after.contains(&report), "{after:?}");
    assert_eq!(after.len(), 2 + 1 + 1, "{after:?}");
    // The data is whole: the committed copy and segment were kept.
    assert_eq!(ns(&app, &id).await, vec![1, 2]);
    // A second pass over the same files deletes nothing more.
    let swept = sweep_under(&app.state, later, &prefix).await.unwrap();
    assert_eq!(swept.deleted, 0);
}

/// The sweep reads the bucket a page at a time and goes on where it stopped.
#[tokio::test]
async fn the_sweep_goes_on_from_where_it_stopped() {
    use platform::assets::stored::{sweep_under, ORPHAN_AFTER_SECS};
    let app = TestApp::spawn().await;
    let company = app.company.company_id.clone();
    let files = app.state.store.files();
    // More orphans than one page (1,000) holds.
    let keys: Vec<String> = (0..1005)
        .map(|i| format!("{company}/datasources/gone/{i:05}/raw"))
        .collect();
    use futures::StreamExt;
    let written: Vec<_> = futures::stream::iter(&keys)
        .map(|k| files.put(k, "text/csv", b"n\n1\n".to_vec()))
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(written.iter().all(Result::is_ok));
    let prefix = format!("{company}/");
    let later = chrono::Utc::now() + chrono::Duration::seconds(ORPHAN_AFTER_SECS + 60);
    let first = sweep_under(&app.state, later, &prefix).await.unwrap();
    assert_eq!((first.deleted, first.finished), (1000, false));
    let second = sweep_under(&app.state, later, &prefix).await.unwrap();
    assert_eq!((second.deleted, second.finished), (5, true));
    assert!(files.list(&prefix).await.unwrap().is_empty());
}

/// The Klip's value, once it is `expected` (polls up to 30 s).
async fn value_reaches(app: &TestApp, klip: &str, expected: f64) -> Value {
    let mut value = Value::Null;
    for _ in 0..150 {
        let (_, shown) = json(app.get(&format!("/klips/{klip}")).await).await;
        value = shown["data"]["value"].clone();
        if value["current"] == expected {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("the value never reached {expected}: {value}");
}

async fn klip_over(app: &TestApp, datasource: &str, query: Value) -> String {
    let (status, klip) = json(
        app.post(
            "/klips",
            json!({"name": "Pushed", "type": "number", "datasource_id": datasource,
                "query": query}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{klip}");
    klip["data"]["id"].as_str().unwrap().to_owned()
}

/// Deletes the stored rows of the source's current copy: from then on only a pass that
/// reads the segments alone, never the copy, can compute its Klips.
async fn lose_the_copys_rows(app: &TestApp, id: &str) {
    let ds = stored(app, id).await;
    let copy = format!(
        "{}/datasources/{id}/{}/rows.json",
        app.company.company_id,
        ds.data_id.unwrap()
    );
    app.state.store.files().delete(&copy).await.unwrap();
}

#[tokio::test]
async fn the_worker_goes_on_from_its_last_pass_reading_only_the_rows_appended_since() {
    let app = TestApp::spawn().await;
    let id = source(&app).await;
    let r = send(&app, "PUT", &id, "n,who\n1,a\n".into(), None).await;
    assert_eq!(r.status(), 200);
    // Creating the Klip computed it over every row and left its progress.
    let klip = klip_over(&app, &id, json!({"value": "n", "aggregate": "sum"})).await;
    lose_the_copys_rows(&app, &id).await;
    for n in [2, 3] {
        let r = send(&app, "POST", &id, format!("n,who\n{n},x\n"), None).await;
        assert_eq!(r.status(), 200);
    }
    value_reaches(&app, &klip, 6.0).await;
    let r = send(&app, "POST", &id, "n,who\n4,y\n".into(), None).await;
    assert_eq!(r.status(), 200);
    value_reaches(&app, &klip, 10.0).await;
    // A replace starts a new history, and leaves the progress of its own recompute.
    let r = send(&app, "PUT", &id, "n,who\n100,a\n".into(), None).await;
    assert_eq!(r.status(), 200);
    value_reaches(&app, &klip, 100.0).await;
    lose_the_copys_rows(&app, &id).await;
    let r = send(&app, "POST", &id, "n,who\n5,z\n".into(), None).await;
    assert_eq!(r.status(), 200);
    value_reaches(&app, &klip, 105.0).await;
    let progress_key = format!("{}/datasources/{id}/progress.json", app.company.company_id);
    let progress = app.state.store.files().get(&progress_key).await.unwrap();
    let progress: Value = serde_json::from_slice(&progress.unwrap()).unwrap();
    assert_eq!(progress["lineage"], json!(stored(&app, &id).await.lineage));
}

#[tokio::test]
async fn klip_values_stay_exact_across_many_passes_and_compactions_and_a_replace() {
    let app = TestApp::spawn().await;
    let id = source(&app).await;
    let r = send(&app, "PUT", &id, "n,who\n1,a\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let sum = klip_over(&app, &id, json!({"value": "n", "aggregate": "sum"})).await;
    let last = klip_over(&app, &id, json!({"value": "n", "aggregate": "last"})).await;
    let by_who = klip_over(
        &app,
        &id,
        json!({"value": "n", "aggregate": "max", "group_by": "who", "sort": "key"}),
    )
    .await;
    for n in 2..=20 {
        let who = if n % 2 == 0 { "even" } else { "odd" };
        let r = send(&app, "POST", &id, format!("n,who\n{n},{who}\n"), None).await;
        assert_eq!(r.status(), 200);
        if n % 5 == 0 {
            // Let some passes run between appends, so later ones go on from earlier ones.
            value_reaches(&app, &sum, f64::from(n * (n + 1) / 2)).await;
        }
    }
    until(&app, &id, "a compaction", |ds| {
        ds.segments.len() < 8 && ds.row_count == 20
    })
    .await;
    value_reaches(&app, &sum, 210.0).await;
    value_reaches(&app, &last, 20.0).await;
    let (_, shown) = json(app.get(&format!("/klips/{by_who}")).await).await;
    let groups = &shown["data"]["value"]["groups"];
    assert_eq!(
        groups,
        &json!([{"key": "a", "value": 1.0}, {"key": "even", "value": 20.0}, {"key": "odd", "value": 19.0}]),
        "{shown}"
    );
    // A replace starts the rows over: the next append adds to the new rows only.
    let r = send(&app, "PUT", &id, "n,who\n100,a\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let r = send(&app, "POST", &id, "n,who\n5,b\n".into(), None).await;
    assert_eq!(r.status(), 200);
    value_reaches(&app, &sum, 105.0).await;
    value_reaches(&app, &last, 5.0).await;
}

#[tokio::test]
async fn an_append_refused_or_not_needing_a_segment_leaves_none_behind() {
    let app = TestApp::spawn().await;
    let id = source(&app).await;
    let files = app.state.store.files();
    let company = app.company.company_id.clone();
    let under = |source: &str| format!("{company}/datasources/{source}/segments/");
    // A source's first rows are a whole copy (the segment written meanwhile goes).
    let r = send(&app, "POST", &id, "n,who\n1,a\n".into(), None).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(files.list(&under(&id)).await.unwrap(), Vec::<String>::new());
    expect_error(
        send(&app, "POST", &id, "n,who\nmany,b\n".into(), None).await,
        400,
        "bad_request",
    )
    .await;
    let r = app
        .http
        .post(app.url(&format!("/datasources/{id}/data")))
        .header("kf-api-key", app.key())
        .header("content-type", "application/json")
        .body(r#"[{"n": 2, "who": "c"}]"#)
        .send()
        .await
        .unwrap();
    expect_error(r, 415, "unsupported_media_type").await;
    assert_eq!(files.list(&under(&id)).await.unwrap(), Vec::<String>::new());
    // Another id (another tenant's, or none): 404, and nothing stays under it.
    let elsewhere = domain::ids::new_id();
    expect_error(
        send(&app, "POST", &elsewhere, "n,who\n2,c\n".into(), None).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        files.list(&under(&elsewhere)).await.unwrap(),
        Vec::<String>::new()
    );
    let r = send(&app, "POST", &id, "n,who\n2,c\n".into(), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(files.list(&under(&id)).await.unwrap().len(), 1);
    assert_eq!(ns(&app, &id).await, vec![1, 2]);
}

#[tokio::test]
async fn a_json_source_compacts_into_one_array_with_every_row_in_order() {
    let app = TestApp::spawn().await;
    let (status, body) = json(
        app.post(
            "/datasources",
            json!({"name": "Pushed JSON", "format": "json"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    let push = |method: &str, rows: String| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        app.http
            .request(method, app.url(&format!("/datasources/{id}/data")))
            .header("kf-api-key", app.key())
            .header("content-type", "application/json")
            .body(rows)
            .send()
    };
    let r = push("PUT", " [{\"n\": 0, \"who\": \"seed\"}]\n".into())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for n in 1..=9 {
        let r = push("POST", format!("[{{\"n\": {n}, \"who\": \"w{n}\"}}]\n"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    until(&app, &id, "compaction", |ds| {
        ds.segments.len() < 8 && ds.row_count == 10
    })
    .await;
    assert_eq!(ns(&app, &id).await, (0..=9).collect::<Vec<_>>());
    let r = app.get(&format!("/datasources/{id}/data?format=raw")).await;
    let file: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let raw_ns: Vec<i64> = file
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["n"].as_i64().unwrap())
        .collect();
    assert_eq!(raw_ns, (0..=9).collect::<Vec<_>>());
}

#[tokio::test]
async fn small_appends_to_a_large_source_merge_into_one_segment_and_read_the_same() {
    let app = TestApp::spawn().await;
    let id = source(&app).await;
    let seed: String = (0..100).map(|n| format!("{n},seed\n")).collect();
    let r = send(&app, "PUT", &id, format!("n,who\n{seed}"), None).await;
    assert_eq!(r.status(), 200);
    let klip = klip_over(&app, &id, json!({"value": "n", "aggregate": "sum"})).await;
    let copy = stored(&app, &id).await.data_id;
    for n in 100..109 {
        let r = send(&app, "POST", &id, format!("n,who\n{n},late\n"), None).await;
        assert_eq!(r.status(), 200);
    }
    // Nine one-row appends to 100 rows: merged among themselves, the copy left as it was.
    until(&app, &id, "a merge of segments", |ds| {
        ds.segments.len() < 8 && ds.row_count == 109
    })
    .await;
    let ds = stored(&app, &id).await;
    assert_eq!(ds.data_id, copy, "the copy was not rewritten");
    assert_eq!(ds.segments.iter().map(|s| s.rows).sum::<u64>(), 9);
    let mut all: Vec<i64> = Vec::new();
    for offset in [0, 100] {
        let path = format!("/datasources/{id}/data?limit=100&offset={offset}");
        let (status, body) = json(app.get(&path).await).await;
        assert_eq!(status, 200, "{body}");
        all.extend(
            body["data"]["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["n"].as_i64().unwrap()),
        );
    }
    assert_eq!(all, (0..109).collect::<Vec<_>>());
    let r = app.get(&format!("/datasources/{id}/data?format=raw")).await;
    let file = r.text().await.unwrap();
    let expected: String = (0..109)
        .map(|n| format!("{n},{}\n", if n < 100 { "seed" } else { "late" }))
        .collect();
    assert_eq!(file, format!("n,who\n{expected}"));
    let (_, shown) = json(app.get(&format!("/datasources/{id}")).await).await;
    assert_eq!(shown["data"]["data_size"], file.len(), "{shown}");
    value_reaches(&app, &klip, f64::from((0..109).sum::<i32>())).await;
}

/// An append to a source this instance appended to before does not read it first: it
/// relies on the item as saved then. Every change since must still count: new columns, a
/// new format, disabling, deleting, a rename (the answer is the item as it is now), and no
/// segment may stay behind from an append the remembered item misled.
#[tokio::test]
async fn an_append_after_the_source_changed_elsewhere_acts_on_the_source_as_it_is() {
    let app = TestApp::spawn().await;
    let id = source(&app).await;
    let files = app.state.store.files();
    let company = app.company.company_id.clone();
    let under = format!("{company}/datasources/{id}/segments/");
    let r = send(&app, "PUT", &id, "n,who\n1,a\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let r = send(&app, "POST", &id, "n,who\n2,b\n".into(), None).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // Renamed since: an append with no rows answers the source as it is now.
    let (status, renamed) = json(
        app.call(
            "PUT",
            &format!("/datasources/{id}"),
            app.key(),
            Some(json!({"name": "Renamed"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{renamed}");
    let (status, body) = json(send(&app, "POST", &id, "n,who\n".into(), None).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["name"], "Renamed");
    assert_eq!(body["data"]["version"], renamed["data"]["version"]);

    // Replaced with other columns: the new columns are taken, the old refused.
    let r = send(&app, "POST", &id, "n,who\n3,c\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let r = send(&app, "PUT", &id, "n,where\n10,x\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let (status, body) = json(send(&app, "POST", &id, "n,where\n11,y\n".into(), None).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["row_count"], 2);
    assert_eq!(ns(&app, &id).await, vec![10, 11]);
    let r = send(&app, "PUT", &id, "n,who\n20,p\n".into(), None).await;
    assert_eq!(r.status(), 200);
    expect_error(
        send(&app, "POST", &id, "n,where\n21,q\n".into(), None).await,
        400,
        "bad_request",
    )
    .await;
    assert_eq!(ns(&app, &id).await, vec![20]);

    // A column's type changed by a replace: the append that fit the old type is refused.
    let r = send(&app, "POST", &id, "n,who\n21,q\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let r = send(&app, "PUT", &id, "n,who\nlots,p\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let (status, body) = json(send(&app, "POST", &id, "n,who\nmore,q\n".into(), None).await).await;
    assert_eq!(status, 200, "{body}");
    let r = send(&app, "PUT", &id, "n,who\n30,p\n".into(), None).await;
    assert_eq!(r.status(), 200);
    let r = send(&app, "POST", &id, "n,who\n31,q\n".into(), None).await;
    assert_eq!(r.status(), 200);

    // Disabled: 409; enabled again: appends go on.
    let path = |what: &str| format!("/datasources/{id}/{what}");
    assert_eq!(
        app.call("POST", &path("disable"), app.key(), None)
            .await
            .status(),
        200
    );
    expect_error(
        send(&app, "POST", &id, "n,who\n32,r\n".into(), None).await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(
        app.call("POST", &path("enable"), app.key(), None)
            .await
            .status(),
        200
    );
    let r = send(&app, "POST", &id, "n,who\n33,s\n".into(), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(ns(&app, &id).await, vec![30, 31, 33]);

    // Now JSON: a CSV append is 415 naming the format.
    let (status, body) = json(
        app.call(
            "PUT",
            &format!("/datasources/{id}"),
            app.key(),
            Some(json!({"format": "json"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    expect_error(
        send(&app, "POST", &id, "n,who\n34,t\n".into(), None).await,
        415,
        "unsupported_media_type",
    )
    .await;

    // Deleted: 404, and no segment of a refused append stays behind.
    assert_eq!(
        app.call("DELETE", &format!("/datasources/{id}"), app.key(), None)
            .await
            .status(),
        200
    );
    let before = files.list(&under).await.unwrap();
    expect_error(
        send(&app, "POST", &id, "n,who\n35,u\n".into(), None).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(files.list(&under).await.unwrap(), before);
}
