//! Extended operations other than Password Modify: Who am I? (RFC 4532), StartTLS when the
//! transport did not take it over, and the answer to anything unknown.

use ldap3_proto::proto::{LdapExtendedRequest, LdapExtendedResponse, LdapResultCode as Code};

use crate::ldap::session::{OID_PASSWORD_MODIFY, OID_STARTTLS, OID_WHOAMI, Session, res};

impl Session {
    pub(in crate::ldap) fn extended(&self, x: &LdapExtendedRequest) -> LdapExtendedResponse {
        match x.name.as_str() {
            OID_WHOAMI => LdapExtendedResponse {
                res: res(Code::Success, ""),
                name: None,
                value: Some(self.identity.authz_id().into_bytes()),
            },
            // RFC 4511 §4.14.2: a StartTLS request on a connection already protected by TLS.
            OID_STARTTLS if self.tls => LdapExtendedResponse {
                res: res(Code::OperationsError, "TLS is already established on this connection"),
                name: Some(OID_STARTTLS.into()),
                value: None,
            },
            OID_STARTTLS => LdapExtendedResponse {
                res: res(Code::Unavailable, "StartTLS is not available on this listener"),
                name: Some(OID_STARTTLS.into()),
                value: None,
            },
            OID_PASSWORD_MODIFY => LdapExtendedResponse {
                res: res(
                    Code::UnwillingToPerform,
                    "the password modify operation is not available in this idgate version",
                ),
                name: None,
                value: None,
            },
            other => LdapExtendedResponse {
                res: res(Code::ProtocolError, format!("unsupported extended operation {other}")),
                name: None,
                value: None,
            },
        }
    }
}
