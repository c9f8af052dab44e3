//! `GET /openapi.json`: the API reference (`docs/openapi.yaml`, compiled in) as JSON, with no
//! credentials, so clients and tools can fetch the contract from the API itself.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use platform::extract::NoParams;
use platform::{ApiError, ApiResult};
use std::sync::OnceLock;

const SPEC: &str = include_str!("../../../docs/openapi.yaml");

/// The document as JSON text, converted once per instance.
fn json() -> Result<&'static str, String> {
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    JSON.get_or_init(|| {
        let value: serde_json::Value =
            serde_yaml::from_str(SPEC).map_err(|e| format!("docs/openapi.yaml: {e}"))?;
        serde_json::to_string(&value).map_err(|e| e.to_string())
    })
    .as_deref()
    .map_err(Clone::clone)
}

pub async fn show(_: NoParams) -> ApiResult<Response> {
    let body = json().map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_compiled_in_document_converts() {
        let text = super::json().unwrap();
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(value["openapi"].as_str().unwrap().starts_with("3."));
        assert!(value["paths"]["/openapi.json"]["get"].is_object());
    }
}
