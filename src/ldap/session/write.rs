//! LDAP writes: Add, Modify, Delete, ModifyDN and the Password Modify extended operation.
//! Every request is validated completely (rights, schema, attribute semantics) before the first
//! backend call; the directory then applies it backend-first. When a request needs several backend
//! calls and one fails, the answer says exactly which parts were applied.

use std::collections::BTreeSet;

use ldap3_proto::proto::{
    LdapAddRequest, LdapExtendedRequest, LdapExtendedResponse, LdapModify, LdapModifyDNRequest, LdapModifyRequest,
    LdapModifyType, LdapPasswordModifyRequest, LdapPasswordModifyResponse, LdapResult, LdapResultCode as Code,
};

use super::{Identity, Session, res};
use crate::directory::{Action, DirectoryError, GroupEdit, GroupSpec, UserEdit as CoreUserEdit, UserSpec};
use crate::ldap::dn::Dn;
use crate::ldap::error::LdapError;
use crate::ldap::schema::{self, AttrId};
use crate::model::{NewGroup, NewUser, User, UserChanges};

type W<T> = Result<T, LdapError>;

fn e(code: Code, msg: impl Into<String>) -> LdapError {
    LdapError::new(code, msg)
}

fn ok() -> LdapResult {
    res(Code::Success, "")
}

/// What a DN names, for a write.
enum Located {
    User { id: Option<String>, login: String },
    Group { id: Option<String>, name: String },
}

/// How a user attribute is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UserField {
    First,
    Last,
    Mail,
    Phone,
    Mobile,
    Title,
    EmployeeNumber,
    Language,
}

enum UserAttr {
    Field(UserField),
    /// cn / displayName: derived from givenName and sn.
    FullName,
    Password,
    Locked,
    Uid,
    ObjectClass,
    /// Assigned by idgate or operational.
    ReadOnly,
    /// Known to the schema but not stored for users.
    Unmapped,
}

fn user_attr(id: AttrId) -> UserAttr {
    match schema::def(id).name {
        "givenName" => UserAttr::Field(UserField::First),
        "sn" => UserAttr::Field(UserField::Last),
        "mail" => UserAttr::Field(UserField::Mail),
        "telephoneNumber" => UserAttr::Field(UserField::Phone),
        "mobile" => UserAttr::Field(UserField::Mobile),
        "title" => UserAttr::Field(UserField::Title),
        "employeeNumber" => UserAttr::Field(UserField::EmployeeNumber),
        "preferredLanguage" => UserAttr::Field(UserField::Language),
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

const USER_CLASSES: &[&str] = &["top", "person", "organizationalPerson", "inetOrgPerson", "posixAccount"];
const GROUP_CLASSES: &[&str] = &["top", "groupOfNames", "groupOfUniqueNames", "posixGroup"];

fn get_field(u: &User, f: UserField) -> String {
    match f {
        UserField::First => u.first_name.clone(),
        UserField::Last => u.last_name.clone(),
        UserField::Mail => u.email.clone(),
        UserField::Phone => u.phone.clone().unwrap_or_default(),
        UserField::Mobile => u.mobile.clone().unwrap_or_default(),
        UserField::Title => u.title.clone().unwrap_or_default(),
        UserField::EmployeeNumber => u.employee_number.clone().unwrap_or_default(),
        UserField::Language => u.locale.clone().map(|l| l.replace('_', "-")).unwrap_or_default(),
    }
}

fn set_field(u: &mut User, f: UserField, v: String) {
    let opt = if v.is_empty() { None } else { Some(v.clone()) };
    match f {
        UserField::First => u.first_name = v,
        UserField::Last => u.last_name = v,
        UserField::Mail => u.email = v,
        UserField::Phone => u.phone = opt,
        UserField::Mobile => u.mobile = opt,
        UserField::Title => u.title = opt,
        UserField::EmployeeNumber => u.employee_number = opt,
        // Backends store locales as fr_FR; LDAP speaks language tags (fr-FR).
        UserField::Language => u.locale = opt.map(|l| l.replace('-', "_")),
    }
}

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
    }
}

fn utf8(attr: &str, v: &[u8]) -> W<String> {
    String::from_utf8(v.to_vec()).map_err(|_| e(Code::InvalidAttributeSyntax, format!("{attr}: value is not UTF-8")))
}

fn values(attr: &str, vals: &[Vec<u8>]) -> W<Vec<String>> {
    vals.iter().map(|v| utf8(attr, v)).collect()
}

/// Pending changes to one user, built up by the request's modifications.
struct UserEdit {
    user: User,
    password: Option<String>,
    old_password: Option<String>,
}

impl UserEdit {
    fn apply(&mut self, op: &LdapModifyType, id: AttrId, vals: Vec<String>) -> W<()> {
        let name = schema::def(id).name;
        match user_attr(id) {
            UserAttr::Field(f) => {
                let cur = get_field(&self.user, f);
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
                set_field(&mut self.user, f, new);
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
                    && vals.iter().all(|v| USER_CLASSES.iter().any(|c| c.eq_ignore_ascii_case(v)));
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
            UserAttr::Unmapped => {
                return Err(e(Code::UnwillingToPerform, format!("{name} is not stored for users by this directory")));
            }
        }
        Ok(())
    }
}

fn generate_password() -> String {
    use rand::Rng;
    const SETS: [&[u8]; 4] = [b"ABCDEFGHJKLMNPQRSTUVWXYZ", b"abcdefghijkmnopqrstuvwxyz", b"23456789", b"-_.!+="];
    let mut rng = rand::rng();
    let mut out: Vec<u8> = SETS.iter().map(|s| s[rng.random_range(0..s.len())]).collect();
    let all: Vec<u8> = SETS.concat();
    while out.len() < 20 {
        out.push(all[rng.random_range(0..all.len())]);
    }
    for i in (1..out.len()).rev() {
        out.swap(i, rng.random_range(0..=i));
    }
    String::from_utf8(out).unwrap_or_default()
}

impl Session {
    /// Asks the core whether the bound identity may `action`, before the request is examined further.
    fn authorize(&self, action: Action) -> W<()> {
        self.ctx.dir.authorize(&self.caller(), action).map(|_| ()).map_err(LdapError::from)
    }

    /// Resolves a DN to a user or group (existing or not) under the configured containers.
    fn locate(&self, dn: &Dn) -> W<Located> {
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

    /// A member value (DN or login) to a user id; `None` for DNs outside the tree, which are ignored
    /// (Keycloak adds a placeholder member to every new group).
    fn member_id(&self, attr: &str, v: &str) -> W<Option<String>> {
        let snap = self.ctx.dir.snapshot()?;
        let login = if attr == "memberUid" {
            v.to_string()
        } else {
            let dn = Dn::parse(v).map_err(|_| e(Code::InvalidAttributeSyntax, format!("{attr}: {v:?} is not a DN")))?;
            let s = self.ctx.settings();
            let under_people = dn.parent().normalized() == s.people.normalized();
            match dn.rdn().map(|r| r.first()) {
                Some(a) if under_people && a.attr == "uid" => a.value.clone(),
                _ if dn.is_within(&s.base) => {
                    return Err(e(Code::ConstraintViolation, format!("{attr}: {v} is not a user")));
                }
                _ => return Ok(None),
            }
        };
        match snap.user_by_login(&login) {
            Some(u) => Ok(Some(u.id.clone())),
            None => Err(e(Code::ConstraintViolation, format!("{attr}: no user {v}"))),
        }
    }

    // ---- Add --------------------------------------------------------------------------------

    pub(super) async fn add(&mut self, req: &LdapAddRequest) -> W<LdapResult> {
        let dn = Dn::parse(&req.dn).map_err(|x| e(Code::InvalidDNSyntax, x.to_string()))?;
        let mut attrs: Vec<(AttrId, Vec<String>)> = Vec::new();
        for a in &req.attributes {
            let id = schema::lookup(&a.atype)
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
                if !classes.iter().any(|c| {
                    ["person", "organizationalPerson", "inetOrgPerson"].iter().any(|k| k.eq_ignore_ascii_case(c))
                }) {
                    return Err(e(Code::ObjectClassViolation, "a user needs objectClass inetOrgPerson (or person)"));
                }
                if let Some(bad) = classes.iter().find(|c| !USER_CLASSES.iter().any(|k| k.eq_ignore_ascii_case(c))) {
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
                for (id, vals) in &attrs {
                    match user_attr(*id) {
                        // uid is the RDN; the object classes were checked above; POSIX attributes
                        // required by posixAccount are accepted and then assigned by idgate.
                        UserAttr::Uid | UserAttr::ObjectClass => {}
                        UserAttr::ReadOnly
                            if ["uidNumber", "gidNumber", "homeDirectory", "loginShell", "gecos"]
                                .contains(&schema::def(*id).name) => {}
                        UserAttr::FullName => full_names.extend(vals.iter().cloned()),
                        _ => edit.apply(&LdapModifyType::Replace, *id, vals.clone())?,
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
                                if let Some(uid) = self.member_id(an, v)? {
                                    members.insert(uid);
                                }
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
                let new = NewGroup { name, description, members: members.into_iter().collect() };
                self.ctx.dir.create_group(&self.caller(), GroupSpec { new, ..Default::default() }).await?;
                Ok(ok())
            }
        }
    }

    // ---- Modify -----------------------------------------------------------------------------

    pub(super) async fn modify(&mut self, req: &LdapModifyRequest) -> W<LdapResult> {
        let dn = Dn::parse(&req.dn).map_err(|x| e(Code::InvalidDNSyntax, x.to_string()))?;
        let mut changes: Vec<(&LdapModify, AttrId, Vec<String>)> = Vec::new();
        for m in &req.changes {
            let a = &m.modification;
            let id = schema::lookup(&a.atype)
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
        let decide = |snap: &crate::directory::Snapshot, idx: usize| -> W<CoreUserEdit> {
            let current = snap.user(idx);
            let mut edit = UserEdit { user: (**current).clone(), password: None, old_password: None };
            for (m, attr, vals) in changes {
                edit.apply(&m.operation, *attr, vals.clone())?;
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
        let mut resolved: Vec<Vec<String>> = Vec::with_capacity(changes.len());
        for (_, attr, vals) in changes {
            let an = schema::def(*attr).name;
            let mut ids = Vec::new();
            if matches!(an, "member" | "uniqueMember" | "memberUid") {
                for v in vals {
                    if let Some(uid) = self.member_id(an, v)? {
                        ids.push(uid);
                    }
                }
            }
            resolved.push(ids);
        }
        let decide = |snap: &crate::directory::Snapshot, gi: usize| -> W<GroupEdit> {
            let group = snap.group(gi);
            let current: BTreeSet<String> = snap.member_ids(gi).into_iter().collect();
            // Each membership attribute is edited on its own copy, with LDAP semantics; they must agree.
            let mut edited: Vec<(&str, BTreeSet<String>)> = Vec::new();
            let mut description = group.description.clone();
            for ((m, attr, vals), ids) in changes.iter().zip(&resolved) {
                let an = schema::def(*attr).name;
                let ids = ids.clone();
                match an {
                    "member" | "uniqueMember" | "memberUid" => {
                        let pos = match edited.iter().position(|(n, _)| *n == an) {
                            Some(p) => p,
                            None => {
                                edited.push((an, current.clone()));
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
            let target = match edited.as_slice() {
                [] => current.clone(),
                [(_, first), rest @ ..] => {
                    if rest.iter().any(|(_, s)| s != first) {
                        return Err(e(
                            Code::ConstraintViolation,
                            "member, uniqueMember and memberUid must name the same users",
                        ));
                    }
                    first.clone()
                }
            };
            Ok(GroupEdit {
                description: Some(description),
                members: (!edited.is_empty()).then_some(target),
                ..Default::default()
            })
        };
        self.ctx.dir.edit_group(&self.caller(), id, decide).await?;
        Ok(ok())
    }

    // ---- Delete -----------------------------------------------------------------------------

    pub(super) async fn delete(&mut self, dn: &str) -> W<LdapResult> {
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

    // ---- ModifyDN ---------------------------------------------------------------------------

    pub(super) async fn modify_dn(&mut self, req: &LdapModifyDNRequest) -> W<LdapResult> {
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

    // ---- Password Modify (RFC 3062) ---------------------------------------------------------

    pub(super) async fn password_modify(&mut self, x: &LdapExtendedRequest) -> LdapExtendedResponse {
        let fail = |err: LdapError| LdapExtendedResponse {
            res: LdapResult { code: err.code, matcheddn: String::new(), message: err.message, referral: Vec::new() },
            name: None,
            value: None,
        };
        match self.password_modify_inner(x).await {
            // Without a generated password the response carries no value at all, as RFC 3062 allows
            // and OpenLDAP does; clients try to parse an empty one and complain.
            Ok(None) => LdapExtendedResponse { res: ok(), name: None, value: None },
            Ok(generated) => LdapPasswordModifyResponse { res: ok(), gen_password: generated }.into(),
            Err(err) => fail(err),
        }
    }

    async fn password_modify_inner(&mut self, x: &LdapExtendedRequest) -> W<Option<String>> {
        let req = LdapPasswordModifyRequest::try_from(x)
            .map_err(|_| e(Code::ProtocolError, "malformed password modify request"))?;
        let snap = self.ctx.dir.snapshot()?;
        let target = match (&req.user_identity, &self.identity) {
            (None, Identity::User { id, .. }) => {
                snap.user_by_id(id).cloned().ok_or_else(|| e(Code::NoSuchObject, "your account no longer exists"))?
            }
            (None, _) => return Err(e(Code::UnwillingToPerform, "no userIdentity given and not bound as a user")),
            (Some(ident), _) => {
                let ident = ident.strip_prefix("dn:").unwrap_or(ident);
                let login = if let Some(l) = ident.strip_prefix("u:") {
                    l.to_string()
                } else if ident.contains('=') {
                    let dn = Dn::parse(ident).map_err(|x| e(Code::InvalidDNSyntax, x.to_string()))?;
                    match self.locate(&dn)? {
                        Located::User { login, .. } => login,
                        Located::Group { .. } => return Err(e(Code::UnwillingToPerform, "groups have no password")),
                    }
                } else {
                    ident.to_string()
                };
                snap.user_by_login(&login).cloned().ok_or_else(|| e(Code::NoSuchObject, format!("no user {ident}")))?
            }
        };
        // Who may, and whether the old password must be proven, is the core's decision.
        self.ctx.dir.authorize(&self.caller(), Action::SetPassword)?;
        let (new, generated) = match req.new_password {
            Some(p) => (p, None),
            None => {
                let p = generate_password();
                (p.clone(), Some(p))
            }
        };
        self.ctx.dir.set_password(&self.caller(), &target.id, &new, req.old_password.as_deref()).await?;
        Ok(generated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_mix_classes() {
        for _ in 0..50 {
            let p = generate_password();
            assert_eq!(p.len(), 20);
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
            assert!(p.chars().any(|c| !c.is_ascii_alphanumeric()));
        }
    }

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
