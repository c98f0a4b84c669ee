//! Parsing `SHOW CREATE TABLE` / `SHOW CREATE VIEW` output into a model.

use std::collections::BTreeMap;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaError {
    #[error("table `{table}`: {construct} is not supported by the schema engine")]
    Unsupported { table: String, construct: String },
    #[error("`{object}`: cannot read the CREATE statement: {reason}")]
    Malformed { object: String, reason: String },
}

/// A column: its name and the canonical text after it (`int(11) NOT NULL DEFAULT 0 …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub definition: String,
}

/// A key, foreign key or check constraint, with the line that defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// `PRIMARY` for the primary key.
    pub name: String,
    pub kind: IndexKind,
    pub definition: String,
}

/// The parts of a foreign key's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKeyParts {
    pub columns: Vec<String>,
    pub table: String,
    pub referenced: Vec<String>,
}

fn ident_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter_map(|c| ident(c.trim()).map(|(n, _)| n))
        .collect()
}

impl Index {
    /// `FOREIGN KEY (cols) REFERENCES table (cols)`, taken apart (foreign keys only).
    pub fn foreign_key(&self) -> Option<ForeignKeyParts> {
        if self.kind != IndexKind::ForeignKey {
            return None;
        }
        let columns = ident_list(
            self.definition
                .split("FOREIGN KEY (")
                .nth(1)?
                .split(')')
                .next()?,
        );
        let (table, after) = ident(self.definition.split(" REFERENCES ").nth(1)?)?;
        let referenced = ident_list(after.trim_start().strip_prefix('(')?.split(')').next()?);
        Some(ForeignKeyParts {
            columns,
            table,
            referenced,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    Primary,
    Key,
    ForeignKey,
    Check,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// Primary and secondary keys, in the server's order.
    pub indexes: Vec<Index>,
    pub foreign_keys: Vec<Index>,
    pub checks: Vec<Index>,
    /// Table options as printed, without `AUTO_INCREMENT=n` (a counter, not schema).
    pub options: String,
}

impl Table {
    /// Same columns in the same order, same keys, constraints and options (key order aside: the
    /// server may print keys in another order than they were written).
    pub fn equivalent(&self, other: &Table) -> bool {
        fn keys(t: &Table) -> Vec<&str> {
            let mut ix: Vec<&str> = t
                .indexes
                .iter()
                .chain(&t.foreign_keys)
                .chain(&t.checks)
                .map(|i| i.definition.as_str())
                .collect();
            ix.sort_unstable();
            ix
        }
        self.columns == other.columns && self.options == other.options && keys(self) == keys(other)
    }
}

/// A schema of the given `SHOW CREATE TABLE` texts (for tests).
#[cfg(test)]
pub(crate) fn schema_of(tables: &[&str]) -> Schema {
    let mut s = Schema::default();
    for t in tables {
        let t = parse_table(t).unwrap();
        s.tables.insert(t.name.clone(), t);
    }
    s
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub name: String,
    /// The statement as the server printed it.
    pub create: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub tables: BTreeMap<String, Table>,
    pub views: BTreeMap<String, View>,
}

impl Schema {
    /// Builds a schema from (kind, name, CREATE statement) triples, kind being "table" or "view".
    pub fn from_statements<'a>(
        items: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Schema, SchemaError> {
        let mut s = Schema::default();
        for (kind, name, create) in items {
            match kind {
                "view" => {
                    s.views.insert(
                        name.to_string(),
                        View {
                            name: name.to_string(),
                            create: create.to_string(),
                        },
                    );
                }
                "table" => {
                    let t = parse_table(create)?;
                    s.tables.insert(t.name.clone(), t);
                }
                other => {
                    return Err(SchemaError::Unsupported {
                        table: name.to_string(),
                        construct: format!("{other} objects"),
                    });
                }
            }
        }
        Ok(s)
    }
}

/// Reads a backtick-quoted identifier at the start of `s`: (name, rest).
pub(crate) fn ident(s: &str) -> Option<(String, &str)> {
    let rest = s.strip_prefix('`')?;
    let mut name = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '`' {
            if rest[i + 1..].starts_with('`') {
                name.push('`');
                chars.next();
            } else {
                return Some((name, &rest[i + 1..]));
            }
        } else {
            name.push(c);
        }
    }
    None
}

pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Removes ` AUTO_INCREMENT=n` from table options.
fn strip_auto_increment(options: &str) -> String {
    options
        .split(' ')
        .filter(|t| !t.starts_with("AUTO_INCREMENT="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses MariaDB's canonical `SHOW CREATE TABLE` text.
pub fn parse_table(create: &str) -> Result<Table, SchemaError> {
    let malformed = |object: &str, reason: &str| SchemaError::Malformed {
        object: object.to_string(),
        reason: reason.to_string(),
    };
    let rest = create
        .strip_prefix("CREATE TABLE ")
        .ok_or_else(|| malformed("?", "not a CREATE TABLE statement"))?;
    let (name, rest) = ident(rest).ok_or_else(|| malformed("?", "no table name"))?;
    let unsupported = |construct: &str| SchemaError::Unsupported {
        table: name.clone(),
        construct: construct.to_string(),
    };
    let body = rest
        .strip_prefix(" (\n")
        .ok_or_else(|| malformed(&name, "no column list"))?;
    let end = body
        .rfind("\n) ")
        .or_else(|| body.rfind("\n)"))
        .ok_or_else(|| malformed(&name, "unterminated column list"))?;
    let (lines, tail) = body.split_at(end);
    let options = tail.trim_start_matches("\n)").trim();
    if options.contains("PARTITION BY") {
        return Err(unsupported("partitioning"));
    }
    if options.contains("WITH SYSTEM VERSIONING") {
        return Err(unsupported("system versioning"));
    }
    if options.contains("SEQUENCE=") {
        return Err(unsupported("sequences"));
    }
    let mut t = Table {
        name: name.clone(),
        columns: Vec::new(),
        indexes: Vec::new(),
        foreign_keys: Vec::new(),
        checks: Vec::new(),
        options: strip_auto_increment(options),
    };
    for raw in lines.split(",\n") {
        let line = raw.trim_start();
        if line.starts_with('`') {
            let (col, def) = ident(line).ok_or_else(|| malformed(&name, "bad column name"))?;
            let def = def.trim_start().to_string();
            if def.contains("WITHOUT OVERLAPS") {
                return Err(unsupported("WITHOUT OVERLAPS keys"));
            }
            t.columns.push(Column {
                name: col,
                definition: def,
            });
        } else if line.starts_with("PRIMARY KEY ") {
            t.indexes.push(Index {
                name: "PRIMARY".into(),
                kind: IndexKind::Primary,
                definition: line.to_string(),
            });
        } else if let Some(after) = ["UNIQUE KEY ", "KEY ", "FULLTEXT KEY ", "SPATIAL KEY "]
            .iter()
            .find_map(|p| line.strip_prefix(p))
        {
            let (key, _) = ident(after).ok_or_else(|| malformed(&name, "bad key name"))?;
            if line.contains(" IGNORED") || line.contains("WITHOUT OVERLAPS") {
                return Err(unsupported(&format!(
                    "key `{key}` ({})",
                    if line.contains("IGNORED") {
                        "IGNORED"
                    } else {
                        "WITHOUT OVERLAPS"
                    }
                )));
            }
            t.indexes.push(Index {
                name: key,
                kind: IndexKind::Key,
                definition: line.to_string(),
            });
        } else if let Some(after) = line.strip_prefix("CONSTRAINT ") {
            let (c, what) = ident(after).ok_or_else(|| malformed(&name, "bad constraint name"))?;
            let what = what.trim_start();
            if what.starts_with("FOREIGN KEY") {
                t.foreign_keys.push(Index {
                    name: c,
                    kind: IndexKind::ForeignKey,
                    definition: line.to_string(),
                });
            } else if what.starts_with("CHECK") {
                t.checks.push(Index {
                    name: c,
                    kind: IndexKind::Check,
                    definition: line.to_string(),
                });
            } else {
                return Err(unsupported(&format!("constraint `{c}`")));
            }
        } else if line.starts_with("PERIOD FOR") {
            return Err(unsupported("application-time periods (PERIOD FOR)"));
        } else {
            let shown: String = line.chars().take(40).collect();
            return Err(unsupported(&format!("the table element `{shown}`")));
        }
    }
    if t.columns.is_empty() {
        return Err(malformed(&name, "no columns"));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = "CREATE TABLE `users` (\n  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n  `name` varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL DEFAULT '',\n  `email` varchar(320) DEFAULT NULL COMMENT 'user''s, email',\n  `data` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL CHECK (json_valid(`data`)),\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `uk_email` (`email`),\n  KEY `idx_name` (`name`(10)) USING BTREE,\n  CONSTRAINT `fk_x` FOREIGN KEY (`id`) REFERENCES `other` (`id`) ON DELETE CASCADE,\n  CONSTRAINT `chk_score` CHECK (`id` >= 0)\n) ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='users table'";

    #[test]
    fn parses_canonical_output() {
        let t = parse_table(USERS).unwrap();
        assert_eq!(t.name, "users");
        let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(cols, ["id", "name", "email", "data"]);
        assert_eq!(
            t.columns[2].definition,
            "varchar(320) DEFAULT NULL COMMENT 'user''s, email'"
        );
        assert_eq!(
            t.indexes
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
            ["PRIMARY", "uk_email", "idx_name"]
        );
        assert_eq!(t.foreign_keys[0].name, "fk_x");
        assert_eq!(t.checks[0].name, "chk_score");
        assert_eq!(t.options, "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='users table'");
    }

    #[test]
    fn unknown_constructs_are_named_errors() {
        let cases = [
            ("CREATE TABLE `hp` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB\n PARTITION BY HASH (`id`)\nPARTITIONS 4", "partitioning"),
            ("CREATE TABLE `h` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB WITH SYSTEM VERSIONING", "system versioning"),
            ("CREATE TABLE `m` (\n  `c2` varchar(10) DEFAULT NULL,\n  KEY `k1` (`c2`) IGNORED\n) ENGINE=InnoDB", "IGNORED"),
            ("CREATE TABLE `p` (\n  `s` date NOT NULL,\n  `e` date NOT NULL,\n  PERIOD FOR `p` (`s`, `e`)\n) ENGINE=InnoDB", "PERIOD FOR"),
        ];
        for (sql, what) in cases {
            let e = parse_table(sql).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains("table `"), "{e}");
        }
        assert!(parse_table("SELECT 1").is_err());
        assert!(parse_table("CREATE TABLE `x` (\n").is_err());
    }

    #[test]
    fn identifiers_with_backticks() {
        assert_eq!(ident("`a``b` int").unwrap(), ("a`b".to_string(), " int"));
        assert_eq!(quote("a`b"), "`a``b`");
        assert!(ident("`unterminated").is_none());
    }
}
