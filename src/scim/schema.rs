//! The SCIM schemas idgate serves, built from the backend's capabilities: only what the backend
//! can store is advertised, and the same definitions drive filtering, projection and PATCH.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

use crate::backend::Capabilities;
use crate::config::{AttributeSyntax, CustomAttribute};

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
    Integer,
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
                Ty::Integer => "integer",
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
        if !matches!(self.ty, Ty::Complex | Ty::Boolean | Ty::Integer | Ty::DateTime) {
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

/// An extension schema of a resource type (RFC 7643 §3.3): its attributes live in an object
/// named by its URN.
#[derive(Debug, Clone)]
pub struct Extension {
    pub urn: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attrs: Vec<AttrDef>,
}

/// One resource type as served: its core schema attributes and its extensions (only those with
/// attributes the backend can hold), and the custom attributes behind the custom extension.
#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub kind: Kind,
    pub core: Vec<AttrDef>,
    pub extensions: Vec<Extension>,
    /// `[[directory.attributes]]`, published in the extension `custom_urn`.
    pub custom: Arc<[CustomAttribute]>,
    pub custom_urn: Option<&'static str>,
}

/// What the user resource publishes beyond the backend's capabilities: the configured custom
/// attributes, under which extension URN.
#[derive(Debug, Clone, Copy)]
pub struct UserSchemaInput<'a> {
    pub caps: &'a Capabilities,
    pub custom: &'a [CustomAttribute],
    pub custom_urn: &'a str,
}

/// Attribute names and URNs from the configuration, as the `&'static str` the definitions use.
/// The set is bounded by the configuration, so each distinct text is allocated once.
pub fn intern(s: &str) -> &'static str {
    static SET: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let mut set = SET.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = set.get(s) {
        return k;
    }
    let k: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(k);
    k
}

/// The SCIM definition of a custom attribute.
fn custom_attr_def(a: &CustomAttribute, writable: bool) -> AttrDef {
    let ty = match a.syntax {
        AttributeSyntax::String => Ty::String,
        AttributeSyntax::Integer => Ty::Integer,
        AttributeSyntax::Boolean => Ty::Boolean,
        AttributeSyntax::Date => Ty::DateTime,
    };
    let mut d = AttrDef::new(intern(a.scim_name()), ty);
    d.multi = a.multi;
    if !(writable && a.writable) {
        d.mutability = Mutability::ReadOnly;
    }
    d
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
    /// The user resource of a backend with `caps` and no custom attributes.
    pub fn user(caps: &Capabilities) -> ResourceDef {
        ResourceDef::user_with(UserSchemaInput { caps, custom: &[], custom_urn: "" })
    }

    pub fn user_with(input: UserSchemaInput<'_>) -> ResourceDef {
        let caps = input.caps;
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
                // direct: the user is a member; indirect: through nested groups (RFC 7643 §4.1.2).
                AttrDef::new("type", Ty::String).read_only().canonical(&["direct", "indirect"]),
            ]),
        ];
        let mut enterprise = Vec::new();
        if caps.employee_number {
            enterprise.push(AttrDef::new("employeeNumber", Ty::String));
        }
        if caps.manager {
            // RFC 7643 §4.3: the manager's id, its location, and its display name (read-only).
            enterprise.push(AttrDef::new("manager", Ty::Complex).sub(vec![
                AttrDef::new("value", Ty::String).exact(),
                AttrDef::new("$ref", Ty::Reference).exact(),
                // Returned when asked for (`attributes=manager`): clients that compare what they
                // wrote with what comes back do not expect a value they did not send.
                AttrDef::new("displayName", Ty::String).read_only().returned(Returned::Request),
            ]));
        }
        let mut extensions = Vec::new();
        if !enterprise.is_empty() {
            extensions.push(Extension {
                urn: ENTERPRISE_URN,
                name: "EnterpriseUser",
                description: "Enterprise User",
                attrs: enterprise,
            });
        }
        let mut custom_urn = None;
        if !input.custom.is_empty() {
            let urn = intern(input.custom_urn);
            custom_urn = Some(urn);
            extensions.push(Extension {
                urn,
                name: "CustomUser",
                description: "Attributes from the backend's own fields",
                attrs: input.custom.iter().map(|a| custom_attr_def(a, caps.custom_fields)).collect(),
            });
        }
        ResourceDef { kind: Kind::User, core, extensions, custom: input.custom.into(), custom_urn }
    }

    /// The group resource; member groups are advertised where the backend nests groups.
    pub fn group(caps: &Capabilities) -> ResourceDef {
        let types: &'static [&'static str] = if caps.nested_groups { &["User", "Group"] } else { &["User"] };
        let core = vec![
            AttrDef::new("displayName", Ty::String).required().unique(),
            AttrDef::new("members", Ty::Complex).multi().sub(member_subs(types)),
        ];
        ResourceDef { kind: Kind::Group, core, extensions: Vec::new(), custom: Arc::new([]), custom_urn: None }
    }

    /// The extension with this URN (case-insensitive).
    pub fn extension(&self, urn: &str) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.urn.eq_ignore_ascii_case(urn))
    }

    /// Looks an attribute up, case-insensitively: in the extension `urn`, or (`None`) in the core
    /// schema and the common attributes.
    pub fn attr(&self, urn: Option<&str>, name: &str) -> Option<AttrDef> {
        if let Some(urn) = urn {
            return self.extension(urn)?.attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name)).cloned();
        }
        self.core.iter().find(|a| a.name.eq_ignore_ascii_case(name)).cloned().or_else(|| common_attr(name))
    }

    /// The extension holding an attribute named without a URN: the one extension that has it,
    /// when the core schema does not.
    pub fn extension_of(&self, name: &str) -> Option<&'static str> {
        if self.attr(None, name).is_some() {
            return None;
        }
        let mut holders = self.extensions.iter().filter(|e| e.attrs.iter().any(|a| a.name.eq_ignore_ascii_case(name)));
        let first = holders.next()?;
        holders.next().is_none().then_some(first.urn)
    }

    /// The custom attribute behind a SCIM attribute of the custom extension.
    pub fn custom_attr(&self, scim_name: &str) -> Option<&CustomAttribute> {
        self.custom.iter().find(|a| a.scim_name().eq_ignore_ascii_case(scim_name))
    }

    pub fn schema_json(&self, base: &str) -> Vec<Value> {
        let (id, name, desc) = match self.kind {
            Kind::User => (USER_URN, "User", "User Account"),
            Kind::Group => (GROUP_URN, "Group", "Group"),
        };
        let mut out = vec![schema_doc(base, id, name, desc, &self.core)];
        for e in &self.extensions {
            out.push(schema_doc(base, e.urn, e.name, e.description, &e.attrs));
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
        if !self.extensions.is_empty() {
            v["schemaExtensions"] =
                self.extensions.iter().map(|e| json!({"schema": e.urn, "required": false})).collect::<Value>();
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
        assert!(ResourceDef::user(&caps).extension(ENTERPRISE_URN).is_some());
        caps.employee_number = false;
        let d = ResourceDef::user(&caps);
        assert!(d.attr(Some(ENTERPRISE_URN), "manager").is_some(), "the manager alone keeps the extension");
        caps.manager = false;
        let d = ResourceDef::user(&caps);
        assert!(d.extensions.is_empty());
        assert_eq!(d.schema_json("x").len(), 1);
        assert!(d.resource_type_json("x").get("schemaExtensions").is_none());
    }

    #[test]
    fn lookups_are_case_insensitive() {
        let d = ResourceDef::user(&Capabilities::ALL);
        assert_eq!(d.attr(None, "USERNAME").map(|a| a.name), Some("userName"));
        assert_eq!(d.attr(None, "externalid").map(|a| a.name), Some("externalId"));
        assert_eq!(d.attr(Some(ENTERPRISE_URN), "employeenumber").map(|a| a.name), Some("employeeNumber"));
        assert!(d.attr(None, "nickName").is_none());
        assert_eq!(d.extension_of("MANAGER"), Some(ENTERPRISE_URN));
        assert_eq!(d.extension_of("userName"), None);
    }

    #[test]
    fn custom_extension_lists_the_configured_attributes() {
        let attr = |name: &str, syntax, writable| CustomAttribute {
            name: name.into(),
            field: name.to_lowercase(),
            scim_name: None,
            syntax,
            multi: false,
            separator: ",".into(),
            writable,
            indexed: true,
        };
        let custom =
            [attr("costCenter", AttributeSyntax::String, true), attr("badge", AttributeSyntax::Integer, false)];
        let urn = "urn:example:custom";
        let d = ResourceDef::user_with(UserSchemaInput { caps: &Capabilities::ALL, custom: &custom, custom_urn: urn });
        let docs = d.schema_json("b");
        let doc = docs.iter().find(|s| s["id"] == urn).expect("custom schema listed");
        assert_eq!(doc["attributes"][0]["name"], "costCenter");
        assert_eq!(doc["attributes"][0]["caseExact"], false);
        assert_eq!(doc["attributes"][0]["mutability"], "readWrite");
        assert_eq!(doc["attributes"][1]["type"], "integer");
        assert_eq!(doc["attributes"][1]["mutability"], "readOnly");
        let rt = d.resource_type_json("b");
        assert_eq!(rt["schemaExtensions"][1], json!({"schema": urn, "required": false}));
        assert_eq!(d.extension_of("costcenter"), Some(urn));
        let mut caps = Capabilities::ALL;
        caps.custom_fields = false;
        let d = ResourceDef::user_with(UserSchemaInput { caps: &caps, custom: &custom, custom_urn: urn });
        assert_eq!(d.attr(Some(urn), "costCenter").map(|a| a.mutability), Some(Mutability::ReadOnly));
    }
}
