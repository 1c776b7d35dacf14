//! Write throughput against the memory backend at several directory sizes: SCIM `PATCH /Users/{id}`
//! (replace title) and LDAP modify (replace title) from concurrent clients, each for a fixed time,
//! then one SCIM Bulk request of 1,000 user creates. The server runs in this process on loopback.
//! Write cost should not grow with the directory: the snapshot is updated in O(change).
//!
//! Run: `cargo bench --bench writes` (env: BENCH_SIZES=1000,10000,100000, BENCH_CLIENTS, BENCH_SECONDS).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use idgate::backend::memory::MemoryBackend;
use idgate::config::Config;
use ldap3::{LdapConnAsync, Mod};
use serde_json::json;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const ADMIN_DN: &str = "cn=admin,ou=services,dc=example,dc=com";

async fn scim_patches(base: &str, users: usize, clients: usize, secs: u64) -> f64 {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base) = (http.clone(), base.to_string());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut i = c * 7919;
            while Instant::now() < deadline {
                i = (i * 1_103_515_245 + 12_345) % users;
                // Seeded users have ids 1..=users.
                let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                  "Operations": [{"op": "replace", "path": "title", "value": format!("t{n}")}]});
                let r = http.patch(format!("{base}/Users/{}", i + 1)).bearer_auth("bench-token").json(&body);
                let r = r.send().await.unwrap();
                assert_eq!(r.status(), 200);
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn ldap_modifies(url: &str, users: usize, clients: usize, secs: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let (conn, mut ldap) = LdapConnAsync::new(&url).await.unwrap();
            ldap3::drive!(conn);
            ldap.simple_bind(ADMIN_DN, "bench-admin").await.unwrap().success().unwrap();
            let mut n = 0u64;
            let mut i = c * 104_729;
            while Instant::now() < deadline {
                i = (i * 1_103_515_245 + 12_345) % users;
                let dn = format!("uid=user{i:05},ou=people,dc=example,dc=com");
                let title = format!("l{n}");
                let r = ldap.modify(&dn, vec![Mod::Replace("title", [title.as_str()].into())]).await.unwrap();
                assert_eq!(r.rc, 0, "{r:?}");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn bulk_creates(base: &str, n: usize) -> Duration {
    let ops: Vec<_> = (0..n)
        .map(|i| {
            json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"),
                   "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("bulk{i:05}"),
                            "name": {"givenName": "Bulk", "familyName": format!("{i}")}}})
        })
        .collect();
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops});
    let t = Instant::now();
    let r = reqwest::Client::new().post(format!("{base}/Bulk")).bearer_auth("bench-token").json(&body).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let ok = v["Operations"].as_array().unwrap().iter().filter(|o| o["status"] == "201").count();
    assert_eq!(ok, n, "every create succeeded");
    t.elapsed()
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let clients = env("BENCH_CLIENTS", 16);
    let secs = env("BENCH_SECONDS", 5) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        println!("{clients} clients, {secs} s per phase");
        for users in sizes {
            let cfg = Config::parse(
                "[ldap]\nlisten=\"127.0.0.1:0\"\n[[ldap.service_accounts]]\nname=\"admin\"\npassword=\"bench-admin\"\naccess=\"write\"\n\
                 [http]\nlisten=\"127.0.0.1:0\"\n[[scim.tokens]]\nname=\"bench\"\ntoken=\"bench-token\"\nscope=\"write\"\n\
                 [scim]\nbulk_max_operations=1000\nmax_body_bytes=4000000\n[backend]\nkind=\"memory\"\n",
            )
            .unwrap();
            let backend = Arc::new(MemoryBackend::from_seed(common::seed(users)).unwrap());
            let running = idgate::app::start_with_backend(cfg, backend).await.unwrap();
            let base = format!("http://{}/scim/v2", running.http_addr);
            let url = format!("ldap://{}", running.ldap_addr);
            let scim = scim_patches(&base, users, clients, secs).await;
            let ldap = ldap_modifies(&url, users, clients, secs).await;
            let bulk = bulk_creates(&base, 1000).await;
            println!(
                "{users:>7} users: SCIM PATCH {scim:>8.0}/s   LDAP modify {ldap:>8.0}/s   Bulk of 1,000 creates {:>6.0} ms",
                bulk.as_secs_f64() * 1000.0
            );
            running.shutdown().await;
        }
    });
}
