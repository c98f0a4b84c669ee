//! The three-way check of a deploy request: the branch's changes since its base, applied to the
//! current target schema. It conflicts when the target changed the same objects since the base
//! (differently), and is invalid when the result breaks a reference (a foreign key to a table or
//! column the target no longer has).

use crate::model::{Schema, Table};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The target schema with the branch's changes applied.
    pub result: Schema,
    /// Objects changed on both sides since the base, differently.
    pub conflicts: Vec<String>,
    /// The names of those objects (tables and views).
    pub conflicted: std::collections::BTreeSet<String>,
    /// References the result breaks.
    pub invalid: Vec<String>,
}

fn same_table(a: Option<&Table>, b: Option<&Table>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.equivalent(b),
        (None, None) => true,
        _ => false,
    }
}

/// Applies `ours` (changed from `base`) to `target`.
pub fn three_way(base: &Schema, ours: &Schema, target: &Schema, into: &str) -> Merge {
    let mut result = target.clone();
    let mut conflicts = Vec::new();
    let mut conflicted = std::collections::BTreeSet::new();
    let names: std::collections::BTreeSet<&String> =
        base.tables.keys().chain(ours.tables.keys()).collect();
    for n in names {
        let (b, o, t) = (base.tables.get(n), ours.tables.get(n), target.tables.get(n));
        if same_table(b, o) {
            continue; // not changed on the branch
        }
        if !same_table(b, t) && !same_table(o, t) {
            conflicts.push(format!("table `{n}` was changed on this branch and, differently, on `{into}` since the branch was made"));
            conflicted.insert(n.clone());
            continue;
        }
        match o {
            Some(o) => {
                result.tables.insert(n.clone(), o.clone());
            }
            None => {
                result.tables.remove(n);
            }
        }
    }
    let views: std::collections::BTreeSet<&String> =
        base.views.keys().chain(ours.views.keys()).collect();
    for n in views {
        let (b, o, t) = (base.views.get(n), ours.views.get(n), target.views.get(n));
        if b == o {
            continue;
        }
        if b != t && o != t {
            conflicts.push(format!("view `{n}` was changed on this branch and, differently, on `{into}` since the branch was made"));
            conflicted.insert(n.clone());
            continue;
        }
        match o {
            Some(o) => {
                result.views.insert(n.clone(), o.clone());
            }
            None => {
                result.views.remove(n);
            }
        }
    }
    let mut invalid = broken_references(&result);
    invalid.extend(broken_views(&result, &[base, ours, target]));
    invalid.extend(broken_view_columns(&result, &[base, ours, target]));
    Merge {
        result,
        conflicts,
        conflicted,
        invalid,
    }
}

/// Foreign keys of `schema` pointing at tables or columns it does not have.
pub fn broken_references(schema: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for t in schema.tables.values() {
        for fk in &t.foreign_keys {
            let Some(parts) = fk.foreign_key() else {
                continue;
            };
            let target = parts.table;
            match schema.tables.get(&target) {
                None => out.push(format!(
                    "foreign key `{}` on `{}` references table `{target}`, which would not exist",
                    fk.name, t.name
                )),
                Some(tt) => {
                    for c in parts.referenced {
                        if !tt.columns.iter().any(|x| x.name == c) {
                            out.push(format!("foreign key `{}` on `{}` references `{target}`.`{c}`, which would not exist", fk.name, t.name));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Views of `schema` reading a table or view (one of those in `known`) that it does not have.
pub fn broken_views(schema: &Schema, known: &[&Schema]) -> Vec<String> {
    let names: std::collections::BTreeSet<&String> = known
        .iter()
        .flat_map(|s| s.tables.keys().chain(s.views.keys()))
        .filter(|n| !schema.tables.contains_key(*n) && !schema.views.contains_key(*n))
        .collect();
    let mut out = Vec::new();
    for v in schema.views.values() {
        for n in &names {
            if view_reads(&v.create, n) {
                out.push(format!(
                    "view `{}` reads `{n}`, which would not exist",
                    v.name
                ));
            }
        }
    }
    out
}

/// Views of `schema` reading a column of one of its tables that the table no longer has (one of
/// `known`'s versions of the table had it): a view kept on the target while a branch drops or
/// renames a column it reads. The server qualifies a column by its table (`table`.`column`), or
/// by the alias the view gives the table (`db`.`table` `alias`), which is followed.
pub fn broken_view_columns(schema: &Schema, known: &[&Schema]) -> Vec<String> {
    let mut gone: Vec<(&String, &String)> = Vec::new();
    for (name, table) in &schema.tables {
        let have: std::collections::BTreeSet<&String> =
            table.columns.iter().map(|c| &c.name).collect();
        let mut seen = std::collections::BTreeSet::new();
        for k in known {
            if let Some(t) = k.tables.get(name) {
                for c in &t.columns {
                    if !have.contains(&c.name) && seen.insert(&c.name) {
                        gone.push((name, &c.name));
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for v in schema.views.values() {
        let body = match v.create.to_ascii_lowercase().find(" as ") {
            Some(i) => &v.create[i..],
            None => v.create.as_str(),
        };
        for (table, column) in &gone {
            let mut names = vec![(*table).clone()];
            names.extend(aliases(body, table));
            if names
                .iter()
                .any(|n| body.contains(&format!("`{n}`.`{column}`")))
            {
                out.push(format!(
                    "view `{}` reads `{table}`.`{column}`, which would not exist",
                    v.name
                ));
            }
        }
    }
    out
}

/// The aliases a view, as the server prints it, gives table `table` (`db`.`table` [AS] `alias`).
fn aliases(body: &str, table: &str) -> Vec<String> {
    let needle = format!("`.`{table}` ");
    body.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &body[i + needle.len()..];
            let rest = rest
                .strip_prefix("AS ")
                .or_else(|| rest.strip_prefix("as "))
                .unwrap_or(rest);
            let rest = rest.strip_prefix('`')?;
            let end = rest.find('`')?;
            Some(rest[..end].to_string())
        })
        .collect()
}

/// Whether a view, as the server prints it, reads table or view `name`: the server qualifies every
/// table it reads (`db`.`name` after FROM, JOIN or a comma) and every column of it
/// (`db`.`name`.`column`), so a column merely called `name` does not count.
pub fn view_reads(create: &str, name: &str) -> bool {
    let body = match create.to_ascii_lowercase().find(" as ") {
        Some(i) => &create[i..],
        None => create,
    };
    if body.contains(&format!("`{name}`.`")) {
        return true;
    }
    let needle = format!("`.`{name}`");
    body.match_indices(&needle).any(|(i, _)| {
        let after = &body[i + needle.len()..];
        if after.starts_with('.') {
            return false;
        }
        // The qualifier's opening backquote, then what precedes it.
        let Some(open) = body[..i].rfind('`') else {
            return false;
        };
        let before = body[..open].trim_end().to_ascii_lowercase();
        before.ends_with("from")
            || before.ends_with("join")
            || before.ends_with(',')
            || before.ends_with('(')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::schema_of as schema;
    const USERS: &str = "CREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n  `email` varchar(50) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
    const USERS_WIDE: &str = "CREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n  `email` varchar(200) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
    const USERS_NAME: &str = "CREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n  `email` varchar(50) DEFAULT NULL,\n  `name` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
    const POSTS: &str = "CREATE TABLE `posts` (\n  `id` int(11) NOT NULL,\n  `u` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `fk` (`u`),\n  CONSTRAINT `fk` FOREIGN KEY (`u`) REFERENCES `users` (`id`)\n) ENGINE=InnoDB";
    const TAGS: &str =
        "CREATE TABLE `tags` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";

    #[test]
    fn a_view_reading_a_removed_column_is_found() {
        let v = "CREATE VIEW `v_email` AS select `shop`.`users`.`id` AS `id`,`shop`.`users`.`email` AS `email` from `shop`.`users`";
        let v_id = "CREATE VIEW `v_id` AS select `shop`.`users`.`id` AS `id` from `shop`.`users`";
        const USERS_NO_EMAIL: &str = "CREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";
        let with_views = |tables: &[&str], views: &[(&str, &str)]| {
            let mut s = schema(tables);
            for (name, create) in views {
                s.views.insert(
                    name.to_string(),
                    crate::View {
                        name: name.to_string(),
                        create: create.to_string(),
                    },
                );
            }
            s
        };
        // The branch (made before the view existed) drops the column; the target has the view.
        let base = schema(&[USERS]);
        let ours = schema(&[USERS_NO_EMAIL]);
        let target = with_views(&[USERS], &[("v_email", v), ("v_id", v_id)]);
        let m = three_way(&base, &ours, &target, "main");
        assert_eq!(
            m.invalid,
            ["view `v_email` reads `users`.`email`, which would not exist"]
        );
        // A column added, or one the view does not read, breaks nothing.
        let m = three_way(
            &base,
            &schema(&[USERS_NAME]),
            &with_views(&[USERS], &[("v_email", v)]),
            "main",
        );
        assert!(m.invalid.is_empty(), "{:?}", m.invalid);
        let m = three_way(
            &base,
            &ours,
            &with_views(&[USERS], &[("v_id", v_id)]),
            "main",
        );
        assert!(m.invalid.is_empty(), "{:?}", m.invalid);
        // A view naming the table by an alias (as MariaDB prints it) is followed too.
        let aliased = "CREATE VIEW `v_a` AS select `u`.`id` AS `id`,`u`.`email` AS `e` from `shop`.`users` `u` join `shop`.`users` AS `w` on `w`.`id` = `u`.`id`";
        let m = three_way(
            &base,
            &ours,
            &with_views(&[USERS], &[("v_a", aliased)]),
            "main",
        );
        assert_eq!(
            m.invalid,
            ["view `v_a` reads `users`.`email`, which would not exist"]
        );
        let aliased_id = "CREATE VIEW `v_b` AS select `u`.`id` AS `email` from `shop`.`users` `u`";
        let m = three_way(
            &base,
            &ours,
            &with_views(&[USERS], &[("v_b", aliased_id)]),
            "main",
        );
        assert!(m.invalid.is_empty(), "{:?}", m.invalid);
    }

    #[test]
    fn independent_changes_merge() {
        let m = three_way(
            &schema(&[USERS]),
            &schema(&[USERS_WIDE]),
            &schema(&[USERS, TAGS]),
            "main",
        );
        assert!(m.conflicts.is_empty() && m.invalid.is_empty());
        assert_eq!(m.result, schema(&[USERS_WIDE, TAGS]));
    }

    #[test]
    fn same_change_on_both_sides_is_no_conflict() {
        let m = three_way(
            &schema(&[USERS]),
            &schema(&[USERS_WIDE]),
            &schema(&[USERS_WIDE]),
            "main",
        );
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn different_changes_to_one_table_conflict() {
        let m = three_way(
            &schema(&[USERS]),
            &schema(&[USERS_WIDE]),
            &schema(&[USERS_NAME]),
            "main",
        );
        assert_eq!(m.conflicts.len(), 1);
        assert!(m.conflicts[0].contains("`users`"));
        assert!(m.conflicted.contains("users"));
    }

    #[test]
    fn views_reading_dropped_tables_are_invalid() {
        let v = |body: &str| {
            format!("CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v` AS {body}")
        };
        let reads = [
            (
                "select `shop`.`users`.`id` AS `id` from `shop`.`users`",
                "users",
                true,
            ),
            (
                "select `u`.`id` AS `id` from `shop`.`users` `u`",
                "users",
                true,
            ),
            (
                "select `a`.`id` AS `id` from (`shop`.`orders` `a` join `shop`.`users` `b`)",
                "users",
                true,
            ),
            (
                "select `a`.`id` AS `id` from `shop`.`orders` `a`,`shop`.`users` `b`",
                "users",
                true,
            ),
            // A column called like the table is not a read of it.
            (
                "select `shop`.`orders`.`users` AS `users` from `shop`.`orders`",
                "users",
                false,
            ),
            (
                "select `o`.`users` AS `users` from `shop`.`orders` `o`",
                "users",
                false,
            ),
            (
                "select `shop`.`orders`.`id` AS `id` from `shop`.`orders`",
                "users",
                false,
            ),
        ];
        for (body, name, expected) in reads {
            assert_eq!(view_reads(&v(body), name), expected, "{body}");
        }
        let base = schema(&[USERS]);
        let mut ours = base.clone();
        ours.tables.remove("users");
        let mut target = base.clone();
        target.views.insert(
            "active".into(),
            crate::model::View {
                name: "active".into(),
                create: "CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `active` AS select `shop`.`users`.`id` AS `id` from `shop`.`users`".into(),
            },
        );
        let m = three_way(&base, &ours, &target, "main");
        assert_eq!(
            m.invalid,
            ["view `active` reads `users`, which would not exist"]
        );
    }

    #[test]
    fn a_reference_to_a_dropped_table_is_invalid() {
        // The branch adds posts → users; meanwhile main dropped users.
        let m = three_way(
            &schema(&[USERS]),
            &schema(&[USERS, POSTS]),
            &schema(&[]),
            "main",
        );
        assert!(m.conflicts.is_empty());
        assert_eq!(m.invalid.len(), 1, "{:?}", m.invalid);
        assert!(m.invalid[0].contains("`users`"));
    }
}
