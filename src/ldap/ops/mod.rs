//! The LDAP operations, one file each. Every file adds its operation's handler to
//! [`Session`](super::session::Session), which dispatches the decoded requests to them.

mod add;
mod bind;
mod compare;
mod delete;
mod extended;
mod modify;
mod modify_dn;
mod password_modify;
mod search;
mod write_common;

pub(in crate::ldap) use search::{Reader, Selection};
