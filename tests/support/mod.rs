//! Test support shared by integration tests.
#![allow(dead_code)]

pub mod dolibarr_sim;
pub mod dreamfactory_sim;
pub mod foreman_sim;
pub mod json_diff;
pub mod server;
