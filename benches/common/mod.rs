//! The synthetic directory both benchmarks load: `user00000`… with one shared cheap password hash,
//! and 20 groups.
#![allow(dead_code)]

use idgate::backend::memory::Seed;

pub fn seed(users: usize) -> Seed {
    serde_json::from_value(seed_json(users)).unwrap()
}

pub fn seed_json(users: usize) -> serde_json::Value {
    use argon2::password_hash::{PasswordHasher, SaltString};
    // One cheap hash shared by every user keeps start-up and cache warming fast; the measured binds
    // are answered by the bind cache, whose cost does not depend on the hash parameters.
    let salt = SaltString::encode_b64(b"bench-salt-16byt").unwrap();
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let hash = hasher.hash_password(b"bench-password", &salt).unwrap().to_string();
    let users: Vec<serde_json::Value> = (0..users)
        .map(|i| {
            serde_json::json!({"login": format!("user{i:05}"), "firstname": "User", "lastname": format!("{i}"),
                               "email": format!("user{i:05}@example.com"), "password_hash": hash})
        })
        .collect();
    let groups: Vec<serde_json::Value> = (0..20)
        .map(|g| {
            serde_json::json!({"name": format!("group{g}"),
            "members": (0..users.len()).filter(|i| i % 20 == g).map(|i| format!("user{i:05}")).collect::<Vec<_>>()})
        })
        .collect();
    serde_json::json!({"users": users, "groups": groups})
}
