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

/// What is wrong with a request's fields, collected so that one 400 names them all (the
/// platform turns it into a `validation_failed` error with every field in `details`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that `field` is wrong, and why.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn push(&mut self, problem: FieldError) {
        self.0.push(problem);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, FieldError> {
        self.0.iter()
    }

    /// The first problem noted, if any.
    pub fn first(&self) -> Option<&FieldError> {
        self.0.first()
    }

    /// `Ok` when nothing is wrong; otherwise the problems, to answer.
    pub fn check(self) -> Result<(), Problems> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

impl Extend<FieldError> for Problems {
    fn extend<I: IntoIterator<Item = FieldError>>(&mut self, problems: I) {
        self.0.extend(problems);
    }
}

impl FromIterator<FieldError> for Problems {
    fn from_iter<I: IntoIterator<Item = FieldError>>(problems: I) -> Self {
        Problems(problems.into_iter().collect())
    }
}

impl IntoIterator for Problems {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
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
