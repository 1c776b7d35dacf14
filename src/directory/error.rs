//! The core's one error type. Front ends map it to LDAP result codes (`ldap/error.rs`) and SCIM
//! errors (`scim/error.rs`), by variant only: nothing reads the message to decide.

use crate::backend::BackendError;

/// Which part of the backend relationship failed, when the gateway's own backend account is at
/// fault rather than the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The backend rejected the gateway's credentials.
    Credentials,
    /// The gateway's backend account lacks a permission.
    Permission,
    /// The backend answered something the gateway does not understand.
    Protocol,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0}")]
    NotFound(String),
    /// A uniqueness rule would be broken.
    #[error("{0}")]
    Conflict(String),
    #[error("not supported by the {backend} backend: {what}")]
    Unsupported { backend: &'static str, what: String },
    /// The values are refused: password policy, syntax, backend rules. `attribute` names the
    /// offending attribute when one is to blame.
    #[error("{message}")]
    Invalid { attribute: Option<&'static str>, message: String },
    /// The caller may not do this.
    #[error("{0}")]
    Denied(String),
    /// The old password given to prove a password change is wrong.
    #[error("{0}")]
    WrongPassword(String),
    /// Too many failed password checks for this name lately: try again later. No check was made.
    #[error("{0}")]
    Throttled(String),
    /// A precondition of the request (an ETag) no longer holds.
    #[error("{0}")]
    Precondition(String),
    /// The backend cannot be reached or failed; `timeout` when it did not answer in time.
    #[error("{message}")]
    Unavailable { message: String, timeout: bool },
    /// No usable snapshot: never loaded, or older than `max_stale`.
    #[error("directory data unavailable: {0}")]
    Stale(String),
    #[error("{message}")]
    Upstream { kind: Upstream, message: String },
    /// A request of several steps failed after some were applied.
    #[error("{failed} failed after {} were applied: {cause}", applied.join(", "))]
    Partial { applied: Vec<String>, failed: String, cause: Box<DirectoryError> },
}

impl DirectoryError {
    pub fn invalid(message: impl Into<String>) -> DirectoryError {
        DirectoryError::Invalid { attribute: None, message: message.into() }
    }
    pub fn invalid_attr(attribute: &'static str, message: impl Into<String>) -> DirectoryError {
        DirectoryError::Invalid { attribute: Some(attribute), message: message.into() }
    }

    /// The error that decides how a client is answered: a partial failure answers as its cause.
    pub fn root(&self) -> &DirectoryError {
        match self {
            DirectoryError::Partial { cause, .. } => cause.root(),
            other => other,
        }
    }

    /// Wraps `self` with the steps already applied, when there are any.
    pub fn after(self, applied: &[String], failed: &str) -> DirectoryError {
        if applied.is_empty() {
            return self;
        }
        DirectoryError::Partial { applied: applied.to_vec(), failed: failed.to_string(), cause: Box::new(self) }
    }
}

impl From<BackendError> for DirectoryError {
    fn from(e: BackendError) -> DirectoryError {
        let message = e.to_string();
        match e {
            BackendError::NotFound(_) => DirectoryError::NotFound(message),
            BackendError::Conflict(_) => DirectoryError::Conflict(message),
            BackendError::Unsupported { backend, what } => DirectoryError::Unsupported { backend, what },
            BackendError::Invalid(_) => DirectoryError::Invalid { attribute: None, message },
            BackendError::Forbidden(_) => DirectoryError::Upstream { kind: Upstream::Permission, message },
            BackendError::Auth(_) => DirectoryError::Upstream { kind: Upstream::Credentials, message },
            BackendError::Unavailable(_) => DirectoryError::Unavailable { message, timeout: false },
            BackendError::Timeout(_) => DirectoryError::Unavailable { message, timeout: true },
            BackendError::Protocol(_) => DirectoryError::Upstream { kind: Upstream::Protocol, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_failures_keep_their_cause() {
        let e = DirectoryError::from(BackendError::Timeout("dolibarr timed out".into()))
            .after(&["the description".into()], "adding a member");
        assert!(matches!(e.root(), DirectoryError::Unavailable { timeout: true, .. }));
        assert_eq!(
            e.to_string(),
            "adding a member failed after the description were applied: backend unavailable: dolibarr timed out"
        );
        let e = DirectoryError::NotFound("x".into()).after(&[], "y");
        assert!(matches!(e, DirectoryError::NotFound(_)));
    }
}
