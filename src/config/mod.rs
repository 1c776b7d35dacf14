//! Typed configuration: TOML with every unknown key rejected, relative paths resolved against the
//! config file's folder, and every secret readable from the environment or a file.

mod duration;
mod scim;
mod secret;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use scim::{ScimConfig, ScimScope, ScimToken};
pub use secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub ldap: LdapConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub bind_throttle: ThrottleConfig,
    #[serde(default)]
    pub scim: ScimConfig,
    pub backend: BackendConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Human, level: "info".into() }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    pub listen: SocketAddr,
    pub base_dn: String,
    /// RDN of the users container under the base, e.g. `ou=people`.
    pub users_rdn: String,
    pub groups_rdn: String,
    pub services_rdn: String,
    /// When set, `login@bind_domain` is accepted as a bind name.
    pub bind_domain: Option<String>,
    /// Let anonymous clients read the tree like a `read` service account.
    pub allow_anonymous: bool,
    pub max_connections: usize,
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Largest accepted LDAP message (BER) in bytes.
    pub max_message_bytes: usize,
    /// Server-side cap on entries per search (0 = none); the client's sizeLimit may lower it.
    pub size_limit: usize,
    #[serde(with = "duration")]
    pub time_limit: Duration,
    /// Filters deeper or larger than these are refused with a clear error.
    pub max_filter_depth: usize,
    pub max_filter_terms: usize,
    /// Open paged-search cookies kept per connection.
    pub max_paged_searches: usize,
    pub uid_number_base: u32,
    pub gid_number_base: u32,
    /// gidNumber of every user's primary group.
    pub user_gid_number: u32,
    pub login_shell: String,
    /// `{login}` is replaced by the user's login.
    pub home_directory: String,
    pub service_accounts: Vec<ServiceAccount>,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            listen: "127.0.0.1:3389".parse().expect("static address"),
            base_dn: "dc=example,dc=com".into(),
            users_rdn: "ou=people".into(),
            groups_rdn: "ou=groups".into(),
            services_rdn: "ou=services".into(),
            bind_domain: None,
            allow_anonymous: false,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(300),
            max_message_bytes: 4 * 1024 * 1024,
            size_limit: 0,
            time_limit: Duration::from_secs(60),
            max_filter_depth: 64,
            max_filter_terms: 20_000,
            max_paged_searches: 16,
            uid_number_base: 10_000,
            gid_number_base: 20_000,
            user_gid_number: 10_000,
            login_shell: "/bin/bash".into(),
            home_directory: "/home/{login}".into(),
            service_accounts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    /// The account binds as `cn=<name>,<services_rdn>,<base_dn>`.
    pub name: String,
    pub password: Secret,
    pub access: Access,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { listen: "127.0.0.1:8080".parse().expect("static address") }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Only `snapshot` today.
    pub mode: CacheMode,
    /// Incremental refresh period (changed users; groups are re-read).
    #[serde(with = "duration")]
    pub refresh_interval: Duration,
    /// Full reload period, which also notices deletions.
    #[serde(with = "duration")]
    pub full_refresh_interval: Duration,
    /// Beyond this age without a successful refresh, reads answer "unavailable" instead of lying.
    #[serde(with = "duration")]
    pub max_stale: Duration,
    /// How long a successful backend password check is remembered (as a keyed hash).
    #[serde(with = "duration")]
    pub bind_cache_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            mode: CacheMode::Snapshot,
            refresh_interval: Duration::from_secs(30),
            full_refresh_interval: Duration::from_secs(600),
            max_stale: Duration::from_secs(3600),
            bind_cache_ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    Snapshot,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Failed binds allowed per account within `window` before further attempts are refused.
    pub max_failures_per_account: u32,
    /// Failed binds allowed per source address within `window`.
    pub max_failures_per_address: u32,
    #[serde(with = "duration")]
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig { max_failures_per_account: 5, max_failures_per_address: 30, window: Duration::from_secs(300) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendConfig {
    Memory(MemoryConfig),
    Dolibarr(DolibarrConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Seed file (JSON); relative to the config file.
    pub seed: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DolibarrConfig {
    /// Root of the Dolibarr install, e.g. `https://erp.example.com` (the API is under `/api/index.php`).
    pub url: String,
    pub api_key: Secret,
    /// Multicompany entity (`DOLAPIENTITY`); none for single-entity installs.
    #[serde(default)]
    pub entity: Option<u32>,
    #[serde(default = "default_backend_timeout", with = "duration")]
    pub timeout: Duration,
    /// Retries of idempotent reads after a transient failure.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Page size for list calls.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_backend_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retries() -> u32 {
    2
}
fn default_page_size() -> u32 {
    100
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg = Config::parse(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        if let BackendConfig::Memory(m) = &mut cfg.backend
            && let Some(seed) = &m.seed
            && seed.is_relative()
        {
            m.seed = Some(dir.join(seed));
        }
        if let Some(p) = &cfg.scim.state_path
            && p.is_relative()
        {
            cfg.scim.state_path = Some(dir.join(p));
        }
        cfg.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(cfg)
    }

    /// Parses TOML text; secrets are resolved from the environment here.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn validate(&self) -> Result<(), String> {
        crate::ldap::dn::Dn::parse(&self.ldap.base_dn).map_err(|e| format!("ldap.base_dn: {e}"))?;
        for (key, rdn) in [
            ("ldap.users_rdn", &self.ldap.users_rdn),
            ("ldap.groups_rdn", &self.ldap.groups_rdn),
            ("ldap.services_rdn", &self.ldap.services_rdn),
        ] {
            let dn = crate::ldap::dn::Dn::parse(rdn).map_err(|e| format!("{key}: {e}"))?;
            if dn.len() != 1 {
                return Err(format!("{key}: must be a single RDN such as ou=people, got {rdn:?}"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for sa in &self.ldap.service_accounts {
            if sa.name.is_empty() || !names.insert(sa.name.to_ascii_lowercase()) {
                return Err(format!("ldap.service_accounts: empty or duplicate name {:?}", sa.name));
            }
        }
        if self.ldap.max_message_bytes < 1024 {
            return Err("ldap.max_message_bytes: at least 1024".into());
        }
        let mut tokens = std::collections::HashSet::new();
        for t in &self.scim.tokens {
            if t.name.is_empty() || t.token.expose().is_empty() || !tokens.insert(t.name.to_ascii_lowercase()) {
                return Err(format!("scim.tokens: empty or duplicate name {:?}, or an empty token", t.name));
            }
        }
        if self.scim.max_results == 0 || self.scim.bulk_max_operations == 0 || self.scim.max_body_bytes < 1024 {
            return Err(
                "scim: max_results and bulk_max_operations must be positive, max_body_bytes at least 1024".into()
            );
        }
        if self.cache.max_stale < self.cache.refresh_interval {
            return Err("cache.max_stale must be at least cache.refresh_interval".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse("[backend]\nkind = \"memory\"\n").unwrap();
        assert_eq!(c.ldap.listen.port(), 3389);
        assert_eq!(c.cache.refresh_interval, Duration::from_secs(30));
        assert!(matches!(c.backend, BackendConfig::Memory(_)));
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse("[ldap]\nlisten_addr = \"x\"\n[backend]\nkind=\"memory\"\n").unwrap_err();
        assert!(e.contains("listen_addr"), "{e}");
        let e = Config::parse("[backend]\nkind = \"memory\"\nseeds = \"x\"\n").unwrap_err();
        assert!(e.contains("seeds"), "{e}");
        let e = Config::parse("bogus = 1\n[backend]\nkind = \"memory\"\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn durations_and_secrets() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("IDGATE_TEST_SECRET_A", "from-env") };
        let c = Config::parse(
            r#"
            [cache]
            refresh_interval = "2m"
            max_stale = "1h"
            [[ldap.service_accounts]]
            name = "a"
            password = { env = "IDGATE_TEST_SECRET_A" }
            access = "read"
            [[ldap.service_accounts]]
            name = "b"
            password = "literal"
            access = "write"
            [backend]
            kind = "memory"
            "#,
        )
        .unwrap();
        assert_eq!(c.cache.refresh_interval, Duration::from_secs(120));
        assert_eq!(c.ldap.service_accounts[0].password.expose(), "from-env");
        assert_eq!(c.ldap.service_accounts[1].password.expose(), "literal");
        assert!(!format!("{:?}", c.ldap.service_accounts).contains("literal"));
    }

    #[test]
    fn shipped_configs_are_valid() {
        // SAFETY: only this test reads these variables.
        unsafe {
            for v in [
                "IDGATE_DOLIBARR_API_KEY",
                "IDGATE_LDAP_ADMIN_PASSWORD",
                "IDGATE_LDAP_READER_PASSWORD",
                "IDGATE_SCIM_TOKEN",
            ] {
                std::env::set_var(v, "x");
            }
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut n = 0;
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 2, "demo and dolibarr configs");
    }

    #[test]
    fn missing_env_secret_is_an_error_naming_the_variable() {
        let e = Config::parse(
            "[[ldap.service_accounts]]\nname=\"a\"\npassword={env=\"IDGATE_TEST_UNSET_VAR\"}\naccess=\"read\"\n[backend]\nkind=\"memory\"\n",
        )
        .unwrap_err();
        assert!(e.contains("IDGATE_TEST_UNSET_VAR"), "{e}");
    }
}
