//! Permission names and the built-in roles (API.md §6, Klipfolio's names): the enums and
//! what each role grants are the domain's ([`domain::accounts::Permission`],
//! [`domain::accounts::BuiltinRole`]); these are the names the API validates against.

pub use domain::accounts::{builtin_permissions as permissions_of, BuiltinRole, Permission};
use std::collections::BTreeSet;

/// Every permission's name, in the order API.md lists them.
pub const PERMISSIONS: &[&str] = Permission::NAMES;

/// The built-in roles' ids.
pub const BUILTIN_ROLES: &[&str] = BuiltinRole::NAMES;

/// The permissions of a built-in role; `None` for other role ids.
pub fn builtin_role(role: &str) -> Option<BTreeSet<Permission>> {
    BuiltinRole::parse(role).map(BuiltinRole::permissions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roles() {
        let admin = builtin_role("admin").unwrap();
        let editor = builtin_role("editor").unwrap();
        assert_eq!(admin.len(), PERMISSIONS.len());
        assert!(!editor.contains(&Permission::UserManage));
        assert!(!editor.contains(&Permission::ClientAccess));
        assert!(editor.contains(&Permission::DashboardPublish));
        assert!(editor.contains(&Permission::ApiKeyManage));
        assert!(!editor.contains(&Permission::AuditRead));
        // An editor holds every permission but users, the audit log and client accounts.
        let others = PERMISSIONS
            .iter()
            .filter(|p| **p != "user.manage" && **p != "audit.read" && !p.starts_with("client."))
            .count();
        assert_eq!(editor.len(), others);
        assert_eq!(
            builtin_role("viewer")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![Permission::ReportDownload]
        );
        assert!(builtin_role("owner").is_none());
    }

    #[test]
    fn permissions_order_and_show_by_name_as_they_always_did() {
        let set: BTreeSet<Permission> = [Permission::UserManage, Permission::AlertManage]
            .into_iter()
            .collect();
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"["alert.manage","user.manage"]"#
        );
        for name in PERMISSIONS {
            assert_eq!(Permission::parse(name).map(Permission::as_str), Some(*name));
        }
        assert!(serde_json::from_str::<Permission>(r#""nope.manage""#).is_err());
    }
}
