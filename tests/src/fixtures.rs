//! Shared setup for the end-to-end tests: the requests as the bootstrap admin that
//! [`TestApp`]'s own methods do not cover, and conditional requests with ETags.

use crate::TestApp;
use serde_json::Value;

/// A PUT with a JSON body, as the bootstrap admin.
pub async fn put(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.call("PUT", path, app.key(), Some(body)).await
}

/// A DELETE, as the bootstrap admin.
pub async fn delete(app: &TestApp, path: &str) -> reqwest::Response {
    app.call("DELETE", path, app.key(), None).await
}

/// A POST without a body (an operation such as `/refresh`), as the bootstrap admin.
pub async fn operation(app: &TestApp, path: &str) -> reqwest::Response {
    app.call("POST", path, app.key(), None).await
}

/// The `ETag` header of `response`.
pub fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

/// The `ETag` a GET of `path` answers with, as the bootstrap admin.
pub async fn current_etag(app: &TestApp, path: &str) -> String {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    etag(&response)
}

/// A GET with `If-None-Match: tag`, as the bootstrap admin.
pub async fn get_if_none_match(app: &TestApp, path: &str, tag: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .header("kf-api-key", app.key())
        .header("if-none-match", tag)
        .send()
        .await
        .unwrap()
}

/// A PUT with a JSON body and `If-Match: tag`, as the bootstrap admin.
pub async fn put_if_match(app: &TestApp, path: &str, tag: &str, body: Value) -> reqwest::Response {
    app.http
        .put(app.url(path))
        .header("kf-api-key", app.key())
        .header("if-match", tag)
        .json(&body)
        .send()
        .await
        .unwrap()
}
