//! The one write API. Every change, whatever front end it came from, passes here:
//! - access: each write needs a [`Grant`] from [`Directory::authorize`];
//! - policy: password length and the backend's own rules, uniqueness, capabilities, all checked
//!   before the first backend call;
//! - order: writes to one user or group are serialised by a per-object lock, and an edit is
//!   decided (by the front end's closure) against the state current under that lock, so no writer
//!   overwrites another's change;
//! - effect: the backend first, then the snapshot as a delta (O(change)), stamped with the time of
//!   the write; a request of several steps that fails midway says which steps were applied;
//! - trace: one audit line per step, never a secret.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::access::{Action, Caller, Grant};
use super::{Delta, Directory, DirectoryError, Snapshot, stamped_group, stamped_user, unix_now};
use crate::config::DeleteMode;
use crate::model::{Group, GroupChanges, NewGroup, NewUser, User, UserChanges};

/// Namespaces of the gateway-side state.
const NS_EXTERNAL_ID_USER: &str = "user";
const NS_EXTERNAL_ID_GROUP: &str = "group";
const NS_DISPLAY_NAME: &str = "user.displayName";
/// The user name a client gave when the backend keeps another login, and the same lower-cased
/// (for lookups, as SCIM's `userName` compares case-insensitively).
const NS_USER_NAME: &str = "user.userName";
const NS_USER_NAME_KEY: &str = "user.userName.key";

/// What the gateway keeps about a user beyond the backend's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attached {
    pub external_id: Option<String>,
    /// A display name a client set: `None` follows the full name, `Some("")` was removed.
    pub display_name: Option<String>,
    /// The user name a client gave, where the backend keeps another login.
    pub user_name: Option<String>,
}

/// A user to create.
#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    pub new: NewUser,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    /// A client's user name (SCIM `userName`): the login is derived from it by the configured
    /// rule, and `new.login` is ignored.
    pub user_name: Option<String>,
}

/// A change to one user, decided against its current state.
#[derive(Clone, Default)]
pub struct UserEdit {
    pub changes: UserChanges,
    pub password: Option<String>,
    /// Proof of the old password, for a password change.
    pub old_password: Option<String>,
    /// `Some(v)`: set the externalId to `v`.
    pub external_id: Option<Option<String>>,
    /// `Some(v)`: the display name a client wants (`None`: removed).
    pub display_name: Option<Option<String>>,
    /// `Some(n)`: the user name a client wants; the login follows by the configured rule.
    pub user_name: Option<String>,
}

impl std::fmt::Debug for UserEdit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEdit")
            .field("changes", &self.changes)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("old_password", &self.old_password.as_ref().map(|_| "<redacted>"))
            .field("external_id", &self.external_id)
            .finish_non_exhaustive()
    }
}

impl UserEdit {
    fn touches_profile(&self) -> bool {
        !self.changes.is_empty()
            || self.external_id.is_some()
            || self.display_name.is_some()
            || self.user_name.is_some()
    }
}

/// A group to create.
#[derive(Debug, Clone, Default)]
pub struct GroupSpec {
    pub new: NewGroup,
    pub external_id: Option<String>,
}

/// A change to one group, decided against its current state.
#[derive(Debug, Clone, Default)]
pub struct GroupEdit {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    /// The complete member set wanted (backend user ids); `None` leaves the members alone.
    pub members: Option<BTreeSet<String>>,
    /// The complete set of member groups wanted (backend group ids); `None` leaves them alone.
    pub member_groups: Option<BTreeSet<String>>,
    /// Users the client explicitly asked to remove. One the cache does not list as a member (added
    /// in the ERP since the last refresh) is still removed in the backend, which is the judge.
    pub removals: BTreeSet<String>,
    pub external_id: Option<Option<String>>,
}

fn audit<T>(caller: &Caller, op: &str, target: &str, result: &Result<T, DirectoryError>) {
    match result {
        Ok(_) => tracing::info!(
            target: "idgate::audit",
            event = "write", frontend = caller.frontend, who = %caller.label, source = %caller.source,
            op, target, outcome = "ok",
        ),
        Err(e) => tracing::info!(
            target: "idgate::audit",
            event = "write", frontend = caller.frontend, who = %caller.label, source = %caller.source,
            op, target, outcome = "failed", error = %e,
        ),
    }
    let result = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!("idgate_writes_total", "frontend" => caller.frontend, "op" => op.to_string(), "result" => result)
        .increment(1);
}

/// What binds gateway-side state to one entity, so a reused id does not inherit it.
fn fingerprint(created: Option<i64>) -> String {
    created.map(|c| c.to_string()).unwrap_or_default()
}

fn state_err(e: super::StateError) -> DirectoryError {
    DirectoryError::Unavailable { message: e.to_string(), timeout: false }
}

fn now() -> i64 {
    unix_now() as i64
}

impl Directory {
    fn capable(&self, allowed: bool, what: &str) -> Result<(), DirectoryError> {
        if allowed { Ok(()) } else { Err(self.backend.unsupported(what).into()) }
    }

    /// The password policy, the same for every front end.
    pub fn check_password_policy(&self, password: &str) -> Result<(), DirectoryError> {
        let min = self.policy.password_min_length;
        if password.chars().count() < min {
            return Err(DirectoryError::invalid_attr(
                "password",
                format!("the password must have at least {min} characters"),
            ));
        }
        self.backend.validate_password(password).map_err(|e| DirectoryError::invalid_attr("password", e.to_string()))
    }

    // ---- Gateway-side state ---------------------------------------------------------------

    /// The externalId and display name kept for a user.
    pub fn attached_user(&self, u: &User) -> Attached {
        let fp = fingerprint(u.created);
        Attached {
            external_id: self.state.get(NS_EXTERNAL_ID_USER, &u.id, &fp),
            display_name: self.state.get(NS_DISPLAY_NAME, &u.id, &fp),
            user_name: self.state.get(NS_USER_NAME, &u.id, &fp),
        }
    }

    /// The user name clients see: the one a client gave, or the login.
    pub fn user_name(&self, u: &User) -> String {
        self.state.get(NS_USER_NAME, &u.id, &fingerprint(u.created)).unwrap_or_else(|| u.login.clone())
    }

    /// Slots of the users whose user name is `name` (case-insensitive): those a client named so,
    /// and the user with that login unless a client gave it another name.
    pub fn users_named(&self, snap: &Snapshot, name: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .state
            .ids_with(NS_USER_NAME_KEY, &name.to_lowercase())
            .into_iter()
            .filter_map(|(id, fp)| {
                let i = snap.user_index(&id)?;
                (fp.is_empty() || fp == fingerprint(snap.user(i).created)).then_some(i)
            })
            .collect();
        if let Some(i) = snap.user_index_by_login(name)
            && !out.contains(&i)
            && self.state.get(NS_USER_NAME, &snap.user(i).id, &fingerprint(snap.user(i).created)).is_none()
        {
            out.push(i);
        }
        out
    }

    /// The login for a client's user name, refused with a conflict naming both when another user
    /// already holds that login or that name.
    fn login_for_user_name(&self, snap: &Snapshot, name: &str, except: Option<&str>) -> Result<String, DirectoryError> {
        check_text("userName", name, false)?;
        let login = self.names.login_for(name);
        if login.trim().is_empty() {
            return Err(DirectoryError::invalid_attr("userName", format!("userName {name:?} gives an empty login")));
        }
        let bad = self.names.refused_in(&login);
        if !bad.is_empty() {
            return Err(DirectoryError::invalid_attr(
                "userName",
                format!(
                    "the {} backend refuses {:?} in logins; set [directory.user_names] rule to local-part or replace",
                    self.backend.kind(),
                    bad.iter().collect::<String>()
                ),
            ));
        }
        if let Some(&other) = self.users_named(snap, name).iter().find(|&&i| Some(snap.user(i).id.as_str()) != except) {
            return Err(DirectoryError::Conflict(format!(
                "userName {name} already exists (login {})",
                snap.user(other).login
            )));
        }
        if let Some(other) = snap.user_by_login(&login).filter(|u| Some(u.id.as_str()) != except) {
            return Err(DirectoryError::Conflict(format!(
                "userName {name} maps to login {login}, which userName {} already has",
                self.user_name(other)
            )));
        }
        Ok(login)
    }

    /// Records (or, when it equals the login, forgets) the user name a client gave.
    fn keep_user_name(&self, u: &User, name: Option<&str>) -> Result<(), super::StateError> {
        let fp = fingerprint(u.created);
        let kept = name.filter(|n| *n != u.login);
        self.state.set(NS_USER_NAME, &u.id, &fp, kept)?;
        self.state.set(NS_USER_NAME_KEY, &u.id, &fp, kept.map(str::to_lowercase).as_deref())
    }

    /// Checks a manager and extra fields a client wants to set, and makes the values canonical.
    fn check_profile_extras(
        &self,
        snap: &Snapshot,
        user_id: Option<&str>,
        manager: Option<&Option<String>>,
        custom: &mut std::collections::BTreeMap<String, Option<Vec<String>>>,
    ) -> Result<(), DirectoryError> {
        let caps = self.capabilities();
        if let Some(m) = manager {
            self.capable(caps.manager, "managers")?;
            if let Some(m) = m {
                if Some(m.as_str()) == user_id {
                    return Err(DirectoryError::invalid_attr("manager", "a user cannot be its own manager"));
                }
                if snap.user_index(m).is_none() {
                    return Err(DirectoryError::invalid_attr(
                        "manager",
                        format!("manager {m:?} is not an existing user"),
                    ));
                }
            }
        }
        if !custom.is_empty() {
            self.capable(caps.custom_fields, "writing custom attributes")?;
        }
        for (field, values) in custom.iter_mut() {
            let a = self.custom.all().iter().find(|a| a.field == *field).ok_or_else(|| {
                DirectoryError::invalid_attr(
                    "custom attribute",
                    format!("{field} is not a configured custom attribute"),
                )
            })?;
            if let Some(v) = values {
                *v = self.custom.check(a, v)?;
                if v.is_empty() {
                    *values = None;
                }
            } else if !a.writable {
                return Err(DirectoryError::Denied(format!("{} is read-only", a.name)));
            }
        }
        Ok(())
    }

    pub fn group_external_id(&self, g: &Group) -> Option<String> {
        self.state.get(NS_EXTERNAL_ID_GROUP, &g.id, &fingerprint(g.created))
    }

    /// Slots of the users (or groups) with this externalId in `snap`.
    pub fn with_external_id(&self, snap: &Snapshot, groups: bool, value: &str) -> Vec<usize> {
        let ns = if groups { NS_EXTERNAL_ID_GROUP } else { NS_EXTERNAL_ID_USER };
        self.state
            .ids_with(ns, value)
            .into_iter()
            .filter_map(|(id, fp)| {
                let (idx, created) = if groups {
                    snap.group_index(&id).map(|i| (i, snap.group(i).created))?
                } else {
                    snap.user_index(&id).map(|i| (i, snap.user(i).created))?
                };
                (fp.is_empty() || fp == fingerprint(created)).then_some(idx)
            })
            .collect()
    }

    /// Forgets everything the gateway kept about a user or a group.
    pub(super) fn forget_state(&self, id: &str, is_group: bool) {
        let namespaces: &[&str] = if is_group {
            &[NS_EXTERNAL_ID_GROUP]
        } else {
            &[NS_EXTERNAL_ID_USER, NS_DISPLAY_NAME, NS_USER_NAME, NS_USER_NAME_KEY]
        };
        for ns in namespaces {
            if let Err(e) = self.state.set(ns, id, "", None) {
                tracing::warn!(error = %e, id, "could not forget gateway state of a deleted entity");
            }
        }
    }

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

    // ---- Users ----------------------------------------------------------------------------

    pub async fn create_user(&self, caller: &Caller, mut spec: UserSpec) -> Result<Arc<User>, DirectoryError> {
        let target = format!("user:{}", spec.user_name.as_ref().unwrap_or(&spec.new.login));
        let r = async {
            let _grant = self.authorize(caller, Action::WriteUsers)?;
            self.capable(self.capabilities().user_create, "creating users")?;
            let _name_lock = match &spec.user_name {
                Some(name) => {
                    let lock = self.locks.lock(format!("name:{}", name.to_lowercase())).await;
                    spec.new.login = self.login_for_user_name(&*self.snapshot()?, name, None)?;
                    Some(lock)
                }
                None => None,
            };
            check_new_user(&spec.new)?;
            if self.hides_login(&spec.new.login) {
                return Err(DirectoryError::Conflict(format!("login {} is reserved", spec.new.login)));
            }
            let mut custom = spec.new.custom.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
            let manager = spec.new.manager.clone().map(Some);
            self.check_profile_extras(&*self.snapshot()?, None, manager.as_ref(), &mut custom)?;
            spec.new.custom = custom.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
            if let Some(display) = &spec.display_name {
                check_text("displayName", display, false)?;
            }
            if let Some(p) = &spec.new.password {
                self.check_password_policy(p)?;
            }
            let _lock = self.locks.lock(format!("login:{}", spec.new.login.to_lowercase())).await;
            if self.snapshot()?.user_by_login(&spec.new.login).is_some() {
                return Err(DirectoryError::Conflict(format!("login {} already exists", spec.new.login)));
            }
            let created = self.backend.create_user(&spec.new).await?;
            self.login_lookups.invalidate_all();
            let u = stamped_user(&created, now());
            let fp = fingerprint(u.created);
            // A new entity never has state: clear whatever an earlier one with this id left.
            let display = spec.display_name.filter(|d| *d != u.full_name());
            let kept = self
                .state
                .set(NS_EXTERNAL_ID_USER, &u.id, &fp, spec.external_id.as_deref())
                .and_then(|_| self.state.set(NS_DISPLAY_NAME, &u.id, &fp, display.as_deref()))
                .and_then(|_| self.keep_user_name(&u, spec.user_name.as_deref()));
            self.apply(vec![Delta::PutUser(u.clone())]);
            kept.map_err(|e| state_err(e).after(&["the user was created".into()], "storing its externalId"))?;
            Ok(u)
        }
        .await;
        audit(caller, "create_user", &target, &r);
        r
    }

    /// Changes a user: `decide` computes the edit from the snapshot current under the user's lock.
    pub async fn edit_user<E: From<DirectoryError>>(
        &self,
        caller: &Caller,
        id: &str,
        decide: impl FnOnce(&Snapshot, usize) -> Result<UserEdit, E>,
    ) -> Result<Arc<User>, E> {
        let _lock = self.locks.lock(format!("u:{id}")).await;
        let snap = self.snapshot()?;
        let idx = snap.user_index(id).ok_or_else(|| DirectoryError::NotFound(format!("no user {id}")))?;
        let edit = decide(&snap, idx)?;
        Ok(self.apply_user_edit(caller, &snap, idx, edit).await?)
    }

    /// Changes a user's backend fields.
    pub async fn update_user(
        &self,
        caller: &Caller,
        id: &str,
        changes: UserChanges,
    ) -> Result<Arc<User>, DirectoryError> {
        let edit = UserEdit { changes, ..Default::default() };
        self.edit_user(caller, id, |_, _| Ok::<_, DirectoryError>(edit)).await
    }

    /// Sets a password; `old` is the proof a self-service change needs.
    pub async fn set_password(
        &self,
        caller: &Caller,
        id: &str,
        password: &str,
        old: Option<&str>,
    ) -> Result<(), DirectoryError> {
        let edit = UserEdit {
            password: Some(password.to_string()),
            old_password: old.map(String::from),
            ..Default::default()
        };
        self.edit_user(caller, id, |_, _| Ok::<_, DirectoryError>(edit)).await.map(|_| ())
    }

    async fn apply_user_edit(
        &self,
        caller: &Caller,
        snap: &Snapshot,
        idx: usize,
        mut edit: UserEdit,
    ) -> Result<Arc<User>, DirectoryError> {
        let current = snap.user(idx).clone();
        let id = current.id.as_str();
        let label = format!("user:{}", current.login);
        // Everything is checked before the first backend call.
        let profile = if edit.touches_profile() { Some(self.authorize(caller, Action::WriteUsers)?) } else { None };
        let password = match &edit.password {
            Some(p) => Some((self.authorize_password(caller, &current, edit.old_password.as_deref()).await?, p)),
            None if edit.old_password.is_some() => {
                return Err(DirectoryError::invalid_attr("password", "a password cannot be removed, only replaced"));
            }
            None => None,
        };
        let caps = self.capabilities();
        let _name_lock = match edit.user_name.clone() {
            Some(name) => {
                let lock = self.locks.lock(format!("name:{}", name.to_lowercase())).await;
                let login = self.login_for_user_name(&*self.snapshot()?, &name, Some(id))?;
                edit.changes.login = (login != current.login).then_some(login);
                Some(lock)
            }
            None => None,
        };
        let UserChanges { manager, custom, .. } = &mut edit.changes;
        self.check_profile_extras(snap, Some(id), manager.as_ref(), custom)?;
        let changes = &edit.changes;
        check_user_changes(changes)?;
        if let Some(login) = &changes.login
            && self.hides_login(login)
        {
            return Err(DirectoryError::Conflict(format!("login {login} is reserved")));
        }
        if let Some(Some(display)) = &edit.display_name {
            check_text("displayName", display, false)?;
        }
        if !changes.is_empty() {
            self.capable(caps.user_update, "changing users")?;
        }
        if changes.admin.is_some() {
            self.capable(caps.admin_flag_write, "changing the admin flag")?;
        }
        if let Some((_, p)) = &password {
            self.capable(caps.password_set, "setting passwords")?;
            self.check_password_policy(p)?;
        }
        let _rename = match &changes.login {
            Some(login) => {
                self.capable(caps.user_rename, "renaming users")?;
                let lock = self.locks.lock(format!("login:{}", login.to_lowercase())).await;
                if self.snapshot()?.user_by_login(login).is_some_and(|u| u.id != id) {
                    return Err(DirectoryError::Conflict(format!("login {login} already exists")));
                }
                Some(lock)
            }
            None => None,
        };

        let mut done: Vec<String> = Vec::new();
        let mut user = current.clone();
        if let Some(grant) = &profile
            && !changes.is_empty()
        {
            let r = self.backend.update_user(id, changes).await.map_err(DirectoryError::from);
            audit(grant.caller(), "update_user", &label, &r);
            let updated = stamped_user(&r?, now());
            if updated.login != current.login {
                self.login_lookups.invalidate_all();
            }
            if changes.active == Some(false) {
                self.evict_bind_cache(id);
            }
            self.apply(vec![Delta::PutUser(updated.clone())]);
            user = updated;
            done.push("the profile attributes".into());
        }
        if let Some((grant, p)) = password {
            let r = self.backend.set_password(id, p).await.map_err(DirectoryError::from);
            // Evict even on failure: the backend may have applied it before failing.
            self.evict_bind_cache(id);
            audit(grant.caller(), "set_password", &label, &r);
            r.map_err(|e| e.after(&done, "the password change"))?;
            done.push("the password".into());
        }
        if profile.is_some() {
            let fp = fingerprint(user.created);
            if let Some(x) = &edit.external_id {
                self.state
                    .set(NS_EXTERNAL_ID_USER, id, &fp, x.as_deref())
                    .map_err(|e| state_err(e).after(&done, "storing the externalId"))?;
            }
            if let Some(name) = &edit.user_name {
                self.keep_user_name(&user, Some(name))
                    .map_err(|e| state_err(e).after(&done, "storing the userName"))?;
            } else if changes.login.is_some() {
                // A rename through a front end without user names: the login is the name now.
                self.keep_user_name(&user, None).map_err(|e| state_err(e).after(&done, "storing the userName"))?;
            }
            if let Some(wanted) = &edit.display_name {
                let kept = match wanted {
                    Some(d) if *d == user.full_name() => None,
                    Some(d) => Some(d.as_str()),
                    None => Some(""),
                };
                self.state
                    .set(NS_DISPLAY_NAME, id, &fp, kept)
                    .map_err(|e| state_err(e).after(&done, "storing the display name"))?;
            }
        }
        Ok(self.snapshot()?.user_by_id(id).cloned().unwrap_or(user))
    }

    /// The grant to set `target`'s password, with the old one proven when the policy asks for it.
    async fn authorize_password<'a>(
        &self,
        caller: &'a Caller,
        target: &User,
        old: Option<&str>,
    ) -> Result<Grant<'a>, DirectoryError> {
        let grant = self.authorize(caller, Action::SetPassword)?;
        if let Some(own) = grant.self_service {
            if caller.user_id() != Some(target.id.as_str()) {
                return Err(DirectoryError::Denied(format!("{} may not change this password", caller.label)));
            }
            if own.requires_old && old.is_none() {
                return Err(DirectoryError::Invalid {
                    attribute: Some("oldPassword"),
                    message: "changing your own password needs the old password".into(),
                });
            }
        }
        if let Some(old) = old {
            let peer = caller.source_ip();
            match self.authenticate_user(&target.login, old, peer).await? {
                super::AuthOutcome::User(_) => {}
                super::AuthOutcome::Throttled(d) => {
                    return Err(DirectoryError::Throttled(format!(
                        "too many failed password checks for this account; try again in {} s",
                        d.as_secs_f64().ceil().max(1.0)
                    )));
                }
                _ => return Err(DirectoryError::WrongPassword("the old password is wrong".into())),
            }
        }
        Ok(grant)
    }

    /// Deletes a user, or disables it when `mode` says so. `check` sees the current state under the
    /// user's lock (an ETag precondition).
    pub async fn delete_user<E: From<DirectoryError>>(
        &self,
        caller: &Caller,
        id: &str,
        mode: DeleteMode,
        check: impl FnOnce(&Snapshot, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        if mode == DeleteMode::Disable {
            let edit =
                UserEdit { changes: UserChanges { active: Some(false), ..Default::default() }, ..Default::default() };
            return self
                .edit_user(caller, id, |s, i| {
                    check(s, i)?;
                    Ok(edit)
                })
                .await
                .map(|_| ());
        }
        let label = self.user_label(id);
        let _lock = self.locks.lock(format!("u:{id}")).await;
        let r = async {
            let _grant = self.authorize(caller, Action::WriteUsers)?;
            let snap = self.snapshot()?;
            let idx = snap.user_index(id).ok_or_else(|| DirectoryError::NotFound(format!("no user {id}")))?;
            check(&snap, idx).map_err(Outcome::Front)?;
            self.capable(self.capabilities().user_delete, "deleting users")?;
            let r = self.backend.delete_user(id).await;
            // Gone in the backend either way (already gone: make the cache agree, then report it).
            if matches!(r, Ok(()) | Err(crate::backend::BackendError::NotFound(_))) {
                self.evict_bind_cache(id);
                self.login_lookups.invalidate_all();
                self.forget_state(id, false);
                self.apply(vec![Delta::DeleteUser(id.to_string())]);
            }
            Ok::<_, Outcome<E>>(r.map_err(DirectoryError::from)?)
        }
        .await;
        finish(caller, "delete_user", &label, r)
    }

    // ---- Groups ---------------------------------------------------------------------------

    pub async fn create_group(&self, caller: &Caller, spec: GroupSpec) -> Result<Arc<Group>, DirectoryError> {
        let target = format!("group:{}", spec.new.name);
        let r = async {
            let _grant = self.authorize(caller, Action::WriteGroups)?;
            self.capable(self.capabilities().group_create, "creating groups")?;
            check_text("name", &spec.new.name, false)?;
            if let Some(d) = &spec.new.description {
                check_text("description", d, true)?;
            }
            if !spec.new.members.is_empty() {
                self.capable(self.capabilities().member_add, "adding group members")?;
            }
            let _lock = self.locks.lock(format!("group:{}", spec.new.name.to_lowercase())).await;
            let snap = self.snapshot()?;
            if snap.group_by_name(&spec.new.name).is_some() {
                return Err(DirectoryError::Conflict(format!("group {} already exists", spec.new.name)));
            }
            if let Some(m) = spec.new.members.iter().find(|m| snap.user_index(m).is_none()) {
                return Err(DirectoryError::invalid_attr("members", format!("member {m:?} is not an existing user")));
            }
            if !spec.new.member_groups.is_empty() {
                self.capable(self.capabilities().nested_groups, "groups as members of groups")?;
            }
            if let Some(m) = spec.new.member_groups.iter().find(|m| snap.group_index(m).is_none()) {
                return Err(DirectoryError::invalid_attr("members", format!("member {m:?} is not an existing group")));
            }
            let created = self.backend.create_group(&spec.new).await?;
            let g = stamped_group(&created, now());
            let kept =
                self.state.set(NS_EXTERNAL_ID_GROUP, &g.id, &fingerprint(g.created), spec.external_id.as_deref());
            self.apply(vec![Delta::PutGroup(g.clone())]);
            kept.map_err(|e| state_err(e).after(&["the group was created".into()], "storing its externalId"))?;
            Ok(g)
        }
        .await;
        audit(caller, "create_group", &target, &r);
        r
    }

    /// Changes a group: `decide` computes the edit (with the complete member set wanted) from the
    /// snapshot current under the group's lock; the core applies the difference member by member.
    pub async fn edit_group<E: From<DirectoryError>>(
        &self,
        caller: &Caller,
        id: &str,
        decide: impl FnOnce(&Snapshot, usize) -> Result<GroupEdit, E>,
    ) -> Result<(), E> {
        let _lock = self.locks.lock(format!("g:{id}")).await;
        let snap = self.snapshot()?;
        let gi = snap.group_index(id).ok_or_else(|| DirectoryError::NotFound(format!("no group {id}")))?;
        let edit = decide(&snap, gi)?;
        Ok(self.apply_group_edit(caller, &snap, gi, edit).await?)
    }

    async fn apply_group_edit(
        &self,
        caller: &Caller,
        snap: &Snapshot,
        gi: usize,
        edit: GroupEdit,
    ) -> Result<(), DirectoryError> {
        let grant = self.authorize(caller, Action::WriteGroups)?;
        let group = snap.group(gi).clone();
        let id = group.id.as_str();
        let label = format!("group:{}", group.name);
        let current: BTreeSet<String> = snap.member_ids(gi).into_iter().collect();
        let (add, remove): (Vec<String>, Vec<String>) = match &edit.members {
            Some(target) => {
                (target.difference(&current).cloned().collect(), current.difference(target).cloned().collect())
            }
            None => (Vec::new(), Vec::new()),
        };
        // Explicit removals the cache cannot confirm: the backend decides, idempotently.
        let unconfirmed: Vec<String> = edit
            .removals
            .iter()
            .filter(|m| !current.contains(*m) && edit.members.as_ref().is_none_or(|t| !t.contains(*m)))
            .filter(|m| snap.user_index(m).is_some())
            .cloned()
            .collect();
        let current_groups: BTreeSet<String> = snap.member_group_ids(gi).into_iter().collect();
        let (add_groups, remove_groups): (Vec<String>, Vec<String>) = match &edit.member_groups {
            Some(target) => (
                target.difference(&current_groups).cloned().collect(),
                current_groups.difference(target).cloned().collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let fields = GroupChanges {
            name: edit.name.clone().filter(|n| *n != group.name),
            description: edit.description.clone().filter(|d| *d != group.description),
        };
        // Everything is checked before the first backend call.
        if let Some(n) = &fields.name {
            check_text("name", n, false)?;
        }
        if let Some(Some(d)) = &fields.description {
            check_text("description", d, true)?;
        }
        let caps = self.capabilities();
        if let Some(m) = add.iter().find(|m| snap.user_index(m).is_none()) {
            return Err(DirectoryError::invalid_attr("members", format!("member {m:?} is not an existing user")));
        }
        if !add_groups.is_empty() || !remove_groups.is_empty() {
            self.capable(caps.nested_groups, "groups as members of groups")?;
        }
        let above: BTreeSet<usize> = snap.ancestors_of(gi).into_iter().collect();
        for m in &add_groups {
            let ci = snap.group_index(m).ok_or_else(|| {
                DirectoryError::invalid_attr("members", format!("member {m:?} is not an existing group"))
            })?;
            if ci == gi || above.contains(&ci) {
                return Err(DirectoryError::invalid_attr(
                    "members",
                    format!(
                        "group {} cannot be a member of {}: it contains it, which would make a cycle",
                        snap.group(ci).name,
                        group.name
                    ),
                ));
            }
        }
        if fields.name.is_some() {
            self.capable(caps.group_update, "renaming groups")?;
        }
        if fields.description.is_some() {
            self.capable(caps.group_update, "changing groups")?;
        }
        if !add.is_empty() {
            self.capable(caps.member_add, "adding group members")?;
        }
        if !remove.is_empty() || !unconfirmed.is_empty() {
            self.capable(caps.member_remove, "removing group members")?;
        }
        let _rename = match &fields.name {
            Some(name) => {
                let lock = self.locks.lock(format!("group:{}", name.to_lowercase())).await;
                if self.snapshot()?.group_by_name(name).is_some_and(|g| g.id != id) {
                    return Err(DirectoryError::Conflict(format!("group {name} already exists")));
                }
                Some(lock)
            }
            None => None,
        };

        let mut done: Vec<String> = Vec::new();
        if fields.name.is_some() || fields.description.is_some() {
            let r = self.backend.update_group(id, &fields).await.map_err(DirectoryError::from);
            audit(grant.caller(), "update_group", &label, &r);
            let g = stamped_group(&r?, now());
            self.apply(vec![Delta::PutGroupFields(g)]);
            done.push(if fields.name.is_some() { "the new name".into() } else { "the description".into() });
        }
        let remove: Vec<String> = remove.into_iter().chain(unconfirmed).collect();
        for (members, adding) in [(&remove, false), (&add, true)] {
            for m in members {
                let r =
                    if adding { self.backend.add_member(id, m).await } else { self.backend.remove_member(id, m).await };
                let r = r.map_err(DirectoryError::from);
                let op = if adding { "add_member" } else { "remove_member" };
                audit(grant.caller(), op, &format!("{label} {}", self.user_label(m)), &r);
                let step = if adding { "adding a member" } else { "removing a member" };
                r.map_err(|e| e.after(&done, step))?;
                let at = now();
                self.apply(vec![Delta::Member { group: id.to_string(), user: m.clone(), add: adding, at }]);
                done.push(format!("{} {m}", if adding { "adding member" } else { "removing member" }));
            }
        }
        for (children, adding) in [(&remove_groups, false), (&add_groups, true)] {
            for c in children {
                let r = if adding {
                    self.backend.add_member_group(id, c).await
                } else {
                    self.backend.remove_member_group(id, c).await
                };
                let r = r.map_err(DirectoryError::from);
                let op = if adding { "add_member_group" } else { "remove_member_group" };
                audit(grant.caller(), op, &format!("{label} {}", self.group_label(c)), &r);
                let step = if adding { "adding a member group" } else { "removing a member group" };
                r.map_err(|e| e.after(&done, step))?;
                let at = now();
                self.apply(vec![Delta::MemberGroup { group: id.to_string(), child: c.clone(), add: adding, at }]);
                done.push(format!("{} {c}", if adding { "adding member group" } else { "removing member group" }));
            }
        }
        if let Some(x) = &edit.external_id {
            self.state
                .set(NS_EXTERNAL_ID_GROUP, id, &fingerprint(group.created), x.as_deref())
                .map_err(|e| state_err(e).after(&done, "storing the externalId"))?;
        }
        Ok(())
    }

    pub async fn delete_group<E: From<DirectoryError>>(
        &self,
        caller: &Caller,
        id: &str,
        check: impl FnOnce(&Snapshot, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let label = self.group_label(id);
        let _lock = self.locks.lock(format!("g:{id}")).await;
        let r = async {
            let _grant = self.authorize(caller, Action::WriteGroups)?;
            let snap = self.snapshot()?;
            let gi = snap.group_index(id).ok_or_else(|| DirectoryError::NotFound(format!("no group {id}")))?;
            check(&snap, gi).map_err(Outcome::Front)?;
            self.capable(self.capabilities().group_delete, "deleting groups")?;
            self.backend.delete_group(id).await.map_err(DirectoryError::from)?;
            self.forget_state(id, true);
            self.apply(vec![Delta::DeleteGroup(id.to_string())]);
            Ok::<_, Outcome<E>>(())
        }
        .await;
        finish(caller, "delete_group", &label, r)
    }

    /// Adds one member (no change when it is one already).
    pub async fn add_member(&self, caller: &Caller, group_id: &str, user_id: &str) -> Result<(), DirectoryError> {
        self.edit_group(caller, group_id, |s, gi| {
            let mut m: BTreeSet<String> = s.member_ids(gi).into_iter().collect();
            m.insert(user_id.to_string());
            Ok::<_, DirectoryError>(GroupEdit { members: Some(m), ..Default::default() })
        })
        .await
    }

    /// Makes a group a member of another (no change when it is one already).
    pub async fn add_member_group(
        &self,
        caller: &Caller,
        group_id: &str,
        child_id: &str,
    ) -> Result<(), DirectoryError> {
        self.edit_group(caller, group_id, |s, gi| {
            let mut m: BTreeSet<String> = s.member_group_ids(gi).into_iter().collect();
            m.insert(child_id.to_string());
            Ok::<_, DirectoryError>(GroupEdit { member_groups: Some(m), ..Default::default() })
        })
        .await
    }

    /// Removes a member group (no change when it is not one).
    pub async fn remove_member_group(
        &self,
        caller: &Caller,
        group_id: &str,
        child_id: &str,
    ) -> Result<(), DirectoryError> {
        self.edit_group(caller, group_id, |s, gi| {
            let mut m: BTreeSet<String> = s.member_group_ids(gi).into_iter().collect();
            m.remove(child_id);
            Ok::<_, DirectoryError>(GroupEdit { member_groups: Some(m), ..Default::default() })
        })
        .await
    }

    /// Removes one member (no change when it is not one).
    pub async fn remove_member(&self, caller: &Caller, group_id: &str, user_id: &str) -> Result<(), DirectoryError> {
        self.edit_group(caller, group_id, |s, gi| {
            let mut m: BTreeSet<String> = s.member_ids(gi).into_iter().collect();
            m.remove(user_id);
            Ok::<_, DirectoryError>(GroupEdit { members: Some(m), ..Default::default() })
        })
        .await
    }
}

/// A write's failure: the core's, or the front end's own precondition.
enum Outcome<E> {
    Core(DirectoryError),
    Front(E),
}

impl<E> From<DirectoryError> for Outcome<E> {
    fn from(e: DirectoryError) -> Self {
        Outcome::Core(e)
    }
}

impl<E> From<crate::backend::BackendError> for Outcome<E> {
    fn from(e: crate::backend::BackendError) -> Self {
        Outcome::Core(e.into())
    }
}

/// Audits a delete and hands its result back in the front end's error type.
fn finish<E: From<DirectoryError>>(
    caller: &Caller,
    op: &str,
    target: &str,
    r: Result<(), Outcome<E>>,
) -> Result<(), E> {
    match r {
        Ok(()) => {
            audit::<()>(caller, op, target, &Ok(()));
            Ok(())
        }
        Err(Outcome::Core(e)) => {
            let r = Err(e);
            audit::<()>(caller, op, target, &r);
            r.map_err(E::from)
        }
        Err(Outcome::Front(e)) => {
            audit::<()>(caller, op, target, &Err(DirectoryError::Precondition("precondition failed".into())));
            Err(e)
        }
    }
}

/// Refuses control characters: in a login or a name they would forge DNs (`uid=a\00b`), log lines
/// and terminal output downstream. Free text (a group's description) may keep tabs and newlines.
fn check_text(attribute: &'static str, value: &str, multiline: bool) -> Result<(), DirectoryError> {
    let bad = value.chars().find(|&c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')));
    match bad {
        Some(c) => Err(DirectoryError::invalid_attr(
            attribute,
            format!("{attribute} must not contain control characters (found U+{:04X})", c as u32),
        )),
        None => Ok(()),
    }
}

fn check_new_user(u: &NewUser) -> Result<(), DirectoryError> {
    check_text("login", &u.login, false)?;
    for (attr, v) in [("firstName", &u.first_name), ("lastName", &u.last_name), ("email", &u.email)] {
        check_text(attr, v, false)?;
    }
    for (attr, v) in [
        ("phone", &u.phone),
        ("mobile", &u.mobile),
        ("title", &u.title),
        ("employeeNumber", &u.employee_number),
        ("locale", &u.locale),
    ] {
        if let Some(v) = v {
            check_text(attr, v, false)?;
        }
    }
    Ok(())
}

fn check_user_changes(c: &UserChanges) -> Result<(), DirectoryError> {
    for (attr, v) in
        [("login", &c.login), ("firstName", &c.first_name), ("lastName", &c.last_name), ("email", &c.email)]
    {
        if let Some(v) = v {
            check_text(attr, v, false)?;
        }
    }
    for (attr, v) in [
        ("phone", &c.phone),
        ("mobile", &c.mobile),
        ("title", &c.title),
        ("employeeNumber", &c.employee_number),
        ("locale", &c.locale),
    ] {
        if let Some(Some(v)) = v {
            check_text(attr, v, false)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::{MemoryBackend, Seed};
    use crate::backend::{Backend, BackendError, BackendResult, Capabilities, ProbeReport};
    use crate::config::{Access, Config, Rights};
    use crate::directory::{AuthOutcome, Principal};
    use async_trait::async_trait;

    const SEED: &str = r#"{"users":[{"login":"alice","password":"pw-alice-1"},{"login":"bob"}],
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

    fn new_user(login: &str) -> UserSpec {
        UserSpec { new: NewUser { login: login.into(), active: true, ..Default::default() }, ..Default::default() }
    }

    fn as_user(d: &Directory, login: &str) -> Caller {
        let id = d.snapshot().unwrap().user_by_login(login).unwrap().id.clone();
        Caller { principal: Principal::User { id }, label: login.into(), source: "127.0.0.1".into(), frontend: "test" }
    }

    fn id_of(d: &Directory, login: &str) -> String {
        d.snapshot().unwrap().user_by_login(login).unwrap().id.clone()
    }

    #[tokio::test]
    async fn writes_are_visible_at_once() {
        let d = dir_with(memory()).await;
        let a = Caller::system();
        let u = d.create_user(&a, new_user("carol")).await.unwrap();
        assert!(d.snapshot().unwrap().user_by_login("carol").is_some());
        let g = d.snapshot().unwrap().group_by_name("devs").unwrap().id.clone();
        d.add_member(&a, &g, &u.id).await.unwrap();
        let s = d.snapshot().unwrap();
        assert_eq!(s.members_of(s.group_index(&g).unwrap()).len(), 2);
        d.remove_member(&a, &g, &u.id).await.unwrap();
        d.delete_user(&a, &u.id, DeleteMode::Delete, |_, _| Ok::<_, DirectoryError>(())).await.unwrap();
        assert!(d.snapshot().unwrap().user_by_login("carol").is_none());
    }

    #[tokio::test]
    async fn duplicates_are_refused_before_the_backend() {
        let d = dir_with(memory()).await;
        let a = Caller::system();
        let e = d.create_user(&a, new_user("ALICE")).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Conflict(_)), "{e}");
        let bob = id_of(&d, "bob");
        let e = d.update_user(&a, &bob, UserChanges { login: Some("alice".into()), ..Default::default() }).await;
        assert!(matches!(e, Err(DirectoryError::Conflict(_))));
        let spec = GroupSpec { new: NewGroup { name: "Devs".into(), ..Default::default() }, ..Default::default() };
        assert!(matches!(d.create_group(&a, spec).await, Err(DirectoryError::Conflict(_))));
    }

    #[tokio::test]
    async fn password_change_evicts_the_bind_cache() {
        let d = dir_with(memory()).await;
        let a = Caller::system();
        assert!(matches!(d.authenticate_user("alice", "pw-alice-1", IP).await.unwrap(), AuthOutcome::User(_)));
        let id = id_of(&d, "alice");
        d.set_password(&a, &id, "pw-alice-new", None).await.unwrap();
        assert!(matches!(d.authenticate_user("alice", "pw-alice-1", IP).await.unwrap(), AuthOutcome::Invalid));
        assert!(matches!(d.authenticate_user("alice", "pw-alice-new", IP).await.unwrap(), AuthOutcome::User(_)));
        d.update_user(&a, &id, UserChanges { active: Some(false), ..Default::default() }).await.unwrap();
        assert!(matches!(d.authenticate_user("alice", "pw-alice-new", IP).await.unwrap(), AuthOutcome::Invalid));
    }

    #[tokio::test]
    async fn the_password_policy_holds_for_every_caller() {
        let d = dir_with(memory()).await;
        let a = Caller::system();
        let mut spec = new_user("dave");
        spec.new.password = Some("short".into());
        let e = d.create_user(&a, spec).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Invalid { attribute: Some("password"), .. }), "{e}");
        assert!(d.snapshot().unwrap().user_by_login("dave").is_none());
        let e = d.set_password(&a, &id_of(&d, "alice"), "short", None).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Invalid { .. }));
        assert!(matches!(d.authenticate_user("alice", "pw-alice-1", IP).await.unwrap(), AuthOutcome::User(_)));
    }

    #[tokio::test]
    async fn users_change_only_their_own_password_proving_the_old_one() {
        let d = dir_with(memory()).await;
        let alice = as_user(&d, "alice");
        let me = id_of(&d, "alice");
        let e = d.update_user(&alice, &me, UserChanges { title: Some(Some("boss".into())), ..Default::default() });
        assert!(matches!(e.await, Err(DirectoryError::Denied(_))), "no profile changes");
        let e = d.set_password(&alice, &id_of(&d, "bob"), "another-pw-1", None).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Denied(_)), "not someone else's: {e}");
        let e = d.set_password(&alice, &me, "another-pw-1", None).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Invalid { attribute: Some("oldPassword"), .. }), "{e}");
        let e = d.set_password(&alice, &me, "another-pw-1", Some("wrong")).await.unwrap_err();
        assert!(matches!(e, DirectoryError::WrongPassword(_)), "{e}");
        d.set_password(&alice, &me, "another-pw-1", Some("pw-alice-1")).await.unwrap();
        let reader = Caller {
            principal: Principal::Service { name: "reader".into(), rights: Rights::all(Access::Read) },
            label: "reader".into(),
            source: "-".into(),
            frontend: "test",
        };
        assert!(matches!(d.create_user(&reader, new_user("eve")).await, Err(DirectoryError::Denied(_))));
        assert!(matches!(d.remove_member(&reader, "1", &me).await, Err(DirectoryError::Denied(_))));
    }

    /// Many writers on one group, each adding or removing its own member: every change lands.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_membership_changes_all_land() {
        let d = dir_with(memory()).await;
        let a = Caller::system();
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(d.create_user(&a, new_user(&format!("u{i}"))).await.unwrap().id.clone());
        }
        let g = d.snapshot().unwrap().group_by_name("devs").unwrap().id.clone();
        for id in &ids[..20] {
            d.add_member(&a, &g, id).await.unwrap();
        }
        // 20 removals of members and 20 additions race.
        let tasks: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let (d, g, id, a) = (d.clone(), g.clone(), id.clone(), a.clone());
                tokio::spawn(async move {
                    if i < 20 { d.remove_member(&a, &g, &id).await } else { d.add_member(&a, &g, &id).await }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let s = d.snapshot().unwrap();
        let mut cached = s.member_ids(s.group_index(&g).unwrap());
        let mut stored = d.backend.get_group(&g).await.unwrap().unwrap().members;
        let mut expected: Vec<String> = ids[20..].to_vec();
        expected.push(id_of(&d, "alice"));
        for v in [&mut cached, &mut stored, &mut expected] {
            v.sort();
        }
        assert_eq!(cached, expected);
        assert_eq!(stored, expected);
    }

    /// A member added in the ERP after the last refresh is unknown to the cache; removing it
    /// explicitly still reaches the ERP, so the removal the client is told about really happened.
    #[tokio::test]
    async fn explicit_removals_the_cache_cannot_confirm_reach_the_backend() {
        let b = memory();
        let d = dir_with(b.clone()).await;
        let a = Caller::system();
        let g = d.snapshot().unwrap().group_by_name("devs").unwrap().id.clone();
        let bob = id_of(&d, "bob");
        b.add_member(&g, &bob).await.unwrap();
        d.edit_group(&a, &g, |s, gi| {
            let members: BTreeSet<String> = s.member_ids(gi).into_iter().filter(|m| *m != bob).collect();
            Ok::<_, DirectoryError>(GroupEdit {
                members: Some(members),
                removals: BTreeSet::from([bob.clone()]),
                ..Default::default()
            })
        })
        .await
        .unwrap();
        assert!(!b.get_group(&g).await.unwrap().unwrap().members.contains(&bob), "removed in the backend");
        d.refresh_full().await.unwrap();
        let s = d.snapshot().unwrap();
        assert!(!s.is_member(s.group_index(&g).unwrap(), s.user_index(&bob).unwrap()));
    }

    #[tokio::test]
    async fn writes_stamp_both_sides_and_state_dies_with_the_user() {
        let d = dir_with(memory()).await;
        let a = Caller::system();
        let mut spec = new_user("frank");
        spec.external_id = Some("ext-frank".into());
        let u = d.create_user(&a, spec).await.unwrap();
        assert_eq!(d.attached_user(&u).external_id.as_deref(), Some("ext-frank"));
        let before = unix_now() as i64;
        let g = d.snapshot().unwrap().group_by_name("devs").unwrap().id.clone();
        d.add_member(&a, &g, &u.id).await.unwrap();
        let s = d.snapshot().unwrap();
        assert!(s.group(s.group_index(&g).unwrap()).modified >= Some(before));
        assert!(s.user_by_id(&u.id).unwrap().modified >= Some(before));
        d.delete_user(&a, &u.id, DeleteMode::Delete, |_, _| Ok::<_, DirectoryError>(())).await.unwrap();
        let s = d.snapshot().unwrap();
        assert!(d.with_external_id(&s, false, "ext-frank").is_empty());
        assert_eq!(d.state.get("user", &u.id, ""), None, "forgotten, not merely hidden");
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
            Capabilities { group_create: false, member_remove: false, nested_groups: false, ..Capabilities::ALL }
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
        let a = Caller::system();
        let gen0 = d.snapshot().unwrap().generation;
        let spec = GroupSpec { new: NewGroup { name: "x".into(), ..Default::default() }, ..Default::default() };
        let e = d.create_group(&a, spec).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Unsupported { .. }), "{e}");
        let s = d.snapshot().unwrap();
        let g = s.group_by_name("devs").unwrap().id.clone();
        let alice = s.user_by_login("alice").unwrap().id.clone();
        let bob = s.user_by_login("bob").unwrap().id.clone();
        let e = d.remove_member(&a, &g, &alice).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Unsupported { .. }));
        let e = d.add_member(&a, &g, &bob).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Unavailable { timeout: false, .. }));
        let e = d.create_user(&a, new_user("z")).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Unavailable { .. }));
        assert_eq!(d.snapshot().unwrap().generation, gen0, "no failed write reached the cache");
    }

    const SEED2: &str = r#"{"users":[
        {"login":"alice","password":"pw-alice-1","email":"a@x"},
        {"login":"bob","password":"pw-bob-1","email":"b@x"},
        {"login":"svc","password":"pw-svc-1","email":"s@x"},
        {"login":"root","password":"pw-root-1","system":true}],
      "groups":[{"name":"devs","members":["alice"]},{"name":"eng","member_groups":["devs"]},{"name":"all"}]}"#;

    async fn dir2(refused: &'static [char], tweak: impl FnOnce(&mut Config)) -> Arc<Directory> {
        let mut cfg = Config::parse(
            "[backend]\nkind=\"memory\"\n[directory.hidden]\nlogins=[\"svc\"]\n\
             [[directory.attributes]]\nname=\"badge\"\nfield=\"badgeNo\"\nsyntax=\"integer\"\n",
        )
        .unwrap();
        tweak(&mut cfg);
        let seed: Seed = serde_json::from_str(SEED2).unwrap();
        let b = Arc::new(MemoryBackend::from_seed(seed).unwrap().refusing_login_chars(refused));
        let d = Directory::new(&cfg, b);
        d.refresh_full().await.unwrap();
        d
    }

    fn named(name: &str) -> UserSpec {
        UserSpec {
            user_name: Some(name.into()),
            new: NewUser { active: true, ..Default::default() },
            ..Default::default()
        }
    }

    /// Entra's and Okta's UPNs against a backend that refuses `@`: the login is the local part,
    /// the name is kept and found, two names for one login conflict, renames follow.
    #[tokio::test]
    async fn user_names_become_logins_the_backend_takes() {
        let d = dir2(&['@', ','], |_| {}).await;
        let a = Caller::system();
        let u = d.create_user(&a, named("Jane.Doe@example.com")).await.unwrap();
        assert_eq!(u.login, "Jane.Doe");
        assert_eq!(d.user_name(&u), "Jane.Doe@example.com");
        let s = d.snapshot().unwrap();
        assert_eq!(d.users_named(&s, "jane.doe@EXAMPLE.com"), vec![s.user_index(&u.id).unwrap()]);
        assert!(d.users_named(&s, "Jane.Doe").is_empty(), "her user name is the UPN, not the login");
        assert_eq!(d.users_named(&s, "alice").len(), 1, "plain logins are their own user names");
        match d.create_user(&a, named("jane.doe@other.com")).await.unwrap_err() {
            DirectoryError::Conflict(m) => {
                assert!(m.contains("jane.doe@other.com") && m.contains("Jane.Doe@example.com"), "{m}")
            }
            e => panic!("{e}"),
        }
        assert!(matches!(d.create_user(&a, named("JANE.DOE@example.com")).await, Err(DirectoryError::Conflict(_))));
        // A bind by the user name finds her.
        d.set_password(&a, &u.id, "pw-jane-12", None).await.unwrap();
        let ok = d.authenticate(super::super::BindName::User("jane.doe@example.com"), "pw-jane-12", IP).await.unwrap();
        assert!(matches!(ok, AuthOutcome::User(ref x) if x.id == u.id), "{ok:?}");
        // Rename by user name.
        let edit = UserEdit { user_name: Some("j.doe@example.com".into()), ..Default::default() };
        let r = d.edit_user(&a, &u.id, |_, _| Ok::<_, DirectoryError>(edit)).await.unwrap();
        assert_eq!((r.login.as_str(), d.user_name(&r).as_str()), ("j.doe", "j.doe@example.com"));
        let s = d.snapshot().unwrap();
        assert!(d.users_named(&s, "Jane.Doe@example.com").is_empty());
        assert_eq!(d.users_named(&s, "J.DOE@example.com").len(), 1);
        // What is left refused in the local part is replaced.
        assert_eq!(d.create_user(&a, named("o,neil@example.com")).await.unwrap().login, "o_neil");
        // With the rule as-is, the backend's refusal is explained by name before any call.
        let strict = dir2(&['@'], |c| c.directory.user_names.rule = crate::config::UserNameRule::AsIs).await;
        let e = strict.create_user(&a, named("x@example.com")).await.unwrap_err();
        assert!(e.to_string().contains("refuses \"@\""), "{e}");
        // The login freed by the rename can be taken by another name.
        d.create_user(&a, named("jane.doe@other.com")).await.unwrap();
        // Deleting forgets the name.
        d.delete_user(&a, &r.id, DeleteMode::Delete, |_, _| Ok::<_, DirectoryError>(())).await.unwrap();
        assert!(d.users_named(&d.snapshot().unwrap(), "j.doe@example.com").is_empty());
    }

    #[tokio::test]
    async fn hidden_accounts_are_nowhere_and_cannot_bind_or_be_taken() {
        let d = dir2(&[], |_| {}).await;
        let s = d.snapshot().unwrap();
        assert!(s.user_by_login("svc").is_none() && s.user_by_login("root").is_none());
        assert_eq!(s.user_count(), 2);
        for (login, pw) in [("svc", "pw-svc-1"), ("root", "pw-root-1")] {
            let r = d.authenticate(super::super::BindName::User(login), pw, IP).await.unwrap();
            assert!(matches!(r, AuthOutcome::Invalid), "{login}: {r:?}");
        }
        let e = d.create_user(&Caller::system(), new_user("SVC")).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Conflict(_)), "{e}");
        let alice = s.user_by_login("alice").unwrap().id.clone();
        let rename = UserChanges { login: Some("svc".into()), ..Default::default() };
        assert!(matches!(d.update_user(&Caller::system(), &alice, rename).await, Err(DirectoryError::Conflict(_))));
        // Published again when the config says so.
        let open = dir2(&[], |c| c.directory.hidden.system = false).await;
        assert!(open.snapshot().unwrap().user_by_login("root").is_some());
    }

    #[tokio::test]
    async fn managers_and_custom_fields_are_checked_then_written() {
        let d = dir2(&[], |_| {}).await;
        let a = Caller::system();
        let s = d.snapshot().unwrap();
        let (alice, bob) = (s.user_by_login("alice").unwrap().id.clone(), s.user_by_login("bob").unwrap().id.clone());
        let set = |m: Option<&str>| UserChanges { manager: Some(m.map(String::from)), ..Default::default() };
        let u = d.update_user(&a, &bob, set(Some(&alice))).await.unwrap();
        assert_eq!(u.manager.as_deref(), Some(alice.as_str()));
        assert!(matches!(d.update_user(&a, &bob, set(Some(&bob))).await, Err(DirectoryError::Invalid { .. })));
        assert!(matches!(d.update_user(&a, &bob, set(Some("999"))).await, Err(DirectoryError::Invalid { .. })));
        assert_eq!(d.update_user(&a, &bob, set(None)).await.unwrap().manager, None);
        let badge = |v: Option<&[&str]>| UserChanges {
            custom: [("badgeNo".to_string(), v.map(|v| v.iter().map(|s| s.to_string()).collect()))].into(),
            ..Default::default()
        };
        let u = d.update_user(&a, &bob, badge(Some(&["+0042"]))).await.unwrap();
        assert_eq!(u.custom.get("badgeNo"), Some(&vec!["42".to_string()]), "made canonical");
        let generation = d.snapshot().unwrap().generation;
        assert!(matches!(d.update_user(&a, &bob, badge(Some(&["4x"]))).await, Err(DirectoryError::Invalid { .. })));
        let unknown = UserChanges { custom: [("other".to_string(), None)].into(), ..Default::default() };
        assert!(matches!(d.update_user(&a, &bob, unknown).await, Err(DirectoryError::Invalid { .. })));
        assert_eq!(d.snapshot().unwrap().generation, generation, "refused before the backend");
        assert!(d.update_user(&a, &bob, badge(None)).await.unwrap().custom.is_empty());
        // At creation too.
        let mut spec = new_user("carol");
        spec.new.manager = Some(alice.clone());
        spec.new.custom = [("badgeNo".to_string(), vec!["7".to_string()])].into();
        let c = d.create_user(&a, spec).await.unwrap();
        assert_eq!((c.manager.as_deref(), c.custom["badgeNo"][0].as_str()), (Some(alice.as_str()), "7"));
    }

    #[tokio::test]
    async fn nested_groups_are_written_and_cycles_refused() {
        let d = dir2(&[], |_| {}).await;
        let a = Caller::system();
        let s = d.snapshot().unwrap();
        let id = |n: &str| s.group_by_name(n).unwrap().id.clone();
        let (devs, eng, all) = (id("devs"), id("eng"), id("all"));
        let alice = s.user_index(&s.user_by_login("alice").unwrap().id).unwrap();
        let names = |d: &Directory, v: Vec<usize>| {
            let s = d.snapshot().unwrap();
            v.into_iter().map(|g| s.group(g).name.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names(&d, s.groups_of_transitive(alice)), vec!["devs", "eng"]);
        d.add_member_group(&a, &all, &eng).await.unwrap();
        assert_eq!(names(&d, d.snapshot().unwrap().groups_of_transitive(alice)), vec!["devs", "eng", "all"]);
        // devs ⊂ eng ⊂ all: all into devs, or a group into itself, would be a cycle.
        let generation = d.snapshot().unwrap().generation;
        for (g, c) in [(&devs, &all), (&devs, &devs)] {
            let e = d.add_member_group(&a, g, c).await.unwrap_err();
            assert!(e.to_string().contains("cycle"), "{e}");
        }
        let e = d.add_member_group(&a, &devs, "999").await.unwrap_err();
        assert!(matches!(e, DirectoryError::Invalid { .. }), "{e}");
        assert_eq!(d.snapshot().unwrap().generation, generation);
        d.remove_member_group(&a, &all, &eng).await.unwrap();
        assert_eq!(names(&d, d.snapshot().unwrap().groups_of_transitive(alice)), vec!["devs", "eng"]);
        // A backend without nesting is named in the refusal.
        let flat = dir_with(Arc::new(Limited(memory()))).await;
        let s = flat.snapshot().unwrap();
        let devs = s.group_by_name("devs").unwrap().id.clone();
        let e = flat.add_member_group(&a, &devs, &devs).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Unsupported { .. }) && e.to_string().contains("limited"), "{e}");
    }
}
