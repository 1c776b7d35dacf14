//! Failed binds over LDAP, as an attacker and as a crowd of careless users would send them: the
//! throttle slows guessing down without locking legitimate clients out, service accounts cannot be
//! switched off from outside their networks, failures take the same time whatever their cause (in
//! front of the demo and of a Dolibarr that delays failed logins by a second), made-up names cost
//! no backend call each, and brute force does not grow the process.

mod common;
mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Raw, start_demo_with, user_dn};
use idgate::backend::Backend;
use idgate::config::Config;
use idgate::model::NewUser;
use support::dolibarr_sim::{DolibarrSim, Version};

const READER_DN: &str = "cn=reader,ou=services,dc=example,dc=com";
const READER_PW: &str = "demo-reader";
const MS: Duration = Duration::from_millis(1);

/// Short delays, so that the tests show the policy in seconds rather than minutes.
fn quick(c: &mut Config) {
    c.bind_throttle.first_delay = 50 * MS;
    c.bind_throttle.max_delay = 400 * MS;
    c.bind_throttle.max_address_delay = 100 * MS;
}

/// These tests measure times and memory: one at a time, so that they do not measure each other.
async fn alone() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE.lock().await
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// One bind on a fresh connection from `source`: (result code, message, time the bind took).
async fn bind_from(addr: SocketAddr, source: IpAddr, dn: &str, pw: &str) -> (u32, String, Duration) {
    let mut raw = Raw::connect_from(addr, source).await;
    let t = Instant::now();
    let r = raw.bind(dn, pw).await;
    (r.code as u32, r.message, t.elapsed())
}

async fn bind_rc(addr: SocketAddr, dn: &str, pw: &str) -> u32 {
    bind_from(addr, ip("127.0.0.1"), dn, pw).await.0
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_application_address_with_100_failures_still_binds_its_service_and_its_users() {
    let _alone = alone().await;
    let demo = start_demo_with(quick).await;
    let addr = demo.running.ldap_addr;
    let users = ["bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory"];
    // An application server binding for its users: 100 failures of 10 real users and 40 unknown
    // names, all from one address.
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    for n in 0..100 {
        let login = if n % 2 == 0 { users[n / 2 % users.len()].to_string() } else { format!("nobody{n}") };
        let (rc, msg, took) = bind_from(addr, ip("127.0.0.1"), &user_dn(&login), "wrong").await;
        assert_eq!(rc, 49, "{login}: {msg}");
        slowest = slowest.max(took);
    }
    // Past 30 failures the address's failures were slowed, within its cap.
    assert!(slowest >= 90 * MS, "the address's failures are slowed: slowest {slowest:?}");
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    // Its service account, a user who never bound from it, and one of the mistyping users all get in
    // at once with their right passwords.
    let t = Instant::now();
    assert_eq!(bind_rc(addr, READER_DN, READER_PW).await, 0);
    assert_eq!(bind_rc(addr, &user_dn("alice"), "alice-demo").await, 0);
    assert_eq!(bind_rc(addr, &user_dn("bob"), "bob-demo").await, 0);
    assert!(t.elapsed() < Duration::from_secs(2), "successes are not slowed: {:?}", t.elapsed());
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_cannot_be_switched_off_from_outside_its_networks() {
    let _alone = alone().await;
    let demo = start_demo_with(|c| {
        quick(c);
        for sa in &mut c.ldap.service_accounts {
            sa.networks = vec!["127.0.0.1/32".parse().expect("network")];
        }
    })
    .await;
    let addr = demo.running.ldap_addr;
    let outside = ip("127.0.0.66");
    for i in 0..10 {
        let (rc, msg, _) = bind_from(addr, outside, READER_DN, &format!("wrong-{i}")).await;
        assert_eq!(rc, 49, "{msg}");
    }
    let (rc, _, _) = bind_from(addr, outside, READER_DN, READER_PW).await;
    assert_eq!(rc, 49, "the right password from outside the networks does not bind either");
    let (rc, msg, took) = bind_from(addr, ip("127.0.0.1"), READER_DN, READER_PW).await;
    assert_eq!(rc, 0, "{msg}");
    assert!(took < Duration::from_millis(500), "not slowed inside its network: {took:?}");
    // Even wrong passwords from inside only slow the account down: the next right one binds.
    for i in 0..7 {
        assert_eq!(bind_from(addr, ip("127.0.0.1"), READER_DN, &format!("typo-{i}")).await.0, 49);
    }
    assert_eq!(bind_from(addr, ip("127.0.0.1"), READER_DN, READER_PW).await.0, 0);
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_mistypes_is_slowed_down_never_refused_and_busy_is_not_a_wrong_password() {
    let _alone = alone().await;
    let demo = start_demo_with(quick).await;
    let addr = demo.running.ldap_addr;
    let alice = user_dn("alice");
    for _ in 0..5 {
        let (rc, _, took) = bind_from(addr, ip("127.0.0.1"), &alice, "typo").await;
        assert_eq!(rc, 49);
        assert!(took < Duration::from_millis(300), "the first five are free: {took:?}");
    }
    let (rc, _, took) = bind_from(addr, ip("127.0.0.1"), &alice, "typo").await;
    assert_eq!(rc, 49);
    assert!(took >= 50 * MS, "the sixth failure waits its delay: {took:?}");
    assert_eq!(bind_rc(addr, &alice, "alice-demo").await, 0, "the right password works at once");

    // Past the free failures, attempts that arrive while a failure is held are answered busy (51),
    // which clients do not count as a wrong password, and cost no check.
    for _ in 0..6 {
        assert_eq!(bind_rc(addr, &alice, "typo").await, 49);
    }
    let held = {
        let alice = alice.clone();
        tokio::spawn(async move { bind_from(addr, ip("127.0.0.1"), &alice, "typo").await })
    };
    tokio::time::sleep(30 * MS).await;
    let (rc, msg, took) = bind_from(addr, ip("127.0.0.1"), &alice, "alice-demo").await;
    assert_eq!(rc, 51, "{msg}");
    assert!(msg.contains("try again in"), "{msg}");
    assert!(took < 50 * MS, "answered at once: {took:?}");
    assert_eq!(held.await.expect("held bind").0, 49);
    assert_eq!(bind_rc(addr, &alice, "alice-demo").await, 0);
    demo.running.shutdown().await;
}

/// Medians (ms) of failed binds of unknown names, disabled users and wrong passwords, interleaved,
/// each bind with a name and a source address of its own. `parallel` binds of each kind at a time.
async fn failure_medians(
    addr: SocketAddr,
    unknown: &[String],
    disabled: &[String],
    wrong: &[String],
    parallel: usize,
) -> [f64; 3] {
    let kinds = [unknown, disabled, wrong];
    let mut times: [Vec<f64>; 3] = Default::default();
    let n = unknown.len();
    for start in (0..n).step_by(parallel) {
        let mut tasks = Vec::new();
        for i in start..(start + parallel).min(n) {
            for j in 0..3 {
                let k = (i + j) % 3; // rotate which kind goes first
                let source = ip(&format!("127.{}.{}.{}", 101 + k, i / 200, i % 200 + 1));
                let dn = user_dn(kinds[k].get(i).expect("a name per bind"));
                tasks.push((k, tokio::spawn(async move { bind_from(addr, source, &dn, "Wrong-Password-9").await })));
            }
        }
        for (k, t) in tasks {
            let (rc, msg, took) = t.await.expect("bind task");
            assert_eq!(rc, 49, "a plain failure: {msg}");
            times[k].push(took.as_secs_f64() * 1000.0);
        }
    }
    times.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    })
}

/// Failures are padded to the time the backend's recent failures took; a process that has not seen
/// one yet pads to `min_failure_time` only (README, Security). One wrong password teaches it.
async fn warm_up(addr: SocketAddr, login: &str) {
    assert_eq!(bind_from(addr, ip("127.100.0.1"), &user_dn(login), "warm-up").await.0, 49);
}

fn spread(m: &[f64; 3]) -> f64 {
    m.iter().copied().fold(f64::MIN, f64::max) - m.iter().copied().fold(f64::MAX, f64::min)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_binds_take_the_same_time_whatever_the_cause_in_front_of_the_demo() {
    let _alone = alone().await;
    let demo = start_demo_with(|_| {}).await;
    const N: usize = 30;
    let mut names: [Vec<String>; 3] = Default::default();
    for i in 0..N {
        names[0].push(format!("ghost{i:02}"));
        for (k, active) in [(1, false), (2, true)] {
            let login = format!("timing{k}x{i:02}");
            demo.backend
                .create_user(&NewUser {
                    login: login.clone(),
                    first_name: "Timing".into(),
                    last_name: "Oracle".into(),
                    email: format!("{login}@example.com"),
                    active,
                    password: Some("Timing-Password-1".into()),
                    ..Default::default()
                })
                .await
                .expect("create user");
            names[k].push(login);
        }
    }
    demo.directory().refresh_full().await.expect("refresh");
    warm_up(demo.running.ldap_addr, &names[2][0]).await;
    let m = failure_medians(demo.running.ldap_addr, &names[0], &names[1], &names[2], 1).await;
    eprintln!("medians (ms): unknown {:.2}, disabled {:.2}, wrong password {:.2}", m[0], m[1], m[2]);
    assert!(m[2] > 1.0, "a wrong password costs a real check here");
    assert!(spread(&m) <= 5.0, "medians within 5 ms: {m:?}");
    demo.running.shutdown().await;
}

async fn start_dolibarr(sim: &DolibarrSim) -> idgate::app::Running {
    let text = format!(
        r#"
        [ldap]
        listen = "127.0.0.1:0"
        [http]
        listen = "127.0.0.1:0"
        [backend]
        kind = "dolibarr"
        url = "{}"
        api_key = "{}"
        timeout = "5s"
        retries = 0
        "#,
        sim.url(),
        sim.admin_key()
    );
    idgate::app::start(Config::parse(&text).expect("config")).await.expect("gateway starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_binds_take_the_same_time_in_front_of_a_dolibarr_that_delays_failures_by_a_second() {
    let _alone = alone().await;
    let sim = DolibarrSim::start(Version::V22).await;
    sim.set_login_delay(Duration::from_secs(1));
    const N: usize = 30;
    let mut names: [Vec<String>; 3] = Default::default();
    for i in 0..N {
        names[0].push(format!("ghost{i:02}"));
        for k in [1, 2] {
            let login = format!("timing{k}x{i:02}");
            let id =
                sim.add_user(&login, "Timing", "Oracle", &format!("{login}@example.com"), Some("Timing-Password-1"));
            if k == 1 {
                sim.disable_user(id);
            }
            names[k].push(login);
        }
    }
    let running = start_dolibarr(&sim).await;
    warm_up(running.ldap_addr, &names[2][0]).await;
    let m = failure_medians(running.ldap_addr, &names[0], &names[1], &names[2], 5).await;
    eprintln!("medians (ms): unknown {:.2}, disabled {:.2}, wrong password {:.2}", m[0], m[1], m[2]);
    assert!(m[2] >= 1000.0, "Dolibarr's delay is real here: {m:?}");
    assert!(spread(&m) <= 5.0, "medians within 5 ms: {m:?}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_of_made_up_names_do_not_each_cost_a_backend_call() {
    let _alone = alone().await;
    let sim = DolibarrSim::start(Version::V22).await;
    let running = start_dolibarr(&sim).await;
    sim.reset_counts();
    let addr = running.ldap_addr;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let source = ip(&format!("127.7.{}.{}", i / 200, i % 200 + 1));
        tasks.push(tokio::spawn(async move { bind_from(addr, source, &user_dn(&format!("made-up-{i}")), "x").await }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("bind").0, 49);
    }
    let calls = sim.total_requests();
    assert!(calls <= 30, "200 made-up names cost {calls} backend calls");
    // One name again and again costs one lookup: the miss is remembered until the next refresh.
    sim.reset_counts();
    for i in 0..15 {
        let source = ip(&format!("127.9.0.{}", i + 1));
        assert_eq!(bind_from(addr, source, &user_dn("made-up-again"), "x").await.0, 49);
    }
    assert!(sim.total_requests() <= 1, "{} calls", sim.total_requests());
    // A user created in the ERP since the last refresh can still bind, once the lookup budget the
    // flood used up has refilled (or the next refresh has brought the account).
    tokio::time::sleep(Duration::from_secs(1)).await;
    sim.add_user("newcomer", "New", "Comer", "newcomer@example.com", Some("Newcomer-Pw-1"));
    assert_eq!(bind_rc(addr, &user_dn("newcomer"), "Newcomer-Pw-1").await, 0);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_does_not_grow_the_process() {
    let _alone = alone().await;
    let demo = start_demo_with(quick).await;
    let addr = demo.running.ldap_addr;
    let burst = |n: usize, round: usize| async move {
        let mut tasks = Vec::new();
        for i in 0..n {
            let source = ip(&format!("127.8.{round}.{}", i % 250 + 1));
            let login = ["alice", "bob", "carol", "dave", "erin"][i % 5];
            tasks.push(tokio::spawn(
                async move { bind_from(addr, source, &user_dn(login), &format!("guess-{i}")).await },
            ));
        }
        for t in tasks {
            let (rc, msg, _) = t.await.expect("bind");
            assert!(rc == 49 || rc == 51, "{rc} {msg}");
        }
    };
    burst(40, 1).await;
    let warm = rss_kib();
    for round in 2..6 {
        burst(120, round).await;
    }
    let grown = rss_kib().saturating_sub(warm) / 1024;
    eprintln!("RSS grew by {grown} MiB over 480 concurrent wrong passwords");
    assert!(grown < 32, "RSS grew by {grown} MiB");
    demo.running.shutdown().await;
}
