//! idgate in front of the Dolibarr simulator, at the directory core: the superadmin and the
//! gateway's own API user never enter the directory and cannot bind; managers (`fk_user`) and
//! extra fields (`array_options`) are read, written through to Dolibarr and read back.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use idgate::app::Running;
use idgate::config::Config;
use idgate::directory::{AuthOutcome, Caller, DirectoryError, UserSpec};
use idgate::model::{NewUser, User, UserChanges};
use serde_json::json;
use support::dolibarr_sim::{
    ADMIN_PASSWORD, DolibarrSim, ExtraType, GATEWAY_LOGIN, GATEWAY_PASSWORD, JDOE_PASSWORD, Version,
};

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn start(sim: &DolibarrSim) -> Running {
    let text = format!(
        r#"
        [ldap]
        listen = "127.0.0.1:0"
        [http]
        listen = "127.0.0.1:0"
        [cache]
        refresh_interval = "1h"
        full_refresh_interval = "1h"
        [[directory.attributes]]
        name = "costCenter"
        field = "costcenter"
        syntax = "string"
        [[directory.attributes]]
        name = "badgeNumber"
        field = "badgeno"
        syntax = "integer"
        [[directory.attributes]]
        name = "contractEnd"
        field = "contractend"
        syntax = "date"
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

async fn seeded(version: Version) -> DolibarrSim {
    let sim = DolibarrSim::start(version).await;
    sim.define_extra_field("costcenter", ExtraType::Varchar);
    sim.define_extra_field("badgeno", ExtraType::Int);
    sim.define_extra_field("contractend", ExtraType::Date);
    sim.set_extra(2, "costcenter", json!("CC-100"));
    sim.set_extra(2, "contractend", json!("2027-06-30"));
    // jdoe reports to reader.
    sim.set_user_field(2, "fk_user", json!("7"));
    sim
}

fn values(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn dolibarr_system_accounts_never_enter_the_directory() {
    for version in [Version::V22, Version::V23] {
        let sim = seeded(version).await;
        let r = start(&sim).await;
        let dir = &r.directory;
        let snap = dir.snapshot().expect("loaded");
        assert!(snap.user_by_login("admin").is_none(), "the install superadmin is hidden");
        assert!(snap.user_by_login(GATEWAY_LOGIN).is_none(), "the gateway's own account is hidden");
        assert!(snap.user_by_login("opsadmin").is_some(), "another admin is a person");
        assert!(snap.user_by_login("jdoe").is_some());
        assert!(dir.hides(&User { login: "IDGATE".into(), ..Default::default() }));
        assert!(dir.hides(&User { login: "someone".into(), system: true, ..Default::default() }));
        assert!(!dir.hides(&User { login: "opsadmin".into(), admin: true, ..Default::default() }));

        // Neither binds with its real password, and Dolibarr's login is never asked.
        sim.reset_counts();
        for (login, password) in [(GATEWAY_LOGIN, GATEWAY_PASSWORD), ("admin", ADMIN_PASSWORD)] {
            let outcome = dir.authenticate_user(login, password, PEER).await.expect("answered");
            assert!(matches!(outcome, AuthOutcome::Invalid), "{login}: {outcome:?}");
        }
        assert_eq!(sim.count("POST /login"), 0);
        let jdoe = dir.authenticate_user("jdoe", JDOE_PASSWORD, PEER).await.expect("answered");
        assert!(matches!(jdoe, AuthOutcome::User(_)), "{jdoe:?}");
        // Nobody can take the gateway's login either.
        let spec = UserSpec {
            new: NewUser { login: GATEWAY_LOGIN.into(), last_name: "X".into(), active: true, ..Default::default() },
            ..Default::default()
        };
        assert!(matches!(dir.create_user(&Caller::system(), spec).await, Err(DirectoryError::Conflict(_))));
        r.shutdown().await;
    }
}

#[tokio::test]
async fn dolibarr_manager_and_extra_fields_round_trip() {
    let sim = seeded(Version::V22).await;
    let r = start(&sim).await;
    let dir = &r.directory;
    let caller = Caller::system();
    let jdoe = dir.snapshot().unwrap().user_by_login("jdoe").cloned().expect("jdoe");
    assert_eq!(jdoe.manager.as_deref(), Some("7"));
    let want: BTreeMap<String, Vec<String>> =
        [("costcenter".into(), values(&["CC-100"])), ("contractend".into(), values(&["1814313600"]))].into();
    assert_eq!(jdoe.custom, want);

    let changes = UserChanges {
        manager: Some(Some("4".into())),
        custom: [
            ("costcenter".to_string(), Some(values(&["CC-200"]))),
            ("badgeno".to_string(), Some(values(&["+42"]))),
            ("contractend".to_string(), None),
        ]
        .into(),
        ..Default::default()
    };
    let u = dir.update_user(&caller, "2", changes).await.expect("updated");
    assert_eq!(u.manager.as_deref(), Some("4"));
    assert_eq!(sim.user_field(2, "fk_user"), Some(json!("4")));
    assert_eq!(sim.extra(2, "costcenter"), Some(json!("CC-200")));
    assert_eq!(sim.extra(2, "badgeno"), Some(json!(42)));
    assert_eq!(sim.extra(2, "contractend"), Some(json!(null)));
    // What Dolibarr stored is what the directory shows, also after a full reload.
    dir.refresh_full().await.expect("refresh");
    let again = dir.snapshot().unwrap().user_by_login("jdoe").cloned().unwrap();
    assert_eq!(again.manager.as_deref(), Some("4"));
    let want: BTreeMap<String, Vec<String>> =
        [("costcenter".into(), values(&["CC-200"])), ("badgeno".into(), values(&["42"]))].into();
    assert_eq!(again.custom, want);

    // Refused before Dolibarr is asked: a hidden account or an unknown id as manager, oneself,
    // a value outside the syntax.
    sim.reset_counts();
    let refused = [
        UserChanges { manager: Some(Some("1".into())), ..Default::default() },
        UserChanges { manager: Some(Some("99999".into())), ..Default::default() },
        UserChanges { manager: Some(Some("2".into())), ..Default::default() },
        UserChanges { custom: [("badgeno".to_string(), Some(values(&["12abc"])))].into(), ..Default::default() },
        UserChanges { custom: [("nosuch".to_string(), Some(values(&["x"])))].into(), ..Default::default() },
    ];
    for c in refused {
        let e = dir.update_user(&caller, "2", c.clone()).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Invalid { .. }), "{c:?}: {e:?}");
    }
    // A value the core accepts but Dolibarr's column cannot hold (beyond 32 bits).
    let huge =
        UserChanges { custom: [("badgeno".to_string(), Some(values(&["99999999999"])))].into(), ..Default::default() };
    let e = dir.update_user(&caller, "2", huge).await.unwrap_err();
    assert!(matches!(e, DirectoryError::Invalid { .. }), "{e:?}");
    assert_eq!(sim.count("PUT /users/{id}"), 0);
    assert_eq!(sim.extra(2, "badgeno"), Some(json!(42)));

    // Clearing the manager.
    let u = dir.update_user(&caller, "2", UserChanges { manager: Some(None), ..Default::default() }).await.unwrap();
    assert_eq!(u.manager, None);
    assert_eq!(sim.user_field(2, "fk_user"), Some(json!(null)));

    // Created with both.
    let spec = UserSpec {
        new: NewUser {
            login: "newhire".into(),
            first_name: "New".into(),
            last_name: "Hire".into(),
            email: "newhire@example.com".into(),
            active: true,
            manager: Some("2".into()),
            custom: [("costcenter".to_string(), values(&["CC-300"]))].into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = dir.create_user(&caller, spec).await.expect("created");
    let id: u64 = created.id.parse().unwrap();
    assert_eq!(created.manager.as_deref(), Some("2"));
    assert_eq!(sim.user_field(id, "fk_user"), Some(json!("2")));
    assert_eq!(sim.extra(id, "costcenter"), Some(json!("CC-300")));
    r.shutdown().await;
}
