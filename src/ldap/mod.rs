//! The LDAP v3 front end.

pub mod dn;
