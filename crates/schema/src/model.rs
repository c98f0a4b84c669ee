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

impl Column {
    /// True for a generated column (`GENERATED ALWAYS AS (…) VIRTUAL|STORED|PERSISTENT`): the
    /// server computes its values, and refuses (error 1906) or ignores any written to it.
    pub fn is_generated(&self) -> bool {
        // Outside quoted text: a default or a comment may hold the words.
        let mut quote = None;
        let bytes = self.definition.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match quote {
                Some(q) if b == q => quote = None,
                Some(_) => {}
                None if b == b'\'' || b == b'"' || b == b'`' => quote = Some(b),
                None => {
                    let rest = &self.definition[i..];
                    if (i == 0 || bytes[i - 1] == b' ')
                        && rest.len() >= 19
                        && rest[..19].eq_ignore_ascii_case("GENERATED ALWAYS AS")
                    {
                        return true;
                    }
                }
            }
        }
        false
    }
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
    /// The partitioning clause, when the table is partitioned.
    pub partitioning: Option<Partitioning>,
}

/// A table's partitioning as the server prints it after the table options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioning {
    /// The whole clause, from `PARTITION BY` to the end, as printed.
    pub text: String,
    /// The clause before the list of partitions: `PARTITION BY RANGE (year(`d`))`, with any
    /// `SUBPARTITION BY …` and `PARTITIONS n` / `SUBPARTITIONS n` lines.
    pub scheme: String,
    /// The partitions listed, in order (none when only their number is given).
    pub partitions: Vec<Partition>,
}

/// One partition of a list: its name and its definition as printed
/// (`PARTITION `p0` VALUES LESS THAN (2020) ENGINE = InnoDB`, subpartitions included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub definition: String,
}

impl Partitioning {
    /// The partitioning method in upper case with single spaces: `RANGE`, `RANGE COLUMNS`, `LIST`,
    /// `LIST COLUMNS`, `HASH`, `LINEAR HASH`, `KEY`, `LINEAR KEY`, `SYSTEM_TIME`.
    pub fn method(&self) -> String {
        let after = self
            .scheme
            .strip_prefix("PARTITION BY ")
            .unwrap_or(&self.scheme);
        let end = after.find(['(', '\n']).unwrap_or(after.len());
        after[..end]
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Splits `s` at `sep` outside quotes ('…', "…", `…`) and parentheses.
pub(crate) fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    scan(s, sep).0
}

/// Every parenthesis outside quotes closed, none closed before it opened, no quote left open.
fn balanced(s: &str) -> bool {
    scan(s, '\0').1
}

fn scan(s: &str, sep: char) -> (Vec<&str>, bool) {
    let mut ok = true;
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some(q) => {
                if c == '\\' && q != '`' {
                    chars.next();
                } else if c == q {
                    if chars.peek().is_some_and(|(_, n)| *n == q) {
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
            }
            None => match c {
                '\'' | '"' | '`' => quote = Some(c),
                '(' => depth += 1,
                ')' => match depth.checked_sub(1) {
                    Some(d) => depth = d,
                    None => ok = false,
                },
                c if c == sep && depth == 0 => {
                    out.push(&s[start..i]);
                    start = i + c.len_utf8();
                }
                _ => {}
            },
        }
    }
    out.push(&s[start..]);
    (out, ok && depth == 0 && quote.is_none())
}

/// Parses the partitioning clause printed after a table's options (`PARTITION BY …` to the end).
fn parse_partitioning(table: &str, text: &str) -> Result<Partitioning, SchemaError> {
    let malformed = |reason: &str| SchemaError::Malformed {
        object: table.to_string(),
        reason: format!("partitioning: {reason}"),
    };
    let text = text.trim();
    if !text.starts_with("PARTITION BY ") {
        return Err(malformed("no PARTITION BY"));
    }
    let (scheme, list) = match text.find("\n(PARTITION ") {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let mut partitions = Vec::new();
    if let Some(list) = list {
        let inner = list
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .filter(|l| balanced(l))
            .ok_or_else(|| malformed("unterminated list of partitions"))?;
        for item in split_top_level(inner, ',') {
            let definition = item.trim();
            let (name, _) = definition
                .strip_prefix("PARTITION ")
                .and_then(ident)
                .ok_or_else(|| malformed("a partition without a name"))?;
            partitions.push(Partition {
                name,
                definition: definition.to_string(),
            });
        }
    }
    Ok(Partitioning {
        text: text.to_string(),
        scheme: scheme.trim_end().to_string(),
        partitions,
    })
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
        self.columns == other.columns
            && self.options == other.options
            && keys(self) == keys(other)
            && self.partitioning.as_ref().map(|p| &p.text)
                == other.partitioning.as_ref().map(|p| &p.text)
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
                            create: without_definer(create),
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

/// A view's statement without its `DEFINER=…` clause. The definer is whichever server user created
/// the view on that branch (an internal user of the role, or the deploy's): not part of the schema
/// a reviewer sees or a deploy compares, and each branch's server fills in its own.
pub fn without_definer(create: &str) -> String {
    let Some(at) = create.find(" DEFINER=") else {
        return create.to_string();
    };
    let Some(view) = create.find(" VIEW ") else {
        return create.to_string();
    };
    if at > view {
        return create.to_string();
    }
    let mut rest = &create[at + " DEFINER=".len()..];
    // `user`@`host`, or a bare CURRENT_USER / unquoted name.
    if let Some((_, r)) = ident(rest) {
        rest = r;
        if let Some(r) = rest.strip_prefix('@') {
            rest = ident(r).map(|(_, r)| r).unwrap_or(r);
        }
    } else {
        rest = rest.find(' ').map(|i| &rest[i..]).unwrap_or("");
    }
    format!("{}{}", &create[..at], rest)
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
    // The partitioning clause starts on a line of its own after the table options.
    let (rest, partitioning) = match rest.find("\n PARTITION BY ") {
        Some(at) => (&rest[..at], Some(parse_partitioning(&name, &rest[at..])?)),
        None => (rest, None),
    };
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
        partitioning,
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

    #[test]
    fn generated_columns_are_told_apart() {
        let col = |d: &str| Column {
            name: "c".into(),
            definition: d.into(),
        };
        for (definition, generated) in [
            ("int(11) GENERATED ALWAYS AS (`a` * 2) VIRTUAL", true),
            ("int(11) GENERATED ALWAYS AS (`a` * 2) STORED", true),
            ("int GENERATED ALWAYS AS ((`a` * 2)) VIRTUAL", true),
            (
                "varchar(40) GENERATED ALWAYS AS (concat(`a`,'x')) PERSISTENT",
                true,
            ),
            ("int(11) DEFAULT NULL", false),
            (
                "varchar(40) DEFAULT ' GENERATED ALWAYS AS ' COMMENT 'x'",
                false,
            ),
            (
                "int(11) DEFAULT NULL COMMENT 'GENERATED ALWAYS AS (1)'",
                false,
            ),
        ] {
            assert_eq!(col(definition).is_generated(), generated, "{definition}");
        }
    }

    const USERS: &str = "CREATE TABLE `users` (\n  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n  `name` varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL DEFAULT '',\n  `email` varchar(320) DEFAULT NULL COMMENT 'user''s, email',\n  `data` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL CHECK (json_valid(`data`)),\n  PRIMARY KEY (`id`),\n  UNIQUE KEY `uk_email` (`email`),\n  KEY `idx_name` (`name`(10)) USING BTREE,\n  CONSTRAINT `fk_x` FOREIGN KEY (`id`) REFERENCES `other` (`id`) ON DELETE CASCADE,\n  CONSTRAINT `chk_score` CHECK (`id` >= 0)\n) ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='users table'";

    #[test]
    fn views_lose_their_definer() {
        for (create, want) in [
            (
                "CREATE ALGORITHM=UNDEFINED DEFINER=`strata_admin`@`127.0.0.1` SQL SECURITY DEFINER VIEW `v` AS select 1 AS `1`",
                "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select 1 AS `1`",
            ),
            (
                "CREATE DEFINER=`a``b`@`%` VIEW `v` AS select 'DEFINER=x' AS `s`",
                "CREATE VIEW `v` AS select 'DEFINER=x' AS `s`",
            ),
            (
                "CREATE ALGORITHM=UNDEFINED DEFINER=CURRENT_USER SQL SECURITY INVOKER VIEW `v` AS select 1",
                "CREATE ALGORITHM=UNDEFINED SQL SECURITY INVOKER VIEW `v` AS select 1",
            ),
            // No definer, or the word only in the body: unchanged.
            (
                "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select 1",
                "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select 1",
            ),
            (
                "CREATE VIEW `v` AS select ' DEFINER=' AS `x`",
                "CREATE VIEW `v` AS select ' DEFINER=' AS `x`",
            ),
        ] {
            assert_eq!(without_definer(create), want, "{create}");
        }
        let s = Schema::from_statements([(
            "view",
            "v",
            "CREATE ALGORITHM=UNDEFINED DEFINER=`x`@`y` SQL SECURITY DEFINER VIEW `v` AS select 1",
        )])
        .unwrap();
        assert!(!s.views["v"].create.contains("DEFINER=`"));
    }

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
            ("CREATE TABLE `hv` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB WITH SYSTEM VERSIONING\n PARTITION BY SYSTEM_TIME INTERVAL 1 MONTH\nPARTITIONS 3", "system versioning"),
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
    fn parses_partitioning() {
        // (SHOW CREATE TABLE output, method, scheme, partitions (name, definition))
        type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            (
                "CREATE TABLE `r` (\n  `id` int(11) NOT NULL,\n  `d` date NOT NULL,\n  PRIMARY KEY (`id`,`d`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci\n PARTITION BY RANGE (year(`d`))\n(PARTITION `p0` VALUES LESS THAN (2020) ENGINE = InnoDB,\n PARTITION `p1` VALUES LESS THAN (2021) COMMENT = 'x, (y)' ENGINE = InnoDB,\n PARTITION `pmax` VALUES LESS THAN MAXVALUE ENGINE = InnoDB)",
                "RANGE",
                "PARTITION BY RANGE (year(`d`))",
                &[
                    ("p0", "PARTITION `p0` VALUES LESS THAN (2020) ENGINE = InnoDB"),
                    ("p1", "PARTITION `p1` VALUES LESS THAN (2021) COMMENT = 'x, (y)' ENGINE = InnoDB"),
                    ("pmax", "PARTITION `pmax` VALUES LESS THAN MAXVALUE ENGINE = InnoDB"),
                ],
            ),
            (
                "CREATE TABLE `rc` (\n  `d` date NOT NULL\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci\n PARTITION BY RANGE  COLUMNS(`d`)\n(PARTITION `p0` VALUES LESS THAN ('2020-01-01') ENGINE = InnoDB,\n PARTITION `p1` VALUES LESS THAN ('2021-01-01') ENGINE = InnoDB)",
                "RANGE COLUMNS",
                "PARTITION BY RANGE  COLUMNS(`d`)",
                &[
                    ("p0", "PARTITION `p0` VALUES LESS THAN ('2020-01-01') ENGINE = InnoDB"),
                    ("p1", "PARTITION `p1` VALUES LESS THAN ('2021-01-01') ENGINE = InnoDB"),
                ],
            ),
            (
                "CREATE TABLE `h` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci\n PARTITION BY HASH (`id`)\nPARTITIONS 4",
                "HASH",
                "PARTITION BY HASH (`id`)\nPARTITIONS 4",
                &[],
            ),
            (
                "CREATE TABLE `k` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB\n PARTITION BY LINEAR KEY ()\nPARTITIONS 2",
                "LINEAR KEY",
                "PARTITION BY LINEAR KEY ()\nPARTITIONS 2",
                &[],
            ),
            (
                "CREATE TABLE `lc` (\n  `s` varchar(5) NOT NULL\n) ENGINE=InnoDB\n PARTITION BY LIST  COLUMNS(`s`)\n(PARTITION `a` VALUES IN ('x','y') ENGINE = InnoDB,\n PARTITION `b``c` VALUES IN ('z,)''') ENGINE = InnoDB)",
                "LIST COLUMNS",
                "PARTITION BY LIST  COLUMNS(`s`)",
                &[
                    ("a", "PARTITION `a` VALUES IN ('x','y') ENGINE = InnoDB"),
                    ("b`c", "PARTITION `b``c` VALUES IN ('z,)''') ENGINE = InnoDB"),
                ],
            ),
            (
                "CREATE TABLE `sp` (\n  `id` int(11) NOT NULL,\n  `d` date NOT NULL\n) ENGINE=InnoDB\n PARTITION BY RANGE (year(`d`))\nSUBPARTITION BY HASH (`id`)\n(PARTITION `p0` VALUES LESS THAN (2020)\n (SUBPARTITION `s0` ENGINE = InnoDB,\n  SUBPARTITION `s1` ENGINE = InnoDB),\n PARTITION `p1` VALUES LESS THAN (2021)\n (SUBPARTITION `s2` ENGINE = InnoDB,\n  SUBPARTITION `s3` ENGINE = InnoDB))",
                "RANGE",
                "PARTITION BY RANGE (year(`d`))\nSUBPARTITION BY HASH (`id`)",
                &[
                    ("p0", "PARTITION `p0` VALUES LESS THAN (2020)\n (SUBPARTITION `s0` ENGINE = InnoDB,\n  SUBPARTITION `s1` ENGINE = InnoDB)"),
                    ("p1", "PARTITION `p1` VALUES LESS THAN (2021)\n (SUBPARTITION `s2` ENGINE = InnoDB,\n  SUBPARTITION `s3` ENGINE = InnoDB)"),
                ],
            ),
        ];
        for (sql, method, scheme, partitions) in cases {
            let t = parse_table(sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
            let p = t.partitioning.as_ref().expect("partitioned");
            assert_eq!(p.method(), *method, "{sql}");
            assert_eq!(p.scheme, *scheme, "{sql}");
            let got: Vec<(&str, &str)> = p
                .partitions
                .iter()
                .map(|x| (x.name.as_str(), x.definition.as_str()))
                .collect();
            assert_eq!(got, *partitions, "{sql}");
            assert!(p.text.starts_with("PARTITION BY ") && sql.ends_with(&p.text));
            assert!(!t.options.contains("PARTITION"), "{}", t.options);
            assert!(t.equivalent(&t));
        }
        let broken = [
            "CREATE TABLE `x` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB\n PARTITION BY RANGE (`id`)\n(PARTITION `p0` VALUES LESS THAN (1)",
            "CREATE TABLE `x` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB\n PARTITION BY RANGE (`id`)\n(PARTITION p0 VALUES LESS THAN (1))",
        ];
        for sql in broken {
            let e = parse_table(sql).unwrap_err().to_string();
            assert!(e.contains("`x`") && e.contains("partitioning"), "{e}");
        }
        // Another partitioning is another table.
        let a = parse_table(cases[0].0).unwrap();
        let b = parse_table(&cases[0].0.replace("(2021)", "(2022)")).unwrap();
        assert!(!a.equivalent(&b));
        let mut c = a.clone();
        c.partitioning = None;
        assert!(!a.equivalent(&c));
    }

    #[test]
    fn splits_outside_quotes_and_parentheses() {
        let cases: &[(&str, &[&str])] = &[
            ("a,b", &["a", "b"]),
            ("f(a,b),c", &["f(a,b)", "c"]),
            ("'x,y',`a,b`,\"c,d\"", &["'x,y'", "`a,b`", "\"c,d\""]),
            ("'it''s,',x", &["'it''s,'", "x"]),
            ("'a\\',b',c", &["'a\\',b'", "c"]),
            ("", &[""]),
        ];
        for (s, parts) in cases {
            assert_eq!(split_top_level(s, ','), *parts, "{s}");
            assert!(balanced(s), "{s}");
        }
        for s in ["(a", "a)", ")(", "'a", "f(')'"] {
            assert!(!balanced(s), "{s}");
        }
    }

    #[test]
    fn identifiers_with_backticks() {
        assert_eq!(ident("`a``b` int").unwrap(), ("a`b".to_string(), " int"));
        assert_eq!(quote("a`b"), "`a``b`");
        assert!(ident("`unterminated").is_none());
    }
}
