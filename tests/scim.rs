//! SCIM 2.0 front end, end to end over HTTP: the real-client replays (Entra, Okta, authentik) against
//! the demo directory and the Dolibarr simulator (23 for groups; 22 answers 501 where it cannot act),
//! cross-protocol effects seen over LDAP, durability of externalId, and hostile input.

mod common;
mod support;

use std::path::PathBuf;

use idgate::app::Running;
use idgate::backend::Backend;
use idgate::config::Config;
use ldap3::Scope;
use reqwest::Method;
use serde_json::{Value, json};
use support::dolibarr_sim::{DolibarrSim, Version};

const TOKEN: &str = "demo-token";
const EXT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Scim {
    base: String,
    http: reqwest::Client,
    token: String,
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Resp {
    fn scim_type(&self) -> &str {
        self.body["scimType"].as_str().unwrap_or("")
    }
    fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or("")
    }
    fn total(&self) -> u64 {
        self.body["totalResults"].as_u64().expect("totalResults is an integer")
    }
    fn id(&self) -> String {
        self.body["id"].as_str().expect("id").to_string()
    }
    /// Every error is an RFC 7644 Error body with the status as a string.
    fn assert_error(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error", "{}", self.body);
        assert_eq!(self.body["status"], status.to_string());
        self
    }
}

impl Scim {
    fn new(r: &Running) -> Scim {
        Scim { base: format!("http://{}/scim/v2", r.http_addr), http: reqwest::Client::new(), token: TOKEN.into() }
    }

    async fn raw(&self, method: Method, path: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> Resp {
        let mut rq = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                rq = rq.header("content-type", "application/scim+json");
            }
            rq = rq.body(b);
        }
        for (k, v) in headers {
            rq = rq.header(*k, *v);
        }
        let r = rq.send().await.expect("request sent");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("body");
        if !bytes.is_empty() {
            let ct = headers.get("content-type").and_then(|c| c.to_str().ok()).unwrap_or("");
            assert_eq!(ct, "application/scim+json", "content type of {status}");
        }
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        Resp { status, headers, body }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.raw(method, path, body.map(|b| serde_json::to_vec(&b).expect("json")), &[]).await
    }
    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }
    async fn patch(&self, path: &str, ops: Value) -> Resp {
        self.call(Method::PATCH, path, Some(json!({"schemas": [PATCH], "Operations": ops}))).await
    }
    async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }
    /// GET with a filter, URL-encoded.
    async fn filter(&self, endpoint: &str, filter: &str, extra: &str) -> Resp {
        let q: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        self.get(&format!("/{endpoint}?filter={q}{extra}")).await
    }
}

fn member_ids(g: &Value) -> Vec<String> {
    let mut v: Vec<String> = g["members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["value"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

// ---- gateways --------------------------------------------------------------------------------

async fn demo() -> common::Demo {
    common::start_demo_with(|_| {}).await
}

fn dolibarr_config(sim: &DolibarrSim, state: &std::path::Path) -> Config {
    let text = format!(
        r#"
        [ldap]
        listen = "127.0.0.1:0"
        [[ldap.service_accounts]]
        name = "reader"
        password = "svc-pw"
        access = "read"
        [http]
        listen = "127.0.0.1:0"
        [scim]
        state_path = "{}"
        [[scim.tokens]]
        name = "test"
        token = "{TOKEN}"
        scope = "write"
        [[scim.tokens]]
        name = "ro"
        token = "read-only-token"
        scope = "read"
        [backend]
        kind = "dolibarr"
        url = "{}"
        api_key = "{}"
        timeout = "5s"
        retries = 0
        "#,
        state.display(),
        sim.url(),
        sim.admin_key()
    );
    Config::parse(&text).expect("config")
}

async fn dolibarr(version: Version) -> (DolibarrSim, Running) {
    let sim = DolibarrSim::start(version).await;
    let r = idgate::app::start(dolibarr_config(&sim, &common::fresh_state_path())).await.expect("gateway starts");
    (sim, r)
}

// ---- Entra (§3.1, E1–E18) --------------------------------------------------------------------

fn entra_user(name: &str, ext: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT],
        "externalId": ext, "userName": name, "active": true,
        "emails": [{"primary": true, "type": "work", "value": format!("{name}@contoso.example")}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Given Family", "familyName": "Family", "givenName": "Given"},
        "roles": [],
    })
}

/// Replays E1–E18; `groups` says whether the backend can create groups.
async fn entra(s: &Scim, groups: bool) {
    // E1, E2: liveness probes for random names: 200 with nothing.
    let r = s.filter("Users", "userName eq \"Test_User_7f3a1c0e\"", "").await;
    assert_eq!((r.status, r.total()), (200, 0), "E1 {}", r.body);
    let r = s.filter("Groups", "displayName eq \"Group_7f3a1c0e\"", "&excludedAttributes=members").await;
    assert_eq!((r.status, r.total()), (200, 0), "E2");

    // E3: create.
    let r = s.post("/Users", entra_user("Test_User_E3", "0a21f0f2-8d2a-4f8e-bf98-7e0aeb8e2a9d")).await;
    assert_eq!(r.status, 201, "E3 {}", r.body);
    let uid = r.id();
    assert_eq!(r.headers["location"].to_str().unwrap(), r.body["meta"]["location"].as_str().unwrap());
    assert!(r.body.get("roles").is_none() && r.body.get("password").is_none());

    // E4: found by userName (any case), externalId, work email.
    for f in [
        "userName eq \"test_user_e3\"".to_string(),
        "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7e0aeb8e2a9d\"".into(),
        "emails[type eq \"work\"].value eq \"Test_User_E3@contoso.example\"".into(),
    ] {
        let r = s.filter("Users", &f, "").await;
        assert_eq!((r.status, r.total()), (200, 1), "E4 {f}: {}", r.body);
        assert_eq!(r.body["Resources"][0]["id"], uid.as_str());
    }
    let r = s.filter("Users", "externalId eq \"0A21F0F2-8D2A-4F8E-BF98-7E0AEB8E2A9D\"", "").await;
    assert_eq!(r.total(), 0, "externalId is caseExact");

    // E5: capitalised ops on a value path and a sub-attribute.
    let p = format!("/Users/{uid}");
    let r = s
        .patch(
            &p,
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "e5@contoso.example"},
                {"op": "Replace", "path": "name.familyName", "value": "Updated"},
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "E5 {}", r.body);
    assert_eq!(r.body["emails"][0]["value"], "e5@contoso.example");
    assert_eq!(r.body["name"]["familyName"], "Updated");

    // E6: nickName cannot be stored by any backend: refused, naming it (a capitalised Add is parsed).
    let r = s.patch(&p, json!([{"op": "Add", "path": "nickName", "value": "Babs"}])).await;
    r.assert_error(400);
    assert!(r.detail().contains("nickName"), "E6 {}", r.body);
    let r = s.patch(&p, json!([{"op": "Add", "path": "title", "value": "Babs"}])).await;
    assert_eq!((r.status, r.body["title"].as_str()), (200, Some("Babs")), "E6 capital Add");

    // E7: path-less replace with dotted and URN keys.
    let r = s
        .patch(
            &p,
            json!([{"op": "replace", "value": {
                "displayName": "Shown Name", "name.givenName": "Newgiven", "name.familyName": "Newfamily",
                format!("{EXT}:employeeNumber"): "E-777"}}]),
        )
        .await;
    assert_eq!(r.status, 200, "E7 {}", r.body);
    let g = s.get(&p).await.body;
    assert_eq!(g["name"]["givenName"], "Newgiven");
    assert_eq!(g["name"]["familyName"], "Newfamily");
    assert_eq!(g["displayName"], "Shown Name");
    assert_eq!(g[EXT]["employeeNumber"], "E-777");

    // E8: no backend has a manager field: a bare-string value is refused naming it, empty is fine.
    let r = s.patch(&p, json!([{"op": "Add", "path": format!("{EXT}:manager"), "value": uid}])).await;
    r.assert_error(400);
    assert!(r.detail().contains("manager"), "E8 {}", r.body);
    let r = s.patch(&p, json!([{"op": "Add", "path": format!("{EXT}:manager"), "value": ""}])).await;
    assert_eq!(r.status, 200, "E8 empty manager {}", r.body);

    // E9, E10: disable with "False", then with false; still found, active false.
    let r = s.patch(&p, json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    assert_eq!((r.status, &r.body["active"]), (200, &json!(false)), "E9");
    assert_eq!(s.get(&p).await.body["active"], false);
    let r = s.patch(&p, json!([{"op": "replace", "path": "active", "value": false}])).await;
    assert_eq!(r.status, 200);
    let r = s.filter("Users", "userName eq \"Test_User_E3\"", "").await;
    assert_eq!((r.total(), &r.body["Resources"][0]["active"]), (1, &json!(false)), "E10");

    // E17: unknown id, duplicate userName.
    s.get("/Users/999999").await.assert_error(404);
    let r = s.post("/Users", entra_user("test_user_e3", "other")).await;
    r.assert_error(409);
    assert_eq!(r.scim_type(), "uniqueness");

    if groups {
        // E11: extra Microsoft schema URN ignored.
        let r = s
            .post(
                "/Groups",
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group",
                                   "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                       "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "Group_E11",
                       "meta": {"resourceType": "Group"}}),
            )
            .await;
        assert_eq!(r.status, 201, "E11 {}", r.body);
        let gid = r.id();
        let gp = format!("/Groups/{gid}");
        let r = s.get(&format!("{gp}?excludedAttributes=members")).await;
        assert!(r.body.get("members").is_none() && r.body["externalId"] == "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");

        // A second user to prove only the listed member goes.
        let other = s.post("/Users", entra_user("Test_User_E12b", "x-b")).await.id();
        // E12
        let r = s
            .patch(
                &gp,
                json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": uid}, {"value": other}]}]),
            )
            .await;
        assert_eq!(r.status, 200, "E12 {}", r.body);
        let mut want = vec![uid.clone(), other.clone()];
        want.sort();
        assert_eq!(member_ids(&s.get(&gp).await.body), want);
        // E13: membership queries, both forms.
        for f in [
            format!("id eq \"{gid}\" and members[value eq \"{uid}\"]"),
            format!("id eq \"{gid}\" and members.value eq \"{uid}\""),
        ] {
            let r = s.filter("Groups", &f, "&excludedAttributes=members").await;
            assert_eq!((r.status, r.total()), (200, 1), "E13 {f}");
        }
        let r = s.filter("Groups", &format!("id eq \"{gid}\" and members[value eq \"424242\"]"), "").await;
        assert_eq!(r.total(), 0);
        // E14: legacy remove with a value list removes only those.
        let r =
            s.patch(&gp, json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": other}]}])).await;
        assert_eq!(r.status, 200, "E14 {}", r.body);
        assert_eq!(member_ids(&s.get(&gp).await.body), vec![uid.clone()]);
        // E15: filter form.
        let r = s.patch(&gp, json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}])).await;
        assert_eq!(r.status, 200, "E15");
        assert!(member_ids(&s.get(&gp).await.body).is_empty());
        // E16: rename.
        let r = s.patch(&gp, json!([{"op": "Replace", "path": "displayName", "value": "Group_E16"}])).await;
        assert_eq!((r.status, r.body["displayName"].as_str()), (200, Some("Group_E16")), "E16");
        // E18: delete group.
        assert_eq!(s.delete(&gp).await.status, 204, "E18 group");
        s.get(&gp).await.assert_error(404);
        assert_eq!(s.delete(&format!("/Users/{other}")).await.status, 204);
    }
    // E18: delete user.
    assert_eq!(s.delete(&p).await.status, 204, "E18");
    s.get(&p).await.assert_error(404);
    s.delete(&p).await.assert_error(404);
}

// ---- Okta (§3.2, O1–O9) ----------------------------------------------------------------------

/// Replays O1–O9. Dolibarr refuses `@` in logins, so `login` is the backend's acceptable form.
async fn okta(s: &Scim, groups: bool, login: &str) {
    // O1
    let q: String = url::form_urlencoded::byte_serialize(format!("userName eq \"{login}\"").as_bytes()).collect();
    let r = s.get(&format!("/Users?filter={q}&startIndex=1&count=100")).await;
    assert_eq!((r.status, r.total()), (200, 0), "O1");
    // O2
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": login,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [], "password": "1mz050nq-Okta", "active": true,
    });
    let r = s.post("/Users", body.clone()).await;
    assert_eq!(r.status, 201, "O2 {}", r.body);
    assert_eq!(r.body["locale"], "en-US");
    assert!(r.body.get("password").is_none());
    let uid = r.id();
    s.post("/Users", body.clone()).await.assert_error(409);
    // O3: paging with integers and a stable order.
    let all = s.get("/Users?startIndex=1&count=1000").await;
    let total = all.total() as usize;
    let ids: Vec<Value> = all.body["Resources"].as_array().unwrap().iter().map(|u| u["id"].clone()).collect();
    assert_eq!(ids.len(), total);
    let mut paged = Vec::new();
    let mut start = 1;
    while start <= total {
        let r = s.get(&format!("/Users?startIndex={start}&count=3")).await;
        assert!(r.body["startIndex"].is_u64() && r.body["itemsPerPage"].is_u64());
        assert_eq!(r.body["startIndex"], start);
        paged.extend(r.body["Resources"].as_array().unwrap().iter().map(|u| u["id"].clone()));
        start += 3;
    }
    assert_eq!(paged, ids, "O3 stable order across pages");
    // O4: PUT full body.
    let mut put = s.get(&format!("/Users/{uid}")).await.body;
    put["name"]["familyName"] = json!("Replaced");
    put["title"] = json!("Engineer");
    let r = s.put(&format!("/Users/{uid}"), put).await;
    assert_eq!(r.status, 200, "O4 {}", r.body);
    assert_eq!((r.body["name"]["familyName"].as_str(), r.body["title"].as_str()), (Some("Replaced"), Some("Engineer")));
    // O5: path-less deactivate.
    let r = s.patch(&format!("/Users/{uid}"), json!([{"op": "replace", "value": {"active": false}}])).await;
    assert_eq!((r.status, &r.body["active"]), (200, &json!(false)), "O5");
    if groups {
        // O6
        let r = s
            .post(
                "/Groups",
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                          "displayName": "Okta_O6", "members": []}),
            )
            .await;
        assert_eq!(r.status, 201, "O6 {}", r.body);
        let gp = format!("/Groups/{}", r.id());
        let gid = r.id();
        let second = s.post("/Users", json!({"userName": "okta.second", "name": {"familyName": "Second"}})).await.id();
        // O7: rename with id repeated.
        let r = s.patch(&gp, json!([{"op": "replace", "value": {"id": gid, "displayName": "Okta_O7"}}])).await;
        assert_eq!((r.status, r.body["displayName"].as_str()), (200, Some("Okta_O7")), "O7 {}", r.body);
        // O8: remove + add in one request, atomic.
        s.patch(&gp, json!([{"op": "add", "path": "members", "value": [{"value": uid}]}])).await;
        let r = s
            .patch(
                &gp,
                json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")},
                       {"op": "add", "path": "members", "value": [{"value": second, "display": "okta.second"}]}]),
            )
            .await;
        assert_eq!(r.status, 200, "O8 {}", r.body);
        assert_eq!(member_ids(&r.body), vec![second.clone()]);
        // O9: full push.
        let r = s
            .patch(&gp, json!([{"op": "replace", "path": "members", "value": [{"value": uid}, {"value": second}]}]))
            .await;
        assert_eq!(r.status, 200, "O9");
        let mut want = vec![uid.clone(), second.clone()];
        want.sort();
        assert_eq!(member_ids(&r.body), want);
        assert_eq!(s.delete(&gp).await.status, 204);
        assert_eq!(s.delete(&format!("/Users/{second}")).await.status, 204);
    }
    assert_eq!(s.delete(&format!("/Users/{uid}")).await.status, 204);
}

// ---- authentik (§3.3, A1–A4) -----------------------------------------------------------------

async fn authentik(s: &Scim, groups: bool) {
    // A1
    let r = s.get("/ServiceProviderConfig").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["patch"]["supported"], true);
    let max_ops = r.body["bulk"]["maxOperations"].as_u64().expect("bulk.maxOperations");
    assert!(max_ops >= 1);
    assert!(r.body["filter"]["maxResults"].as_u64().is_some());
    // A2
    let r = s.post("/Users", json!({"userName": "ak-user", "externalId": "ak-uid-1", "name": {"givenName": "A", "familyName": "K"},
                                     "emails": [{"value": "ak@example.com", "type": "work", "primary": true}], "active": true}))
        .await;
    assert_eq!(r.status, 201, "A2 {}", r.body);
    let uid = r.id();
    let r = s
        .put(
            &format!("/Users/{uid}"),
            json!({"userName": "ak-user", "externalId": "ak-uid-1",
                                                     "name": {"givenName": "A2", "familyName": "K"}, "active": true}),
        )
        .await;
    assert_eq!(r.status, 200, "A2 PUT {}", r.body);
    assert_eq!(r.body["name"]["givenName"], "A2");
    assert!(r.body.get("emails").is_none(), "PUT clears what it does not send");
    if groups {
        // A3: 409 on a duplicate displayName, then adoption by filter.
        let r = s.post("/Groups", json!({"displayName": "ak-group"})).await;
        assert_eq!(r.status, 201);
        let gid = r.id();
        let r = s.post("/Groups", json!({"displayName": "AK-Group"})).await;
        r.assert_error(409);
        assert_eq!(r.scim_type(), "uniqueness");
        let r = s.filter("Groups", "displayName eq \"ak-group\"", "").await;
        assert_eq!((r.total(), r.body["Resources"][0]["id"].as_str()), (1, Some(gid.as_str())), "A3");
        // A4: one op per user, add then remove.
        let gp = format!("/Groups/{gid}");
        let r = s.patch(&gp, json!([{"op": "add", "path": "members", "value": [{"value": uid}]}])).await;
        assert_eq!((r.status, member_ids(&r.body)), (200, vec![uid.clone()]), "A4 add");
        let r = s.patch(&gp, json!([{"op": "remove", "path": "members", "value": [{"value": uid}]}])).await;
        assert_eq!(r.status, 200, "A4 remove");
        assert!(member_ids(&r.body).is_empty());
        assert_eq!(s.delete(&gp).await.status, 204);
    }
    assert_eq!(s.delete(&format!("/Users/{uid}")).await.status, 204, "A2 DELETE");
}

#[tokio::test]
async fn client_replays_against_the_demo() {
    let d = demo().await;
    let s = Scim::new(&d.running);
    entra(&s, true).await;
    okta(&s, true, "test.user@okta.local").await;
    authentik(&s, true).await;
}

#[tokio::test]
async fn client_replays_against_dolibarr_23() {
    let (_sim, r) = dolibarr(Version::V23).await;
    let s = Scim::new(&r);
    // The ERP's own login rules reach the client as 400 invalidValue with its reason.
    let e = s.post("/Users", json!({"userName": "test.user@okta.local"})).await;
    e.assert_error(400);
    assert!(e.detail().contains("Dolibarr"), "{}", e.body);
    entra(&s, true).await;
    okta(&s, true, "test.user").await;
    authentik(&s, true).await;
}

#[tokio::test]
async fn dolibarr_22_answers_501_where_it_cannot_act() {
    let (sim, r) = dolibarr(Version::V22).await;
    let s = Scim::new(&r);
    entra(&s, false).await;
    okta(&s, false, "test.user").await;
    authentik(&s, false).await;

    // No externalId in Dolibarr 22: the gateway keeps it (verified in the replays above). Groups:
    let r = s.post("/Groups", json!({"displayName": "cannot"})).await;
    r.assert_error(501);
    assert!(r.detail().contains("dolibarr") && r.detail().contains("creating groups"), "{}", r.body);
    let devs = s.filter("Groups", "displayName eq \"developers\"", "").await;
    assert_eq!(devs.total(), 1);
    let g = devs.body["Resources"][0].clone();
    let gp = format!("/Groups/{}", g["id"].as_str().unwrap());
    let before = member_ids(&g);
    assert!(!before.is_empty());
    // member add works
    let jsmith = s.post("/Users", json!({"userName": "v22user", "name": {"familyName": "V"}})).await.id();
    let r = s.patch(&gp, json!([{"op": "add", "path": "members", "value": [{"value": jsmith}]}])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(member_ids(&r.body).contains(&jsmith));
    let backend_gid: u64 = g["id"].as_str().unwrap().trim_start_matches('g').parse().unwrap();
    assert!(sim.group_members(backend_gid).unwrap().contains(&jsmith.parse().unwrap()));
    // removal, rename, delete: 501, nothing changed
    for (ops, what) in [
        (json!([{"op": "remove", "path": format!("members[value eq \"{jsmith}\"]")}]), "removing group members"),
        (json!([{"op": "replace", "path": "displayName", "value": "devs2"}]), "renaming groups"),
    ] {
        let r = s.patch(&gp, ops).await;
        r.assert_error(501);
        assert!(r.detail().contains(what), "{}", r.body);
    }
    let r = s.delete(&gp).await;
    r.assert_error(501);
    assert!(r.detail().contains("deleting groups"));
    assert!(sim.group_members(backend_gid).unwrap().contains(&jsmith.parse().unwrap()));
    assert_eq!(sim.group_name(backend_gid).as_deref(), Some("developers"));
}

// ---- cross-protocol, durability ----------------------------------------------------------------

#[tokio::test]
async fn scim_writes_are_visible_over_ldap_at_once() {
    let d = demo().await;
    let s = Scim::new(&d.running);
    let r = s
        .post("/Users", json!({"userName": "xproto", "password": "Xproto-pass-1", "name": {"familyName": "Proto"}}))
        .await;
    assert_eq!(r.status, 201);
    let uid = r.id();
    let dn = "uid=xproto,ou=people,dc=example,dc=com";
    let mut l = common::connect(&d.url).await;
    assert_eq!(common::try_bind(&mut l, dn, "Xproto-pass-1").await.rc, 0, "created by SCIM, binds over LDAP");

    // membership added by SCIM shows as memberOf / memberUid at once
    let staff = s.filter("Groups", "displayName eq \"staff\"", "").await.body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .patch(&format!("/Groups/{staff}"), json!([{"op": "add", "path": "members", "value": [{"value": uid}]}]))
        .await;
    assert_eq!(r.status, 200);
    let mut svc = common::bind(&d.url, "cn=reader,ou=services,dc=example,dc=com", "demo-reader").await;
    let e = common::search_ok(&mut svc, dn, Scope::Base, "(objectClass=*)", &["memberOf"]).await;
    assert!(e[0].attrs["memberOf"].iter().any(|g| g.eq_ignore_ascii_case("cn=staff,ou=groups,dc=example,dc=com")));
    let e =
        common::search_ok(&mut svc, "dc=example,dc=com", Scope::Subtree, "(&(cn=staff)(memberUid=xproto))", &["cn"])
            .await;
    assert_eq!(e.len(), 1);

    // disabled by SCIM: the next bind fails, even though the password was cached
    let r = s.patch(&format!("/Users/{uid}"), json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    assert_eq!(r.status, 200);
    let mut l = common::connect(&d.url).await;
    assert_ne!(common::try_bind(&mut l, dn, "Xproto-pass-1").await.rc, 0, "disabled user cannot bind");

    // password set by SCIM PATCH takes effect
    s.patch(
        &format!("/Users/{uid}"),
        json!([{"op": "replace", "path": "active", "value": true},
                                              {"op": "replace", "path": "password", "value": "Second-pass-2"}]),
    )
    .await;
    let mut l = common::connect(&d.url).await;
    assert_eq!(common::try_bind(&mut l, dn, "Second-pass-2").await.rc, 0);
}

#[tokio::test]
async fn external_id_survives_a_restart() {
    let state = common::fresh_state_path();
    let start = |state: PathBuf| async move {
        let mut cfg = common::demo_config();
        cfg.scim.state_path = Some(state);
        idgate::app::start(cfg).await.expect("starts")
    };
    let r = start(state.clone()).await;
    let s = Scim::new(&r);
    let alice =
        s.filter("Users", "userName eq \"alice\"", "").await.body["Resources"][0]["id"].as_str().unwrap().to_string();
    let p =
        s.patch(&format!("/Users/{alice}"), json!([{"op": "add", "path": "externalId", "value": "ext-alice"}])).await;
    assert_eq!(p.status, 200);
    r.shutdown().await;

    let r = start(state).await;
    let s = Scim::new(&r);
    let found = s.filter("Users", "externalId eq \"ext-alice\"", "").await;
    assert_eq!(found.total(), 1);
    assert_eq!(found.body["Resources"][0]["userName"], "alice");
    r.shutdown().await;
}

// ---- protocol features ---------------------------------------------------------------------------

#[tokio::test]
async fn queries_etags_discovery_and_bulk() {
    let d = demo().await;
    let s = Scim::new(&d.running);
    // sort, attributes, excludedAttributes
    let r = s.get("/Users?sortBy=userName&sortOrder=descending&attributes=userName&count=2").await;
    let names: Vec<&str> =
        r.body["Resources"].as_array().unwrap().iter().map(|u| u["userName"].as_str().unwrap()).collect();
    assert!(names[0] > names[1]);
    let first = &r.body["Resources"][0];
    assert!(first.get("id").is_some() && first.get("emails").is_none() && first.get("meta").is_none());
    let r = s.get("/Users?excludedAttributes=emails,groups&count=1").await;
    assert!(r.body["Resources"][0].get("emails").is_none() && r.body["Resources"][0].get("userName").is_some());
    s.get("/Users?count=100000").await.assert_error(400);
    assert_eq!(s.get("/Users?count=100000").await.scim_type(), "tooMany");
    let r = s.filter("Users", "title co \"dev\" and not (active eq false) or userName sw \"zz\"", "").await;
    assert!(r.total() >= 1);
    let r = s.filter("Users", "name.familyName pr and meta.created gt \"2000-01-01T00:00:00Z\"", "").await;
    assert!(r.total() >= 1);
    let r = s
        .post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                                       "filter": "userName eq \"alice\" or displayName eq \"staff\""}),
        )
        .await;
    assert_eq!(r.total(), 2, "root search spans types; ids are unique across them");

    // ETags
    let r = s.get("/Users/1").await;
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, r.body["meta"]["version"].as_str().unwrap());
    let r = s.raw(Method::GET, "/Users/1", None, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    let body = serde_json::to_vec(
        &json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "x"}]}),
    )
    .unwrap();
    let r = s.raw(Method::PATCH, "/Users/1", Some(body.clone()), &[("if-match", "W/\"stale\"")]).await;
    r.assert_error(412);
    let r = s.raw(Method::PATCH, "/Users/1", Some(body), &[("if-match", &etag)]).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.headers["etag"].to_str().unwrap(), etag);

    // PATCH answers with the resource, honouring attributes
    let r = s
        .call(
            Method::PATCH,
            "/Users/1?attributes=title",
            Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "y"}]})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!((r.body["title"].as_str(), r.body["id"].as_str()), (Some("y"), Some("1")));
    assert!(r.body.get("userName").is_none() && r.body.get("emails").is_none());
    // members' display only on request
    let staff = s.filter("Groups", "displayName eq \"staff\"", "").await.body["Resources"][0].clone();
    assert!(staff["members"][0].get("display").is_none());
    let gid = staff["id"].as_str().unwrap();
    let r = s.get(&format!("/Groups/{gid}?attributes=members.display,members.value")).await;
    assert!(r.body["members"][0]["display"].is_string(), "{}", r.body);

    // discovery
    let r = s.get("/Schemas").await;
    let ids: Vec<&str> = r.body["Resources"].as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&EXT), "memory backend stores employeeNumber");
    assert_eq!(s.post("/Schemas", json!({})).await.status, 405);
    assert_eq!(s.delete("/ServiceProviderConfig").await.status, 405);
    s.get("/Me").await.assert_error(501);
    s.get("/ResourceTypes/Nope").await.assert_error(404);

    // Bulk: references in any order, circular ones detected
    let r = s
        .post(
            "/Bulk",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
                {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"displayName": "bulk-group", "members": [{"value": "bulkId:u"}]}},
                {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "bulk-user"}},
                {"method": "PATCH", "path": "/Users/bulkId:u", "data": {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "bulk"}]}},
                {"method": "POST", "path": "/Groups", "bulkId": "c1", "data": {"displayName": "c1", "members": [{"value": "bulkId:c2"}]}},
                {"method": "POST", "path": "/Groups", "bulkId": "c2", "data": {"displayName": "c2", "members": [{"value": "bulkId:c1"}]}},
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ops = r.body["Operations"].as_array().unwrap();
    let by = |b: &str| ops.iter().find(|o| o["bulkId"] == b).unwrap().clone();
    assert_eq!(by("u")["status"], "201");
    assert_eq!(by("g")["status"], "201");
    assert_eq!(by("c1")["status"], "409");
    assert!(by("c2")["response"]["detail"].as_str().unwrap().contains("circular"));
    let g = s.filter("Groups", "displayName eq \"bulk-group\"", "").await;
    let u = s.filter("Users", "userName eq \"bulk-user\"", "").await;
    assert_eq!(member_ids(&g.body["Resources"][0]), vec![u.body["Resources"][0]["id"].as_str().unwrap().to_string()]);
    assert_eq!(u.body["Resources"][0]["title"], "bulk");
    assert_eq!(s.filter("Groups", "displayName eq \"c1\"", "").await.total(), 0);
}

// ---- auth and hostile input ----------------------------------------------------------------------

#[tokio::test]
async fn auth_and_bad_input_change_nothing() {
    let d = demo().await;
    let mut s = Scim::new(&d.running);
    let gen0 = d.directory().snapshot().unwrap().generation;

    s.token = "wrong".into();
    let r = s.get("/Users").await;
    r.assert_error(401);
    assert!(r.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let r = reqwest::get(format!("{}/Users", s.base)).await.unwrap();
    assert_eq!(r.status(), 401);
    s.token = TOKEN.into();

    let alice_before = d.backend.find_user_by_login("alice").await.unwrap().unwrap();
    let alice = alice_before.id.clone();
    // malformed JSON, wrong types, unknown attributes
    let r = s.raw(Method::POST, "/Users", Some(b"{\"userName\": ".to_vec()), &[]).await;
    r.assert_error(400);
    assert_eq!(r.scim_type(), "invalidSyntax");
    let r = s.post("/Users", json!({"userName": ["a"]})).await;
    r.assert_error(400);
    assert!(r.detail().contains("userName"));
    let r = s.post("/Users", json!({"userName": "newbie", "favouriteColour": "blue"})).await;
    r.assert_error(400);
    assert!(r.detail().contains("favouriteColour"));
    let r = s.post("/Users", json!({"userName": "newbie", "roles": [], "x509Certificates": null})).await;
    assert_eq!(r.status, 201, "empty unadvertised attributes are accepted: {}", r.body);
    let newbie = r.id();
    let r = s.post("/Users", json!({"name": {"givenName": "no login"}})).await;
    r.assert_error(400);
    let r = s.raw(Method::POST, "/Users", Some(b"{}".to_vec()), &[("content-type", "text/plain")]).await;
    r.assert_error(415);
    // a 1 MiB filter
    let huge = format!("userName eq \"{}\"", "a".repeat(1 << 20));
    let r = s.post("/Users/.search", json!({"filter": huge})).await;
    r.assert_error(400);
    assert_eq!(r.scim_type(), "invalidFilter");
    let r = s.filter("Users", &format!("{}userName eq \"a\"{}", "(".repeat(100), ")".repeat(100)), "").await;
    r.assert_error(400);
    assert_eq!(r.scim_type(), "invalidFilter");
    s.filter("Users", "userName eq", "").await.assert_error(400);
    s.filter("Users", "active gt true", "").await.assert_error(400);

    // one invalid op among valid ones: nothing applied
    let r = s
        .patch(
            &format!("/Users/{alice}"),
            json!([{"op": "replace", "path": "title", "value": "Changed"},
                   {"op": "replace", "path": "name.familyName", "value": "Changed"},
                   {"op": "replace", "path": "active", "value": "sometimes"}]),
        )
        .await;
    r.assert_error(400);
    assert!(r.detail().contains("operation 3"), "{}", r.body);
    let after = s.get(&format!("/Users/{alice}")).await.body;
    assert_eq!(after["title"], "Engineering lead");
    assert_eq!(after["name"]["familyName"], "Martin");
    assert_eq!(d.backend.find_user_by_login("alice").await.unwrap().unwrap(), alice_before);
    // a member that does not exist: 400 naming it, nothing stored
    let devs = s.filter("Groups", "displayName eq \"developers\"", "").await.body["Resources"][0].clone();
    let gp = format!("/Groups/{}", devs["id"].as_str().unwrap());
    let r = s
        .patch(
            &gp,
            json!([{"op": "add", "path": "members", "value": [{"value": newbie}, {"value": "fake-member-id"}]}]),
        )
        .await;
    r.assert_error(400);
    assert_eq!(r.scim_type(), "invalidValue");
    assert!(r.detail().contains("fake-member-id"));
    assert_eq!(member_ids(&s.get(&gp).await.body), member_ids(&devs));
    // read-only attributes
    let r = s.patch(&format!("/Users/{alice}"), json!([{"op": "replace", "path": "id", "value": "77"}])).await;
    r.assert_error(400);
    assert_eq!(r.scim_type(), "mutability");
    // Bulk over its limits
    let ops: Vec<Value> = (0..101)
        .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": {"userName": format!("bulk{i}")}}))
        .collect();
    s.post("/Bulk", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops}))
        .await
        .assert_error(413);
    let big = json!({"Operations": [{"method": "POST", "path": "/Users", "bulkId": "x", "data": {"userName": "y".repeat(3 << 20)}}]});
    s.post("/Bulk", big).await.assert_error(413);
    assert_eq!(s.filter("Users", "userName sw \"bulk\"", "").await.total(), 0);

    // only the one deliberate create reached the backend
    assert_eq!(d.directory().snapshot().unwrap().generation, gen0 + 1);
    assert!(d.backend.find_user_by_login("newbie").await.unwrap().is_some());
}

#[tokio::test]
async fn read_tokens_cannot_write_and_patch_failures_leave_dolibarr_untouched() {
    let (sim, r) = dolibarr(Version::V23).await;
    let mut s = Scim::new(&r);
    let jdoe = sim.user_id("jdoe").unwrap();
    s.token = "read-only-token".into();
    assert_eq!(s.get("/Users").await.status, 200);
    assert_eq!(s.post("/Users/.search", json!({"filter": "userName eq \"jdoe\""})).await.total(), 1);
    s.patch(&format!("/Users/{jdoe}"), json!([{"op": "replace", "path": "title", "value": "x"}]))
        .await
        .assert_error(403);
    s.delete(&format!("/Users/{jdoe}")).await.assert_error(403);
    s.token = TOKEN.into();
    let before = sim.user_field(jdoe, "lastname");
    sim.reset_counts();
    let r = s
        .patch(
            &format!("/Users/{jdoe}"),
            json!([{"op": "replace", "path": "name.familyName", "value": "Nope"},
                                                   {"op": "add", "path": "nickName", "value": "Nope"}]),
        )
        .await;
    r.assert_error(400);
    assert_eq!(sim.user_field(jdoe, "lastname"), before);
    assert_eq!(sim.total_requests(), 0, "nothing reached the ERP");
    // a backend outage is a 503 with a detail, never a false success
    sim.fail_next(10, 503);
    let r =
        s.patch(&format!("/Users/{jdoe}"), json!([{"op": "replace", "path": "title", "value": "During outage"}])).await;
    assert!(r.status == 503 || r.status == 502, "{}", r.body);
    assert!(!r.detail().is_empty());
    sim.clear_failures();
    assert_ne!(s.get(&format!("/Users/{jdoe}")).await.body["title"], "During outage");
}

#[tokio::test]
async fn group_patch_can_answer_204() {
    let d = common::start_demo_with(|c| c.scim.group_patch_no_content = true).await;
    let s = Scim::new(&d.running);
    let staff = s.filter("Groups", "displayName eq \"staff\"", "").await.body["Resources"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .patch(&format!("/Groups/{staff}"), json!([{"op": "add", "path": "members", "value": [{"value": "3"}]}]))
        .await;
    assert_eq!((r.status, &r.body), (204, &Value::Null));
    assert!(member_ids(&s.get(&format!("/Groups/{staff}")).await.body).contains(&"3".to_string()));
    let r = s.patch("/Users/3", json!([{"op": "replace", "path": "title", "value": "still 200 for users"}])).await;
    assert_eq!(r.status, 200);
}
