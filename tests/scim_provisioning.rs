//! Provisioning fidelity over SCIM, end to end over HTTP: user names from identity providers (UPN
//! `userName`s a backend keeps as another login), managers in the enterprise extension, the custom
//! attributes extension, and nested groups, as Entra ID and Okta send them, against the demo
//! (memory backend, which has all of it) and the Dolibarr simulator (which refuses `@` in logins and
//! has no managers, custom fields or nesting yet), plus hostile values and concurrent writers.

mod common;
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::scim::{ENTERPRISE_URN, Scim, dolibarr_gateway_config, group_named, member_ids, user_named};
use idgate::backend::Backend;
use idgate::config::{AttributeSyntax, CustomAttribute, MemberOf};
use reqwest::Method;
use serde_json::{Value, json};
use support::dolibarr_sim::{DolibarrSim, Version};

const CUSTOM_URN: &str = "urn:idgate:params:scim:schemas:extension:custom:2.0:User";
const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn manager_path() -> String {
    format!("{ENTERPRISE_URN}:manager")
}

fn cost_center_path() -> String {
    format!("{CUSTOM_URN}:costCenter")
}

/// An Error body with this status and scimType whose detail mentions every word of `words`
/// (case-insensitively).
fn assert_refused(r: &common::scim::Resp, status: u16, scim_type: &str, words: &[&str], what: &str) {
    assert_eq!(r.status, status, "{what}: {r}");
    assert_eq!(r.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error", "{what}: {r}");
    assert_eq!(r.scim_type(), scim_type, "{what}: {r}");
    let detail = r.detail().to_lowercase();
    for w in words {
        assert!(detail.contains(&w.to_lowercase()), "{what}: detail should mention {w:?}: {r}");
    }
}

fn groups_by_type(user: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut direct = BTreeSet::new();
    let mut indirect = BTreeSet::new();
    for g in user["groups"].as_array().into_iter().flatten() {
        let name = g["display"].as_str().unwrap_or_default().to_string();
        match g["type"].as_str() {
            Some("direct") => direct.insert(name),
            Some("indirect") => indirect.insert(name),
            other => panic!("group type {other:?} in {user}"),
        };
    }
    (direct, indirect)
}

// ---- the demo's data -------------------------------------------------------------------------

#[tokio::test]
async fn demo_publishes_managers_custom_attributes_and_nested_groups() {
    let demo = common::start_demo_full().await;
    let s = Scim::new(demo.running.http_addr);

    // Discovery: the enterprise extension with manager, the custom one with costCenter.
    let schemas = s.get("/Schemas").await;
    assert_eq!(schemas.status, 200);
    let find = |urn: &str| {
        schemas.body["Resources"].as_array().unwrap().iter().find(|x| x["id"] == urn).cloned().unwrap_or(Value::Null)
    };
    let custom = find(CUSTOM_URN);
    let cc = custom["attributes"].as_array().expect("custom schema listed").iter().find(|a| a["name"] == "costCenter");
    let cc = cc.expect("costCenter in the custom schema");
    assert_eq!((cc["type"].as_str(), cc["mutability"].as_str()), (Some("string"), Some("readWrite")), "{cc}");
    assert_eq!((cc["caseExact"].as_bool(), cc["multiValued"].as_bool()), (Some(false), Some(false)));
    let enterprise = find(ENTERPRISE_URN);
    let manager = enterprise["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "manager").cloned();
    let manager = manager.expect("manager in the enterprise schema");
    let subs: BTreeSet<&str> =
        manager["subAttributes"].as_array().unwrap().iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(subs, BTreeSet::from(["value", "$ref", "displayName"]));
    assert_eq!(s.get(&format!("/Schemas/{CUSTOM_URN}")).await.body["id"], CUSTOM_URN);
    let rt = s.get("/ResourceTypes/User").await.body;
    let ext: BTreeSet<&str> =
        rt["schemaExtensions"].as_array().unwrap().iter().filter_map(|e| e["schema"].as_str()).collect();
    assert_eq!(ext, BTreeSet::from([ENTERPRISE_URN, CUSTOM_URN]), "{rt}");
    assert!(rt["schemaExtensions"].as_array().unwrap().iter().all(|e| e["required"] == false));
    let group_types = s.get(&format!("/Schemas/{}", "urn:ietf:params:scim:schemas:core:2.0:Group")).await.body;
    assert!(group_types.to_string().contains(r#"["User","Group"]"#), "member types: {group_types}");

    // alice's costCenter, listed in her schemas; bob's manager is alice.
    let alice = user_named(&s, "alice").await;
    assert_eq!(alice[CUSTOM_URN]["costCenter"], "CC-100", "{alice}");
    assert!(alice["schemas"].as_array().unwrap().contains(&json!(CUSTOM_URN)));
    let bob = user_named(&s, "bob").await;
    let m = &bob[ENTERPRISE_URN]["manager"];
    assert_eq!(m["value"], alice["id"], "{bob}");
    assert!(m.get("displayName").is_none(), "returned on request only: {m}");
    let asked = s.get(&format!("/Users/{}?attributes={}", bob["id"].as_str().unwrap(), manager_path())).await.body;
    assert_eq!(asked[ENTERPRISE_URN]["manager"]["displayName"], alice["displayName"], "{asked}");
    assert_eq!(m["$ref"], alice["meta"]["location"]);
    assert!(bob["schemas"].as_array().unwrap().contains(&json!(ENTERPRISE_URN)));
    assert!(bob.get(CUSTOM_URN).is_none(), "bob has no costCenter: {bob}");
    assert!(!bob["schemas"].as_array().unwrap().contains(&json!(CUSTOM_URN)));
    assert!(alice[ENTERPRISE_URN].get("manager").is_none(), "alice has no manager");

    // engineering = { group developers, user dave }.
    let eng = group_named(&s, "engineering").await;
    let dev = group_named(&s, "developers").await;
    let dave = user_named(&s, "dave").await;
    let members = eng["members"].as_array().unwrap();
    let dev_member = members.iter().find(|m| m["value"] == dev["id"]).expect("developers is a member");
    assert_eq!(dev_member["type"], "Group");
    assert_eq!(dev_member["$ref"], dev["meta"]["location"]);
    let dave_member = members.iter().find(|m| m["value"] == dave["id"]).expect("dave is a member");
    assert_eq!(dave_member["type"], "User");
    assert_eq!(members.len(), 2, "{eng}");
    let r = s.get(&format!("/Groups/{}?attributes=members.display", eng["id"].as_str().unwrap())).await;
    assert!(r.body["members"].as_array().unwrap().iter().any(|m| m["display"] == "developers"), "{}", r.body);

    // bob is in developers directly, in engineering through it.
    let (direct, indirect) = groups_by_type(&bob);
    assert!(direct.contains("developers") && !direct.contains("engineering"), "{bob}");
    assert!(indirect.contains("engineering"), "{bob}");
    let (direct, indirect) = groups_by_type(&dave);
    assert!(direct.contains("engineering") && indirect.is_empty(), "{dave}");

    // Filters: the custom attribute by URN and short name (case-insensitive string), the manager.
    for f in [
        format!("{CUSTOM_URN}:costCenter eq \"CC-100\""),
        "costCenter eq \"cc-100\"".to_string(),
        format!("{CUSTOM_URN}:costCenter eq \"CC-100\" and active eq true"),
    ] {
        let r = s.filter("Users", &f).await;
        assert_eq!((r.status, r.total()), (200, 1), "{f}: {r}");
        assert_eq!(r.body["Resources"][0]["id"], alice["id"]);
    }
    assert_eq!(s.filter("Users", "costCenter sw \"CC-\"").await.total(), 2, "alice and carol");
    assert_eq!(s.filter("Users", "costCenter eq \"CC-999\"").await.total(), 0);
    let by_manager =
        s.filter("Users", &format!("{}.value eq \"{}\"", manager_path(), alice["id"].as_str().unwrap())).await;
    let logins: BTreeSet<&str> =
        by_manager.body["Resources"].as_array().unwrap().iter().filter_map(|u| u["userName"].as_str()).collect();
    assert_eq!(logins, BTreeSet::from(["bob", "carol"]), "{by_manager}");
    let r = s.filter("Groups", &format!("members[value eq \"{}\"]", dev["id"].as_str().unwrap())).await;
    assert_eq!((r.total(), &r.body["Resources"][0]["displayName"]), (1, &json!("engineering")));
    // The hidden system account is nowhere.
    assert_eq!(s.filter("Users", "userName eq \"svc-erp\"").await.total(), 0);
}

#[tokio::test]
async fn direct_member_of_lists_only_direct_groups() {
    let demo = common::start_demo_with(|c| c.directory.member_of = MemberOf::Direct).await;
    let s = Scim::new(demo.running.http_addr);
    let bob = user_named(&s, "bob").await;
    let (direct, indirect) = groups_by_type(&bob);
    assert!(direct.contains("developers") && indirect.is_empty(), "{bob}");
    // Group members are the direct ones in either mode.
    assert_eq!(group_named(&s, "engineering").await["members"].as_array().unwrap().len(), 2);
}

// ---- Entra ID and Okta against the demo ---------------------------------------------------------

/// Entra's default sequence (reference §3.1): probe, create with a UPN, match by userName and
/// externalId, the manager as a bare string in a second pass, rename, disable, manager removal.
#[tokio::test]
async fn entra_sequence_against_the_demo() {
    let demo = common::start_demo_full().await;
    let s = Scim::new(demo.running.http_addr);
    let upn = "jane.doe@example.com";
    assert_eq!(s.filter("Users", &format!("userName eq \"{upn}\"")).await.total(), 0, "E1");
    let created = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN, ENTERPRISE_URN], "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
                "userName": upn, "active": true,
                "emails": [{"primary": true, "type": "work", "value": upn}],
                "meta": {"resourceType": "User"},
                "name": {"formatted": "Jane Doe", "familyName": "Doe", "givenName": "Jane"}, "roles": [],
                "password": "Jane-Doe-Secret-42",
            }),
        )
        .await;
    assert_eq!(created.status, 201, "E3 {created}");
    let id = created.id();
    assert_eq!(created.body["userName"], upn);
    // The memory backend takes a UPN as a login: the login is the name.
    let stored = demo.backend.get_user(&id).await.unwrap().expect("in the backend");
    assert_eq!(stored.login, upn);
    assert_eq!(user_named(&s, "JANE.DOE@EXAMPLE.COM").await["id"], id.as_str(), "userName is case-insensitive");
    let r = s.filter("Users", "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"").await;
    assert_eq!(r.total(), 1, "E4 {r}");
    assert_eq!(s.filter("Users", "userName sw \"jane.d\"").await.total(), 1);

    // E8: the reference pass sets the manager as a bare id.
    let alice = user_named(&s, "alice").await;
    let alice_id = alice["id"].as_str().unwrap();
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "Add", "path": manager_path(), "value": alice_id}])).await;
    assert_eq!(r.status, 200, "E8 {r}");
    assert_eq!(r.body[ENTERPRISE_URN]["manager"]["value"], alice_id, "returned as an object: {r}");
    assert_eq!(demo.backend.get_user(&id).await.unwrap().unwrap().manager.as_deref(), Some(alice_id));
    // Re-sent every cycle: the same value changes nothing.
    let again =
        s.patch(&format!("/Users/{id}"), json!([{"op": "Add", "path": manager_path(), "value": alice_id}])).await;
    assert_eq!(again.body["meta"]["version"], r.body["meta"]["version"]);

    // E5/E6 and a rename of the userName.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "jane.roe@example.com"},
                {"op": "Replace", "path": "name.familyName", "value": "Roe"},
                {"op": "Replace", "path": "userName", "value": "jane.roe@example.com"},
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "E5 {r}");
    assert_eq!(
        (r.body["userName"].as_str(), r.body["name"]["familyName"].as_str()),
        (Some("jane.roe@example.com"), Some("Roe"))
    );
    assert_eq!(demo.backend.get_user(&id).await.unwrap().unwrap().login, "jane.roe@example.com");
    assert_eq!(s.filter("Users", &format!("userName eq \"{upn}\"")).await.total(), 0, "the old name is gone");
    assert_eq!(r.body[ENTERPRISE_URN]["manager"]["value"], alice_id, "the rename kept the manager");

    // E9/E10: disabled with a string boolean, still found.
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    assert_eq!((r.status, &r.body["active"]), (200, &json!(false)), "E9 {r}");
    assert_eq!(user_named(&s, "jane.roe@example.com").await["active"], false, "E10");

    // The manager is removed: by an empty value (Entra), then set and removed by `remove`.
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "Replace", "path": manager_path(), "value": ""}])).await;
    assert_eq!(r.status, 200, "{r}");
    assert!(r.body.get(ENTERPRISE_URN).is_none_or(|e| e.get("manager").is_none()), "{r}");
    assert_eq!(demo.backend.get_user(&id).await.unwrap().unwrap().manager, None);
    s.patch(&format!("/Users/{id}"), json!([{"op": "add", "path": manager_path(), "value": {"value": alice_id}}]))
        .await;
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "remove", "path": manager_path()}])).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(demo.backend.get_user(&id).await.unwrap().unwrap().manager, None);

    // E17: a duplicate userName, case aside.
    let dup = s
        .post("/Users", json!({"userName": "JANE.ROE@example.com", "name": {"givenName": "J", "familyName": "R"}}))
        .await;
    assert_refused(&dup, 409, "uniqueness", &["jane.roe@example.com"], "E17");
}

/// Okta's sequence (reference §3.2): create with a password and the manager object, PUT the full
/// object, PUT without the extensions (kept), path-less disable; then the new user binds over LDAP
/// by its name.
#[tokio::test]
async fn okta_sequence_against_the_demo() {
    let demo = common::start_demo_full().await;
    let s = Scim::new(demo.running.http_addr);
    let name = "test.user@okta.local";
    let q: String = url::form_urlencoded::byte_serialize(format!("userName eq \"{name}\"").as_bytes()).collect();
    let r = s.get(&format!("/Users?filter={q}&startIndex=1&count=100")).await;
    assert_eq!((r.status, r.total()), (200, 0), "O1");
    let alice_id = user_named(&s, "alice").await["id"].as_str().unwrap().to_string();
    let r = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN, ENTERPRISE_URN, CUSTOM_URN], "userName": name,
                "name": {"givenName": "Test", "familyName": "User"},
                "emails": [{"primary": true, "value": name, "type": "work"}],
                "displayName": "Test User", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
                "groups": [], "password": "1mz050nq-Okta", "active": true,
                ENTERPRISE_URN: {"manager": {"value": alice_id}},
                CUSTOM_URN: {"costCenter": "CC-300"},
            }),
        )
        .await;
    assert_eq!(r.status, 201, "O2 {r}");
    let id = r.id();
    assert_eq!(r.body[ENTERPRISE_URN]["manager"]["value"], alice_id.as_str());
    assert_eq!(r.body[CUSTOM_URN]["costCenter"], "CC-300");
    let u = demo.backend.get_user(&id).await.unwrap().unwrap();
    assert_eq!(
        (u.manager.as_deref(), u.custom.get("costCenter")),
        (Some(alice_id.as_str()), Some(&vec!["CC-300".to_string()]))
    );

    // O4: the full object back with a change.
    let mut put = s.get(&format!("/Users/{id}")).await.body;
    put["name"]["familyName"] = json!("Replaced");
    put[CUSTOM_URN]["costCenter"] = json!("CC-301");
    let r = s.put(&format!("/Users/{id}"), put).await;
    assert_eq!(r.status, 200, "O4 {r}");
    assert_eq!(
        (r.body["name"]["familyName"].as_str(), r.body[CUSTOM_URN]["costCenter"].as_str()),
        (Some("Replaced"), Some("CC-301"))
    );
    assert_eq!(r.body[ENTERPRISE_URN]["manager"]["value"], alice_id.as_str());
    // A PUT that leaves the extensions out does not assert them: they stay.
    let r = s
        .put(&format!("/Users/{id}"), json!({"schemas": [USER_URN], "userName": name, "name": {"givenName": "Test", "familyName": "User"}, "emails": [{"value": name, "type": "work"}]}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body[ENTERPRISE_URN]["manager"]["value"], alice_id.as_str(), "{r}");
    assert_eq!(r.body[CUSTOM_URN]["costCenter"], "CC-301");
    // One that states the extensions empty clears them.
    let r = s
        .put(&format!("/Users/{id}"), json!({"schemas": [USER_URN], "userName": name, "name": {"givenName": "Test", "familyName": "User"}, ENTERPRISE_URN: {}, CUSTOM_URN: {"costCenter": null}}))
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert!(r.body.get(ENTERPRISE_URN).is_none() && r.body.get(CUSTOM_URN).is_none(), "{r}");
    let u = demo.backend.get_user(&id).await.unwrap().unwrap();
    assert!(u.manager.is_none() && !u.custom.contains_key("costCenter"), "{u:?}");

    // O5: disable by a path-less replace, still listed.
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "replace", "value": {"active": false}}])).await;
    assert_eq!((r.status, &r.body["active"]), (200, &json!(false)), "O5 {r}");
    assert_eq!(user_named(&s, name).await["active"], false);
    s.patch(&format!("/Users/{id}"), json!([{"op": "replace", "value": {"active": true}}])).await;
    // The provisioned user binds over LDAP with the name Okta gave (the login here).
    let mut ldap = common::bind(&demo.url, &common::user_dn(name), "1mz050nq-Okta").await;
    let _ = ldap.unbind().await;
    assert_eq!(s.post("/Users", json!({"userName": name})).await.status, 409, "O2 duplicate");
}

// ---- the Dolibarr simulator ----------------------------------------------------------------------

/// Dolibarr refuses `@` in logins: `jane.doe@example.com` becomes login `jane.doe`, SCIM keeps
/// answering the name Entra gave, a second `jane.doe@…` is a conflict naming both, renames keep
/// working, the user binds over LDAP by her login. What Dolibarr cannot store (managers, custom
/// attributes, nested groups, in this simulator) is refused with the documented errors.
#[tokio::test]
async fn identity_provider_names_against_dolibarr() {
    let sim = DolibarrSim::start(Version::V23).await;
    let cfg = dolibarr_gateway_config(&sim.url(), sim.admin_key(), &common::fresh_state_path());
    let running = idgate::app::start(cfg).await.expect("gateway starts");
    let s = Scim::new(running.http_addr);
    let upn = "jane.doe@example.com";
    let password = "Jane-Doe-Secret-42";

    assert_eq!(s.filter("Users", &format!("userName eq \"{upn}\"")).await.total(), 0, "E1");
    let r = s
        .post(
            "/Users",
            json!({
                "schemas": [USER_URN, ENTERPRISE_URN], "externalId": "e-jane", "userName": upn, "active": "True",
                "emails": [{"primary": true, "type": "work", "value": upn}],
                "name": {"formatted": "Jane Doe", "familyName": "Doe", "givenName": "Jane"}, "roles": [],
                "password": password,
            }),
        )
        .await;
    assert_eq!(r.status, 201, "E3 {r}");
    let id = r.id();
    assert_eq!(r.body["userName"], upn);
    let dolibarr_id = sim.user_id("jane.doe").expect("Dolibarr login is the local part");
    assert_eq!(dolibarr_id.to_string(), id);
    assert_eq!(user_named(&s, upn).await["id"], id.as_str(), "E4 by userName");
    assert_eq!(s.filter("Users", "externalId eq \"e-jane\"").await.total(), 1, "E4 by externalId");
    assert_eq!(s.get(&format!("/Users/{id}")).await.body["userName"], upn);

    // Another IdP name with the same local part: 409 naming both.
    let r = s
        .post("/Users", json!({"userName": "jane.doe@other.com", "name": {"givenName": "J", "familyName": "D"}}))
        .await;
    assert_refused(&r, 409, "uniqueness", &["jane.doe@other.com", "jane.doe@example.com"], "same login");
    assert!(sim.user_id("jane.doe@other.com").is_none());

    // Bind over LDAP by the login Dolibarr keeps.
    let ldap_url = format!("ldap://{}", running.ldap_addr);
    let mut ldap = common::bind(&ldap_url, "uid=jane.doe,ou=people,dc=example,dc=com", password).await;
    let _ = ldap.unbind().await;

    // Entra's rename and disable.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([
                {"op": "Replace", "path": "userName", "value": "jane.roe@example.com"},
                {"op": "Replace", "path": "name.familyName", "value": "Roe"},
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "rename {r}");
    assert_eq!(r.body["userName"], "jane.roe@example.com");
    assert_eq!(sim.user_id("jane.roe").map(|i| i.to_string()), Some(id.clone()), "the login follows");
    assert!(sim.user_id("jane.doe").is_none());
    assert_eq!(user_named(&s, "jane.roe@example.com").await["id"], id.as_str());
    assert_eq!(s.filter("Users", &format!("userName eq \"{upn}\"")).await.total(), 0);
    // A name change that keeps the login (another domain) is kept by the gateway alone.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "userName", "value": "jane.roe@corp.example"}]),
        )
        .await;
    assert_eq!((r.status, r.body["userName"].as_str()), (200, Some("jane.roe@corp.example")), "{r}");
    assert_eq!(sim.user_id("jane.roe").map(|i| i.to_string()), Some(id.clone()));
    // Now jane.doe@… is free again, and maps to the freed login.
    let r = s
        .post("/Users", json!({"userName": "jane.doe@other.com", "name": {"givenName": "J", "familyName": "D"}}))
        .await;
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(sim.user_id("jane.doe").map(|i| i.to_string()), Some(r.id()));
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    assert_eq!((r.status, &r.body["active"]), (200, &json!(false)), "{r}");

    // Dolibarr stores managers (fk_user): advertised, written in Entra's bare-string form, read back.
    let schemas = s.get("/Schemas").await.body.to_string();
    assert!(schemas.contains("\"manager\""), "Dolibarr has managers");
    let other = sim.user_id("jane.doe").expect("jane.doe").to_string();
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "Add", "path": manager_path(), "value": other}])).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.body[ENTERPRISE_URN]["manager"]["value"].as_str(), Some(other.as_str()), "{r}");
    let group = s.post("/Groups", json!({"displayName": "prov-parent"})).await;
    assert_eq!(group.status, 201, "{group}");
    let child = s.post("/Groups", json!({"displayName": "prov-child"})).await;
    let r = s
        .patch(
            &format!("/Groups/{}", group.id()),
            json!([{"op": "add", "path": "members", "value": [{"value": child.id(), "type": "Group"}]}]),
        )
        .await;
    // RFC 7644 §3.12: 501 for what the service provider does not support, naming the backend.
    assert_refused(&r, 501, "", &["dolibarr", "groups as members of groups"], "nesting on Dolibarr");
    assert!(member_ids(&s.get(&format!("/Groups/{}", group.id())).await.body).is_empty());
    // Plain members keep working.
    let r = s
        .patch(&format!("/Groups/{}", group.id()), json!([{"op": "add", "path": "members", "value": [{"value": id}]}]))
        .await;
    assert_eq!(member_ids(&r.body), BTreeSet::from([id.clone()]), "{r}");
}

// ---- custom attributes of every syntax ------------------------------------------------------------

fn attribute(name: &str, syntax: AttributeSyntax, multi: bool, writable: bool) -> CustomAttribute {
    CustomAttribute {
        name: name.into(),
        field: format!("x_{}", name.to_lowercase()),
        scim_name: None,
        syntax,
        multi,
        separator: ",".into(),
        writable,
        indexed: true,
    }
}

#[tokio::test]
async fn custom_attributes_of_every_syntax_round_trip() {
    let demo = common::start_demo_with(|c| {
        c.directory.attributes.extend([
            attribute("badge", AttributeSyntax::Integer, false, true),
            attribute("remote", AttributeSyntax::Boolean, false, true),
            attribute("hired", AttributeSyntax::Date, false, true),
            attribute("skills", AttributeSyntax::String, true, true),
            attribute("grade", AttributeSyntax::String, false, false),
        ])
    })
    .await;
    let s = Scim::new(demo.running.http_addr);
    let schema = s.get(&format!("/Schemas/{CUSTOM_URN}")).await.body;
    let attr = |n: &str| schema["attributes"].as_array().unwrap().iter().find(|a| a["name"] == n).cloned().unwrap();
    assert_eq!(attr("badge")["type"], "integer");
    assert_eq!(attr("remote")["type"], "boolean");
    assert_eq!(attr("hired")["type"], "dateTime");
    assert_eq!(attr("skills")["multiValued"], true);
    assert_eq!(attr("grade")["mutability"], "readOnly");

    let carol = user_named(&s, "carol").await;
    let id = carol["id"].as_str().unwrap();
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([
                {"op": "add", "path": format!("{CUSTOM_URN}:badge"), "value": "+0042"},
                {"op": "replace", "path": format!("{CUSTOM_URN}:remote"), "value": "True"},
                {"op": "add", "value": {CUSTOM_URN: {"hired": "2024-05-01T09:30:00+02:00", "skills": ["rust", "ldap"]}}},
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    let ext = &r.body[CUSTOM_URN];
    assert_eq!(ext["badge"], json!(42), "an integer as a JSON number: {r}");
    assert_eq!(ext["remote"], json!(true));
    assert_eq!(ext["hired"], json!("2024-05-01T07:30:00Z"));
    assert_eq!(ext["skills"], json!(["rust", "ldap"]));
    assert_eq!(ext["costCenter"], "CC-200", "others stay");
    // The backend holds the core's canonical text.
    let u = demo.backend.get_user(id).await.unwrap().unwrap();
    let text = |f: &str| u.custom.get(f).cloned().unwrap_or_default();
    assert_eq!(
        (text("x_badge"), text("x_remote"), text("x_hired")),
        (vec!["42".to_string()], vec!["true".into()], vec!["1714548600".into()])
    );
    assert_eq!(text("x_skills"), ["rust", "ldap"]);
    // Filters on typed values.
    assert_eq!(s.filter("Users", "badge eq 42").await.total(), 1);
    assert_eq!(s.filter("Users", "remote eq true").await.total(), 1);
    assert_eq!(s.filter("Users", "skills eq \"LDAP\"").await.total(), 1);
    // Add to and remove from a multi-valued one.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "add", "path": format!("{CUSTOM_URN}:skills"), "value": ["scim"]}, {"op": "remove", "path": format!("{CUSTOM_URN}:skills[value eq \"rust\"]")}]),
        )
        .await;
    // A filter on a simple multi-valued attribute is not a path RFC 7644 defines.
    assert_refused(&r, 400, "invalidPath", &["skills"], "value filter on simple values");
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "add", "path": format!("{CUSTOM_URN}:skills"), "value": ["scim"]}]),
        )
        .await;
    assert_eq!(r.body[CUSTOM_URN]["skills"], json!(["rust", "ldap", "scim"]), "{r}");
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "remove", "path": format!("{CUSTOM_URN}:badge")}])).await;
    assert!(r.body[CUSTOM_URN].get("badge").is_none(), "{r}");
    assert!(!demo.backend.get_user(id).await.unwrap().unwrap().custom.contains_key("x_badge"));

    // Wrong types, with the attribute named; nothing applied.
    let before = s.get(&format!("/Users/{id}")).await.body;
    let cases = [
        ("badge", json!("forty-two"), "badge"),
        ("badge", json!(1.5), "integer"),
        ("badge", json!("99999999999999999999999"), "badge"),
        ("remote", json!("maybe"), "remote"),
        ("hired", json!("yesterday"), "dateTime"),
        ("costCenter", json!(12), "string"),
        ("costCenter", json!({"nested": "object"}), "costCenter"),
        ("costCenter", json!(["a", "b"]), "string"),
        ("costCenter", json!("CC\u{7}100"), "control"),
        ("skills", json!(["a,b"]), "skills"),
    ];
    for (name, value, word) in cases {
        let r = s
            .patch(
                &format!("/Users/{id}"),
                json!([{"op": "replace", "path": format!("{CUSTOM_URN}:{name}"), "value": value}]),
            )
            .await;
        assert_refused(&r, 400, "invalidValue", &[word], &format!("{name} = {value}"));
    }
    let r = s
        .patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": format!("{CUSTOM_URN}:grade"), "value": "A"}]))
        .await;
    assert_refused(&r, 400, "mutability", &["grade"], "read-only custom attribute");
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": format!("{CUSTOM_URN}:shoeSize"), "value": "44"}]),
        )
        .await;
    assert_refused(&r, 400, "invalidValue", &["shoeSize"], "unknown custom attribute");
    let after = s.get(&format!("/Users/{id}")).await.body;
    assert_eq!(before["meta"]["version"], after["meta"]["version"], "nothing applied");
    // A body beyond the size limit is refused before anything happens.
    let huge = "x".repeat(3 * 1024 * 1024);
    let r =
        s.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": cost_center_path(), "value": huge}])).await;
    assert_eq!(r.status, 413, "{}", r.status);
    assert_eq!(s.get(&format!("/Users/{id}")).await.body[CUSTOM_URN]["costCenter"], "CC-200");
}

// ---- hostile managers and member groups ----------------------------------------------------------

#[tokio::test]
async fn bad_managers_and_group_cycles_are_refused() {
    let demo = common::start_demo_full().await;
    let s = Scim::new(demo.running.http_addr);
    let bob = user_named(&s, "bob").await;
    let bob_id = bob["id"].as_str().unwrap();
    let eng = group_named(&s, "engineering").await;
    let dev = group_named(&s, "developers").await;
    let (eng_id, dev_id) = (eng["id"].as_str().unwrap(), dev["id"].as_str().unwrap());

    let bob_path = format!("/Users/{bob_id}");
    let patch_manager = |v: Value| s.patch(&bob_path, json!([{"op": "Add", "path": manager_path(), "value": v}]));
    assert_refused(
        &patch_manager(json!(eng_id)).await,
        400,
        "invalidValue",
        &["group", "engineering", "not a user"],
        "manager is a group",
    );
    assert_refused(
        &patch_manager(json!("424242")).await,
        400,
        "invalidValue",
        &["424242", "not an existing user"],
        "missing manager",
    );
    assert_refused(&patch_manager(json!(bob_id)).await, 400, "invalidValue", &["own manager"], "self");
    assert_refused(&patch_manager(json!([1, 2])).await, 400, "invalidValue", &["manager"], "array");
    let r = s.post("/Users", json!({"userName": "newbie", ENTERPRISE_URN: {"manager": {"value": dev_id}}})).await;
    assert_refused(&r, 400, "invalidValue", &["group", "developers"], "create with a group as manager");
    assert_eq!(s.filter("Users", "userName eq \"newbie\"").await.total(), 0, "nothing created");
    assert_eq!(user_named(&s, "bob").await[ENTERPRISE_URN]["manager"], bob[ENTERPRISE_URN]["manager"], "unchanged");

    // Cycles: developers inside engineering inside developers; a group inside itself.
    let r = s
        .patch(
            &format!("/Groups/{dev_id}"),
            json!([{"op": "add", "path": "members", "value": [{"value": eng_id, "type": "Group"}]}]),
        )
        .await;
    assert_refused(&r, 400, "invalidValue", &["cycle", "engineering"], "cycle");
    let r = s
        .patch(&format!("/Groups/{eng_id}"), json!([{"op": "add", "path": "members", "value": [{"value": eng_id}]}]))
        .await;
    assert_refused(&r, 400, "invalidValue", &["cycle"], "self-member");
    let r = s
        .patch(
            &format!("/Groups/{eng_id}"),
            json!([{"op": "add", "path": "members", "value": [{"value": bob_id, "type": "Group"}]}]),
        )
        .await;
    assert_refused(&r, 400, "invalidValue", &[bob_id, "not an existing group"], "a user typed as a group");
    let r = s
        .patch(
            &format!("/Groups/{eng_id}"),
            json!([{"op": "add", "path": "members", "value": [{"value": bob_id, "type": "Robot"}]}]),
        )
        .await;
    assert_refused(&r, 400, "invalidValue", &["type"], "unknown member type");
    let r = s
        .patch(&format!("/Groups/{eng_id}"), json!([{"op": "add", "path": "members", "value": [{"value": "g999999"}]}]))
        .await;
    assert_refused(&r, 400, "invalidValue", &["g999999"], "missing member");
    assert_eq!(member_ids(&s.get(&format!("/Groups/{eng_id}")).await.body), member_ids(&eng), "engineering unchanged");

    // Group members by type, or by an unambiguous group id; removal by filter (Okta, Entra).
    let created = s
        .post(
            "/Groups",
            json!({"displayName": "platform", "members": [{"value": dev_id, "type": "Group"}, {"value": bob_id}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{created}");
    let pid = created.id();
    assert_eq!(member_ids(&created.body), BTreeSet::from([dev_id.to_string(), bob_id.to_string()]));
    let r = s
        .patch(&format!("/Groups/{pid}"), json!([{"op": "add", "path": "members", "value": [{"value": eng_id}]}]))
        .await;
    assert!(member_ids(&r.body).contains(eng_id), "{r}");
    let (direct, indirect) = groups_by_type(&user_named(&s, "bob").await);
    assert!(direct.contains("platform"), "bob is a direct member");
    assert!(indirect.contains("engineering"), "through developers");
    let r = s
        .patch(&format!("/Groups/{pid}"), json!([{"op": "remove", "path": format!("members[value eq \"{eng_id}\"]")}]))
        .await;
    assert!(!member_ids(&r.body).contains(eng_id), "{r}");
    let r = s
        .patch(&format!("/Groups/{pid}"), json!([{"op": "Remove", "path": "members", "value": [{"value": dev_id}]}]))
        .await;
    assert_eq!(member_ids(&r.body), BTreeSet::from([bob_id.to_string()]), "Entra's remove-listed form: {r}");
    let g = demo.backend.get_group(created.id().trim_start_matches('g')).await.unwrap().unwrap();
    assert!(g.member_groups.is_empty(), "{g:?}");
    // PUT replaces both kinds.
    let r = s
        .put(
            &format!("/Groups/{pid}"),
            json!({"displayName": "platform", "members": [{"value": dev_id, "type": "Group"}]}),
        )
        .await;
    assert_eq!(member_ids(&r.body), BTreeSet::from([dev_id.to_string()]), "{r}");
}

// ---- many clients at once -------------------------------------------------------------------------

/// Clients patching the same group's member groups and the same user's custom attribute at once:
/// every acknowledged member-group addition is in the end state, and SCIM, the cache and the
/// backend agree on it and on the last costCenter.
#[tokio::test]
async fn concurrent_nested_members_and_custom_attribute_patches() {
    let demo = common::start_demo_full().await;
    let addr = demo.running.http_addr;
    let s = Scim::new(addr);
    let parent = s.post("/Groups", json!({"displayName": "parent"})).await.id();
    let mut children = Vec::new();
    for i in 0..8 {
        children.push(s.post("/Groups", json!({"displayName": format!("child-{i}")})).await.id());
    }
    let alice_id = user_named(&s, "alice").await["id"].as_str().unwrap().to_string();
    let children = Arc::new(children);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (children, parent, alice_id) = (children.clone(), parent.clone(), alice_id.clone());
        tasks.push(tokio::spawn(async move {
            let c = Scim::new(addr);
            // Add child i, and take out the child before it (added by another client or not yet).
            let add = json!([{"op": "add", "path": "members", "value": [{"value": children[i], "type": "Group"}]}]);
            let r = c.try_patch(&format!("/Groups/{parent}"), add, &[]).await?;
            if r.status != 200 {
                return Err(format!("add child {i}: {r}"));
            }
            let cc = json!([{"op": "replace", "path": format!("{CUSTOM_URN}:costCenter"), "value": format!("CC-{i}")}]);
            let r = c.try_patch(&format!("/Users/{alice_id}"), cc, &[]).await?;
            if r.status != 200 {
                return Err(format!("costCenter {i}: {r}"));
            }
            if i % 2 == 1 {
                let rm = json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", children[i])}]);
                let r = c.try_patch(&format!("/Groups/{parent}"), rm, &[]).await?;
                if r.status != 200 {
                    return Err(format!("remove child {i}: {r}"));
                }
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.expect("task").unwrap_or_else(|e| panic!("{e}"));
    }
    let kept: BTreeSet<String> = (0..8).filter(|i| i % 2 == 0).map(|i| children[i].clone()).collect();
    assert_eq!(member_ids(&s.get(&format!("/Groups/{parent}")).await.body), kept, "SCIM");
    let backend_group = demo.backend.get_group(parent.trim_start_matches('g')).await.unwrap().unwrap();
    let in_backend: BTreeSet<String> = backend_group.member_groups.iter().map(|g| format!("g{g}")).collect();
    assert_eq!(in_backend, kept, "backend");
    let cc = s.get(&format!("/Users/{alice_id}")).await.body[CUSTOM_URN]["costCenter"].as_str().unwrap().to_string();
    assert!((0..8).any(|i| cc == format!("CC-{i}")), "{cc}");
    let u = demo.backend.get_user(&alice_id).await.unwrap().unwrap();
    assert_eq!(u.custom.get("costCenter"), Some(&vec![cc.clone()]), "backend agrees");
    assert_eq!(s.filter("Users", &format!("costCenter eq \"{cc}\"")).await.total(), 1);
    // The raw method works on the shared client too (keeps the import honest).
    assert_eq!(s.raw(Method::GET, "/Users?count=0", None, &[]).await.status, 200);
}
