//! Replays every recorded Dolibarr exchange against the simulator, from the state the recording
//! describes, and checks status, content type and body (volatile values aside).

mod support;

use std::path::Path;
use support::json_diff::{Rules, diff};

use serde_json::{Value, json};
use support::dolibarr_sim::{
    ADMIN_KEY, ADMIN_PASSWORD, DolibarrSim, ExtraType, GATEWAY_ID, GATEWAY_KEY, GATEWAY_PASSWORD, NORIGHTS_KEY,
    READER_KEY, Version,
};

/// Keys whose values change from run to run (clocks, tokens, debug traces).
const VOLATILE: &[&str] = &[
    "datec",
    "datem",
    "tms",
    "datelastpassvalidation",
    "flagdelsessionsbefore",
    "token",
    "timestamp_now_utc",
    "date_tz",
    "debug",
];

/// The second recording round (contract §12, files with a `title`): superadmin 1, the gateway's
/// admin user idgate 2 (whose key was used), alice 3, whk_alpha 99; user extra fields costcenter
/// (varchar), badgeno (int), contractend (date).
fn prepare_round2(sim: &DolibarrSim, name: &str, recorded: &Value) {
    for id in 1..=20 {
        sim.delete_user(id);
    }
    sim.add_user_at(
        1,
        json!({"login": "superadmin", "lastname": "SuperAdmin", "entity": "0", "admin": "1", "email": "",
               "datelastlogin": 1796084010, "iplastlogin": "127.0.0.1"}),
        Some(ADMIN_PASSWORD),
    );
    sim.set_api_key(1, Some(ADMIN_KEY));
    sim.add_user_at(2, json!({"login": "idgate", "admin": "1", "email": "idgate@example.com"}), Some(GATEWAY_PASSWORD));
    sim.set_api_key(2, Some(GATEWAY_KEY));
    sim.add_user_at(3, json!({"login": "alice", "email": "alice@example.com"}), None);
    // The recorder changed whk_alpha's job between some of the calls.
    let job = recorded["response"]["body"]["job"].as_str().unwrap_or("readback 2");
    sim.add_user_at(
        99,
        json!({"login": "whk_alpha", "firstname": "Alpha", "lastname": "Webhook", "email": "whk_alpha@example.com",
               "job": job}),
        None,
    );
    sim.define_extra_field("costcenter", ExtraType::Varchar);
    sim.define_extra_field("badgeno", ExtraType::Int);
    sim.define_extra_field("contractend", ExtraType::Date);
    // Row states before each call; the default is the full row most calls were made with.
    let row = |cc: Value, badge: Value, end: Value| {
        sim.set_extra(99, "costcenter", cc);
        sim.set_extra(99, "badgeno", badge);
        sim.set_extra(99, "contractend", end);
    };
    match name {
        "users-extrafields-update" => row(Value::Null, Value::Null, Value::Null),
        "users-extrafields-update-get-after" | "users-extrafields-update-int-date" => {
            row(json!("CC-100"), Value::Null, Value::Null)
        }
        _ => row(json!("CC-100"), json!(4711), json!("2027-06-30")),
    }
    match name {
        "users-update-fk_user-get-after"
        | "users-list-filter-fk_user"
        | "users-update-fk_user-clear-null"
        | "users-update-fk_user-clear-zero"
        | "users-update-fk_user-clear-empty" => sim.set_user_field(99, "fk_user", json!("3")),
        // Its supervisor 103 was deleted: the id stays behind.
        "users-get-fk_user-dangling" => sim.set_user_field(99, "fk_user", json!("103")),
        _ => {}
    }
}

/// Brings the simulator to the state the recording was made in.
fn prepare(sim: &DolibarrSim, name: &str, recorded: &Value) {
    if recorded.get("title").is_some() {
        return prepare_round2(sim, name, recorded);
    }
    // The first round knew no gateway account: its data is the seed without idgate.
    sim.delete_user(GATEWAY_ID);
    sim.set_next_user_id(GATEWAY_ID);
    let jdoe_after_update = || {
        sim.set_user_field(2, "email", json!("john.doe@example.com"));
        sim.set_user_field(2, "job", json!("Senior Engineer"));
        sim.set_user_field(2, "office_phone", json!("+33 1 00 00 00 99"));
    };
    match name {
        "prodmode-users-get-by-id-not-found" => sim.set_prod_mode(true),
        "login-disabled-user" => sim.disable_user(2),
        "login-get-ok" => sim.set_api_key(7, None),
        "login-no-token-without-self-right" => sim.set_password(2, Some("Jdoe-Secret-2")),
        "login-html-password-rejected" => sim.set_password(2, Some("JdoeSecret-3")),
        "users-create-full"
        | "users-create-minimal"
        | "users-create-password-field-ignored"
        | "users-create-statut-ignored" => {
            // The row the recording created did not exist yet, nor any later one.
            let next = recorded["response"]["body"].as_u64().expect("created id");
            for id in next..20 {
                sim.delete_user(id);
            }
            sim.set_next_user_id(next);
        }
        "users-list-delta-since" => {
            sim.set_user_modified(2, 1795407481);
            sim.set_user_modified(8, 1795407481);
        }
        "users-update-deactivate" | "groups-get-load-members" => jdoe_after_update(),
        "users-setpassword-ok" => sim.set_allow_password_reset(true),
        "users-delete-not-found" => sim.delete_user(3),
        "users-set-group-again" => sim.set_member(1, 2, true),
        "users-set-group" => sim.set_member(1, 2, false),
        _ => {}
    }
}

fn key_for(fx: &Value) -> &'static str {
    let note = fx["note"].as_str().unwrap_or("");
    if note.contains("Key of \"reader\"") {
        READER_KEY
    } else if note.contains("Key of \"norights\"") {
        NORIGHTS_KEY
    } else if fx.get("title").is_some() {
        GATEWAY_KEY
    } else {
        ADMIN_KEY
    }
}

async fn replay(path: &Path) -> Result<(), String> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let fx: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let note = fx["note"].as_str().unwrap_or("");
    let trimmed = note.contains("trimmed");
    let sim = DolibarrSim::start(Version::V22).await;
    prepare(&sim, &name, &fx);

    let req = &fx["request"];
    let mut route = req["path"].as_str().unwrap_or("/").to_string();
    if !route.starts_with("/api/index.php") {
        route = format!("/api/index.php{route}");
    }
    let mut url = url::Url::parse(&format!("{}{route}", sim.url())).map_err(|e| e.to_string())?;
    if let Some(q) = req["query"].as_object().filter(|q| !q.is_empty()) {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in q {
            pairs.append_pair(k, v.as_str().unwrap_or(&v.to_string()));
        }
    }
    let method =
        reqwest::Method::from_bytes(req["method"].as_str().unwrap_or("GET").as_bytes()).map_err(|e| e.to_string())?;
    let client = reqwest::Client::new();
    let mut rb = client.request(method, url);
    if let Some(h) = req["headers"].as_object() {
        for (k, v) in h {
            let v = v.as_str().unwrap_or_default().replace("<DOLAPIKEY>", key_for(&fx));
            rb = rb.header(k.as_str(), v);
        }
    }
    if !req["body"].is_null() {
        rb = rb.body(serde_json::to_vec(&req["body"]).map_err(|e| e.to_string())?);
    }
    let resp = rb.send().await.map_err(|e| format!("{name}: {e}"))?;
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = resp.text().await.map_err(|e| e.to_string())?;

    let want = &fx["response"];
    let mut errors = Vec::new();
    if Some(u64::from(status)) != want["status"].as_u64() {
        errors.push(format!("status: recorded {}, answered {status}", want["status"]));
    }
    let want_ct = want["headers"]["content-type"].as_str().unwrap_or("");
    let family = |c: &str| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if family(want_ct) != family(&ct) {
        errors.push(format!("content type: recorded {want_ct}, answered {ct}"));
    }
    if family(want_ct) == "application/json" {
        match serde_json::from_str::<Value>(&body) {
            Ok(actual) => {
                errors.extend(diff(&want["body"], &actual, &Rules { skip: VOLATILE, trimmed, ..Rules::default() }))
            }
            Err(e) => errors.push(format!("body is not JSON: {e}")),
        }
    } else {
        let rec = want["body"].as_str().unwrap_or("");
        let head = |s: &str| s.chars().take(60).collect::<String>();
        if head(rec) != head(&body) {
            errors.push(format!("text body differs: {:?} vs {:?}", head(rec), head(&body)));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.truncate(15);
        Err(format!("{name}:\n  {}", errors.join("\n  ")))
    }
}

#[tokio::test]
async fn dolibarr_every_recorded_exchange_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dolibarr");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 102, "expected every recorded fixture, found {}", files.len());
    let mut failures = Vec::new();
    let mut replayed = 0;
    for f in &files {
        replayed += 1;
        if let Err(e) = replay(f).await {
            failures.push(e);
        }
    }
    assert_eq!(replayed, files.len());
    assert!(failures.is_empty(), "{} of {} fixtures differ:\n{}", failures.len(), files.len(), failures.join("\n"));
}

async fn call(sim: &DolibarrSim, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .request(method, format!("{}/api/index.php{path}", sim.url()))
        .header("DOLAPIKEY", sim.admin_key());
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.expect("request");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn dolibarr_v23_group_writes_and_member_removal() {
    let sim = DolibarrSim::start(Version::V23).await;
    let (s, id) = call(&sim, reqwest::Method::POST, "/users/groups", Some(json!({"name": "ops"}))).await;
    assert_eq!(s, 200);
    let id = id.as_u64().expect("bare id");
    assert_eq!(sim.group_name(id).as_deref(), Some("ops"));

    let (s, body) = call(&sim, reqwest::Method::POST, "/users/groups", Some(json!({}))).await;
    assert_eq!(s, 500);
    assert_eq!(body["error"]["1"], json!("Field 'Name' is required"));
    let (s, body) = call(&sim, reqwest::Method::POST, "/users/groups", Some(json!({"id": 5, "name": "x"}))).await;
    assert_eq!((s, body["error"]["message"].as_str()), (400, Some("Bad Request: Creating with id field is forbidden")));

    let (s, g) = call(&sim, reqwest::Method::PUT, &format!("/users/groups/{id}"), Some(json!({"name": "ops2"}))).await;
    assert_eq!((s, g["name"].as_str()), (200, Some("ops2")));
    let (s, _) = call(&sim, reqwest::Method::PUT, "/users/groups/0", Some(json!({"name": "z"}))).await;
    assert_eq!(s, 400);
    let (s, body) = call(&sim, reqwest::Method::GET, "/users/groups/0", None).await;
    assert_eq!((s, body["error"]["message"].as_str()), (400, Some("Bad Request: No usergroup with id=0 can exist")));
    let (s, _) = call(&sim, reqwest::Method::GET, "/users/0", None).await;
    assert_eq!(s, 400);

    let (s, _) = call(&sim, reqwest::Method::DELETE, "/users/2/setGroup/1", None).await;
    assert_eq!(s, 200);
    assert_eq!(sim.group_members(1), Some(vec![7]));

    let (s, _) = call(&sim, reqwest::Method::DELETE, &format!("/users/groups/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(sim.group_name(id), None);
}

/// What the recordings' remarks state beyond the stored exchanges (contract §12.2, §12.3, §12.5).
#[tokio::test]
async fn dolibarr_remarks_on_supervisor_extra_fields_and_system_accounts() {
    use reqwest::Method;
    for version in [Version::V22, Version::V23] {
        let sim = DolibarrSim::start(version).await;
        // No extra field defined: `[]`.
        let (_, u) = call(&sim, Method::GET, "/users/2", None).await;
        assert_eq!(u["array_options"], json!([]));
        // The superadmin is entity "0" (a string), the gateway's admin user entity 0 (an int).
        let (_, list) = call(&sim, Method::GET, "/users?user_ids=1,10,2&properties=id,entity,admin", None).await;
        assert_eq!(
            list,
            json!([{"id": "1", "entity": "0", "admin": "1"}, {"id": "2", "entity": "1", "admin": "0"},
                   {"id": "10", "entity": 0, "admin": "1"}])
        );
        let (_, only) = call(&sim, Method::GET, "/users?sqlfilters=(t.entity:=:0)&properties=id", None).await;
        assert_eq!(only, json!([{"id": "1"}]), "the filter sees the database column");

        // Supervisor: stored as given without existence check, every value <= 0 clears it.
        for (sent, stored) in [
            (json!(7), json!("7")),
            (json!(2), json!("2")),
            (json!(-1), Value::Null),
            (json!("4"), json!("4")),
            (json!("0"), Value::Null),
            (json!(99999), json!("99999")),
            (json!(""), Value::Null),
        ] {
            let (s, u) = call(&sim, Method::PUT, "/users/2", Some(json!({"fk_user": sent.clone()}))).await;
            assert_eq!((s, &u["fk_user"]), (200, &stored), "fk_user {sent}");
        }
        call(&sim, Method::PUT, "/users/2", Some(json!({"fk_user": 3}))).await;
        call(&sim, Method::PUT, "/users/4", Some(json!({"fk_user": 3}))).await;
        let (_, subs) = call(&sim, Method::GET, "/users?sqlfilters=(t.fk_user:=:3)&properties=id", None).await;
        assert_eq!(subs, json!([{"id": "2"}, {"id": "4"}]));
        let (s, _) = call(&sim, Method::DELETE, "/users/3", None).await;
        assert_eq!(s, 200);
        let (_, u) = call(&sim, Method::GET, "/users/2", None).await;
        assert_eq!(u["fk_user"], json!("3"), "the dead supervisor's id stays");

        // Extra fields: all null without a row, merge on PUT, dates in two formats.
        sim.define_extra_field("costcenter", ExtraType::Varchar);
        sim.define_extra_field("badgeno", ExtraType::Int);
        sim.define_extra_field("contractend", ExtraType::Date);
        sim.define_extra_field("remote", ExtraType::Boolean);
        let (_, u) = call(&sim, Method::GET, "/users/2", None).await;
        assert_eq!(
            u["array_options"],
            json!({"options_costcenter": null, "options_badgeno": null, "options_contractend": null, "options_remote": null})
        );
        let put = |b: Value| call(&sim, Method::PUT, "/users/2", Some(json!({"array_options": b})));
        let (s, u) = put(json!({"options_contractend": 1830211200, "remote": true})).await;
        assert_eq!(s, 200);
        assert_eq!(
            u["array_options"],
            json!({"options_costcenter": null, "options_badgeno": null, "options_contractend": 1830211200, "options_remote": "1"})
        );
        assert_eq!(sim.extra(2, "contractend"), Some(json!("2027-12-31")));
        let (_, u) = put(json!({"options_badgeno": "42", "options_contractend": "30/06/2027"})).await;
        assert_eq!(u["array_options"]["options_contractend"], json!(""), "other date formats become NULL");
        assert_eq!(u["array_options"]["options_badgeno"], json!("42"));
        // A bad int fails the whole PUT with a bare 500 and stores nothing, other fields included.
        let (s, body) = call(
            &sim,
            Method::PUT,
            "/users/2",
            Some(json!({"job": "changed", "array_options": {"options_costcenter": "X", "options_badgeno": "abc"}})),
        )
        .await;
        assert_eq!((s, body["error"]["message"].as_str()), (500, Some("Internal Server Error")));
        assert_eq!(sim.extra(2, "badgeno"), Some(json!(42)));
        assert_eq!(sim.extra(2, "costcenter"), Some(Value::Null));
        assert_ne!(sim.user_field(2, "job"), Some(json!("changed")));
        let (_, found) =
            call(&sim, Method::GET, "/users?sqlfilters=(ef.badgeno:=:42) and (remote:=:1)&properties=id", None).await;
        assert_eq!(found, json!([{"id": "2"}]));
    }
}
