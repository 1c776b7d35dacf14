//! The `Backend` trait: what the directory core needs from an ERP. Backends know nothing of LDAP or
//! SCIM; their wire types stay inside their own module.

pub mod dolibarr;
pub mod dreamfactory;
pub mod foreman;
pub(crate) mod http;
pub mod memory;

use async_trait::async_trait;

use crate::model::{Group, GroupChanges, NewGroup, NewUser, User, UserChanges};

/// Why a backend call failed. The front ends map these to LDAP result codes and SCIM errors.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    /// The entity does not exist (or vanished between two calls).
    #[error("not found: {0}")]
    NotFound(String),
    /// A uniqueness rule was broken (duplicate login, email, group name).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend (or this version of it) cannot do this at all.
    #[error("not supported by the {backend} backend: {what}")]
    Unsupported { backend: &'static str, what: String },
    /// The backend refused the values (policy, syntax, missing field).
    #[error("rejected by the backend: {0}")]
    Invalid(String),
    /// The gateway's own credentials lack a permission for this call.
    #[error("the gateway's backend account may not do this: {0}")]
    Forbidden(String),
    /// The backend rejected the gateway's credentials: a configuration problem, never a user's.
    #[error("the backend rejected the gateway's credentials: {0}")]
    Auth(String),
    /// Connection failure, 5xx: try again later.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer in time: try again later.
    #[error("backend unavailable: {0}")]
    Timeout(String),
    /// The backend answered something we do not understand.
    #[error("unexpected backend answer: {0}")]
    Protocol(String),
}

impl BackendError {
    /// True when the failure is transient and says nothing about the request itself.
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Unavailable(_) | BackendError::Timeout(_))
    }
}

pub type BackendResult<T> = Result<T, BackendError>;

/// What a backend can do, declared (and where needed detected at start) by the backend itself.
/// Front ends derive their answers from this, never from the backend's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub user_create: bool,
    pub user_update: bool,
    pub user_delete: bool,
    pub user_rename: bool,
    /// Users can be created disabled in one call (otherwise create then disable).
    pub group_create: bool,
    pub group_update: bool,
    pub group_delete: bool,
    pub member_add: bool,
    pub member_remove: bool,
    pub password_set: bool,
    pub password_check: bool,
    pub admin_flag_write: bool,
    /// The backend can store an external id itself.
    pub external_id: bool,
    pub employee_number: bool,
    /// `list_users_changed_since` is implemented.
    pub incremental_sync: bool,
    /// Users have a manager (`User::manager`) the backend stores.
    pub manager: bool,
    /// Groups can contain groups.
    pub nested_groups: bool,
    /// Extra fields (`User::custom`) can be written.
    pub custom_fields: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities {
        user_create: true,
        user_update: true,
        user_delete: true,
        user_rename: true,
        group_create: true,
        group_update: true,
        group_delete: true,
        member_add: true,
        member_remove: true,
        password_set: true,
        password_check: true,
        admin_flag_write: true,
        external_id: true,
        employee_number: true,
        incremental_sync: true,
        manager: true,
        nested_groups: true,
        custom_fields: true,
    };
}

/// What `probe` found out, for `check-config` and the start-up log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeReport {
    pub backend: &'static str,
    /// The version the backend reports, if it tells.
    pub version: Option<String>,
    /// One human-readable line per finding.
    pub notes: Vec<String>,
    pub capabilities: Capabilities,
}

/// An ERP's user and group API. Implementations must be cheap to share (`Arc<dyn Backend>`), put a
/// timeout on every call and retry only idempotent reads.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short kind name: `memory`, `dolibarr`, ...
    fn kind(&self) -> &'static str;
    /// Identifies this installation (e.g. its base URL); part of every entryUUID.
    fn instance(&self) -> String;
    /// Current capabilities (after `probe`, detected ones included).
    fn capabilities(&self) -> Capabilities;

    /// Checks reachability and credentials, detects version and capabilities.
    async fn probe(&self) -> BackendResult<ProbeReport>;

    async fn list_users(&self) -> BackendResult<Vec<User>>;
    /// Users created or changed at or after `since` (Unix seconds). Backends without a modification
    /// filter return `Unsupported`.
    async fn list_users_changed_since(&self, since: i64) -> BackendResult<Vec<User>>;
    async fn get_user(&self, id: &str) -> BackendResult<Option<User>>;
    async fn find_user_by_login(&self, login: &str) -> BackendResult<Option<User>>;
    /// Every group with its members.
    async fn list_groups(&self) -> BackendResult<Vec<Group>>;
    async fn get_group(&self, id: &str) -> BackendResult<Option<Group>>;

    async fn create_user(&self, user: &NewUser) -> BackendResult<User>;
    async fn update_user(&self, id: &str, changes: &UserChanges) -> BackendResult<User>;
    async fn delete_user(&self, id: &str) -> BackendResult<()>;
    async fn set_password(&self, id: &str, password: &str) -> BackendResult<()>;
    /// `Ok(false)` for a wrong password (or a user that cannot log in); `Err` only when the answer
    /// is unknown.
    async fn check_password(&self, user: &User, password: &str) -> BackendResult<bool>;

    /// Checks a new password against the backend's own rules before anything is sent, so the
    /// client learns why in plain words instead of from a backend error.
    fn validate_password(&self, _password: &str) -> BackendResult<()> {
        Ok(())
    }

    /// The error for an operation this backend (or its detected version) cannot do.
    fn unsupported(&self, what: &str) -> BackendError {
        BackendError::Unsupported { backend: self.kind(), what: what.to_string() }
    }

    async fn create_group(&self, group: &NewGroup) -> BackendResult<Group>;
    async fn update_group(&self, id: &str, changes: &GroupChanges) -> BackendResult<Group>;
    async fn delete_group(&self, id: &str) -> BackendResult<()>;
    async fn add_member(&self, group_id: &str, user_id: &str) -> BackendResult<()>;
    async fn remove_member(&self, group_id: &str, user_id: &str) -> BackendResult<()>;

    /// Makes group `child_id` a member of group `group_id` (backends with `nested_groups`).
    async fn add_member_group(&self, _group_id: &str, _child_id: &str) -> BackendResult<()> {
        Err(self.unsupported("groups as members of groups"))
    }
    async fn remove_member_group(&self, _group_id: &str, _child_id: &str) -> BackendResult<()> {
        Err(self.unsupported("groups as members of groups"))
    }

    /// The login of the account the gateway itself uses in the backend, once `probe` found it:
    /// it is never published and can never bind through the gateway.
    fn own_login(&self) -> Option<String> {
        None
    }

    /// The characters of `login` this backend refuses, for deriving a login from a user name.
    fn refused_login_chars(&self) -> &'static [char] {
        &[]
    }
}

/// Builds the configured backend. Backends with extra fields learn the configured custom
/// attributes, to read and write each field in its syntax.
pub fn build(cfg: &crate::config::Config) -> Result<std::sync::Arc<dyn Backend>, String> {
    use crate::config::BackendConfig;
    let attrs = &cfg.directory.attributes;
    Ok(match &cfg.backend {
        BackendConfig::Memory(m) => std::sync::Arc::new(match &m.seed {
            Some(path) => memory::MemoryBackend::from_file(path)?,
            None => memory::MemoryBackend::empty(),
        }),
        BackendConfig::Dolibarr(d) => {
            std::sync::Arc::new(dolibarr::DolibarrBackend::new(d).map_err(|e| e.to_string())?.with_attributes(attrs))
        }
        BackendConfig::Foreman(f) => {
            std::sync::Arc::new(foreman::ForemanBackend::new(f).map_err(|e| e.to_string())?.with_attributes(attrs))
        }
        BackendConfig::Dreamfactory(d) => std::sync::Arc::new(
            dreamfactory::DreamFactoryBackend::new(d).map_err(|e| e.to_string())?.with_attributes(attrs),
        ),
    })
}
