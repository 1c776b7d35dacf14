//! The directory information tree: the LDAP projection of a snapshot. Built once per snapshot
//! generation and shared by every connection, with equality indexes on the attributes clients
//! search by, so a lookup by uid, mail, entryUUID, uidNumber or member costs a hash probe.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::dn::Dn;
use super::matching::{format_generalized_time, index_key};
use super::schema::{self, AttrId};
use crate::config::LdapConfig;
use crate::directory::Snapshot;
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
}

impl DitSettings {
    pub fn new(cfg: &LdapConfig, backend_kind: &str, backend_instance: &str) -> Result<DitSettings, String> {
        let base = Dn::parse(&cfg.base_dn).map_err(|e| e.to_string())?;
        let under = |rdn: &str| -> Result<Dn, String> {
            let r = Dn::parse(rdn).map_err(|e| e.to_string())?;
            let a = r.rdn().ok_or("empty RDN")?.first();
            Ok(Dn::child(&base, &a.attr, &a.value))
        };
        Ok(DitSettings {
            people: under(&cfg.users_rdn)?,
            groups: under(&cfg.groups_rdn)?,
            services: under(&cfg.services_rdn)?,
            base,
            uid_number_base: cfg.uid_number_base,
            gid_number_base: cfg.gid_number_base,
            user_gid_number: cfg.user_gid_number,
            login_shell: cfg.login_shell.clone(),
            home_directory: cfg.home_directory.clone(),
            uuid_scope: format!("{backend_kind}\u{0}{backend_instance}"),
            service_names: cfg.service_accounts.iter().map(|s| s.name.clone()).collect(),
        })
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Container,
    User(usize),
    Group(usize),
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

/// The attributes indexed for equality.
const INDEXED: &[&str] = &[
    "objectClass",
    "uid",
    "cn",
    "mail",
    "entryUUID",
    "uidNumber",
    "gidNumber",
    "memberUid",
    "member",
    "uniqueMember",
    "memberOf",
];

pub struct Dit {
    pub generation: u64,
    pub snapshot: Arc<Snapshot>,
    pub entries: Vec<Entry>,
    by_ndn: HashMap<String, usize>,
    children: Vec<Vec<usize>>,
    /// Per attribute id, normalised value -> entries (ascending).
    index: HashMap<AttrId, HashMap<String, Vec<usize>>>,
    pub base: usize,
}

fn entry_uuid(scope: &str, what: &str) -> String {
    const NS: uuid::Uuid = uuid::uuid!("6f1c2a8e-3d4b-5e6f-8a9b-0c1d2e3f4a5b");
    uuid::Uuid::new_v5(&NS, format!("{scope}\u{0}{what}").as_bytes()).to_string()
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

/// RFC 4646 language tags use hyphens; ERPs often store `fr_FR`.
fn language_tag(locale: &str) -> String {
    locale.replace('_', "-")
}

impl Dit {
    pub fn build(settings: &DitSettings, snapshot: Arc<Snapshot>) -> Dit {
        let mut entries: Vec<Entry> = Vec::with_capacity(snapshot.users().len() + snapshot.groups().len() + 8);
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
            e.set1("entryUUID", entry_uuid(scope, &format!("dn\u{0}{}", dn.normalized())));
            e.set1("hasSubordinates", "TRUE");
            e
        };
        entries.push(container(&settings.base, None));
        let base = 0;
        let people = entries.len();
        entries.push(container(&settings.people, Some(base)));
        let groups_ou = entries.len();
        entries.push(container(&settings.groups, Some(base)));
        let services_ou = entries.len();
        entries.push(container(&settings.services, Some(base)));

        let group_dns: Vec<String> = snapshot.groups().iter().map(|g| settings.group_dn(&g.name).to_string()).collect();
        let user_dns: Vec<String> = snapshot.users().iter().map(|u| settings.user_dn(&u.login).to_string()).collect();

        for (ui, u) in snapshot.users().iter().enumerate() {
            let mut e = user_entry(settings, u, &user_dns[ui], ui);
            e.parent = Some(people);
            let member_of: Vec<String> = snapshot.groups_of(ui).iter().map(|&gi| group_dns[gi].clone()).collect();
            e.set("memberOf", member_of);
            entries.push(e);
        }
        for (gi, g) in snapshot.groups().iter().enumerate() {
            let members = snapshot.members_of(gi);
            let mut e = group_entry(settings, g, &group_dns[gi], gi);
            e.parent = Some(groups_ou);
            let dns: Vec<String> = members.iter().map(|&ui| user_dns[ui].clone()).collect();
            e.set("member", dns.clone());
            e.set("uniqueMember", dns);
            e.set("memberUid", members.iter().map(|&ui| snapshot.user(ui).login.clone()).collect());
            entries.push(e);
        }
        for name in &settings.service_names {
            let dn = settings.service_dn(name);
            let mut e = Entry::new(&dn, EntryKind::Service);
            e.parent = Some(services_ou);
            e.set("objectClass", vec!["top".into(), "applicationProcess".into()]);
            e.set1("cn", name.clone());
            e.set1("structuralObjectClass", "applicationProcess");
            e.set1("entryUUID", entry_uuid(scope, &format!("service\u{0}{}", name.to_lowercase())));
            e.set1("hasSubordinates", "FALSE");
            entries.push(e);
        }

        let mut by_ndn = HashMap::with_capacity(entries.len());
        let mut children = vec![Vec::new(); entries.len()];
        let mut index: HashMap<AttrId, HashMap<String, Vec<usize>>> = HashMap::new();
        let indexed: Vec<AttrId> = INDEXED.iter().map(|n| schema::id(n)).collect();
        for (i, e) in entries.iter_mut().enumerate() {
            for (id, vals) in &e.attrs {
                if !indexed.contains(id) {
                    continue;
                }
                let m = schema::def(*id).matching;
                let slot = index.entry(*id).or_default();
                for v in vals {
                    if let Some(k) = index_key(m, v) {
                        let list = slot.entry(k).or_default();
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
            }
            let ndn = e.ndn.clone();
            e.set1("entryDN", e.dn.clone());
            e.set1("subschemaSubentry", "cn=schema");
            by_ndn.insert(ndn, i);
            if let Some(p) = e.parent {
                children[p].push(i);
            }
        }
        Dit { generation: snapshot.generation, snapshot, entries, by_ndn, children, index, base }
    }

    pub fn find(&self, dn: &Dn) -> Option<usize> {
        self.by_ndn.get(&dn.normalized()).copied()
    }

    /// The deepest existing entry above `dn`, for `matchedDN` in noSuchObject answers.
    pub fn matched_dn(&self, dn: &Dn) -> String {
        let mut d = dn.parent();
        while !d.is_root() {
            if let Some(i) = self.find(&d) {
                return self.entries[i].dn.clone();
            }
            d = d.parent();
        }
        String::new()
    }

    pub fn children(&self, idx: usize) -> &[usize] {
        &self.children[idx]
    }

    /// True when `idx` is `ancestor` or below it.
    pub fn is_within(&self, mut idx: usize, ancestor: usize) -> bool {
        loop {
            if idx == ancestor {
                return true;
            }
            match self.entries[idx].parent {
                Some(p) => idx = p,
                None => return false,
            }
        }
    }

    pub fn depth(&self, mut idx: usize) -> usize {
        let mut d = 0;
        while let Some(p) = self.entries[idx].parent {
            d += 1;
            idx = p;
        }
        d
    }

    /// Entries whose indexed attribute `id` has a value equal to `key` (normalised); `None` when
    /// the attribute is not indexed.
    pub fn lookup(&self, id: AttrId, key: &str) -> Option<&[usize]> {
        if !INDEXED.iter().any(|n| schema::id(n) == id) {
            return None;
        }
        Some(self.index.get(&id).and_then(|m| m.get(key)).map(Vec::as_slice).unwrap_or(&[]))
    }

    pub fn user_entry(&self, user_idx: usize) -> Option<usize> {
        // Users follow the four containers in snapshot order.
        let i = 4 + user_idx;
        (i < self.entries.len() && self.entries[i].kind == EntryKind::User(user_idx)).then_some(i)
    }
}

fn user_entry(s: &DitSettings, u: &User, dn: &str, ui: usize) -> Entry {
    let mut e = Entry {
        dn: dn.to_string(),
        ndn: String::new(),
        parent: None,
        kind: EntryKind::User(ui),
        attrs: Vec::with_capacity(28),
    };
    e.ndn = Dn::parse(dn).map(|d| d.normalized()).unwrap_or_else(|_| dn.to_lowercase());
    let full = u.full_name();
    e.set(
        "objectClass",
        ["top", "person", "organizationalPerson", "inetOrgPerson", "posixAccount"].map(String::from).to_vec(),
    );
    e.set1("uid", u.login.clone());
    e.set1("cn", full.clone());
    e.set1("sn", if u.last_name.trim().is_empty() { u.login.clone() } else { u.last_name.clone() });
    e.set1("givenName", u.first_name.clone());
    e.set1("displayName", full.clone());
    e.set1("mail", u.email.clone());
    e.set_opt("telephoneNumber", &u.phone);
    e.set_opt("mobile", &u.mobile);
    e.set_opt("title", &u.title);
    e.set_opt("employeeNumber", &u.employee_number);
    if let Some(l) = &u.locale {
        e.set1("preferredLanguage", language_tag(l));
    }
    e.set1("uidNumber", posix_id(s.uid_number_base, &u.id).to_string());
    e.set1("gidNumber", s.user_gid_number.to_string());
    e.set1("homeDirectory", s.home_directory.replace("{login}", &u.login));
    e.set1("loginShell", s.login_shell.clone());
    e.set1("gecos", full);
    e.set1("entryUUID", entry_uuid(&s.uuid_scope, &format!("user\u{0}{}", u.id)));
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

fn group_entry(s: &DitSettings, g: &Group, dn: &str, gi: usize) -> Entry {
    let mut e = Entry {
        dn: dn.to_string(),
        ndn: String::new(),
        parent: None,
        kind: EntryKind::Group(gi),
        attrs: Vec::with_capacity(16),
    };
    e.ndn = Dn::parse(dn).map(|d| d.normalized()).unwrap_or_else(|_| dn.to_lowercase());
    e.set("objectClass", ["top", "groupOfNames", "groupOfUniqueNames", "posixGroup"].map(String::from).to_vec());
    e.set1("cn", g.name.clone());
    e.set_opt("description", &g.description);
    e.set1("gidNumber", posix_id(s.gid_number_base, &g.id).to_string());
    e.set1("entryUUID", entry_uuid(&s.uuid_scope, &format!("group\u{0}{}", g.id)));
    let created = g.created.or(g.modified).unwrap_or(0);
    e.set1("createTimestamp", format_generalized_time(created));
    e.set1("modifyTimestamp", format_generalized_time(g.modified.unwrap_or(created)));
    e.set1("structuralObjectClass", "groupOfNames");
    e.set1("hasSubordinates", "FALSE");
    e
}

/// Keeps the tree of the newest snapshot, rebuilding it once per generation.
pub struct DitCache {
    settings: DitSettings,
    current: ArcSwapOption<Dit>,
    rebuild: std::sync::Mutex<()>,
}

impl DitCache {
    pub fn new(settings: DitSettings) -> DitCache {
        DitCache { settings, current: ArcSwapOption::empty(), rebuild: std::sync::Mutex::new(()) }
    }

    pub fn settings(&self) -> &DitSettings {
        &self.settings
    }

    pub fn get(&self, snapshot: Arc<Snapshot>) -> Arc<Dit> {
        if let Some(d) = self.current.load_full()
            && d.generation == snapshot.generation
        {
            return d;
        }
        let _g = self.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = self.current.load_full()
            && d.generation == snapshot.generation
        {
            return d;
        }
        let d = Arc::new(Dit::build(&self.settings, snapshot));
        self.current.store(Some(d.clone()));
        d
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
        (s, Arc::new(Snapshot::build(7, users, groups)))
    }

    #[test]
    fn entries_carry_the_mapped_attributes() {
        let (s, snap) = sample();
        let dit = Dit::build(&s, snap);
        let alice = dit.find(&Dn::parse("UID=Alice,ou=people,dc=example,dc=com").unwrap()).unwrap();
        let e = &dit.entries[alice];
        let get = |n: &str| e.get(schema::id(n)).map(|v| v.to_vec());
        assert_eq!(get("cn").unwrap(), vec!["Alice Liddell"]);
        assert_eq!(get("uidNumber").unwrap(), vec!["10001"]);
        assert_eq!(get("memberOf").unwrap(), vec!["cn=devs,ou=groups,dc=example,dc=com"]);
        assert_eq!(get("preferredLanguage").unwrap(), vec!["en-GB"]);
        assert_eq!(get("modifyTimestamp").unwrap(), vec!["19700102000000Z"]);
        assert!(get("pwdAccountLockedTime").is_none());
        let bob = &dit.entries[dit.find(&Dn::parse("uid=bob,ou=people,dc=example,dc=com").unwrap()).unwrap()];
        assert_eq!(bob.get(schema::id("sn")).unwrap(), ["bob"]);
        assert!(bob.get(schema::id("pwdAccountLockedTime")).is_some());
        let g = &dit.entries[dit.find(&Dn::parse("cn=devs,ou=groups,dc=example,dc=com").unwrap()).unwrap()];
        assert_eq!(g.get(schema::id("memberUid")).unwrap(), ["alice"]);
    }

    #[test]
    fn indexes_and_hierarchy() {
        let (s, snap) = sample();
        let dit = Dit::build(&s, snap);
        let hits = dit.lookup(schema::id("uid"), "alice").unwrap();
        assert_eq!(hits.len(), 1);
        assert!(dit.is_within(hits[0], dit.base));
        assert_eq!(dit.depth(hits[0]), 2);
        let member = dit.lookup(schema::id("member"), "uid=alice,ou=people,dc=example,dc=com").unwrap();
        assert_eq!(member.len(), 1);
        assert!(dit.lookup(schema::id("givenName"), "alice").is_none(), "not indexed");
        assert_eq!(
            dit.matched_dn(&Dn::parse("uid=x,ou=people,dc=example,dc=com").unwrap()),
            "ou=people,dc=example,dc=com"
        );
        assert_eq!(dit.user_entry(1), dit.find(&Dn::parse("uid=bob,ou=people,dc=example,dc=com").unwrap()));
    }

    #[test]
    fn entry_uuids_are_stable_and_distinct() {
        let (s, snap) = sample();
        let a = Dit::build(&s, snap.clone());
        let b = Dit::build(&s, snap);
        let id = schema::id("entryUUID");
        let ua: Vec<_> = a.entries.iter().map(|e| e.get(id).unwrap()[0].clone()).collect();
        let ub: Vec<_> = b.entries.iter().map(|e| e.get(id).unwrap()[0].clone()).collect();
        assert_eq!(ua, ub);
        let set: std::collections::HashSet<_> = ua.iter().collect();
        assert_eq!(set.len(), ua.len());
    }
}
