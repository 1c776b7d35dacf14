//! Add: creates a user under the people container or a group under the groups container.

use std::collections::BTreeSet;

use ldap3_proto::proto::{LdapAddRequest, LdapModifyType, LdapResult, LdapResultCode as Code};

use super::write_common::{Located, Member, UserAttr, UserEdit, W, e, ok, user_attr, values};
use crate::directory::{Action, GroupSpec, UserSpec};
use crate::ldap::attrs::{GROUP_CLASSES, USER_CLASSES};
use crate::ldap::dn::Dn;
use crate::ldap::schema::{self, AttrId};
use crate::ldap::session::Session;
use crate::model::{NewGroup, NewUser, User};

impl Session {
    pub(in crate::ldap) async fn add(&mut self, req: &LdapAddRequest) -> W<LdapResult> {
        let dn = Dn::parse(&req.dn).map_err(|x| e(Code::InvalidDNSyntax, x.to_string()))?;
        let mut attrs: Vec<(AttrId, Vec<String>)> = Vec::new();
        for a in &req.attributes {
            let id = self
                .ctx
                .settings()
                .attr(&a.atype)
                .ok_or_else(|| e(Code::UndefinedAttributeType, format!("unknown attribute {}", a.atype)))?;
            attrs.push((id, values(&a.atype, &a.vals)?));
        }
        let get = |name: &str| attrs.iter().find(|(id, _)| schema::def(*id).name == name).map(|(_, v)| v.clone());
        let classes = get("objectClass").unwrap_or_default();
        match self.locate(&dn)? {
            Located::User { id, login } => {
                self.authorize(Action::WriteUsers)?;
                if id.is_some() {
                    return Err(e(Code::EntryAlreadyExists, format!("{dn} already exists")));
                }
                // One of the person classes: top and posixAccount alone make no user.
                let person = USER_CLASSES.iter().filter(|k| !matches!(**k, "top" | "posixAccount"));
                if !classes.iter().any(|c| person.clone().any(|k| k.eq_ignore_ascii_case(c))) {
                    return Err(e(Code::ObjectClassViolation, "a user needs objectClass inetOrgPerson (or person)"));
                }
                let known = |c: &String| {
                    USER_CLASSES.iter().any(|k| k.eq_ignore_ascii_case(c))
                        || c.eq_ignore_ascii_case(schema::CUSTOM_CLASS)
                };
                if let Some(bad) = classes.iter().find(|c| !known(c)) {
                    return Err(e(Code::ObjectClassViolation, format!("objectClass {bad} is not supported for users")));
                }
                for must in ["cn", "sn"] {
                    if get(must).is_none_or(|v| v.is_empty()) {
                        return Err(e(Code::ObjectClassViolation, format!("{must} is required by objectClass person")));
                    }
                }
                if let Some(uid) = get("uid")
                    && !uid.iter().any(|u| u.eq_ignore_ascii_case(&login))
                {
                    return Err(e(Code::NamingViolation, "the uid attribute must contain the RDN's value"));
                }
                let mut edit = UserEdit {
                    user: User { login: login.clone(), active: true, ..Default::default() },
                    password: None,
                    old_password: None,
                };
                let mut full_names = Vec::new();
                let snap = self.ctx.dir.snapshot()?;
                let settings = self.ctx.settings();
                for (id, vals) in &attrs {
                    match user_attr(*id) {
                        // uid is the RDN; the object classes were checked above; POSIX attributes
                        // required by posixAccount are accepted and then assigned by idgate.
                        UserAttr::Uid | UserAttr::ObjectClass => {}
                        UserAttr::ReadOnly
                            if ["uidNumber", "gidNumber", "homeDirectory", "loginShell", "gecos"]
                                .contains(&schema::def(*id).name) => {}
                        UserAttr::FullName => full_names.extend(vals.iter().cloned()),
                        _ => edit.apply_in(&snap, settings, &LdapModifyType::Replace, *id, vals.clone())?,
                    }
                }
                if edit.user.first_name.is_empty()
                    && let Some(cn) = full_names.first()
                {
                    let last = edit.user.last_name.trim().to_string();
                    let first = cn.strip_suffix(&last).map(str::trim_end).unwrap_or(cn);
                    if first != cn.as_str() || last.is_empty() || !cn.eq_ignore_ascii_case(&last) {
                        edit.user.first_name = if first.is_empty() { String::new() } else { first.to_string() };
                    }
                }
                let u = edit.user;
                let new = NewUser {
                    login: u.login,
                    first_name: u.first_name,
                    last_name: u.last_name,
                    email: u.email,
                    phone: u.phone,
                    mobile: u.mobile,
                    title: u.title,
                    employee_number: u.employee_number,
                    locale: u.locale,
                    active: u.active,
                    admin: false,
                    password: edit.password,
                    manager: u.manager,
                    custom: u.custom,
                };
                self.ctx.dir.create_user(&self.caller(), UserSpec { new, ..Default::default() }).await?;
                Ok(ok())
            }
            Located::Group { id, name } => {
                self.authorize(Action::WriteGroups)?;
                if id.is_some() {
                    return Err(e(Code::EntryAlreadyExists, format!("{dn} already exists")));
                }
                if !classes.iter().any(|c| GROUP_CLASSES[1..].iter().any(|k| k.eq_ignore_ascii_case(c))) {
                    return Err(e(
                        Code::ObjectClassViolation,
                        "a group needs objectClass groupOfNames, groupOfUniqueNames or posixGroup",
                    ));
                }
                if let Some(bad) = classes.iter().find(|c| !GROUP_CLASSES.iter().any(|k| k.eq_ignore_ascii_case(c))) {
                    return Err(e(
                        Code::ObjectClassViolation,
                        format!("objectClass {bad} is not supported for groups"),
                    ));
                }
                let mut members = BTreeSet::new();
                let mut member_groups = BTreeSet::new();
                let mut description = None;
                for (id, vals) in &attrs {
                    let an = schema::def(*id).name;
                    match an {
                        "objectClass" | "gidNumber" => {}
                        "cn" => {
                            if !vals.iter().any(|v| v.eq_ignore_ascii_case(&name)) {
                                return Err(e(Code::NamingViolation, "the cn attribute must contain the RDN's value"));
                            }
                        }
                        "description" => description = vals.first().cloned(),
                        "member" | "uniqueMember" | "memberUid" => {
                            for v in vals {
                                match self.member_id(an, v)? {
                                    Some(Member::User(u)) => members.insert(u),
                                    Some(Member::Group(g)) => member_groups.insert(g),
                                    None => false,
                                };
                            }
                        }
                        _ if schema::def(*id).operational => {
                            return Err(e(Code::ConstraintViolation, format!("{an} is assigned by idgate")));
                        }
                        _ => {
                            return Err(e(
                                Code::UnwillingToPerform,
                                format!("{an} is not stored for groups by this directory"),
                            ));
                        }
                    }
                }
                let new = NewGroup {
                    name,
                    description,
                    members: members.into_iter().collect(),
                    member_groups: member_groups.into_iter().collect(),
                };
                self.ctx.dir.create_group(&self.caller(), GroupSpec { new, ..Default::default() }).await?;
                Ok(ok())
            }
        }
    }
}
