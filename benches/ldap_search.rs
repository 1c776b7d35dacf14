//! Cached LDAP throughput: equality searches on random uids and binds as random users against a
//! 10 000-user directory, from 32 concurrent connections, for a fixed time. The server runs in
//! this process on loopback, sharing the machine's cores with the load generator.
//!
//! Run: `cargo bench --bench ldap_search` (env: BENCH_USERS, BENCH_CLIENTS, BENCH_SECONDS).
//!
//! The same load can be sent to another server holding the same entries (see
//! `scripts/bench-vs-slapd.sh`): BENCH_TARGET=host:port, BENCH_BIND_DN, BENCH_BIND_PW. With
//! BENCH_WRITE_SEED=path or BENCH_WRITE_LDIF=path it writes the directory and exits.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{seed, seed_json};
use futures_util::{SinkExt, StreamExt};
use idgate::backend::memory::MemoryBackend;
use idgate::config::Config;
use ldap3_proto::LdapCodec;
use ldap3_proto::proto::*;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Counts live heap bytes, so the gateway's own memory can be told apart from the embedded
/// backend's and from freed memory the allocator keeps.
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live_kib() -> u64 {
    (LIVE.load(std::sync::atomic::Ordering::Relaxed) / 1024) as u64
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn client(addr: std::net::SocketAddr) -> Framed<TcpStream, LdapCodec> {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    Framed::new(s, LdapCodec::new(Some(8 << 20), None))
}

async fn bind(f: &mut Framed<TcpStream, LdapCodec>, id: i32, dn: &str, pw: &str) -> bool {
    let req = LdapBindRequest { version: 3, dn: dn.into(), cred: LdapBindCred::Simple(pw.into()) };
    f.send(LdapMsg::new(id, LdapOp::BindRequest(req))).await.unwrap();
    matches!(f.next().await, Some(Ok(LdapMsg { op: LdapOp::BindResponse(r), .. })) if r.res.code == LdapResultCode::Success)
}

async fn search(f: &mut Framed<TcpStream, LdapCodec>, id: i32, uid: &str) -> usize {
    let req = LdapSearchRequest {
        base: "dc=example,dc=com".into(),
        scope: LdapSearchScope::Subtree,
        aliases: LdapDerefAliases::Never,
        sizelimit: 0,
        timelimit: 0,
        typesonly: false,
        filter: LdapFilter::Equality("uid".into(), uid.into()),
        attrs: vec![],
    };
    f.send(LdapMsg::new(id, LdapOp::SearchRequest(req))).await.unwrap();
    let mut entries = 0;
    while let Some(Ok(m)) = f.next().await {
        match m.op {
            LdapOp::SearchResultEntry(_) => entries += 1,
            LdapOp::SearchResultDone(_) => break,
            _ => {}
        }
    }
    entries
}

fn report(name: &str, lat: &mut [Duration], elapsed: Duration) {
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{name:<28} {:>9.0} ops/s   p50 {:>7.3} ms   p99 {:>7.3} ms   ({} ops)",
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.len()
    );
}

async fn run_load<F, Fut>(clients: usize, f: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Vec<Duration>> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let f = f.clone();
        tasks.push(tokio::spawn(async move { f(c).await }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, start.elapsed())
}

/// The same users as LDIF, for loading into another server (passwords as `{SSHA}` from `BENCH_PW_HASH`).
fn ldif(users: usize, pw_hash: &str) -> String {
    let mut out = String::from(
        "dn: dc=example,dc=com\nobjectClass: top\nobjectClass: domain\ndc: example\n\n\
         dn: ou=people,dc=example,dc=com\nobjectClass: top\nobjectClass: organizationalUnit\nou: people\n\n",
    );
    for i in 0..users {
        out.push_str(&format!(
            "dn: uid=user{i:05},ou=people,dc=example,dc=com\nobjectClass: top\nobjectClass: inetOrgPerson\n\
             objectClass: posixAccount\nuid: user{i:05}\ncn: User {i}\nsn: {i}\ngivenName: User\n\
             mail: user{i:05}@example.com\nuidNumber: {}\ngidNumber: 10000\nhomeDirectory: /home/user{i:05}\n\
             userPassword: {pw_hash}\n\n",
            10_001 + i
        ));
    }
    out
}

fn main() {
    let users = env("BENCH_USERS", 10_000);
    let clients = env("BENCH_CLIENTS", 32);
    let secs = env("BENCH_SECONDS", 5) as u64;
    if let Ok(path) = std::env::var("BENCH_WRITE_SEED") {
        std::fs::write(&path, serde_json::to_string(&seed_json(users)).unwrap()).unwrap();
        return;
    }
    if let Ok(path) = std::env::var("BENCH_WRITE_LDIF") {
        let hash = std::env::var("BENCH_PW_HASH").unwrap_or_else(|_| "bench-password".into());
        std::fs::write(&path, ldif(users, &hash)).unwrap();
        return;
    }
    let external = std::env::var("BENCH_TARGET").ok();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        if let Some(target) = external {
            let addr: std::net::SocketAddr = target.parse().expect("BENCH_TARGET=host:port");
            let dn = std::env::var("BENCH_BIND_DN").expect("BENCH_BIND_DN");
            let pw = std::env::var("BENCH_BIND_PW").expect("BENCH_BIND_PW");
            println!("target {target}; {users} users; {clients} clients, {secs} s per test");
            measure(addr, users, clients, secs, Arc::new((dn, pw))).await;
            return;
        }
        let cfg = Config::parse("[ldap]\nlisten=\"127.0.0.1:0\"\n[http]\nlisten=\"127.0.0.1:0\"\n[backend]\nkind=\"memory\"\n[[ldap.service_accounts]]\nname=\"reader\"\npassword=\"pw\"\naccess=\"read\"\n").unwrap();
        let t = Instant::now();
        let backend = Arc::new(MemoryBackend::from_seed(seed(users)).unwrap());
        let live_backend = live_kib();
        let running = idgate::app::start_with_backend(cfg, backend).await.unwrap();
        println!("{users} users loaded and indexed in {:.2} s; {clients} clients, {secs} s per test", t.elapsed().as_secs_f64());
        if std::env::var("BENCH_MEMORY").is_ok() {
            // The gateway's own share: what the live heap grew by once the directory was loaded and
            // every user was looked up once, beyond the embedded backend's copy of the data.
            let mut f = client(running.ldap_addr).await;
            assert!(bind(&mut f, 1, "cn=reader,ou=services,dc=example,dc=com", "pw").await);
            for i in (0..users).step_by(1) {
                search(&mut f, 2 + i as i32, &format!("user{i:05}")).await;
            }
            let (before, after) = (live_backend, live_kib());
            println!("live heap: {before} KiB with the backend loaded, {after} KiB after the gateway served every user");
            println!("gateway's share: about {} MiB ({} bytes per user)", (after - before) / 1024, (after - before) * 1024 / users as u64);
            running.shutdown().await;
            return;
        }
        let svc = Arc::new(("cn=reader,ou=services,dc=example,dc=com".to_string(), "pw".to_string()));
        measure(running.ldap_addr, users, clients, secs, svc).await;
        running.shutdown().await;
    });
}

async fn measure(addr: std::net::SocketAddr, users: usize, clients: usize, secs: u64, svc: Arc<(String, String)>) {
    // Build the tree once before measuring.
    let mut warm = client(addr).await;
    assert!(bind(&mut warm, 1, &svc.0, &svc.1).await, "service bind");
    assert_eq!(search(&mut warm, 2, "user00001").await, 1);

    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut lat, el) = run_load(clients, move |c| {
        let svc = svc.clone();
        async move {
            let mut f = client(addr).await;
            assert!(bind(&mut f, 1, &svc.0, &svc.1).await);
            let mut lat = Vec::new();
            let mut i = c * 7919;
            let mut id = 2;
            while Instant::now() < deadline {
                i = (i * 1_103_515_245 + 12_345) % users;
                let t = Instant::now();
                assert_eq!(search(&mut f, id, &format!("user{i:05}")).await, 1);
                lat.push(t.elapsed());
                id += 1;
            }
            lat
        }
    })
    .await;
    report("search (uid=random)", &mut lat, el);

    // Warm the bind cache for every user, then measure cached binds on one connection each.
    let mut f = client(addr).await;
    for i in 0..users {
        assert!(
            bind(&mut f, i as i32 + 1, &format!("uid=user{i:05},ou=people,dc=example,dc=com"), "bench-password").await
        );
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut lat, el) = run_load(clients, move |c| async move {
        let mut f = client(addr).await;
        let mut lat = Vec::new();
        let mut i = c * 104_729;
        let mut id = 1;
        while Instant::now() < deadline {
            i = (i * 1_103_515_245 + 12_345) % users;
            let t = Instant::now();
            assert!(bind(&mut f, id, &format!("uid=user{i:05},ou=people,dc=example,dc=com"), "bench-password").await);
            lat.push(t.elapsed());
            id += 1;
        }
        lat
    })
    .await;
    report("bind (cached, random user)", &mut lat, el);

    // Connection per operation, as net-ldap clients do: connect, bind, search, close.
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut lat, el) = run_load(clients, move |c| async move {
        let mut lat = Vec::new();
        let mut i = c * 31;
        while Instant::now() < deadline {
            i = (i * 1_103_515_245 + 12_345) % users;
            let t = Instant::now();
            let mut f = client(addr).await;
            assert!(bind(&mut f, 1, &format!("uid=user{i:05},ou=people,dc=example,dc=com"), "bench-password").await);
            assert_eq!(search(&mut f, 2, &format!("user{i:05}")).await, 1);
            lat.push(t.elapsed());
        }
        lat
    })
    .await;
    report("connect+bind+search+close", &mut lat, el);
}
