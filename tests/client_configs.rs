//! The SSSD and nslcd configurations the README gives, checked against the demo: the blocks are
//! read from the README, and the searches those clients make are run with OpenLDAP's tools exactly
//! as the settings say (StartTLS, paging, the bind account, the search bases, rfc2307bis member
//! lookups with nesting, case-insensitive names, the access rules for disabled users), and the
//! settings are checked against idgate's own (the client must close idle connections first).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::process::{Gateway, Options};

/// The fenced block whose first line starts with `first`.
fn block(readme: &str, first: &str) -> String {
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        if l.starts_with("```") && l.len() > 3 {
            let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
            if body.first().is_some_and(|f| f.starts_with(first)) {
                return body.join("\n");
            }
        }
    }
    panic!("the README has no block starting with {first:?}");
}

/// `key = value` (SSSD) or `key value` (nslcd) settings; later keys of the same name are kept in
/// order under `key#2`, `key#3`.
fn settings(text: &str, sep: char) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('[')) {
        let (k, v) = l.split_once(sep).unwrap_or_else(|| panic!("a setting: {l:?}"));
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        let mut key = k.clone();
        let mut n = 1;
        while out.contains_key(&key) {
            n += 1;
            key = format!("{k}#{n}");
        }
        out.insert(key, v);
    }
    out
}

struct Client {
    url: String,
    bind_dn: String,
    password: String,
    start_tls: bool,
    page: u32,
}

impl Client {
    /// ldapsearch as the client would search; returns the DNs found (and asserts success).
    fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> (Vec<String>, String) {
        let mut args = vec!["-x".to_string(), "-LLL".into(), "-o".into(), "ldif_wrap=no".into(), "-H".into()];
        args.push(self.url.clone());
        if self.start_tls {
            args.push("-ZZ".into());
        }
        args.extend(["-D".into(), self.bind_dn.clone(), "-w".into(), self.password.clone(), "-b".into(), base.into()]);
        args.extend(["-E".into(), format!("pr={}/noprompt", self.page), filter.into()]);
        args.extend(attrs.iter().map(|a| a.to_string()));
        let out = Command::new("ldapsearch")
            .args(&args)
            .env("LDAPTLS_REQCERT", "never") // the demo's certificate is self-signed
            .output()
            .expect("ldapsearch runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{filter}: {}\n{text}", String::from_utf8_lossy(&out.stderr));
        let dns = text.lines().filter_map(|l| l.strip_prefix("dn: ")).map(str::to_lowercase).collect();
        (dns, text)
    }
}

fn seconds(text: &str) -> u64 {
    let text = text.trim_matches('"');
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = n.parse().expect("a number");
    match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        u => panic!("unit {u}"),
    }
}

fn demo_idle_timeout() -> u64 {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml")).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    doc["ldap"].get("idle_timeout").and_then(|v| v.as_str()).map_or(300, seconds)
}

fn have_ldapsearch() -> bool {
    let ok = Command::new("ldapsearch").arg("-VV").output().is_ok();
    if !ok {
        println!("SKIPPED: ldapsearch is not installed (Debian package ldap-utils)");
    }
    ok
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README")
}

const ALICE: &str = "uid=alice,ou=people,dc=example,dc=com";

#[test]
fn the_readme_sssd_configuration_works_against_the_demo() {
    if !have_ldapsearch() {
        return;
    }
    let conf = settings(&block(&readme(), "# /etc/sssd/sssd.conf"), '=');
    let gw = Gateway::start_with(Options::default());
    let get = |k: &str| conf.get(k).unwrap_or_else(|| panic!("sssd.conf sets {k}")).clone();
    assert_eq!(get("ldap_uri"), "ldap://127.0.0.1:3389", "the demo's address");
    let c = Client {
        url: format!("ldap://{}", gw.ldap_addr),
        bind_dn: get("ldap_default_bind_dn"),
        password: get("ldap_default_authtok"),
        start_tls: get("ldap_id_use_start_tls") == "true",
        page: get("ldap_page_size").parse().unwrap(),
    };
    assert!(c.start_tls && get("ldap_tls_reqcert") == "demand", "TLS, verified");
    let (users, groups) = (get("ldap_user_search_base"), get("ldap_group_search_base"));

    // getpwnam, with another case than the login's: case_sensitive = false is right for idgate.
    assert_eq!(get("case_sensitive"), "false");
    let (dns, text) = c.search(
        &users,
        "(&(uid=ALICE)(objectclass=posixAccount)(uid=*)(&(uidNumber=*)(!(uidNumber=0))))",
        &["uid", "uidNumber", "gidNumber", "memberOf"],
    );
    assert_eq!(dns, vec![ALICE]);
    let gid = text.lines().find_map(|l| l.strip_prefix("gidNumber: ")).expect("a gidNumber").to_string();
    // The primary group has a name.
    let (dns, _) = c.search(&groups, &format!("(&(gidNumber={gid})(objectClass=posixGroup)(cn=*))"), &["cn"]);
    assert_eq!(dns.len(), 1, "gidNumber {gid} resolves to one group: {dns:?}");
    // initgroups, rfc2307bis: groups by member DN, then their parents up to the nesting level.
    assert_eq!((get("ldap_schema").as_str(), get("ldap_group_member").as_str()), ("rfc2307bis", "member"));
    let nesting: usize = get("ldap_group_nesting_level").parse().unwrap();
    let mut found = std::collections::BTreeSet::new();
    let mut frontier = vec![ALICE.to_string()];
    for _ in 0..=nesting {
        let mut next = Vec::new();
        for dn in frontier {
            let (dns, _) = c.search(&groups, &format!("(&(member={dn})(objectClass=posixGroup)(cn=*))"), &["cn"]);
            next.extend(dns.into_iter().filter(|d| found.insert(d.clone())));
        }
        frontier = next;
    }
    assert!(found.contains("cn=developers,ou=groups,dc=example,dc=com"), "{found:?}");
    assert!(found.contains("cn=engineering,ou=groups,dc=example,dc=com"), "nested, through developers: {found:?}");
    // Enumeration pages through every user at the configured page size.
    let (all, _) = c.search(&users, "(&(objectclass=posixAccount)(uid=*)(uidNumber=*)(gidNumber=*))", &["uid"]);
    assert!(all.len() > 20, "{}", all.len());
    // Access: ppolicy with the published policy entry denies disabled users.
    assert!(get("ldap_access_order").split(',').any(|o| o.trim() == "ppolicy"));
    let (dns, text) = c.search(&get("ldap_pwdlockout_dn"), "(objectClass=pwdPolicy)", &["pwdLockout"]);
    assert_eq!(dns.len(), 1);
    assert!(text.contains("pwdLockout: TRUE"), "{text}");
    let (locked, _) = c.search(&users, "(&(uid=oscar)(pwdAccountLockedTime=*))", &["1.1"]);
    assert_eq!(locked.len(), 1, "oscar, disabled, is locked");
    let (locked, _) = c.search(&users, "(&(uid=alice)(pwdAccountLockedTime=*))", &["1.1"]);
    assert!(locked.is_empty(), "alice is not");
    // SSSD closes idle connections before idgate would.
    let idle: u64 = get("ldap_connection_idle_timeout").parse().unwrap();
    assert!(idle < demo_idle_timeout(), "{idle} s < idgate's {} s", demo_idle_timeout());
    gw.stop(Duration::from_secs(10));
}

#[test]
fn the_readme_nslcd_configuration_works_against_the_demo() {
    if !have_ldapsearch() {
        return;
    }
    let conf = settings(&block(&readme(), "# /etc/nslcd.conf"), ' ');
    let gw = Gateway::start_with(Options::default());
    let get = |k: &str| conf.get(k).unwrap_or_else(|| panic!("nslcd.conf sets {k}")).clone();
    assert_eq!(get("uri"), "ldap://127.0.0.1:3389");
    let c = Client {
        url: format!("ldap://{}", gw.ldap_addr),
        bind_dn: get("binddn"),
        password: get("bindpw"),
        start_tls: get("ssl") == "start_tls",
        page: get("pagesize").parse().unwrap(),
    };
    assert!(c.start_tls && get("tls_reqcert") == "demand");
    let base_of = |map: &str| {
        conf.iter()
            .filter(|(k, _)| k.starts_with("base"))
            .find_map(|(_, v)| v.strip_prefix(&format!("{map} ")).map(String::from))
            .unwrap_or_else(|| get("base"))
    };
    let (passwd, group) = (base_of("passwd"), base_of("group"));
    // getpwnam, case-insensitively (ignorecase yes)
    assert_eq!(get("ignorecase"), "yes");
    let (dns, _) = c.search(&passwd, "(&(objectClass=posixAccount)(uid=Alice))", &["uid", "uidNumber", "gidNumber"]);
    assert_eq!(dns, vec![ALICE]);
    // group membership by member DN, nested (map group member member; nss_nested_groups yes)
    assert_eq!((get("map").as_str(), get("nss_nested_groups").as_str()), ("group member member", "yes"));
    let (dns, _) =
        c.search(&group, "(&(objectClass=posixGroup)(member=cn=developers,ou=groups,dc=example,dc=com))", &["cn"]);
    assert!(dns.contains(&"cn=engineering,ou=groups,dc=example,dc=com".to_string()), "{dns:?}");
    let (dns, text) = c.search(&group, "(&(objectClass=posixGroup)(gidNumber=10000))", &["cn", "memberUid"]);
    assert_eq!(dns.len(), 1, "the primary group");
    assert!(text.contains("memberUid: alice"), "{text}");
    // pam_authz_search: alice passes, oscar (disabled) does not
    let authz = get("pam_authz_search");
    let (ok, _) = c.search(&passwd, &authz.replace("$username", "alice"), &["1.1"]);
    assert_eq!(ok.len(), 1, "{authz}");
    let (refused, _) = c.search(&passwd, &authz.replace("$username", "oscar"), &["1.1"]);
    assert!(refused.is_empty(), "a disabled user is refused: {authz}");
    let min_uid: u32 = get("nss_min_uid").parse().unwrap();
    let (_, text) = c.search(&passwd, "(uid=alice)", &["uidNumber"]);
    let uid: u32 = text.lines().find_map(|l| l.strip_prefix("uidNumber: ")).unwrap().parse().unwrap();
    assert!(uid >= min_uid, "users are above nss_min_uid");
    let idle: u64 = get("idle_timelimit").parse().unwrap();
    assert!(idle < demo_idle_timeout());
    gw.stop(Duration::from_secs(10));
}
