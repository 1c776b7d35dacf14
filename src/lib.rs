//! idgate: an identity gateway that serves ERP accounts over LDAP v3 and SCIM 2.0.

pub mod app;
pub mod backend;
pub mod cli;
pub mod config;
pub mod costly;
pub mod directory;
pub mod ldap;
pub mod model;
pub mod ops;
pub mod scim;
