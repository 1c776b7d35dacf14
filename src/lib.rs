//! idgate: an identity gateway that serves ERP accounts over LDAP v3 and SCIM 2.0.

pub mod accept;
pub mod app;
pub mod backend;
pub mod cli;
pub mod config;
pub mod costly;
pub mod directory;
pub mod http;
pub mod ldap;
pub mod limits;
pub mod logging;
pub mod model;
pub mod ops;
pub mod scim;
