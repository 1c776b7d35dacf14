//! Writes: every change goes to the backend first; only what the backend acknowledged reaches the
//! snapshot, before the caller answers its client (read-your-writes). Uniqueness is checked against
//! the snapshot before the backend is called, capabilities are respected before any call, and each
//! write leaves one audit line.

use std::sync::Arc;

use super::{Directory, DirectoryError};
use crate::backend::BackendError;
use crate::model::{Group, GroupChanges, NewGroup, NewUser, User, UserChanges};

/// Who asks for a change, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Bind DN, token name, ...
    pub who: String,
    /// Source address.
    pub source: String,
    /// `ldap` or `scim`.
    pub frontend: &'static str,
}

impl Actor {
    pub fn system() -> Actor {
        Actor { who: "idgate".into(), source: "-".into(), frontend: "internal" }
    }
}

fn audit<T>(actor: &Actor, op: &str, target: &str, result: &Result<T, DirectoryError>) {
    match result {
        Ok(_) => tracing::info!(
            target: "idgate::audit",
            event = "write", frontend = actor.frontend, who = %actor.who, source = %actor.source,
            op, target, outcome = "ok",
        ),
        Err(e) => tracing::info!(
            target: "idgate::audit",
            event = "write", frontend = actor.frontend, who = %actor.who, source = %actor.source,
            op, target, outcome = "failed", error = %e,
        ),
    }
    let result = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!("idgate_writes_total", "frontend" => actor.frontend, "op" => op.to_string(), "result" => result)
        .increment(1);
}

impl Directory {
    fn check(&self, allowed: bool, what: &str) -> Result<(), DirectoryError> {
        if allowed { Ok(()) } else { Err(self.backend.unsupported(what).into()) }
    }

    /// `user:<login>` for audit lines, or the id when the user is not in the snapshot.
    fn user_label(&self, id: &str) -> String {
        match self.snapshot().ok().and_then(|s| s.user_by_id(id).map(|u| u.login.clone())) {
            Some(login) => format!("user:{login}"),
            None => format!("user-id:{id}"),
        }
    }

    fn group_label(&self, id: &str) -> String {
        match self.snapshot().ok().and_then(|s| s.group_index(id).map(|i| s.group(i).name.clone())) {
            Some(name) => format!("group:{name}"),
            None => format!("group-id:{id}"),
        }
    }

    fn login_taken(&self, login: &str, except: Option<&str>) -> Result<bool, DirectoryError> {
        let snap = self.snapshot()?;
        Ok(snap.user_by_login(login).is_some_and(|u| Some(u.id.as_str()) != except))
    }

    fn group_name_taken(&self, name: &str, except: Option<&str>) -> Result<bool, DirectoryError> {
        let snap = self.snapshot()?;
        Ok(snap.group_by_name(name).is_some_and(|g| Some(g.id.as_str()) != except))
    }

    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<Arc<User>, DirectoryError> {
        let r = async {
            self.check(self.capabilities().user_create, "creating users")?;
            if let Some(p) = &new.password {
                self.backend.validate_password(p)?;
            }
            if self.login_taken(&new.login, None)? {
                return Err(BackendError::Conflict(format!("login {} already exists", new.login)).into());
            }
            let u = self.backend.create_user(&new).await?;
            self.put_user(u.clone()).await;
            Ok(Arc::new(u))
        }
        .await;
        audit(actor, "create_user", &format!("user:{}", new.login), &r);
        r
    }

    pub async fn update_user(
        &self,
        actor: &Actor,
        id: &str,
        changes: UserChanges,
    ) -> Result<Arc<User>, DirectoryError> {
        let label = self.user_label(id);
        let r = async {
            self.check(self.capabilities().user_update, "changing users")?;
            if let Some(login) = &changes.login {
                self.check(self.capabilities().user_rename, "renaming users")?;
                if self.login_taken(login, Some(id))? {
                    return Err(BackendError::Conflict(format!("login {login} already exists")).into());
                }
            }
            if changes.admin.is_some() {
                self.check(self.capabilities().admin_flag_write, "changing the admin flag")?;
            }
            let u = self.backend.update_user(id, &changes).await?;
            if changes.active == Some(false) {
                self.evict_bind_cache(id);
            }
            self.put_user(u.clone()).await;
            Ok(Arc::new(u))
        }
        .await;
        audit(actor, "update_user", &label, &r);
        r
    }

    pub async fn delete_user(&self, actor: &Actor, id: &str) -> Result<(), DirectoryError> {
        let label = self.user_label(id);
        let r = async {
            self.check(self.capabilities().user_delete, "deleting users")?;
            match self.backend.delete_user(id).await {
                // Already gone in the backend: make the cache agree, then report it.
                Err(BackendError::NotFound(m)) => {
                    self.forget_user(id).await;
                    Err(BackendError::NotFound(m).into())
                }
                Err(e) => Err(e.into()),
                Ok(()) => {
                    self.forget_user(id).await;
                    Ok(())
                }
            }
        }
        .await;
        audit(actor, "delete_user", &label, &r);
        r
    }

    pub async fn set_password(&self, actor: &Actor, id: &str, password: &str) -> Result<(), DirectoryError> {
        let label = self.user_label(id);
        let r = async {
            self.check(self.capabilities().password_set, "setting passwords")?;
            self.backend.validate_password(password)?;
            let res = self.backend.set_password(id, password).await;
            // Evict even on failure: the backend may have applied it before failing.
            self.evict_bind_cache(id);
            res?;
            Ok(())
        }
        .await;
        audit(actor, "set_password", &label, &r);
        r
    }

    pub async fn create_group(&self, actor: &Actor, new: NewGroup) -> Result<Arc<Group>, DirectoryError> {
        let r = async {
            self.check(self.capabilities().group_create, "creating groups")?;
            if !new.members.is_empty() {
                self.check(self.capabilities().member_add, "adding group members")?;
            }
            if self.group_name_taken(&new.name, None)? {
                return Err(BackendError::Conflict(format!("group {} already exists", new.name)).into());
            }
            let g = self.backend.create_group(&new).await?;
            self.put_group(g.clone()).await;
            Ok(Arc::new(g))
        }
        .await;
        audit(actor, "create_group", &format!("group:{}", new.name), &r);
        r
    }

    pub async fn update_group(
        &self,
        actor: &Actor,
        id: &str,
        changes: GroupChanges,
    ) -> Result<Arc<Group>, DirectoryError> {
        let label = self.group_label(id);
        let r = async {
            self.check(self.capabilities().group_update, "renaming or changing groups")?;
            if let Some(name) = &changes.name
                && self.group_name_taken(name, Some(id))?
            {
                return Err(BackendError::Conflict(format!("group {name} already exists")).into());
            }
            let g = self.backend.update_group(id, &changes).await?;
            self.put_group(g.clone()).await;
            Ok(Arc::new(g))
        }
        .await;
        audit(actor, "update_group", &label, &r);
        r
    }

    pub async fn delete_group(&self, actor: &Actor, id: &str) -> Result<(), DirectoryError> {
        let label = self.group_label(id);
        let r = async {
            self.check(self.capabilities().group_delete, "deleting groups")?;
            self.backend.delete_group(id).await?;
            self.forget_group(id).await;
            Ok(())
        }
        .await;
        audit(actor, "delete_group", &label, &r);
        r
    }

    /// Adds a member; adding an existing member succeeds without a backend call.
    pub async fn add_member(&self, actor: &Actor, group_id: &str, user_id: &str) -> Result<(), DirectoryError> {
        let label = format!("{} {}", self.group_label(group_id), self.user_label(user_id));
        let r = self.change_member(group_id, user_id, true).await;
        audit(actor, "add_member", &label, &r);
        r
    }

    /// Removes a member; removing a non-member succeeds without a backend call.
    pub async fn remove_member(&self, actor: &Actor, group_id: &str, user_id: &str) -> Result<(), DirectoryError> {
        let label = format!("{} {}", self.group_label(group_id), self.user_label(user_id));
        let r = self.change_member(group_id, user_id, false).await;
        audit(actor, "remove_member", &label, &r);
        r
    }

    async fn change_member(&self, group_id: &str, user_id: &str, add: bool) -> Result<(), DirectoryError> {
        let snap = self.snapshot()?;
        let gi = snap.group_index(group_id).ok_or_else(|| BackendError::NotFound(format!("group {group_id}")))?;
        if snap.user_index(user_id).is_none() {
            return Err(BackendError::NotFound(format!("user {user_id}")).into());
        }
        let group = snap.group(gi).clone();
        let present = group.members.iter().any(|m| m == user_id);
        if present == add {
            return Ok(());
        }
        if add {
            self.check(self.capabilities().member_add, "adding group members")?;
            self.backend.add_member(group_id, user_id).await?;
        } else {
            self.check(self.capabilities().member_remove, "removing group members")?;
            self.backend.remove_member(group_id, user_id).await?;
        }
        let mut g = (*group).clone();
        if add {
            g.members.push(user_id.to_string());
        } else {
            g.members.retain(|m| m != user_id);
        }
        self.put_group(g).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::{MemoryBackend, Seed};
    use crate::backend::{Backend, BackendResult, Capabilities, ProbeReport};
    use crate::config::Config;
    use crate::directory::AuthOutcome;
    use async_trait::async_trait;

    const SEED: &str = r#"{"users":[{"login":"alice","password":"pw-a"},{"login":"bob"}],
                           "groups":[{"name":"devs","members":["alice"]}]}"#;
    const IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    async fn dir_with(backend: Arc<dyn Backend>) -> Arc<Directory> {
        let cfg = Config::parse("[backend]\nkind=\"memory\"\n").unwrap();
        let d = Directory::new(&cfg, backend);
        d.refresh_full().await.unwrap();
        d
    }

    fn memory() -> Arc<MemoryBackend> {
        let seed: Seed = serde_json::from_str(SEED).unwrap();
        Arc::new(MemoryBackend::from_seed(seed).unwrap())
    }

    #[tokio::test]
    async fn writes_are_visible_at_once() {
        let d = dir_with(memory()).await;
        let a = Actor::system();
        let u = d.create_user(&a, NewUser { login: "carol".into(), active: true, ..Default::default() }).await.unwrap();
        assert!(d.snapshot().unwrap().user_by_login("carol").is_some());
        let g = d.snapshot().unwrap().group_by_name("devs").unwrap().id.clone();
        d.add_member(&a, &g, &u.id).await.unwrap();
        let s = d.snapshot().unwrap();
        assert_eq!(s.members_of(s.group_index(&g).unwrap()).len(), 2);
        d.remove_member(&a, &g, &u.id).await.unwrap();
        d.delete_user(&a, &u.id).await.unwrap();
        assert!(d.snapshot().unwrap().user_by_login("carol").is_none());
    }

    #[tokio::test]
    async fn duplicates_are_refused_before_the_backend() {
        let d = dir_with(memory()).await;
        let a = Actor::system();
        let e = d.create_user(&a, NewUser { login: "ALICE".into(), ..Default::default() }).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Backend(BackendError::Conflict(_))), "{e}");
        let bob = d.snapshot().unwrap().user_by_login("bob").unwrap().id.clone();
        let e = d
            .update_user(&a, &bob, UserChanges { login: Some("alice".into()), ..Default::default() })
            .await
            .unwrap_err();
        assert!(matches!(e, DirectoryError::Backend(BackendError::Conflict(_))));
        let e = d.create_group(&a, NewGroup { name: "Devs".into(), ..Default::default() }).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Backend(BackendError::Conflict(_))));
    }

    #[tokio::test]
    async fn password_change_evicts_the_bind_cache() {
        let d = dir_with(memory()).await;
        let a = Actor::system();
        assert!(matches!(d.authenticate_user("alice", "pw-a", IP).await.unwrap(), AuthOutcome::User(_)));
        let id = d.snapshot().unwrap().user_by_login("alice").unwrap().id.clone();
        d.set_password(&a, &id, "pw-new").await.unwrap();
        assert!(matches!(d.authenticate_user("alice", "pw-a", IP).await.unwrap(), AuthOutcome::Invalid));
        assert!(matches!(d.authenticate_user("alice", "pw-new", IP).await.unwrap(), AuthOutcome::User(_)));
        d.update_user(&a, &id, UserChanges { active: Some(false), ..Default::default() }).await.unwrap();
        assert!(matches!(d.authenticate_user("alice", "pw-new", IP).await.unwrap(), AuthOutcome::Invalid));
    }

    /// A backend that can do nothing with groups and fails every write.
    struct Limited(Arc<MemoryBackend>);

    #[async_trait]
    impl Backend for Limited {
        fn kind(&self) -> &'static str {
            "limited"
        }
        fn instance(&self) -> String {
            "t".into()
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities { group_create: false, member_remove: false, ..Capabilities::ALL }
        }
        async fn probe(&self) -> BackendResult<ProbeReport> {
            self.0.probe().await
        }
        async fn list_users(&self) -> BackendResult<Vec<User>> {
            self.0.list_users().await
        }
        async fn list_users_changed_since(&self, s: i64) -> BackendResult<Vec<User>> {
            self.0.list_users_changed_since(s).await
        }
        async fn get_user(&self, id: &str) -> BackendResult<Option<User>> {
            self.0.get_user(id).await
        }
        async fn find_user_by_login(&self, l: &str) -> BackendResult<Option<User>> {
            self.0.find_user_by_login(l).await
        }
        async fn list_groups(&self) -> BackendResult<Vec<Group>> {
            self.0.list_groups().await
        }
        async fn get_group(&self, id: &str) -> BackendResult<Option<Group>> {
            self.0.get_group(id).await
        }
        async fn create_user(&self, _: &NewUser) -> BackendResult<User> {
            Err(BackendError::Unavailable("down".into()))
        }
        async fn update_user(&self, _: &str, _: &UserChanges) -> BackendResult<User> {
            Err(BackendError::Unavailable("down".into()))
        }
        async fn delete_user(&self, _: &str) -> BackendResult<()> {
            Err(BackendError::Unavailable("down".into()))
        }
        async fn set_password(&self, _: &str, _: &str) -> BackendResult<()> {
            Err(BackendError::Unavailable("down".into()))
        }
        async fn check_password(&self, u: &User, p: &str) -> BackendResult<bool> {
            self.0.check_password(u, p).await
        }
        async fn create_group(&self, _: &NewGroup) -> BackendResult<Group> {
            panic!("must not be called: not supported")
        }
        async fn update_group(&self, _: &str, _: &GroupChanges) -> BackendResult<Group> {
            Err(BackendError::Unavailable("down".into()))
        }
        async fn delete_group(&self, _: &str) -> BackendResult<()> {
            Err(BackendError::Unavailable("down".into()))
        }
        async fn add_member(&self, _: &str, _: &str) -> BackendResult<()> {
            Err(BackendError::Unavailable("down".into()))
        }
        async fn remove_member(&self, _: &str, _: &str) -> BackendResult<()> {
            panic!("must not be called: not supported")
        }
    }

    #[tokio::test]
    async fn capabilities_and_failures_change_nothing() {
        let d = dir_with(Arc::new(Limited(memory()))).await;
        let a = Actor::system();
        let gen0 = d.snapshot().unwrap().generation;
        let e = d.create_group(&a, NewGroup { name: "x".into(), ..Default::default() }).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Backend(BackendError::Unsupported { .. })), "{e}");
        let s = d.snapshot().unwrap();
        let g = s.group_by_name("devs").unwrap().id.clone();
        let alice = s.user_by_login("alice").unwrap().id.clone();
        let bob = s.user_by_login("bob").unwrap().id.clone();
        let e = d.remove_member(&a, &g, &alice).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Backend(BackendError::Unsupported { .. })));
        let e = d.add_member(&a, &g, &bob).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Backend(BackendError::Unavailable(_))));
        let e = d.create_user(&a, NewUser { login: "z".into(), ..Default::default() }).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Backend(BackendError::Unavailable(_))));
        assert_eq!(d.snapshot().unwrap().generation, gen0, "no failed write reached the cache");
    }
}
