//! Compare: an equality assertion on one attribute of one readable entry.

use ldap3_proto::proto::{LdapCompareRequest, LdapResult, LdapResultCode as Code};

use crate::ldap::dn::Dn;
use crate::ldap::error::LdapError;
use crate::ldap::filter::{Filter, Tri};
use crate::ldap::schema;
use crate::ldap::session::{Session, res};

impl Session {
    pub(in crate::ldap) fn compare(&self, c: &LdapCompareRequest) -> Result<LdapResult, LdapError> {
        let dn = Dn::parse(&c.dn).map_err(|e| LdapError::new(Code::InvalidDNSyntax, e.to_string()))?;
        if !self.may_read_tree() {
            return Err(LdapError::new(Code::InsufficentAccessRights, "bind first"));
        }
        let Some(id) = self.ctx.settings().attr(&c.atype) else {
            return Err(LdapError::new(Code::UndefinedAttributeType, format!("unknown attribute {}", c.atype)));
        };
        if schema::def(id).name == "userPassword" {
            return Err(LdapError::new(Code::InsufficentAccessRights, "userPassword cannot be compared"));
        }
        let value = String::from_utf8(c.val.clone())
            .map_err(|_| LdapError::new(Code::InvalidAttributeSyntax, "the assertion value is not UTF-8"))?;
        let snapshot = self.ctx.dir.snapshot()?;
        let dit = self.ctx.dits.get(snapshot);
        let reader = self.reader(&dit);
        let idx = dit.find(&dn).filter(|&i| reader.can_read(i)).ok_or_else(|| {
            let mut e = LdapError::new(Code::NoSuchObject, format!("no entry {}", c.dn));
            e.matched_dn = dit.matched_dn(&dn);
            e
        })?;
        let entry = dit.entry(idx);
        if entry.get(id).is_none() {
            return Err(LdapError::new(Code::NoSuchAttribute, format!("{} has no {}", c.dn, schema::def(id).name)));
        }
        Ok(match Filter::equality(id, value).eval_in_tree(&dit, &entry, &crate::costly::Budget::unlimited()) {
            Tri::True => res(Code::CompareTrue, ""),
            _ => res(Code::CompareFalse, ""),
        })
    }
}
