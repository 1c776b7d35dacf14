//! Connection limits against the real binary, run as a subprocess with its own descriptor limit:
//! a flood of slow HTTP clients must not take LDAP, LDAPS or /healthz down; the HTTP header and
//! body timeouts fire; at a cap, new connections that find no slot are closed at once and logged
//! sparingly. Linux only: the gateway's descriptors are counted in /proc.
//!
//! The slow clients are opened from this process, which raises its own descriptor limit for them;
//! where that is not permitted (or `IDGATE_TEST_CLIENTS_IN_CHILDREN` is set) they are opened from
//! child copies of this test binary instead (see `slow_clients_in_a_child`).
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use rlimit::Resource;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const READER_DN: &str = "cn=reader,ou=services,dc=example,dc=com";
const READER_PW: &str = "demo-reader";
const PEOPLE: &str = "ou=people,dc=example,dc=com";
const TOKEN: &str = "limits-test-token";
/// What every check of a protected service must stay within while a flood goes on.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
const CHILD_ENV: &str = "IDGATE_TEST_SLOW_CLIENTS";
const FORCE_CHILDREN_ENV: &str = "IDGATE_TEST_CLIENTS_IN_CHILDREN";

/// The floods share the machine's ephemeral ports and cores: one at a time.
static FLOOD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- The gateway as a subprocess ----------------------------------------------------------------

/// The gateway as a child process (the shared helper), with LDAPS and the test's `[ldap]` and
/// `[http]` keys, under the descriptor limit (soft, hard).
struct Gateway {
    child: common::process::Gateway,
    ldap: SocketAddr,
    ldaps: SocketAddr,
    http: SocketAddr,
}

impl Gateway {
    fn start(ldap_keys: &str, http_keys: &str, nofile: (u64, u64)) -> Gateway {
        let (ldap_keys, http_keys): (toml::Table, toml::Table) =
            (ldap_keys.parse().expect("ldap keys"), http_keys.parse().expect("http keys"));
        let child = common::process::Gateway::start_with(common::process::Options {
            edit: Some(Box::new(move |doc| {
                let ldap = common::process::table(doc, "ldap");
                ldap.insert("ldaps_listen".into(), "127.0.0.1:0".into());
                ldap.extend(ldap_keys);
                common::process::table(doc, "http").extend(http_keys);
                let tokens = common::process::table(doc, "scim");
                tokens.insert(
                    "tokens".into(),
                    toml::Value::Array(vec![toml::Value::Table(
                        [("name", "limits"), ("token", TOKEN), ("scope", "write")]
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), toml::Value::from(v)))
                            .collect(),
                    )]),
                );
            })),
            nofile: Some(nofile),
            ..Default::default()
        });
        let (ldap, http) = (child.ldap_addr, child.http_addr);
        let ldaps = child.ldaps_addr.expect("LDAPS listening");
        Gateway { child, ldap, ldaps, http }
    }

    fn lines(&self) -> Vec<String> {
        self.child.logs().lines().map(String::from).collect()
    }

    /// The fields of the start-up line that states the descriptor budget.
    fn budget(&self) -> Value {
        let lines = self.lines();
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"].get("http_max_connections").is_some())
            .map(|v| {
                let mut f = v["fields"].clone();
                f["level"] = v["level"].clone();
                f
            })
            .unwrap_or_else(|| panic!("no descriptor budget line: {lines:?}"))
    }

    fn cap(&self, key: &str) -> usize {
        self.budget()[key].as_u64().unwrap_or_else(|| panic!("{key}")) as usize
    }

    /// WARN lines whose message contains `text`.
    fn warnings(&self, text: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| {
                    v["level"] == "WARN" && v["fields"]["message"].as_str().is_some_and(|m| m.contains(text))
                })
            })
            .collect()
    }

    /// Descriptors the gateway holds now.
    fn open_fds(&self) -> usize {
        self.child.open_fds()
    }
}

// ---- Clients ------------------------------------------------------------------------------------

/// A fresh LDAP client binds and finds a user; returns how long that took.
async fn ldap_search(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let settings = LdapConnSettings::new().set_conn_timeout(ANSWER_WITHIN);
    let work = async {
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &format!("ldap://{addr}")).await?;
        ldap3::drive!(conn);
        ldap.simple_bind(READER_DN, READER_PW).await?.success()?;
        let (entries, _) = ldap.search(PEOPLE, Scope::Subtree, "(uid=alice)", vec!["uid"]).await?.success()?;
        let _ = ldap.unbind().await;
        Ok::<_, ldap3::LdapError>(entries)
    };
    let entries = tokio::time::timeout(ANSWER_WITHIN, work)
        .await
        .unwrap_or_else(|_| panic!("LDAP search not answered within {ANSWER_WITHIN:?}"))
        .expect("LDAP search");
    assert_eq!(entries.len(), 1);
    assert_eq!(SearchEntry::construct(entries[0].clone()).attrs["uid"], vec!["alice".to_string()]);
    started.elapsed()
}

/// A fresh LDAPS client binds; returns how long that took.
async fn ldaps_bind(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let settings = LdapConnSettings::new().set_conn_timeout(ANSWER_WITHIN).set_no_tls_verify(true);
    let work = async {
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &format!("ldaps://{addr}")).await?;
        ldap3::drive!(conn);
        ldap.simple_bind(READER_DN, READER_PW).await?.success()?;
        let _ = ldap.unbind().await;
        Ok::<_, ldap3::LdapError>(())
    };
    tokio::time::timeout(ANSWER_WITHIN, work)
        .await
        .unwrap_or_else(|_| panic!("LDAPS bind not answered within {ANSWER_WITHIN:?}"))
        .expect("LDAPS bind");
    started.elapsed()
}

/// Reads until the peer closes (or resets); `None` when it stays open longer than `within`.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// GET /healthz, retried while the listener turns it away, until a 200; returns how long it took.
async fn healthz(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < ANSWER_WITHIN {
        if let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await
            && s.write_all(b"GET /healthz HTTP/1.1\r\nhost: idgate\r\nconnection: close\r\n\r\n").await.is_ok()
        {
            let answer = read_to_close(&mut s, Duration::from_secs(2)).await.unwrap_or_default();
            last = String::from_utf8_lossy(&answer).into_owned();
            if last.starts_with("HTTP/1.1 200") && last.ends_with(r#"{"status":"ok"}"#) {
                return started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/healthz not answered within {ANSWER_WITHIN:?}; last answer: {last:?}");
}

/// How far a set of slow clients got.
#[derive(Default)]
struct Counts {
    /// Connection attempts over, whatever their outcome.
    tried: AtomicUsize,
    /// Attempts that connected.
    connected: AtomicUsize,
}

/// Connects from the `n`th of a few hundred loopback addresses. From one address, new connections
/// would often reuse the port of one the server closed moments ago, whose TIME_WAIT turns the new
/// SYN away for a second; many sources, as a real flood has, avoid that.
async fn connect_from(n: usize, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    let source = std::net::Ipv4Addr::new(127, 1, (n / 250 % 250) as u8, (n % 250 + 1) as u8);
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(addr).await
}

/// One slowloris client: "GET /", then a byte a second, until the server closes the connection.
async fn slow_client(n: usize, addr: SocketAddr, counts: Arc<Counts>, ramp: Arc<tokio::sync::Semaphore>) {
    let Ok(permit) = ramp.acquire_owned().await else { return };
    let s = tokio::time::timeout(Duration::from_secs(10), connect_from(n, addr)).await;
    if let Ok(Ok(_)) = &s {
        counts.connected.fetch_add(1, Ordering::Relaxed);
    }
    counts.tried.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    let Ok(Ok(mut s)) = s else { return };
    if s.write_all(b"GET /").await.is_err() {
        return;
    }
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if s.write_all(b"a").await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `n` slow clients in this process; they run until the returned set is dropped.
fn flood_here(addr: SocketAddr, n: usize, first: usize) -> (tokio::task::JoinSet<()>, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    // A few hundred connection attempts at a time, as a flood from a few hosts would make.
    let ramp = Arc::new(tokio::sync::Semaphore::new(256));
    let mut set = tokio::task::JoinSet::new();
    for i in first..first + n {
        set.spawn(slow_client(i, addr, counts.clone(), ramp.clone()));
    }
    (set, counts)
}

/// Slow clients in this process or, when it may not hold that many descriptors, in children.
enum Flood {
    Here(#[allow(dead_code)] tokio::task::JoinSet<()>, Arc<Counts>),
    Children(Vec<Child>, Arc<Counts>),
}

impl Flood {
    fn start(addr: SocketAddr, n: usize) -> Flood {
        if std::env::var_os(FORCE_CHILDREN_ENV).is_none() && raise_own_limit(n as u64 + 1024) {
            let (set, counts) = flood_here(addr, n, 0);
            return Flood::Here(set, counts);
        }
        // Each child raises its soft limit to the hard one.
        let (_, hard) = rlimit::getrlimit(Resource::NOFILE).expect("getrlimit");
        let per_child = (hard.min(1 << 20) as usize).saturating_sub(256).clamp(64, 8000);
        let counts = Arc::new(Counts::default());
        let mut children = Vec::new();
        let mut left = n;
        while left > 0 {
            let count = left.min(per_child);
            left -= count;
            let mut child = Command::new(std::env::current_exe().expect("test binary"))
                .args(["--exact", "slow_clients_in_a_child", "--nocapture", "--test-threads", "1"])
                .env(CHILD_ENV, format!("{addr} {count} {}", n - left - count))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a slow-client child");
            let stdout = child.stdout.take().expect("stdout");
            let counts = counts.clone();
            std::thread::spawn(move || {
                // "tried T connected C", increments since the previous line. The first one follows
                // the test harness's "test slow_clients_in_a_child ... " on the same line.
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let Some(at) = line.find("tried ") else { continue };
                    let w: Vec<&str> = line[at..].split_whitespace().collect();
                    if let ["tried", t, "connected", c] = w[..]
                        && let (Ok(t), Ok(c)) = (t.parse::<usize>(), c.parse::<usize>())
                    {
                        counts.tried.fetch_add(t, Ordering::Relaxed);
                        counts.connected.fetch_add(c, Ordering::Relaxed);
                    }
                }
            });
            children.push(child);
        }
        Flood::Children(children, counts)
    }

    /// (attempts over, attempts that connected) so far.
    fn progress(&self) -> (usize, usize) {
        let c = match self {
            Flood::Here(_, c) | Flood::Children(_, c) => c,
        };
        (c.tried.load(Ordering::Relaxed), c.connected.load(Ordering::Relaxed))
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        if let Flood::Children(children, _) = self {
            for c in children {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Raises this process's descriptor limit to at least `want`; false when not permitted.
fn raise_own_limit(want: u64) -> bool {
    let Ok((soft, hard)) = rlimit::getrlimit(Resource::NOFILE) else { return false };
    if soft >= want {
        return true;
    }
    rlimit::setrlimit(Resource::NOFILE, want, hard.max(want)).is_ok()
}

/// Not a test of its own: the body of a child that `Flood` starts when this process may not hold
/// all the slow clients. Run without its variable, it does nothing.
#[test]
fn slow_clients_in_a_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let [addr, count, first] = spec.split(' ').collect::<Vec<_>>()[..] else { panic!("{CHILD_ENV}: {spec}") };
    let addr: SocketAddr = addr.parse().expect("address");
    let count: usize = count.parse().expect("count");
    let first: usize = first.parse().expect("first client");
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).expect("getrlimit");
    if soft < hard {
        rlimit::setrlimit(Resource::NOFILE, hard, hard).expect("raise the soft limit");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    rt.block_on(async {
        let (_set, counts) = flood_here(addr, count, first);
        let mut reported = (0, 0);
        // Runs until the parent kills it.
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = (counts.tried.load(Ordering::Relaxed), counts.connected.load(Ordering::Relaxed));
            if now != reported {
                println!("tried {} connected {}", now.0 - reported.0, now.1 - reported.1);
                reported = now;
            }
        }
    });
}

// ---- Floods -------------------------------------------------------------------------------------

/// Opens `clients` slow HTTP clients against `gw` and, while they connect and after, checks that
/// LDAP search, LDAPS bind and /healthz answer within [`ANSWER_WITHIN`] and that the gateway's
/// descriptors stay within its HTTP cap. Returns what was measured, for the record.
async fn flood_and_check(gw: &Gateway, clients: usize, ldaps: bool) -> String {
    let http_cap = gw.cap("http_max_connections");
    // Warm up (and show the services answer before the flood).
    ldap_search(gw.ldap).await;
    healthz(gw.http).await;
    let baseline = gw.open_fds();
    let started = Instant::now();
    let flood = Flood::start(gw.http, clients);
    let mut worst = [Duration::ZERO; 3];
    let mut max_fds = baseline;
    let mut rounds = 0;
    // While the clients connect, and for a while once all have tried.
    let mut done_at = None;
    loop {
        let fds = gw.open_fds();
        max_fds = max_fds.max(fds);
        worst[0] = worst[0].max(ldap_search(gw.ldap).await);
        if ldaps {
            worst[1] = worst[1].max(ldaps_bind(gw.ldaps).await);
        }
        // Only a fair test of /healthz while HTTP is full.
        if fds >= baseline + http_cap * 9 / 10 {
            worst[2] = worst[2].max(healthz(gw.http).await);
            rounds += 1;
        }
        let (tried, _) = flood.progress();
        if done_at.is_none() && tried == clients {
            done_at = Some(Instant::now());
        }
        if done_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(40), "only {tried} of {clients} slow clients tried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp = done_at.map(|t| t - started).unwrap_or_default();
    let (_, connected) = flood.progress();
    assert!(connected >= clients * 95 / 100, "only {connected} of {clients} slow clients connected");
    // The flood filled the cap, and never went past it (beyond the few displaced connections
    // still closing): refused clients were closed at once.
    assert!(
        max_fds >= baseline + http_cap * 9 / 10,
        "the flood did not fill the HTTP cap ({http_cap}): at most {max_fds} descriptors, {baseline} before"
    );
    assert!(
        max_fds <= baseline + http_cap + 48,
        "the gateway held {max_fds} descriptors: more than {baseline} + the HTTP cap {http_cap}"
    );
    assert!(rounds > 0, "/healthz was never tried while HTTP was full");
    // Everything keeps answering once the clients have all tried.
    worst[0] = worst[0].max(ldap_search(gw.ldap).await);
    if ldaps {
        worst[1] = worst[1].max(ldaps_bind(gw.ldaps).await);
    }
    worst[2] = worst[2].max(healthz(gw.http).await);
    drop(flood);
    format!(
        "{connected} of {clients} slow clients connected in {ramp:?}; gateway descriptors {baseline} before, \
         at most {max_fds}, HTTP cap {http_cap}; slowest LDAP search {:?}, slowest LDAPS bind {:?}, \
         slowest /healthz {:?} ({rounds} tries while HTTP was full)",
        worst[0], worst[1], worst[2]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_slow_http_clients_leave_ldap_ldaps_and_healthz_answering() {
    let _one_at_a_time = FLOOD.lock().await;
    // The default caps, soft limit 1024 under a hard limit of 20000: the gateway raises the soft
    // limit and the budget fits without scaling.
    let gw = Gateway::start("", "header_timeout = \"3s\"\nbody_timeout = \"3s\"", (1024, 20_000));
    let budget = gw.budget();
    assert_eq!(budget["nofile"], 20_000, "the soft limit was raised to the hard one: {budget}");
    assert_eq!((gw.cap("ldap_max_connections"), gw.cap("http_max_connections")), (4096, 1024), "{budget}");
    let record = flood_and_check(&gw, 20_000, true).await;
    println!("{record}");
    // Refused connections are not a line each.
    let refused = gw.warnings("connection refused");
    assert!(refused.len() <= 4, "{} refusal warnings: {refused:#?}", refused.len());
    assert!(gw.warnings("accept failed").is_empty(), "{:#?}", gw.warnings("accept failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_limit_of_1024_the_caps_are_scaled_and_ldap_and_healthz_still_answer() {
    let _one_at_a_time = FLOOD.lock().await;
    // Hard limit 1024 too: with a higher one the gateway would raise its soft limit past 1024.
    let gw = Gateway::start("", "header_timeout = \"3s\"", (1024, 1024));
    let budget = gw.budget();
    assert_eq!(budget["level"], "WARN", "scaling is announced: {budget}");
    assert_eq!(budget["nofile"], 1024, "{budget}");
    let (ldap, http, reserve) = (gw.cap("ldap_max_connections"), gw.cap("http_max_connections"), gw.cap("reserve"));
    assert!(ldap < 4096 && http < 1024, "{budget}");
    assert!(ldap + http + reserve <= 1024, "{budget}");
    let record = flood_and_check(&gw, 3000, false).await;
    println!("{record}");
    assert!(gw.warnings("accept failed").is_empty(), "{:#?}", gw.warnings("accept failed"));
}

// ---- Timeouts -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_cut_at_the_header_timeout() {
    let gw = Gateway::start("", "header_timeout = \"2s\"\nidle_timeout = \"30s\"", (1024, 1024));
    let limit = Duration::from_secs(2);
    let slack = Duration::from_millis(1500);
    // A request line sent one byte a second, never finished; and a client that sends nothing.
    let loris = async {
        let mut s = TcpStream::connect(gw.http).await.expect("connect");
        let started = Instant::now();
        for b in b"GET /healthz-and-more-and-more".iter().cycle() {
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut [0u8; 512])).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) => assert!(started.elapsed() < limit + slack, "still open after {:?}", started.elapsed()),
            }
        }
        started.elapsed()
    };
    let silent = async {
        let mut s = TcpStream::connect(gw.http).await.expect("connect");
        let started = Instant::now();
        read_to_close(&mut s, limit + slack).await.expect("a silent connection is closed");
        started.elapsed()
    };
    let (loris, silent) = tokio::join!(loris, silent);
    println!("slow request line closed after {loris:?}, silent connection after {silent:?}");
    for t in [loris, silent] {
        assert!(t >= limit - Duration::from_millis(200) && t <= limit + slack, "closed after {t:?}");
    }
    // The listener itself is fine.
    healthz(gw.http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_short_is_answered_408_at_the_body_timeout() {
    let gw = Gateway::start("", "body_timeout = \"2s\"", (1024, 1024));
    let limit = Duration::from_secs(2);
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nhost: idgate\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/scim+json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n"
    );
    // 10 bytes of the announced 100, then nothing.
    let mut s = TcpStream::connect(gw.http).await.expect("connect");
    s.write_all(format!("{head}{{\"schemas\"").as_bytes()).await.expect("send");
    let started = Instant::now();
    let answer = read_to_close(&mut s, limit + Duration::from_millis(1500)).await.expect("closed in time");
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    println!("short body answered after {took:?}: {answer:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took >= limit - Duration::from_millis(200), "answered after {took:?}, before the body timeout");
    // The same request with its whole body is read and judged on its content, at once.
    let mut s = TcpStream::connect(gw.http).await.expect("connect");
    s.write_all(format!("{head}{:<100}", "{\"schemas\": 1").as_bytes()).await.expect("send");
    let started = Instant::now();
    let answer = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap_or_default();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

// ---- Over the caps ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_caps_new_connections_are_closed_at_once_and_logged_sparingly() {
    let gw = Gateway::start("max_connections = 6", "max_connections = 20\nbody_timeout = \"30s\"", (1024, 20_000));
    assert_eq!((gw.cap("ldap_max_connections"), gw.cap("http_max_connections")), (6, 20));

    // HTTP: 20 requests in progress (bodies arriving slowly) take every slot; such connections are
    // never displaced, so 300 more are each closed at once.
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(gw.http).await.expect("connect");
        let head = format!(
            "POST /scim/v2/Users HTTP/1.1\r\nhost: idgate\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/scim+json\r\ncontent-length: 100\r\n\r\n{{"
        );
        s.write_all(head.as_bytes()).await.expect("send");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..300 {
        let mut s = TcpStream::connect(gw.http).await.expect("connect");
        let started = Instant::now();
        let answer = read_to_close(&mut s, Duration::from_secs(1)).await.expect("refused at once");
        slowest = slowest.max(started.elapsed());
        assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 503"), "{}", String::from_utf8_lossy(&answer));
    }
    println!("300 HTTP connections over the cap closed, the slowest after {slowest:?}");
    // The held ones were untouched by that.
    for s in &mut held {
        assert!(read_to_close(s, Duration::from_millis(10)).await.is_none(), "a held connection was closed");
    }

    // LDAP: one cap for both listeners. Four plain and two LDAPS connections fill it.
    let mut ldap_held = Vec::new();
    for addr in [gw.ldap, gw.ldap, gw.ldap, gw.ldap, gw.ldaps, gw.ldaps] {
        ldap_held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..200 {
        let addr = if i % 2 == 0 { gw.ldap } else { gw.ldaps };
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let answer = read_to_close(&mut s, Duration::from_secs(1)).await.expect("refused at once");
        if addr == gw.ldap {
            // A Notice of Disconnection with resultCode busy (51).
            assert!(answer.first() == Some(&0x30) && answer.windows(3).any(|w| w == [0x0a, 0x01, 51]), "{answer:?}");
        }
    }
    // Freed slots are used again.
    drop(ldap_held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    ldap_search(gw.ldap).await;

    // 500 refusals, a handful of lines at most (one per listener and interval).
    let http_lines = gw.warnings("HTTP connection refused");
    let ldap_lines = gw.warnings("LDAP connection refused");
    println!("refusal warnings: {http_lines:#?} {ldap_lines:#?}");
    assert!((1..=2).contains(&http_lines.len()), "{http_lines:#?}");
    assert!((1..=4).contains(&ldap_lines.len()), "{ldap_lines:#?}");
    assert!(http_lines[0].contains("http.max_connections (20)"), "{}", http_lines[0]);
    assert!(ldap_lines[0].contains("ldap.max_connections (6)"), "{}", ldap_lines[0]);
    drop(held);
}
