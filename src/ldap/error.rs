//! The one mapping from internal errors to LDAP result codes.

use ldap3_proto::proto::LdapResultCode as Code;

use crate::backend::BackendError;
use crate::directory::DirectoryError;

/// An LDAP error result: code and the diagnostic message the client sees.
#[derive(Debug, Clone)]
pub struct LdapError {
    pub code: Code,
    pub message: String,
    pub matched_dn: String,
}

impl LdapError {
    pub fn new(code: Code, message: impl Into<String>) -> LdapError {
        LdapError { code, message: message.into(), matched_dn: String::new() }
    }
}

impl From<DirectoryError> for LdapError {
    fn from(e: DirectoryError) -> LdapError {
        match e {
            DirectoryError::Stale(m) => LdapError::new(Code::Unavailable, m),
            DirectoryError::Backend(b) => b.into(),
        }
    }
}

impl From<BackendError> for LdapError {
    fn from(e: BackendError) -> LdapError {
        let code = match &e {
            BackendError::NotFound(_) => Code::NoSuchObject,
            BackendError::Conflict(_) => Code::EntryAlreadyExists,
            BackendError::Unsupported { .. } => Code::UnwillingToPerform,
            BackendError::Invalid(_) => Code::ConstraintViolation,
            BackendError::Forbidden(_) => Code::UnwillingToPerform,
            // The gateway's own credentials failing is an outage for the client, never its fault.
            BackendError::Auth(_) | BackendError::Unavailable(_) => Code::Unavailable,
            BackendError::Protocol(_) => Code::Other,
        };
        LdapError::new(code, e.to_string())
    }
}
