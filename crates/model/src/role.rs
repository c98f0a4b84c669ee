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

    /// Privileges on the database's schema, as they appear in `GRANT … ON db.*`.
    pub fn privileges(self) -> &'static str {
        match self {
            Role::Reader => "SELECT, SHOW VIEW",
            Role::Writer => "INSERT, UPDATE, DELETE",
            Role::Readwriter => {
                "SELECT, INSERT, UPDATE, DELETE, SHOW VIEW, EXECUTE, CREATE TEMPORARY TABLES, LOCK TABLES"
            }
            Role::Admin => "ALL PRIVILEGES",
        }
    }

    /// Statements that (re)create the role's internal user with exactly its grants on `schema`.
    /// Idempotent: safe to run on every instance start.
    pub fn grant_statements(self, schema: &str, host: &str, password: &str) -> Vec<String> {
        let user = format!("'{}'@'{}'", self.internal_user(), host);
        vec![
            format!(
                "CREATE USER IF NOT EXISTS {user} IDENTIFIED BY '{}'",
                sql_string(password)
            ),
            format!("ALTER USER {user} IDENTIFIED BY '{}'", sql_string(password)),
            format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {user}"),
            format!(
                "GRANT {} ON {}.* TO {user}",
                self.privileges(),
                quote_ident(schema)
            ),
        ]
    }
}

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
        // (role, can query rows, can modify rows, can change schema): the password-roles page.
        let table = [
            (Role::Reader, true, false, false),
            (Role::Writer, false, true, false),
            (Role::Readwriter, true, true, false),
            (Role::Admin, true, true, true),
        ];
        for (role, read, write, ddl) in table {
            let p = role.privileges();
            let all = p == "ALL PRIVILEGES";
            assert_eq!(all || p.contains("SELECT"), read, "{role} read");
            assert_eq!(all || p.contains("INSERT"), write, "{role} write");
            assert_eq!(
                all || p.contains("ALTER") || p.split(", ").any(|x| x == "CREATE"),
                ddl,
                "{role} ddl"
            );
        }
    }

    #[test]
    fn grant_statements_quote() {
        let s = Role::Reader.grant_statements("my-db", "127.0.0.1", "p'w");
        assert!(s[0].contains("IDENTIFIED BY 'p''w'"));
        assert_eq!(
            s[3],
            "GRANT SELECT, SHOW VIEW ON `my-db`.* TO 'strata_reader'@'127.0.0.1'"
        );
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }
}
