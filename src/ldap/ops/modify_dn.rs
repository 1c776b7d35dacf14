//! Modify DN: renames a user (its uid, the login) or a group (its cn) in place.

use ldap3_proto::proto::{LdapModifyDNRequest, LdapResult, LdapResultCode as Code};

use super::write_common::{Located, W, e, ok};
use crate::directory::{Action, DirectoryError, GroupEdit, UserEdit as CoreUserEdit};
use crate::ldap::dn::Dn;
use crate::ldap::session::Session;
use crate::model::UserChanges;

impl Session {
    pub(in crate::ldap) async fn modify_dn(&mut self, req: &LdapModifyDNRequest) -> W<LdapResult> {
        let dn = Dn::parse(&req.dn).map_err(|x| e(Code::InvalidDNSyntax, x.to_string()))?;
        if let Some(sup) = &req.new_superior {
            let sup = Dn::parse(sup).map_err(|x| e(Code::InvalidDNSyntax, x.to_string()))?;
            if sup.normalized() != dn.parent().normalized() {
                return Err(e(Code::UnwillingToPerform, "moving entries to another parent is not supported"));
            }
        }
        let rdn = Dn::parse(&req.newrdn).map_err(|x| e(Code::InvalidDNSyntax, x.to_string()))?;
        let new = match rdn.rdns() {
            [r] if r.0.len() == 1 => r.first().clone(),
            _ => return Err(e(Code::NamingViolation, "the new RDN must be a single type=value")),
        };
        let caller = self.caller();
        match self.locate(&dn)? {
            Located::User { id: Some(id), .. } => {
                self.authorize(Action::WriteUsers)?;
                if new.attr != "uid" {
                    return Err(e(Code::NamingViolation, "users are named by uid"));
                }
                let edit = CoreUserEdit {
                    changes: UserChanges { login: Some(new.value), ..Default::default() },
                    ..Default::default()
                };
                self.ctx.dir.edit_user(&caller, &id, |_, _| Ok::<_, DirectoryError>(edit)).await?;
                Ok(ok())
            }
            Located::Group { id: Some(id), .. } => {
                self.authorize(Action::WriteGroups)?;
                if new.attr != "cn" {
                    return Err(e(Code::NamingViolation, "groups are named by cn"));
                }
                let edit = GroupEdit { name: Some(new.value), ..Default::default() };
                self.ctx.dir.edit_group(&caller, &id, |_, _| Ok::<_, DirectoryError>(edit)).await?;
                Ok(ok())
            }
            _ => Err(e(Code::NoSuchObject, format!("no entry {dn}"))),
        }
    }
}
