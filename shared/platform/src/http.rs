//! The edge every function's router sits behind (API.md §1 and §4): addressing and aliases,
//! date versions, request ids, JSONP, error JSON for everything axum and tower-http answer on
//! their own (unknown route 404, 405 with `Allow`, 413), and a 500 for a panicking handler.

use crate::error::{ApiError, InternalMarker, RenderedError, RequestId};
use crate::extract::CallerPath;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tracing::Instrument;

/// The API's date version (Kippt-style); earlier dates are refused.
pub const API_VERSION: &str = "2026-11-22";
const API_VERSION_COMPACT: &str = "20261122";

/// Any request body above this is refused before a handler runs (data uploads are 5 MiB).
pub const MAX_BODY: usize = 6 * 1024 * 1024;

/// How long a request may take by default: under the 10 s the template gives most
/// functions, with room to answer the 503 (`REQUEST_DEADLINE_MS` sets it per function).
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(8_000);

/// `REQUEST_DEADLINE_MS`, else [`DEFAULT_DEADLINE`].
pub fn deadline_from_env() -> Duration {
    std::env::var("REQUEST_DEADLINE_MS")
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_DEADLINE, Duration::from_millis)
}

/// Wraps a function's routes (state already applied) in the edge layers, with the request
/// deadline of [`deadline_from_env`].
pub fn app(routes: Router) -> Router {
    app_with_deadline(routes, deadline_from_env())
}

/// [`app`] with a given deadline: a request still running then is stopped and answered 503
/// with error JSON, so the client hears why before the Lambda's own timeout cuts it off.
pub fn app_with_deadline(routes: Router, deadline: Duration) -> Router {
    let inner = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn(edge))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| within(deadline, req, next),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("handler panicked").into_response()
        }))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .service(routes);
    Router::new().fallback_service(inner)
}

/// The route path for the path a caller used, or the error to answer.
pub fn route_path(path: &str) -> Result<String, ApiError> {
    let trimmed = path.trim_end_matches('/');
    let mut segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    if segments.first() != Some(&"api") {
        return Err(ApiError::NotFound(format!(
            "no route for {path}; the API lives under /api/v1/"
        )));
    }
    segments.remove(0);
    match segments.first().copied() {
        Some("1.0" | "1" | "v1") => {
            segments.remove(0);
        }
        // clariBI's unversioned auth paths.
        Some("auth") => {}
        other => {
            return Err(ApiError::UnsupportedVersion {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "API version '{}' is not supported; use /api/1.0/, /api/1/ or /api/v1/",
                    other.unwrap_or("")
                ),
            })
        }
    }
    match segments.first_mut() {
        Some(first) if *first == "tabs" => *first = "dashboards",
        Some(first) if *first == "data-sources" => *first = "datasources",
        _ => {}
    }
    // clariBI spells refresh `auth/token/refresh`.
    if segments.len() == 3 && segments[..] == ["auth", "token", "refresh"] {
        segments.remove(1);
    }
    // `{collection}/{id}/@/{operation}` = `{collection}/{id}/{operation}`; a collection's own
    // operations (`datasources/@/refresh`) keep their `@`.
    if segments.len() >= 4 && segments[2] == "@" {
        segments.remove(2);
    }
    Ok(format!("/{}", segments.join("/")))
}

/// Refuses date versions before the API's own (`Accept`/`Content-Type`
/// `application/vnd.pulseboard.YYYYMMDD+json`, or `X-API-Version: YYYY-MM-DD`).
pub fn check_date_version(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let unsupported = |message: String| ApiError::UnsupportedVersion {
        status: StatusCode::BAD_REQUEST,
        message,
    };
    for name in [header::ACCEPT, header::CONTENT_TYPE] {
        for value in headers
            .get_all(&name)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            for media in value.split(',') {
                let essence = media
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                let Some(rest) = essence.strip_prefix("application/vnd.pulseboard.") else {
                    continue;
                };
                let date = rest.strip_suffix("+json").unwrap_or(rest);
                if chrono::NaiveDate::parse_from_str(date, "%Y%m%d").is_err() || date.len() != 8 {
                    return Err(unsupported(format!(
                        "malformed version media type '{essence}'; use application/vnd.pulseboard.YYYYMMDD+json"
                    )));
                }
                if date < API_VERSION_COMPACT {
                    return Err(unsupported(format!("API version {date} is not supported; the earliest is {API_VERSION_COMPACT}")));
                }
            }
        }
    }
    if let Some(value) = headers.get("x-api-version") {
        let text = value.to_str().unwrap_or("").trim();
        let (Ok(asked), Ok(earliest)) = (
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d"),
            chrono::NaiveDate::parse_from_str(API_VERSION, "%Y-%m-%d"),
        ) else {
            return Err(unsupported(format!(
                "X-API-Version must be YYYY-MM-DD, not '{text}'"
            )));
        };
        // Compared as dates: "2026-11-3" is before 2026-11-22, whatever the text says.
        if asked < earliest {
            return Err(unsupported(format!(
                "API version {text} is not supported; the earliest is {API_VERSION}"
            )));
        }
    }
    Ok(())
}

/// `callback=` of a JSONP GET: `Ok(None)` when absent, 400 when not `[A-Za-z0-9_]{1,64}`.
fn jsonp_callback(method: &Method, query: Option<&str>) -> Result<Option<String>, ApiError> {
    if method != Method::GET {
        return Ok(None);
    }
    let Some(callback) = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "callback")
        .map(|(_, v)| v.into_owned())
    else {
        return Ok(None);
    };
    let valid = (1..=64).contains(&callback.len())
        && callback
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(ApiError::BadRequest(
            "callback must be 1 to 64 letters, digits or underscores".into(),
        ));
    }
    Ok(Some(callback))
}

fn request_id(req: &Request) -> String {
    use lambda_http::RequestExt;
    req.lambda_context_ref()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(domain::ids::new_id)
}

async fn within(deadline: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "request stopped at its deadline"
            );
            ApiError::Unavailable(format!(
                "the request did not finish within {} s and was stopped; retry shortly",
                deadline.as_secs_f64()
            ))
            .into_response()
        }
    }
}

/// The edge around every request: checks its version and callback and rewrites its path, runs
/// the routes inside the request's span, gives every error its JSON, logs it, wraps JSONP and
/// adds the edge's headers.
async fn edge(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let metrics = std::sync::Arc::new(crate::metrics::RequestMetrics::default());
    let id = request_id(&req);
    let _ = metrics.request_id.set(id.clone());
    let caller_path = req.uri().path().to_owned();
    let method = req.method().clone();
    let (callback, prepared) = match checked_callback(&req, &method) {
        Ok(callback) => (callback, routed_uri(&req, &caller_path)),
        Err(e) => (None, Err(e)),
    };
    let span = request_span(&id, &method, &caller_path);
    #[cfg(feature = "test-support")]
    let routed_path = match &prepared {
        Ok(uri) => Some(uri.path().to_owned()),
        Err(_) => route_path(&caller_path).ok(),
    };
    let response = async {
        let response = match prepared {
            Ok(uri) => forward(req, next, uri, &caller_path, &id).await,
            Err(e) => e.render(Some(&id)),
        };
        let response = render_errors(response, &method, &caller_path, &id).await;
        log_request(&response, started, &metrics, &id);
        response
    };
    let response = crate::metrics::scope(metrics.clone(), response.instrument(span)).await;
    let mut response = match callback {
        Some(name) => jsonp(response, &name).await,
        None => response,
    };
    #[cfg(feature = "test-support")]
    crate::metrics::record_status(
        method.as_str(),
        metrics.route.get().copied(),
        routed_path.as_deref(),
        response.status().as_u16(),
    );
    add_edge_headers(&mut response, &id);
    response
}

/// Checks the request's date version and its JSONP callback; answers the callback, if any,
/// or the error to answer.
fn checked_callback(req: &Request, method: &Method) -> Result<Option<String>, ApiError> {
    check_date_version(req.headers())?;
    let asked = jsonp_callback(method, req.uri().query())?;
    // Browsers replay cached Basic credentials on a <script> tag from any site: JSONP
    // with them would hand a company's data to that site. They are not credentials for
    // such a request: 401, like any other credentials the request cannot use.
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() >= 6 && v[..6].eq_ignore_ascii_case("basic "));
    if asked.is_some() && basic {
        return Err(ApiError::Unauthorized(
            "Basic credentials cannot be used with JSONP (callback); send an API key or access token in a header".into(),
        ));
    }
    Ok(asked)
}

/// The URI to route: the route's path for the path the caller used, with the query as sent.
fn routed_uri(req: &Request, caller_path: &str) -> Result<Uri, ApiError> {
    let path = route_path(caller_path)?;
    // `callback` stays in the query: every endpoint knows it, and paging links keep it.
    let query = req.uri().query().map(str::to_owned);
    let uri = match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    uri.parse::<Uri>()
        .map_err(|_| ApiError::BadRequest("malformed request path".into()))
}

/// The request's span: every log line of the request carries its id, method and path;
/// admission adds the route and the company once it knows them.
fn request_span(id: &str, method: &Method, caller_path: &str) -> tracing::Span {
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        path = %crate::metrics::loggable_path(caller_path),
        route = tracing::field::Empty,
        company = tracing::field::Empty,
    )
}

/// Runs the routes on the request, at the route's URI, with the path the caller used and
/// the request id.
async fn forward(mut req: Request, next: Next, uri: Uri, caller_path: &str, id: &str) -> Response {
    *req.uri_mut() = uri;
    req.extensions_mut()
        .insert(CallerPath(caller_path.to_owned()));
    req.extensions_mut().insert(RequestId(id.to_owned()));
    next.run(req).await
}

/// One line per request, inside its span (request id, method, path, route, company), and
/// the request's metrics.
fn log_request(
    response: &Response,
    started: std::time::Instant,
    metrics: &crate::metrics::RequestMetrics,
    id: &str,
) {
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let store_calls = metrics
        .store_calls
        .load(std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        status,
        latency_ms = (latency_ms * 10.0).round() / 10.0,
        store_calls,
        "request"
    );
    let route = metrics.route.get().copied().unwrap_or("(none)");
    crate::metrics::emit(|function| {
        crate::metrics::request_emf(
            function,
            route,
            status,
            latency_ms,
            store_calls,
            id,
            chrono::Utc::now().timestamp_millis(),
        )
    });
}

/// The headers every answer carries: the request id, the API version and `nosniff`.
fn add_edge_headers(response: &mut Response, id: &str) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert("x-request-id", v);
    }
    headers.insert("x-api-version", HeaderValue::from_static(API_VERSION));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}

/// Gives every 4xx/5xx that is not already Pulseboard error JSON the error JSON of its status.
async fn render_errors(response: Response, method: &Method, path: &str, id: &str) -> Response {
    let status = response.status();
    if status.as_u16() < 400 {
        return response;
    }
    if response.extensions().get::<InternalMarker>().is_some() {
        // Logged where it happened; only the request id is added here.
        return ApiError::internal("").render(Some(id));
    }
    if response.extensions().get::<RenderedError>().is_some() {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound(format!("no route for {method} {path}")),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed {
            method: method.to_string(),
            allow: response
                .headers()
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        },
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
            "request body exceeds the limit of {MAX_BODY} bytes"
        )),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("unsupported content type".into())
        }
        s if s.is_client_error() => ApiError::BadRequest(format!("bad request ({s})")),
        s => {
            tracing::error!(status = s.as_u16(), "a response without error JSON");
            ApiError::internal(format!("unrendered {s}"))
        }
    };
    error.render(Some(id))
}

/// Wraps the JSON body as `callback(<json>);`.
async fn jsonp(response: Response, callback: &str) -> Response {
    // Only JSON is wrapped: a 304 has no body, and a raw CSV download stays a file.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::extract::is_json_media_type);
    if !is_json || response.status() == StatusCode::NOT_MODIFIED {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::internal(format!("reading body for JSONP: {e}")).into_response()
        }
    };
    let mut wrapped = Vec::with_capacity(bytes.len() + callback.len() + 3);
    wrapped.extend_from_slice(callback.as_bytes());
    wrapped.push(b'(');
    wrapped.extend_from_slice(if bytes.is_empty() { b"null" } else { &bytes });
    wrapped.extend_from_slice(b");");
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(wrapped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_past_its_deadline_is_a_503_with_error_json() {
        use tower::ServiceExt;
        let slow = Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        let app = app_with_deadline(slow, Duration::from_millis(50));
        let started = std::time::Instant::now();
        let response = app
            .oneshot(
                Request::builder()
                    .uri("/api/v1/slow")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("x-request-id"));
        let body = axum::body::to_bytes(response.into_body(), 10_000)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "service_unavailable", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("0.05 s"),
            "{body}"
        );
    }

    #[test]
    fn paths() {
        assert_eq!(route_path("/api/1.0/dashboards").unwrap(), "/dashboards");
        assert_eq!(route_path("/api/1/dashboards/").unwrap(), "/dashboards");
        assert_eq!(
            route_path("/api/v1/tabs/abc/@/refresh").unwrap(),
            "/dashboards/abc/refresh"
        );
        assert_eq!(
            route_path("/api/v1/data-sources/@/refresh").unwrap(),
            "/datasources/@/refresh"
        );
        assert_eq!(route_path("/api/auth/login/").unwrap(), "/auth/login");
        assert_eq!(
            route_path("/api/auth/token/refresh/").unwrap(),
            "/auth/refresh"
        );
        let err = route_path("/api/v2/dashboards").unwrap_err();
        assert_eq!(
            (err.status(), err.code()),
            (StatusCode::NOT_FOUND, "unsupported_version")
        );
        assert_eq!(route_path("/nope").unwrap_err().code(), "not_found");
    }

    #[test]
    fn date_versions() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.pulseboard.20261122+json"),
        );
        assert!(check_date_version(&h).is_ok());
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.pulseboard.20260101+json"),
        );
        assert_eq!(
            check_date_version(&h).unwrap_err().code(),
            "unsupported_version"
        );
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-api-version", HeaderValue::from_static("2027-01-01"));
        assert!(check_date_version(&h).is_ok());
        h.insert("x-api-version", HeaderValue::from_static("2026-11-21"));
        assert!(check_date_version(&h).is_err());
        h.insert("x-api-version", HeaderValue::from_static("2026-11-3"));
        assert!(
            check_date_version(&h).is_err(),
            "unpadded dates compare as dates"
        );
        h.insert("x-api-version", HeaderValue::from_static("yesterday"));
        assert!(check_date_version(&h).is_err());
    }

    #[test]
    fn callbacks() {
        assert_eq!(
            jsonp_callback(&Method::GET, Some("callback=cb_1"))
                .unwrap()
                .as_deref(),
            Some("cb_1")
        );
        assert!(jsonp_callback(&Method::GET, Some("callback=alert(1)")).is_err());
        assert!(jsonp_callback(&Method::GET, Some("callback=")).is_err());
        assert_eq!(
            jsonp_callback(&Method::POST, Some("callback=x")).unwrap(),
            None
        );
    }
}
