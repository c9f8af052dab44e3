//! The URL connector: fetches a data source's `properties.endpoint_url` and turns the answer
//! into a table.
//!
//! Every hop goes through `egress`: the host is resolved here, every address is checked, and
//! the connection is pinned to the checked address (`ClientBuilder::resolve`), so a DNS answer
//! that changes between the check and the connect cannot redirect us. Redirects are followed
//! by hand (at most five), each `Location` checked the same way before connecting. The whole
//! fetch has one deadline and the body one size cap. Failures are plain sentences: they become
//! the data source's `last_error`.

use crate::egress;
use crate::error::ApiResult;
use domain::data::{self, Table, MAX_DATA_BYTES};
use domain::records::Datasource;
use domain::sets::Format;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, LOCATION};
use reqwest::Url;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The whole fetch, redirects included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_REDIRECTS: usize = 5;

/// What a fetch brought back.
#[derive(Debug)]
pub struct Fetched {
    /// The rows' own file: the body, or the array `json_path` picked, in the data source's
    /// `format`.
    pub raw: Vec<u8>,
    pub table: Table,
}

/// Fetches and parses the data of a URL data source: the inner error is the endpoint's
/// failure, a sentence for `last_error`; the outer one means the request may not call out at
/// all (see [`crate::held::outbound`]: a held handler's fetch waits for admission, and one
/// refused never connects).
pub async fn fetch(
    ds: &Datasource,
    allowed: &[(IpAddr, u8)],
) -> ApiResult<Result<Fetched, String>> {
    crate::held::outbound().await?;
    Ok(fetch_now(ds, allowed).await)
}

async fn fetch_now(ds: &Datasource, allowed: &[(IpAddr, u8)]) -> Result<Fetched, String> {
    let url = ds
        .properties
        .endpoint_url
        .as_deref()
        .ok_or("the data source has no properties.endpoint_url")?;
    let (body, content_type) =
        match tokio::time::timeout(TIMEOUT, get(url, &ds.properties.headers, allowed)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(format!(
                    "the endpoint did not answer within {} seconds",
                    TIMEOUT.as_secs()
                ))
            }
        };
    let csv = content_type
        .as_deref()
        .is_some_and(|ct| data::format_of(Some(ct)) == Ok(Format::Csv))
        || ds.format == Format::Csv;
    if csv {
        let table = data::parse(Format::Csv, &body)
            .map_err(|e| format!("the endpoint's CSV is not usable: {e}"))?;
        let raw = if ds.format == Format::Csv {
            body
        } else {
            data::encode(ds.format, &table)?
        };
        return Ok(Fetched { raw, table });
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the endpoint's answer is not valid JSON: {e}"))?;
    let rows = pick(value, ds.properties.json_path.as_deref().unwrap_or("$"))?;
    let raw = serde_json::to_vec(&rows).map_err(|e| e.to_string())?;
    let table = data::parse(Format::Json, &raw)
        .map_err(|e| format!("the endpoint's JSON is not usable: {e}"))?;
    Ok(Fetched { raw, table })
}

/// Follows a dot path such as `$.data.rows` (a numeric segment indexes an array) to the array
/// of rows.
pub fn pick(mut value: Value, path: &str) -> Result<Value, String> {
    let rest = path
        .strip_prefix('$')
        .ok_or_else(|| format!("json_path '{path}' must start with '$'"))?;
    let mut walked = String::from("$");
    for segment in rest.split('.').skip(1) {
        let next = match &mut value {
            Value::Object(map) => map.remove(segment),
            Value::Array(items) => segment
                .parse::<usize>()
                .ok()
                .filter(|i| *i < items.len())
                .map(|i| items.swap_remove(i)),
            _ => None,
        };
        value = next.ok_or_else(|| {
            format!("json_path '{path}' does not match the answer: {walked} has no '{segment}'")
        })?;
        walked.push('.');
        walked.push_str(segment);
    }
    if value.is_array() {
        Ok(value)
    } else {
        Err(format!(
            "json_path '{path}' does not lead to an array in the answer ({walked} is not an array)"
        ))
    }
}

/// Checks a `json_path` when it is set: `$` or `$.a.b`, no empty segments.
pub fn valid_json_path(path: &str) -> bool {
    path == "$"
        || path
            .strip_prefix("$.")
            .is_some_and(|rest| rest.split('.').all(|s| !s.is_empty()))
}

/// Resolves `url`'s host and answers the checked address to connect to.
async fn checked_address(url: &Url, allowed: &[(IpAddr, u8)]) -> Result<SocketAddr, String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "refused: only http and https URLs can be fetched, not {}:",
            url.scheme()
        ));
    }
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let host = url.host_str().ok_or("the URL has no host")?;
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    let addrs: Vec<SocketAddr> = match literal {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("could not resolve host '{host}': {e}"))?
            .collect(),
    };
    egress::pick(host, &addrs, allowed)
}

fn header_map(headers: &std::collections::BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header name '{name}' is not valid"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header '{name}' is not valid"))?;
        map.insert(name, value);
    }
    Ok(map)
}

fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_connect() {
        "could not connect".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// GETs `url` following up to five checked redirects; answers the body (at most
/// `MAX_DATA_BYTES`) and its content type.
async fn get(
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    allowed: &[(IpAddr, u8)],
) -> Result<(Vec<u8>, Option<String>), String> {
    let mut url = Url::parse(url).map_err(|e| format!("endpoint_url is not a valid URL: {e}"))?;
    let origin = url.origin();
    let configured = header_map(headers)?;
    for hop in 0..=MAX_REDIRECTS {
        let addr = checked_address(&url, allowed).await?;
        let client = hop_client(&url, addr)?;
        // The company's headers (often credentials) go only to the origin it configured.
        let headers = if url.origin() == origin {
            configured.clone()
        } else {
            HeaderMap::new()
        };
        let response = client
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| format!("fetching {url} failed: {}", describe(&e)))?;
        if response.status().is_redirection() {
            url = redirected(&response, &url, hop)?;
            continue;
        }
        return read_answer(response).await;
    }
    Err(format!(
        "the endpoint redirected more than {MAX_REDIRECTS} times"
    ))
}

/// The client for one hop to `url`, connecting only to its checked address.
fn hop_client(url: &Url, addr: SocketAddr) -> Result<reqwest::Client, String> {
    let host = url.host_str().unwrap_or_default().to_owned();
    // A client per hop: the pinned address belongs to this hop's host. No proxy (it would
    // connect for us, unchecked) and no automatic redirects (they would skip the check).
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .resolve(&host, addr)
        .timeout(TIMEOUT)
        .user_agent("Pulseboard-URL-connector/1")
        .build()
        .map_err(|e| format!("could not set up the HTTP client: {e}"))
}

/// Where a redirect on hop `hop` leads (its `Location` against `url`); an error without a
/// `Location`, past the last hop, or to an invalid URL.
fn redirected(response: &reqwest::Response, url: &Url, hop: usize) -> Result<Url, String> {
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("the endpoint answered {status} without a Location"))?;
    if hop == MAX_REDIRECTS {
        return Err(format!(
            "the endpoint redirected more than {MAX_REDIRECTS} times"
        ));
    }
    url.join(location)
        .map_err(|e| format!("the endpoint redirected to an invalid URL '{location}': {e}"))
}

/// A successful answer's body (at most `MAX_DATA_BYTES`, read as it comes) and its content
/// type; an error for any other status.
async fn read_answer(mut response: reqwest::Response) -> Result<(Vec<u8>, Option<String>), String> {
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the endpoint answered {status}"));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DATA_BYTES as u64)
    {
        return Err(too_large());
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer failed: {}", describe(&e)))?
    {
        if body.len() + chunk.len() > MAX_DATA_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, content_type))
}

/// What a receiver answered a POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub status: u16,
    /// Its `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    /// The start of its body (for the delivery's error), at most 500 bytes.
    pub excerpt: String,
}

/// Why a POST got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSent {
    /// The guard refused the address, or the URL is unusable: trying again cannot help.
    Refused(String),
    /// A timeout or a network error: worth another attempt.
    Network(String),
}

/// POSTs `body` to `url` (a notification), behind the egress guard: the host resolved and
/// every address checked before connecting, the connection pinned to the checked address,
/// up to five redirects followed with the same request (each `Location` checked first),
/// the whole exchange within [`TIMEOUT`]. The outer error means the request may not call
/// out at all (see [`crate::held::outbound`]).
pub async fn post(
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    allowed: &[(IpAddr, u8)],
) -> ApiResult<Result<Answered, NotSent>> {
    crate::held::outbound().await?;
    Ok(
        match tokio::time::timeout(TIMEOUT, post_now(url, headers, body, allowed)).await {
            Ok(result) => result,
            Err(_) => Err(NotSent::Network(format!(
                "the receiver did not answer within {} seconds",
                TIMEOUT.as_secs()
            ))),
        },
    )
}

/// Checks a URL a channel is saved with: http(s), and a host that does not resolve to an
/// address the guard refuses. The error is a sentence for the `url` field.
pub async fn check_url(url: &str, allowed: &[(IpAddr, u8)]) -> Result<(), String> {
    let url = Url::parse(url).map_err(|e| format!("is not a valid URL: {e}"))?;
    checked_address(&url, allowed).await.map(|_| ())
}

async fn post_now(
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    allowed: &[(IpAddr, u8)],
) -> Result<Answered, NotSent> {
    let mut url =
        Url::parse(url).map_err(|e| NotSent::Refused(format!("the URL is not valid: {e}")))?;
    let map = header_map(
        &headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
    .map_err(NotSent::Refused)?;
    for hop in 0..=MAX_REDIRECTS {
        let addr = checked_address(&url, allowed)
            .await
            .map_err(NotSent::Refused)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .resolve(&host, addr)
            .timeout(TIMEOUT)
            .user_agent("Pulseboard-Webhooks/1")
            .build()
            .map_err(|e| NotSent::Network(format!("could not set up the HTTP client: {e}")))?;
        let response = client
            .post(url.clone())
            .headers(map.clone())
            .body(body.clone())
            .send()
            .await
            .map_err(|e| {
                NotSent::Network(format!("sending to {} failed: {}", host, describe(&e)))
            })?;
        let status = response.status();
        if status.is_redirection() && status != reqwest::StatusCode::NOT_MODIFIED {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    NotSent::Refused(format!("the receiver answered {status} without a Location"))
                })?;
            if hop == MAX_REDIRECTS {
                break;
            }
            url = url.join(location).map_err(|e| {
                NotSent::Refused(format!(
                    "the receiver redirected to an invalid URL '{location}': {e}"
                ))
            })?;
            continue;
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut excerpt = Vec::new();
        let mut response = response;
        while let Ok(Some(chunk)) = response.chunk().await {
            excerpt.extend_from_slice(&chunk);
            if excerpt.len() >= 500 {
                excerpt.truncate(500);
                break;
            }
        }
        return Ok(Answered {
            status: status.as_u16(),
            retry_after,
            excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
        });
    }
    Err(NotSent::Refused(format!(
        "the receiver redirected more than {MAX_REDIRECTS} times"
    )))
}

fn too_large() -> String {
    format!("the answer is larger than the limit of {MAX_DATA_BYTES} bytes (5 MiB)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_paths() {
        let answer = json!({"data": {"rows": [{"a": 1}], "n": 1}, "items": [[{"b": 2}]]});
        assert_eq!(
            pick(answer.clone(), "$.data.rows").unwrap(),
            json!([{"a": 1}])
        );
        assert_eq!(
            pick(answer.clone(), "$.items.0").unwrap(),
            json!([{"b": 2}])
        );
        let err = pick(answer.clone(), "$.data.cols").unwrap_err();
        assert!(err.contains("$.data has no 'cols'"), "{err}");
        let err = pick(answer.clone(), "$.data.n").unwrap_err();
        assert!(err.contains("not an array"), "{err}");
        assert!(pick(answer, "$").is_err());
        assert_eq!(pick(json!([1]), "$").unwrap(), json!([1]));
        assert!(valid_json_path("$") && valid_json_path("$.a.b"));
        assert!(
            !valid_json_path("a.b")
                && !valid_json_path("$.")
                && !valid_json_path("$..a")
                && !valid_json_path("$a")
        );
    }

    #[tokio::test]
    async fn refuses_before_connecting() {
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        let err = checked_address(&url, &[]).await.unwrap_err();
        assert!(err.contains("loopback"), "{err}");
        let url = Url::parse("ftp://example.com/").unwrap();
        assert!(checked_address(&url, &[])
            .await
            .unwrap_err()
            .contains("only http and https"));
        // Numeric spellings are normalised by the URL parser before the check.
        for spelling in [
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://[::ffff:7f00:1]/",
        ] {
            let err = checked_address(&Url::parse(spelling).unwrap(), &[])
                .await
                .unwrap_err();
            assert!(err.contains("loopback"), "{spelling}: {err}");
        }
        let url = Url::parse("http://[::ffff:169.254.169.254]/latest").unwrap();
        assert!(checked_address(&url, &[])
            .await
            .unwrap_err()
            .contains("link-local"));
        let allowed = [("127.0.0.1".parse().unwrap(), 32)];
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        assert_eq!(
            checked_address(&url, &allowed).await.unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
    }
}
