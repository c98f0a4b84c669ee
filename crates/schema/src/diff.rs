//! diff(A, B): the statements that take schema A to schema B, in an order the server accepts.

use crate::model::{ident, quote, Index, IndexKind, Schema, SchemaError, Table, View};
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
    format!(
        "CREATE TABLE {} (\n{}\n) {}",
        quote(&t.name),
        lines.join(",\n"),
        t.options
    )
    .trim_end()
    .to_string()
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

/// The ALTER TABLE clauses taking `a` to `b`, except foreign keys to add (they come last, once every
/// table exists).
fn alter_clauses(a: &Table, b: &Table) -> Result<Vec<String>, SchemaError> {
    let mut clauses = Vec::new();
    let (afk, bfk) = (by_name(&a.foreign_keys), by_name(&b.foreign_keys));
    for (n, fk) in &afk {
        if bfk.get(n).is_none_or(|x| x.definition != fk.definition) {
            clauses.push(drop_clause(fk));
        }
    }
    let (ai, bi) = (by_name(&a.indexes), by_name(&b.indexes));
    for (n, i) in &ai {
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
    // Columns: drop, then add or modify in B's order, keeping positions with FIRST/AFTER. The server
    // cannot MODIFY a generated column into another kind, so a changed generated column is dropped
    // and added again (its values are computed, nothing is lost).
    let generated = |d: &str| d.contains(" GENERATED ALWAYS AS ");
    let b_defs: BTreeMap<&str, &str> = b
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.definition.as_str()))
        .collect();
    let recreate = |c: &crate::model::Column| {
        b_defs
            .get(c.name.as_str())
            .is_some_and(|d| *d != c.definition && (generated(d) || generated(&c.definition)))
    };
    let mut current: Vec<&str> = Vec::new();
    let mut a_cols: BTreeMap<&str, &str> = BTreeMap::new();
    for c in &a.columns {
        if b_defs.contains_key(c.name.as_str()) && !recreate(c) {
            current.push(&c.name);
            a_cols.insert(&c.name, &c.definition);
        } else {
            clauses.push(format!("DROP COLUMN {}", quote(&c.name)));
        }
    }
    for (i, c) in b.columns.iter().enumerate() {
        let position = if i == 0 {
            "FIRST".to_string()
        } else {
            format!("AFTER {}", quote(&b.columns[i - 1].name))
        };
        match a_cols.get(c.name.as_str()) {
            None => {
                clauses.push(format!(
                    "ADD COLUMN {} {} {position}",
                    quote(&c.name),
                    c.definition
                ));
                current.insert(i.min(current.len()), &c.name);
            }
            Some(def) => {
                let at = current.iter().position(|n| *n == c.name).unwrap_or(i);
                if *def != c.definition || at != i {
                    clauses.push(format!(
                        "MODIFY COLUMN {} {} {position}",
                        quote(&c.name),
                        c.definition
                    ));
                    current.remove(at);
                    current.insert(i.min(current.len()), &c.name);
                }
            }
        }
    }
    for (n, i) in &bi {
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub object: String,
    pub statement: String,
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
        .map(|statement| {
            // The name follows TABLE or VIEW (a view's DEFINER comes before it).
            let at = statement
                .find(" VIEW `")
                .map(|i| i + 6)
                .or_else(|| statement.find('`'));
            let object = at
                .and_then(|i| ident(&statement[i..]))
                .map(|(n, _)| n)
                .unwrap_or_default();
            Change { object, statement }
        })
        .collect())
}

fn statements(from: &Schema, to: &Schema) -> Result<Vec<String>, SchemaError> {
    let mut out = Vec::new();
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
    for (n, a) in &from.tables {
        let Some(b) = to.tables.get(n) else { continue };
        let clauses = alter_clauses(a, b)?;
        if !clauses.is_empty() {
            out.push(format!("ALTER TABLE {} {}", quote(n), clauses.join(", ")));
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
    // Dropped tables, those referencing others first.
    let dropped: Vec<&str> = from
        .tables
        .keys()
        .filter(|n| !to.tables.contains_key(*n))
        .map(String::as_str)
        .collect();
    for n in dependency_order(dropped, |n| {
        from.tables.get(n).map(references).unwrap_or_default()
    })
    .into_iter()
    .rev()
    {
        out.push(format!("DROP TABLE {}", quote(n)));
    }
    Ok(out)
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
