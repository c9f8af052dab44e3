//! Permission names and the built-in roles (API.md §6, Klipfolio's names).

use std::collections::BTreeSet;

pub const PERMISSIONS: &[&str] = &[
    "user.manage",
    "client.build",
    "client.access",
    "client.edit",
    "client.share",
    "client.delete",
    "audit.read",
    "api_key.manage",
    "dashboard.build",
    "dashboard.edit",
    "dashboard.delete",
    "dashboard.share",
    "dashboard.publish",
    "klip.build",
    "klip.edit",
    "klip.delete",
    "klip.share",
    "datasource.create",
    "datasource.edit",
    "datasource.delete",
    "datasource.refresh",
    "datasource.download",
    "datasource.share",
    "report.build",
    "report.edit",
    "report.delete",
    "report.generate",
    "report.download",
    "channel.manage",
    "alert.manage",
];

pub const BUILTIN_ROLES: &[&str] = &["admin", "editor", "viewer"];

/// The permissions of a built-in role; `None` for other role ids.
pub fn builtin_role(role: &str) -> Option<BTreeSet<String>> {
    let keep: Box<dyn Fn(&str) -> bool> = match role {
        "admin" => Box::new(|_| true),
        "editor" => {
            Box::new(|p| p != "user.manage" && p != "audit.read" && !p.starts_with("client."))
        }
        "viewer" => Box::new(|p| p == "report.download"),
        _ => return None,
    };
    Some(
        PERMISSIONS
            .iter()
            .filter(|p| keep(p))
            .map(|p| p.to_string())
            .collect(),
    )
}

/// Union of the permissions of `roles` (unknown roles add nothing).
pub fn permissions_of(roles: &[String]) -> BTreeSet<String> {
    roles
        .iter()
        .filter_map(|r| builtin_role(r))
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roles() {
        let admin = builtin_role("admin").unwrap();
        let editor = builtin_role("editor").unwrap();
        assert_eq!(admin.len(), PERMISSIONS.len());
        assert!(!editor.contains("user.manage") && !editor.contains("client.access"));
        assert!(editor.contains("dashboard.publish") && editor.contains("api_key.manage"));
        assert_eq!(
            builtin_role("viewer")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec!["report.download"]
        );
        assert!(builtin_role("owner").is_none());
    }
}
