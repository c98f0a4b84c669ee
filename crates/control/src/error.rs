use strata_catalog::CatalogError;
use strata_engine::EngineError;
use thiserror::Error;

/// What can go wrong in a control-plane operation, in terms a client can act on.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The resource does not exist, or the caller may not see it.
    #[error("{0}")]
    NotFound(String),
    /// The request names something invalid (a bad name, an unknown role, a bad IP range).
    #[error("{0}")]
    Invalid(String),
    /// The resource already exists.
    #[error("{0}")]
    Conflict(String),
    /// The request is well-formed but the resource's state forbids it.
    #[error("{0}")]
    Unprocessable(String),
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, ControlError>;

impl From<CatalogError> for ControlError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound(kind) => ControlError::NotFound(format!("{kind} not found")),
            CatalogError::AlreadyExists { .. } => ControlError::Conflict(e.to_string()),
            other => ControlError::Internal(other.to_string()),
        }
    }
}

impl From<EngineError> for ControlError {
    fn from(e: EngineError) -> Self {
        ControlError::Internal(e.to_string())
    }
}

impl From<strata_model::NameError> for ControlError {
    fn from(e: strata_model::NameError) -> Self {
        ControlError::Invalid(e.to_string())
    }
}

pub(crate) fn not_found(kind: &str, name: &str) -> ControlError {
    ControlError::NotFound(format!("{kind} '{name}' not found"))
}
