//! Which database server is installed, and where.

use crate::{EngineError, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavour {
    MariaDb,
    MySql,
}

#[derive(Debug, Clone)]
pub struct ServerBinaries {
    pub flavour: Flavour,
    /// e.g. "10.11.19"
    pub version: String,
    pub server: PathBuf,
    /// `mariadb-install-db` for MariaDB; MySQL initialises with `mysqld --initialize-insecure`.
    pub install_db: Option<PathBuf>,
}

/// Parses `mariadbd --version` / `mysqld --version` output.
pub fn parse_version(output: &str) -> Option<(Flavour, String)> {
    let after = output.split(" Ver ").nth(1)?;
    let token = after.split_whitespace().next()?;
    let number: String = token
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if number.is_empty() {
        return None;
    }
    let flavour = if output.contains("MariaDB") {
        Flavour::MariaDb
    } else {
        Flavour::MySql
    };
    Some((flavour, number))
}

pub(crate) fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub(crate) fn first_existing(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

impl ServerBinaries {
    /// Finds the server: `STRATA_MYSQLD`, else `mariadbd`, else `mysqld`, in PATH or the usual places.
    pub fn detect() -> Result<Self> {
        let server = std::env::var_os("STRATA_MYSQLD")
            .map(PathBuf::from)
            .or_else(|| in_path("mariadbd"))
            .or_else(|| first_existing(&["/usr/sbin/mariadbd", "/usr/local/mysql/bin/mariadbd"]))
            .or_else(|| in_path("mysqld"))
            .or_else(|| first_existing(&["/usr/sbin/mysqld", "/usr/local/mysql/bin/mysqld"]))
            .ok_or(EngineError::NoServer)?;
        Self::from_server(&server)
    }

    pub fn from_server(server: &Path) -> Result<Self> {
        let out = Command::new(server)
            .arg("--version")
            .output()
            .map_err(|source| EngineError::Spawn {
                program: server.display().to_string(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (flavour, version) = parse_version(&text).ok_or_else(|| {
            EngineError::Invalid(format!("unrecognised server version text: {text:?}"))
        })?;
        let install_db = match flavour {
            Flavour::MariaDb => {
                let sibling = server
                    .parent()
                    .and_then(|d| d.parent())
                    .map(|p| p.join("bin/mariadb-install-db"));
                sibling
                    .filter(|p| p.is_file())
                    .or_else(|| in_path("mariadb-install-db"))
                    .or_else(|| {
                        first_existing(&[
                            "/usr/bin/mariadb-install-db",
                            "/usr/bin/mysql_install_db",
                        ])
                    })
            }
            Flavour::MySql => None,
        };
        if flavour == Flavour::MariaDb && install_db.is_none() {
            return Err(EngineError::Invalid(
                "mariadb-install-db not found next to mariadbd".into(),
            ));
        }
        Ok(ServerBinaries {
            flavour,
            version,
            server: server.to_path_buf(),
            install_db,
        })
    }

    pub fn describe(&self) -> String {
        let name = match self.flavour {
            Flavour::MariaDb => "MariaDB",
            Flavour::MySql => "MySQL",
        };
        format!("{name} {} ({})", self.version, self.server.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let cases = [
            (
                "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)\n",
                Some((Flavour::MariaDb, "10.11.19".to_string())),
            ),
            (
                "/usr/sbin/mysqld  Ver 8.0.36-0ubuntu0.22.04.1 for Linux on x86_64 ((Ubuntu))\n",
                Some((Flavour::MySql, "8.0.36".to_string())),
            ),
            ("/usr/sbin/mysqld  Ver 8.4.0 for Linux on x86_64 (MySQL Community Server - GPL)", Some((Flavour::MySql, "8.4.0".into()))),
            ("garbage", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_version(text), want, "{text}");
        }
    }
}
