//! Bind: simple binds of users and service accounts, by DN or by login.

use ldap3_proto::proto::{LdapBindCred, LdapBindRequest, LdapResult, LdapResultCode as Code};

use crate::directory::{AuthOutcome, BindName};
use crate::ldap::dit::DitSettings;
use crate::ldap::dn::Dn;
use crate::ldap::error::LdapError;
use crate::ldap::session::{Identity, Session, res};

impl Session {
    pub(in crate::ldap) async fn bind(&mut self, b: &LdapBindRequest) -> LdapResult {
        // A bind resets the connection to anonymous whatever its outcome (RFC 4511 §4.2.1).
        self.identity = Identity::Anonymous;
        self.paged.clear();
        if b.version != 3 {
            return res(Code::ProtocolError, format!("LDAP version {} is not supported; use version 3", b.version));
        }
        let password = match &b.cred {
            LdapBindCred::Simple(p) => p.as_str(),
            LdapBindCred::SASL(s) => {
                return res(
                    Code::AuthMethodNotSupported,
                    format!("SASL mechanism {} is not supported; use a simple bind", s.mechanism),
                );
            }
            LdapBindCred::Unsupported => return res(Code::AuthMethodNotSupported, "only simple binds are supported"),
        };
        let name = b.dn.trim();
        match (name.is_empty(), password.is_empty()) {
            (true, true) => return res(Code::Success, ""),
            (false, true) => {
                return res(
                    Code::UnwillingToPerform,
                    "unauthenticated bind (a name without a password) is not allowed",
                );
            }
            (true, false) => return res(Code::UnwillingToPerform, "a password needs a bind name"),
            _ => {}
        }
        let peer = self.peer.ip();
        let s = self.ctx.settings().clone();
        let target = self.resolve_bind_name(name, &s);
        // Names outside the tree get the same answer, in the same time, as a wrong password.
        let normalized;
        let who = match &target {
            BindTarget::Service(n) => BindName::Service(n),
            BindTarget::User(login) => BindName::User(login),
            BindTarget::Nobody => {
                normalized =
                    Dn::parse(name).map(|d| d.normalized().to_string()).unwrap_or_else(|_| name.to_lowercase());
                BindName::Unknown(&normalized)
            }
        };
        let outcome = self.ctx.dir.authenticate(who, password, peer).await;
        let result = match outcome {
            Ok(AuthOutcome::User(u)) => {
                self.identity = Identity::User { id: u.id.clone(), dn: s.user_dn(&u.login).to_string() };
                res(Code::Success, "")
            }
            Ok(AuthOutcome::Service { name, access }) => {
                self.identity = Identity::Service { dn: s.service_dn(&name).to_string(), name, access };
                res(Code::Success, "")
            }
            Ok(AuthOutcome::Invalid) => res(Code::InvalidCredentials, "invalid credentials"),
            // Busy, not invalidCredentials: no password was checked, and clients (SSSD, PAM stacks
            // with faillock) must not count this as one more wrong password.
            Ok(AuthOutcome::Throttled(d)) => res(
                Code::Busy,
                format!("too many failed binds for this name; try again in {} s", d.as_secs_f64().ceil().max(1.0)),
            ),
            Err(e) => {
                let e = LdapError::from(e);
                let due = self.ctx.unchecked_binds.lock().unwrap_or_else(|p| p.into_inner()).check();
                if let Some(n) = due {
                    let note = crate::accept::suppressed_note(n);
                    tracing::warn!(peer = %self.peer, error = %e.message, "bind could not be checked {note}");
                }
                res(if e.code == Code::InvalidCredentials { Code::Unavailable } else { e.code }, e.message)
            }
        };
        tracing::info!(
            target: "idgate::audit",
            event = "bind",
            peer = %self.peer,
            name = ?name,
            result = ?result.code,
        );
        result
    }

    fn resolve_bind_name(&self, name: &str, s: &DitSettings) -> BindTarget {
        if name.contains('=') {
            let Ok(dn) = Dn::parse(name) else { return BindTarget::Nobody };
            let Some(rdn) = dn.rdn().map(|r| r.first().clone()) else { return BindTarget::Nobody };
            let parent = dn.parent().normalized();
            if parent == s.services.normalized() && rdn.attr == "cn" {
                return BindTarget::Service(rdn.value);
            }
            if parent == s.people.normalized() && rdn.attr == "uid" {
                return BindTarget::User(rdn.value);
            }
            return BindTarget::Nobody;
        }
        // `<login>@<bind_domain>` binds as the login; any other name with an `@` is a user name an
        // identity provider gave (SCIM userName such as jane.doe@example.com), which the core
        // resolves to its user. Hidden accounts stay unbindable either way.
        match (name.rsplit_once('@'), &self.ctx.cfg.bind_domain) {
            (Some((login, domain)), Some(d)) if d.eq_ignore_ascii_case(domain) && !login.is_empty() => {
                BindTarget::User(login.to_string())
            }
            _ => BindTarget::User(name.to_string()),
        }
    }
}

enum BindTarget {
    User(String),
    Service(String),
    Nobody,
}
