//! Helpers shared by the LDAP integration tests: starting the demo gateway on ephemeral ports,
//! `ldap3` connection helpers, a raw protocol client, and the description of a directory's known
//! accounts (`DirFixture`) that the client replays in `replays.rs` run against.
#![allow(dead_code)]

pub mod process;
pub mod replays;
pub mod scim;
pub mod tools;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use idgate::app::{self, Running};
use idgate::backend::Backend;
use idgate::backend::memory::MemoryBackend;
use idgate::config::{BackendConfig, Config};
use idgate::directory::Directory;
use idgate::model::UserChanges;
use ldap3::controls::{Control, PagedResults, RawControl};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapResult, Scope, SearchEntry};
use ldap3_proto::LdapCodec;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapDerefAliases, LdapFilter, LdapMsg, LdapOp, LdapResult as ProtoResult,
    LdapSearchRequest, LdapSearchResultEntry, LdapSearchScope,
};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// The demo tree's containers and its write-capable service account (`config/demo.toml`).
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
pub const GROUPS: &str = "ou=groups,dc=example,dc=com";
pub const ADMIN_DN: &str = "cn=admin,ou=services,dc=example,dc=com";
pub const ADMIN_PW: &str = "demo-admin";

/// A user's DN in the demo tree.
pub fn user_dn(login: &str) -> String {
    format!("uid={login},{PEOPLE}")
}

/// A group's DN in the demo tree.
pub fn group_dn(name: &str) -> String {
    format!("cn={name},{GROUPS}")
}

/// Upper bound for any single wait on the server.
pub const WAIT: Duration = Duration::from_secs(20);
pub const PAGED_OID: &str = "1.2.840.113556.1.4.319";
pub const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";
pub const NOTICE_OID: &str = "1.3.6.1.4.1.1466.20036";

/// Changes one user's data in the backend (by login) and makes the gateway see the change.
pub type TouchFn = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What a test knows about a directory served by the gateway. The replays take every name and
/// expectation from here, so they can run against any backend that has such accounts.
#[derive(Clone)]
pub struct DirFixture {
    pub base_dn: String,
    pub users_base: String,
    pub groups_base: String,
    /// A service account with read access to the whole tree.
    pub service_dn: String,
    pub service_password: String,
    /// An active user and what they are.
    pub user_login: String,
    pub user_password: String,
    pub user_dn: String,
    pub user_mail: String,
    /// Names (cn) of every group the user is a direct member of.
    pub user_groups: Vec<String>,
    /// Names of the groups the user is in only through nested groups (memberOf lists them too).
    pub user_nested_groups: Vec<String>,
    /// The primary group idgate publishes with every user in memberUid (`ldap.primary_group`),
    /// when no backend group has its name.
    pub primary_group: Option<String>,
    /// A group of the user, used as an application's login group (Nextcloud).
    pub login_group: String,
    /// A group of the user, used as an application's admin group (Gitea, Jenkins).
    pub admin_group: String,
    /// An active user in neither `login_group` nor `admin_group`.
    pub outsider_login: String,
    pub outsider_password: String,
    /// A disabled user and the password they had.
    pub disabled_login: String,
    pub disabled_password: String,
    /// Number of user entries (disabled ones included).
    pub user_count: usize,
    /// Changes a user in the backend and refreshes the gateway; `None` when the test cannot.
    pub touch: Option<TouchFn>,
}

impl DirFixture {
    pub fn user_dn_of(&self, login: &str) -> String {
        format!("uid={login},{}", self.users_base)
    }
    pub fn group_dn(&self, name: &str) -> String {
        format!("cn={name},{}", self.groups_base)
    }
    pub fn user_group_set(&self) -> BTreeSet<String> {
        self.user_groups.iter().map(|g| g.to_lowercase()).collect()
    }
    /// What the user's memberOf lists: its groups, and the groups they are nested in.
    pub fn member_of_set(&self) -> BTreeSet<String> {
        self.user_groups.iter().chain(&self.user_nested_groups).map(|g| g.to_lowercase()).collect()
    }
    /// The groups whose memberUid lists the user: its own, and the primary group.
    pub fn posix_group_set(&self) -> BTreeSet<String> {
        self.user_groups.iter().chain(&self.primary_group).map(|g| g.to_lowercase()).collect()
    }
}

/// A gateway started on ephemeral ports with the demo directory in a memory backend.
pub struct Demo {
    pub running: Running,
    pub backend: Arc<MemoryBackend>,
    pub url: String,
}

impl Demo {
    pub fn directory(&self) -> Arc<Directory> {
        self.running.directory.clone()
    }

    /// The demo directory as a fixture; `touch` changes the user's title and refreshes.
    pub fn fixture(&self) -> DirFixture {
        let backend = self.backend.clone();
        let dir = self.directory();
        let touch: TouchFn = Arc::new(move |login: String| {
            let backend = backend.clone();
            let dir = dir.clone();
            Box::pin(async move {
                let u = backend.find_user_by_login(&login).await.expect("backend").expect("user exists");
                let changes = UserChanges {
                    title: Some(Some(format!("changed at {}", time::OffsetDateTime::now_utc().unix_timestamp()))),
                    ..Default::default()
                };
                backend.update_user(&u.id, &changes).await.expect("update user");
                dir.refresh_incremental().await.expect("incremental refresh");
            })
        });
        DirFixture {
            base_dn: "dc=example,dc=com".into(),
            users_base: "ou=people,dc=example,dc=com".into(),
            groups_base: "ou=groups,dc=example,dc=com".into(),
            service_dn: "cn=reader,ou=services,dc=example,dc=com".into(),
            service_password: "demo-reader".into(),
            user_login: "alice".into(),
            user_password: "alice-demo".into(),
            user_dn: "uid=alice,ou=people,dc=example,dc=com".into(),
            user_mail: "alice@example.com".into(),
            user_groups: ["developers", "admins", "staff", "nextcloud_users"].map(String::from).to_vec(),
            user_nested_groups: vec!["engineering".into()],
            primary_group: Some("users".into()),
            login_group: "nextcloud_users".into(),
            admin_group: "admins".into(),
            outsider_login: "dave".into(),
            outsider_password: "dave-demo".into(),
            disabled_login: "oscar".into(),
            disabled_password: "oscar-demo".into(),
            user_count: 21,
            touch: Some(touch),
        }
    }
}

pub fn demo_config_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config").join("demo.toml")
}

/// The demo config with every listener on an ephemeral loopback port.
pub fn demo_config() -> Config {
    let mut cfg = Config::load(&demo_config_path()).expect("demo config loads");
    cfg.ldap.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.http.listen = "127.0.0.1:0".parse().expect("addr");
    if cfg.ldap.ldaps_listen.is_some() {
        cfg.ldap.ldaps_listen = Some("127.0.0.1:0".parse().expect("addr"));
    }
    cfg.scim.state_path = Some(fresh_state_path());
    cfg
}

/// A state file no other test (or process) uses.
pub fn fresh_state_path() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("idgate-test-{}-{n}", std::process::id())).join("scim-state.redb")
}

/// Starts the demo after letting the caller adjust the config.
pub async fn start_demo_with(edit: impl FnOnce(&mut Config)) -> Demo {
    let mut cfg = demo_config();
    edit(&mut cfg);
    let seed = match &cfg.backend {
        BackendConfig::Memory(m) => m.seed.clone().expect("demo config has a seed"),
        _ => panic!("the demo config uses the memory backend"),
    };
    let backend = Arc::new(MemoryBackend::from_file(&seed).expect("demo seed loads"));
    let running = tokio::time::timeout(WAIT, app::start_with_backend(cfg, backend.clone()))
        .await
        .expect("gateway starts in time")
        .expect("gateway starts");
    let url = format!("ldap://{}", running.ldap_addr);
    Demo { running, backend, url }
}

pub async fn start_demo_full() -> Demo {
    start_demo_with(|_| {}).await
}

/// Starts the demo gateway on ephemeral ports.
pub async fn start_demo() -> Running {
    start_demo_full().await.running
}

// ---- ldap3 helpers ----------------------------------------------------------------------------

pub async fn connect(url: &str) -> Ldap {
    let settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(5));
    let (conn, ldap) = LdapConnAsync::with_settings(settings, url).await.expect("connect to the gateway");
    ldap3::drive!(conn);
    ldap
}

/// Binds and returns the result code.
pub async fn try_bind(ldap: &mut Ldap, dn: &str, pw: &str) -> LdapResult {
    ldap.with_timeout(WAIT).simple_bind(dn, pw).await.expect("bind answered")
}

/// Connects and binds, asserting success.
pub async fn bind(url: &str, dn: &str, pw: &str) -> Ldap {
    let mut ldap = connect(url).await;
    let r = try_bind(&mut ldap, dn, pw).await;
    assert_eq!(r.rc, 0, "bind as {dn} failed: {r}");
    ldap
}

pub async fn bind_service(url: &str, fx: &DirFixture) -> Ldap {
    bind(url, &fx.service_dn, &fx.service_password).await
}

/// A search; returns the parsed entries and the final result (whatever its code).
pub async fn search(
    ldap: &mut Ldap,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
) -> (Vec<SearchEntry>, LdapResult) {
    let r = ldap.with_timeout(WAIT).search(base, scope, filter, attrs.to_vec()).await.expect("search answered");
    (r.0.into_iter().map(SearchEntry::construct).collect(), r.1)
}

/// A search that must succeed.
pub async fn search_ok(ldap: &mut Ldap, base: &str, scope: Scope, filter: &str, attrs: &[&str]) -> Vec<SearchEntry> {
    let (entries, res) = search(ldap, base, scope, filter, attrs).await;
    assert_eq!(res.rc, 0, "search {filter} under {base:?} failed: {res}");
    entries
}

/// Same search with the given request controls.
pub async fn search_ctrl(
    ldap: &mut Ldap,
    ctrls: Vec<RawControl>,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
) -> (Vec<SearchEntry>, LdapResult) {
    let r = ldap
        .with_controls(ctrls)
        .with_timeout(WAIT)
        .search(base, scope, filter, attrs.to_vec())
        .await
        .expect("search answered");
    (r.0.into_iter().map(SearchEntry::construct).collect(), r.1)
}

pub fn paged_control(size: i32, cookie: Vec<u8>, critical: bool) -> RawControl {
    let mut c: RawControl = PagedResults { size, cookie }.into();
    c.crit = critical;
    c
}

/// The paged-results response control of a result, if any.
pub fn paged_response(res: &LdapResult) -> Option<PagedResults> {
    res.ctrls.iter().find(|Control(_, raw)| raw.ctype == PAGED_OID).map(|Control(_, raw)| raw.parse::<PagedResults>())
}

pub struct Paged {
    pub entries: Vec<SearchEntry>,
    pub pages: usize,
}

/// Runs a paged search to the end, checking every page's size and every cookie round trip.
pub async fn paged_search(
    ldap: &mut Ldap,
    page_size: i32,
    critical: bool,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
) -> Paged {
    let mut out = Paged { entries: Vec::new(), pages: 0 };
    let mut cookie = Vec::new();
    loop {
        assert!(out.pages < 100_000, "paged search does not end");
        let (entries, res) =
            search_ctrl(ldap, vec![paged_control(page_size, cookie, critical)], base, scope, filter, attrs).await;
        assert_eq!(res.rc, 0, "paged search {filter} page {} failed: {res}", out.pages + 1);
        assert!(entries.len() <= page_size as usize, "page of {} entries for page size {page_size}", entries.len());
        out.pages += 1;
        out.entries.extend(entries);
        let pr = paged_response(&res).expect("paged search answers with a paged-results control");
        if pr.cookie.is_empty() {
            return out;
        }
        cookie = pr.cookie;
    }
}

/// Values of an attribute, looked up without regard to case.
pub fn attr(e: &SearchEntry, name: &str) -> Vec<String> {
    e.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).unwrap_or_default()
}

pub fn has_attr(e: &SearchEntry, name: &str) -> bool {
    e.attrs.keys().chain(e.bin_attrs.keys()).any(|k| k.eq_ignore_ascii_case(name))
}

pub fn first(e: &SearchEntry, name: &str) -> String {
    attr(e, name).into_iter().next().unwrap_or_else(|| panic!("{} has no {name}: {:?}", e.dn, e.attrs))
}

/// Lower-cased and with spaces after commas removed: enough to compare DNs this server writes.
pub fn norm_dn(dn: &str) -> String {
    dn.split(',').map(|p| p.trim().to_lowercase()).collect::<Vec<_>>().join(",")
}

pub fn dn_set<'a>(dns: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    dns.into_iter().map(|d| norm_dn(d)).collect()
}

pub fn lower_set<'a>(vals: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    vals.into_iter().map(|v| v.to_lowercase()).collect()
}

/// Value of the first RDN of a DN (`uid=alice,ou=…` → `alice`).
pub fn rdn_value(dn: &str) -> String {
    dn.split(',').next().and_then(|r| r.split_once('=')).map(|(_, v)| v.trim().to_string()).unwrap_or_default()
}

// ---- GeneralizedTime ------------------------------------------------------------------------------

pub fn parse_gt(s: &str) -> i64 {
    let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, &fmt)
        .unwrap_or_else(|e| panic!("not a GeneralizedTime {s:?}: {e}"))
        .assume_utc()
        .unix_timestamp()
}

pub fn format_gt(unix: i64) -> String {
    let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix).expect("valid time").format(&fmt).expect("format")
}

/// Waits (bounded) until the wall clock is past `unix`, so a change made now gets a later time.
pub async fn wait_past(unix: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while time::OffsetDateTime::now_utc().unix_timestamp() <= unix {
        assert!(tokio::time::Instant::now() < deadline, "clock did not pass {unix}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- Raw protocol client --------------------------------------------------------------------------

/// A minimal client on `ldap3_proto`'s codec: exact control over what goes on the wire.
pub struct Raw {
    pub framed: Framed<TcpStream, LdapCodec>,
    next_id: i32,
}

impl Raw {
    pub async fn connect(addr: std::net::SocketAddr) -> Raw {
        let stream =
            tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.expect("connect in time").expect("connect");
        Raw { framed: Framed::new(stream, LdapCodec::new(Some(64 * 1024 * 1024), None)), next_id: 1 }
    }

    /// Connects from a given loopback source address (127.x.y.z), as a client on another host would.
    pub async fn connect_from(addr: std::net::SocketAddr, source: std::net::IpAddr) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(std::net::SocketAddr::new(source, 0)).expect("bind the source address");
        let stream = tokio::time::timeout(WAIT, socket.connect(addr)).await.expect("connect in time").expect("connect");
        Raw { framed: Framed::new(stream, LdapCodec::new(Some(64 * 1024 * 1024), None)), next_id: 1 }
    }

    pub async fn send(&mut self, op: LdapOp, ctrl: Vec<ldap3_proto::control::LdapControl>) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        self.send_with_id(id, op, ctrl).await;
        id
    }

    pub async fn send_with_id(&mut self, id: i32, op: LdapOp, ctrl: Vec<ldap3_proto::control::LdapControl>) {
        tokio::time::timeout(WAIT, self.framed.send(LdapMsg::new_with_ctrls(id, op, ctrl)))
            .await
            .expect("send in time")
            .expect("send");
    }

    /// Raw bytes on the wire, as they are: for input no encoder would produce.
    pub async fn write_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let s = self.framed.get_mut();
        tokio::time::timeout(WAIT, async {
            s.write_all(bytes).await?;
            s.flush().await
        })
        .await
        .expect("write in time")
        .expect("write");
    }

    /// Next message; `None` when the server closed the connection (or reset it).
    pub async fn recv(&mut self) -> Option<LdapMsg> {
        match tokio::time::timeout(WAIT, self.framed.next()).await.expect("server answers in time") {
            Some(Ok(m)) => Some(m),
            Some(Err(_)) | None => None,
        }
    }

    pub async fn recv_some(&mut self) -> LdapMsg {
        self.recv().await.expect("a message, not a closed connection")
    }

    pub async fn bind(&mut self, dn: &str, pw: &str) -> ProtoResult {
        let id = self
            .send(
                LdapOp::BindRequest(LdapBindRequest {
                    version: 3,
                    dn: dn.into(),
                    cred: LdapBindCred::Simple(pw.into()),
                }),
                vec![],
            )
            .await;
        let m = self.recv_some().await;
        assert_eq!(m.msgid, id);
        match m.op {
            LdapOp::BindResponse(b) => b.res,
            other => panic!("expected a bind response, got {other:?}"),
        }
    }

    /// Sends a search and collects its entries, final result and response controls.
    pub async fn search(
        &mut self,
        req: LdapSearchRequest,
        ctrl: Vec<ldap3_proto::control::LdapControl>,
    ) -> (Vec<LdapSearchResultEntry>, ProtoResult, Vec<ldap3_proto::control::LdapControl>) {
        let id = self.send(LdapOp::SearchRequest(req), ctrl).await;
        let mut entries = Vec::new();
        loop {
            let m = self.recv_some().await;
            assert_eq!(m.msgid, id, "answer to another request: {m:?}");
            match m.op {
                LdapOp::SearchResultEntry(e) => entries.push(e),
                LdapOp::SearchResultReference(_) => {}
                LdapOp::SearchResultDone(r) => return (entries, r, m.ctrl),
                other => panic!("unexpected message in a search: {other:?}"),
            }
        }
    }

    /// Closes the socket without an Unbind (as net-ldap does).
    pub fn drop_socket(self) {
        drop(self.framed);
    }
}

pub fn search_req(base: &str, scope: LdapSearchScope, filter: &str, attrs: &[&str]) -> LdapSearchRequest {
    LdapSearchRequest {
        base: base.into(),
        scope,
        aliases: LdapDerefAliases::Never,
        sizelimit: 0,
        timelimit: 0,
        typesonly: false,
        filter: ldap3_proto::parse_ldap_filter_str(filter).unwrap_or_else(|e| panic!("test filter {filter}: {e}")),
        attrs: attrs.iter().map(|a| a.to_string()).collect(),
    }
}

pub fn eq(a: &str, v: &str) -> LdapFilter {
    LdapFilter::Equality(a.into(), v.into())
}

/// Values of an attribute of a raw entry (case-insensitive name).
pub fn raw_attr(e: &LdapSearchResultEntry, name: &str) -> Vec<String> {
    e.attributes
        .iter()
        .filter(|a| a.atype.eq_ignore_ascii_case(name))
        .flat_map(|a| a.vals.iter().map(|v| String::from_utf8_lossy(v).into_owned()))
        .collect()
}

/// Checks that a brand-new client can still bind and search.
pub async fn assert_healthy(url: &str, fx: &DirFixture) {
    let mut ldap = bind_service(url, fx).await;
    let e = search_ok(&mut ldap, &fx.users_base, Scope::Subtree, &format!("(uid={})", fx.user_login), &["uid"]).await;
    assert_eq!(e.len(), 1, "fresh client finds the user");
    assert_eq!(first(&e[0], "uid"), fx.user_login);
    let _ = ldap.unbind().await;
}
