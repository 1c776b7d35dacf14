//! Who is asking, and what they may read and change. Front ends turn their credentials (an LDAP
//! bind, a SCIM token) into a [`Caller`]; every rule about access lives here, once, and the write
//! API takes a [`Grant`] that only [`Directory::authorize`] can make, so a write nobody allowed
//! cannot be expressed.

use super::{Directory, DirectoryError, Snapshot};
use crate::config::{Access, Rights};

/// An authenticated (or anonymous) identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    /// A directory user, by backend id.
    User {
        id: String,
    },
    /// An LDAP service account or a SCIM token, with its rights.
    Service {
        name: String,
        rights: Rights,
    },
}

/// A principal in the context of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// How audit lines and denials name the caller: a bind DN, `scim:<token>`.
    pub label: String,
    /// Source address.
    pub source: String,
    /// `ldap`, `scim` or `internal`.
    pub frontend: &'static str,
}

impl Caller {
    /// The gateway itself, with every right (maintenance and tests).
    pub fn system() -> Caller {
        Caller {
            principal: Principal::Service { name: "idgate".into(), rights: Rights::all(Access::Write) },
            label: "idgate".into(),
            source: "-".into(),
            frontend: "internal",
        }
    }

    fn rights(&self) -> Option<Rights> {
        match &self.principal {
            Principal::Service { rights, .. } => Some(*rights),
            _ => None,
        }
    }

    /// The source address (`source` may carry a port), for per-address throttling.
    pub fn source_ip(&self) -> std::net::IpAddr {
        self.source
            .parse::<std::net::IpAddr>()
            .or_else(|_| self.source.parse::<std::net::SocketAddr>().map(|a| a.ip()))
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    /// The user this caller is, if it is one.
    pub fn user_id(&self) -> Option<&str> {
        match &self.principal {
            Principal::User { id } => Some(id),
            _ => None,
        }
    }
}

/// Access rules that come from the configuration.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// Anonymous clients may read users and groups.
    pub allow_anonymous: bool,
    /// Users may change their own password.
    pub users_may_change_password: bool,
    /// ... and must prove the old one to do so.
    pub self_password_change_requires_old: bool,
}

/// What a write needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    WriteUsers,
    WriteGroups,
    /// Setting a password (the target is checked by the password API).
    SetPassword,
}

/// Proof that `caller` may perform `action`. Only [`Directory::authorize`] makes one.
#[derive(Debug)]
pub struct Grant<'a> {
    pub(super) caller: &'a Caller,
    /// For `SetPassword`: the caller may set only its own password and must prove the old one.
    pub(super) self_service: Option<SelfService>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct SelfService {
    pub requires_old: bool,
}

impl Grant<'_> {
    pub fn caller(&self) -> &Caller {
        self.caller
    }
}

/// What one caller may read in one snapshot.
#[derive(Debug, Clone)]
pub struct ReadScope {
    kind: ScopeKind,
}

#[derive(Debug, Clone)]
enum ScopeKind {
    Nothing,
    Everything {
        services: bool,
    },
    Rights(Rights),
    /// A user: itself, its groups and the containers.
    Own(Option<usize>),
}

impl ReadScope {
    /// May read more than the Root DSE and the schema.
    pub fn tree(&self) -> bool {
        !matches!(self.kind, ScopeKind::Nothing)
    }
    pub fn user(&self, _snap: &Snapshot, ui: usize) -> bool {
        match &self.kind {
            ScopeKind::Nothing => false,
            ScopeKind::Everything { .. } => true,
            ScopeKind::Rights(r) => r.users >= Access::Read,
            ScopeKind::Own(me) => *me == Some(ui),
        }
    }
    pub fn group(&self, snap: &Snapshot, gi: usize) -> bool {
        match &self.kind {
            ScopeKind::Nothing => false,
            ScopeKind::Everything { .. } => true,
            ScopeKind::Rights(r) => r.groups >= Access::Read,
            ScopeKind::Own(me) => me.is_some_and(|ui| snap.is_member(gi, ui)),
        }
    }
    /// A group the directory makes up rather than reads from the backend (LDAP's primary
    /// groups), whose members are the users for which `has_member` holds.
    pub fn made_up_group(&self, has_member: impl Fn(usize) -> bool) -> bool {
        match &self.kind {
            ScopeKind::Nothing => false,
            ScopeKind::Everything { .. } => true,
            ScopeKind::Rights(r) => r.groups >= Access::Read,
            ScopeKind::Own(me) => me.is_some_and(has_member),
        }
    }
    /// The service accounts' own entries.
    pub fn services(&self) -> bool {
        matches!(self.kind, ScopeKind::Rights(_) | ScopeKind::Everything { services: true })
    }
    /// The fixed containers of the tree.
    pub fn containers(&self) -> bool {
        self.tree()
    }
}

impl Directory {
    /// What `principal` may read in `snap`.
    pub fn read_scope(&self, principal: &Principal, snap: &Snapshot) -> ReadScope {
        let kind = match principal {
            Principal::Anonymous if self.access.allow_anonymous => ScopeKind::Everything { services: false },
            Principal::Anonymous => ScopeKind::Nothing,
            Principal::User { id } => ScopeKind::Own(snap.user_index(id)),
            Principal::Service { rights, .. } => ScopeKind::Rights(*rights),
        };
        ReadScope { kind }
    }

    /// May `principal` read anything beyond the Root DSE and the schema?
    pub fn may_read_tree(&self, principal: &Principal) -> bool {
        !matches!(principal, Principal::Anonymous) || self.access.allow_anonymous
    }

    /// Checks that `caller` may perform `action`; the grant is what the write API takes.
    pub fn authorize<'a>(&self, caller: &'a Caller, action: Action) -> Result<Grant<'a>, DirectoryError> {
        let may = |pick: fn(&Rights) -> Access| caller.rights().is_some_and(|r| pick(&r) == Access::Write);
        let (allowed, self_service, what) = match action {
            Action::WriteUsers => (may(|r| r.users), None, "change users"),
            Action::WriteGroups => (may(|r| r.groups), None, "change groups"),
            Action::SetPassword if may(|r| r.users) => (true, None, ""),
            Action::SetPassword => {
                let own = caller.user_id().is_some() && self.access.users_may_change_password;
                (
                    own,
                    own.then_some(SelfService { requires_old: self.access.self_password_change_requires_old }),
                    "change passwords",
                )
            }
        };
        if allowed {
            Ok(Grant { caller, self_service })
        } else {
            Err(DirectoryError::Denied(format!("{} may not {what}", caller.label)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_with_or_without_a_port() {
        let mut c = Caller::system();
        c.source = "192.0.2.7:50123".into();
        assert_eq!(c.source_ip().to_string(), "192.0.2.7");
        c.source = "[2001:db8::1]:389".into();
        assert_eq!(c.source_ip().to_string(), "2001:db8::1");
        c.source = "198.51.100.2".into();
        assert_eq!(c.source_ip().to_string(), "198.51.100.2");
    }
}
