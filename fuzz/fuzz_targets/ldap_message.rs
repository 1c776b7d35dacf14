//! The LDAP message path as a connection sees it: framing and BER decoding of a byte stream that
//! arrives in arbitrary reads, then what the server does with each request before any backend is
//! involved: parse its DNs, find them in the tree, compile a search filter and evaluate it.
//!
//! Input: one byte that chooses how the stream is cut into reads, then the stream.
#![no_main]

use std::sync::{Arc, LazyLock};

use idgate::config::{Config, LdapConfig};
use idgate::directory::Snapshot;
use idgate::ldap::dit::{Dit, DitSettings, Entry};
use idgate::ldap::codec::{Codec, PendingBudget};
use idgate::ldap::dn::Dn;
use idgate::ldap::filter::{Filter, Limits};
use idgate::ldap::schema;
use idgate::model::{Group, User};
use ldap3_proto::proto::{LdapMsg, LdapOp};
use libfuzzer_sys::fuzz_target;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

/// The listener's codec for one connection: framing (header checks, the pending budget, the
/// messageID and operation checks) and decoding, as `Framed` drives it after each read. Large
/// messages are decoded in one piece here where the server hands them to the blocking pool.
fn codec() -> Codec {
    Codec::new(&CTX.ldap, PendingBudget::new(CTX.ldap.max_pending_bytes))
}

struct Ctx {
    ldap: LdapConfig,
    dit: Dit,
    /// Every entry of the tree, built once.
    entries: Vec<(usize, Entry)>,
}

/// A small tree with the shapes that matter to matching: names with spaces and accents, mixed
/// case, a member in two groups, optional attributes present and absent.
static CTX: LazyLock<Ctx> = LazyLock::new(|| {
    let cfg = Config::parse("[backend]\nkind = \"memory\"\n").expect("config");
    let settings = DitSettings::new(&cfg.ldap, "memory", "fuzz").expect("tree settings");
    let user = |id: &str, login: &str, first: &str, last: &str, email: &str| User {
        id: id.into(),
        login: login.into(),
        first_name: first.into(),
        last_name: last.into(),
        email: email.into(),
        active: true,
        created: Some(1_700_000_000),
        modified: Some(1_750_000_000),
        ..Default::default()
    };
    let users = vec![
        Arc::new(User {
            phone: Some("+33 1 23 45 67 89".into()),
            title: Some("Lead".into()),
            employee_number: Some("42".into()),
            locale: Some("fr_FR".into()),
            admin: true,
            ..user("1", "alice", "Alice", "Martin", "Alice@Example.com")
        }),
        Arc::new(user("2", "bob.smith", "Bob", "Smith", "bob@example.org")),
        Arc::new(User { active: false, created: None, ..user("3", "zoe", "Zoë", "Ødegård", "") }),
    ];
    let group = |id: &str, name: &str, members: &[&str]| {
        Arc::new(Group {
            id: id.into(),
            name: name.into(),
            description: Some(format!("{name} group")),
            members: members.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        })
    };
    let groups = vec![group("1", "devs", &["1", "2"]), group("2", "Sales Team", &["2"]), group("3", "empty", &[])];
    let dit = Dit::build(&settings, Arc::new(Snapshot::build("memory\u{0}fuzz", 1, users, groups)));
    let entries = dit.all().into_iter().map(|i| (i, dit.entry(i).into_owned())).collect();
    Ctx { ldap: cfg.ldap, dit, entries }
});

/// Decodes a stream delivered in the given reads; stops at the first error, as the listener
/// closes the connection then. Returns the messages and whether an error ended the stream.
fn frames<'a>(reads: impl Iterator<Item = &'a [u8]>) -> (Vec<LdapMsg>, bool) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut codec = codec();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

/// Read sizes from a small generator seeded by the input's first byte (0: one read).
fn reads(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![data];
    }
    let mut x = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (1 + x as usize % 32).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// A DN from a request: parse it and look it up, as every operation does first.
fn dn(text: &str) {
    let Ok(dn) = Dn::parse(text) else { return };
    let dit = &CTX.dit;
    match dit.find(&dn) {
        Some(i) => {
            let found = Dn::parse(&dit.dn(i)).expect("the tree's own DNs parse");
            assert_eq!(found.normalized(), dn.normalized(), "find({text:?}) returned another entry");
        }
        None => {
            let _ = dit.matched_dn(&dn);
        }
    }
}

fn search(filter: &ldap3_proto::proto::LdapFilter) {
    let limits = Limits { max_depth: CTX.ldap.max_filter_depth, max_terms: CTX.ldap.max_filter_terms };
    let Ok(f) = Filter::compile(filter, &limits) else { return };
    let candidates = f.candidates(&CTX.dit);
    for (idx, entry) in &CTX.entries {
        let hit = f.matches(entry);
        // The indexes narrow a search; they must never hide a match.
        if let Some(c) = &candidates {
            assert!(!hit || c.contains(idx), "entry {} matches {filter:?} but is not a candidate {c:?}", entry.dn);
        }
    }
}

fn handle(msg: &LdapMsg) {
    match &msg.op {
        LdapOp::BindRequest(b) => dn(&b.dn),
        LdapOp::SearchRequest(s) => {
            dn(&s.base);
            search(&s.filter);
        }
        LdapOp::AddRequest(a) => {
            dn(&a.dn);
            for attr in &a.attributes {
                let _ = schema::lookup(&attr.atype);
            }
        }
        LdapOp::ModifyRequest(m) => {
            dn(&m.dn);
            for c in &m.changes {
                let _ = schema::lookup(&c.modification.atype);
            }
        }
        LdapOp::DelRequest(d) => dn(d),
        LdapOp::ModifyDNRequest(m) => {
            dn(&m.dn);
            dn(&m.newrdn);
            if let Some(s) = &m.new_superior {
                dn(s);
            }
        }
        LdapOp::CompareRequest(c) => {
            dn(&c.dn);
            if let (Some(id), Ok(v)) = (schema::lookup(&c.atype), std::str::from_utf8(&c.val)) {
                for (_, entry) in &CTX.entries {
                    let _ = Filter::equality(id, v.to_string()).eval(entry);
                }
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };
    let (msgs, failed) = frames(reads(seed, stream).into_iter());
    // How TCP happens to cut the stream must not change what the server reads.
    if seed != 0 {
        let whole = frames(std::iter::once(stream));
        assert_eq!((&msgs, failed), (&whole.0, whole.1), "framing depends on read boundaries");
    }
    for m in &msgs {
        handle(m);
    }
});
