//! What the write operations share. Every write request is validated completely (rights, schema,
//! attribute semantics) before the first backend call; the directory then applies it
//! backend-first. When a request needs several backend calls and one fails, the answer says
//! exactly which parts were applied.

use ldap3_proto::proto::{LdapModifyType, LdapResult, LdapResultCode as Code};

use crate::config::CustomAttribute;
use crate::directory::{Action, Snapshot};
use crate::ldap::attrs::{self, USER_CLASSES, UserField};
use crate::ldap::dit::DitSettings;
use crate::ldap::dn::Dn;
use crate::ldap::error::LdapError;
use crate::ldap::schema::{self, AttrId};
use crate::ldap::session::{Session, res};
use crate::model::User;

pub(super) type W<T> = Result<T, LdapError>;

pub(super) fn e(code: Code, msg: impl Into<String>) -> LdapError {
    LdapError::new(code, msg)
}

pub(super) fn ok() -> LdapResult {
    res(Code::Success, "")
}

/// What a DN names, for a write.
pub(super) enum Located {
    User { id: Option<String>, login: String },
    Group { id: Option<String>, name: String },
}

/// What a member value names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Member {
    User(String),
    Group(String),
}

/// How a user attribute is written.
pub(super) enum UserAttr {
    /// Stored in a field of the user (see `attrs::USER_FIELDS`).
    Field(&'static UserField),
    /// cn / displayName: derived from givenName and sn.
    FullName,
    Password,
    Locked,
    Uid,
    ObjectClass,
    /// The DN of the user's manager.
    Manager,
    /// A custom attribute (`[[directory.attributes]]`).
    Custom(&'static CustomAttribute),
    /// Assigned by idgate or operational.
    ReadOnly,
    /// Known to the schema but not stored for users.
    Unmapped,
}

pub(super) fn user_attr(id: AttrId) -> UserAttr {
    let name = schema::def(id).name;
    if let Some(f) = attrs::user_field(name) {
        return UserAttr::Field(f);
    }
    if let Some(a) = schema::custom(id) {
        return UserAttr::Custom(a);
    }
    match name {
        "manager" => UserAttr::Manager,
        "cn" | "displayName" => UserAttr::FullName,
        "userPassword" => UserAttr::Password,
        "pwdAccountLockedTime" => UserAttr::Locked,
        "uid" => UserAttr::Uid,
        "objectClass" => UserAttr::ObjectClass,
        "uidNumber" | "gidNumber" | "homeDirectory" | "loginShell" | "gecos" | "memberOf" => UserAttr::ReadOnly,
        _ if schema::def(id).operational => UserAttr::ReadOnly,
        _ => UserAttr::Unmapped,
    }
}

fn utf8(attr: &str, v: &[u8]) -> W<String> {
    String::from_utf8(v.to_vec()).map_err(|_| e(Code::InvalidAttributeSyntax, format!("{attr}: value is not UTF-8")))
}

pub(super) fn values(attr: &str, vals: &[Vec<u8>]) -> W<Vec<String>> {
    vals.iter().map(|v| utf8(attr, v)).collect()
}

/// Pending changes to one user, built up by the request's modifications.
pub(super) struct UserEdit {
    pub(super) user: User,
    pub(super) password: Option<String>,
    pub(super) old_password: Option<String>,
}

/// The backend id of the user a `manager` value names.
pub(super) fn manager_id(snap: &Snapshot, s: &DitSettings, v: &str) -> W<String> {
    let dn = Dn::parse(v).map_err(|_| e(Code::InvalidAttributeSyntax, format!("manager: {v:?} is not a DN")))?;
    let login = match dn.rdn().map(|r| r.first()) {
        Some(a) if a.attr == "uid" && dn.parent().normalized() == s.people.normalized() => a.value.clone(),
        _ => return Err(e(Code::ConstraintViolation, format!("manager: {v} is not a user of this directory"))),
    };
    snap.user_by_login(&login)
        .map(|u| u.id.clone())
        .ok_or_else(|| e(Code::ConstraintViolation, format!("manager: no user {v}")))
}

/// LDAP's value semantics on a custom attribute's canonical values. Values arrive in LDAP form.
fn edit_custom(a: &CustomAttribute, cur: &mut Vec<String>, op: &LdapModifyType, vals: &[String]) -> W<()> {
    let name = &a.name;
    let mut wanted = Vec::with_capacity(vals.len());
    for v in vals {
        let c = attrs::custom_from_ldap(a.syntax, v).ok_or_else(|| {
            e(
                Code::InvalidAttributeSyntax,
                format!("{name}: {v:?} is not a valid {}", crate::directory::custom::syntax_name(a.syntax)),
            )
        })?;
        wanted.push(c);
    }
    // Values compare as the attribute's equality rule does: strings without regard to case.
    let same = |x: &str, y: &str| x.to_lowercase() == y.to_lowercase();
    match op {
        LdapModifyType::Replace => *cur = wanted,
        LdapModifyType::Add => {
            for w in wanted {
                if cur.iter().any(|c| same(c, &w)) {
                    return Err(e(Code::AttributeOrValueExists, format!("{name}: value {w:?} exists")));
                }
                cur.push(w);
            }
        }
        LdapModifyType::Delete if wanted.is_empty() => {
            if cur.is_empty() {
                return Err(e(Code::NoSuchAttribute, format!("{name}: no value to delete")));
            }
            cur.clear();
        }
        LdapModifyType::Delete => {
            for w in wanted {
                let Some(i) = cur.iter().position(|c| same(c, &w)) else {
                    return Err(e(Code::NoSuchAttribute, format!("{name}: no value {w:?}")));
                };
                cur.remove(i);
            }
        }
        LdapModifyType::Increment => {
            return Err(e(Code::ConstraintViolation, format!("{name} cannot be incremented")));
        }
    }
    if !a.multi && cur.len() > 1 {
        return Err(e(Code::ConstraintViolation, format!("{name} takes a single value")));
    }
    Ok(())
}

impl UserEdit {
    /// Applies one modification, resolving `manager` DNs in `snap`.
    pub(super) fn apply_in(
        &mut self,
        snap: &Snapshot,
        s: &DitSettings,
        op: &LdapModifyType,
        id: AttrId,
        vals: Vec<String>,
    ) -> W<()> {
        match user_attr(id) {
            UserAttr::Manager => {
                let wanted = vals.iter().map(|v| manager_id(snap, s, v)).collect::<W<Vec<String>>>()?;
                let cur = self.user.manager.clone();
                self.user.manager = match (op, wanted.as_slice()) {
                    (LdapModifyType::Replace, []) => None,
                    (LdapModifyType::Replace, [m]) => Some(m.clone()),
                    (LdapModifyType::Add, [m]) if cur.is_none() => Some(m.clone()),
                    (LdapModifyType::Add, [_]) => {
                        return Err(e(Code::AttributeOrValueExists, "manager already has a value; use replace"));
                    }
                    (LdapModifyType::Delete, []) if cur.is_some() => None,
                    (LdapModifyType::Delete, [m]) if cur.as_ref() == Some(m) => None,
                    (LdapModifyType::Delete, _) => return Err(e(Code::NoSuchAttribute, "manager: no such value")),
                    (LdapModifyType::Increment, _) => {
                        return Err(e(Code::ConstraintViolation, "manager cannot be incremented"));
                    }
                    _ => return Err(e(Code::ConstraintViolation, "manager takes a single value")),
                };
                Ok(())
            }
            UserAttr::Custom(a) if s.custom.contains(&id) => {
                let mut cur = self.user.custom.get(&a.field).cloned().unwrap_or_default();
                edit_custom(a, &mut cur, op, &vals)?;
                if cur.is_empty() {
                    self.user.custom.remove(&a.field);
                } else {
                    self.user.custom.insert(a.field.clone(), cur);
                }
                Ok(())
            }
            _ => self.apply(op, id, vals),
        }
    }

    pub(super) fn apply(&mut self, op: &LdapModifyType, id: AttrId, vals: Vec<String>) -> W<()> {
        let name = schema::def(id).name;
        match user_attr(id) {
            UserAttr::Field(f) => {
                let cur = (f.get)(&self.user);
                let new = match op {
                    LdapModifyType::Replace => match vals.as_slice() {
                        [] => String::new(),
                        [v] => v.clone(),
                        _ => return Err(e(Code::ConstraintViolation, format!("{name} takes a single value"))),
                    },
                    LdapModifyType::Add => match vals.as_slice() {
                        [v] if cur.is_empty() => v.clone(),
                        [_] => {
                            return Err(e(
                                Code::AttributeOrValueExists,
                                format!("{name} already has a value; use replace"),
                            ));
                        }
                        _ => return Err(e(Code::ConstraintViolation, format!("{name} takes a single value"))),
                    },
                    LdapModifyType::Delete => {
                        let matches = match vals.as_slice() {
                            [] => !cur.is_empty(),
                            [v] => !cur.is_empty() && v.eq_ignore_ascii_case(&cur),
                            _ => false,
                        };
                        if !matches {
                            return Err(e(Code::NoSuchAttribute, format!("{name}: no such value")));
                        }
                        String::new()
                    }
                    LdapModifyType::Increment => {
                        return Err(e(Code::ConstraintViolation, format!("{name} cannot be incremented")));
                    }
                };
                (f.set)(&mut self.user, new);
            }
            UserAttr::FullName => {
                if matches!(op, LdapModifyType::Delete) {
                    return Err(e(Code::ObjectClassViolation, format!("{name} is required")));
                }
                if let [v] = vals.as_slice() {
                    if *v == self.user.full_name() {
                        return Ok(());
                    }
                    // "First Last": the first name is what precedes the last name.
                    let last = self.user.last_name.trim();
                    match v.strip_suffix(last).map(str::trim_end) {
                        Some(first) if !last.is_empty() && v.len() > last.len() => {
                            self.user.first_name = first.to_string();
                        }
                        _ => {
                            return Err(e(
                                Code::UnwillingToPerform,
                                format!("{name} is derived from givenName and sn; change those instead"),
                            ));
                        }
                    }
                } else {
                    return Err(e(Code::ConstraintViolation, format!("{name} takes a single value here")));
                }
            }
            UserAttr::Password => match (op, vals.as_slice()) {
                (LdapModifyType::Replace | LdapModifyType::Add, [v]) if !v.is_empty() => {
                    self.password = Some(v.clone())
                }
                (LdapModifyType::Delete, [old]) => self.old_password = Some(old.clone()),
                (LdapModifyType::Delete, []) => {
                    return Err(e(Code::UnwillingToPerform, "a password cannot be removed, only replaced"));
                }
                _ => return Err(e(Code::ConstraintViolation, "userPassword takes exactly one non-empty value")),
            },
            UserAttr::Locked => {
                self.user.active = match op {
                    LdapModifyType::Delete => true,
                    _ => vals.is_empty(),
                }
            }
            UserAttr::Uid => {
                return Err(e(Code::NotALlowedOnRDN, "uid names the entry; rename it with a modify DN request"));
            }
            UserAttr::ObjectClass => {
                let same = !matches!(op, LdapModifyType::Delete)
                    && vals.iter().all(|v| {
                        USER_CLASSES.iter().any(|c| c.eq_ignore_ascii_case(v))
                            || v.eq_ignore_ascii_case(schema::CUSTOM_CLASS)
                    });
                if !same {
                    return Err(e(Code::ObjectClassModsProhibited, "the object classes of users are fixed"));
                }
            }
            UserAttr::ReadOnly => {
                return Err(e(
                    Code::ConstraintViolation,
                    format!("{name} is assigned by idgate and cannot be changed"),
                ));
            }
            UserAttr::Manager | UserAttr::Custom(_) | UserAttr::Unmapped => {
                return Err(e(Code::UnwillingToPerform, format!("{name} is not stored for users by this directory")));
            }
        }
        Ok(())
    }
}

impl Session {
    /// Asks the core whether the bound identity may `action`, before the request is examined further.
    pub(super) fn authorize(&self, action: Action) -> W<()> {
        self.ctx.dir.authorize(&self.caller(), action).map(|_| ()).map_err(LdapError::from)
    }

    /// Resolves a DN to a user or group (existing or not) under the configured containers.
    pub(super) fn locate(&self, dn: &Dn) -> W<Located> {
        let s = self.ctx.settings();
        let parent = dn.parent().normalized();
        let Some(rdn) = dn.rdn() else { return Err(e(Code::UnwillingToPerform, "the Root DSE cannot be changed")) };
        if rdn.0.len() != 1 {
            return Err(e(Code::NamingViolation, "multi-valued RDNs are not supported"));
        }
        let ava = rdn.first();
        let snap = self.ctx.dir.snapshot()?;
        if parent == s.people.normalized() {
            if ava.attr != "uid" {
                return Err(e(Code::NamingViolation, format!("users are named by uid, not {}", ava.attr)));
            }
            let id = snap.user_by_login(&ava.value).map(|u| u.id.clone());
            return Ok(Located::User { id, login: ava.value.clone() });
        }
        if parent == s.groups.normalized() {
            if ava.attr != "cn" {
                return Err(e(Code::NamingViolation, format!("groups are named by cn, not {}", ava.attr)));
            }
            let id = snap.group_by_name(&ava.value).map(|g| g.id.clone());
            return Ok(Located::Group { id, name: ava.value.clone() });
        }
        let n = dn.normalized();
        if [&s.base, &s.people, &s.groups, &s.services].iter().any(|c| c.normalized() == n)
            || parent == s.services.normalized()
        {
            return Err(e(
                Code::UnwillingToPerform,
                format!("{dn} is part of idgate's fixed tree and cannot be changed"),
            ));
        }
        Err(e(Code::NoSuchObject, format!("no entry {dn}")))
    }

    /// A member value (DN, or login for memberUid) to a user or group id; `None` for DNs outside
    /// the tree, which are ignored (Keycloak adds a placeholder member to every new group).
    pub(super) fn member_id(&self, attr: &str, v: &str) -> W<Option<Member>> {
        let snap = self.ctx.dir.snapshot()?;
        let s = self.ctx.settings();
        let login = if attr == "memberUid" {
            v.to_string()
        } else {
            let dn = Dn::parse(v).map_err(|_| e(Code::InvalidAttributeSyntax, format!("{attr}: {v:?} is not a DN")))?;
            let parent = dn.parent().normalized();
            match dn.rdn().map(|r| r.first()) {
                Some(a) if parent == s.people.normalized() && a.attr == "uid" => a.value.clone(),
                Some(a) if parent == s.groups.normalized() && a.attr == "cn" => {
                    return match snap.group_by_name(&a.value) {
                        Some(g) => Ok(Some(Member::Group(g.id.clone()))),
                        None => Err(e(Code::ConstraintViolation, format!("{attr}: no group {v}"))),
                    };
                }
                _ if dn.is_within(&s.base) => {
                    return Err(e(Code::ConstraintViolation, format!("{attr}: {v} is not a user or a group")));
                }
                _ => return Ok(None),
            }
        };
        match snap.user_by_login(&login) {
            Some(u) => Ok(Some(Member::User(u.id.clone()))),
            None => Err(e(Code::ConstraintViolation, format!("{attr}: no user {v}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_edits_follow_ldap_semantics() {
        let user = User { login: "a".into(), first_name: "Ann".into(), last_name: "Lee".into(), ..Default::default() };
        let mut ed = UserEdit { user, password: None, old_password: None };
        let id = |n| schema::id(n);
        ed.apply(&LdapModifyType::Add, id("mail"), vec!["a@x".into()]).unwrap();
        let err = ed.apply(&LdapModifyType::Add, id("mail"), vec!["b@x".into()]).err().unwrap();
        assert_eq!(err.code, Code::AttributeOrValueExists);
        let err = ed.apply(&LdapModifyType::Delete, id("mail"), vec!["other@x".into()]).err().unwrap();
        assert_eq!(err.code, Code::NoSuchAttribute);
        ed.apply(&LdapModifyType::Delete, id("mail"), vec!["A@X".into()]).unwrap();
        assert_eq!(ed.user.email, "");
        ed.apply(&LdapModifyType::Replace, id("cn"), vec!["Anna Lee".into()]).unwrap();
        assert_eq!(ed.user.first_name, "Anna");
        assert_eq!(
            ed.apply(&LdapModifyType::Replace, id("cn"), vec!["Bob".into()]).err().unwrap().code,
            Code::UnwillingToPerform
        );
        assert_eq!(
            ed.apply(&LdapModifyType::Replace, id("uidNumber"), vec!["1".into()]).err().unwrap().code,
            Code::ConstraintViolation
        );
        assert_eq!(
            ed.apply(&LdapModifyType::Replace, id("uid"), vec!["b".into()]).err().unwrap().code,
            Code::NotALlowedOnRDN
        );
        assert_eq!(
            ed.apply(&LdapModifyType::Replace, id("description"), vec!["d".into()]).err().unwrap().code,
            Code::UnwillingToPerform
        );
        ed.apply(&LdapModifyType::Replace, id("preferredLanguage"), vec!["fr-FR".into()]).unwrap();
        assert_eq!(ed.user.locale.as_deref(), Some("fr_FR"));
        ed.apply(&LdapModifyType::Replace, id("pwdAccountLockedTime"), vec!["000001010000Z".into()]).unwrap();
        assert!(!ed.user.active);
    }
}
