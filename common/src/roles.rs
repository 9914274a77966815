//! Who may do what in which workspace.
//!
//! A token carries the user's roles per workspace (`reader`, `contributor`,
//! `owner`, each including the ones before it) and, for operators, the
//! operator flag. `*` names every workspace. Reads need `reader`, writes
//! `contributor`, deleting a table `owner`; operators hold `owner`
//! everywhere and are the only ones the SQL sandbox lets name files.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, TarnError};

/// A role in one workspace; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads tables and lists them.
    Reader,
    /// Also writes (creates, appends to, overwrites) custom tables.
    Contributor,
    /// Also deletes custom tables.
    Owner,
}

impl Role {
    /// The role's name as tokens and messages spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Contributor => "contributor",
            Role::Owner => "owner",
        }
    }

    /// Parses `reader`, `contributor` or `owner`.
    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "reader" => Some(Role::Reader),
            "contributor" => Some(Role::Contributor),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a caller may do: roles per workspace, and whether they operate the
/// deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Workspace (or `*`) to role.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, Role>,
    /// Operators hold owner everywhere and may name files in SQL.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub operator: bool,
}

impl Grants {
    /// Owner of every workspace (dev mode), not an operator.
    pub fn owner_everywhere() -> Self {
        Self {
            roles: BTreeMap::from([("*".to_string(), Role::Owner)]),
            operator: false,
        }
    }

    /// Parses `workspace=role` (or `*=role`) specs, as `tarn token --role` takes them.
    pub fn parse_specs<'a>(
        specs: impl IntoIterator<Item = &'a str>,
        operator: bool,
    ) -> Result<Self, String> {
        let mut roles = BTreeMap::new();
        for spec in specs {
            let (ws, role) = spec
                .split_once('=')
                .ok_or_else(|| format!("role {spec:?} is not <workspace>=<role>"))?;
            let ws = ws.trim();
            if ws.is_empty() {
                return Err(format!("role {spec:?} names no workspace (use * for all)"));
            }
            let role = Role::parse(role).ok_or_else(|| {
                format!("role {role:?} in {spec:?} is not reader, contributor or owner")
            })?;
            roles.insert(ws.to_string(), role);
        }
        Ok(Self { roles, operator })
    }

    /// The caller's role in `workspace`: the workspace's own entry, else
    /// the `*` entry; operators are owners everywhere.
    pub fn role_in(&self, workspace: &str) -> Option<Role> {
        if self.operator {
            return Some(Role::Owner);
        }
        let own = self.roles.get(workspace).copied();
        let all = self.roles.get("*").copied();
        own.max(all)
    }

    /// Whether the caller sees `workspace` at all.
    pub fn sees(&self, workspace: &str) -> bool {
        self.role_in(workspace).is_some()
    }

    /// Refuses unless the caller holds `needed` in `workspace`, naming the
    /// role that is missing. A caller with no role at all gets the answer
    /// an unknown workspace gets, so workspaces they may not see stay
    /// invisible.
    pub fn require(&self, workspace: &str, needed: Role, action: &str) -> Result<(), TarnError> {
        match self.role_in(workspace) {
            Some(r) if r >= needed => Ok(()),
            Some(r) => Err(TarnError::new(
                ErrorCode::AccessDenied,
                format!(
                    "{action} in workspace '{workspace}' needs the {needed} role; you hold {r}"
                ),
            )
            .with_fix(format!(
                "ask an owner of '{workspace}' for the {needed} role (a token minted with --role {workspace}={needed})"
            ))),
            None => Err(TarnError::new(
                ErrorCode::WorkspaceNotFound,
                format!(
                    "workspace '{workspace}' does not exist or you hold no role in it ({action} needs {needed})"
                ),
            )
            .with_fix(format!(
                "check the name with SHOW SCHEMAS; if it exists, ask its owner for the {needed} role"
            ))),
        }
    }

    /// What two credentials may both do: per workspace, the lower of the
    /// two roles (none if either holds none); an operator only if both
    /// are. A kernel runs each cell with the meet of the grants it was
    /// started with and those of the credential that sent the cell, so a
    /// downgraded or narrower token never borrows the kernel's roles.
    pub fn meet(&self, other: &Grants) -> Grants {
        let mut names: Vec<&str> = self
            .roles
            .keys()
            .chain(other.roles.keys())
            .map(String::as_str)
            .collect();
        names.push("*");
        let roles = names
            .into_iter()
            .filter_map(|ws| {
                // `None` sorts below every role, so `min` drops a workspace
                // either side cannot see.
                let r = self.role_in(ws).min(other.role_in(ws))?;
                Some((ws.to_string(), r))
            })
            .collect();
        Grants {
            roles,
            operator: self.operator && other.operator,
        }
    }

    /// A short description for logs and `tarn token`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.roles.iter().map(|(w, r)| format!("{w}={r}")).collect();
        if self.operator {
            parts.push("operator".into());
        }
        if parts.is_empty() {
            "no roles".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_lower_ones_and_star_covers_every_workspace() {
        let g = Grants::parse_specs(["*=reader", "soc=owner"], false).unwrap();
        assert_eq!(g.role_in("soc"), Some(Role::Owner));
        assert_eq!(g.role_in("demo"), Some(Role::Reader));
        assert!(g.require("soc", Role::Contributor, "writing").is_ok());
        let e = g.require("demo", Role::Contributor, "writing").unwrap_err();
        assert_eq!(e.code, ErrorCode::AccessDenied);
        assert!(e.message.contains("contributor"), "{}", e.message);
    }

    #[test]
    fn the_meet_holds_the_lower_role_in_every_workspace() {
        let owner = Grants::parse_specs(["*=owner"], false).unwrap();
        let reader = Grants::parse_specs(["*=reader"], false).unwrap();
        let m = owner.meet(&reader);
        assert_eq!(m.role_in("demo"), Some(Role::Reader));
        assert_eq!(m.role_in("anything"), Some(Role::Reader));
        assert_eq!(m, reader.meet(&owner));
        // Narrower on one side, wider on the other.
        let a = Grants::parse_specs(["soc=owner", "*=reader"], false).unwrap();
        let b = Grants::parse_specs(["soc=contributor", "hr=owner"], false).unwrap();
        let m = a.meet(&b);
        assert_eq!(m.role_in("soc"), Some(Role::Contributor));
        assert_eq!(m.role_in("hr"), Some(Role::Reader));
        assert_eq!(m.role_in("demo"), None);
        // An operator side leaves the other side's grants; both: operator.
        let op = Grants::parse_specs([], true).unwrap();
        assert_eq!(op.meet(&b).role_in("soc"), Some(Role::Contributor));
        assert!(!op.meet(&b).operator);
        assert!(op.meet(&op).operator);
        assert_eq!(op.meet(&Grants::default()).role_in("soc"), None);
    }

    #[test]
    fn no_role_looks_like_no_workspace() {
        let g = Grants::parse_specs(["soc=reader"], false).unwrap();
        assert!(!g.sees("hr"));
        let e = g.require("hr", Role::Reader, "reading").unwrap_err();
        assert_eq!(e.code, ErrorCode::WorkspaceNotFound);
        assert!(Grants::parse_specs(["soc"], false).is_err());
        assert!(Grants::parse_specs(["soc=admin"], false).is_err());
        let op = Grants::parse_specs([], true).unwrap();
        assert_eq!(op.role_in("anything"), Some(Role::Owner));
    }
}
