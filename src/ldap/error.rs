//! The one mapping from internal errors to LDAP result codes.

use ldap3_proto::proto::LdapResultCode as Code;

use crate::directory::{DirectoryError, Upstream};

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
        let code = match e.root() {
            DirectoryError::NotFound(_) => Code::NoSuchObject,
            DirectoryError::Conflict(_) => Code::EntryAlreadyExists,
            DirectoryError::Unsupported { .. } => Code::UnwillingToPerform,
            // Proof of the old password is a step LDAP clients are told they skipped.
            DirectoryError::Invalid { attribute: Some("oldPassword"), .. } => Code::UnwillingToPerform,
            // A value the attribute's syntax refuses (a custom attribute's integer, boolean, date).
            DirectoryError::Invalid { attribute: Some("custom attribute"), .. } => Code::InvalidAttributeSyntax,
            DirectoryError::Invalid { .. } => Code::ConstraintViolation,
            DirectoryError::Denied(_) => Code::InsufficentAccessRights,
            DirectoryError::WrongPassword(_) => Code::InvalidCredentials,
            DirectoryError::Throttled(_) => Code::Busy,
            DirectoryError::Precondition(_) => Code::Other,
            // The gateway's own credentials failing is an outage for the client, never its fault.
            DirectoryError::Unavailable { .. } | DirectoryError::Stale(_) => Code::Unavailable,
            DirectoryError::Upstream { kind: Upstream::Credentials, .. } => Code::Unavailable,
            DirectoryError::Upstream { kind: Upstream::Permission, .. } => Code::UnwillingToPerform,
            DirectoryError::Upstream { kind: Upstream::Protocol, .. } => Code::Other,
            DirectoryError::Partial { .. } => Code::Other,
        };
        LdapError::new(code, e.to_string())
    }
}
