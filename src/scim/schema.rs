//! The SCIM schemas idgate serves, built from the backend's capabilities: only what the backend
//! can store is advertised, and the same definitions drive filtering, projection and PATCH.

use serde_json::{Value, json};

use crate::backend::Capabilities;

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const BULK_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    String,
    Boolean,
    Complex,
    Reference,
    DateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    /// Only when named in `attributes`.
    Request,
}

#[derive(Debug, Clone)]
pub struct AttrDef {
    pub name: &'static str,
    pub ty: Ty,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub unique: bool,
    pub canonical: &'static [&'static str],
    pub sub: Vec<AttrDef>,
    /// Accepted from clients but neither listed in /Schemas nor returned (e.g. `emails.primary`,
    /// which the backend cannot keep per address).
    pub hidden: bool,
}

impl AttrDef {
    fn new(name: &'static str, ty: Ty) -> AttrDef {
        AttrDef {
            name,
            ty,
            multi: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            unique: false,
            canonical: &[],
            sub: Vec::new(),
            hidden: false,
        }
    }
    fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    fn read_only(mut self) -> Self {
        self.mutability = Mutability::ReadOnly;
        self
    }
    fn write_only(mut self) -> Self {
        self.mutability = Mutability::WriteOnly;
        self.returned = Returned::Never;
        self
    }
    fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    fn canonical(mut self, v: &'static [&'static str]) -> Self {
        self.canonical = v;
        self
    }
    fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    fn hidden(mut self) -> Self {
        self.hidden = true;
        self
    }
    fn sub(mut self, s: Vec<AttrDef>) -> Self {
        self.sub = s;
        self
    }

    pub fn sub_attr(&self, name: &str) -> Option<&AttrDef> {
        self.sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    pub fn writable(&self) -> bool {
        matches!(self.mutability, Mutability::ReadWrite | Mutability::WriteOnly | Mutability::Immutable)
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": match self.ty {
                Ty::String => "string",
                Ty::Boolean => "boolean",
                Ty::Complex => "complex",
                Ty::Reference => "reference",
                Ty::DateTime => "dateTime",
            },
            "multiValued": self.multi,
            "description": self.name,
            "required": self.required,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
                Returned::Request => "request",
            },
        });
        if self.ty != Ty::Complex && self.ty != Ty::Boolean {
            v["caseExact"] = json!(self.case_exact);
            v["uniqueness"] = json!(if self.unique { "server" } else { "none" });
        }
        if !self.canonical.is_empty() {
            v["canonicalValues"] = json!(self.canonical);
        }
        if self.ty == Ty::Reference {
            v["referenceTypes"] = json!(["User", "Group"]);
        }
        if !self.sub.is_empty() {
            v["subAttributes"] = Value::Array(self.sub.iter().filter(|a| !a.hidden).map(AttrDef::to_json).collect());
        }
        v
    }
}

/// One resource type as served: its core schema attributes and its (optional) extension.
#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub kind: Kind,
    pub core: Vec<AttrDef>,
    pub extension: Option<Vec<AttrDef>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
    pub fn urn(self) -> &'static str {
        match self {
            Kind::User => USER_URN,
            Kind::Group => GROUP_URN,
        }
    }
    /// Key for the externalId store.
    pub fn store_key(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
        }
    }
}

/// The attributes every resource has (RFC 7643 §3.1), not listed in `/Schemas`.
pub fn common_attr(name: &str) -> Option<AttrDef> {
    if name.eq_ignore_ascii_case("id") {
        let mut a = AttrDef::new("id", Ty::String).exact().read_only().unique();
        a.returned = Returned::Always;
        Some(a)
    } else if name.eq_ignore_ascii_case("externalId") {
        Some(AttrDef::new("externalId", Ty::String).exact())
    } else if name.eq_ignore_ascii_case("meta") {
        Some(AttrDef::new("meta", Ty::Complex).read_only().sub(vec![
            AttrDef::new("resourceType", Ty::String).read_only(),
            AttrDef::new("created", Ty::DateTime).read_only(),
            AttrDef::new("lastModified", Ty::DateTime).read_only(),
            AttrDef::new("location", Ty::Reference).read_only(),
            AttrDef::new("version", Ty::String).exact().read_only(),
        ]))
    } else {
        None
    }
}

fn member_subs(kind: &'static [&'static str]) -> Vec<AttrDef> {
    vec![
        AttrDef::new("value", Ty::String).exact(),
        AttrDef::new("$ref", Ty::Reference).exact(),
        // Clients cannot set it; returned when asked for (`attributes=members.display`).
        AttrDef::new("display", Ty::String).read_only().returned(Returned::Request),
        AttrDef::new("type", Ty::String).canonical(kind),
    ]
}

impl ResourceDef {
    pub fn user(caps: &Capabilities) -> ResourceDef {
        let core = vec![
            AttrDef::new("userName", Ty::String).required().unique(),
            AttrDef::new("name", Ty::Complex).sub(vec![
                AttrDef::new("familyName", Ty::String),
                AttrDef::new("givenName", Ty::String),
                // Derived from the two names; accepted and ignored on input.
                AttrDef::new("formatted", Ty::String).read_only().hidden(),
            ]),
            // The name, unless a client set another one (kept by the gateway).
            AttrDef::new("displayName", Ty::String),
            AttrDef::new("title", Ty::String),
            AttrDef::new("locale", Ty::String),
            // Required: the backend always has an enabled flag, so it can never be unassigned.
            AttrDef::new("active", Ty::Boolean).required(),
            AttrDef::new("password", Ty::String).write_only(),
            AttrDef::new("emails", Ty::Complex).multi().sub(vec![
                AttrDef::new("value", Ty::String),
                AttrDef::new("type", Ty::String).canonical(&["work"]),
                AttrDef::new("primary", Ty::Boolean).hidden(),
            ]),
            AttrDef::new("phoneNumbers", Ty::Complex).multi().sub(vec![
                AttrDef::new("value", Ty::String),
                AttrDef::new("type", Ty::String).canonical(&["work", "mobile"]),
            ]),
            AttrDef::new("groups", Ty::Complex).multi().read_only().sub(vec![
                AttrDef::new("value", Ty::String).exact().read_only(),
                AttrDef::new("$ref", Ty::Reference).exact().read_only(),
                AttrDef::new("display", Ty::String).read_only(),
                AttrDef::new("type", Ty::String).read_only().canonical(&["direct"]),
            ]),
        ];
        let extension = caps.employee_number.then(|| vec![AttrDef::new("employeeNumber", Ty::String)]);
        ResourceDef { kind: Kind::User, core, extension }
    }

    pub fn group() -> ResourceDef {
        let core = vec![
            AttrDef::new("displayName", Ty::String).required().unique(),
            AttrDef::new("members", Ty::Complex).multi().sub(member_subs(&["User"])),
        ];
        ResourceDef { kind: Kind::Group, core, extension: None }
    }

    pub fn extension_urn(&self) -> Option<&'static str> {
        self.extension.as_ref().map(|_| ENTERPRISE_URN)
    }

    /// Looks an attribute up, case-insensitively, in the core schema, the common attributes, or
    /// the extension (`ext = true`).
    pub fn attr(&self, ext: bool, name: &str) -> Option<AttrDef> {
        if ext {
            return self.extension.as_ref()?.iter().find(|a| a.name.eq_ignore_ascii_case(name)).cloned();
        }
        self.core.iter().find(|a| a.name.eq_ignore_ascii_case(name)).cloned().or_else(|| common_attr(name))
    }

    pub fn schema_json(&self, base: &str) -> Vec<Value> {
        let (id, name, desc) = match self.kind {
            Kind::User => (USER_URN, "User", "User Account"),
            Kind::Group => (GROUP_URN, "Group", "Group"),
        };
        let mut out = vec![schema_doc(base, id, name, desc, &self.core)];
        if let Some(ext) = &self.extension {
            out.push(schema_doc(base, ENTERPRISE_URN, "EnterpriseUser", "Enterprise User", ext));
        }
        out
    }

    pub fn resource_type_json(&self, base: &str) -> Value {
        let k = self.kind;
        let mut v = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": k.name(),
            "name": k.name(),
            "endpoint": format!("/{}", k.endpoint()),
            "description": k.name(),
            "schema": k.urn(),
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", k.name())},
        });
        if let Some(urn) = self.extension_urn() {
            v["schemaExtensions"] = json!([{"schema": urn, "required": false}]);
        }
        v
    }
}

fn schema_doc(base: &str, id: &str, name: &str, desc: &str, attrs: &[AttrDef]) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": desc,
        "attributes": attrs.iter().map(AttrDef::to_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_follows_capabilities() {
        let mut caps = Capabilities::ALL;
        assert!(ResourceDef::user(&caps).extension.is_some());
        caps.employee_number = false;
        let d = ResourceDef::user(&caps);
        assert!(d.extension.is_none());
        assert_eq!(d.schema_json("x").len(), 1);
        assert!(d.resource_type_json("x").get("schemaExtensions").is_none());
    }

    #[test]
    fn lookups_are_case_insensitive() {
        let d = ResourceDef::user(&Capabilities::ALL);
        assert_eq!(d.attr(false, "USERNAME").map(|a| a.name), Some("userName"));
        assert_eq!(d.attr(false, "externalid").map(|a| a.name), Some("externalId"));
        assert_eq!(d.attr(true, "employeenumber").map(|a| a.name), Some("employeeNumber"));
        assert!(d.attr(false, "nickName").is_none());
    }
}
