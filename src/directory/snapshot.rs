//! An immutable, indexed view of the whole directory. Readers hold an `Arc` for as long as they
//! need a consistent view (a paged search keeps one across pages). Every structure inside is
//! persistent (imbl's RRB vectors and B-trees), so a writer derives the next snapshot from the
//! current one in O(size of the change · log n): nothing is rebuilt and nothing is copied whole.
//!
//! Users and groups live in slots that keep their number for the life of the lineage (a deleted
//! one leaves an empty slot until the next full rebuild), so entry numbers held by readers stay
//! meaningful. Text indexes map a 64-bit hash of the folded key to slots; every hit is checked
//! against the entry itself, so a collision can cost a comparison but never a wrong answer.

use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use imbl::{OrdMap, OrdSet, Vector};

use crate::model::{Group, User};

type Index = OrdSet<(u64, u32)>;

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Changes whenever the content changes; front ends key derived views on it.
    pub generation: u64,
    /// When the backend last confirmed this content.
    pub built_at: Instant,
    /// Names this installation in every entity's UUID.
    scope: Arc<str>,
    users: Vector<Option<Arc<User>>>,
    /// Groups are stored without their member list: membership lives in `members`/`memberships`.
    groups: Vector<Option<Arc<Group>>>,
    user_uuids: Vector<u128>,
    group_uuids: Vector<u128>,
    live_users: usize,
    live_groups: usize,
    user_by_id: Index,
    /// Logins, addresses and group names are keyed on their folded form: it serves both the
    /// case-insensitive lookups and LDAP's equality, which also folds spaces.
    user_by_login: Index,
    user_by_email: Index,
    /// Folded full name ("first last", or the login); LDAP's `cn`.
    user_by_full_name: Index,
    /// Extra field values: the hash of `field NUL folded value` (values are canonical text, see
    /// `directory::custom`), for equality lookups on custom attributes.
    user_by_custom: Index,
    group_by_id: Index,
    group_by_name: Index,
    /// entryUUID -> (is a group, slot).
    by_uuid: OrdMap<u128, (bool, u32)>,
    /// (group slot, user slot) and the same pairs the other way round.
    members: OrdSet<(u32, u32)>,
    memberships: OrdSet<(u32, u32)>,
    /// (group slot, member group slot), and the same pairs the other way round.
    subgroups: OrdSet<(u32, u32)>,
    supergroups: OrdSet<(u32, u32)>,
}

/// What replacing a group changed.
#[derive(Debug, Default)]
pub struct GroupChange {
    /// Users whose direct membership of the group changed.
    pub users: Vec<usize>,
    /// Its member groups changed.
    pub nesting: bool,
}

/// Lower case with runs of white space folded to one space: how names compare.
pub fn fold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// `a` lower-cased equals `lower` (already lower case), without allocating.
fn eq_lower(a: &str, lower: &str) -> bool {
    a.chars().flat_map(char::to_lowercase).eq(lower.chars())
}

fn hash(s: &str) -> u64 {
    // Per process, so nobody can precompute colliding names.
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    KEYS.get_or_init(Default::default).hash_one(s)
}

fn range<'a>(ix: &'a Index, key: &str) -> impl Iterator<Item = usize> + 'a {
    let h = hash(key);
    ix.range((h, 0)..=(h, u32::MAX)).map(|&(_, s)| s as usize)
}

/// Sorts ids numerically when they are numbers, so listings follow creation order.
fn id_key(id: &str) -> (u8, u64, &str) {
    match id.parse::<u64>() {
        Ok(n) => (0, n, ""),
        Err(_) => (1, 0, id),
    }
}

/// A stable UUID for a user or group of one installation.
pub fn entity_uuid(scope: &str, kind: &str, id: &str) -> u128 {
    const NS: uuid::Uuid = uuid::uuid!("6f1c2a8e-3d4b-5e6f-8a9b-0c1d2e3f4a5b");
    uuid::Uuid::new_v5(&NS, format!("{scope}\u{0}{kind}\u{0}{id}").as_bytes()).as_u128()
}

fn custom_key(field: &str, folded: &str) -> String {
    format!("{field}\u{0}{folded}")
}

fn slot(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

impl Snapshot {
    /// An empty snapshot for an installation.
    pub fn empty(scope: &str, generation: u64) -> Snapshot {
        Snapshot {
            generation,
            built_at: Instant::now(),
            scope: scope.into(),
            users: Vector::new(),
            groups: Vector::new(),
            user_uuids: Vector::new(),
            group_uuids: Vector::new(),
            live_users: 0,
            live_groups: 0,
            user_by_id: Index::new(),
            user_by_login: Index::new(),
            user_by_email: Index::new(),
            user_by_full_name: Index::new(),
            user_by_custom: Index::new(),
            group_by_id: Index::new(),
            group_by_name: Index::new(),
            by_uuid: OrdMap::new(),
            members: OrdSet::new(),
            memberships: OrdSet::new(),
            subgroups: OrdSet::new(),
            supergroups: OrdSet::new(),
        }
    }

    /// A snapshot of everything, in id order. Group members that are not users are dropped.
    pub fn build(scope: &str, generation: u64, mut users: Vec<Arc<User>>, mut groups: Vec<Arc<Group>>) -> Snapshot {
        users.sort_by(|a, b| id_key(&a.id).cmp(&id_key(&b.id)));
        users.dedup_by(|a, b| a.id == b.id);
        groups.sort_by(|a, b| id_key(&a.id).cmp(&id_key(&b.id)));
        groups.dedup_by(|a, b| a.id == b.id);
        let mut s = Snapshot::empty(scope, generation);
        for u in users {
            s.put_user(u);
        }
        s.put_groups(groups);
        s
    }

    /// The installation scope of this lineage.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    // ---- Reads ----------------------------------------------------------------------------

    /// Number of live users.
    pub fn user_count(&self) -> usize {
        self.live_users
    }
    pub fn group_count(&self) -> usize {
        self.live_groups
    }
    /// One past the highest user slot; slots below it may be empty.
    pub fn user_slots(&self) -> usize {
        self.users.len()
    }
    pub fn group_slots(&self) -> usize {
        self.groups.len()
    }
    /// Live users with their slots, in slot order.
    pub fn users(&self) -> impl Iterator<Item = (usize, &Arc<User>)> + '_ {
        self.users.iter().enumerate().filter_map(|(i, u)| u.as_ref().map(|u| (i, u)))
    }
    pub fn groups(&self) -> impl Iterator<Item = (usize, &Arc<Group>)> + '_ {
        self.groups.iter().enumerate().filter_map(|(i, g)| g.as_ref().map(|g| (i, g)))
    }
    pub fn user_at(&self, idx: usize) -> Option<&Arc<User>> {
        self.users.get(idx).and_then(Option::as_ref)
    }
    pub fn group_at(&self, idx: usize) -> Option<&Arc<Group>> {
        self.groups.get(idx).and_then(Option::as_ref)
    }
    /// The user in a live slot (from an index or an iteration of this snapshot).
    pub fn user(&self, idx: usize) -> &Arc<User> {
        self.user_at(idx).expect("a live user slot of this snapshot")
    }
    pub fn group(&self, idx: usize) -> &Arc<Group> {
        self.group_at(idx).expect("a live group slot of this snapshot")
    }
    pub fn user_uuid(&self, idx: usize) -> u128 {
        self.user_uuids.get(idx).copied().unwrap_or(0)
    }
    pub fn group_uuid(&self, idx: usize) -> u128 {
        self.group_uuids.get(idx).copied().unwrap_or(0)
    }
    /// (is a group, slot) of the entity with this UUID.
    pub fn by_uuid(&self, uuid: u128) -> Option<(bool, usize)> {
        self.by_uuid.get(&uuid).map(|&(g, s)| (g, s as usize))
    }
    pub fn user_index(&self, id: &str) -> Option<usize> {
        range(&self.user_by_id, id).find(|&i| self.user_at(i).is_some_and(|u| u.id == id))
    }
    pub fn group_index(&self, id: &str) -> Option<usize> {
        range(&self.group_by_id, id).find(|&i| self.group_at(i).is_some_and(|g| g.id == id))
    }
    pub fn user_by_id(&self, id: &str) -> Option<&Arc<User>> {
        self.user_index(id).map(|i| self.user(i))
    }
    /// Case-insensitive.
    pub fn user_index_by_login(&self, login: &str) -> Option<usize> {
        let key = login.to_lowercase();
        range(&self.user_by_login, &fold(login)).find(|&i| self.user_at(i).is_some_and(|u| eq_lower(&u.login, &key)))
    }
    /// Case-insensitive, spaces folded (LDAP equality on `uid`, `memberUid`).
    pub fn user_indexes_by_login_folded(&self, login: &str) -> Vec<usize> {
        let key = fold(login);
        range(&self.user_by_login, &key).filter(|&i| self.user_at(i).is_some_and(|u| fold(&u.login) == key)).collect()
    }
    pub fn user_by_login(&self, login: &str) -> Option<&Arc<User>> {
        self.user_index_by_login(login).map(|i| self.user(i))
    }
    /// Case-insensitive; several users may share an address.
    pub fn user_indexes_by_email(&self, email: &str) -> Vec<usize> {
        let key = email.to_lowercase();
        range(&self.user_by_email, &fold(email))
            .filter(|&i| self.user_at(i).is_some_and(|u| eq_lower(&u.email, &key)))
            .collect()
    }
    /// Case-insensitive, spaces folded (LDAP equality on `mail`).
    pub fn user_indexes_by_email_folded(&self, email: &str) -> Vec<usize> {
        let key = fold(email);
        range(&self.user_by_email, &key).filter(|&i| self.user_at(i).is_some_and(|u| fold(&u.email) == key)).collect()
    }
    /// Case-insensitive, spaces folded.
    pub fn user_indexes_by_full_name(&self, name: &str) -> Vec<usize> {
        let key = fold(name);
        range(&self.user_by_full_name, &key)
            .filter(|&i| self.user_at(i).is_some_and(|u| fold(&u.full_name()) == key))
            .collect()
    }
    /// Users with `value` among the values of extra field `field` (case-insensitive, spaces
    /// folded; `value` in canonical form).
    pub fn user_indexes_by_custom(&self, field: &str, value: &str) -> Vec<usize> {
        let key = fold(value);
        range(&self.user_by_custom, &custom_key(field, &key))
            .filter(|&i| {
                self.user_at(i).is_some_and(|u| u.custom.get(field).is_some_and(|vs| vs.iter().any(|v| fold(v) == key)))
            })
            .collect()
    }
    pub fn group_index_by_name(&self, name: &str) -> Option<usize> {
        let key = name.to_lowercase();
        range(&self.group_by_name, &fold(name)).find(|&i| self.group_at(i).is_some_and(|g| eq_lower(&g.name, &key)))
    }
    /// Case-insensitive, spaces folded (LDAP equality on a group's `cn`).
    pub fn group_indexes_by_name_folded(&self, name: &str) -> Vec<usize> {
        let key = fold(name);
        range(&self.group_by_name, &key).filter(|&i| self.group_at(i).is_some_and(|g| fold(&g.name) == key)).collect()
    }
    pub fn group_by_name(&self, name: &str) -> Option<&Arc<Group>> {
        self.group_index_by_name(name).map(|i| self.group(i))
    }
    /// Slots of a user's direct groups, in slot order.
    pub fn groups_of(&self, user_idx: usize) -> Vec<usize> {
        let u = slot(user_idx);
        self.memberships.range((u, 0)..=(u, u32::MAX)).map(|&(_, g)| g as usize).collect()
    }
    /// Slots of a group's members, in slot order.
    pub fn members_of(&self, group_idx: usize) -> Vec<usize> {
        let g = slot(group_idx);
        self.members.range((g, 0)..=(g, u32::MAX)).map(|&(_, u)| u as usize).collect()
    }
    pub fn is_member(&self, group_idx: usize, user_idx: usize) -> bool {
        self.members.contains(&(slot(group_idx), slot(user_idx)))
    }
    /// Backend ids of a group's members.
    pub fn member_ids(&self, group_idx: usize) -> Vec<String> {
        self.members_of(group_idx).into_iter().map(|u| self.user(u).id.clone()).collect()
    }
    /// A group with its member lists filled in, as backends describe groups.
    pub fn group_with_members(&self, group_idx: usize) -> Group {
        let mut g = (**self.group(group_idx)).clone();
        g.members = self.member_ids(group_idx);
        g.member_groups = self.member_group_ids(group_idx);
        g
    }

    /// Slots of a group's direct member groups.
    pub fn child_groups_of(&self, group_idx: usize) -> Vec<usize> {
        let g = slot(group_idx);
        self.subgroups.range((g, 0)..=(g, u32::MAX)).map(|&(_, c)| c as usize).collect()
    }
    /// Slots of the groups a group is a direct member of.
    pub fn parent_groups_of(&self, group_idx: usize) -> Vec<usize> {
        let g = slot(group_idx);
        self.supergroups.range((g, 0)..=(g, u32::MAX)).map(|&(_, p)| p as usize).collect()
    }
    pub fn member_group_ids(&self, group_idx: usize) -> Vec<String> {
        self.child_groups_of(group_idx).into_iter().map(|c| self.group(c).id.clone()).collect()
    }
    pub fn is_member_group(&self, group_idx: usize, child_idx: usize) -> bool {
        self.subgroups.contains(&(slot(group_idx), slot(child_idx)))
    }
    /// True when any group nests another: the transitive walks below have nothing to do otherwise.
    pub fn has_nesting(&self) -> bool {
        !self.subgroups.is_empty()
    }

    /// Every group reached from `start` by following `next`, each once (nesting may have cycles),
    /// in slot order; `start` itself only when a cycle leads back to it.
    fn closure(&self, start: Vec<usize>, next: impl Fn(usize) -> Vec<usize>) -> Vec<usize> {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = start;
        while let Some(g) = todo.pop() {
            if seen.insert(g) {
                todo.extend(next(g));
            }
        }
        seen.into_iter().collect()
    }

    /// Slots of every group a user belongs to, directly or through nested groups.
    pub fn groups_of_transitive(&self, user_idx: usize) -> Vec<usize> {
        let direct = self.groups_of(user_idx);
        if !self.has_nesting() {
            return direct;
        }
        self.closure(direct, |g| self.parent_groups_of(g))
    }
    /// Slots of every group a group is nested in, at any depth.
    pub fn ancestors_of(&self, group_idx: usize) -> Vec<usize> {
        if !self.has_nesting() {
            return Vec::new();
        }
        self.closure(self.parent_groups_of(group_idx), |g| self.parent_groups_of(g))
    }
    /// Slots of every group nested in a group, at any depth.
    pub fn descendants_of(&self, group_idx: usize) -> Vec<usize> {
        if !self.has_nesting() {
            return Vec::new();
        }
        self.closure(self.child_groups_of(group_idx), |g| self.child_groups_of(g))
    }
    /// Slots of the users in a group or any group nested in it.
    pub fn members_transitive(&self, group_idx: usize) -> Vec<usize> {
        let mut users: std::collections::BTreeSet<usize> = self.members_of(group_idx).into_iter().collect();
        for g in self.descendants_of(group_idx) {
            users.extend(self.members_of(g));
        }
        users.into_iter().collect()
    }

    // ---- Changes: each O(change · log n) --------------------------------------------------

    fn index_user(&mut self, i: usize, u: &User, add: bool) {
        let s = slot(i);
        let mut keys = vec![(0, u.id.clone()), (1, fold(&u.login)), (3, fold(&u.full_name()))];
        if !u.email.is_empty() {
            keys.push((2, fold(&u.email)));
        }
        for (field, values) in &u.custom {
            for v in values {
                keys.push((4, custom_key(field, &fold(v))));
            }
        }
        for (which, key) in keys {
            let ix = match which {
                0 => &mut self.user_by_id,
                1 => &mut self.user_by_login,
                2 => &mut self.user_by_email,
                3 => &mut self.user_by_full_name,
                _ => &mut self.user_by_custom,
            };
            if add {
                ix.insert((hash(&key), s));
            } else {
                ix.remove(&(hash(&key), s));
            }
        }
    }

    fn index_group(&mut self, i: usize, g: &Group, add: bool) {
        let s = slot(i);
        let id = (hash(&g.id), s);
        let name = (hash(&fold(&g.name)), s);
        if add {
            self.group_by_id.insert(id);
            self.group_by_name.insert(name);
        } else {
            self.group_by_id.remove(&id);
            self.group_by_name.remove(&name);
        }
    }

    /// Adds or replaces a user (by id); returns its slot.
    pub fn put_user(&mut self, u: Arc<User>) -> usize {
        match self.user_index(&u.id) {
            Some(i) => {
                let old = self.user(i).clone();
                self.index_user(i, &old, false);
                self.index_user(i, &u, true);
                self.users.set(i, Some(u));
                i
            }
            None => {
                let i = self.users.len();
                let uuid = entity_uuid(&self.scope, "user", &u.id);
                self.index_user(i, &u, true);
                self.users.push_back(Some(u));
                self.user_uuids.push_back(uuid);
                self.by_uuid.insert(uuid, (false, slot(i)));
                self.live_users += 1;
                i
            }
        }
    }

    /// Removes a user and its memberships; false when there was no such user.
    pub fn remove_user(&mut self, id: &str) -> bool {
        let Some(i) = self.user_index(id) else { return false };
        let old = self.user(i).clone();
        self.index_user(i, &old, false);
        for g in self.groups_of(i) {
            self.members.remove(&(slot(g), slot(i)));
            self.memberships.remove(&(slot(i), slot(g)));
        }
        self.by_uuid.remove(&self.user_uuid(i));
        self.users.set(i, None);
        self.live_users -= 1;
        true
    }

    /// Adds or replaces a group's fields (by id), keeping its memberships; returns its slot.
    pub fn put_group_fields(&mut self, g: Arc<Group>) -> usize {
        let g = if g.members.is_empty() { g } else { Arc::new(Group { members: Vec::new(), ..(*g).clone() }) };
        match self.group_index(&g.id) {
            Some(i) => {
                let old = self.group(i).clone();
                self.index_group(i, &old, false);
                self.index_group(i, &g, true);
                self.groups.set(i, Some(g));
                i
            }
            None => {
                let i = self.groups.len();
                let uuid = entity_uuid(&self.scope, "group", &g.id);
                self.index_group(i, &g, true);
                self.groups.push_back(Some(g));
                self.group_uuids.push_back(uuid);
                self.by_uuid.insert(uuid, (true, slot(i)));
                self.live_groups += 1;
                i
            }
        }
    }

    /// Adds or replaces a group with exactly the members it lists (those that are users, and
    /// member groups that exist).
    pub fn put_group(&mut self, g: Arc<Group>) -> GroupChange {
        let wanted: std::collections::BTreeSet<usize> = g.members.iter().filter_map(|m| self.user_index(m)).collect();
        let wanted_groups: std::collections::BTreeSet<usize> =
            g.member_groups.iter().filter_map(|m| self.group_index(m)).collect();
        let i = self.put_group_fields(g);
        let mut change = GroupChange::default();
        for u in self.members_of(i) {
            if !wanted.contains(&u) && self.set_member(i, u, false) {
                change.users.push(u);
            }
        }
        for u in wanted {
            if self.set_member(i, u, true) {
                change.users.push(u);
            }
        }
        for c in self.child_groups_of(i) {
            if !wanted_groups.contains(&c) {
                change.nesting |= self.set_member_group(i, c, false);
            }
        }
        for c in wanted_groups {
            change.nesting |= self.set_member_group(i, c, true);
        }
        change
    }

    /// Puts several groups: every group's fields first, so member groups listed before they
    /// appear are found. Returns each group's change, in the order given.
    pub fn put_groups(&mut self, groups: Vec<Arc<Group>>) -> Vec<(String, GroupChange)> {
        for g in &groups {
            if self.group_index(&g.id).is_none() {
                self.put_group_fields(g.clone());
            }
        }
        groups.into_iter().map(|g| (g.id.clone(), self.put_group(g))).collect()
    }

    pub fn remove_group(&mut self, id: &str) -> bool {
        let Some(i) = self.group_index(id) else { return false };
        let old = self.group(i).clone();
        self.index_group(i, &old, false);
        for u in self.members_of(i) {
            self.set_member(i, u, false);
        }
        for c in self.child_groups_of(i) {
            self.set_member_group(i, c, false);
        }
        for p in self.parent_groups_of(i) {
            self.set_member_group(p, i, false);
        }
        self.by_uuid.remove(&self.group_uuid(i));
        self.groups.set(i, None);
        self.live_groups -= 1;
        true
    }

    /// Makes `child_idx` a member group of `group_idx`, or not; true when it changed anything.
    pub fn set_member_group(&mut self, group_idx: usize, child_idx: usize, member: bool) -> bool {
        let (g, c) = (slot(group_idx), slot(child_idx));
        if member {
            self.supergroups.insert((c, g));
            self.subgroups.insert((g, c)).is_none()
        } else {
            self.supergroups.remove(&(c, g));
            self.subgroups.remove(&(g, c)).is_some()
        }
    }

    /// Adds or removes one membership; true when it changed anything.
    pub fn set_member(&mut self, group_idx: usize, user_idx: usize, member: bool) -> bool {
        let (g, u) = (slot(group_idx), slot(user_idx));
        if member {
            self.memberships.insert((u, g));
            self.members.insert((g, u)).is_none()
        } else {
            self.memberships.remove(&(u, g));
            self.members.remove(&(g, u)).is_some()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, login: &str, email: &str) -> Arc<User> {
        Arc::new(User { id: id.into(), login: login.into(), email: email.into(), ..Default::default() })
    }

    fn sample() -> Snapshot {
        let users = vec![user("10", "Bob", "b@x"), user("2", "alice", "A@X"), user("3", "carol", "a@x")];
        let groups = vec![Arc::new(Group {
            id: "1".into(),
            name: "Devs".into(),
            members: vec!["2".into(), "10".into(), "999".into(), "2".into()],
            ..Default::default()
        })];
        Snapshot::build("t", 1, users, groups)
    }

    #[test]
    fn indexes_and_memberships() {
        let s = sample();
        assert_eq!(s.users().next().unwrap().1.login, "alice", "numeric id order");
        assert_eq!(s.user_by_login("BOB").unwrap().id, "10");
        assert_eq!(s.user_indexes_by_email("a@x").len(), 2);
        let g = s.group_index_by_name("devs").unwrap();
        assert_eq!(s.members_of(g).len(), 2, "unknown and duplicate members dropped");
        assert!(s.group(g).members.is_empty(), "members live in the membership index");
        let alice = s.user_index_by_login("alice").unwrap();
        assert_eq!(s.groups_of(alice), vec![g]);
        assert!(s.groups_of(s.user_index_by_login("carol").unwrap()).is_empty());
        assert_eq!(s.user_indexes_by_full_name("  BOB ").len(), 1, "full name falls back to the login");
        assert_eq!(s.by_uuid(s.user_uuid(alice)), Some((false, alice)));
    }

    #[test]
    fn changes_keep_every_index_exact_and_leave_the_old_snapshot_alone() {
        let old = sample();
        let mut s = old.clone();
        let alice = s.user_index_by_login("alice").unwrap();
        let devs = s.group_index_by_name("devs").unwrap();
        // rename alice and change her address
        s.put_user(Arc::new(User { login: "alicia".into(), email: "new@x".into(), ..(**s.user(alice)).clone() }));
        assert!(s.user_by_login("alice").is_none());
        assert_eq!(s.user_index_by_login("ALICIA"), Some(alice), "same slot");
        assert_eq!(s.user_indexes_by_email("a@x").len(), 1);
        assert!(s.is_member(devs, alice), "memberships kept");
        // a new user goes to a new slot
        let dan = s.put_user(user("11", "dan", ""));
        assert!(s.set_member(devs, dan, true));
        assert!(!s.set_member(devs, dan, true), "already a member");
        assert_eq!(s.member_ids(devs), vec!["2", "10", "11"]);
        // deleting a user removes its memberships, leaves the slot empty
        assert!(s.remove_user("10"));
        assert!(!s.remove_user("10"));
        assert_eq!(s.user_count(), 3);
        assert_eq!(s.user_slots(), 4);
        assert_eq!(s.member_ids(devs), vec!["2", "11"]);
        assert!(s.user_by_login("bob").is_none());
        // group rename and delete
        s.put_group_fields(Arc::new(Group { name: "Ops".into(), ..(**s.group(devs)).clone() }));
        assert!(s.group_by_name("devs").is_none());
        assert_eq!(s.member_ids(s.group_index_by_name("ops").unwrap()).len(), 2);
        assert!(s.remove_group("1"));
        assert!(s.groups_of(dan).is_empty());
        // the snapshot it came from still answers as before
        assert_eq!(old.user_by_login("alice").map(|u| u.id.as_str()), Some("2"));
        assert_eq!(old.member_ids(old.group_index_by_name("devs").unwrap()), vec!["2", "10"]);
        assert_eq!(old.user_count(), 3);
    }

    #[test]
    fn put_group_sets_exactly_the_listed_members() {
        let mut s = sample();
        let changed = s.put_group(Arc::new(Group {
            id: "1".into(),
            name: "Devs".into(),
            members: vec!["3".into()],
            ..Default::default()
        }));
        assert_eq!(changed.users.len(), 3, "alice and bob left, carol joined");
        assert_eq!(s.member_ids(s.group_index("1").unwrap()), vec!["3"]);
        assert!(s.groups_of(s.user_index("2").unwrap()).is_empty());
    }

    #[test]
    fn custom_values_are_indexed_and_follow_changes() {
        let mut alice = User { id: "1".into(), login: "alice".into(), ..Default::default() };
        alice.custom.insert("cc".into(), vec!["CC-100".into(), "Shared  Desk".into()]);
        let mut bob = User { id: "2".into(), login: "bob".into(), ..Default::default() };
        bob.custom.insert("cc".into(), vec!["cc-100".into()]);
        bob.custom.insert("other".into(), vec!["shared desk".into()]);
        let mut s = Snapshot::build("t", 1, vec![Arc::new(alice.clone()), Arc::new(bob)], vec![]);
        assert_eq!(s.user_indexes_by_custom("cc", "cc-100").len(), 2);
        assert_eq!(s.user_indexes_by_custom("cc", "SHARED DESK"), vec![0], "field and folded value");
        assert!(s.user_indexes_by_custom("cc", "CC-200").is_empty());
        alice.custom.insert("cc".into(), vec!["CC-200".into()]);
        s.put_user(Arc::new(alice));
        assert_eq!(s.user_indexes_by_custom("cc", "CC-100"), vec![1]);
        assert_eq!(s.user_indexes_by_custom("cc", "cc-200"), vec![0]);
        s.remove_user("1");
        assert!(s.user_indexes_by_custom("cc", "CC-200").is_empty());
    }

    /// Nesting: three levels and a cycle. Walks end, each group counted once.
    #[test]
    fn nested_groups_close_transitively_through_cycles() {
        let g = |id: &str, members: &[&str], groups: &[&str]| {
            Arc::new(Group {
                id: id.into(),
                name: format!("g{id}"),
                members: members.iter().map(|m| m.to_string()).collect(),
                member_groups: groups.iter().map(|m| m.to_string()).collect(),
                ..Default::default()
            })
        };
        // 1 ⊃ 2 ⊃ 3 ⊃ 1 (cycle); 4 ⊃ 3; users: alice(2) in 3, bob(10) in 1.
        let users = vec![user("2", "alice", ""), user("10", "bob", "")];
        let groups =
            vec![g("1", &["10"], &["2"]), g("2", &[], &["3"]), g("3", &["2"], &["1", "99"]), g("4", &[], &["3"])];
        let s = Snapshot::build("t", 1, users, groups);
        let gi = |id: &str| s.group_index(id).unwrap();
        let alice = s.user_index("2").unwrap();
        let names = |v: Vec<usize>| v.into_iter().map(|i| s.group(i).id.clone()).collect::<Vec<_>>();
        assert_eq!(names(s.groups_of(alice)), vec!["3"]);
        assert_eq!(names(s.groups_of_transitive(alice)), vec!["1", "2", "3", "4"]);
        assert_eq!(names(s.ancestors_of(gi("1"))), vec!["1", "2", "3", "4"], "a cycle leads back to itself");
        assert_eq!(names(s.descendants_of(gi("4"))), vec!["1", "2", "3"]);
        assert_eq!(s.members_transitive(gi("4")).len(), 2);
        assert_eq!(s.member_group_ids(gi("3")), vec!["1"], "unknown member groups dropped");
        // removing a group removes its edges both ways
        let mut t = s.clone();
        t.remove_group("3");
        let alice_groups: Vec<_> = t.groups_of_transitive(alice);
        assert!(alice_groups.is_empty());
        assert!(t.child_groups_of(t.group_index("2").unwrap()).is_empty());
        assert!(t.parent_groups_of(t.group_index("1").unwrap()).is_empty());
        assert_eq!(s.groups_of_transitive(alice).len(), 4, "the old snapshot is untouched");
    }
}
