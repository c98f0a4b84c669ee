//! diff(A, B): the statements that take schema A to schema B, in an order the server accepts.

use crate::model::{
    ident, quote, split_top_level, Column, Index, IndexKind, Partition, Partitioning, Schema,
    SchemaError, Table, View,
};
use std::collections::{BTreeMap, BTreeSet};

/// Table options as (key, value) pairs, keys as printed (`ENGINE`, `DEFAULT CHARSET`, `COMMENT`, …).
fn options(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_string();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('\'') {
            let mut i = 0;
            let b = q.as_bytes();
            while i < b.len() {
                if b[i] == b'\\' {
                    i += 2;
                } else if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                    } else {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            let end = (i + 1).min(q.len());
            (format!("'{}", &q[..end]), &q[end..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.push((key, value));
        rest = next.trim_start();
    }
    out
}

/// Foreign-key targets named in a table's constraints.
fn references(t: &Table) -> BTreeSet<String> {
    t.foreign_keys
        .iter()
        .filter_map(|fk| {
            fk.definition
                .split(" REFERENCES ")
                .nth(1)
                .and_then(|r| ident(r))
                .map(|(n, _)| n)
        })
        .filter(|n| n != &t.name)
        .collect()
}

/// The CREATE TABLE statement of `t` under another name (an online deploy's shadow table).
pub fn create_table_named(t: &Table, name: &str, with_foreign_keys: bool) -> String {
    let mut renamed = t.clone();
    renamed.name = name.to_string();
    create_table(&renamed, with_foreign_keys)
}

fn create_table(t: &Table, with_foreign_keys: bool) -> String {
    let mut lines: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("  {} {}", quote(&c.name), c.definition))
        .collect();
    lines.extend(t.indexes.iter().map(|i| format!("  {}", i.definition)));
    if with_foreign_keys {
        lines.extend(t.foreign_keys.iter().map(|i| format!("  {}", i.definition)));
    }
    lines.extend(t.checks.iter().map(|i| format!("  {}", i.definition)));
    let mut create = format!(
        "CREATE TABLE {} (\n{}\n) {}",
        quote(&t.name),
        lines.join(",\n"),
        t.options
    )
    .trim_end()
    .to_string();
    if let Some(p) = &t.partitioning {
        create.push_str("\n ");
        create.push_str(&p.text);
    }
    create
}

fn by_name(list: &[Index]) -> BTreeMap<&str, &Index> {
    list.iter().map(|i| (i.name.as_str(), i)).collect()
}

fn drop_clause(i: &Index) -> String {
    match i.kind {
        IndexKind::Primary => "DROP PRIMARY KEY".to_string(),
        IndexKind::Key => format!("DROP INDEX {}", quote(&i.name)),
        IndexKind::ForeignKey => format!("DROP FOREIGN KEY {}", quote(&i.name)),
        IndexKind::Check => format!("DROP CONSTRAINT {}", quote(&i.name)),
    }
}

/// A key's definition without its name (`UNIQUE KEY (`a`)`): keys that differ only by name have the
/// same. None for primary keys, foreign keys and checks.
fn unnamed(i: &Index) -> Option<String> {
    if i.kind != IndexKind::Key {
        return None;
    }
    let at = i.definition.find('`')?;
    let (_, rest) = ident(&i.definition[at..])?;
    Some(format!("{}{rest}", &i.definition[..at]))
}

/// Keys of `a` that `b` has under another name (old, new): same definition otherwise, neither name on
/// the other side, no column dropped under them. Several candidates of one definition are paired in
/// name order.
fn renamed_keys<'t>(
    a: &'t Table,
    b: &'t Table,
    dropped_columns: &[&str],
) -> Vec<(&'t Index, &'t Index)> {
    let keyed = |t: &'t Table, other: &'t Table| {
        let mut m: BTreeMap<String, Vec<&'t Index>> = BTreeMap::new();
        for i in &t.indexes {
            if other.indexes.iter().any(|o| o.name == i.name) {
                continue;
            }
            let Some(u) = unnamed(i) else { continue };
            if dropped_columns.iter().any(|c| u.contains(&quote(c))) {
                continue;
            }
            m.entry(u).or_default().push(i);
        }
        for v in m.values_mut() {
            v.sort_by(|x, y| x.name.cmp(&y.name));
        }
        m
    };
    let (gone, new) = (keyed(a, b), keyed(b, a));
    let mut out = Vec::new();
    for (definition, olds) in &gone {
        if let Some(news) = new.get(definition) {
            out.extend(olds.iter().copied().zip(news.iter().copied()));
        }
    }
    out
}

/// The default character set and collation in table options (either may be absent).
pub fn table_charset(options_text: &str) -> (Option<String>, Option<String>) {
    let o = options(options_text);
    let get = |k: &str| o.iter().find(|(ok, _)| ok == k).map(|(_, v)| v.clone());
    (
        get("DEFAULT CHARSET").or_else(|| get("CHARSET")),
        get("COLLATE"),
    )
}

const CHARACTER_TYPES: &[&str] = &[
    "char",
    "varchar",
    "tinytext",
    "text",
    "mediumtext",
    "longtext",
    "enum",
    "set",
];

/// True when a column definition's type holds characters (CHAR, VARCHAR, the TEXTs, ENUM, SET;
/// MariaDB's JSON is a LONGTEXT).
pub fn is_character_type(definition: &str) -> bool {
    CHARACTER_TYPES.contains(&column_type(definition).1.as_str())
}

/// A column definition's type as written (`varchar(10)`) and its base, lower case (`varchar`).
fn column_type(definition: &str) -> (&str, String) {
    let ty = split_top_level(definition, ' ')
        .first()
        .copied()
        .unwrap_or_default();
    let base = ty
        .split('(')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    (ty, base)
}

/// A column of a character type printed without its own character set or collation: it has the
/// table's.
pub fn inherits_charset(definition: &str) -> bool {
    let (ty, base) = column_type(definition);
    let rest = &definition[ty.len()..];
    CHARACTER_TYPES.contains(&base.as_str())
        && !rest.starts_with(" CHARACTER SET ")
        && !rest.starts_with(" COLLATE ")
}

/// `definition` with the character set and collation written out after its type.
fn with_charset(definition: &str, charset: &str, collation: Option<&str>) -> String {
    let ty = split_top_level(definition, ' ')
        .first()
        .copied()
        .unwrap_or_default();
    let collate = collation
        .map(|c| format!(" COLLATE {c}"))
        .unwrap_or_default();
    format!(
        "{ty} CHARACTER SET {charset}{collate}{}",
        &definition[ty.len()..]
    )
}

/// The ALTER TABLE clauses taking `a` to `b`, except foreign keys to add (they come last, once every
/// table exists) and partitioning (see [`partition_change`]).
fn alter_clauses(a: &Table, b: &Table) -> Result<Vec<String>, SchemaError> {
    let mut clauses = Vec::new();
    let (afk, bfk) = (by_name(&a.foreign_keys), by_name(&b.foreign_keys));
    for (n, fk) in &afk {
        if bfk.get(n).is_none_or(|x| x.definition != fk.definition) {
            clauses.push(drop_clause(fk));
        }
    }
    // Columns: drop, then add or modify in B's order, keeping positions with FIRST/AFTER. The server
    // cannot MODIFY a generated column into another kind, so a changed generated column is dropped
    // and added again (its values are computed, nothing is lost).
    let generated = |d: &str| d.contains(" GENERATED ALWAYS AS ");
    let b_defs: BTreeMap<&str, &str> = b
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.definition.as_str()))
        .collect();
    let recreate = |c: &Column| {
        b_defs
            .get(c.name.as_str())
            .is_some_and(|d| *d != c.definition && (generated(d) || generated(&c.definition)))
    };
    let dropped_columns: Vec<&str> = a
        .columns
        .iter()
        .filter(|c| !b_defs.contains_key(c.name.as_str()) || recreate(c))
        .map(|c| c.name.as_str())
        .collect();
    // Keys that only change their name are renamed, not rebuilt.
    let renamed = renamed_keys(a, b, &dropped_columns);
    let (ai, bi) = (by_name(&a.indexes), by_name(&b.indexes));
    for (n, i) in &ai {
        if renamed.iter().any(|(old, _)| old.name == *n) {
            continue;
        }
        if bi.get(n).is_none_or(|x| x.definition != i.definition) {
            clauses.push(drop_clause(i));
        }
    }
    let (ac, bc) = (by_name(&a.checks), by_name(&b.checks));
    for (n, c) in &ac {
        if bc.get(n).is_none_or(|x| x.definition != c.definition) {
            clauses.push(drop_clause(c));
        }
    }
    for (old, new) in &renamed {
        clauses.push(format!(
            "RENAME INDEX {} TO {}",
            quote(&old.name),
            quote(&new.name)
        ));
    }
    // A column printed without a character set has the table's: when the table's default changes,
    // such columns are converted with it (the server would keep their old one and print it).
    let (a_cs, b_cs) = (table_charset(&a.options), table_charset(&b.options));
    let convert = a_cs != b_cs && b_cs.0.is_some();
    let target = |c: &Column| -> Option<String> {
        match (&b_cs, convert && inherits_charset(&c.definition)) {
            ((Some(cs), collation), true) => {
                Some(with_charset(&c.definition, cs, collation.as_deref()))
            }
            _ => None,
        }
    };
    let mut current: Vec<&str> = Vec::new();
    let mut a_cols: BTreeMap<&str, &str> = BTreeMap::new();
    for c in &a.columns {
        if dropped_columns.contains(&c.name.as_str()) {
            clauses.push(format!("DROP COLUMN {}", quote(&c.name)));
        } else {
            current.push(&c.name);
            a_cols.insert(&c.name, &c.definition);
        }
    }
    for (i, c) in b.columns.iter().enumerate() {
        let position = if i == 0 {
            "FIRST".to_string()
        } else {
            format!("AFTER {}", quote(&b.columns[i - 1].name))
        };
        let converted = target(c);
        let definition = converted.as_deref().unwrap_or(&c.definition);
        match a_cols.get(c.name.as_str()) {
            None => {
                clauses.push(format!(
                    "ADD COLUMN {} {definition} {position}",
                    quote(&c.name),
                ));
                current.insert(i.min(current.len()), &c.name);
            }
            Some(def) => {
                let at = current.iter().position(|n| *n == c.name).unwrap_or(i);
                // Converted: unless A printed it with that very character set already.
                let changed = match &converted {
                    Some(x) => def != x,
                    None => *def != c.definition,
                };
                if changed || at != i {
                    clauses.push(format!(
                        "MODIFY COLUMN {} {definition} {position}",
                        quote(&c.name),
                    ));
                    current.remove(at);
                    current.insert(i.min(current.len()), &c.name);
                }
            }
        }
    }
    for (n, i) in &bi {
        if renamed.iter().any(|(_, new)| new.name == *n) {
            continue;
        }
        if ai.get(n).is_none_or(|x| x.definition != i.definition) {
            clauses.push(format!("ADD {}", i.definition));
        }
    }
    for (n, c) in &bc {
        if ac.get(n).is_none_or(|x| x.definition != c.definition) {
            clauses.push(format!("ADD {}", c.definition));
        }
    }
    if a.options != b.options {
        let (ao, bo) = (options(&a.options), options(&b.options));
        for (k, v) in &bo {
            if !ao.iter().any(|(ak, av)| ak == k && av == v) {
                clauses.push(format!("{k}={v}"));
            }
        }
        for (k, _) in &ao {
            if !bo.iter().any(|(bk, _)| bk == k) {
                match k.as_str() {
                    "COMMENT" => clauses.push("COMMENT=''".into()),
                    "ROW_FORMAT" => clauses.push("ROW_FORMAT=DEFAULT".into()),
                    "STATS_PERSISTENT" | "STATS_AUTO_RECALC" => {
                        clauses.push(format!("{k}=DEFAULT"))
                    }
                    "CHECKSUM" | "PAGE_CHECKSUM" => clauses.push(format!("{k}=0")),
                    other => {
                        return Err(SchemaError::Unsupported {
                            table: a.name.clone(),
                            construct: format!("removing the table option {other}"),
                        })
                    }
                }
            }
        }
    }
    Ok(clauses)
}

/// How a table's partitioning changes.
#[derive(Debug, PartialEq, Eq)]
enum PartitionChange<'t> {
    Same,
    /// `PARTITION BY …` or `REMOVE PARTITIONING`, last in the table's ALTER TABLE.
    Clause(String),
    /// RANGE partitions rotated: the oldest dropped, the newest added, the others as they were.
    Rotate {
        drop: Vec<&'t Partition>,
        add: Vec<&'t Partition>,
    },
}

fn partition_change<'t>(a: &'t Table, b: &'t Table) -> PartitionChange<'t> {
    match (&a.partitioning, &b.partitioning) {
        (None, None) => PartitionChange::Same,
        (Some(_), None) => PartitionChange::Clause("REMOVE PARTITIONING".into()),
        (None, Some(q)) => PartitionChange::Clause(q.text.clone()),
        (Some(p), Some(q)) if p.text == q.text => PartitionChange::Same,
        (Some(p), Some(q)) => {
            rotation(p, q).unwrap_or_else(|| PartitionChange::Clause(q.text.clone()))
        }
    }
}

/// `b` is `a` with a prefix of its RANGE partitions dropped and partitions appended, the rest (at
/// least one) identical.
fn rotation<'t>(a: &'t Partitioning, b: &'t Partitioning) -> Option<PartitionChange<'t>> {
    if a.scheme != b.scheme || !matches!(a.method().as_str(), "RANGE" | "RANGE COLUMNS") {
        return None;
    }
    let first = b.partitions.first()?;
    let start = a.partitions.iter().position(|p| p == first)?;
    let kept = &a.partitions[start..];
    if b.partitions.get(..kept.len())? != kept {
        return None;
    }
    Some(PartitionChange::Rotate {
        drop: a.partitions[..start].iter().collect(),
        add: b.partitions[kept.len()..].iter().collect(),
    })
}

/// The statements taking table `a` to `b` (foreign keys to add aside), with whether each only adds
/// or drops a partition: the ALTER TABLE of its columns, keys, options and partitioning scheme, then
/// one statement per partition dropped, then one per partition added (the server runs those alone).
fn table_statements(a: &Table, b: &Table) -> Result<Vec<(String, bool)>, SchemaError> {
    let clauses = alter_clauses(a, b)?;
    let name = quote(&a.name);
    let mut out = Vec::new();
    let change = partition_change(a, b);
    let mut main = clauses.join(", ");
    if let PartitionChange::Clause(c) = &change {
        if !main.is_empty() {
            main.push(' ');
        }
        main.push_str(c);
    }
    if !main.is_empty() {
        out.push((format!("ALTER TABLE {name} {main}"), false));
    }
    if let PartitionChange::Rotate { drop, add } = change {
        for p in drop {
            out.push((
                format!("ALTER TABLE {name} DROP PARTITION {}", quote(&p.name)),
                true,
            ));
        }
        for p in add {
            out.push((
                format!("ALTER TABLE {name} ADD PARTITION ({})", p.definition),
                true,
            ));
        }
    }
    Ok(out)
}

/// Orders names so that each comes after the ones it depends on (cycles keep their given order).
fn dependency_order(names: Vec<&str>, deps: impl Fn(&str) -> BTreeSet<String>) -> Vec<&str> {
    let set: BTreeSet<&str> = names.iter().copied().collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    let mut pending = names;
    while !pending.is_empty() {
        let before = out.len();
        pending.retain(|n| {
            let ready = deps(n)
                .iter()
                .all(|d| !set.contains(d.as_str()) || done.contains(d.as_str()) || d == n);
            if ready {
                done.insert(n);
                out.push(*n);
            }
            !ready
        });
        if out.len() == before {
            out.append(&mut pending);
        }
    }
    out
}

fn view_deps(v: &View, views: &BTreeMap<String, View>) -> BTreeSet<String> {
    views
        .keys()
        .filter(|n| *n != &v.name && v.create.contains(&quote(n)))
        .cloned()
        .collect()
}

/// One statement of a diff and the table or view it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub object: String,
    pub statement: String,
    /// The statement only drops or adds one partition of the table (`ALTER TABLE t DROP PARTITION p`,
    /// `ALTER TABLE t ADD PARTITION (…)`): it is meant to run directly on the table, not through a
    /// copy of it. It comes after the table's other ALTER TABLE, if any; a table rebuilt from its
    /// target definition has it already.
    pub in_place: bool,
}

/// The statements taking schema `from` to schema `to`.
pub fn diff(from: &Schema, to: &Schema) -> Result<Vec<String>, SchemaError> {
    Ok(changes(from, to)?
        .into_iter()
        .map(|c| c.statement)
        .collect())
}

/// Like [`diff`], with the object each statement changes.
pub fn changes(from: &Schema, to: &Schema) -> Result<Vec<Change>, SchemaError> {
    let statements = statements(from, to)?;
    Ok(statements
        .into_iter()
        .map(|(statement, in_place)| {
            // The name follows TABLE or VIEW (a view's DEFINER comes before it).
            let at = statement
                .find(" VIEW `")
                .map(|i| i + 6)
                .or_else(|| statement.find('`'));
            let object = at
                .and_then(|i| ident(&statement[i..]))
                .map(|(n, _)| n)
                .unwrap_or_default();
            Change {
                object,
                statement,
                in_place,
            }
        })
        .collect())
}

fn statements(from: &Schema, to: &Schema) -> Result<Vec<(String, bool)>, SchemaError> {
    let mut out: Vec<String> = Vec::new();
    // Views that go or change first: they may read tables about to change.
    let dropped_views: Vec<&str> = from
        .views
        .keys()
        .filter(|n| !to.views.contains_key(*n))
        .map(String::as_str)
        .collect();
    for n in dependency_order(dropped_views, |n| {
        from.views
            .get(n)
            .map(|v| view_deps(v, &from.views))
            .unwrap_or_default()
    })
    .into_iter()
    .rev()
    {
        out.push(format!("DROP VIEW {}", quote(n)));
    }
    // New tables, without their foreign keys (added last, so references may point anywhere).
    let new_tables: Vec<&str> = to
        .tables
        .keys()
        .filter(|n| !from.tables.contains_key(*n))
        .map(String::as_str)
        .collect();
    for n in dependency_order(new_tables.clone(), |n| {
        to.tables.get(n).map(references).unwrap_or_default()
    }) {
        out.push(create_table(&to.tables[n], false));
    }
    // Changed tables.
    let mut result: Vec<(String, bool)> = out.drain(..).map(|s| (s, false)).collect();
    for (n, a) in &from.tables {
        if let Some(b) = to.tables.get(n) {
            result.extend(table_statements(a, b)?);
        }
    }
    // Foreign keys to add, now that every table exists.
    for (n, b) in &to.tables {
        let a_fks = from
            .tables
            .get(n)
            .map(|a| by_name(&a.foreign_keys))
            .unwrap_or_default();
        let adds: Vec<String> = b
            .foreign_keys
            .iter()
            .filter(|fk| {
                a_fks
                    .get(fk.name.as_str())
                    .is_none_or(|x| x.definition != fk.definition)
            })
            .map(|fk| format!("ADD {}", fk.definition))
            .collect();
        if !adds.is_empty() {
            out.push(format!("ALTER TABLE {} {}", quote(n), adds.join(", ")));
        }
    }
    // Dropped tables, those referencing others first: last, unless a view takes the place of one
    // (then before the views, which cannot read a dropped table anyway).
    let dropped: Vec<&str> = from
        .tables
        .keys()
        .filter(|n| !to.tables.contains_key(*n))
        .map(String::as_str)
        .collect();
    let replaced_by_view = dropped.iter().any(|n| to.views.contains_key(*n));
    let drops: Vec<String> = dependency_order(dropped, |n| {
        from.tables.get(n).map(references).unwrap_or_default()
    })
    .into_iter()
    .rev()
    .map(|n| format!("DROP TABLE {}", quote(n)))
    .collect();
    if replaced_by_view {
        out.extend(drops.iter().cloned());
    }
    // New and changed views, those read by others first.
    let changed_views: Vec<&str> = to
        .views
        .iter()
        .filter(|(n, v)| from.views.get(*n).is_none_or(|a| a.create != v.create))
        .map(|(n, _)| n.as_str())
        .collect();
    for n in dependency_order(changed_views, |n| {
        to.views
            .get(n)
            .map(|v| view_deps(v, &to.views))
            .unwrap_or_default()
    }) {
        let create = &to.views[n].create;
        out.push(
            create
                .strip_prefix("CREATE ")
                .map(|r| format!("CREATE OR REPLACE {r}"))
                .unwrap_or_else(|| create.clone()),
        );
    }
    if !replaced_by_view {
        out.extend(drops);
    }
    result.extend(out.into_iter().map(|s| (s, false)));
    Ok(result)
}

/// Two schemas are the same when their tables have the same columns in the same order and the same
/// keys, constraints and options (key order aside), and their views the same definitions.
pub fn same(a: &Schema, b: &Schema) -> bool {
    a.tables.len() == b.tables.len()
        && a.tables
            .iter()
            .all(|(n, t)| b.tables.get(n).is_some_and(|u| t.equivalent(u)))
        && a.views == b.views
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::schema_of as schema;

    const A: &str = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `a` varchar(10) DEFAULT NULL,\n  `b` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `ia` (`a`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";

    #[test]
    fn same_schema_has_no_diff() {
        let s = schema(&[A]);
        assert!(diff(&s, &s).unwrap().is_empty());
        assert!(same(&s, &s));
    }

    #[test]
    fn columns_keep_their_order() {
        let b = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `c` int(11) DEFAULT NULL,\n  `b` bigint(20) DEFAULT NULL,\n  `a` varchar(10) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `ia` (`a`,`b`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='x'";
        let d = diff(&schema(&[A]), &schema(&[b])).unwrap();
        assert_eq!(
            d,
            ["ALTER TABLE `t` DROP INDEX `ia`, ADD COLUMN `c` int(11) DEFAULT NULL AFTER `id`, MODIFY COLUMN `b` bigint(20) DEFAULT NULL AFTER `c`, ADD KEY `ia` (`a`,`b`), COMMENT='x'"]
        );
        // and back: the comment is cleared, the column dropped
        let back = diff(&schema(&[b]), &schema(&[A])).unwrap();
        assert!(
            back[0].contains("DROP COLUMN `c`") && back[0].contains("COMMENT=''"),
            "{back:?}"
        );
    }

    #[test]
    fn tables_come_and_go_in_dependency_order() {
        let parent =
            "CREATE TABLE `p` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
        let child = "CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `p` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `fk` (`p`),\n  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`)\n) ENGINE=InnoDB";
        let d = diff(&Schema::default(), &schema(&[parent, child])).unwrap();
        assert!(d[0].starts_with("CREATE TABLE `c`") || d[0].starts_with("CREATE TABLE `p`"));
        assert_eq!(
            d.last().unwrap(),
            "ALTER TABLE `c` ADD CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`)"
        );
        let back = diff(&schema(&[parent, child]), &Schema::default()).unwrap();
        assert_eq!(back, ["DROP TABLE `c`", "DROP TABLE `p`"]);
    }

    #[test]
    fn changes_name_their_objects() {
        let mut b = schema(&[A]);
        b.views.insert(
            "v".into(),
            crate::model::View { name: "v".into(), create: "CREATE ALGORITHM=UNDEFINED DEFINER=`u`@`h` SQL SECURITY DEFINER VIEW `v` AS select 1".into() },
        );
        let c = changes(&Schema::default(), &b).unwrap();
        let objects: Vec<&str> = c.iter().map(|c| c.object.as_str()).collect();
        assert_eq!(objects, ["t", "v"]);
    }

    #[test]
    fn option_tokens() {
        assert_eq!(
            options("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='a b''c' ROW_FORMAT=DYNAMIC"),
            [
                ("ENGINE".to_string(), "InnoDB".to_string()),
                ("DEFAULT CHARSET".to_string(), "utf8mb4".to_string()),
                ("COMMENT".to_string(), "'a b''c'".to_string()),
                ("ROW_FORMAT".to_string(), "DYNAMIC".to_string())
            ]
        );
    }
}

/// MySQL 8 prints some things differently from MariaDB (no integer display widths, versioned
/// comments for invisible columns and keys, SRIDs and unenforced checks, expression defaults,
/// functional key parts, the 0900 collations); the model keeps definitions as printed, so the same
/// diff works on MySQL 8 output.
#[cfg(test)]
mod mysql8 {
    use super::*;
    use crate::model::{parse_table, schema_of as schema};

    const ORDERS: &str = "CREATE TABLE `orders` (\n  `id` bigint unsigned NOT NULL AUTO_INCREMENT,\n  `customer_id` int NOT NULL,\n  `note` varchar(200) COLLATE utf8mb4_unicode_ci DEFAULT NULL /*!80023 INVISIBLE */,\n  `uuid` binary(16) NOT NULL DEFAULT (uuid_to_bin(uuid())),\n  `qty` int NOT NULL DEFAULT '1',\n  `price` decimal(10,2) NOT NULL,\n  `total` decimal(12,2) GENERATED ALWAYS AS ((`qty` * `price`)) STORED,\n  `pt` point NOT NULL /*!80003 SRID 4326 */,\n  `created_at` datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  PRIMARY KEY (`id`),\n  KEY `idx_customer` (`customer_id`) /*!80000 INVISIBLE */,\n  KEY `idx_note` ((lower(`note`))),\n  SPATIAL KEY `sp` (`pt`),\n  CONSTRAINT `orders_chk_1` CHECK ((`qty` > 0)) /*!80016 NOT ENFORCED */\n) ENGINE=InnoDB AUTO_INCREMENT=5 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci";

    #[test]
    fn parses_mysql_8_output() {
        let t = parse_table(ORDERS).unwrap();
        let cols: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            cols,
            [
                "id",
                "customer_id",
                "note",
                "uuid",
                "qty",
                "price",
                "total",
                "pt",
                "created_at"
            ]
        );
        assert_eq!(
            t.columns[2].definition,
            "varchar(200) COLLATE utf8mb4_unicode_ci DEFAULT NULL /*!80023 INVISIBLE */"
        );
        assert_eq!(t.indexes.len(), 4);
        assert_eq!(t.checks.len(), 1);
        assert!(!t.options.contains("AUTO_INCREMENT"));
        let s = schema(&[ORDERS]);
        assert!(diff(&s, &s).unwrap().is_empty());
    }

    #[test]
    fn diffs_mysql_8_output() {
        let after = ORDERS
            .replace(
                "  `created_at` datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,\n",
                "  `created_at` datetime NOT NULL DEFAULT CURRENT_TIMESTAMP,\n  `ref` char(36) NOT NULL DEFAULT (uuid()) /*!80023 INVISIBLE */,\n",
            )
            .replace(
                "KEY `idx_customer` (`customer_id`) /*!80000 INVISIBLE */",
                "KEY `idx_customer` (`customer_id`)",
            )
            .replace(
                "CHECK ((`qty` > 0)) /*!80016 NOT ENFORCED */",
                "CHECK ((`qty` > 0))",
            );
        let d = diff(&schema(&[ORDERS]), &schema(&[&after])).unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        let s = &d[0];
        assert!(s.starts_with("ALTER TABLE `orders` "), "{s}");
        assert!(
            s.contains("ADD COLUMN `ref` char(36) NOT NULL DEFAULT (uuid()) /*!80023 INVISIBLE */ AFTER `created_at`"),
            "{s}"
        );
        assert!(
            s.contains("DROP INDEX `idx_customer`")
                && s.contains("ADD KEY `idx_customer` (`customer_id`)"),
            "{s}"
        );
        assert!(
            s.contains("CHECK ((`qty` > 0))") && !s.contains("NOT ENFORCED */,"),
            "{s}"
        );
        // And back.
        let back = diff(&schema(&[&after]), &schema(&[ORDERS])).unwrap();
        assert!(back[0].contains("DROP COLUMN `ref`"), "{back:?}");
    }
}

#[cfg(test)]
mod partitions {
    use super::*;
    use crate::model::schema_of as schema;

    const HEAD: &str = "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `d` date NOT NULL,\n  PRIMARY KEY (`id`,`d`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";

    fn range(parts: &[(&str, &str)]) -> String {
        let list: Vec<String> = parts
            .iter()
            .map(|(n, v)| format!("PARTITION `{n}` VALUES LESS THAN ({v}) ENGINE = InnoDB"))
            .collect();
        format!(
            "{HEAD}\n PARTITION BY RANGE (year(`d`))\n({})",
            list.join(",\n ")
        )
    }

    fn range_columns(parts: &[(&str, &str)]) -> String {
        let list: Vec<String> = parts
            .iter()
            .map(|(n, v)| format!("PARTITION `{n}` VALUES LESS THAN ('{v}') ENGINE = InnoDB"))
            .collect();
        format!(
            "{HEAD}\n PARTITION BY RANGE  COLUMNS(`d`)\n({})",
            list.join(",\n ")
        )
    }

    fn with_column(t: &str) -> String {
        t.replace(
            "  `d` date NOT NULL,\n",
            "  `d` date NOT NULL,\n  `x` int(11) DEFAULT NULL,\n",
        )
    }

    #[test]
    fn partition_changes() {
        let y = |n: &'static str, v: &'static str| (n, v);
        let r0 = range(&[y("p0", "2020"), y("p1", "2021"), y("p2", "2022")]);
        let hash = format!("{HEAD}\n PARTITION BY HASH (`id`)\nPARTITIONS 4");
        let p3 = "PARTITION `p3` VALUES LESS THAN (2023) ENGINE = InnoDB";
        let p4 = "PARTITION `p4` VALUES LESS THAN (2024) ENGINE = InnoDB";
        // (A, B, statements with whether each is in place)
        type Case = (String, String, Vec<(String, bool)>);
        let cases: Vec<Case> = vec![
            // the same partitioning: nothing
            (r0.clone(), r0.clone(), vec![]),
            // other changes leave the partitioning alone
            (
                r0.clone(),
                with_column(&r0),
                vec![("ALTER TABLE `t` ADD COLUMN `x` int(11) DEFAULT NULL AFTER `d`".into(), false)],
            ),
            // partitioning added, removed, changed
            (
                HEAD.into(),
                r0.clone(),
                vec![(format!("ALTER TABLE `t` {}", &r0[HEAD.len() + 2..]), false)],
            ),
            (
                r0.clone(),
                HEAD.into(),
                vec![("ALTER TABLE `t` REMOVE PARTITIONING".into(), false)],
            ),
            (
                r0.clone(),
                hash.clone(),
                vec![("ALTER TABLE `t` PARTITION BY HASH (`id`)\nPARTITIONS 4".into(), false)],
            ),
            (
                hash.clone(),
                hash.replace("PARTITIONS 4", "PARTITIONS 8"),
                vec![("ALTER TABLE `t` PARTITION BY HASH (`id`)\nPARTITIONS 8".into(), false)],
            ),
            // with column changes: the partitioning clause last, without a comma
            (
                HEAD.into(),
                with_column(&hash),
                vec![("ALTER TABLE `t` ADD COLUMN `x` int(11) DEFAULT NULL AFTER `d` PARTITION BY HASH (`id`)\nPARTITIONS 4".into(), false)],
            ),
            (
                with_column(&hash),
                HEAD.into(),
                vec![("ALTER TABLE `t` DROP COLUMN `x` REMOVE PARTITIONING".into(), false)],
            ),
            // rotation: the oldest dropped, the newest added
            (
                r0.clone(),
                range(&[y("p1", "2021"), y("p2", "2022"), y("p3", "2023")]),
                vec![
                    ("ALTER TABLE `t` DROP PARTITION `p0`".into(), true),
                    (format!("ALTER TABLE `t` ADD PARTITION ({p3})"), true),
                ],
            ),
            (
                r0.clone(),
                range(&[y("p2", "2022")]),
                vec![
                    ("ALTER TABLE `t` DROP PARTITION `p0`".into(), true),
                    ("ALTER TABLE `t` DROP PARTITION `p1`".into(), true),
                ],
            ),
            (
                r0.clone(),
                range(&[y("p0", "2020"), y("p1", "2021"), y("p2", "2022"), y("p3", "2023"), y("p4", "2024")]),
                vec![
                    (format!("ALTER TABLE `t` ADD PARTITION ({p3})"), true),
                    (format!("ALTER TABLE `t` ADD PARTITION ({p4})"), true),
                ],
            ),
            // a dropped name used again for a new partition
            (
                range(&[y("p0", "2020"), y("p1", "2021")]),
                range(&[y("p1", "2021"), y("p0", "2022")]),
                vec![
                    ("ALTER TABLE `t` DROP PARTITION `p0`".into(), true),
                    ("ALTER TABLE `t` ADD PARTITION (PARTITION `p0` VALUES LESS THAN (2022) ENGINE = InnoDB)".into(), true),
                ],
            ),
            // rotation with a column change: the table's ALTER first, then the partitions
            (
                r0.clone(),
                with_column(&range(&[y("p1", "2021"), y("p2", "2022"), y("p3", "2023")])),
                vec![
                    ("ALTER TABLE `t` ADD COLUMN `x` int(11) DEFAULT NULL AFTER `d`".into(), false),
                    ("ALTER TABLE `t` DROP PARTITION `p0`".into(), true),
                    (format!("ALTER TABLE `t` ADD PARTITION ({p3})"), true),
                ],
            ),
            // RANGE COLUMNS rotates too
            (
                range_columns(&[y("p0", "2020-01-01"), y("p1", "2021-01-01")]),
                range_columns(&[y("p1", "2021-01-01"), y("p2", "2022-01-01")]),
                vec![
                    ("ALTER TABLE `t` DROP PARTITION `p0`".into(), true),
                    ("ALTER TABLE `t` ADD PARTITION (PARTITION `p2` VALUES LESS THAN ('2022-01-01') ENGINE = InnoDB)".into(), true),
                ],
            ),
        ];
        for (a, b, want) in &cases {
            let got: Vec<(String, bool)> = changes(&schema(&[a]), &schema(&[b]))
                .unwrap()
                .into_iter()
                .map(|c| {
                    assert_eq!(c.object, "t");
                    (c.statement, c.in_place)
                })
                .collect();
            assert_eq!(&got, want, "\nA: {a}\nB: {b}");
            assert!(diff(&schema(&[b]), &schema(&[b])).unwrap().is_empty());
        }
    }

    #[test]
    fn rewrites_what_is_not_a_rotation() {
        let y = |n: &'static str, v: &'static str| (n, v);
        let r0 = range(&[y("p0", "2020"), y("p1", "2021"), y("p2", "2022")]);
        let list = r0
            .replace("RANGE (year(`d`))", "LIST (year(`d`))")
            .replace("LESS THAN", "IN");
        let targets = [
            // a partition in the middle dropped
            range(&[y("p0", "2020"), y("p2", "2022")]),
            // a kept partition redefined
            range(&[y("p1", "2021"), y("p2", "2023")]),
            // a partition inserted before the last
            range(&[
                y("p0", "2020"),
                y("p1", "2021"),
                y("p15", "2021"),
                y("p2", "2022"),
            ]),
            // all replaced
            range(&[y("q0", "2030")]),
            // another expression
            range(&[y("p1", "2021"), y("p2", "2022")]).replace("year(`d`)", "to_days(`d`)"),
        ];
        for b in &targets {
            let c = changes(&schema(&[&r0]), &schema(&[b])).unwrap();
            assert_eq!(c.len(), 1, "{c:?}");
            assert!(!c[0].in_place);
            let (_, clause) = b.split_once("\n PARTITION BY ").unwrap();
            assert_eq!(
                c[0].statement,
                format!("ALTER TABLE `t` PARTITION BY {clause}")
            );
        }
        // LIST partitions are not rotated.
        let l2 = list.replace("PARTITION `p0` VALUES IN (2020) ENGINE = InnoDB,\n ", "");
        let c = changes(&schema(&[&list]), &schema(&[&l2])).unwrap();
        assert!(
            c.len() == 1 && c[0].statement.contains("PARTITION BY LIST"),
            "{c:?}"
        );
    }

    #[test]
    fn created_tables_keep_their_partitioning() {
        let r0 = range(&[("p0", "2020")]);
        let d = diff(&Schema::default(), &schema(&[&r0])).unwrap();
        assert_eq!(d, std::slice::from_ref(&r0));
        assert_eq!(
            create_table_named(&schema(&[&r0]).tables["t"], "t", true),
            r0
        );
    }
}

#[cfg(test)]
mod charsets {
    use super::*;
    use crate::model::schema_of as schema;

    fn table(columns: &[&str], options: &str) -> String {
        let lines: Vec<String> = columns.iter().map(|c| format!("  {c}")).collect();
        format!(
            "CREATE TABLE `t` (\n{},\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB {options}",
            lines.join(",\n")
        )
    }

    const MB4: &str = "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci";
    const LATIN1: &str = "DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci";
    const MB3: &str = "DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_general_ci";

    #[test]
    fn inheriting_columns_follow_the_table() {
        let id = "`id` int(11) NOT NULL";
        let name = "`name` varchar(20) DEFAULT NULL";
        let e = "`e` enum('a b','c') NOT NULL DEFAULT 'a b'";
        let fixed = "`f` varchar(5) CHARACTER SET latin1 COLLATE latin1_bin DEFAULT NULL";
        let cases: &[(&str, &str, &[&str], &str)] = &[
            // (A options, B options, columns of both, the ALTER's clauses)
            (
                MB4,
                LATIN1,
                &[id, name, e, fixed],
                "MODIFY COLUMN `name` varchar(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT NULL AFTER `id`, MODIFY COLUMN `e` enum('a b','c') CHARACTER SET latin1 COLLATE latin1_swedish_ci NOT NULL DEFAULT 'a b' AFTER `name`, DEFAULT CHARSET=latin1, COLLATE=latin1_swedish_ci",
            ),
            (
                LATIN1,
                MB3,
                &[id, name],
                "MODIFY COLUMN `name` varchar(20) CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci DEFAULT NULL AFTER `id`, DEFAULT CHARSET=utf8mb3, COLLATE=utf8mb3_general_ci",
            ),
            // a collation alone
            (
                MB4,
                "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
                &[id, "`t` text DEFAULT NULL"],
                "MODIFY COLUMN `t` text CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci DEFAULT NULL AFTER `id`, COLLATE=utf8mb4_unicode_ci",
            ),
            // no character columns: the options only
            (MB4, LATIN1, &[id, "`b` varbinary(10) DEFAULT NULL"], "DEFAULT CHARSET=latin1, COLLATE=latin1_swedish_ci"),
        ];
        for (ao, bo, cols, want) in cases {
            let (a, b) = (table(cols, ao), table(cols, bo));
            let d = diff(&schema(&[&a]), &schema(&[&b])).unwrap();
            assert_eq!(d, [format!("ALTER TABLE `t` {want}")], "\nA: {a}\nB: {b}");
        }
        // A column added while the table converts gets the new character set too.
        let d = diff(
            &schema(&[&table(&[id], MB4)]),
            &schema(&[&table(&[id, name], LATIN1)]),
        )
        .unwrap();
        assert_eq!(d, ["ALTER TABLE `t` ADD COLUMN `name` varchar(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT NULL AFTER `id`, DEFAULT CHARSET=latin1, COLLATE=latin1_swedish_ci"]);
        // A column that had the new character set already is not modified.
        let d = diff(
            &schema(&[&table(
                &[
                    id,
                    "`n` char(2) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT NULL",
                ],
                MB4,
            )]),
            &schema(&[&table(&[id, "`n` char(2) DEFAULT NULL"], LATIN1)]),
        )
        .unwrap();
        assert_eq!(
            d,
            ["ALTER TABLE `t` DEFAULT CHARSET=latin1, COLLATE=latin1_swedish_ci"]
        );
        // A column that kept its character set while the table's changed is printed with it.
        let d = diff(
            &schema(&[&table(&[id, name], LATIN1)]),
            &schema(&[&table(&[id, "`name` varchar(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT NULL"], MB4)]),
        )
        .unwrap();
        assert_eq!(d, ["ALTER TABLE `t` MODIFY COLUMN `name` varchar(20) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT NULL AFTER `id`, DEFAULT CHARSET=utf8mb4, COLLATE=utf8mb4_general_ci"]);
    }

    #[test]
    fn character_types() {
        for (def, inherits) in [
            ("varchar(20) DEFAULT NULL", true),
            ("char(1) NOT NULL", true),
            ("longtext DEFAULT NULL", true),
            ("set('a','b c') DEFAULT NULL", true),
            ("ENUM('x') DEFAULT NULL", true),
            (
                "varchar(20) CHARACTER SET latin1 COLLATE latin1_bin DEFAULT NULL",
                false,
            ),
            ("varchar(20) COLLATE utf8mb4_bin DEFAULT NULL", false),
            ("int(11) DEFAULT NULL", false),
            ("varbinary(5) DEFAULT NULL", false),
            ("blob DEFAULT NULL", false),
            ("json DEFAULT NULL", false),
        ] {
            assert_eq!(inherits_charset(def), inherits, "{def}");
        }
        assert_eq!(
            with_charset("enum('a b','c') NOT NULL", "latin1", None),
            "enum('a b','c') CHARACTER SET latin1 NOT NULL"
        );
        assert_eq!(
            with_charset("text", "latin1", Some("latin1_bin")),
            "text CHARACTER SET latin1 COLLATE latin1_bin"
        );
    }
}

#[cfg(test)]
mod replaced {
    use super::*;
    use crate::model::schema_of as schema;

    const T: &str =
        "CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
    const U: &str =
        "CREATE TABLE `u` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
    const C: &str = "CREATE TABLE `c` (\n  `t` int(11) NOT NULL,\n  KEY `t` (`t`),\n  CONSTRAINT `fk` FOREIGN KEY (`t`) REFERENCES `t` (`id`)\n) ENGINE=InnoDB";

    fn with_views(mut s: Schema, views: &[(&str, &str)]) -> Schema {
        for (name, body) in views {
            s.views.insert(
                name.to_string(),
                View {
                    name: name.to_string(),
                    create: format!(
                        "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `{name}` AS {body}"
                    ),
                },
            );
        }
        s
    }

    fn view(name: &str, body: &str) -> String {
        format!(
            "CREATE OR REPLACE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `{name}` AS {body}"
        )
    }

    #[test]
    fn tables_and_views_trade_places() {
        let from_u = "select `u`.`id` AS `id` from `u`";
        let from_t = "select `t`.`id` AS `id` from `t`";
        let cases: Vec<(Schema, Schema, Vec<String>)> = vec![
            // a table replaced by a view: dropped first
            (
                schema(&[T, U]),
                with_views(schema(&[U]), &[("t", from_u)]),
                vec!["DROP TABLE `t`".into(), view("t", from_u)],
            ),
            // and the reverse
            (
                with_views(schema(&[U]), &[("t", from_u)]),
                schema(&[T, U]),
                vec!["DROP VIEW `t`".into(), T.into()],
            ),
            // a view reading the replaced table, changed too: after the new view
            (
                with_views(schema(&[T, U]), &[("v", from_t)]),
                with_views(
                    schema(&[U]),
                    &[("t", from_u), ("v", "select `t`.`id` + 1 AS `id` from `t`")],
                ),
                vec![
                    "DROP TABLE `t`".into(),
                    view("t", from_u),
                    view("v", "select `t`.`id` + 1 AS `id` from `t`"),
                ],
            ),
            // views reading a view replaced by a table: dropped before it, created after it
            (
                with_views(
                    schema(&[U]),
                    &[
                        ("t", from_u),
                        ("v", from_t),
                        ("w", "select `v`.`id` AS `id` from `v`"),
                    ],
                ),
                with_views(
                    schema(&[T, U]),
                    &[("v", "select `t`.`id` * 2 AS `id` from `t`")],
                ),
                vec![
                    "DROP VIEW `w`".into(),
                    "DROP VIEW `t`".into(),
                    T.into(),
                    view("v", "select `t`.`id` * 2 AS `id` from `t`"),
                ],
            ),
            // a table referencing the replaced one goes before it
            (
                schema(&[T, U, C]),
                with_views(schema(&[U]), &[("t", from_u)]),
                vec![
                    "DROP TABLE `c`".into(),
                    "DROP TABLE `t`".into(),
                    view("t", from_u),
                ],
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(diff(&a, &b).unwrap(), want);
            let objects: Vec<String> = changes(&a, &b)
                .unwrap()
                .into_iter()
                .map(|c| c.object)
                .collect();
            assert!(
                objects
                    .iter()
                    .all(|o| ["t", "u", "v", "w", "c"].contains(&o.as_str())),
                "{objects:?}"
            );
            assert!(diff(&b, &b).unwrap().is_empty());
        }
    }
}

#[cfg(test)]
mod renames {
    use super::*;
    use crate::model::schema_of as schema;

    fn table(keys: &[&str]) -> String {
        let mut lines = vec![
            "  `id` int(11) NOT NULL",
            "  `a` int(11) DEFAULT NULL",
            "  `b` varchar(10) DEFAULT NULL",
            "  `g` int(11) GENERATED ALWAYS AS (`a` + 1) VIRTUAL",
            "  PRIMARY KEY (`id`)",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        lines.extend(keys.iter().map(|k| format!("  {k}")));
        format!(
            "CREATE TABLE `t` (\n{}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            lines.join(",\n")
        )
    }

    #[test]
    fn keys_renamed() {
        let cases: &[(&[&str], &[&str], &str)] = &[
            // (A's keys, B's keys, the ALTER's clauses)
            (
                &["KEY `ka` (`a`)"],
                &["KEY `kb` (`a`)"],
                "RENAME INDEX `ka` TO `kb`",
            ),
            (
                &["UNIQUE KEY `u1` (`a`,`b`)"],
                &["UNIQUE KEY `u2` (`a`,`b`)"],
                "RENAME INDEX `u1` TO `u2`",
            ),
            // two candidates paired by definition, whatever the names' order
            (
                &["KEY `x1` (`a`)", "KEY `x2` (`b`)"],
                &["KEY `y2` (`a`)", "KEY `y1` (`b`)"],
                "RENAME INDEX `x1` TO `y2`, RENAME INDEX `x2` TO `y1`",
            ),
            // identical definitions paired in name order
            (
                &["KEY `m2` (`a`)", "KEY `m1` (`a`)"],
                &["KEY `n1` (`a`)", "KEY `n2` (`a`)"],
                "RENAME INDEX `m1` TO `n1`, RENAME INDEX `m2` TO `n2`",
            ),
            // a kind or a part changes: not a rename
            (
                &["KEY `ka` (`a`)"],
                &["UNIQUE KEY `kb` (`a`)"],
                "DROP INDEX `ka`, ADD UNIQUE KEY `kb` (`a`)",
            ),
            (
                &["KEY `ka` (`b`(5))"],
                &["KEY `kb` (`b`(6))"],
                "DROP INDEX `ka`, ADD KEY `kb` (`b`(6))",
            ),
            (
                &["KEY `ka` (`a`) COMMENT 'x'"],
                &["KEY `kb` (`a`)"],
                "DROP INDEX `ka`, ADD KEY `kb` (`a`)",
            ),
            // a rename next to a real change
            (
                &["KEY `ka` (`a`)", "KEY `kx` (`b`)"],
                &["KEY `kb` (`a`)", "KEY `kx` (`b`,`a`)"],
                "DROP INDEX `kx`, RENAME INDEX `ka` TO `kb`, ADD KEY `kx` (`b`,`a`)",
            ),
            // a name that stays on the other side is not renamed away
            (
                &["KEY `k1` (`a`)", "KEY `k2` (`b`)"],
                &["KEY `k2` (`a`)", "KEY `k1` (`b`)"],
                "DROP INDEX `k1`, DROP INDEX `k2`, ADD KEY `k1` (`b`), ADD KEY `k2` (`a`)",
            ),
        ];
        for (a, b, want) in cases {
            let (a, b) = (table(a), table(b));
            let d = diff(&schema(&[&a]), &schema(&[&b])).unwrap();
            assert_eq!(d, [format!("ALTER TABLE `t` {want}")], "\nA: {a}\nB: {b}");
        }
    }

    #[test]
    fn keys_on_recreated_columns_are_not_renamed() {
        let a = table(&["KEY `kg` (`g`)"]);
        let b = table(&["KEY `kh` (`g`)"]).replace("(`a` + 1) VIRTUAL", "(`a` + 2) VIRTUAL");
        let d = diff(&schema(&[&a]), &schema(&[&b])).unwrap();
        assert!(
            d[0].contains("DROP INDEX `kg`") && d[0].contains("ADD KEY `kh` (`g`)"),
            "{d:?}"
        );
    }
}

/// Neither the schema read from (kind, name, statement) items nor its diff depends on the items'
/// order.
#[cfg(test)]
mod input_order {
    use super::*;

    const ITEMS: &[(&str, &str, &str)] = &[
        ("table", "a", "CREATE TABLE `a` (\n  `id` int(11) NOT NULL,\n  `b_id` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `b_id` (`b_id`),\n  CONSTRAINT `fk_ab` FOREIGN KEY (`b_id`) REFERENCES `b` (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"),
        ("table", "b", "CREATE TABLE `b` (\n  `id` int(11) NOT NULL,\n  `a_id` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `a_id` (`a_id`),\n  CONSTRAINT `fk_ba` FOREIGN KEY (`a_id`) REFERENCES `a` (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"),
        ("table", "c", "CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci\n PARTITION BY HASH (`id`)\nPARTITIONS 2"),
        ("view", "v1", "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v1` AS select `a`.`id` AS `id` from `a`"),
        ("view", "v2", "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v2` AS select `v1`.`id` AS `id` from `v1`"),
        ("view", "v0", "CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v0` AS select `v2`.`id` AS `id`,`b`.`a_id` AS `a_id` from (`v2` join `b` on(`b`.`id` = `v2`.`id`))"),
    ];

    /// Every permutation of `items` (Heap's algorithm).
    fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        fn go<T: Clone>(k: usize, v: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
            if k <= 1 {
                out.push(v.clone());
                return;
            }
            for i in 0..k {
                go(k - 1, v, out);
                if k & 1 == 0 {
                    v.swap(i, k - 1);
                } else {
                    v.swap(0, k - 1);
                }
            }
        }
        let mut out = Vec::new();
        go(items.len(), &mut items.to_vec(), &mut out);
        out
    }

    #[test]
    fn any_order_gives_the_same_schema_and_diff() {
        let reference = Schema::from_statements(ITEMS.iter().copied()).unwrap();
        let create = diff(&Schema::default(), &reference).unwrap();
        let drop = diff(&reference, &Schema::default()).unwrap();
        let all = permutations(ITEMS);
        assert_eq!(all.len(), 720);
        for items in all {
            let s = Schema::from_statements(items.iter().copied()).unwrap();
            assert_eq!(s, reference);
            assert_eq!(diff(&Schema::default(), &s).unwrap(), create);
            assert_eq!(diff(&s, &Schema::default()).unwrap(), drop);
        }
        // Tables first (those free of references first; foreign keys last, the cycle's included),
        // then the views in reading order.
        let head: Vec<&str> = create
            .iter()
            .map(|s| s.split(" AS ").next().unwrap_or(s))
            .map(|s| s.split('\n').next().unwrap_or(s))
            .collect();
        assert_eq!(
            head,
            [
                "CREATE TABLE `c` (",
                "CREATE TABLE `a` (",
                "CREATE TABLE `b` (",
                "ALTER TABLE `a` ADD CONSTRAINT `fk_ab` FOREIGN KEY (`b_id`) REFERENCES `b` (`id`)",
                "ALTER TABLE `b` ADD CONSTRAINT `fk_ba` FOREIGN KEY (`a_id`) REFERENCES `a` (`id`)",
                "CREATE OR REPLACE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v1`",
                "CREATE OR REPLACE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v2`",
                "CREATE OR REPLACE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v0`",
            ]
        );
    }
}
