//! An immutable, indexed view of the whole directory. Readers hold an `Arc` for as long as they
//! need a consistent view (a paged search keeps one across pages); writers build a new one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::model::{Group, User};

#[derive(Debug)]
pub struct Snapshot {
    /// Changes whenever the content changes; front ends key derived views on it.
    pub generation: u64,
    /// When the backend last confirmed this content (or the write that produced it).
    pub built_at: Instant,
    users: Vec<Arc<User>>,
    groups: Vec<Arc<Group>>,
    user_by_id: HashMap<String, usize>,
    user_by_login: HashMap<String, usize>,
    user_by_email: HashMap<String, Vec<usize>>,
    /// Folded full name ("first last", or the login) -> users; LDAP's `cn`.
    user_by_full_name: HashMap<String, Vec<usize>>,
    group_by_id: HashMap<String, usize>,
    group_by_name: HashMap<String, usize>,
    /// Direct groups of each user, by user index.
    user_groups: Vec<Vec<usize>>,
    /// Members of each group that exist as users, by group index.
    group_members: Vec<Vec<usize>>,
}

/// Lower case with runs of white space folded to one space: how names compare.
fn fold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Sorts ids numerically when they are numbers, so listings follow creation order.
fn id_key(id: &str) -> (u8, u64, &str) {
    match id.parse::<u64>() {
        Ok(n) => (0, n, ""),
        Err(_) => (1, 0, id),
    }
}

impl Snapshot {
    pub fn build(generation: u64, mut users: Vec<Arc<User>>, mut groups: Vec<Arc<Group>>) -> Snapshot {
        users.sort_by(|a, b| id_key(&a.id).cmp(&id_key(&b.id)));
        users.dedup_by(|a, b| a.id == b.id);
        groups.sort_by(|a, b| id_key(&a.id).cmp(&id_key(&b.id)));
        groups.dedup_by(|a, b| a.id == b.id);
        let mut user_by_id = HashMap::with_capacity(users.len());
        let mut user_by_login = HashMap::with_capacity(users.len());
        let mut user_by_email: HashMap<String, Vec<usize>> = HashMap::with_capacity(users.len());
        let mut user_by_full_name: HashMap<String, Vec<usize>> = HashMap::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            user_by_full_name.entry(fold(&u.full_name())).or_default().push(i);
            user_by_id.insert(u.id.clone(), i);
            user_by_login.insert(u.login.to_lowercase(), i);
            if !u.email.is_empty() {
                user_by_email.entry(u.email.to_lowercase()).or_default().push(i);
            }
        }
        let mut group_by_id = HashMap::with_capacity(groups.len());
        let mut group_by_name = HashMap::with_capacity(groups.len());
        let mut user_groups = vec![Vec::new(); users.len()];
        let mut group_members = Vec::with_capacity(groups.len());
        for (gi, g) in groups.iter().enumerate() {
            group_by_id.insert(g.id.clone(), gi);
            group_by_name.insert(g.name.to_lowercase(), gi);
            let mut members: Vec<usize> = g.members.iter().filter_map(|m| user_by_id.get(m).copied()).collect();
            members.sort_unstable();
            members.dedup();
            for &ui in &members {
                user_groups[ui].push(gi);
            }
            group_members.push(members);
        }
        Snapshot {
            generation,
            built_at: Instant::now(),
            users,
            groups,
            user_by_id,
            user_by_login,
            user_by_email,
            user_by_full_name,
            group_by_id,
            group_by_name,
            user_groups,
            group_members,
        }
    }

    pub fn users(&self) -> &[Arc<User>] {
        &self.users
    }
    pub fn groups(&self) -> &[Arc<Group>] {
        &self.groups
    }
    pub fn user(&self, idx: usize) -> &Arc<User> {
        &self.users[idx]
    }
    pub fn group(&self, idx: usize) -> &Arc<Group> {
        &self.groups[idx]
    }
    pub fn user_index(&self, id: &str) -> Option<usize> {
        self.user_by_id.get(id).copied()
    }
    pub fn group_index(&self, id: &str) -> Option<usize> {
        self.group_by_id.get(id).copied()
    }
    pub fn user_by_id(&self, id: &str) -> Option<&Arc<User>> {
        self.user_index(id).map(|i| &self.users[i])
    }
    /// Case-insensitive.
    pub fn user_index_by_login(&self, login: &str) -> Option<usize> {
        self.user_by_login.get(&login.to_lowercase()).copied()
    }
    pub fn user_by_login(&self, login: &str) -> Option<&Arc<User>> {
        self.user_index_by_login(login).map(|i| &self.users[i])
    }
    /// Case-insensitive; several users may share an address.
    pub fn user_indexes_by_email(&self, email: &str) -> &[usize] {
        self.user_by_email.get(&email.to_lowercase()).map(Vec::as_slice).unwrap_or(&[])
    }
    /// Case-insensitive, spaces folded.
    pub fn user_indexes_by_full_name(&self, name: &str) -> &[usize] {
        self.user_by_full_name.get(&fold(name)).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn group_index_by_name(&self, name: &str) -> Option<usize> {
        self.group_by_name.get(&name.to_lowercase()).copied()
    }
    pub fn group_by_name(&self, name: &str) -> Option<&Arc<Group>> {
        self.group_index_by_name(name).map(|i| &self.groups[i])
    }
    /// Group indexes of a user's direct groups.
    pub fn groups_of(&self, user_idx: usize) -> &[usize] {
        &self.user_groups[user_idx]
    }
    /// User indexes of a group's members.
    pub fn members_of(&self, group_idx: usize) -> &[usize] {
        &self.group_members[group_idx]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, login: &str, email: &str) -> Arc<User> {
        Arc::new(User { id: id.into(), login: login.into(), email: email.into(), ..Default::default() })
    }

    #[test]
    fn indexes_and_memberships() {
        let users = vec![user("10", "Bob", "b@x"), user("2", "alice", "A@X"), user("3", "carol", "a@x")];
        let groups = vec![Arc::new(Group {
            id: "1".into(),
            name: "Devs".into(),
            members: vec!["2".into(), "10".into(), "999".into(), "2".into()],
            ..Default::default()
        })];
        let s = Snapshot::build(1, users, groups);
        assert_eq!(s.users()[0].login, "alice", "numeric id order");
        assert_eq!(s.user_by_login("BOB").unwrap().id, "10");
        assert_eq!(s.user_indexes_by_email("a@x").len(), 2);
        let g = s.group_index_by_name("devs").unwrap();
        assert_eq!(s.members_of(g).len(), 2, "unknown and duplicate members dropped");
        let alice = s.user_index_by_login("alice").unwrap();
        assert_eq!(s.groups_of(alice), &[g]);
        assert!(s.groups_of(s.user_index_by_login("carol").unwrap()).is_empty());
        assert_eq!(s.user_indexes_by_full_name("  BOB ").len(), 1, "full name falls back to the login");
    }
}
