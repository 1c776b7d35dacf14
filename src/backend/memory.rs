//! The embedded backend: a directory held in process, seeded from a JSON file. Passwords are kept
//! only as argon2 hashes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use async_trait::async_trait;
use serde::Deserialize;

use super::{Backend, BackendError, BackendResult, Capabilities, ProbeReport};
use crate::model::{Group, GroupChanges, NewGroup, NewUser, User, UserChanges};

/// The seed file (spec §3).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub groups: Vec<SeedGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub login: String,
    /// Unix seconds; seeded entries are the same entities on every start, so they keep one
    /// creation time (`SEED_CREATED` unless given).
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default)]
    pub firstname: String,
    #[serde(default)]
    pub lastname: String,
    #[serde(default)]
    pub email: String,
    /// Plain text, hashed at load.
    #[serde(default)]
    pub password: Option<String>,
    /// An argon2 PHC string, used as is.
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub mobile: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub employee_number: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    /// The manager's login.
    #[serde(default)]
    pub manager: Option<String>,
    /// Extra fields: a text or a list of texts per field.
    #[serde(default)]
    pub custom: BTreeMap<String, SeedValue>,
    /// A system account of the embedded backend (hidden unless `[directory.hidden] system = false`).
    #[serde(default)]
    pub system: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SeedValue {
    One(String),
    Many(Vec<String>),
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    pub name: String,
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    /// Member logins.
    #[serde(default)]
    pub members: Vec<String>,
    /// Names of member groups.
    #[serde(default)]
    pub member_groups: Vec<String>,
}

#[derive(Default)]
struct State {
    users: BTreeMap<u64, User>,
    /// ASCII-lower-cased login -> id, so uniqueness checks and lookups by login are no scans.
    logins: std::collections::HashMap<String, u64>,
    hashes: BTreeMap<u64, String>,
    groups: BTreeMap<u64, Group>,
    next_user: u64,
    next_group: u64,
}

pub struct MemoryBackend {
    state: RwLock<State>,
    /// Characters refused in logins, to stand in for an ERP that has such rules.
    refused: &'static [char],
}

/// Creation time of seeded entries that name none: 2025-01-01T00:00:00Z.
pub const SEED_CREATED: i64 = 1_735_689_600;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn hash_password(pw: &str) -> BackendResult<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| BackendError::Protocol(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| BackendError::Invalid(format!("cannot hash password: {e}")))
}

/// Argon2 verifications run at most one per core, each in working memory (19 MiB with the default
/// parameters) kept for the next one: a burst of failed logins neither spawns a thread per check
/// nor leaves freed blocks behind in allocator arenas, so memory stays flat under brute force.
struct Verifier {
    permits: tokio::sync::Semaphore,
    memory: std::sync::Mutex<Vec<Vec<argon2::Block>>>,
}

static VERIFIER: std::sync::LazyLock<Verifier> = std::sync::LazyLock::new(|| Verifier {
    permits: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
    memory: std::sync::Mutex::default(),
});

async fn verify_password(hash: String, password: String) -> BackendResult<bool> {
    let _permit = VERIFIER.permits.acquire().await.map_err(|_| BackendError::Unavailable("closed".into()))?;
    tokio::task::spawn_blocking(move || {
        let mut memory = VERIFIER.memory.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        let ok = verify_in(&mut memory, &hash, &password);
        VERIFIER.memory.lock().unwrap_or_else(|e| e.into_inner()).push(memory);
        ok
    })
    .await
    .map_err(|e| BackendError::Unavailable(format!("password check task failed: {e}")))
}

/// Checks `password` against a PHC-format Argon2 hash, using `memory` as working memory.
fn verify_in(memory: &mut Vec<argon2::Block>, hash: &str, password: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let (Ok(params), Ok(algorithm)) =
        (argon2::Params::try_from(&parsed), argon2::Algorithm::try_from(parsed.algorithm))
    else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    memory.resize(params.block_count(), argon2::Block::default());
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
        .is_ok()
        && bool::from(out.ct_eq(expected.as_bytes()))
}

fn parse_id(id: &str) -> Option<u64> {
    id.parse().ok()
}

impl MemoryBackend {
    pub fn empty() -> MemoryBackend {
        MemoryBackend { state: RwLock::new(State { next_user: 1, next_group: 1, ..Default::default() }), refused: &[] }
    }

    /// Refuses these characters in logins, as some ERPs do (Dolibarr: `@`).
    pub fn refusing_login_chars(mut self, refused: &'static [char]) -> Self {
        self.refused = refused;
        self
    }

    fn check_login(&self, login: &str) -> BackendResult<()> {
        match login.chars().find(|c| self.refused.contains(c)) {
            Some(c) => Err(BackendError::Invalid(format!("login {login:?} contains {c:?}, which is refused"))),
            None => Ok(()),
        }
    }

    pub fn from_file(path: &Path) -> Result<MemoryBackend, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read seed {}: {e}", path.display()))?;
        let seed: Seed = serde_json::from_str(&text).map_err(|e| format!("seed {}: {e}", path.display()))?;
        MemoryBackend::from_seed(seed).map_err(|e| format!("seed {}: {e}", path.display()))
    }

    pub fn from_seed(seed: Seed) -> Result<MemoryBackend, String> {
        let b = MemoryBackend::empty();
        let ts = now();
        {
            let mut st = b.state.write().map_err(|_| "lock poisoned")?;
            // Lower-cased login -> id, so loading stays linear in the size of the seed.
            let mut logins: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
            let mut managers = Vec::new();
            for su in seed.users {
                let id = st.next_user;
                if logins.insert(su.login.to_lowercase(), id).is_some() {
                    return Err(format!("duplicate login {:?}", su.login));
                }
                st.next_user += 1;
                let hash = match (su.password_hash, su.password) {
                    (Some(h), _) => {
                        PasswordHash::new(&h).map_err(|e| format!("user {}: bad password_hash: {e}", su.login))?;
                        Some(h)
                    }
                    (None, Some(p)) => Some(hash_password(&p).map_err(|e| e.to_string())?),
                    (None, None) => None,
                };
                if let Some(h) = hash {
                    st.hashes.insert(id, h);
                }
                st.logins.insert(su.login.to_ascii_lowercase(), id);
                st.users.insert(
                    id,
                    User {
                        id: id.to_string(),
                        login: su.login,
                        first_name: su.firstname,
                        last_name: su.lastname,
                        email: su.email,
                        phone: su.phone,
                        mobile: su.mobile,
                        title: su.title,
                        employee_number: su.employee_number,
                        locale: su.locale,
                        active: su.active,
                        admin: su.admin,
                        created: Some(su.created.unwrap_or(SEED_CREATED)),
                        modified: Some(ts),
                        manager: None,
                        custom: su
                            .custom
                            .into_iter()
                            .map(|(k, v)| match v {
                                SeedValue::One(v) => (k, vec![v]),
                                SeedValue::Many(v) => (k, v),
                            })
                            .filter(|(_, v)| !v.is_empty())
                            .collect(),
                        system: su.system,
                    },
                );
                if let Some(m) = su.manager {
                    managers.push((id, m));
                }
            }
            for (id, login) in managers {
                let m = logins.get(&login.to_lowercase()).ok_or_else(|| format!("unknown manager {login:?}"))?;
                let m = m.to_string();
                if let Some(u) = st.users.get_mut(&id) {
                    u.manager = Some(m);
                }
            }
            let mut nesting = Vec::new();
            for sg in seed.groups {
                if st.groups.values().any(|g| g.name.eq_ignore_ascii_case(&sg.name)) {
                    return Err(format!("duplicate group {:?}", sg.name));
                }
                let mut members = Vec::new();
                for login in &sg.members {
                    let id = logins
                        .get(&login.to_lowercase())
                        .ok_or_else(|| format!("group {}: unknown member {login:?}", sg.name))?;
                    members.push(id.to_string());
                }
                let id = st.next_group;
                st.next_group += 1;
                st.groups.insert(
                    id,
                    Group {
                        id: id.to_string(),
                        name: sg.name,
                        description: sg.description,
                        members,
                        member_groups: Vec::new(),
                        created: Some(sg.created.unwrap_or(SEED_CREATED)),
                        modified: Some(ts),
                    },
                );
                nesting.push((id, sg.member_groups));
            }
            for (id, children) in nesting {
                for name in children {
                    let child = st
                        .groups
                        .iter()
                        .find(|(_, g)| g.name.eq_ignore_ascii_case(&name))
                        .map(|(cid, _)| cid.to_string())
                        .ok_or_else(|| format!("unknown member group {name:?}"))?;
                    if let Some(g) = st.groups.get_mut(&id) {
                        g.member_groups.push(child);
                    }
                }
            }
        }
        Ok(b)
    }

    fn read(&self) -> BackendResult<std::sync::RwLockReadGuard<'_, State>> {
        self.state.read().map_err(|_| BackendError::Unavailable("memory backend lock poisoned".into()))
    }
    fn write(&self) -> BackendResult<std::sync::RwLockWriteGuard<'_, State>> {
        self.state.write().map_err(|_| BackendError::Unavailable("memory backend lock poisoned".into()))
    }
}

fn login_taken(st: &State, login: &str, except: Option<u64>) -> bool {
    st.logins.get(&login.to_ascii_lowercase()).is_some_and(|id| Some(*id) != except)
}

fn group_taken(st: &State, name: &str, except: Option<u64>) -> bool {
    st.groups.iter().any(|(id, g)| Some(*id) != except && g.name.eq_ignore_ascii_case(name))
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn instance(&self) -> String {
        "memory".into()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
    fn refused_login_chars(&self) -> &'static [char] {
        self.refused
    }

    async fn probe(&self) -> BackendResult<ProbeReport> {
        let st = self.read()?;
        Ok(ProbeReport {
            backend: "memory",
            version: None,
            notes: vec![format!("{} users, {} groups in memory", st.users.len(), st.groups.len())],
            capabilities: Capabilities::ALL,
        })
    }

    async fn list_users(&self) -> BackendResult<Vec<User>> {
        Ok(self.read()?.users.values().cloned().collect())
    }

    async fn list_users_changed_since(&self, since: i64) -> BackendResult<Vec<User>> {
        Ok(self.read()?.users.values().filter(|u| u.modified.unwrap_or(0) >= since).cloned().collect())
    }

    async fn get_user(&self, id: &str) -> BackendResult<Option<User>> {
        Ok(parse_id(id).and_then(|id| self.read().ok()?.users.get(&id).cloned()))
    }

    async fn find_user_by_login(&self, login: &str) -> BackendResult<Option<User>> {
        let st = self.read()?;
        Ok(st.logins.get(&login.to_ascii_lowercase()).and_then(|id| st.users.get(id)).cloned())
    }

    async fn list_groups(&self) -> BackendResult<Vec<Group>> {
        Ok(self.read()?.groups.values().cloned().collect())
    }

    async fn get_group(&self, id: &str) -> BackendResult<Option<Group>> {
        Ok(parse_id(id).and_then(|id| self.read().ok()?.groups.get(&id).cloned()))
    }

    async fn create_user(&self, nu: &NewUser) -> BackendResult<User> {
        if nu.login.trim().is_empty() {
            return Err(BackendError::Invalid("login is required".into()));
        }
        self.check_login(&nu.login)?;
        let hash = match &nu.password {
            Some(p) => Some(hash_password(p)?),
            None => None,
        };
        let mut st = self.write()?;
        if login_taken(&st, &nu.login, None) {
            return Err(BackendError::Conflict(format!("login {} already exists", nu.login)));
        }
        let id = st.next_user;
        st.next_user += 1;
        let ts = now();
        let user = User {
            id: id.to_string(),
            login: nu.login.clone(),
            first_name: nu.first_name.clone(),
            last_name: nu.last_name.clone(),
            email: nu.email.clone(),
            phone: nu.phone.clone(),
            mobile: nu.mobile.clone(),
            title: nu.title.clone(),
            employee_number: nu.employee_number.clone(),
            locale: nu.locale.clone(),
            active: nu.active,
            admin: nu.admin,
            created: Some(ts),
            modified: Some(ts),
            manager: nu.manager.clone(),
            custom: nu.custom.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect(),
            system: false,
        };
        if let Some(h) = hash {
            st.hashes.insert(id, h);
        }
        st.logins.insert(user.login.to_ascii_lowercase(), id);
        st.users.insert(id, user.clone());
        Ok(user)
    }

    async fn update_user(&self, id: &str, changes: &UserChanges) -> BackendResult<User> {
        let nid = parse_id(id).ok_or_else(|| BackendError::NotFound(format!("user {id}")))?;
        if let Some(login) = &changes.login {
            self.check_login(login)?;
        }
        let mut st = self.write()?;
        if let Some(login) = &changes.login
            && login_taken(&st, login, Some(nid))
        {
            return Err(BackendError::Conflict(format!("login {login} already exists")));
        }
        let u = st.users.get_mut(&nid).ok_or_else(|| BackendError::NotFound(format!("user {id}")))?;
        let old_login = u.login.to_ascii_lowercase();
        *u = changes.apply_to(u);
        u.modified = Some(now());
        let u = u.clone();
        st.logins.remove(&old_login);
        st.logins.insert(u.login.to_ascii_lowercase(), nid);
        Ok(u)
    }

    async fn delete_user(&self, id: &str) -> BackendResult<()> {
        let nid = parse_id(id).ok_or_else(|| BackendError::NotFound(format!("user {id}")))?;
        let mut st = self.write()?;
        let gone = st.users.remove(&nid).ok_or_else(|| BackendError::NotFound(format!("user {id}")))?;
        st.logins.remove(&gone.login.to_ascii_lowercase());
        st.hashes.remove(&nid);
        for g in st.groups.values_mut() {
            g.members.retain(|m| m != id);
        }
        // Like an ERP without a foreign key: subordinates keep pointing at the gone manager.
        Ok(())
    }

    async fn set_password(&self, id: &str, password: &str) -> BackendResult<()> {
        let nid = parse_id(id).ok_or_else(|| BackendError::NotFound(format!("user {id}")))?;
        let hash = hash_password(password)?;
        let mut st = self.write()?;
        let u = st.users.get_mut(&nid).ok_or_else(|| BackendError::NotFound(format!("user {id}")))?;
        u.modified = Some(now());
        st.hashes.insert(nid, hash);
        Ok(())
    }

    async fn check_password(&self, user: &User, password: &str) -> BackendResult<bool> {
        let Some(nid) = parse_id(&user.id) else { return Ok(false) };
        let (hash, active) = {
            let st = self.read()?;
            match (st.hashes.get(&nid), st.users.get(&nid)) {
                (Some(h), Some(u)) => (h.clone(), u.active),
                _ => return Ok(false),
            }
        };
        if !active {
            return Ok(false);
        }
        verify_password(hash, password.to_string()).await
    }

    async fn create_group(&self, ng: &NewGroup) -> BackendResult<Group> {
        if ng.name.trim().is_empty() {
            return Err(BackendError::Invalid("group name is required".into()));
        }
        let mut st = self.write()?;
        if group_taken(&st, &ng.name, None) {
            return Err(BackendError::Conflict(format!("group {} already exists", ng.name)));
        }
        for m in &ng.members {
            if parse_id(m).is_none_or(|id| !st.users.contains_key(&id)) {
                return Err(BackendError::NotFound(format!("user {m}")));
            }
        }
        for m in &ng.member_groups {
            if parse_id(m).is_none_or(|id| !st.groups.contains_key(&id)) {
                return Err(BackendError::NotFound(format!("group {m}")));
            }
        }
        let id = st.next_group;
        st.next_group += 1;
        let ts = now();
        let g = Group {
            id: id.to_string(),
            name: ng.name.clone(),
            description: ng.description.clone(),
            members: ng.members.clone(),
            member_groups: ng.member_groups.clone(),
            created: Some(ts),
            modified: Some(ts),
        };
        st.groups.insert(id, g.clone());
        Ok(g)
    }

    async fn update_group(&self, id: &str, changes: &GroupChanges) -> BackendResult<Group> {
        let nid = parse_id(id).ok_or_else(|| BackendError::NotFound(format!("group {id}")))?;
        let mut st = self.write()?;
        if let Some(name) = &changes.name
            && group_taken(&st, name, Some(nid))
        {
            return Err(BackendError::Conflict(format!("group {name} already exists")));
        }
        let g = st.groups.get_mut(&nid).ok_or_else(|| BackendError::NotFound(format!("group {id}")))?;
        if let Some(n) = &changes.name {
            g.name = n.clone();
        }
        if let Some(d) = &changes.description {
            g.description = d.clone();
        }
        g.modified = Some(now());
        Ok(g.clone())
    }

    async fn delete_group(&self, id: &str) -> BackendResult<()> {
        let nid = parse_id(id).ok_or_else(|| BackendError::NotFound(format!("group {id}")))?;
        let mut st = self.write()?;
        st.groups.remove(&nid).ok_or_else(|| BackendError::NotFound(format!("group {id}")))?;
        for g in st.groups.values_mut() {
            g.member_groups.retain(|m| m != id);
        }
        Ok(())
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> BackendResult<()> {
        let gid = parse_id(group_id).ok_or_else(|| BackendError::NotFound(format!("group {group_id}")))?;
        let mut st = self.write()?;
        if parse_id(user_id).is_none_or(|id| !st.users.contains_key(&id)) {
            return Err(BackendError::NotFound(format!("user {user_id}")));
        }
        let g = st.groups.get_mut(&gid).ok_or_else(|| BackendError::NotFound(format!("group {group_id}")))?;
        if !g.members.iter().any(|m| m == user_id) {
            g.members.push(user_id.to_string());
            g.modified = Some(now());
        }
        Ok(())
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> BackendResult<()> {
        let gid = parse_id(group_id).ok_or_else(|| BackendError::NotFound(format!("group {group_id}")))?;
        let mut st = self.write()?;
        let g = st.groups.get_mut(&gid).ok_or_else(|| BackendError::NotFound(format!("group {group_id}")))?;
        let before = g.members.len();
        g.members.retain(|m| m != user_id);
        if g.members.len() != before {
            g.modified = Some(now());
        }
        Ok(())
    }

    async fn add_member_group(&self, group_id: &str, child_id: &str) -> BackendResult<()> {
        let gid = parse_id(group_id).ok_or_else(|| BackendError::NotFound(format!("group {group_id}")))?;
        let mut st = self.write()?;
        if parse_id(child_id).is_none_or(|id| !st.groups.contains_key(&id)) {
            return Err(BackendError::NotFound(format!("group {child_id}")));
        }
        let g = st.groups.get_mut(&gid).ok_or_else(|| BackendError::NotFound(format!("group {group_id}")))?;
        if !g.member_groups.iter().any(|m| m == child_id) {
            g.member_groups.push(child_id.to_string());
            g.modified = Some(now());
        }
        Ok(())
    }

    async fn remove_member_group(&self, group_id: &str, child_id: &str) -> BackendResult<()> {
        let gid = parse_id(group_id).ok_or_else(|| BackendError::NotFound(format!("group {group_id}")))?;
        let mut st = self.write()?;
        let g = st.groups.get_mut(&gid).ok_or_else(|| BackendError::NotFound(format!("group {group_id}")))?;
        let before = g.member_groups.len();
        g.member_groups.retain(|m| m != child_id);
        if g.member_groups.len() != before {
            g.modified = Some(now());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_agrees_with_argon2_and_reuses_its_memory() {
        let h = hash_password("right").unwrap();
        let mut memory = Vec::new();
        assert!(verify_in(&mut memory, &h, "right"));
        let (len, at) = (memory.len(), memory.as_ptr());
        assert!(!verify_in(&mut memory, &h, "wrong"));
        assert_eq!((memory.len(), memory.as_ptr()), (len, at), "same working memory, not a new allocation");
        // Hashes made with other parameters (smaller memory, Argon2i, version 0x10) verify too.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let params = argon2::Params::new(1024, 2, 1, None).unwrap();
        let other = Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x10, params)
            .hash_password(b"x", &salt)
            .unwrap()
            .to_string();
        assert!(verify_in(&mut memory, &other, "x"));
        assert!(!verify_in(&mut memory, &other, "y"));
        assert!(!verify_in(&mut memory, "$argon2id$v=19$garbage", "x"));
        assert!(!verify_in(&mut memory, "not a hash", "x"));
    }

    fn seed() -> Seed {
        serde_json::from_str(
            r#"{"users":[{"login":"alice","firstname":"Alice","password":"pw-alice"},
                         {"login":"bob","active":false,"password":"pw-bob"}],
                "groups":[{"name":"devs","members":["alice","bob"]}]}"#,
        )
        .unwrap()
    }

    /// The login index follows creates, renames and deletes.
    #[tokio::test]
    async fn logins_are_unique_case_insensitively_through_renames_and_deletes() {
        let b = MemoryBackend::from_seed(seed()).unwrap();
        let new = |login: &str| NewUser { login: login.into(), ..Default::default() };
        assert!(matches!(b.create_user(&new("ALICE")).await, Err(BackendError::Conflict(_))));
        let alice = b.find_user_by_login("Alice").await.unwrap().unwrap();
        b.update_user(&alice.id, &UserChanges { login: Some("alicia".into()), ..Default::default() }).await.unwrap();
        assert!(b.find_user_by_login("alice").await.unwrap().is_none());
        assert_eq!(b.find_user_by_login("ALICIA").await.unwrap().unwrap().id, alice.id);
        let bob = b.find_user_by_login("bob").await.unwrap().unwrap();
        let e = b.update_user(&bob.id, &UserChanges { login: Some("Alicia".into()), ..Default::default() }).await;
        assert!(matches!(e, Err(BackendError::Conflict(_))));
        b.create_user(&new("alice")).await.unwrap();
        b.delete_user(&alice.id).await.unwrap();
        assert!(b.find_user_by_login("alicia").await.unwrap().is_none());
        b.create_user(&new("alicia")).await.unwrap();
    }

    #[tokio::test]
    async fn seed_loads_and_passwords_check() {
        let b = MemoryBackend::from_seed(seed()).unwrap();
        let alice = b.find_user_by_login("ALICE").await.unwrap().unwrap();
        assert!(b.check_password(&alice, "pw-alice").await.unwrap());
        assert!(!b.check_password(&alice, "nope").await.unwrap());
        let bob = b.find_user_by_login("bob").await.unwrap().unwrap();
        assert!(!b.check_password(&bob, "pw-bob").await.unwrap(), "disabled users cannot log in");
        let groups = b.list_groups().await.unwrap();
        assert_eq!(groups[0].members, vec![alice.id.clone(), bob.id.clone()]);
    }

    #[tokio::test]
    async fn seed_errors_are_named() {
        let bad: Seed = serde_json::from_str(r#"{"groups":[{"name":"g","members":["ghost"]}]}"#).unwrap();
        let e = MemoryBackend::from_seed(bad).err().unwrap();
        assert!(e.contains("ghost"), "{e}");
        assert!(serde_json::from_str::<Seed>(r#"{"users":[{"login":"a","pasword":"x"}]}"#).is_err());
    }

    #[tokio::test]
    async fn uniqueness_and_membership() {
        let b = MemoryBackend::from_seed(seed()).unwrap();
        let e = b.create_user(&NewUser { login: "Alice".into(), ..Default::default() }).await.unwrap_err();
        assert!(matches!(e, BackendError::Conflict(_)));
        let c = b.create_user(&NewUser { login: "carol".into(), active: true, ..Default::default() }).await.unwrap();
        b.add_member("1", &c.id).await.unwrap();
        b.add_member("1", &c.id).await.unwrap();
        assert_eq!(b.get_group("1").await.unwrap().unwrap().members.len(), 3);
        b.delete_user(&c.id).await.unwrap();
        assert_eq!(b.get_group("1").await.unwrap().unwrap().members.len(), 2);
        assert!(matches!(b.add_member("1", "999").await, Err(BackendError::NotFound(_))));
    }
}
