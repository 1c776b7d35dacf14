//! A small SCIM 2.0 client for the integration tests: each `Scim` has its own `reqwest::Client`
//! (so its own connection), sends the demo's bearer token, and bounds every call with `WAIT`.
//! Transport failures and timeouts come back as readable `Err` strings from the `try_` methods, so
//! concurrent tests can report them instead of panicking inside a spawned task.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::WAIT;

/// The write token of `config/demo.toml` (and of the SCIM test gateways).
pub const TOKEN: &str = "demo-token";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A SCIM answer: status, headers and the JSON body (`Null` when empty, a string when not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn scim_type(&self) -> &str {
        self.body["scimType"].as_str().unwrap_or("")
    }
    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or("")
    }
    pub fn total(&self) -> u64 {
        self.body["totalResults"].as_u64().unwrap_or_else(|| panic!("no integer totalResults in {self}"))
    }
    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_else(|| panic!("no id in {self}")).to_string()
    }
    /// The `ETag` header, if any.
    pub fn etag(&self) -> Option<String> {
        self.headers.get("etag").and_then(|e| e.to_str().ok()).map(String::from)
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.body)
    }
}

pub struct Scim {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Scim {
    /// A client of the SCIM endpoint on `http_addr`, with a connection pool of its own. The
    /// endpoint is plain HTTP on loopback, so no TLS roots are loaded: that costs tens of
    /// milliseconds per client in a debug build, which adds up in tests that open hundreds.
    pub fn new(http_addr: SocketAddr) -> Scim {
        let http = reqwest::Client::builder().tls_certs_only(Vec::new()).build().expect("HTTP client");
        Scim { base: format!("http://{http_addr}/scim/v2"), http, token: TOKEN.into() }
    }

    /// One request, bounded by `WAIT`; `Err` says what was asked and what went wrong.
    pub async fn try_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let what = format!("SCIM {method} {path}");
        let mut rq = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            rq = rq.header("content-type", "application/scim+json").body(serde_json::to_vec(b).expect("JSON body"));
        }
        for (k, v) in headers {
            rq = rq.header(*k, *v);
        }
        let call = async {
            let r = rq.send().await.map_err(|e| format!("{what}: request failed: {e}"))?;
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let bytes = r.bytes().await.map_err(|e| format!("{what}: reading the body failed: {e}"))?;
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
            };
            Ok(Resp { status, headers, body })
        };
        tokio::time::timeout(WAIT, call).await.map_err(|_| format!("{what}: no answer within {WAIT:?}"))?
    }

    pub async fn raw(&self, method: Method, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Resp {
        self.try_raw(method, path, body, headers).await.unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.raw(Method::GET, path, None, &[]).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.raw(Method::POST, path, Some(&body), &[]).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.raw(Method::PUT, path, Some(&body), &[]).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.raw(Method::DELETE, path, None, &[]).await
    }
    /// A PatchOp with these operations.
    pub async fn patch(&self, path: &str, ops: Value) -> Resp {
        self.try_patch(path, ops, &[]).await.unwrap_or_else(|e| panic!("{e}"))
    }
    pub async fn try_patch(&self, path: &str, ops: Value, headers: &[(&str, &str)]) -> Result<Resp, String> {
        self.try_raw(Method::PATCH, path, Some(&patch_body(ops)), headers).await
    }
    /// GET `/{endpoint}` with a filter, URL-encoded.
    pub async fn filter(&self, endpoint: &str, filter: &str) -> Resp {
        let q: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        self.get(&format!("/{endpoint}?filter={q}")).await
    }
    /// Opens the connection (a discovery GET), so a later request starts without a handshake.
    pub async fn warm_up(&self) {
        let r = self.get("/ServiceProviderConfig").await;
        assert_eq!(r.status, 200, "SCIM warm-up: {r}");
    }
}

pub fn patch_body(ops: Value) -> Value {
    json!({"schemas": [PATCH_URN], "Operations": ops})
}

/// The `value`s of a group's members.
pub fn member_ids(group: &Value) -> BTreeSet<String> {
    group["members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["value"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// A gateway config in front of a Dolibarr at `url` (admin `api_key`): LDAP with the `reader`
/// service account (`svc-pw`), SCIM with the write token `TOKEN`, state in `state`.
pub fn dolibarr_gateway_config(url: &str, api_key: &str, state: &std::path::Path) -> idgate::config::Config {
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
        [backend]
        kind = "dolibarr"
        url = "{url}"
        api_key = "{api_key}"
        timeout = "5s"
        retries = 0
        "#,
        state.display(),
    );
    idgate::config::Config::parse(&text).expect("Dolibarr gateway config")
}

/// The one user a `userName eq` filter finds (panics unless exactly one).
pub async fn user_named(s: &Scim, name: &str) -> Value {
    let r = s.filter("Users", &format!("userName eq \"{name}\"")).await;
    assert_eq!((r.status, r.total()), (200, 1), "userName eq {name:?}: {r}");
    r.body["Resources"][0].clone()
}

/// The one group a `displayName eq` filter finds.
pub async fn group_named(s: &Scim, name: &str) -> Value {
    let r = s.filter("Groups", &format!("displayName eq \"{name}\"")).await;
    assert_eq!((r.status, r.total()), (200, 1), "displayName eq {name:?}: {r}");
    r.body["Resources"][0].clone()
}
