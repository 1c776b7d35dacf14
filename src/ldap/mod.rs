//! The LDAP v3 front end.

pub mod dit;
pub mod dn;
pub mod error;
pub mod filter;
pub mod matching;
pub mod schema;
pub mod server;
pub mod session;
pub mod tls;
