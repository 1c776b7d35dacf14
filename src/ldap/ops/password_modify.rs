//! The Password Modify extended operation (RFC 3062).

use ldap3_proto::proto::{
    LdapExtendedRequest, LdapExtendedResponse, LdapPasswordModifyRequest, LdapPasswordModifyResponse, LdapResult,
    LdapResultCode as Code,
};

use super::write_common::{Located, W, e, ok};
use crate::directory::Action;
use crate::ldap::dn::Dn;
use crate::ldap::error::LdapError;
use crate::ldap::session::{Identity, Session};

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
    pub(in crate::ldap) async fn password_modify(&mut self, x: &LdapExtendedRequest) -> LdapExtendedResponse {
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
}
