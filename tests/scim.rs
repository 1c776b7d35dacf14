//! SCIM 2.0 front end, end to end over HTTP: the real-client replays (Entra, Okta, authentik) against
//! the demo directory and the Dolibarr simulator (23 for groups; 22 answers 501 where it cannot act),
//! and against the DreamFactory and Foreman simulators (each step their contract cannot do fails
//! with its documented error: see `Profile` and the lists above `client_replays_against_dreamfactory`
//! and `client_replays_against_foreman`), backend faults (refused gateway credentials, 5xx,
//! timeouts), cross-protocol effects seen over LDAP, durability of externalId, and hostile input.

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
use support::dreamfactory_sim::{self as df, DreamFactorySim};
use support::foreman_sim::{self as fm, ForemanSim};

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
    let mut cfg = common::scim::dolibarr_gateway_config(&sim.url(), sim.admin_key(), state);
    cfg.scim.tokens.push(idgate::config::ScimToken {
        name: "ro".into(),
        token: idgate::config::Secret::new("read-only-token"),
        scope: idgate::config::ScimScope::Read,
    });
    cfg
}

async fn dolibarr(version: Version) -> (DolibarrSim, Running) {
    let sim = DolibarrSim::start(version).await;
    let r = idgate::app::start(dolibarr_config(&sim, &common::fresh_state_path())).await.expect("gateway starts");
    (sim, r)
}

// ---- backend profiles for the replays ----------------------------------------------------------

/// What a backend behind the replays can store. The full profile (demo, Dolibarr) expects every
/// step to succeed; every `false` below makes the step expect the backend's documented refusal
/// instead, and then carries on as a client would after fixing its mapping.
#[derive(Clone, Copy)]
struct Profile {
    /// The backend's name as it appears in 501 details.
    backend: &'static str,
    /// Groups can be created, renamed and deleted (Dolibarr 22: no).
    groups: bool,
    /// The login is the e-mail address (DreamFactory): userName and the work e-mail are one value.
    email_login: bool,
    /// `title` is stored; otherwise a non-empty title is 501 naming it.
    title: bool,
    /// `locale` is stored; otherwise a non-empty locale is 501 naming it.
    locale: bool,
    /// The enterprise extension (employeeNumber) is in /Schemas; otherwise 400 naming it.
    employee_number: bool,
    /// Shortest password the backend accepts; shorter ones are 400 invalidValue saying so.
    min_password: usize,
    /// A user may be in several groups; otherwise the second is 409 with a detail.
    multi_groups: bool,
}

impl Profile {
    const FULL: Profile = Profile {
        backend: "memory",
        groups: true,
        email_login: false,
        title: true,
        locale: true,
        employee_number: true,
        min_password: 0,
        multi_groups: true,
    };
    const DOLIBARR_22: Profile = Profile { backend: "dolibarr", groups: false, ..Profile::FULL };
    const DREAMFACTORY: Profile = Profile {
        backend: "dreamfactory",
        email_login: true,
        title: false,
        locale: false,
        employee_number: false,
        min_password: 16,
        multi_groups: false,
        ..Profile::FULL
    };
    const FOREMAN: Profile = Profile { backend: "foreman", title: false, employee_number: false, ..Profile::FULL };

    /// The userName a client would send for `name`.
    fn login(&self, name: &str) -> String {
        if self.email_login && !name.contains('@') { format!("{name}@contoso.example") } else { name.to_string() }
    }

    /// Asserts the documented refusal of an attribute the backend has no field for.
    fn assert_unstored(&self, r: &Resp, attr: &str, step: &str) {
        r.assert_error(501);
        assert!(r.detail().contains(self.backend) && r.detail().contains(attr), "{step}: {}", r.body);
    }
}

/// The `[ldap]`, `[http]` and `[scim]` sections every SCIM gateway below shares.
fn front_ends(state: &std::path::Path) -> String {
    format!(
        r#"
        [ldap]
        listen = "127.0.0.1:0"
        [[ldap.service_accounts]]
        name = "reader"
        password = "svc-pw"
        access = "read"
        [http]
        listen = "127.0.0.1:0"
        [cache]
        refresh_interval = "1h"
        full_refresh_interval = "1h"
        [scim]
        state_path = "{}"
        [[scim.tokens]]
        name = "test"
        token = "{TOKEN}"
        scope = "write"
        "#,
        state.display()
    )
}

/// idgate in front of the DreamFactory simulator; `admin_password` lets a test give a wrong one.
async fn dreamfactory(sim: &DreamFactorySim, admin_password: &str) -> Running {
    let text = format!(
        r#"{}
        [backend]
        kind = "dreamfactory"
        url = "{}"
        admin_email = "{}"
        admin_password = "{admin_password}"
        app_id = {}
        timeout = "1s"
        retries = 0
        "#,
        front_ends(&common::fresh_state_path()),
        sim.url(),
        df::ADMIN_EMAIL,
        df::APP_ID
    );
    idgate::app::start(Config::parse(&text).expect("config")).await.expect("gateway starts")
}

/// idgate in front of the Foreman simulator; `password` is the gateway account's.
async fn foreman(sim: &ForemanSim, password: &str) -> Running {
    let text = format!(
        r#"{}
        [backend]
        kind = "foreman"
        url = "{}"
        username = "admin"
        password = "{password}"
        timeout = "1s"
        retries = 0
        "#,
        front_ends(&common::fresh_state_path()),
        sim.url()
    );
    idgate::app::start(Config::parse(&text).expect("config")).await.expect("gateway starts")
}

// ---- Entra (§3.1, E1–E18) --------------------------------------------------------------------

fn entra_user(name: &str, ext: &str) -> Value {
    let mail = if name.contains('@') { name.to_string() } else { format!("{name}@contoso.example") };
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", EXT],
        "externalId": ext, "userName": name, "active": true,
        "emails": [{"primary": true, "type": "work", "value": mail}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Given Family", "familyName": "Family", "givenName": "Given"},
        "roles": [],
    })
}

/// Replays E1–E18 as far as the backend's profile allows.
async fn entra(s: &Scim, p: &Profile) {
    let groups = p.groups;
    let mut login = p.login("Test_User_E3");
    // E1, E2: liveness probes for random names: 200 with nothing.
    let r = s.filter("Users", "userName eq \"Test_User_7f3a1c0e\"", "").await;
    assert_eq!((r.status, r.total()), (200, 0), "E1 {}", r.body);
    let r = s.filter("Groups", "displayName eq \"Group_7f3a1c0e\"", "&excludedAttributes=members").await;
    assert_eq!((r.status, r.total()), (200, 0), "E2");

    // E3: create.
    let r = s.post("/Users", entra_user(&login, "0a21f0f2-8d2a-4f8e-bf98-7e0aeb8e2a9d")).await;
    assert_eq!(r.status, 201, "E3 {}", r.body);
    let uid = r.id();
    assert_eq!(r.headers["location"].to_str().unwrap(), r.body["meta"]["location"].as_str().unwrap());
    assert!(r.body.get("roles").is_none() && r.body.get("password").is_none());

    // E4: found by userName (any case), externalId, work email.
    for f in [
        format!("userName eq \"{}\"", login.to_lowercase()),
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
    let path = format!("/Users/{uid}");
    let r = s
        .patch(
            &path,
            json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "e5@contoso.example"},
                {"op": "Replace", "path": "name.familyName", "value": "Updated"},
            ]),
        )
        .await;
    assert_eq!(r.status, 200, "E5 {}", r.body);
    assert_eq!(r.body["emails"][0]["value"], "e5@contoso.example");
    assert_eq!(r.body["name"]["familyName"], "Updated");
    if p.email_login {
        // The address is the login: the user is renamed with it.
        login = "e5@contoso.example".into();
    }
    assert_eq!(r.body["userName"], login.as_str(), "E5");

    // E6: nickName cannot be stored by any backend: refused, naming it (a capitalised Add is parsed).
    let r = s.patch(&path, json!([{"op": "Add", "path": "nickName", "value": "Babs"}])).await;
    r.assert_error(400);
    assert!(r.detail().contains("nickName"), "E6 {}", r.body);
    let r = s.patch(&path, json!([{"op": "Add", "path": "title", "value": "Babs"}])).await;
    if p.title {
        assert_eq!((r.status, r.body["title"].as_str()), (200, Some("Babs")), "E6 capital Add");
    } else {
        p.assert_unstored(&r, "title", "E6");
        assert!(s.get(&path).await.body.get("title").is_none(), "E6 nothing stored");
    }

    // E7: path-less replace with dotted and URN keys.
    let mut value = json!({"displayName": "Shown Name", "name.givenName": "Newgiven", "name.familyName": "Newfamily",
                           format!("{EXT}:employeeNumber"): "E-777"});
    if !p.employee_number {
        // Not in /Schemas: refused naming it, and nothing of the request applied.
        let r = s.patch(&path, json!([{"op": "replace", "value": value}])).await;
        r.assert_error(400);
        assert!(r.detail().contains("employeeNumber"), "E7 {}", r.body);
        assert_eq!(s.get(&path).await.body["name"]["familyName"], "Updated", "E7 atomic");
        value.as_object_mut().unwrap().remove(&format!("{EXT}:employeeNumber"));
    }
    let r = s.patch(&path, json!([{"op": "replace", "value": value}])).await;
    assert_eq!(r.status, 200, "E7 {}", r.body);
    let g = s.get(&path).await.body;
    assert_eq!(g["name"]["givenName"], "Newgiven");
    assert_eq!(g["name"]["familyName"], "Newfamily");
    assert_eq!(g["displayName"], "Shown Name");
    if p.employee_number {
        assert_eq!(g[EXT]["employeeNumber"], "E-777");
    } else {
        assert!(g.get(EXT).is_none(), "{g}");
    }

    // E8: no backend has a manager field: a bare-string value is refused naming it, empty is fine.
    let r = s.patch(&path, json!([{"op": "Add", "path": format!("{EXT}:manager"), "value": uid}])).await;
    r.assert_error(400);
    assert!(r.detail().contains("manager"), "E8 {}", r.body);
    let r = s.patch(&path, json!([{"op": "Add", "path": format!("{EXT}:manager"), "value": ""}])).await;
    assert_eq!(r.status, 200, "E8 empty manager {}", r.body);

    // E9, E10: disable with "False", then with false; still found, active false.
    let r = s.patch(&path, json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    assert_eq!((r.status, &r.body["active"]), (200, &json!(false)), "E9");
    assert_eq!(s.get(&path).await.body["active"], false);
    let r = s.patch(&path, json!([{"op": "replace", "path": "active", "value": false}])).await;
    assert_eq!(r.status, 200);
    let r = s.filter("Users", &format!("userName eq \"{login}\""), "").await;
    assert_eq!((r.total(), &r.body["Resources"][0]["active"]), (1, &json!(false)), "E10");

    // E17: unknown id, duplicate userName.
    s.get("/Users/999999").await.assert_error(404);
    let r = s.post("/Users", entra_user(&login.to_lowercase(), "other")).await;
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
        let other = s.post("/Users", entra_user(&p.login("Test_User_E12b"), "x-b")).await.id();
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
        // Not in Entra's sequence: a second group for the same user (an assignment of another group).
        let second = s.post("/Groups", json!({"displayName": "Group_E12c"})).await;
        assert_eq!(second.status, 201, "{}", second.body);
        let sp = format!("/Groups/{}", second.id());
        let r = s.patch(&sp, json!([{"op": "add", "path": "members", "value": [{"value": uid}]}])).await;
        if p.multi_groups {
            assert_eq!((r.status, member_ids(&r.body)), (200, vec![uid.clone()]), "second group {}", r.body);
        } else {
            // One role per user per app: refused, and neither group changed.
            r.assert_error(409);
            assert!(!r.detail().is_empty(), "{}", r.body);
            assert!(member_ids(&s.get(&sp).await.body).is_empty());
            assert_eq!(member_ids(&s.get(&gp).await.body), want);
        }
        assert_eq!(s.delete(&sp).await.status, 204);
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
    assert_eq!(s.delete(&path).await.status, 204, "E18");
    s.get(&path).await.assert_error(404);
    s.delete(&path).await.assert_error(404);
}

// ---- Okta (§3.2, O1–O9) ----------------------------------------------------------------------

/// Replays O1–O9. Dolibarr refuses `@` in logins, so `login` is the backend's acceptable form.
async fn okta(s: &Scim, p: &Profile, login: &str) {
    let groups = p.groups;
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
    let mut body = body;
    if !p.locale {
        p.assert_unstored(&s.post("/Users", body.clone()).await, "locale", "O2 locale");
        body.as_object_mut().unwrap().remove("locale");
    }
    if p.min_password > "1mz050nq-Okta".len() {
        let r = s.post("/Users", body.clone()).await;
        r.assert_error(400);
        assert_eq!(r.scim_type(), "invalidValue");
        assert!(r.detail().contains(&p.min_password.to_string()), "O2 password {}", r.body);
        assert!(!r.detail().contains("1mz050nq"), "the password is not echoed");
        body["password"] = json!("1mz050nq-Okta-long-enough");
    }
    let r = s.post("/Users", body.clone()).await;
    assert_eq!(r.status, 201, "O2 {}", r.body);
    if p.locale {
        assert_eq!(r.body["locale"], "en-US");
    }
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
    if !p.title {
        p.assert_unstored(&s.put(&format!("/Users/{uid}"), put.clone()).await, "title", "O4");
        assert_eq!(s.get(&format!("/Users/{uid}")).await.body["name"]["familyName"], "User", "O4 atomic");
        put.as_object_mut().unwrap().remove("title");
    }
    let r = s.put(&format!("/Users/{uid}"), put).await;
    assert_eq!(r.status, 200, "O4 {}", r.body);
    let title = if p.title { Some("Engineer") } else { None };
    assert_eq!((r.body["name"]["familyName"].as_str(), r.body["title"].as_str()), (Some("Replaced"), title));
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
        let second =
            s.post("/Users", json!({"userName": p.login("okta.second"), "name": {"familyName": "Second"}})).await.id();
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

async fn authentik(s: &Scim, p: &Profile) {
    let groups = p.groups;
    // With the e-mail as login (DreamFactory) the client maps userName to the address.
    let login = if p.email_login { "ak@example.com" } else { "ak-user" };
    // A1
    let r = s.get("/ServiceProviderConfig").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["patch"]["supported"], true);
    let max_ops = r.body["bulk"]["maxOperations"].as_u64().expect("bulk.maxOperations");
    assert!(max_ops >= 1);
    assert!(r.body["filter"]["maxResults"].as_u64().is_some());
    // A2
    let r = s.post("/Users", json!({"userName": login, "externalId": "ak-uid-1", "name": {"givenName": "A", "familyName": "K"},
                                     "emails": [{"value": "ak@example.com", "type": "work", "primary": true}], "active": true}))
        .await;
    assert_eq!(r.status, 201, "A2 {}", r.body);
    let uid = r.id();
    let r = s
        .put(
            &format!("/Users/{uid}"),
            json!({"userName": login, "externalId": "ak-uid-1",
                                                     "name": {"givenName": "A2", "familyName": "K"}, "active": true}),
        )
        .await;
    assert_eq!(r.status, 200, "A2 PUT {}", r.body);
    assert_eq!(r.body["name"]["givenName"], "A2");
    if p.email_login {
        // The address is the login: it cannot be cleared, and the PUT kept it.
        assert_eq!(r.body["emails"][0]["value"], login, "{}", r.body);
    } else {
        assert!(r.body.get("emails").is_none(), "PUT clears what it does not send");
    }
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
    entra(&s, &Profile::FULL).await;
    okta(&s, &Profile::FULL, "test.user@okta.local").await;
    authentik(&s, &Profile::FULL).await;
}

#[tokio::test]
async fn client_replays_against_dolibarr_23() {
    let (_sim, r) = dolibarr(Version::V23).await;
    let s = Scim::new(&r);
    // Dolibarr refuses `@` in logins: a UPN becomes its local part, SCIM keeps the name given
    // (tests/scim_provisioning.rs goes further).
    let e = s.post("/Users", json!({"userName": "test.user@okta.local"})).await;
    assert_eq!((e.status, e.body["userName"].as_str()), (201, Some("test.user@okta.local")), "{}", e.body);
    assert_eq!(s.delete(&format!("/Users/{}", e.id())).await.status, 204);
    let p = Profile { backend: "dolibarr", ..Profile::FULL };
    entra(&s, &p).await;
    okta(&s, &p, "test.user").await;
    authentik(&s, &p).await;
}

/// The replays against DreamFactory (simulated). Steps that behave differently, and why (README,
/// "Backends at a glance"):
/// - Logins are e-mail addresses: every userName is an address; E5's new work e-mail renames the
///   user (E10 and E17 use the new login); authentik's PUT without `emails` keeps the address.
/// - No title or locale field: E6 (Add title), O2 (locale en-US) and O4 (PUT with title) are 501
///   naming the field and `dreamfactory`, then resent without it. No employee number: the
///   enterprise extension is not in /Schemas, so E7 is 400 naming employeeNumber, nothing applied,
///   then resent without it.
/// - Passwords have at least 16 characters: Okta's 13-character password in O2 is 400
///   invalidValue saying so, and is not echoed; resent with a longer one.
/// - One role (group) per user per app: the added step putting the E3 user in a second group is
///   409 with a detail, both groups unchanged.
/// - No externalId field: the gateway keeps it, so E4's and A2's externalId steps pass unchanged.
#[tokio::test]
async fn client_replays_against_dreamfactory() {
    let sim = DreamFactorySim::start().await;
    let r = dreamfactory(&sim, df::ADMIN_PASSWORD).await;
    let s = Scim::new(&r);
    let p = Profile::DREAMFACTORY;
    // A login that is not an address is the backend's refusal, with its reason.
    let e = s.post("/Users", json!({"userName": "test.user"})).await;
    e.assert_error(400);
    assert_eq!(e.scim_type(), "invalidValue");
    assert_eq!(sim.user_id("test.user"), None);
    entra(&s, &p).await;
    okta(&s, &p, "test.user@okta.local").await;
    authentik(&s, &p).await;
    // The schemas say what DreamFactory stores.
    let ids = s.get("/Schemas").await.body["Resources"].clone();
    assert!(!ids.as_array().unwrap().iter().any(|x| x["id"] == EXT), "no employee number: {ids}");
    // Everything the replays created was deleted from DreamFactory too.
    for login in ["e5@contoso.example", "test.user@okta.local", "ak@example.com"] {
        assert_eq!(sim.user_id(login), None, "{login}");
    }
    assert_eq!(sim.role_id("Group_E16"), None);
    r.shutdown().await;
}

/// The replays against Foreman (simulated). Steps that behave differently, and why (README,
/// "Backends at a glance"):
/// - No title field: E6 (Add title) and O4 (PUT with title) are 501 naming the field and
///   `foreman`, then resent without it. No employee number: the enterprise extension is not in
///   /Schemas, so E7 is 400 naming employeeNumber, nothing applied, then resent without it.
/// - No phone or mobile number, no group description: no replay step sends one (nothing differs).
/// - Logins and group names share one namespace: not met by the replays' names; a group named
///   like an existing login is 409 naming the clash (checked after the replays).
/// - No externalId field: the gateway keeps it, so E4's and A2's externalId steps pass unchanged.
#[tokio::test]
async fn client_replays_against_foreman() {
    let sim = ForemanSim::start().await;
    let r = foreman(&sim, fm::ADMIN_PASSWORD).await;
    let s = Scim::new(&r);
    let p = Profile::FOREMAN;
    entra(&s, &p).await;
    okta(&s, &p, "test.user@okta.local").await;
    authentik(&s, &p).await;
    let r2 = s.post("/Groups", json!({"displayName": "jdoe"})).await;
    r2.assert_error(409);
    assert!(r2.detail().contains("namespace"), "{}", r2.body);
    assert_eq!(s.filter("Groups", "displayName eq \"jdoe\"", "").await.total(), 0);
    let ids = s.get("/Schemas").await.body["Resources"].clone();
    assert!(!ids.as_array().unwrap().iter().any(|x| x["id"] == EXT), "no employee number: {ids}");
    for login in ["Test_User_E3", "test.user@okta.local", "ak-user"] {
        assert_eq!(sim.user_id(login), None, "{login}");
    }
    r.shutdown().await;
}

#[tokio::test]
async fn dolibarr_22_answers_501_where_it_cannot_act() {
    let (sim, r) = dolibarr(Version::V22).await;
    let s = Scim::new(&r);
    entra(&s, &Profile::DOLIBARR_22).await;
    okta(&s, &Profile::DOLIBARR_22, "test.user").await;
    authentik(&s, &Profile::DOLIBARR_22).await;

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

// ---- backend faults seen through SCIM (and LDAP) -------------------------------------------------

async fn readyz(r: &Running) -> (u16, Value) {
    let resp = reqwest::get(format!("http://{}/readyz", r.http_addr)).await.expect("readyz");
    (resp.status().as_u16(), resp.json().await.expect("readyz body"))
}

async fn bind_rc(r: &Running, dn: &str, password: &str) -> u32 {
    let mut l = common::connect(&format!("ldap://{}", r.ldap_addr)).await;
    common::try_bind(&mut l, dn, password).await.rc
}

/// A SCIM request the backend could not serve: an error for the gateway's side (never a success,
/// never a 401 the client would take for its own token), with a detail.
fn assert_upstream_error(r: &Resp, allowed: &[u16], what: &str) {
    assert!(allowed.contains(&r.status), "{what}: {} {}", r.status, r.body);
    r.assert_error(r.status);
    assert!(!r.detail().is_empty(), "{what}: {}", r.body);
}

/// The configuration problem as health shows it: the gateway's credentials, never the secret.
fn assert_credentials_problem(body: &Value, secret: &str) {
    let err = body["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("gateway's credentials"), "{body}");
    assert!(!err.contains(secret), "the secret never appears: {err}");
}

#[tokio::test]
async fn dreamfactory_refusing_the_admin_login_is_a_configuration_problem() {
    let sim = DreamFactorySim::start().await;
    let jane_dn = format!("uid={},ou=people,dc=example,dc=com", df::JANE_EMAIL);

    // At start: the administrator's login is refused.
    let r = dreamfactory(&sim, "Not-The-Admin-Password").await;
    let (status, body) = readyz(&r).await;
    assert_eq!(status, 503, "{body}");
    assert_credentials_problem(&body, "Not-The-Admin-Password");
    assert_eq!(bind_rc(&r, &jane_dn, df::JANE_PASSWORD).await, 52, "unavailable, not a wrong password");
    let s = Scim::new(&r);
    assert_upstream_error(&s.get("/Users").await, &[502, 503], "GET");
    let p = s.post("/Users", json!({"userName": "new.person@example.com"})).await;
    assert_upstream_error(&p, &[502, 503], "POST");
    assert_eq!(sim.user_id("new.person@example.com"), None);
    r.shutdown().await;

    // Later: the session expires and the new login is refused (the admin's password was changed).
    let r = dreamfactory(&sim, df::ADMIN_PASSWORD).await;
    assert_eq!(readyz(&r).await.0, 200);
    let s = Scim::new(&r);
    let jane = s.get("/Users/u7").await.body;
    assert_eq!(jane["name"]["familyName"], "Doe");
    let admin = sim.user_id(df::ADMIN_EMAIL).expect("admin account");
    sim.set_password(admin, Some("Changed-Admin-Password-1"));
    sim.expire_sessions();
    let p = s.patch("/Users/u7", json!([{"op": "replace", "path": "name.familyName", "value": "Nope"}])).await;
    assert_upstream_error(&p, &[502], "PATCH with a refused re-login");
    assert!(p.detail().contains("gateway's credentials"), "{}", p.body);
    assert_eq!(s.get("/Users/u7").await.body, jane, "nothing cached as changed");
    assert_eq!(sim.user_field(7, "last_name"), Some(json!("Doe")));
    assert!(r.directory.refresh_full().await.is_err());
    let (status, body) = readyz(&r).await;
    assert_eq!(status, 200, "the fresh snapshot still serves reads: {body}");
    assert_credentials_problem(&body, "Changed-Admin-Password-1");
    // End users log in on their own sessions: never a wrong password because of the gateway's.
    let rc = bind_rc(&r, &jane_dn, df::JANE_PASSWORD).await;
    assert!(rc == 0 || rc == 52, "rc {rc}");
    r.shutdown().await;
}

#[tokio::test]
async fn foreman_refusing_the_gateway_account_is_a_configuration_problem() {
    let sim = ForemanSim::start().await;
    let jdoe_dn = "uid=jdoe,ou=people,dc=example,dc=com";

    // At start: the account's Basic auth is refused.
    let r = foreman(&sim, "Wrong-Password-01").await;
    let (status, body) = readyz(&r).await;
    assert_eq!(status, 503, "{body}");
    assert_credentials_problem(&body, "Wrong-Password-01");
    assert_eq!(bind_rc(&r, jdoe_dn, fm::JDOE_PASSWORD).await, 52, "unavailable, not a wrong password");
    let s = Scim::new(&r);
    assert_upstream_error(&s.get("/Users").await, &[502, 503], "GET");
    let p = s.post("/Users", json!({"userName": "newbie", "emails": [{"value": "newbie@example.com"}]})).await;
    assert_upstream_error(&p, &[502, 503], "POST");
    assert_eq!(sim.user_id("newbie"), None);
    r.shutdown().await;

    // Later: the account's password is changed in Foreman.
    let r = foreman(&sim, fm::ADMIN_PASSWORD).await;
    assert_eq!(readyz(&r).await.0, 200);
    let s = Scim::new(&r);
    let ckent = s.get("/Users/10").await.body;
    assert_eq!(ckent["userName"], "ckent");
    let admin = sim.user_id("admin").expect("gateway account");
    sim.modify_user(admin, |u| u.password = Some("Changed-Password-01".into()));
    let p = s.patch("/Users/10", json!([{"op": "replace", "path": "name.familyName", "value": "Nope"}])).await;
    assert_upstream_error(&p, &[502], "PATCH with refused credentials");
    assert!(p.detail().contains("gateway's credentials"), "{}", p.body);
    assert_eq!(s.get("/Users/10").await.body, ckent, "nothing cached as changed");
    assert_ne!(sim.user(10).unwrap().lastname.as_deref(), Some("Nope"));
    assert!(r.directory.refresh_full().await.is_err());
    let (status, body) = readyz(&r).await;
    assert_eq!(status, 200, "the fresh snapshot still serves reads: {body}");
    assert_credentials_problem(&body, "Changed-Password-01");
    // jdoe's own credentials still work: never a wrong password because of the gateway's.
    let rc = bind_rc(&r, jdoe_dn, fm::JDOE_PASSWORD).await;
    assert!(rc == 0 || rc == 52, "rc {rc}");
    r.shutdown().await;
}

#[tokio::test]
async fn dreamfactory_outages_during_scim_writes_change_nothing() {
    let sim = DreamFactorySim::start().await;
    let r = dreamfactory(&sim, df::ADMIN_PASSWORD).await;
    let s = Scim::new(&r);
    let jane = s.get("/Users/u7").await.body;
    let found = s.filter("Groups", "displayName eq \"staff\"", "").await.body["Resources"][0].clone();
    let gp = format!("/Groups/{}", found["id"].as_str().unwrap());
    let staff = s.get(&gp).await.body;
    assert_eq!(member_ids(&staff), ["u7", "u8"], "{staff}");

    sim.fail_route("POST /system/user", 500);
    let p = s.post("/Users", json!({"userName": "outage@example.com", "name": {"familyName": "Out"}})).await;
    assert_upstream_error(&p, &[502, 503], "POST during a 500");
    assert_eq!(s.filter("Users", "userName eq \"outage@example.com\"", "").await.total(), 0);
    assert_eq!(sim.user_id("outage@example.com"), None);

    sim.fail_route("PATCH /system/user/{id}", 503);
    let p = s.patch("/Users/u7", json!([{"op": "replace", "path": "name.familyName", "value": "Nope"}])).await;
    assert_upstream_error(&p, &[502, 503], "PATCH during a 503");
    assert_eq!(s.get("/Users/u7").await.body, jane);
    assert_eq!(sim.user_field(7, "last_name"), Some(json!("Doe")));

    sim.fail_next(1, 503);
    let p = s.patch(&gp, json!([{"op": "add", "path": "members", "value": [{"value": "u2"}]}])).await;
    assert_upstream_error(&p, &[502, 503], "group PATCH during a 503");
    assert_eq!(s.get(&gp).await.body, staff);
    assert_eq!(sim.role_of(2, df::APP_ID), None);

    sim.set_delay(std::time::Duration::from_millis(1500));
    let p = s.patch("/Users/u7", json!([{"op": "replace", "path": "name.familyName", "value": "Slow"}])).await;
    assert_upstream_error(&p, &[504], "PATCH timing out");
    let p = s.post("/Users", json!({"userName": "slow@example.com"})).await;
    assert_upstream_error(&p, &[504], "POST timing out");
    sim.set_delay(std::time::Duration::ZERO);
    assert_eq!(s.get("/Users/u7").await.body, jane, "a timed-out write is not cached as done");
    assert_eq!(s.filter("Users", "userName eq \"slow@example.com\"", "").await.total(), 0);

    // Confirmed writes show at once.
    let p = s.patch("/Users/u7", json!([{"op": "replace", "path": "name.familyName", "value": "Done"}])).await;
    assert_eq!((p.status, p.body["name"]["familyName"].as_str()), (200, Some("Done")), "{}", p.body);
    r.shutdown().await;
}

#[tokio::test]
async fn foreman_outages_during_scim_writes_change_nothing() {
    let sim = ForemanSim::start().await;
    let r = foreman(&sim, fm::ADMIN_PASSWORD).await;
    let s = Scim::new(&r);
    let ckent = s.get("/Users/10").await.body;
    let ops = s.filter("Groups", "displayName eq \"ops\"", "").await.body["Resources"][0].clone();
    let gp = format!("/Groups/{}", ops["id"].as_str().unwrap());
    let ops = s.get(&gp).await.body;
    assert!(!member_ids(&ops).contains(&"10".to_string()));

    sim.fail_route("POST /users", 500);
    let body =
        json!({"userName": "outage", "emails": [{"value": "outage@example.com"}], "name": {"familyName": "Out"}});
    let p = s.post("/Users", body).await;
    assert_upstream_error(&p, &[502, 503], "POST during a 500");
    assert_eq!(s.filter("Users", "userName eq \"outage\"", "").await.total(), 0);
    assert_eq!(sim.user_id("outage"), None);

    sim.fail_route("PUT /users/{id}", 503);
    let p = s.patch("/Users/10", json!([{"op": "replace", "path": "name.familyName", "value": "Nope"}])).await;
    assert_upstream_error(&p, &[502, 503], "PATCH during a 503");
    assert_eq!(s.get("/Users/10").await.body, ckent);
    assert_ne!(sim.user(10).unwrap().lastname.as_deref(), Some("Nope"));

    sim.fail_route("PUT /usergroups/{id}", 500);
    let p = s.patch(&gp, json!([{"op": "add", "path": "members", "value": [{"value": "10"}]}])).await;
    assert_upstream_error(&p, &[502, 503], "group PATCH during a 500");
    assert_eq!(s.get(&gp).await.body, ops);

    sim.set_delay(std::time::Duration::from_millis(1500));
    let p = s.patch("/Users/10", json!([{"op": "replace", "path": "name.familyName", "value": "Slow"}])).await;
    assert_upstream_error(&p, &[504], "PATCH timing out");
    let p = s.post("/Users", json!({"userName": "slow", "emails": [{"value": "slow@example.com"}]})).await;
    assert_upstream_error(&p, &[504], "POST timing out");
    sim.set_delay(std::time::Duration::ZERO);
    assert_eq!(s.get("/Users/10").await.body, ckent, "a timed-out write is not cached as done");
    assert_eq!(s.filter("Users", "userName eq \"slow\"", "").await.total(), 0);

    let p = s.patch("/Users/10", json!([{"op": "replace", "path": "name.familyName", "value": "Done"}])).await;
    assert_eq!((p.status, p.body["name"]["familyName"].as_str()), (200, Some("Done")), "{}", p.body);
    r.shutdown().await;
}
