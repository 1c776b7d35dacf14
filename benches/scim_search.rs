//! Cached SCIM throughput: `GET /Users?filter=userName eq "<random>"` against a 10 000-user
//! directory from 32 concurrent clients over keep-alive HTTP/1.1, for a fixed time. The server
//! runs in this process on loopback, sharing the machine's cores with the load generator.
//!
//! Run: `cargo bench --bench scim_search` (env: BENCH_USERS, BENCH_CLIENTS, BENCH_SECONDS).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use idgate::backend::memory::MemoryBackend;
use idgate::config::Config;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let users = env("BENCH_USERS", 10_000);
    let clients = env("BENCH_CLIENTS", 32);
    let secs = env("BENCH_SECONDS", 5) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let cfg = Config::parse(
            "[ldap]\nlisten=\"127.0.0.1:0\"\n[http]\nlisten=\"127.0.0.1:0\"\n\
             [[scim.tokens]]\nname=\"bench\"\ntoken=\"bench-token\"\nscope=\"read\"\n[backend]\nkind=\"memory\"\n",
        )
        .unwrap();
        let backend = Arc::new(MemoryBackend::from_seed(common::seed(users)).unwrap());
        let running = idgate::app::start_with_backend(cfg, backend).await.unwrap();
        let base = format!("http://{}/scim/v2/Users", running.http_addr);
        println!("{users} users; {clients} clients, {secs} s");
        let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();
        let get = |http: reqwest::Client, base: String, i: usize| async move {
            let filter = format!("userName eq \"user{i:05}\"");
            let url = url::Url::parse_with_params(&base, &[("filter", filter.as_str())]).unwrap();
            let r = http.get(url).bearer_auth("bench-token").send().await.unwrap();
            assert_eq!(r.status(), 200);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["totalResults"], 1);
        };
        get(http.clone(), base.clone(), 1).await;

        let deadline = Instant::now() + Duration::from_secs(secs);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (http, base) = (http.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = c * 7919;
                while Instant::now() < deadline {
                    i = (i * 1_103_515_245 + 12_345) % users;
                    let t = Instant::now();
                    get(http.clone(), base.clone(), i).await;
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let elapsed = start.elapsed();
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "{:<32} {:>9.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms   ({} requests)",
            "GET /Users?filter=userName eq",
            lat.len() as f64 / elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            lat.len()
        );
        running.shutdown().await;
    });
}
