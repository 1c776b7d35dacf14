//! Framing of LDAP input before authentication: declared lengths the server will not accept are
//! refused as soon as the header arrives, memory stays bounded whatever clients declare, large
//! messages share a server-wide pending budget, and undecodable operations never make a
//! dependency write to stdout.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use ldap3_proto::LdapCodec;
use ldap3_proto::proto::{LdapFilter, LdapMsg, LdapOp, LdapResult, LdapResultCode, LdapSearchScope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// The tests here run one at a time: the memory test reads the whole process's RSS, which the
/// others (password hashing in binds, large messages) would disturb.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A header declaring a 2 GiB LDAPMessage.
const HEADER_2GIB: [u8; 6] = [0x30, 0x84, 0x7f, 0xff, 0xff, 0xff];

/// Resident set size of this process (the server runs in it), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Samples the RSS in the background and keeps the highest value seen.
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl RssPeak {
    fn start() -> RssPeak {
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        RssPeak { peak, stop, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler");
        self.peak.fetch_max(rss_bytes(), Ordering::Relaxed);
        self.peak.load(Ordering::Relaxed)
    }
}

/// Decodes the one message at the start of `bytes` (the server's answer).
fn decode_one(bytes: &[u8]) -> Option<LdapMsg> {
    let mut buf = BytesMut::from(bytes);
    LdapCodec::new(Some(1 << 20), None).decode(&mut buf).ok().flatten()
}

/// The result of a Notice of Disconnection, or a description of what came instead.
fn notice_result(m: &LdapMsg) -> Result<&LdapResult, String> {
    match &m.op {
        LdapOp::ExtendedResponse(x) if m.msgid == 0 && x.name.as_deref() == Some(NOTICE_OID) => Ok(&x.res),
        _ => Err(format!("not a Notice of Disconnection: {m:?}")),
    }
}

/// Sends a 2 GiB header and then up to `body` zero bytes, while reading what the server answers
/// until it closes. The sending side stays open throughout: the server must close on its own,
/// not because the client did. Returns everything read and how long the close took.
async fn declare_2gib(addr: std::net::SocketAddr, body: usize) -> (Vec<u8>, Duration) {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    let write = async {
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            wr.write_all(&HEADER_2GIB).await?;
            let mut sent = 0;
            while sent < body {
                let n = (body - sent).min(ZEROS.len());
                // The server may close while this is still being sent: that is the point.
                wr.write_all(&ZEROS[..n]).await?;
                sent += n;
            }
            std::io::Result::Ok(())
        })
        .await;
    };
    let read = async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        (got, started.elapsed(), closed.is_ok())
    };
    let ((), (got, took, closed)) = tokio::join!(write, read);
    drop(wr);
    assert!(closed, "the server did not close a connection declaring 2 GiB within 10 s");
    (got, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_declared_lengths_are_refused_at_once_and_cost_no_memory() {
    let _serial = SERIAL.lock().await;
    let demo = start_demo_full().await;
    let fx = demo.fixture();
    let addr = demo.running.ldap_addr;

    // Warm up (runtime threads, allocator arenas) so that the baseline is fair.
    for _ in 0..5 {
        declare_2gib(addr, 64 * 1024).await;
    }
    assert_healthy(&demo.url, &fx).await;
    let before = rss_bytes();
    let sampler = RssPeak::start();

    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..100 {
        clients.spawn(declare_2gib(addr, 1024 * 1024));
    }
    let mut slowest = Duration::ZERO;
    let mut notices = 0;
    while let Some(r) = clients.join_next().await {
        let (got, took) = r.expect("client task");
        slowest = slowest.max(took);
        // The notice arrives before the close unless the reset overtook it; when it is there it
        // must say what was wrong.
        if let Some(m) = decode_one(&got) {
            let res = notice_result(&m).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(res.code, LdapResultCode::ProtocolError);
            assert!(res.message.contains("ldap.max_message_bytes"), "{:?}", res.message);
            notices += 1;
        } else {
            assert!(got.is_empty(), "the server answered something other than a notice: {got:02x?}");
        }
    }
    let peak = sampler.finish();
    let growth = peak.saturating_sub(before);
    eprintln!(
        "100 x 2 GiB headers: slowest close {slowest:?}, {notices} notices read, RSS {} KiB -> peak {} KiB (+{} KiB)",
        before / 1024,
        peak / 1024,
        growth / 1024
    );
    assert!(slowest < Duration::from_secs(3), "a connection took {slowest:?} to be closed");
    assert!(notices >= 90, "only {notices} of 100 connections got the notice");
    assert!(growth < 10 * 1024 * 1024, "RSS grew by {} KiB", growth / 1024);
    assert_healthy(&demo.url, &fx).await;
    demo.running.shutdown().await;
}

/// Reads a Notice of Disconnection and then the close, both within `within`.
async fn notice_then_close_within(raw: &mut Raw, within: Duration, what: &str) -> LdapResult {
    let started = Instant::now();
    let m = raw.recv().await.unwrap_or_else(|| panic!("{what}: closed without a Notice of Disconnection"));
    let res = notice_result(&m).unwrap_or_else(|e| panic!("{what}: {e}")).clone();
    assert!(raw.recv().await.is_none(), "{what}: the server closes after the notice");
    let took = started.elapsed();
    assert!(took < within, "{what}: notice and close took {took:?}");
    res
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lengths_are_refused_without_waiting() {
    let _serial = SERIAL.lock().await;
    let demo = start_demo_full().await;
    let fx = demo.fixture();
    let mut long_field = vec![0x30, 0xff];
    long_field.extend([0x01; 127]);
    // What is sent, and what the notice must say.
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("reserved length 0xff", vec![0x30, 0xff], "reserved length octet 0xff"),
        ("127-octet length field", long_field, "reserved length octet 0xff"),
        ("five length octets", vec![0x30, 0x85, 0x00, 0x00, 0x00, 0x00, 0x10], "a length of 5 octets"),
        ("126 length octets, only the first sent", vec![0x30, 0xfe], "a length of 126 octets"),
        ("indefinite length", vec![0x30, 0x80], "indefinite length"),
        ("2 GiB declared, no body", HEADER_2GIB.to_vec(), "ldap.max_message_bytes"),
    ];
    for (what, bytes, says) in cases {
        let mut raw = bound_raw(&demo, &fx).await;
        raw.write_bytes(&bytes).await;
        let res = notice_then_close_within(&mut raw, Duration::from_secs(1), what).await;
        assert_eq!(res.code, LdapResultCode::ProtocolError, "{what}");
        assert!(res.message.contains(says), "{what}: {:?}", res.message);
        assert_healthy(&demo.url, &fx).await;
    }

    // Header split across writes: refused on the first length octet that proves it too large.
    let mut raw = Raw::connect(demo.running.ldap_addr).await;
    raw.write_bytes(&[0x30]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.write_bytes(&[0x84, 0x01]).await;
    let res = notice_then_close_within(&mut raw, Duration::from_secs(1), "split header declaring 16 MiB or more").await;
    assert!(res.message.contains("ldap.max_message_bytes"), "{:?}", res.message);
    assert_healthy(&demo.url, &fx).await;
    demo.running.shutdown().await;
}

async fn bound_raw(demo: &Demo, fx: &DirFixture) -> Raw {
    let mut raw = Raw::connect(demo.running.ldap_addr).await;
    assert_eq!(raw.bind(&fx.service_dn, &fx.service_password).await.code, LdapResultCode::Success);
    raw
}

/// A search for `uid=<login>` OR a description of `pad` bytes, encoded; about `pad` bytes long.
fn big_search(msgid: i32, fx: &DirFixture, pad: usize) -> Vec<u8> {
    let mut req = search_req(&fx.users_base, LdapSearchScope::Subtree, "(uid=x)", &["uid"]);
    req.filter = LdapFilter::Or(vec![eq("uid", &fx.user_login), eq("description", &"x".repeat(pad))]);
    let mut buf = BytesMut::new();
    LdapCodec::new(Some(64 << 20), None)
        .encode(LdapMsg::new(msgid, LdapOp::SearchRequest(req)), &mut buf)
        .expect("encode");
    buf.to_vec()
}

/// Reads a search's answer to message `id` and returns the uids found and the result code.
async fn search_answer(raw: &mut Raw, id: i32) -> (Vec<String>, LdapResultCode) {
    let mut uids = Vec::new();
    loop {
        let m = raw.recv_some().await;
        assert_eq!(m.msgid, id, "{m:?}");
        match m.op {
            LdapOp::SearchResultEntry(e) => uids.extend(raw_attr(&e, "uid")),
            LdapOp::SearchResultDone(r) => return (uids, r.code),
            other => panic!("unexpected answer {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_share_the_pending_budget() {
    let _serial = SERIAL.lock().await;
    let budget = 1024 * 1024;
    let demo = start_demo_with(|c| c.ldap.max_pending_bytes = budget).await;
    let fx = demo.fixture();
    let big = big_search(2, &fx, 700 * 1024);
    assert!(big.len() > budget / 2 && big.len() < budget);

    // The first client sends half of a 700 KiB message and holds it.
    let mut first = bound_raw(&demo, &fx).await;
    first.write_bytes(&big[..big.len() / 2]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A second large message does not fit beside it: busy, then close.
    let mut second = bound_raw(&demo, &fx).await;
    second.write_bytes(&big[..4096]).await;
    let res = notice_then_close_within(&mut second, Duration::from_secs(1), "second large message").await;
    assert_eq!(res.code, LdapResultCode::Busy);
    assert_eq!(res.message, "server busy: too much input pending from all clients");
    // Small requests need no budget and go on being served.
    assert_healthy(&demo.url, &fx).await;

    // The first message completes normally and gives its share back.
    first.write_bytes(&big[big.len() / 2..]).await;
    let (uids, code) = search_answer(&mut first, 2).await;
    assert_eq!((uids, code), (vec![fx.user_login.clone()], LdapResultCode::Success));

    // Now a large message fits again, even sent slowly.
    let mut third = bound_raw(&demo, &fx).await;
    third.write_bytes(&big[..big.len() / 2]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    third.write_bytes(&big[big.len() / 2..]).await;
    assert_eq!(search_answer(&mut third, 2).await.1, LdapResultCode::Success);

    // A client that leaves mid-message gives its share back too.
    let mut quitter = bound_raw(&demo, &fx).await;
    quitter.write_bytes(&big[..big.len() / 2]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(quitter);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut next = bound_raw(&demo, &fx).await;
        next.write_bytes(&big[..big.len() / 2]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Refused connections may reset the rest of the write; a busy notice is what they see.
        let rest = next.framed.get_mut().write_all(&big[big.len() / 2..]).await;
        match next.recv().await {
            Some(m) if m.msgid == 2 => {
                rest.expect("the rest was written");
                let LdapOp::SearchResultEntry(_) = m.op else { panic!("expected the entry, got {m:?}") };
                assert_eq!(search_answer(&mut next, 2).await.1, LdapResultCode::Success);
                break;
            }
            Some(m) => {
                assert_eq!(notice_result(&m).map(|r| r.code.clone()), Ok(LdapResultCode::Busy));
                assert!(Instant::now() < deadline, "the budget was not given back after a client left");
            }
            None => panic!("closed without an answer"),
        }
    }
    demo.running.shutdown().await;
}

// ---- the real binary: nothing on stdout -----------------------------------------------------------

/// Sends `bytes` on a fresh connection and returns everything the server answers until it closes.
fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the subprocess");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(bytes).expect("write");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn unknown_operations_are_refused_and_nothing_reaches_stdout() {
    let _serial = SERIAL.blocking_lock();
    let gw = common::process::Gateway::start();
    let addr = gw.ldap_addr;

    // [APPLICATION 26], [APPLICATION 17], a constructed DelRequest and a primitive BindRequest:
    // each one an operation ldap3_proto would answer with a line on stdout.
    let ops: [&[u8]; 4] =
        [&[0x7a, 0x06, 0x04, 0x04, b'w', b'h', b'a', b't'], &[0x71, 0x00], &[0x6a, 0x02, 0x04, 0x00], &[0x40, 0x00]];
    for op in ops {
        let mut msg = vec![0x30, (3 + op.len()) as u8, 0x02, 0x01, 0x01];
        msg.extend_from_slice(op);
        let got = exchange(addr, &msg);
        let m = decode_one(&got).unwrap_or_else(|| panic!("op {:#04x}: no notice, got {got:02x?}", op[0]));
        let res = notice_result(&m).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(res.code, LdapResultCode::ProtocolError, "op {:#04x}", op[0]);
        assert!(res.message.contains("unknown protocolOp"), "{:?}", res.message);
    }
    // The server still serves: an anonymous Root DSE read is answered.
    let mut root_dse = BytesMut::new();
    let req = search_req("", LdapSearchScope::Base, "(objectClass=*)", &[]);
    LdapCodec::default().encode(LdapMsg::new(2, LdapOp::SearchRequest(req)), &mut root_dse).expect("encode");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(&root_dse).expect("write");
    let mut got = vec![0u8; 65536];
    let n = s.read(&mut got).expect("the Root DSE is answered");
    let m = decode_one(&got[..n]).expect("an LDAP message");
    assert!(matches!(m.op, LdapOp::SearchResultEntry(_)), "{m:?}");
    drop(s);

    // A clean stop flushes whatever the process might have buffered.
    let stopped = gw.stop(Duration::from_secs(20));
    let (stdout, logs) = (stopped.stdout, stopped.logs);
    assert!(logs.contains("unknown protocolOp"), "the refusals are logged on stderr: {logs}");
    assert!(stdout.is_empty(), "idgate wrote to stdout: {:?}", String::from_utf8_lossy(&stdout));
}
