//! The directory information tree: the LDAP projection of a snapshot. Built once per snapshot
//! generation and shared by every connection, with equality indexes on the attributes clients
//! search by, so a lookup by uid, mail, entryUUID, uidNumber or member costs a hash probe.

use std::collections::HashMap;
use std::sync::Arc;

use super::attrs::{self, GROUP_CLASSES, USER_CLASSES, USER_FIELDS};
use super::dn::{Dn, escape_value};
use super::matching::format_generalized_time;
use super::schema::{self, AttrId};
use crate::config::{CustomAttribute, LdapConfig, MemberOf};
use crate::directory::Snapshot;
use crate::directory::snapshot::fold;
use crate::model::{Group, User};

/// What the tree looks like; fixed for the life of the server.
#[derive(Debug, Clone)]
pub struct DitSettings {
    pub base: Dn,
    pub people: Dn,
    pub groups: Dn,
    pub services: Dn,
    pub uid_number_base: u32,
    pub gid_number_base: u32,
    pub user_gid_number: u32,
    pub login_shell: String,
    pub home_directory: String,
    /// Names entryUUIDs: backend kind and installation.
    pub uuid_scope: String,
    pub service_names: Vec<String>,
    /// The published password-policy entry, directly under the base or in a container of its own.
    pub ppolicy: Dn,
    pub password_min_length: usize,
    pub users_may_change_password: bool,
    pub self_password_change_requires_old: bool,
    /// Whether `memberOf` lists every group reached through nesting or direct groups only.
    pub member_of: MemberOf,
    /// The custom attributes this server publishes on users (`[[directory.attributes]]`).
    pub custom: Vec<AttrId>,
    /// The group every user's gidNumber names, published unless a backend group has its name.
    pub primary_group: String,
    /// Each user has a group of its own instead (gidNumber = uidNumber).
    pub private_groups: bool,
}

/// The password-policy entry's DN: `ldap.ppolicy_dn`, or `cn=ppolicy,ou=policies,<base>`. It must
/// sit directly under the base, or one level further in a container that is not one of the others.
pub fn ppolicy_dn(cfg: &LdapConfig, base: &Dn, taken: &[&Dn]) -> Result<Dn, String> {
    let dn = match &cfg.ppolicy_dn {
        Some(text) => Dn::parse(text).map_err(|e| format!("ldap.ppolicy_dn: {e}"))?,
        None => Dn::child(&Dn::child(base, "ou", "policies"), "cn", "ppolicy"),
    };
    let parent = dn.parent();
    let fits = |p: &Dn| p.normalized() == base.normalized();
    let ok = !dn.is_root()
        && dn.rdn().is_some_and(|r| r.0.len() == 1)
        && (fits(&parent)
            || (fits(&parent.parent())
                && parent.rdn().is_some_and(|r| r.0.len() == 1)
                && taken.iter().all(|t| t.normalized() != parent.normalized())));
    if !ok {
        return Err(format!(
            "ldap.ppolicy_dn: {dn} must be directly under {base}, or in a container of its own under it"
        ));
    }
    if taken.iter().any(|t| t.normalized() == dn.normalized()) {
        return Err(format!("ldap.ppolicy_dn: {dn} is already another entry"));
    }
    Ok(dn)
}

impl DitSettings {
    pub fn new(cfg: &LdapConfig, backend_kind: &str, backend_instance: &str) -> Result<DitSettings, String> {
        let base = Dn::parse(&cfg.base_dn).map_err(|e| e.to_string())?;
        let under = |rdn: &str| -> Result<Dn, String> {
            let r = Dn::parse(rdn).map_err(|e| e.to_string())?;
            let a = r.rdn().ok_or("empty RDN")?.first();
            Ok(Dn::child(&base, &a.attr, &a.value))
        };
        let (people, groups, services) = (under(&cfg.users_rdn)?, under(&cfg.groups_rdn)?, under(&cfg.services_rdn)?);
        let ppolicy = ppolicy_dn(cfg, &base, &[&base, &people, &groups, &services])?;
        Ok(DitSettings {
            people,
            groups,
            services,
            ppolicy,
            base,
            uid_number_base: cfg.uid_number_base,
            gid_number_base: cfg.gid_number_base,
            user_gid_number: cfg.user_gid_number,
            login_shell: cfg.login_shell.clone(),
            home_directory: cfg.home_directory.clone(),
            uuid_scope: format!("{backend_kind}\u{0}{backend_instance}"),
            service_names: cfg.service_accounts.iter().map(|s| s.name.clone()).collect(),
            password_min_length: cfg.password_min_length,
            users_may_change_password: cfg.users_may_change_password,
            self_password_change_requires_old: cfg.self_password_change_requires_old,
            member_of: MemberOf::Transitive,
            custom: Vec::new(),
            primary_group: cfg.primary_group.clone(),
            private_groups: cfg.private_groups,
        })
    }

    /// Adds what the directory core decides beyond the tree: how memberOf is reported, and the
    /// custom attributes (registered with the schema here).
    pub fn with_directory(mut self, member_of: MemberOf, custom: &[CustomAttribute]) -> Result<DitSettings, String> {
        self.member_of = member_of;
        self.custom = schema::register_custom(custom)?;
        Ok(self)
    }

    /// Resolves an attribute name or OID, custom attributes of this server included.
    pub fn attr(&self, name: &str) -> Option<AttrId> {
        schema::lookup_in(name, &self.custom)
    }

    /// The object classes of user entries.
    pub fn user_classes(&self) -> Vec<String> {
        let mut v: Vec<String> = USER_CLASSES.iter().map(|c| c.to_string()).collect();
        if !self.custom.is_empty() {
            v.push(schema::CUSTOM_CLASS.into());
        }
        v
    }

    pub fn user_dn(&self, login: &str) -> Dn {
        Dn::child(&self.people, "uid", login)
    }
    pub fn group_dn(&self, name: &str) -> Dn {
        Dn::child(&self.groups, "cn", name)
    }
    pub fn service_dn(&self, name: &str) -> Dn {
        Dn::child(&self.services, "cn", name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Container,
    User(usize),
    Group(usize),
    /// A primary group idgate publishes: the shared one (`ldap.primary_group`), or with
    /// `ldap.private_groups` the user's own (its user slot).
    Primary(Option<usize>),
    Service,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub dn: String,
    pub ndn: String,
    pub parent: Option<usize>,
    pub kind: EntryKind,
    /// Attribute values in schema order of insertion; each id appears once.
    pub attrs: Vec<(AttrId, Vec<String>)>,
}

impl Entry {
    pub fn new(dn: &Dn, kind: EntryKind) -> Entry {
        Entry { dn: dn.to_string(), ndn: dn.normalized(), parent: None, kind, attrs: Vec::new() }
    }

    pub fn get(&self, id: AttrId) -> Option<&[String]> {
        self.attrs.iter().find(|(a, _)| *a == id).map(|(_, v)| v.as_slice())
    }

    pub fn set(&mut self, name: &str, values: Vec<String>) {
        if values.is_empty() {
            return;
        }
        let id = schema::id(name);
        match self.attrs.iter_mut().find(|(a, _)| *a == id) {
            Some((_, v)) => *v = values,
            None => self.attrs.push((id, values)),
        }
    }

    /// Like `set`, by id (custom attributes have no compile-time name).
    pub fn set_id(&mut self, id: AttrId, values: Vec<String>) {
        if values.is_empty() {
            return;
        }
        match self.attrs.iter_mut().find(|(a, _)| *a == id) {
            Some((_, v)) => *v = values,
            None => self.attrs.push((id, values)),
        }
    }

    pub fn set1(&mut self, name: &str, value: impl Into<String>) {
        let v = value.into();
        if !v.is_empty() {
            self.set(name, vec![v]);
        }
    }

    fn set_opt(&mut self, name: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.set1(name, v.clone());
        }
    }
}

/// The tree of one snapshot. Only the few fixed entries (base, containers, service accounts) are
/// stored, once for the life of the server; users and groups are built on demand from the
/// snapshot, and lookups are answered from the snapshot's own indexes, so a tree costs nothing to
/// make for a new snapshot.
///
/// Entry numbers: the four containers, then one per user slot and one per group slot of the
/// snapshot, then the primary groups (one per user slot with `ldap.private_groups`, else the one
/// shared group), then the service accounts and the password policy. A slot left empty by a
/// deletion is no entry, and neither is a primary group whose name a backend group has.
pub struct Dit {
    pub generation: u64,
    pub snapshot: Arc<Snapshot>,
    fixed: Arc<Fixed>,
    pub base: usize,
}

/// The entries that do not come from the backend.
struct Fixed {
    settings: DitSettings,
    /// Base, people, groups, services, then the service accounts.
    statics: Vec<Entry>,
    /// `,ou=people,<base>`: a user's DN is `uid=<escaped login>` followed by this.
    people_suffix: String,
    /// `,ou=groups,<base>`, likewise for groups.
    groups_suffix: String,
    /// entryUUID -> index in `statics`.
    by_uuid: HashMap<u128, usize>,
    /// Statics from this index on are the password policy's (its container, if any, then itself).
    policy_start: usize,
    /// entryUUID of the shared primary group.
    primary_uuid: u128,
    /// A name collision between a primary group and a backend group was logged.
    collision_logged: std::sync::atomic::AtomicBool,
}

/// A private group's entryUUID is its user's with these low (node) bits flipped: distinct, stable,
/// and found again from the user's without an index of its own.
const PRIVATE_GROUP_UUID_MASK: u128 = 0x7072_6976_6174;

const PEOPLE: usize = 1;
const GROUPS: usize = 2;
const SERVICES: usize = 3;

fn entry_uuid(scope: &str, kind: &str, what: &str) -> String {
    uuid::Uuid::from_u128(crate::directory::snapshot::entity_uuid(scope, kind, what)).to_string()
}

/// Numeric backend ids map onto the configured ranges; anything else is hashed into them.
fn posix_id(base: u32, id: &str) -> u32 {
    match id.parse::<u32>() {
        Ok(n) => base.saturating_add(n),
        Err(_) => {
            let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
            base.saturating_add((h % 1_000_000_000) as u32)
        }
    }
}

fn finish(e: &mut Entry) {
    e.set1("entryDN", e.dn.clone());
    e.set1("subschemaSubentry", "cn=schema");
}

impl Fixed {
    fn new(settings: &DitSettings) -> Fixed {
        let scope = &settings.uuid_scope;
        let container = |dn: &Dn, parent: Option<usize>| {
            let mut e = Entry::new(dn, EntryKind::Container);
            e.parent = parent;
            let rdn = dn.rdn().map(|r| r.first().clone());
            let (class, attr) = match rdn.as_ref().map(|a| a.attr.as_str()) {
                Some("dc") => ("domain", "dc"),
                Some("o") => ("organization", "o"),
                Some("cn") => ("applicationProcess", "cn"),
                _ => ("organizationalUnit", "ou"),
            };
            e.set("objectClass", vec!["top".into(), class.into()]);
            if let Some(a) = rdn {
                e.set1(attr, a.value);
            }
            e.set1("structuralObjectClass", class);
            e.set1("entryUUID", entry_uuid(scope, "dn", &dn.normalized()));
            e.set1("hasSubordinates", "TRUE");
            finish(&mut e);
            e
        };
        let mut statics = vec![
            container(&settings.base, None),
            container(&settings.people, Some(0)),
            container(&settings.groups, Some(0)),
            container(&settings.services, Some(0)),
        ];
        for name in &settings.service_names {
            let dn = settings.service_dn(name);
            let mut e = Entry::new(&dn, EntryKind::Service);
            e.parent = Some(SERVICES);
            e.set("objectClass", vec!["top".into(), "applicationProcess".into()]);
            e.set1("cn", name.clone());
            e.set1("structuralObjectClass", "applicationProcess");
            e.set1("entryUUID", entry_uuid(scope, "service", &name.to_lowercase()));
            e.set1("hasSubordinates", "FALSE");
            finish(&mut e);
            statics.push(e);
        }
        let policy_start = statics.len();
        let policy_parent = if settings.ppolicy.parent().normalized() == settings.base.normalized() {
            0
        } else {
            statics.push(container(&settings.ppolicy.parent(), Some(0)));
            policy_start
        };
        statics.push(ppolicy_entry(settings, policy_parent));
        let by_uuid = statics
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let u = e.get(schema::id("entryUUID")).and_then(|v| uuid::Uuid::parse_str(&v[0]).ok())?;
                Some((u.as_u128(), i))
            })
            .collect();
        Fixed {
            settings: settings.clone(),
            statics,
            people_suffix: format!(",{}", settings.people),
            groups_suffix: format!(",{}", settings.groups),
            by_uuid,
            policy_start,
            primary_uuid: crate::directory::snapshot::entity_uuid(
                scope,
                "primary-group",
                &fold(&settings.primary_group),
            ),
            collision_logged: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// The password-policy entry ppolicy-aware clients read (SSSD's `ldap_access_order = ppolicy`):
/// `pwdLockout: TRUE` tells them that `pwdAccountLockedTime`, which disabled users carry, locks.
fn ppolicy_entry(s: &DitSettings, parent: usize) -> Entry {
    let mut e = Entry::new(&s.ppolicy, EntryKind::Container);
    e.parent = Some(parent);
    e.set("objectClass", vec!["top".into(), "applicationProcess".into(), "pwdPolicy".into()]);
    if let Some(rdn) = s.ppolicy.rdn() {
        e.set1(&rdn.first().attr, rdn.first().value.clone());
    }
    e.set1("structuralObjectClass", "applicationProcess");
    e.set1("pwdAttribute", "userPassword");
    e.set1("pwdLockout", "TRUE");
    // Failures are slowed down, never counted to a lockout (README, Security).
    e.set1("pwdMaxFailure", "0");
    e.set1("pwdMinLength", s.password_min_length.to_string());
    e.set1("pwdMustChange", "FALSE");
    let flag = |b: bool| if b { "TRUE" } else { "FALSE" };
    e.set1("pwdAllowUserChange", flag(s.users_may_change_password));
    e.set1("pwdSafeModify", flag(s.self_password_change_requires_old));
    e.set1("entryUUID", entry_uuid(&s.uuid_scope, "dn", &s.ppolicy.normalized()));
    e.set1("hasSubordinates", "FALSE");
    finish(&mut e);
    e
}

impl Dit {
    pub fn build(settings: &DitSettings, snapshot: Arc<Snapshot>) -> Dit {
        Dit::over(Arc::new(Fixed::new(settings)), snapshot)
    }

    fn over(fixed: Arc<Fixed>, snapshot: Arc<Snapshot>) -> Dit {
        Dit { generation: snapshot.generation, snapshot, fixed, base: 0 }
    }

    fn users(&self) -> usize {
        self.snapshot.user_slots()
    }
    fn groups(&self) -> usize {
        self.snapshot.group_slots()
    }
    /// Numbers taken by primary groups.
    fn primaries(&self) -> usize {
        if self.fixed.settings.private_groups { self.users() } else { 1 }
    }

    pub fn len(&self) -> usize {
        4 + self.users() + self.groups() + self.primaries() + (self.fixed.statics.len() - 4)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn kind(&self, idx: usize) -> EntryKind {
        let (nu, ng, np) = (self.users(), self.groups(), self.primaries());
        match idx {
            i if i < 4 => EntryKind::Container,
            i if i < 4 + nu => EntryKind::User(i - 4),
            i if i < 4 + nu + ng => EntryKind::Group(i - 4 - nu),
            i if i < 4 + nu + ng + np => {
                EntryKind::Primary(self.fixed.settings.private_groups.then_some(i - 4 - nu - ng))
            }
            i if i - nu - ng - np < self.fixed.policy_start => EntryKind::Service,
            _ => EntryKind::Container,
        }
    }

    /// False for the number of a slot a deletion left empty, and for a primary group a backend
    /// group's name hides.
    pub fn exists(&self, idx: usize) -> bool {
        match self.kind(idx) {
            EntryKind::User(ui) => self.snapshot.user_at(ui).is_some(),
            EntryKind::Group(gi) => self.snapshot.group_at(gi).is_some(),
            EntryKind::Primary(owner) => self.primary_exists(owner),
            _ => idx < self.len(),
        }
    }

    fn primary_exists(&self, owner: Option<usize>) -> bool {
        let snap = &self.snapshot;
        match owner {
            None => snap.group_index_by_name(&self.fixed.settings.primary_group).is_none(),
            Some(ui) => snap.user_at(ui).is_some_and(|u| snap.group_index_by_name(&u.login).is_none()),
        }
    }

    /// The number of a primary group entry, if it exists.
    fn primary(&self, owner: Option<usize>) -> Option<usize> {
        let private = self.fixed.settings.private_groups;
        if private != owner.is_some() || !self.primary_exists(owner) {
            return None;
        }
        Some(4 + self.users() + self.groups() + owner.unwrap_or(0))
    }

    /// The primary groups whose memberUid lists the user in slot `ui`.
    fn primaries_of(&self, ui: usize) -> Option<usize> {
        self.primary(self.fixed.settings.private_groups.then_some(ui))
    }

    /// Entry numbers of users and groups by slot.
    fn user_number(&self, ui: usize) -> usize {
        4 + ui
    }
    fn group_number(&self, gi: usize) -> usize {
        4 + self.users() + gi
    }

    /// Logs, once per server, that a backend group hides a primary group of the same name.
    pub fn log_primary_collisions(&self) {
        use std::sync::atomic::Ordering;
        if self.fixed.collision_logged.load(Ordering::Relaxed) {
            return;
        }
        let s = &self.fixed.settings;
        let snap = &self.snapshot;
        let names: Vec<String> = if s.private_groups {
            snap.users()
                .filter(|(_, u)| snap.group_index_by_name(&u.login).is_some())
                .map(|(_, u)| u.login.clone())
                .collect()
        } else if snap.group_index_by_name(&s.primary_group).is_some() {
            vec![s.primary_group.clone()]
        } else {
            Vec::new()
        };
        if self.fixed.collision_logged.swap(true, Ordering::Relaxed) || names.is_empty() {
            return;
        }
        let what =
            if s.private_groups { "the private group of the user" } else { "the primary group (ldap.primary_group)" };
        tracing::warn!(
            groups = %names.join(", "),
            "a backend group has the name of {what}; the backend group is published instead of it"
        );
    }

    pub fn parent(&self, idx: usize) -> Option<usize> {
        match self.kind(idx) {
            EntryKind::Container => self.fixed.statics[self.static_index(idx)].parent.map(|p| self.static_number(p)),
            EntryKind::User(_) => Some(PEOPLE),
            EntryKind::Group(_) | EntryKind::Primary(_) => Some(GROUPS),
            EntryKind::Service => Some(SERVICES),
        }
    }

    fn static_index(&self, idx: usize) -> usize {
        if idx < 4 { idx } else { idx - self.users() - self.groups() - self.primaries() }
    }

    fn static_number(&self, i: usize) -> usize {
        if i < 4 { i } else { 4 + self.users() + self.groups() + self.primaries() + (i - 4) }
    }

    fn group_dn(&self, gi: usize) -> String {
        format!("cn={}{}", escape_value(&self.snapshot.group(gi).name), self.fixed.groups_suffix)
    }

    /// The entry, built from the snapshot when it is a user or a group. `idx` must exist.
    pub fn entry(&self, idx: usize) -> std::borrow::Cow<'_, Entry> {
        use std::borrow::Cow;
        let s = &self.fixed.settings;
        let snap = &self.snapshot;
        match self.kind(idx) {
            EntryKind::Container | EntryKind::Service => Cow::Borrowed(&self.fixed.statics[self.static_index(idx)]),
            EntryKind::User(ui) => {
                let u = snap.user(ui);
                let mut e = user_entry(s, u, self.user_dn(ui), ui, snap.user_uuid(ui));
                e.parent = Some(PEOPLE);
                if let Some(mi) = u.manager.as_deref().and_then(|m| snap.user_index(m)) {
                    e.set1("manager", self.user_dn(mi));
                }
                let groups = match s.member_of {
                    MemberOf::Transitive => snap.groups_of_transitive(ui),
                    MemberOf::Direct => snap.groups_of(ui),
                };
                e.set("memberOf", groups.into_iter().map(|gi| self.group_dn(gi)).collect());
                for &id in &s.custom {
                    let Some(a) = schema::custom(id) else { continue };
                    if let Some(vals) = u.custom.get(&a.field) {
                        e.set_id(id, vals.iter().filter_map(|v| attrs::custom_to_ldap(a.syntax, v)).collect());
                    }
                }
                finish(&mut e);
                Cow::Owned(e)
            }
            EntryKind::Group(gi) => {
                let g = snap.group(gi);
                let members = snap.members_of(gi);
                let mut e = group_entry(s, g, self.group_dn(gi), gi, snap.group_uuid(gi));
                e.parent = Some(GROUPS);
                // member and uniqueMember list users and direct member groups; memberUid users only.
                let dns: Vec<String> = members
                    .iter()
                    .map(|&ui| self.user_dn(ui))
                    .chain(snap.child_groups_of(gi).into_iter().map(|c| self.group_dn(c)))
                    .collect();
                e.set("member", dns.clone());
                e.set("uniqueMember", dns);
                e.set("memberUid", members.iter().map(|&ui| snap.user(ui).login.clone()).collect());
                let parents = match s.member_of {
                    MemberOf::Transitive => snap.ancestors_of(gi),
                    MemberOf::Direct => snap.parent_groups_of(gi),
                };
                e.set("memberOf", parents.into_iter().map(|p| self.group_dn(p)).collect());
                finish(&mut e);
                Cow::Owned(e)
            }
            EntryKind::Primary(owner) => Cow::Owned(self.primary_entry(owner)),
        }
    }

    /// A primary group's entry: built per request like a group's, never stored, so the shared
    /// group of a huge directory costs memory only while a request holds it.
    fn primary_entry(&self, owner: Option<usize>) -> Entry {
        let s = &self.fixed.settings;
        let snap = &self.snapshot;
        let mut e = Entry {
            dn: self.primary_dn(owner),
            ndn: String::new(),
            parent: Some(GROUPS),
            kind: EntryKind::Primary(owner),
            attrs: Vec::with_capacity(14),
        };
        e.set("objectClass", GROUP_CLASSES.iter().map(|c| c.to_string()).collect());
        match owner {
            None => {
                e.set1("cn", s.primary_group.clone());
                e.set1("description", "Primary group of every user");
                e.set1("gidNumber", s.user_gid_number.to_string());
                // memberUid only: member would repeat every user's DN in one value list.
                e.set("memberUid", snap.users().map(|(_, u)| u.login.clone()).collect());
                e.set1("entryUUID", uuid::Uuid::from_u128(self.fixed.primary_uuid).to_string());
            }
            Some(ui) => {
                let u = snap.user(ui);
                e.set1("cn", u.login.clone());
                e.set1("description", format!("Primary group of {}", u.login));
                e.set1("gidNumber", posix_id(s.uid_number_base, &u.id).to_string());
                let dn = self.user_dn(ui);
                e.set1("member", dn.clone());
                e.set1("uniqueMember", dn);
                e.set1("memberUid", u.login.clone());
                let uuid = snap.user_uuid(ui) ^ PRIVATE_GROUP_UUID_MASK;
                e.set1("entryUUID", uuid::Uuid::from_u128(uuid).to_string());
                let created = u.created.or(u.modified).unwrap_or(0);
                e.set1("createTimestamp", format_generalized_time(created));
                e.set1("modifyTimestamp", format_generalized_time(u.modified.unwrap_or(created)));
            }
        }
        e.set1("structuralObjectClass", "groupOfNames");
        e.set1("hasSubordinates", "FALSE");
        finish(&mut e);
        e
    }

    fn primary_dn(&self, owner: Option<usize>) -> String {
        let name = match owner {
            None => &self.fixed.settings.primary_group,
            Some(ui) => &self.snapshot.user(ui).login,
        };
        format!("cn={}{}", escape_value(name), self.fixed.groups_suffix)
    }

    fn user_dn(&self, ui: usize) -> String {
        format!("uid={}{}", escape_value(&self.snapshot.user(ui).login), self.fixed.people_suffix)
    }

    /// The DN of an entry, without building the rest of it.
    pub fn dn(&self, idx: usize) -> String {
        match self.kind(idx) {
            EntryKind::User(ui) => self.user_dn(ui),
            EntryKind::Group(gi) => self.group_dn(gi),
            EntryKind::Primary(owner) => self.primary_dn(owner),
            _ => self.fixed.statics[self.static_index(idx)].dn.clone(),
        }
    }

    pub fn find(&self, dn: &Dn) -> Option<usize> {
        let n = dn.normalized();
        if let Some(i) = self.fixed.statics.iter().position(|e| e.ndn == n) {
            return Some(self.static_number(i));
        }
        let rdn = dn.rdn()?;
        if rdn.0.len() != 1 {
            return None;
        }
        let ava = rdn.first();
        let parent = dn.parent().normalized();
        if parent == self.fixed.statics[PEOPLE].ndn && ava.attr == "uid" {
            return self.snapshot.user_index_by_login(&ava.value).map(|ui| 4 + ui);
        }
        if parent == self.fixed.statics[GROUPS].ndn && ava.attr == "cn" {
            if let Some(gi) = self.snapshot.group_index_by_name(&ava.value) {
                return Some(self.group_number(gi));
            }
            let s = &self.fixed.settings;
            return if s.private_groups {
                self.snapshot.user_index_by_login(&ava.value).and_then(|ui| self.primary(Some(ui)))
            } else if ava.value.to_lowercase() == s.primary_group.to_lowercase() {
                self.primary(None)
            } else {
                None
            };
        }
        None
    }

    /// The deepest existing entry above `dn`, for `matchedDN` in noSuchObject answers.
    pub fn matched_dn(&self, dn: &Dn) -> String {
        let mut d = dn.parent();
        while !d.is_root() {
            if let Some(i) = self.find(&d) {
                return self.dn(i);
            }
            d = d.parent();
        }
        String::new()
    }

    pub fn children(&self, idx: usize) -> Vec<usize> {
        let (nu, ng, np) = (self.users(), self.groups(), self.primaries());
        let policy = |parent: usize| -> Vec<usize> {
            (self.fixed.policy_start..self.fixed.statics.len())
                .filter(|&i| self.fixed.statics[i].parent == Some(parent))
                .map(|i| self.static_number(i))
                .collect()
        };
        match idx {
            0 => [PEOPLE, GROUPS, SERVICES].into_iter().chain(policy(0)).collect(),
            PEOPLE => self.snapshot.users().map(|(ui, _)| 4 + ui).collect(),
            GROUPS => {
                let mut out: Vec<usize> = self.snapshot.groups().map(|(gi, _)| 4 + nu + gi).collect();
                out.extend((4 + nu + ng..4 + nu + ng + np).filter(|&i| self.exists(i)));
                out
            }
            SERVICES => (4 + nu + ng + np..self.static_number(self.fixed.policy_start)).collect(),
            i if i >= 4 + nu + ng + np && self.exists(i) => policy(self.static_index(i)),
            _ => Vec::new(),
        }
    }

    /// Every existing entry, in tree order.
    pub fn all(&self) -> Vec<usize> {
        let mut out: Vec<usize> = (0..4).collect();
        out.extend(self.children(PEOPLE));
        out.extend(self.children(GROUPS));
        out.extend(self.children(SERVICES));
        out.extend((self.fixed.policy_start..self.fixed.statics.len()).map(|i| self.static_number(i)));
        out
    }

    /// True when `idx` is `ancestor` or below it.
    pub fn is_within(&self, idx: usize, ancestor: usize) -> bool {
        idx == ancestor || ancestor == 0 || self.parent(idx) == Some(ancestor)
    }

    /// Entries that may have `value` (an equality assertion) for attribute `id`: a superset, never
    /// missing a match. `None` when the attribute gives no way in and the scope must be scanned.
    pub fn lookup(&self, id: AttrId, value: &str) -> Option<Vec<usize>> {
        let snap = &self.snapshot;
        let s = &self.fixed.settings;
        let nu = self.users();
        let user = |ui: usize| 4 + ui;
        let group = |gi: usize| 4 + nu + gi;
        let v = value.trim();
        if let Some(a) = schema::custom(id) {
            if !a.indexed || !s.custom.contains(&id) {
                return None;
            }
            return Some(match attrs::custom_from_ldap(a.syntax, v) {
                Some(c) => snap.user_indexes_by_custom(&a.field, &c).into_iter().map(user).collect(),
                None => Vec::new(),
            });
        }
        let out: Vec<usize> = match schema::def(id).name {
            // These compare with caseIgnoreMatch, which folds spaces: so must the lookups.
            "uid" => snap.user_indexes_by_login_folded(v).into_iter().map(user).collect(),
            "mail" => snap.user_indexes_by_email_folded(v).into_iter().map(user).collect(),
            "cn" => {
                let mut out: Vec<usize> = snap.user_indexes_by_full_name(v).into_iter().map(user).collect();
                out.extend(snap.group_indexes_by_name_folded(v).into_iter().map(group));
                let key = fold(v);
                out.extend(
                    self.fixed
                        .statics
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.get(schema::id("cn")).is_some_and(|c| c.iter().any(|c| fold(c) == key)))
                        .map(|(i, _)| self.static_number(i)),
                );
                if s.private_groups {
                    out.extend(
                        snap.user_indexes_by_login_folded(v).into_iter().filter_map(|ui| self.primary(Some(ui))),
                    );
                } else if fold(&s.primary_group) == key {
                    out.extend(self.primary(None));
                }
                out
            }
            "entryUUID" => match uuid::Uuid::parse_str(v) {
                Ok(u) => {
                    let u = u.as_u128();
                    match snap.by_uuid(u) {
                        Some((false, ui)) => vec![user(ui)],
                        Some((true, gi)) => vec![group(gi)],
                        None => {
                            let private = match snap.by_uuid(u ^ PRIVATE_GROUP_UUID_MASK) {
                                Some((false, ui)) if s.private_groups => self.primary(Some(ui)),
                                _ => None,
                            };
                            let shared = (u == self.fixed.primary_uuid).then(|| self.primary(None)).flatten();
                            let fixed = self.fixed.by_uuid.get(&u).map(|&i| self.static_number(i));
                            private.into_iter().chain(shared).chain(fixed).collect()
                        }
                    }
                }
                Err(_) => Vec::new(),
            },
            "uidNumber" => {
                let Ok(n) = v.parse::<u32>() else { return Some(Vec::new()) };
                match n.checked_sub(s.uid_number_base) {
                    Some(id) => snap.user_index(&id.to_string()).map(user).into_iter().collect(),
                    None => Vec::new(),
                }
            }
            "gidNumber" => {
                let Ok(n) = v.parse::<u32>() else { return Some(Vec::new()) };
                let mut out = Vec::new();
                if s.private_groups {
                    // A user's gidNumber is its uidNumber, as is its own group's.
                    if let Some(ui) = n.checked_sub(s.uid_number_base).and_then(|id| snap.user_index(&id.to_string())) {
                        out.push(user(ui));
                        out.extend(self.primary(Some(ui)));
                    }
                } else if n == s.user_gid_number {
                    out.extend(self.children(PEOPLE));
                    out.extend(self.primary(None));
                }
                if let Some(id) = n.checked_sub(s.gid_number_base) {
                    out.extend(snap.group_index(&id.to_string()).map(group));
                }
                out
            }
            "memberUid" => {
                let users = snap.user_indexes_by_login_folded(v);
                let mut out: Vec<usize> = users.iter().flat_map(|&ui| snap.groups_of(ui)).map(group).collect();
                out.extend(users.iter().filter_map(|&ui| self.primaries_of(ui)));
                out
            }
            // Both list direct members: users, and member groups.
            "member" | "uniqueMember" => match Dn::parse(v).ok().and_then(|d| self.find(&d)).map(|i| self.kind(i)) {
                Some(EntryKind::User(ui)) => {
                    let mut out: Vec<usize> = snap.groups_of(ui).into_iter().map(group).collect();
                    if s.private_groups {
                        out.extend(self.primary(Some(ui)));
                    }
                    out
                }
                Some(EntryKind::Group(gi)) => snap.parent_groups_of(gi).into_iter().map(group).collect(),
                _ => Vec::new(),
            },
            "memberOf" => match Dn::parse(v).ok().and_then(|d| self.find(&d)).map(|i| self.kind(i)) {
                Some(EntryKind::Group(gi)) => {
                    let (users, groups) = match s.member_of {
                        MemberOf::Transitive => (snap.members_transitive(gi), snap.descendants_of(gi)),
                        MemberOf::Direct => (snap.members_of(gi), snap.child_groups_of(gi)),
                    };
                    users.into_iter().map(user).chain(groups.into_iter().map(group)).collect()
                }
                _ => Vec::new(),
            },
            "entryDN" => Dn::parse(v).ok().and_then(|d| self.find(&d)).into_iter().collect(),
            "objectClass" => {
                let is = |classes: &[&str]| classes.iter().any(|c| c.eq_ignore_ascii_case(v));
                if v.eq_ignore_ascii_case("top") {
                    return None;
                } else if is(USER_CLASSES) || (!s.custom.is_empty() && is(&[schema::CUSTOM_CLASS])) {
                    self.children(PEOPLE)
                } else if is(GROUP_CLASSES) {
                    self.children(GROUPS)
                } else if is(&["domain", "organization", "organizationalUnit", "applicationProcess", "pwdPolicy"]) {
                    (0..self.fixed.statics.len()).map(|i| self.static_number(i)).collect()
                } else {
                    Vec::new()
                }
            }
            _ => return None,
        };
        let mut out = out;
        out.sort_unstable();
        out.dedup();
        Some(out)
    }

    /// Entries matching `id:1.2.840.113556.1.4.1941:=value` (LDAP_MATCHING_RULE_IN_CHAIN),
    /// exactly: for memberOf, the users and groups inside the group `value` at any depth; for
    /// member/uniqueMember, the groups that contain the user or group `value` at any depth. Walks
    /// are cycle-safe. `None` for other attributes, where the rule is plain equality.
    pub fn in_chain(&self, id: AttrId, value: &str) -> Option<Vec<usize>> {
        let snap = &self.snapshot;
        let target = Dn::parse(value.trim()).ok().and_then(|d| self.find(&d)).map(|i| self.kind(i));
        let mut out: Vec<usize> = match schema::def(id).name {
            "memberOf" => match target {
                Some(EntryKind::Group(gi)) => snap
                    .members_transitive(gi)
                    .into_iter()
                    .map(|ui| self.user_number(ui))
                    .chain(snap.descendants_of(gi).into_iter().map(|g| self.group_number(g)))
                    .collect(),
                _ => Vec::new(),
            },
            "member" | "uniqueMember" => match target {
                Some(EntryKind::User(ui)) => {
                    let mut out: Vec<usize> =
                        snap.groups_of_transitive(ui).into_iter().map(|g| self.group_number(g)).collect();
                    if self.fixed.settings.private_groups {
                        out.extend(self.primary(Some(ui)));
                    }
                    out
                }
                Some(EntryKind::Group(gi)) => snap.ancestors_of(gi).into_iter().map(|g| self.group_number(g)).collect(),
                _ => Vec::new(),
            },
            _ => return None,
        };
        out.sort_unstable();
        out.dedup();
        Some(out)
    }
}

/// A user's entry. Built per request, so its `ndn` stays empty: lookups go through the snapshot.
fn user_entry(s: &DitSettings, u: &User, dn: String, ui: usize, uuid: u128) -> Entry {
    let mut e =
        Entry { dn, ndn: String::new(), parent: None, kind: EntryKind::User(ui), attrs: Vec::with_capacity(28) };
    let full = u.full_name();
    e.set("objectClass", s.user_classes());
    e.set1("uid", u.login.clone());
    e.set1("cn", full.clone());
    for f in USER_FIELDS {
        let v = (f.get)(u);
        match f.name {
            // person requires sn: a user without a last name shows the login.
            "sn" if v.trim().is_empty() => e.set1("sn", u.login.clone()),
            _ => e.set1(f.name, v),
        }
        // displayName is derived like cn; entries list it right after givenName.
        if f.name == "givenName" {
            e.set1("displayName", full.clone());
        }
    }
    let uid_number = posix_id(s.uid_number_base, &u.id);
    e.set1("uidNumber", uid_number.to_string());
    e.set1("gidNumber", if s.private_groups { uid_number } else { s.user_gid_number }.to_string());
    e.set1("homeDirectory", s.home_directory.replace("{login}", &u.login));
    e.set1("loginShell", s.login_shell.clone());
    e.set1("gecos", full);
    e.set1("entryUUID", uuid::Uuid::from_u128(uuid).to_string());
    let created = u.created.or(u.modified).unwrap_or(0);
    e.set1("createTimestamp", format_generalized_time(created));
    e.set1("modifyTimestamp", format_generalized_time(u.modified.unwrap_or(created)));
    e.set1("structuralObjectClass", "inetOrgPerson");
    e.set1("hasSubordinates", "FALSE");
    if !u.active {
        // ppolicy's value for "locked until an administrator unlocks it".
        e.set1("pwdAccountLockedTime", "000001010000Z");
    }
    e
}

/// A group's entry; like a user's, built per request.
fn group_entry(s: &DitSettings, g: &Group, dn: String, gi: usize, uuid: u128) -> Entry {
    let mut e =
        Entry { dn, ndn: String::new(), parent: None, kind: EntryKind::Group(gi), attrs: Vec::with_capacity(16) };
    e.set("objectClass", GROUP_CLASSES.iter().map(|c| c.to_string()).collect());
    e.set1("cn", g.name.clone());
    e.set_opt("description", &g.description);
    e.set1("gidNumber", posix_id(s.gid_number_base, &g.id).to_string());
    e.set1("entryUUID", uuid::Uuid::from_u128(uuid).to_string());
    let created = g.created.or(g.modified).unwrap_or(0);
    e.set1("createTimestamp", format_generalized_time(created));
    e.set1("modifyTimestamp", format_generalized_time(g.modified.unwrap_or(created)));
    e.set1("structuralObjectClass", "groupOfNames");
    e.set1("hasSubordinates", "FALSE");
    e
}

/// Makes the tree of any snapshot: the fixed entries are built once, so this costs nothing per
/// snapshot and a write never makes the next read pay for a rebuild.
pub struct DitCache {
    fixed: Arc<Fixed>,
}

impl DitCache {
    pub fn new(settings: DitSettings) -> DitCache {
        DitCache { fixed: Arc::new(Fixed::new(&settings)) }
    }

    pub fn settings(&self) -> &DitSettings {
        &self.fixed.settings
    }

    pub fn get(&self, snapshot: Arc<Snapshot>) -> Arc<Dit> {
        let dit = Dit::over(self.fixed.clone(), snapshot);
        dit.log_primary_collisions();
        Arc::new(dit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    pub(crate) fn sample() -> (DitSettings, Arc<Snapshot>) {
        let cfg = Config::parse("[backend]\nkind=\"memory\"\n").unwrap();
        let s = DitSettings::new(&cfg.ldap, "memory", "test").unwrap();
        let users = vec![
            Arc::new(User {
                id: "1".into(),
                login: "alice".into(),
                first_name: "Alice".into(),
                last_name: "Liddell".into(),
                email: "alice@example.com".into(),
                locale: Some("en_GB".into()),
                active: true,
                created: Some(0),
                modified: Some(86_400),
                ..Default::default()
            }),
            Arc::new(User { id: "2".into(), login: "bob".into(), active: false, ..Default::default() }),
        ];
        let groups = vec![Arc::new(Group {
            id: "1".into(),
            name: "devs".into(),
            members: vec!["1".into()],
            ..Default::default()
        })];
        (s, Arc::new(Snapshot::build("memory\u{0}test", 7, users, groups)))
    }

    /// Found by fuzzing: the indexes compared names lower-cased but not space-folded, so a
    /// search for `(cn=Sales  Team)` matched the group on a scan yet missed it through the index.
    #[test]
    fn lookups_fold_spaces_as_equality_does() {
        use crate::ldap::filter::Filter;
        let (s, _) = sample();
        let users = vec![Arc::new(User {
            id: "1".into(),
            login: "Mary  Ann".into(),
            email: "m@x".into(),
            ..Default::default()
        })];
        let groups = vec![Arc::new(Group {
            id: "1".into(),
            name: "Sales Team".into(),
            members: vec!["1".into()],
            ..Default::default()
        })];
        let dit = Dit::build(&s, Arc::new(Snapshot::build("memory\u{0}test", 1, users, groups)));
        for (attr, value) in [
            ("cn", "sales   TEAM"),
            ("cn", " Sales Team "),
            ("uid", "mary ann"),
            ("memberUid", "MARY\tANN"),
            ("mail", " M@X "),
        ] {
            let id = schema::id(attr);
            let matching: Vec<usize> =
                dit.all().into_iter().filter(|&i| Filter::equality(id, value.into()).matches(&dit.entry(i))).collect();
            assert!(!matching.is_empty(), "{attr}={value:?} matches an entry");
            assert_eq!(dit.lookup(id, value), Some(matching), "{attr}={value:?}");
        }
        // Exact lookups (DNs, binds, SCIM) stay exact apart from case.
        assert_eq!(dit.snapshot.user_index_by_login("mary ann"), None);
        assert_eq!(dit.snapshot.user_index_by_login("MARY  ANN"), Some(0));
        assert_eq!(dit.snapshot.group_index_by_name("sales  team"), None);
    }

    #[test]
    fn entries_carry_the_mapped_attributes() {
        let (s, snap) = sample();
        let dit = Dit::build(&s, snap);
        let alice = dit.find(&Dn::parse("UID=Alice,ou=people,dc=example,dc=com").unwrap()).unwrap();
        let e = dit.entry(alice);
        let get = |n: &str| e.get(schema::id(n)).map(|v| v.to_vec());
        assert_eq!(get("cn").unwrap(), vec!["Alice Liddell"]);
        assert_eq!(get("uidNumber").unwrap(), vec!["10001"]);
        assert_eq!(get("memberOf").unwrap(), vec!["cn=devs,ou=groups,dc=example,dc=com"]);
        assert_eq!(get("preferredLanguage").unwrap(), vec!["en-GB"]);
        assert_eq!(get("modifyTimestamp").unwrap(), vec!["19700102000000Z"]);
        assert!(get("pwdAccountLockedTime").is_none());
        let bob = dit.entry(dit.find(&Dn::parse("uid=bob,ou=people,dc=example,dc=com").unwrap()).unwrap());
        assert_eq!(bob.get(schema::id("sn")).unwrap(), ["bob"]);
        assert!(bob.get(schema::id("pwdAccountLockedTime")).is_some());
        let g = dit.entry(dit.find(&Dn::parse("cn=devs,ou=groups,dc=example,dc=com").unwrap()).unwrap());
        assert_eq!(g.get(schema::id("memberUid")).unwrap(), ["alice"]);
    }

    #[test]
    fn indexes_and_hierarchy() {
        let (s, snap) = sample();
        let dit = Dit::build(&s, snap);
        let hits = dit.lookup(schema::id("uid"), "alice").unwrap();
        assert_eq!(hits.len(), 1);
        assert!(dit.is_within(hits[0], dit.base));
        let member = dit.lookup(schema::id("member"), "uid=alice,ou=people,dc=example,dc=com").unwrap();
        assert_eq!(member.len(), 1);
        assert!(dit.lookup(schema::id("givenName"), "alice").is_none(), "not indexed");
        assert_eq!(
            dit.matched_dn(&Dn::parse("uid=x,ou=people,dc=example,dc=com").unwrap()),
            "ou=people,dc=example,dc=com"
        );
    }

    /// The lookups stand in for indexes, so they must never miss: every value of every entry,
    /// looked up, finds that entry.
    #[test]
    fn lookups_never_miss_an_entry() {
        let (s, snap) = sample();
        let dit = Dit::build(&s, snap);
        let mut checked = 0;
        for i in 0..dit.len() {
            let e = dit.entry(i);
            for (id, vals) in &e.attrs {
                for v in vals {
                    if let Some(hits) = dit.lookup(*id, v) {
                        assert!(hits.contains(&i), "{}={v} misses {}", schema::def(*id).name, e.dn);
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 30, "{checked}");
        // and they narrow: a user's uid finds only that user
        assert_eq!(dit.lookup(schema::id("uid"), "ALICE").unwrap().len(), 1);
        assert_eq!(dit.lookup(schema::id("memberUid"), "alice").unwrap().len(), 2, "devs and the primary group");
        assert!(dit.lookup(schema::id("uidNumber"), "99999").unwrap().is_empty());
    }

    /// A custom attribute `name` stored in field `field`.
    fn custom_attr(
        name: &str,
        field: &str,
        syntax: crate::config::AttributeSyntax,
        multi: bool,
        indexed: bool,
    ) -> CustomAttribute {
        CustomAttribute {
            name: name.into(),
            field: field.into(),
            scim_name: None,
            syntax,
            multi,
            separator: ",".into(),
            writable: true,
            indexed,
        }
    }

    /// Nested groups with a cycle, managers (one dangling), custom values of every syntax.
    fn nested() -> Arc<Snapshot> {
        let user = |id: &str, login: &str, manager: Option<&str>, custom: &[(&str, &[&str])]| {
            Arc::new(User {
                id: id.into(),
                login: login.into(),
                first_name: login.to_uppercase(),
                email: format!("{login}@x"),
                manager: manager.map(String::from),
                custom: custom
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                    .collect(),
                active: true,
                ..Default::default()
            })
        };
        let users = vec![
            user("1", "alice", None, &[("f_cc", &["CC-100"]), ("f_level", &["3"]), ("f_vip", &["true"])]),
            user("2", "bob", Some("1"), &[("f_cc", &["cc-100"]), ("f_since", &["1709210096"])]),
            user("3", "carol", Some("99"), &[("f_tags", &["a b", "c"]), ("f_level", &["-7"])]),
            user("4", "dave", Some("1"), &[("f_vip", &["false"])]),
        ];
        let group = |id: &str, name: &str, members: &[&str], groups: &[&str]| {
            Arc::new(Group {
                id: id.into(),
                name: name.into(),
                members: members.iter().map(|s| s.to_string()).collect(),
                member_groups: groups.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
        };
        // engineering ⊃ developers ⊃ core ⊃ engineering (a cycle); staff ⊃ engineering;
        // `carol` is also a backend group's name.
        let groups = vec![
            group("1", "engineering", &["4"], &["2"]),
            group("2", "developers", &["1", "2"], &["3"]),
            group("3", "core", &[], &["1"]),
            group("4", "staff", &["3"], &["1"]),
            group("5", "carol", &["3"], &[]),
            group("6", "lonely", &[], &[]),
        ];
        Arc::new(Snapshot::build("memory\u{0}test", 3, users, groups))
    }

    fn variants() -> Vec<(String, DitSettings)> {
        use crate::config::AttributeSyntax as S;
        let customs = vec![
            custom_attr("costCenter", "f_cc", S::String, false, true),
            custom_attr("level", "f_level", S::Integer, false, true),
            custom_attr("vip", "f_vip", S::Boolean, false, true),
            custom_attr("since", "f_since", S::Date, false, false),
            custom_attr("tags", "f_tags", S::String, true, true),
        ];
        let (base, _) = sample();
        let mut out = Vec::new();
        for member_of in [MemberOf::Transitive, MemberOf::Direct] {
            for private in [false, true] {
                let mut s = base.clone().with_directory(member_of, &customs).unwrap();
                s.private_groups = private;
                out.push((format!("{member_of:?} private={private}"), s));
            }
        }
        out
    }

    /// The lookups (and the in-chain sets) on nested data, in every mode: every value of every
    /// entry finds that entry, a lookup never misses what a scan matches, and in-chain is exact.
    #[test]
    fn lookups_never_miss_on_nested_data() {
        use crate::ldap::filter::Filter;
        for (label, s) in variants() {
            let dit = Dit::build(&s, nested());
            let all = dit.all();
            let entries: Vec<(usize, Entry)> = all.iter().map(|&i| (i, dit.entry(i).into_owned())).collect();
            let mut checked = 0;
            for (i, e) in &entries {
                for (id, vals) in &e.attrs {
                    for v in vals {
                        let Some(hits) = dit.lookup(*id, v) else { continue };
                        assert!(hits.contains(i), "{label}: {}={v} misses {}", schema::def(*id).name, e.dn);
                        let f = Filter::equality(*id, v.clone());
                        for (j, other) in &entries {
                            if f.matches(other) {
                                assert!(hits.contains(j), "{label}: {}={v} misses {}", schema::def(*id).name, other.dn);
                            }
                        }
                        checked += 1;
                    }
                }
            }
            assert!(checked > 100, "{label}: {checked}");
            // in-chain: the brute-force closure over the entries' own member values
            let dn_of = |i: usize| dit.dn(i).to_lowercase();
            for (gi, g) in entries.iter().filter(|(_, e)| matches!(e.kind, EntryKind::Group(_))) {
                let mut inside = std::collections::BTreeSet::new();
                let mut todo = vec![*gi];
                while let Some(x) = todo.pop() {
                    let members = dit.entry(x).get(schema::id("member")).map(|m| m.to_vec()).unwrap_or_default();
                    for m in members {
                        let j = dit.find(&Dn::parse(&m).unwrap()).unwrap();
                        if inside.insert(j) && matches!(dit.kind(j), EntryKind::Group(_)) {
                            todo.push(j);
                        }
                    }
                }
                let chain = dit.in_chain(schema::id("memberOf"), &g.dn).unwrap();
                assert_eq!(chain, inside.iter().copied().collect::<Vec<_>>(), "{label}: in-chain of {}", g.dn);
                // and member:in-chain:=<x> finds exactly the groups x is inside of
                for &x in &inside {
                    let holders = dit.in_chain(schema::id("member"), &dn_of(x)).unwrap();
                    assert!(holders.contains(gi), "{label}: {} is inside {}", dit.dn(x), g.dn);
                }
            }
            assert!(dit.in_chain(schema::id("uid"), "x").is_none());
        }
    }

    #[test]
    fn nested_members_managers_and_custom_values_on_entries() {
        let (_, s) = variants().into_iter().next().unwrap();
        let dit = Dit::build(&s, nested());
        let get = |dn: &str, a: &str| -> Vec<String> {
            let i = dit.find(&Dn::parse(dn).unwrap()).unwrap_or_else(|| panic!("{dn}"));
            let id = s.attr(a).unwrap();
            dit.entry(i).get(id).map(|v| v.to_vec()).unwrap_or_default()
        };
        let (p, g) = ("ou=people,dc=example,dc=com", "ou=groups,dc=example,dc=com");
        let bob = format!("uid=bob,{p}");
        let mut bob_groups = get(&bob, "memberOf");
        bob_groups.sort();
        let want: Vec<String> =
            ["core", "developers", "engineering", "staff"].iter().map(|n| format!("cn={n},{g}")).collect();
        assert_eq!(bob_groups, want, "transitive memberOf, each group once through the cycle");
        assert_eq!(get(&bob, "manager"), vec![format!("uid=alice,{p}")]);
        assert!(get(&format!("uid=carol,{p}"), "manager").is_empty(), "a dangling manager publishes nothing");
        let eng_members = get(&format!("cn=engineering,{g}"), "member");
        assert_eq!(eng_members, vec![format!("uid=dave,{p}"), format!("cn=developers,{g}")]);
        assert_eq!(get(&format!("cn=engineering,{g}"), "memberUid"), vec!["dave"], "memberUid: users only");
        assert_eq!(get(&format!("cn=engineering,{g}"), "uniqueMember"), eng_members);
        assert_eq!(get(&format!("uid=alice,{p}"), "costCenter"), vec!["CC-100"]);
        assert_eq!(get(&format!("uid=alice,{p}"), "level"), vec!["3"]);
        assert_eq!(get(&format!("uid=alice,{p}"), "vip"), vec!["TRUE"]);
        assert_eq!(get(&format!("uid=bob,{p}"), "since"), vec!["20240229123456Z"]);
        assert_eq!(get(&format!("uid=carol,{p}"), "tags"), vec!["a b", "c"]);
        assert!(get(&bob, "objectClass").contains(&"idgateUser".to_string()));
        // direct mode: bob's memberOf is developers only
        let (_, direct) = variants().into_iter().nth(2).unwrap();
        assert_eq!(direct.member_of, MemberOf::Direct);
        let d = Dit::build(&direct, nested());
        let e = d.entry(d.find(&Dn::parse(&bob).unwrap()).unwrap());
        assert_eq!(e.get(schema::id("memberOf")).unwrap(), [format!("cn=developers,{g}")]);
        // a custom equality answers from the index; a non-indexed one scans
        let hits = dit.lookup(s.attr("costCenter").unwrap(), "cc-100").unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(dit.lookup(s.attr("vip").unwrap(), "TRUE").unwrap().len(), 1);
        assert_eq!(dit.lookup(s.attr("level").unwrap(), "+3").unwrap().len(), 1);
        assert!(dit.lookup(s.attr("level").unwrap(), "three").unwrap().is_empty());
        assert!(dit.lookup(s.attr("since").unwrap(), "20240229123456Z").is_none(), "not indexed");
    }

    #[test]
    fn primary_groups_shared_and_private() {
        let (_, shared) = variants().into_iter().next().unwrap();
        let dit = Dit::build(&shared, nested());
        let users_dn = "cn=users,ou=groups,dc=example,dc=com";
        let i = dit.find(&Dn::parse(users_dn).unwrap()).expect("the shared primary group");
        let e = dit.entry(i);
        assert_eq!(e.get(schema::id("gidNumber")).unwrap(), ["10000"]);
        assert_eq!(e.get(schema::id("memberUid")).unwrap(), ["alice", "bob", "carol", "dave"]);
        assert!(e.get(schema::id("member")).is_none(), "memberUid only, whatever the directory's size");
        assert!(dit.children(GROUPS).contains(&i));
        assert!(dit.all().contains(&i));
        assert_eq!(dit.parent(i), Some(GROUPS));
        assert!(dit.lookup(schema::id("gidNumber"), "10000").unwrap().contains(&i));
        assert!(dit.lookup(schema::id("cn"), "USERS").unwrap().contains(&i));
        // entry numbers after the primary group still resolve to the same static entries
        let services = dit.children(SERVICES);
        assert!(services.iter().all(|&x| dit.kind(x) == EntryKind::Service && dit.exists(x)));
        assert_eq!(dit.all().len(), 4 + 4 + 6 + 1 + services.len() + 2, "and the policy with its container");

        let (_, private) = variants().into_iter().nth(1).unwrap();
        assert!(private.private_groups);
        let dit = Dit::build(&private, nested());
        assert!(dit.find(&Dn::parse(users_dn).unwrap()).is_none());
        let bob = dit.find(&Dn::parse("cn=bob,ou=groups,dc=example,dc=com").unwrap()).expect("bob's own group");
        let e = dit.entry(bob);
        assert_eq!(e.get(schema::id("gidNumber")).unwrap(), ["10002"]);
        assert_eq!(e.get(schema::id("memberUid")).unwrap(), ["bob"]);
        let bob_user = dit.entry(dit.find(&Dn::parse("uid=bob,ou=people,dc=example,dc=com").unwrap()).unwrap());
        assert_eq!(bob_user.get(schema::id("gidNumber")).unwrap(), ["10002"], "gidNumber = uidNumber");
        let by_gid = dit.lookup(schema::id("gidNumber"), "10002").unwrap();
        assert!(by_gid.contains(&bob) && by_gid.len() == 2, "the user and its group");
        // carol's name is a backend group's: the backend group wins
        let carol = dit.find(&Dn::parse("cn=carol,ou=groups,dc=example,dc=com").unwrap()).unwrap();
        assert!(matches!(dit.kind(carol), EntryKind::Group(_)));
        let carol_private = dit.all().into_iter().filter(|&x| dit.kind(x) == EntryKind::Primary(Some(2))).count();
        assert_eq!(carol_private, 0, "not published");
        let uuid = e.get(schema::id("entryUUID")).unwrap()[0].clone();
        assert_eq!(dit.lookup(schema::id("entryUUID"), &uuid).unwrap(), vec![bob]);
    }

    #[test]
    fn entry_uuids_are_stable_and_distinct() {
        let (s, snap) = sample();
        let a = Dit::build(&s, snap.clone());
        let b = Dit::build(&s, snap);
        let id = schema::id("entryUUID");
        let ua: Vec<_> = (0..a.len()).map(|i| a.entry(i).get(id).unwrap()[0].clone()).collect();
        let ub: Vec<_> = (0..b.len()).map(|i| b.entry(i).get(id).unwrap()[0].clone()).collect();
        assert_eq!(ua, ub);
        let set: std::collections::HashSet<_> = ua.iter().collect();
        assert_eq!(set.len(), ua.len());
    }
}
