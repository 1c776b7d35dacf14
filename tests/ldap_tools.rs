//! OpenLDAP's command-line tools against the demo gateway. Each test skips (with a message) only
//! when the tool is not installed.

mod common;

use common::tools::{args, code, ldif_values, run, stdout};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldapsearch_acceptance() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();
    let bind = ["-x", "-o", "ldif_wrap=no", "-H", &demo.url, "-D", &fx.service_dn, "-w", &fx.service_password];

    // The user, with mail, memberOf, uidNumber and entryUUID.
    let mut a = args(&bind);
    a.extend(args(&["-LLL", "-b", &fx.base_dn, &format!("(uid={})", fx.user_login)]));
    let Some(o) = run("ldapsearch", &a).await else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert_eq!(ldif_values(&out, "dn").len(), 1, "{out}");
    assert_eq!(ldif_values(&out, "mail"), vec![fx.user_mail.clone()]);
    let member_of: std::collections::BTreeSet<String> =
        ldif_values(&out, "memberOf").iter().map(|d| rdn_value(d).to_lowercase()).collect();
    assert_eq!(member_of, fx.member_of_set());
    assert!(ldif_values(&out, "uidNumber")[0].parse::<u32>().is_ok(), "{out}");
    assert_eq!(ldif_values(&out, "entryUUID")[0].len(), 36, "{out}");
    assert!(ldif_values(&out, "userPassword").is_empty());

    // Paged with 5 per page: every user, in several pages.
    let mut a = args(&bind);
    a.extend(args(&["-E", "pr=5/noprompt", "-b", &fx.base_dn, "(objectClass=inetOrgPerson)", "uid"]));
    let o = run("ldapsearch", &a).await.expect("installed");
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let uids: std::collections::BTreeSet<String> = ldif_values(&out, "uid").into_iter().collect();
    assert_eq!(uids.len(), fx.user_count, "{out}");
    assert_eq!(ldif_values(&out, "dn").len(), fx.user_count);
    // ldapsearch prints one "# search result" block per page.
    let pages = out.lines().filter(|l| l.starts_with("# search result")).count();
    assert_eq!(pages, fx.user_count.div_ceil(5), "pages of 5:\n{out}");

    // Root DSE (anonymous) lists the paged-results control.
    let o =
        run("ldapsearch", &args(&["-x", "-LLL", "-H", &demo.url, "-b", "", "-s", "base", "(objectClass=*)", "+", "*"]))
            .await
            .expect("installed");
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    assert!(ldif_values(&out, "supportedControl").iter().any(|c| c == PAGED_OID), "{out}");
    assert!(ldif_values(&out, "namingContexts").iter().any(|c| norm_dn(c) == norm_dn(&fx.base_dn)), "{out}");

    // -z 3: exit 4 (sizeLimitExceeded) after three entries.
    let mut a = args(&bind);
    a.extend(args(&["-LLL", "-z", "3", "-b", &fx.base_dn, "(objectClass=inetOrgPerson)", "uid"]));
    let o = run("ldapsearch", &a).await.expect("installed");
    assert_eq!(code(&o), 4, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(ldif_values(&stdout(&o), "dn").len(), 3);

    // Anonymous search of the tree: insufficient access (50).
    let o = run("ldapsearch", &args(&["-x", "-LLL", "-H", &demo.url, "-b", &fx.base_dn, "(uid=*)"]))
        .await
        .expect("installed");
    assert_eq!(code(&o), 50);
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldapwhoami_and_ldapcompare() {
    let demo = start_demo_full().await;
    let fx = demo.fixture();

    let Some(o) = run("ldapwhoami", &args(&["-x", "-H", &demo.url, "-D", &fx.user_dn, "-w", &fx.user_password])).await
    else {
        return;
    };
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(norm_dn(stdout(&o).trim()), norm_dn(&format!("dn:{}", fx.user_dn)));
    // bare login
    let o = run("ldapwhoami", &args(&["-x", "-H", &demo.url, "-D", &fx.user_login, "-w", &fx.user_password]))
        .await
        .expect("installed");
    assert_eq!(code(&o), 0);
    assert_eq!(norm_dn(stdout(&o).trim()), norm_dn(&format!("dn:{}", fx.user_dn)));
    // wrong password: exit 49
    let o = run("ldapwhoami", &args(&["-x", "-H", &demo.url, "-D", &fx.user_dn, "-w", "wrong-password"]))
        .await
        .expect("installed");
    assert_eq!(code(&o), 49);
    // anonymous
    let o = run("ldapwhoami", &args(&["-x", "-H", &demo.url])).await.expect("installed");
    assert_eq!(code(&o), 0);
    assert_eq!(stdout(&o).trim(), "anonymous");

    let cmp = |assertion: String| {
        args(&["-x", "-H", &demo.url, "-D", &fx.service_dn, "-w", &fx.service_password, &fx.user_dn, &assertion])
    };
    let Some(o) = run("ldapcompare", &cmp(format!("mail:{}", fx.user_mail))).await else {
        return;
    };
    assert_eq!(code(&o), 6, "compareTrue: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o).trim(), "TRUE");
    let o = run("ldapcompare", &cmp("mail:nobody@example.net".into())).await.expect("installed");
    assert_eq!(code(&o), 5, "compareFalse");
    assert_eq!(stdout(&o).trim(), "FALSE");
    let o = run("ldapcompare", &cmp("employeeNumber:1".into())).await.expect("installed");
    assert_eq!(code(&o), 16, "noSuchAttribute");
    demo.running.shutdown().await;
}
