//! The problems the domain reports. The platform turns them into API errors (400 with the
//! fields, 400 `invalid_json`, 415).

use serde::Serialize;

/// One field-level problem in a `validation_failed` error.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why data could not be read as a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The data is well-formed but not a usable table (a line or field is named).
    #[error("{0}")]
    Invalid(String),
    /// JSON data that is not JSON at all.
    #[error("{0}")]
    InvalidJson(String),
    /// A media type that is neither CSV nor JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
}
