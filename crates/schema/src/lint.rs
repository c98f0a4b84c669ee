//! Deployability checks, as PlanetScale's lint reports them: each finding names its table (and
//! column, charset, …), says whether it blocks a deploy, and why.

use crate::diff::Change;
use crate::model::{ident, Schema};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Blocks a deploy request.
    Error,
    /// Shown, does not block.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Code of the finding, e.g. `UNSUPPORTED_CHARSET`.
    pub code: &'static str,
    pub severity: Severity,
    pub table: String,
    pub column: Option<String>,
    pub charset: Option<String>,
    pub engine: Option<String>,
    pub foreign_key_columns: Vec<String>,
    pub description: String,
}

impl Finding {
    fn new(code: &'static str, severity: Severity, table: &str, description: String) -> Finding {
        Finding {
            code,
            severity,
            table: table.to_string(),
            column: None,
            charset: None,
            engine: None,
            foreign_key_columns: Vec::new(),
            description,
        }
    }
}

/// Charsets a deploy can carry (PlanetScale's list).
pub const CHARSETS: &[&str] = &["utf8", "utf8mb4", "utf8mb3", "latin1", "ascii"];

fn charset_of(definition: &str) -> Option<&str> {
    let rest = definition.split("CHARACTER SET ").nth(1)?;
    rest.split_whitespace().next()
}

fn option<'a>(options: &'a str, key: &str) -> Option<&'a str> {
    let i = options.find(&format!("{key}="))?;
    options[i + key.len() + 1..].split_whitespace().next()
}

fn base_charset(cs: &str) -> &str {
    cs.trim_matches('\'')
}

/// Checks a schema. `foreign_keys_allowed` is the database's setting.
pub fn lint(schema: &Schema, foreign_keys_allowed: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    for t in schema.tables.values() {
        if let Some(engine) = option(&t.options, "ENGINE") {
            if !engine.eq_ignore_ascii_case("InnoDB") {
                let mut f = Finding::new(
                    "UNSUPPORTED_ENGINE",
                    Severity::Error,
                    &t.name,
                    format!(
                        "Table `{}` uses the {engine} engine; only InnoDB tables can be deployed",
                        t.name
                    ),
                );
                f.engine = Some(engine.to_string());
                out.push(f);
            }
        }
        if let Some(cs) = option(&t.options, "DEFAULT CHARSET").map(base_charset) {
            if !CHARSETS.contains(&cs) {
                let mut f = Finding::new(
                    "UNSUPPORTED_CHARSET",
                    Severity::Error,
                    &t.name,
                    format!(
                        "Table `{}` uses the unsupported charset {cs}; use one of {}",
                        t.name,
                        CHARSETS.join(", ")
                    ),
                );
                f.charset = Some(cs.to_string());
                out.push(f);
            }
        }
        for c in &t.columns {
            if let Some(cs) = charset_of(&c.definition) {
                if !CHARSETS.contains(&cs) {
                    let mut f = Finding::new(
                        "UNSUPPORTED_CHARSET",
                        Severity::Error,
                        &t.name,
                        format!(
                            "Column `{}`.`{}` uses the unsupported charset {cs}; use one of {}",
                            t.name,
                            c.name,
                            CHARSETS.join(", ")
                        ),
                    );
                    f.column = Some(c.name.clone());
                    f.charset = Some(cs.to_string());
                    out.push(f);
                }
            }
        }
        if !t.indexes.iter().any(|i| i.name == "PRIMARY") {
            out.push(Finding::new(
                "NO_PRIMARY_KEY",
                Severity::Warning,
                &t.name,
                format!("Table `{}` has no primary key: online schema changes need one to copy rows in order", t.name),
            ));
        }
        if !foreign_keys_allowed {
            for fk in &t.foreign_keys {
                let cols = fk
                    .definition
                    .split("FOREIGN KEY (")
                    .nth(1)
                    .and_then(|r| r.split(')').next())
                    .map(|l| {
                        l.split(',')
                            .filter_map(|c| ident(c.trim()).map(|(n, _)| n))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut f = Finding::new(
                    "FOREIGN_KEYS_DISABLED",
                    Severity::Error,
                    &t.name,
                    format!("Table `{}` has the foreign key `{}`, but foreign key constraints are not enabled for this database", t.name, fk.name),
                );
                f.foreign_key_columns = cols;
                out.push(f);
            }
        }
    }
    out
}

/// The column names of a key's definition line.
pub fn key_columns(definition: &str) -> Vec<String> {
    let Some(open) = definition.find('(') else {
        return Vec::new();
    };
    let Some(close) = definition.rfind(')') else {
        return Vec::new();
    };
    let inner = &definition[open + 1..close];
    inner
        .split(',')
        .filter_map(|c| ident(c.trim()).map(|(n, _)| n))
        .collect()
}

/// Keys that identify a row: the primary key, and unique keys over NOT NULL columns only.
pub fn row_identifying_keys(t: &crate::model::Table) -> Vec<Vec<String>> {
    t.indexes
        .iter()
        .filter(|i| i.name == "PRIMARY" || i.definition.starts_with("UNIQUE KEY "))
        .map(|i| key_columns(&i.definition))
        .filter(|cols| {
            !cols.is_empty()
                && cols.iter().all(|c| {
                    t.columns.iter().any(|x| {
                        &x.name == c
                            && (x.definition.contains("NOT NULL")
                                || t.indexes.iter().any(|i| {
                                    i.name == "PRIMARY" && key_columns(&i.definition).contains(c)
                                }))
                    })
                })
        })
        .collect()
}

/// An online change copies rows from the old table to the new one and needs to match them: both
/// must have a non-null unique key whose columns exist on both sides (PlanetScale's
/// onlineddl-change-unique-keys rule).
pub fn shared_unique_key(old: &crate::model::Table, new: &crate::model::Table) -> Option<Finding> {
    let has = |t: &crate::model::Table, name: &str| t.columns.iter().any(|c| c.name == name);
    let old_ok = row_identifying_keys(old)
        .iter()
        .any(|k| k.iter().all(|c| has(new, c)));
    let new_ok = row_identifying_keys(new)
        .iter()
        .any(|k| k.iter().all(|c| has(old, c)));
    if old_ok && new_ok {
        return None;
    }
    Some(Finding::new(
        "NO_SHARED_UNIQUE_KEY",
        Severity::Error,
        &new.name,
        format!(
            "Table `{}` has no shared columns covered by non-null unique keys between both branches: the old and the new table each need a primary or non-null unique key whose columns exist in both",
            new.name
        ),
    ))
}

/// Findings about the changes taking `from` to `to`: destructive ones, and drops paired with adds
/// that look like a rename (deploys copy by name, so a rename would lose the data): a column dropped
/// and one added in the same table, or a table dropped and one created with the same columns.
pub fn lint_changes(from: &Schema, to: &Schema, changes: &[Change]) -> Vec<Finding> {
    let mut out = Vec::new();
    let dropped: Vec<&crate::model::Table> = changes
        .iter()
        .filter(|c| c.statement.starts_with("DROP TABLE "))
        .filter_map(|c| from.tables.get(&c.object))
        .collect();
    for c in changes
        .iter()
        .filter(|c| c.statement.starts_with("CREATE TABLE "))
    {
        let Some(new) = to.tables.get(&c.object) else {
            continue;
        };
        for old in dropped.iter().filter(|old| old.columns == new.columns) {
            out.push(Finding::new(
                "POSSIBLE_RENAME",
                Severity::Warning,
                &new.name,
                format!(
                    "Table `{}` is dropped and table `{}` created with the same columns: if this is a rename, the data is not carried over; create the new table, copy the rows over, then drop the old one in a later deploy",
                    old.name, new.name
                ),
            ));
        }
    }
    for c in changes {
        let s = &c.statement;
        if s.starts_with("DROP TABLE ") {
            out.push(Finding::new(
                "DESTRUCTIVE_CHANGE",
                Severity::Warning,
                &c.object,
                format!("Table `{}` is dropped, with all its data", c.object),
            ));
        }
        if s.starts_with("ALTER TABLE ") {
            let drops: Vec<String> = s
                .match_indices("DROP COLUMN ")
                .filter_map(|(i, _)| ident(&s[i + 12..]).map(|(n, _)| n))
                .collect();
            let adds: Vec<String> = s
                .match_indices("ADD COLUMN ")
                .filter_map(|(i, _)| ident(&s[i + 11..]).map(|(n, _)| n))
                .collect();
            for d in &drops {
                let mut f = Finding::new(
                    "DESTRUCTIVE_CHANGE",
                    Severity::Warning,
                    &c.object,
                    format!("Column `{}`.`{d}` is dropped, with its data", c.object),
                );
                f.column = Some(d.clone());
                out.push(f);
            }
            if !drops.is_empty() && !adds.is_empty() {
                let mut f = Finding::new(
                    "POSSIBLE_RENAME",
                    Severity::Warning,
                    &c.object,
                    format!(
                        "Table `{}` drops {} and adds {}: if this is a rename, the data is not carried over; add the new column, copy, then drop the old one in a later deploy",
                        c.object,
                        drops.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", "),
                        adds.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", ")
                    ),
                );
                f.column = drops.first().cloned();
                out.push(f);
            }
            let parts: Vec<String> = s
                .match_indices("DROP PARTITION ")
                .flat_map(|(i, _)| {
                    s[i + 15..]
                        .split(',')
                        .map_while(|p| ident(p.trim()).map(|(n, _)| n))
                        .collect::<Vec<_>>()
                })
                .collect();
            if !parts.is_empty() {
                out.push(Finding::new(
                    "DESTRUCTIVE_CHANGE",
                    Severity::Warning,
                    &c.object,
                    format!(
                        "Partition {} of table `{}` dropped, with the rows in it",
                        parts
                            .iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        c.object
                    ),
                ));
            }
        }
    }
    // Columns whose type narrows: rows that do not fit fail the deploy (nothing is truncated).
    for (name, new) in &to.tables {
        let Some(old) = from.tables.get(name) else {
            continue;
        };
        for nc in &new.columns {
            let Some(oc) = old.columns.iter().find(|c| c.name == nc.name) else {
                continue;
            };
            if let (Some(a), Some(b)) = (column_type(&oc.definition), column_type(&nc.definition)) {
                if narrows(&a, &b) {
                    let what = if rounds_silently(&a, &b) {
                        "values are rounded to the new precision (or lose trailing spaces) without an error, as ALTER TABLE does"
                    } else {
                        "a value that does not fit fails the deploy; check the data first"
                    };
                    let mut f = Finding::new(
                        "NARROWING_CHANGE",
                        Severity::Warning,
                        name,
                        format!(
                            "Column `{name}`.`{}` changes from {} to {}: {what}",
                            nc.name, a.text, b.text
                        ),
                    );
                    f.column = Some(nc.name.clone());
                    out.push(f);
                    continue;
                }
            }
            let nullable = |d: &str| !d.to_ascii_uppercase().contains("NOT NULL");
            if nullable(&oc.definition) && !nullable(&nc.definition) {
                let mut f = Finding::new(
                    "NARROWING_CHANGE",
                    Severity::Warning,
                    name,
                    format!(
                        "Column `{name}`.`{}` becomes NOT NULL: a row holding NULL fails the deploy; check the data first",
                        nc.name
                    ),
                );
                f.column = Some(nc.name.clone());
                out.push(f);
                continue;
            }
            let (from_cs, to_cs) = (
                column_charset(&oc.definition, &old.options),
                column_charset(&nc.definition, &new.options),
            );
            if let (Some(x), Some(y)) = (from_cs, to_cs) {
                if charset_narrows(&x, &y) {
                    let mut f = Finding::new(
                        "NARROWING_CHANGE",
                        Severity::Warning,
                        name,
                        format!(
                            "Column `{name}`.`{}` changes from character set {x} to {y}: a character {y} cannot hold fails the deploy; check the data first",
                            nc.name
                        ),
                    );
                    f.column = Some(nc.name.clone());
                    out.push(f);
                }
            }
        }
    }
    out
}

/// A column's type, as far as narrowing is concerned.
#[derive(Debug, PartialEq)]
struct ColumnType {
    /// `int(11) unsigned`, as written.
    text: String,
    base: String,
    args: Vec<u64>,
    unsigned: bool,
    /// An ENUM's or SET's values, as written (quoted).
    values: Vec<String>,
}

fn column_type(definition: &str) -> Option<ColumnType> {
    let mut words = definition.split_whitespace();
    let first = words.next()?.to_ascii_lowercase();
    let unsigned = words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("unsigned"));
    let (base, args) = match first.split_once('(') {
        Some((b, rest)) => (
            b.to_string(),
            rest.trim_end_matches(')')
                .split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect(),
        ),
        None => (first.clone(), Vec::new()),
    };
    let values = if base == "enum" || base == "set" {
        let inner = definition
            .split_once('(')
            .map(|(_, r)| r)
            .unwrap_or_default();
        let mut vals = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if quoted && chars.peek() == Some(&'\'') => {
                    cur.push('\'');
                    chars.next();
                }
                '\'' => quoted = !quoted,
                ',' if !quoted => vals.push(std::mem::take(&mut cur)),
                ')' if !quoted => break,
                c if quoted => cur.push(c),
                _ => {}
            }
        }
        vals.push(cur);
        vals
    } else {
        Vec::new()
    };
    Some(ColumnType {
        values,
        text: if unsigned {
            format!("{first} unsigned")
        } else {
            first
        },
        base,
        args,
        unsigned,
    })
}

/// The character set a column holds its values in: its own, or the table's it inherits (`None`
/// for a type without characters, or a table printed without one).
fn column_charset(definition: &str, table_options: &str) -> Option<String> {
    if !crate::diff::is_character_type(definition) {
        return None;
    }
    let words: Vec<&str> = definition.split_whitespace().collect();
    if let Some(i) = words
        .windows(2)
        .position(|w| w[0].eq_ignore_ascii_case("CHARACTER") && w[1].eq_ignore_ascii_case("SET"))
    {
        return words.get(i + 2).map(|c| c.to_ascii_lowercase());
    }
    if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("COLLATE")) {
        return words
            .get(i + 1)
            .and_then(|c| c.split('_').next())
            .map(str::to_ascii_lowercase);
    }
    crate::diff::table_charset(table_options)
        .0
        .map(|c| c.to_ascii_lowercase())
}

/// True when character set `a` holds characters `b` does not (a Unicode set to a smaller one).
fn charset_narrows(a: &str, b: &str) -> bool {
    let rank = |c: &str| match c {
        "utf8mb4" | "utf16" | "utf16le" | "utf32" => 2,
        "utf8mb3" | "utf8" | "ucs2" => 1,
        _ => 0,
    };
    a != b && rank(b) < rank(a)
}

/// True for a narrowing the server makes by rounding, with neither error nor warning: fewer
/// fractional seconds, DOUBLE to FLOAT.
fn rounds_silently(a: &ColumnType, b: &ColumnType) -> bool {
    const INTS: [&str; 5] = ["tinyint", "smallint", "mediumint", "int", "bigint"];
    let times = ["datetime", "timestamp", "time"];
    let fractional = ["float", "double", "real"].contains(&a.base.as_str())
        || (a.base == "decimal" && a.args.get(1).copied().unwrap_or(0) > 0);
    let exact = INTS.contains(&a.base.as_str()) || a.base == "decimal";
    (times.contains(&a.base.as_str()) && a.base == b.base)
        || (["double", "real"].contains(&a.base.as_str()) && b.base == "float")
        || (fractional && INTS.contains(&b.base.as_str()))
        || (exact && ["float", "double", "real"].contains(&b.base.as_str()))
        || (a.base == "varchar" && b.base == "char")
}

/// True when some value of type `a` has no place in type `b` (within one family; a change of
/// family is the server's to judge).
fn narrows(a: &ColumnType, b: &ColumnType) -> bool {
    const INTS: [&str; 5] = ["tinyint", "smallint", "mediumint", "int", "bigint"];
    const TEXTS: [&str; 4] = ["tinytext", "text", "mediumtext", "longtext"];
    const BLOBS: [&str; 4] = ["tinyblob", "blob", "mediumblob", "longblob"];
    let rank = |list: &[&str], t: &str| list.iter().position(|x| *x == t);
    // Fractions into whole numbers (rounded), doubles into exact decimals, dates losing their
    // time, fewer bits.
    let fractional = ["float", "double", "real"].contains(&a.base.as_str())
        || (a.base == "decimal" && a.args.get(1).copied().unwrap_or(0) > 0);
    if fractional && rank(&INTS, &b.base).is_some() {
        return true;
    }
    if ["float", "double", "real"].contains(&a.base.as_str()) && b.base == "decimal" {
        return true;
    }
    // Exact numbers into floating point: digits past its precision are rounded.
    if (rank(&INTS, &a.base).is_some() || a.base == "decimal")
        && ["float", "double", "real"].contains(&b.base.as_str())
    {
        return true;
    }
    // CHAR drops trailing spaces.
    if a.base == "varchar" && b.base == "char" {
        return true;
    }
    if ["datetime", "timestamp"].contains(&a.base.as_str()) && b.base == "date" {
        return true;
    }
    if a.base == "bit" && b.base == "bit" {
        return b.args.first().copied().unwrap_or(1) < a.args.first().copied().unwrap_or(1);
    }
    if let (Some(x), Some(y)) = (rank(&INTS, &a.base), rank(&INTS, &b.base)) {
        return match (a.unsigned, b.unsigned) {
            // Negative values have no place.
            (false, true) => true,
            // An unsigned type's values fit a strictly larger signed one.
            (true, false) => y <= x,
            _ => y < x,
        };
    }
    for list in [&TEXTS[..], &BLOBS[..]] {
        if let (Some(x), Some(y)) = (rank(list, &a.base), rank(list, &b.base)) {
            return y < x;
        }
    }
    let strings = ["varchar", "char", "varbinary", "binary"];
    if strings.contains(&a.base.as_str()) && strings.contains(&b.base.as_str()) {
        return b.args.first() < a.args.first();
    }
    if TEXTS.contains(&a.base.as_str()) && ["varchar", "char"].contains(&b.base.as_str()) {
        return true;
    }
    // Fractional seconds dropped: values are rounded, silently.
    let times = ["datetime", "timestamp", "time"];
    if times.contains(&a.base.as_str()) && a.base == b.base {
        return b.args.first().copied().unwrap_or(0) < a.args.first().copied().unwrap_or(0);
    }
    // Double to single precision: values are rounded, silently.
    if ["double", "real"].contains(&a.base.as_str()) && b.base == "float" {
        return true;
    }
    if (a.base == "enum" || a.base == "set") && a.base == b.base {
        return !a.values.iter().all(|v| b.values.contains(v));
    }
    if a.base == "decimal" && b.base == "decimal" {
        let (p1, s1) = (
            a.args.first().copied().unwrap_or(10),
            a.args.get(1).copied().unwrap_or(0),
        );
        let (p2, s2) = (
            b.args.first().copied().unwrap_or(10),
            b.args.get(1).copied().unwrap_or(0),
        );
        return s2 < s1 || p2 - s2.min(p2) < p1 - s1.min(p1);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::changes;
    use crate::model::parse_table;

    use crate::model::schema_of as schema;

    #[test]
    fn findings() {
        let s = schema(&[
            "CREATE TABLE `a` (\n  `id` int(11) NOT NULL,\n  `n` varchar(5) CHARACTER SET utf16 COLLATE utf16_general_ci DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            "CREATE TABLE `b` (\n  `x` int(11) DEFAULT NULL\n) ENGINE=MyISAM DEFAULT CHARSET=cp1251",
            "CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `f` (`a`),\n  CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES `a` (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=latin1",
        ]);
        let f = lint(&s, false);
        let codes: Vec<(&str, &str)> = f.iter().map(|f| (f.code, f.table.as_str())).collect();
        assert_eq!(
            codes,
            [
                ("UNSUPPORTED_CHARSET", "a"),
                ("UNSUPPORTED_ENGINE", "b"),
                ("UNSUPPORTED_CHARSET", "b"),
                ("NO_PRIMARY_KEY", "b"),
                ("FOREIGN_KEYS_DISABLED", "c")
            ]
        );
        assert_eq!(f[0].column.as_deref(), Some("n"));
        assert_eq!(f[4].foreign_key_columns, ["a"]);
        assert!(lint(&s, true)
            .iter()
            .all(|f| f.code != "FOREIGN_KEYS_DISABLED"));
    }

    #[test]
    fn unique_keys_shared_between_old_and_new() {
        let users = |cols: &str, keys: &str| {
            parse_table(&format!(
                "CREATE TABLE `users` (\n{cols},\n{keys}\n) ENGINE=InnoDB"
            ))
            .unwrap()
        };
        let cols = "  `id` int(11) NOT NULL,\n  `other_info` int(11) NOT NULL,\n  `username` varchar(128) NOT NULL,\n  `email` varchar(128) NOT NULL";
        let base = users(cols, "  PRIMARY KEY (`id`)");
        // The page's allowed changes.
        for keys in [
            "  PRIMARY KEY (`id`,`other_info`)",
            "  PRIMARY KEY (`email`)",
            "  PRIMARY KEY (`username`,`other_info`)",
            "  PRIMARY KEY (`email`),\n  UNIQUE KEY `u` (`username`)",
        ] {
            assert_eq!(shared_unique_key(&base, &users(cols, keys)), None, "{keys}");
        }
        // Disallowed: the new key's column does not exist in the old table.
        let wider = "  `id` int(11) NOT NULL,\n  `uuid` char(36) NOT NULL,\n  `other_info` int(11) NOT NULL,\n  `username` varchar(128) NOT NULL,\n  `email` varchar(128) NOT NULL";
        let f = shared_unique_key(
            &base,
            &parse_table(&format!(
                "CREATE TABLE `users` (\n{},\n  PRIMARY KEY (`uuid`)\n) ENGINE=InnoDB",
                wider.replace("  `id` int(11) NOT NULL,\n", "")
            ))
            .unwrap(),
        )
        .unwrap();
        assert!(f
            .description
            .contains("no shared columns covered by non-null unique keys"));
        // Disallowed: no non-null unique key on the new side.
        let nullable = "  `id` int(11) DEFAULT NULL,\n  `email` varchar(128) DEFAULT NULL";
        let old = parse_table("CREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n  `email` varchar(128) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB").unwrap();
        let new = parse_table(&format!(
            "CREATE TABLE `users` (\n{nullable},\n  UNIQUE KEY `e` (`email`)\n) ENGINE=InnoDB"
        ))
        .unwrap();
        assert!(shared_unique_key(&old, &new).is_some());
    }

    #[test]
    fn destructive_changes_and_renames() {
        let a = schema(&["CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `old` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB", "CREATE TABLE `gone` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"]);
        let b = schema(&["CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `new` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"]);
        let f = lint_changes(&a, &b, &changes(&a, &b).unwrap());
        let codes: Vec<&str> = f.iter().map(|f| f.code).collect();
        assert_eq!(
            codes,
            [
                "DESTRUCTIVE_CHANGE",
                "POSSIBLE_RENAME",
                "DESTRUCTIVE_CHANGE"
            ]
        );
    }

    #[test]
    fn table_renames_are_warned_only_when_the_columns_match() {
        let users = "CREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n  `name` varchar(20) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
        let people = users.replace("`users`", "`people`");
        let other = "CREATE TABLE `other` (\n  `id` int(11) NOT NULL,\n  `name` varchar(30) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
        let a = schema(&[users]);
        let b = schema(&[&people, other]);
        let f = lint_changes(&a, &b, &changes(&a, &b).unwrap());
        let renames: Vec<&Finding> = f.iter().filter(|f| f.code == "POSSIBLE_RENAME").collect();
        assert_eq!(renames.len(), 1, "{f:?}");
        assert_eq!(renames[0].table, "people");
        assert!(renames[0]
            .description
            .contains("Table `users` is dropped and table `people` created"));
        assert!(f
            .iter()
            .any(|f| f.code == "DESTRUCTIVE_CHANGE" && f.table == "users"));
    }

    #[test]
    fn narrowing_columns_and_dropped_partitions_are_warned() {
        let t = |cols: &str| {
            format!("CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n{cols},\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB")
        };
        let cases: &[(&str, &str, bool)] = &[
            ("bigint(20) DEFAULT NULL", "int(11) DEFAULT NULL", true),
            ("int(11) DEFAULT NULL", "bigint(20) DEFAULT NULL", false),
            (
                "int(11) DEFAULT NULL",
                "int(10) unsigned DEFAULT NULL",
                true,
            ),
            (
                "varchar(100) DEFAULT NULL",
                "varchar(10) DEFAULT NULL",
                true,
            ),
            (
                "varchar(10) DEFAULT NULL",
                "varchar(100) DEFAULT NULL",
                false,
            ),
            ("text DEFAULT NULL", "varchar(50) DEFAULT NULL", true),
            ("mediumtext DEFAULT NULL", "text DEFAULT NULL", true),
            (
                "decimal(10,2) DEFAULT NULL",
                "decimal(8,2) DEFAULT NULL",
                true,
            ),
            (
                "decimal(10,2) DEFAULT NULL",
                "decimal(12,2) DEFAULT NULL",
                false,
            ),
            (
                "decimal(10,2) DEFAULT NULL",
                "decimal(10,1) DEFAULT NULL",
                true,
            ),
            // Existing NULLs do not fit, default or not.
            ("int(11) DEFAULT NULL", "int(11) NOT NULL DEFAULT 0", true),
            ("datetime(6) DEFAULT NULL", "datetime DEFAULT NULL", true),
            ("datetime DEFAULT NULL", "datetime(3) DEFAULT NULL", false),
            ("double DEFAULT NULL", "float DEFAULT NULL", true),
            ("float DEFAULT NULL", "double DEFAULT NULL", false),
            (
                "enum('a','b','c') DEFAULT NULL",
                "enum('a','b') DEFAULT NULL",
                true,
            ),
            (
                "enum('a','b') DEFAULT NULL",
                "enum('a','b','c') DEFAULT NULL",
                false,
            ),
            (
                "enum('a b','c,d') DEFAULT NULL",
                "enum('a b','c,d','e') DEFAULT NULL",
                false,
            ),
            ("float DEFAULT NULL", "int(11) DEFAULT NULL", true),
            ("bigint(20) DEFAULT NULL", "double DEFAULT NULL", true),
            ("decimal(10,2) DEFAULT NULL", "float DEFAULT NULL", true),
            ("varchar(10) DEFAULT NULL", "char(10) DEFAULT NULL", true),
            ("decimal(10,4) DEFAULT NULL", "int(11) DEFAULT NULL", true),
            (
                "decimal(10,0) DEFAULT NULL",
                "bigint(20) DEFAULT NULL",
                false,
            ),
            ("double DEFAULT NULL", "decimal(30,10) DEFAULT NULL", true),
            ("datetime DEFAULT NULL", "date DEFAULT NULL", true),
            ("bit(8) DEFAULT NULL", "bit(4) DEFAULT NULL", true),
            ("int(11) DEFAULT NULL", "int(11) NOT NULL", true),
            // Unsigned into a strictly larger signed type fits; into the same size it does not.
            (
                "int(10) unsigned DEFAULT NULL",
                "bigint(20) DEFAULT NULL",
                false,
            ),
            (
                "int(10) unsigned DEFAULT NULL",
                "int(11) DEFAULT NULL",
                true,
            ),
            (
                "int(11) DEFAULT NULL",
                "bigint(20) unsigned DEFAULT NULL",
                true,
            ),
            // Character sets.
            (
                "varchar(10) DEFAULT NULL",
                "varchar(10) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT NULL",
                true,
            ),
            (
                "varchar(10) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT NULL",
                "varchar(10) DEFAULT NULL",
                false,
            ),
            (
                "varchar(10) DEFAULT NULL",
                "varchar(10) COLLATE utf8mb4_bin DEFAULT NULL",
                false,
            ),
        ];
        let t =
            |cols: &str| t(cols).replace("ENGINE=InnoDB", "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
        for (from, to, warned) in cases {
            let a = schema(&[&t(&format!("  `c` {from}"))]);
            let b = schema(&[&t(&format!("  `c` {to}"))]);
            let f = lint_changes(&a, &b, &changes(&a, &b).unwrap());
            assert_eq!(
                f.iter().any(|f| f.code == "NARROWING_CHANGE"),
                *warned,
                "{from} -> {to}: {f:?}"
            );
        }
        let p = |parts: &str| {
            format!("CREATE TABLE `p` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB\n PARTITION BY RANGE (`id`)\n({parts})")
        };
        let a = schema(&[&p("PARTITION `p0` VALUES LESS THAN (10) ENGINE = InnoDB,\n PARTITION `p1` VALUES LESS THAN (20) ENGINE = InnoDB")]);
        let b = schema(&[&p("PARTITION `p1` VALUES LESS THAN (20) ENGINE = InnoDB,\n PARTITION `p2` VALUES LESS THAN (30) ENGINE = InnoDB")]);
        let f = lint_changes(&a, &b, &changes(&a, &b).unwrap());
        assert!(
            f.iter().any(|f| f
                .description
                .contains("Partition `p0` of table `p` dropped")),
            "{f:?}"
        );
    }
}
