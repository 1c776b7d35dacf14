//! Delete: removes (or, per `ldap.delete_mode`, disables) a user, or removes a group.

use ldap3_proto::proto::{LdapResult, LdapResultCode as Code};

use super::write_common::{Located, W, e, ok};
use crate::directory::DirectoryError;
use crate::ldap::dn::Dn;
use crate::ldap::session::Session;

impl Session {
    pub(in crate::ldap) async fn delete(&mut self, dn: &str) -> W<LdapResult> {
        let parsed = Dn::parse(dn).map_err(|x| e(Code::InvalidDNSyntax, x.to_string()))?;
        let caller = self.caller();
        match self.locate(&parsed) {
            Err(x) if x.code == Code::UnwillingToPerform && !parsed.is_root() => {
                Err(e(Code::NotAllowedOnNonLeaf, format!("{dn} is a fixed container of the tree")))
            }
            Err(x) => Err(x),
            Ok(Located::User { id: None, .. } | Located::Group { id: None, .. }) => {
                Err(e(Code::NoSuchObject, format!("no entry {dn}")))
            }
            Ok(Located::User { id: Some(id), .. }) => {
                let mode = self.ctx.dir.write_policy().ldap_delete_mode;
                self.ctx.dir.delete_user(&caller, &id, mode, |_, _| Ok::<_, DirectoryError>(())).await?;
                Ok(ok())
            }
            Ok(Located::Group { id: Some(id), .. }) => {
                self.ctx.dir.delete_group(&caller, &id, |_, _| Ok::<_, DirectoryError>(())).await?;
                Ok(ok())
            }
        }
    }
}
