//! Modify: LDAP's value semantics applied to a user or a group as it is under the core's lock.

use std::collections::BTreeSet;

use ldap3_proto::proto::{LdapModify, LdapModifyRequest, LdapModifyType, LdapResult, LdapResultCode as Code};

use super::write_common::{Located, Member, UserEdit, W, e, ok, values};
use crate::directory::{Action, GroupEdit, UserEdit as CoreUserEdit};
use crate::ldap::attrs::GROUP_CLASSES;
use crate::ldap::dn::Dn;
use crate::ldap::schema::{self, AttrId};
use crate::ldap::session::Session;
use crate::model::{User, UserChanges};

/// The fields that differ between two versions of a user.
fn diff(old: &User, new: &User) -> UserChanges {
    let o = |a: &Option<String>, b: &Option<String>| (a != b).then(|| b.clone());
    UserChanges {
        login: (old.login != new.login).then(|| new.login.clone()),
        first_name: (old.first_name != new.first_name).then(|| new.first_name.clone()),
        last_name: (old.last_name != new.last_name).then(|| new.last_name.clone()),
        email: (old.email != new.email).then(|| new.email.clone()),
        phone: o(&old.phone, &new.phone),
        mobile: o(&old.mobile, &new.mobile),
        title: o(&old.title, &new.title),
        employee_number: o(&old.employee_number, &new.employee_number),
        locale: o(&old.locale, &new.locale),
        active: (old.active != new.active).then_some(new.active),
        admin: None,
        manager: (old.manager != new.manager).then(|| new.manager.clone()),
        custom: crate::model::custom_diff(&old.custom, &new.custom),
    }
}

impl Session {
    pub(in crate::ldap) async fn modify(&mut self, req: &LdapModifyRequest) -> W<LdapResult> {
        let dn = Dn::parse(&req.dn).map_err(|x| e(Code::InvalidDNSyntax, x.to_string()))?;
        let mut changes: Vec<(&LdapModify, AttrId, Vec<String>)> = Vec::new();
        for m in &req.changes {
            let a = &m.modification;
            let id = self
                .ctx
                .settings()
                .attr(&a.atype)
                .ok_or_else(|| e(Code::UndefinedAttributeType, format!("unknown attribute {}", a.atype)))?;
            changes.push((m, id, values(&a.atype, &a.vals)?));
        }
        match self.locate(&dn)? {
            Located::User { id: None, .. } | Located::Group { id: None, .. } => {
                Err(e(Code::NoSuchObject, format!("no entry {dn}")))
            }
            Located::User { id: Some(id), login } => self.modify_user(&id, &login, &changes).await,
            Located::Group { id: Some(id), .. } => self.modify_group(&id, &changes).await,
        }
    }

    async fn modify_user(
        &mut self,
        id: &str,
        _login: &str,
        changes: &[(&LdapModify, AttrId, Vec<String>)],
    ) -> W<LdapResult> {
        // LDAP's value semantics are applied to the user as it is under the core's lock for it.
        let settings = self.ctx.settings();
        let decide = |snap: &crate::directory::Snapshot, idx: usize| -> W<CoreUserEdit> {
            let current = snap.user(idx);
            let mut edit = UserEdit { user: (**current).clone(), password: None, old_password: None };
            for (m, attr, vals) in changes {
                edit.apply_in(snap, settings, &m.operation, *attr, vals.clone())?;
            }
            Ok(CoreUserEdit {
                changes: diff(current, &edit.user),
                password: edit.password,
                old_password: edit.old_password,
                ..Default::default()
            })
        };
        self.ctx.dir.edit_user(&self.caller(), id, decide).await?;
        Ok(ok())
    }

    async fn modify_group(&mut self, id: &str, changes: &[(&LdapModify, AttrId, Vec<String>)]) -> W<LdapResult> {
        self.authorize(Action::WriteGroups)?;
        // Member values are resolved first; the LDAP semantics then run against the group as it is
        // under the core's lock for it.
        let mut resolved: Vec<Vec<Member>> = Vec::with_capacity(changes.len());
        for (_, attr, vals) in changes {
            let an = schema::def(*attr).name;
            let mut ids = Vec::new();
            if matches!(an, "member" | "uniqueMember" | "memberUid") {
                for v in vals {
                    if let Some(m) = self.member_id(an, v)? {
                        ids.push(m);
                    }
                }
            }
            resolved.push(ids);
        }
        let decide = |snap: &crate::directory::Snapshot, gi: usize| -> W<GroupEdit> {
            let group = snap.group(gi);
            // Members as member and uniqueMember list them: users and member groups; memberUid
            // lists users only, so its edits never touch member groups.
            let current: BTreeSet<Member> = snap
                .member_ids(gi)
                .into_iter()
                .map(Member::User)
                .chain(snap.member_group_ids(gi).into_iter().map(Member::Group))
                .collect();
            // Each membership attribute is edited on its own copy, with LDAP semantics; they must agree.
            let mut edited: Vec<(&str, BTreeSet<Member>)> = Vec::new();
            let mut description = group.description.clone();
            for ((m, attr, vals), ids) in changes.iter().zip(&resolved) {
                let an = schema::def(*attr).name;
                let ids = ids.clone();
                match an {
                    "member" | "uniqueMember" | "memberUid" => {
                        let pos = match edited.iter().position(|(n, _)| *n == an) {
                            Some(p) => p,
                            None => {
                                let start = if an == "memberUid" {
                                    current.iter().filter(|m| matches!(m, Member::User(_))).cloned().collect()
                                } else {
                                    current.clone()
                                };
                                edited.push((an, start));
                                edited.len() - 1
                            }
                        };
                        let set = &mut edited[pos].1;
                        match m.operation {
                            LdapModifyType::Add => {
                                for i in ids {
                                    if !set.insert(i) {
                                        return Err(e(Code::AttributeOrValueExists, format!("{an}: already a member")));
                                    }
                                }
                            }
                            LdapModifyType::Delete if vals.is_empty() => set.clear(),
                            LdapModifyType::Delete => {
                                for i in ids {
                                    if !set.remove(&i) {
                                        return Err(e(Code::NoSuchAttribute, format!("{an}: not a member")));
                                    }
                                }
                            }
                            LdapModifyType::Replace => *set = ids.into_iter().collect(),
                            LdapModifyType::Increment => {
                                return Err(e(Code::ConstraintViolation, format!("{an} cannot be incremented")));
                            }
                        }
                    }
                    "description" => {
                        description = match (&m.operation, vals.as_slice()) {
                            (LdapModifyType::Replace, []) | (LdapModifyType::Delete, _) => None,
                            (LdapModifyType::Replace | LdapModifyType::Add, [v]) => Some(v.clone()),
                            _ => return Err(e(Code::ConstraintViolation, "description takes a single value here")),
                        }
                    }
                    "cn" => {
                        return Err(e(Code::NotALlowedOnRDN, "cn names the group; rename it with a modify DN request"));
                    }
                    "objectClass" => {
                        let same = !matches!(m.operation, LdapModifyType::Delete)
                            && vals.iter().all(|v| GROUP_CLASSES.iter().any(|c| c.eq_ignore_ascii_case(v)));
                        if !same {
                            return Err(e(Code::ObjectClassModsProhibited, "the object classes of groups are fixed"));
                        }
                    }
                    _ if an == "gidNumber" || schema::def(*attr).operational => {
                        return Err(e(
                            Code::ConstraintViolation,
                            format!("{an} is assigned by idgate and cannot be changed"),
                        ));
                    }
                    _ => {
                        return Err(e(
                            Code::UnwillingToPerform,
                            format!("{an} is not stored for groups by this directory"),
                        ));
                    }
                }
            }
            let users = |set: &BTreeSet<Member>| -> BTreeSet<String> {
                set.iter().filter_map(|m| if let Member::User(u) = m { Some(u.clone()) } else { None }).collect()
            };
            let groups = |set: &BTreeSet<Member>| -> BTreeSet<String> {
                set.iter().filter_map(|m| if let Member::Group(g) = m { Some(g.clone()) } else { None }).collect()
            };
            let wanted_users = match edited.as_slice() {
                [] => None,
                [(_, first), rest @ ..] => {
                    if rest.iter().any(|(_, s)| users(s) != users(first)) {
                        return Err(e(
                            Code::ConstraintViolation,
                            "member, uniqueMember and memberUid must name the same users",
                        ));
                    }
                    Some(users(first))
                }
            };
            let mut group_sets = edited.iter().filter(|(n, _)| *n != "memberUid").map(|(_, s)| groups(s));
            let wanted_groups = group_sets.next();
            if let Some(first) = &wanted_groups
                && group_sets.any(|g| g != *first)
            {
                return Err(e(Code::ConstraintViolation, "member and uniqueMember must name the same groups"));
            }
            Ok(GroupEdit {
                description: Some(description),
                members: wanted_users,
                member_groups: wanted_groups,
                ..Default::default()
            })
        };
        self.ctx.dir.edit_group(&self.caller(), id, decide).await?;
        Ok(ok())
    }
}
