//! Input the core refuses whichever protocol brings it: control characters in logins and names,
//! a PATCH that would change the read-only `id`, Bulk operations sharing a bulkId. Each answer is
//! the protocol's proper error, and nothing is written.

mod common;

use std::collections::HashSet;

use common::scim::Scim;
use common::*;
use idgate::backend::Backend;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_in_logins_and_names_over_scim_and_ldap() {
    let demo = start_demo_full().await;
    let scim = Scim::new(demo.running.http_addr);
    for login in ["a\u{0}b", "a\r\nforged=1", "tab\there", "del\u{7f}", "c1\u{85}x"] {
        let r = scim.post("/Users", json!({"userName": login, "name": {"givenName": "G", "familyName": "F"}})).await;
        assert_eq!(r.status, 400, "{login:?}: {r}");
        assert_eq!(r.scim_type(), "invalidValue", "{r}");
        assert!(r.detail().contains("control characters"), "{r}");
        let stored = demo.backend.find_user_by_login(login).await.expect("backend");
        assert!(stored.is_none(), "{login:?} was not created");
    }
    let r =
        scim.post("/Users", json!({"userName": "okname", "name": {"givenName": "Bad\nName", "familyName": "F"}})).await;
    assert_eq!(r.status, 400, "{r}");
    let r = scim.post("/Groups", json!({"displayName": "grp\u{0}x"})).await;
    assert_eq!(r.status, 400, "{r}");
    // Replacing a name with one carrying a newline is refused and leaves the user as it was.
    let alice =
        scim.filter("Users", "userName eq \"alice\"").await.body["Resources"][0]["id"].as_str().unwrap().to_string();
    let r = scim.patch(&format!("/Users/{alice}"), json!([{"op": "replace", "path": "title", "value": "x\ny"}])).await;
    assert_eq!(r.status, 400, "{r}");
    let u = demo.backend.find_user_by_login("alice").await.unwrap().unwrap();
    assert_ne!(u.title.as_deref(), Some("x\ny"));

    // LDAP: an escaped NUL in the RDN (uid=a\00b) and a CR/LF in a name.
    let mut admin = bind(&demo.url, ADMIN_DN, ADMIN_PW).await;
    let attrs = |uid: &str, sn: &str| {
        vec![
            ("objectClass".to_string(), HashSet::from(["inetOrgPerson".to_string()])),
            ("uid".to_string(), HashSet::from([uid.to_string()])),
            ("cn".to_string(), HashSet::from(["Some One".to_string()])),
            ("sn".to_string(), HashSet::from([sn.to_string()])),
        ]
    };
    let r = admin.with_timeout(WAIT).add(&format!("uid=a\\00b,{PEOPLE}"), attrs("a\u{0}b", "One")).await.unwrap();
    assert_eq!(r.rc, 19, "constraintViolation: {r:?}");
    assert!(r.text.contains("control characters"), "{r:?}");
    let r =
        admin.with_timeout(WAIT).add(&format!("uid=crlf,{PEOPLE}"), attrs("crlf", "One\r\nforged: x")).await.unwrap();
    assert_eq!(r.rc, 19, "{r:?}");
    assert!(demo.backend.find_user_by_login("a\u{0}b").await.unwrap().is_none());
    assert!(demo.backend.find_user_by_login("crlf").await.unwrap().is_none());
    // The server keeps serving, and clean input still works.
    let r = admin.with_timeout(WAIT).add(&format!("uid=clean,{PEOPLE}"), attrs("clean", "One")).await.unwrap();
    assert_eq!(r.rc, 0, "{r:?}");
    demo.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_cannot_change_the_id_and_bulk_ids_must_be_unique() {
    let demo = start_demo_full().await;
    let scim = Scim::new(demo.running.http_addr);
    let alice =
        scim.filter("Users", "userName eq \"alice\"").await.body["Resources"][0]["id"].as_str().unwrap().to_string();
    for ops in [
        json!([{"op": "replace", "path": "id", "value": "999"}]),
        json!([{"op": "replace", "value": {"id": "999", "title": "Changed"}}]),
    ] {
        let r = scim.patch(&format!("/Users/{alice}"), ops.clone()).await;
        assert_eq!(r.status, 400, "{ops}: {r}");
        assert_eq!(r.scim_type(), "mutability", "{r}");
    }
    let u = scim.get(&format!("/Users/{alice}")).await;
    assert_eq!(u.status, 200);
    assert_ne!(u.body["title"], "Changed", "nothing of the refused PATCH was applied");
    // Okta's habit, repeating the same id, is fine.
    let r = scim
        .patch(&format!("/Users/{alice}"), json!([{"op": "replace", "value": {"id": alice, "title": "Same id"}}]))
        .await;
    assert_eq!(r.status, 200, "{r}");

    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "bulkone"}},
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "bulktwo"}},
        ]
    });
    let r = scim.post("/Bulk", bulk).await;
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.scim_type(), "invalidValue", "{r}");
    assert!(r.detail().contains("same bulkId"), "{r}");
    for login in ["bulkone", "bulktwo"] {
        assert!(demo.backend.find_user_by_login(login).await.unwrap().is_none(), "{login} not created");
    }
    demo.running.shutdown().await;
}
