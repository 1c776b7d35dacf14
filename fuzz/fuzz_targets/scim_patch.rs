//! PATCH bodies (RFC 7644 §3.5.2) as clients send them, applied to a user and a group the way
//! PATCH /Users/{id} and /Groups/{id} do: read the PatchOp, apply it to a copy, read the fields
//! back. Never panics; every refusal is a typed SCIM error.
#![no_main]

mod common;

use idgate::scim::patch;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    match patch::parse(&body) {
        Ok(ops) => common::apply_to_both(&ops),
        Err(e) => common::check_error(&e, common::PATCH_ERRORS),
    }
});
