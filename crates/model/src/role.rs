//! Password roles (PlanetScale's password-roles page) and the MySQL grants that enforce them.
//!
//! Each branch instance has one internal MySQL user per role; a password maps to its role's user, so
//! the engine itself enforces what a role may do.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Writer,
    Readwriter,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Writer, Role::Readwriter, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Readwriter => "readwriter",
            Role::Admin => "admin",
        }
    }

    /// The human description the CLI shows beside the role.
    pub fn description(self) -> &'static str {
        match self {
            Role::Reader => "Can Read",
            Role::Writer => "Can Write",
            Role::Readwriter => "Can Read & Write",
            Role::Admin => "Can Read, Write & Administer",
        }
    }

    /// The instance's internal MySQL user for this role.
    pub fn internal_user(self) -> String {
        format!("strata_{}", self.as_str())
    }

    /// Privileges on the database's schema, as they appear in `GRANT … ON db.*`, on a branch with
    /// or without safe migrations. The server enforces them whatever the SQL looks like: an admin
    /// changes the schema only where safe migrations are off, and no role may create stored
    /// routines, triggers or events (not part of a branch's schema) or grant anything.
    pub fn privileges(self, safe_migrations: bool) -> String {
        match (self, safe_migrations) {
            (Role::Reader, _) => "SELECT, SHOW VIEW".into(),
            (Role::Writer, _) => "INSERT, UPDATE, DELETE".into(),
            (Role::Readwriter, _) => READWRITE.into(),
            (Role::Admin, true) => READWRITE.into(),
            (Role::Admin, false) => format!("{READWRITE}, {SCHEMA_CHANGES}"),
        }
    }
}

const READWRITE: &str =
    "SELECT, INSERT, UPDATE, DELETE, SHOW VIEW, EXECUTE, CREATE TEMPORARY TABLES, LOCK TABLES";

/// What an admin password loses while safe migrations are on (`TRUNCATE` needs `DROP`).
pub const SCHEMA_CHANGES: &str = "CREATE, DROP, ALTER, INDEX, CREATE VIEW, REFERENCES";

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid role '{0}': allowed values are reader, writer, readwriter, admin")]
pub struct RoleError(pub String);

impl FromStr for Role {
    type Err = RoleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reader" => Ok(Role::Reader),
            "writer" => Ok(Role::Writer),
            "readwriter" => Ok(Role::Readwriter),
            "admin" => Ok(Role::Admin),
            other => Err(RoleError(other.to_string())),
        }
    }
}

/// Quotes a MySQL identifier with backticks, doubling any backtick inside.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Escapes text for a single-quoted MySQL string literal (backslash and quote).
pub fn sql_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "''")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert_eq!(
            "root".parse::<Role>().unwrap_err().to_string(),
            "invalid role 'root': allowed values are reader, writer, readwriter, admin"
        );
    }

    #[test]
    fn role_table() {
        // (role, safe migrations, can query rows, can modify rows, can change schema): the
        // password-roles page, and safe migrations taking schema changes away from admins.
        let table = [
            (Role::Reader, false, true, false, false),
            (Role::Writer, false, false, true, false),
            (Role::Readwriter, false, true, true, false),
            (Role::Admin, false, true, true, true),
            (Role::Reader, true, true, false, false),
            (Role::Writer, true, false, true, false),
            (Role::Readwriter, true, true, true, false),
            (Role::Admin, true, true, true, false),
        ];
        for (role, safe, read, write, ddl) in table {
            let p = role.privileges(safe);
            let has = |x: &str| p.split(", ").any(|q| q == x);
            assert_eq!(has("SELECT"), read, "{role} read");
            assert_eq!(has("INSERT"), write, "{role} write");
            for change in ["CREATE", "DROP", "ALTER", "INDEX", "CREATE VIEW"] {
                assert_eq!(has(change), ddl, "{role} {change}");
            }
            for never in [
                "ALL PRIVILEGES",
                "CREATE ROUTINE",
                "ALTER ROUTINE",
                "EVENT",
                "TRIGGER",
                "GRANT OPTION",
            ] {
                assert!(!has(never), "{role}: {never}");
            }
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(sql_string("p'w\\"), "p''w\\\\");
    }
}
