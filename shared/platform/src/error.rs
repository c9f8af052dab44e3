//! The one error type every Pulseboard function answers with.
//!
//! Each variant documents its status and its `error` code from API.md §4. `IntoResponse`
//! renders the error JSON `{"meta":{"success":false,"status":N},"error":code,"message":..,
//! "status":N}`; a 500 logs its cause and shows the client only the request id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub use domain::{FieldError, Problems};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad_request`: a query parameter or path segment the endpoint cannot use.
    #[error("{0}")]
    BadRequest(String),
    /// 400 `invalid_json`: the body is not JSON, or not the JSON this endpoint takes.
    #[error("{0}")]
    InvalidJson(String),
    /// 400 `validation_failed`, with one entry per offending field.
    #[error("{message}")]
    Validation {
        message: String,
        details: Vec<FieldError>,
    },
    /// 400 `unsupported_version` (a date version) or 404 (an unknown path version).
    #[error("{message}")]
    UnsupportedVersion { status: StatusCode, message: String },
    /// 401 `unauthorized`: no credentials, or credentials that do not hold.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 405 `method_not_allowed`, with the methods the path does allow.
    #[error("method {method} not allowed here")]
    MethodNotAllowed { method: String, allow: String },
    /// 409 `conflict`.
    #[error("{0}")]
    Conflict(String),
    /// 409 `not_ready`: what was asked for is still being made (a report's file).
    #[error("{0}")]
    NotReady(String),
    /// 409 `limit_reached`: the write would take the company past one of its limits (the
    /// message names it, e.g. `reports.scheduledRunsPerDay`).
    #[error("{0}")]
    LimitReached(String),
    /// 412 `precondition_failed`.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413 `payload_too_large`.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415 `unsupported_media_type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429 `rate_limited`, `Retry-After` seconds.
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
    /// 429 `too_many_attempts` (failed-login lockout), `Retry-After` seconds.
    #[error("{message}")]
    TooManyAttempts { message: String, retry_after: u64 },
    /// 503 `service_unavailable`: the database throttled or could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// 500 `internal_error`: logged with its cause; the client sees only the request id.
    #[error("internal error: {0}")]
    Internal(Cause),
}

/// What went wrong inside: the error that was the fault, with its own causes, so the log
/// shows the whole chain once (see [`Cause::chain`]); the client sees none of it.
#[derive(Debug)]
pub struct Cause(Box<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// A fault with no other cause than what `context` says.
    pub fn new(context: impl Into<String>) -> Cause {
        Cause(context.into().into())
    }

    /// `error`, kept with its causes.
    pub fn from_error(error: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Box::new(error))
    }

    /// The fault and every cause, outermost first, joined by ": ".
    pub fn chain(&self) -> String {
        let mut text = self.0.to_string();
        let mut next = self.0.source();
        while let Some(error) = next {
            text.push_str(": ");
            text.push_str(&error.to_string());
            next = error.source();
        }
        text
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Marks a response whose body is already Pulseboard error JSON, so the outer layer leaves
/// it alone (and renders anything else >= 400 that axum or tower-http produced).
#[derive(Clone, Copy, Debug)]
pub struct RenderedError;

/// The request id of the request being answered, so a 500 can name it.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl From<Problems> for ApiError {
    fn from(problems: Problems) -> Self {
        ApiError::problems(problems)
    }
}

impl ApiError {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(Cause::new(cause.to_string()))
    }

    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", details.len()),
        };
        ApiError::Validation { message, details }
    }

    /// The 400 naming every problem (at least one).
    pub fn problems(problems: Problems) -> Self {
        Self::validation(problems.into_vec())
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        ApiError::NotFound(format!("{what} '{id}' not found"))
    }

    /// 403 naming the permission (several, any of which would do, are joined by `|` in
    /// a route's declaration and said as "a or b").
    pub fn missing_permission(permission: &str) -> Self {
        ApiError::Forbidden(format!(
            "missing permission {}",
            permission.replace('|', " or ")
        ))
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            BadRequest(_) | InvalidJson(_) | Validation { .. } => StatusCode::BAD_REQUEST,
            UnsupportedVersion { status, .. } => *status,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Forbidden(_) => StatusCode::FORBIDDEN,
            NotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Conflict(_) | NotReady(_) | LimitReached(_) => StatusCode::CONFLICT,
            PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RateLimited { .. } | TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            BadRequest(_) => "bad_request",
            InvalidJson(_) => "invalid_json",
            Validation { .. } => "validation_failed",
            UnsupportedVersion { .. } => "unsupported_version",
            Unauthorized(_) => "unauthorized",
            Forbidden(_) => "forbidden",
            NotFound(_) => "not_found",
            MethodNotAllowed { .. } => "method_not_allowed",
            Conflict(_) => "conflict",
            NotReady(_) => "not_ready",
            LimitReached(_) => "limit_reached",
            PreconditionFailed(_) => "precondition_failed",
            PayloadTooLarge(_) => "payload_too_large",
            UnsupportedMediaType(_) => "unsupported_media_type",
            RateLimited { .. } => "rate_limited",
            TooManyAttempts { .. } => "too_many_attempts",
            Unavailable(_) => "service_unavailable",
            Internal(_) => "internal_error",
        }
    }

    /// The error JSON body; `request_id` is only shown for 500s.
    pub fn body(&self, request_id: Option<&str>) -> serde_json::Value {
        let status = self.status().as_u16();
        let message = match self {
            ApiError::Internal(_) => format!(
                "internal error; quote request id {} when reporting it",
                request_id.unwrap_or("unknown")
            ),
            other => other.to_string(),
        };
        let mut body = serde_json::json!({
            "meta": {"success": false, "status": status},
            "error": self.code(),
            "message": message,
            "status": status,
        });
        if let ApiError::Validation { details, .. } = self {
            body["details"] = serde_json::to_value(details).unwrap_or_default();
        }
        if let (ApiError::Internal(_), Some(id)) = (self, request_id) {
            body["request_id"] = serde_json::Value::String(id.to_owned());
        }
        body
    }

    /// Renders the response; the outer layer fills in the request id of a 500. Logs
    /// nothing: a 500's cause is logged once, where it becomes a response
    /// (`IntoResponse`), inside the request's span (which carries the request id).
    pub fn render(&self, request_id: Option<&str>) -> Response {
        let mut response = (
            self.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.body(request_id).to_string(),
        )
            .into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"pulseboard\", Bearer"),
                );
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, v);
                }
            }
            ApiError::RateLimited { retry_after, .. }
            | ApiError::TooManyAttempts { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response.extensions_mut().insert(RenderedError);
        if let ApiError::Internal(_) = self {
            // Let the outer layer re-render with the request id it knows.
            response.extensions_mut().insert(InternalMarker);
        }
        response
    }
}

/// A 500 rendered before the request id was known.
#[derive(Clone, Copy, Debug)]
pub struct InternalMarker;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(cause = %cause.chain(), "internal error");
        }
        self.render(None)
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::internal(format!("json: {e}"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<domain::DataError> for ApiError {
    fn from(error: domain::DataError) -> Self {
        match error {
            domain::DataError::Invalid(message) => ApiError::BadRequest(message),
            domain::DataError::InvalidJson(message) => ApiError::InvalidJson(message),
            domain::DataError::UnsupportedMediaType(message) => {
                ApiError::UnsupportedMediaType(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_answer_every_field_in_one_400_and_nothing_when_there_are_none() {
        assert_eq!(Problems::new().check(), Ok(()));
        let mut problems = Problems::new();
        problems.add("name", "is required");
        problems.add("slug", "is taken");
        let error = ApiError::from(problems.check().unwrap_err());
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error.code(), "validation_failed");
        assert_eq!(error.to_string(), "2 fields are invalid");
        let ApiError::Validation { details, .. } = error else {
            panic!("not a validation error");
        };
        let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["name", "slug"]);
    }
}
