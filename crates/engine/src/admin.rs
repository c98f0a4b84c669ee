//! The control plane's work inside an instance: reading a branch's schema and copying it to another.

use crate::{EngineError, Result};
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};
use strata_model::role::quote_ident;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Table,
    View,
    Sequence,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::View => "view",
            ObjectKind::Sequence => "sequence",
        }
    }
}

/// One table, view or sequence, with the server's own canonical CREATE statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaObject {
    pub name: String,
    pub kind: ObjectKind,
    pub create: String,
}

/// Removes the `AUTO_INCREMENT=n` table option from a `SHOW CREATE TABLE` statement: a branch copies
/// the schema, not the data, so its counters start afresh.
pub fn strip_auto_increment(create: &str) -> String {
    // Table options follow the closing parenthesis of the column list, on the last line(s).
    let Some(close) = create.rfind("\n)") else {
        return create.to_string();
    };
    let (head, tail) = create.split_at(close);
    let mut out_tail = String::with_capacity(tail.len());
    let mut rest = tail;
    while let Some(pos) = rest.find(" AUTO_INCREMENT=") {
        out_tail.push_str(&rest[..pos]);
        let after = &rest[pos + " AUTO_INCREMENT=".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        rest = &after[digits..];
    }
    out_tail.push_str(rest);
    format!("{head}{out_tail}")
}

/// Tables named so belong to a deployment in progress (shadow copies, tables kept for a revert), not
/// to the branch's schema. `~` sorts after every letter, digit and `_`: the server takes metadata
/// locks for a RENAME or LOCK TABLES in name order, so it locks the application's table before any
/// artifact, and a writer holding that table never waits for an artifact the deploy holds (the
/// lock-order deadlock that failed application writes with 1213 or a stale "doesn't exist").
pub const ARTIFACT_PREFIX: &str = "~strata_";

/// The prefix of deployment triggers, and of artifact tables made before [`ARTIFACT_PREFIX`].
pub const LEGACY_ARTIFACT_PREFIX: &str = "_strata_";

/// True for the name of a deployment's table or trigger.
pub fn is_artifact(name: &str) -> bool {
    name.starts_with(ARTIFACT_PREFIX) || name.starts_with(LEGACY_ARTIFACT_PREFIX)
}

/// Reads every table, view and sequence of `schema`, in name order (deployment artifacts left out).
pub async fn read_schema(conn: &mut mysql_async::Conn, schema: &str) -> Result<Vec<SchemaObject>> {
    let rows: Vec<(String, String)> = conn
        .query(format!("SHOW FULL TABLES FROM {}", quote_ident(schema)))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (name, kind) in rows {
        if is_artifact(&name) {
            continue;
        }
        let q = format!("{}.{}", quote_ident(schema), quote_ident(&name));
        let (kind, create) = match kind.as_str() {
            "VIEW" => {
                let row: Option<(String, String, String, String)> =
                    conn.query_first(format!("SHOW CREATE VIEW {q}")).await?;
                (ObjectKind::View, row.map(|r| r.1))
            }
            "SEQUENCE" => {
                let row: Option<(String, String)> = conn
                    .query_first(format!("SHOW CREATE SEQUENCE {q}"))
                    .await?;
                (ObjectKind::Sequence, row.map(|r| r.1))
            }
            _ => {
                let row: Option<(String, String)> =
                    conn.query_first(format!("SHOW CREATE TABLE {q}")).await?;
                (ObjectKind::Table, row.map(|r| r.1))
            }
        };
        let create = create
            .ok_or_else(|| EngineError::Invalid(format!("no CREATE statement for {name}")))?;
        out.push(SchemaObject { name, kind, create });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// How many connections create tables at once: InnoDB serialises part of each CREATE TABLE, but file
/// creation and flushing overlap, which cuts a 100-table copy by about a third on two cores.
const PARALLEL_CREATES: usize = 4;

/// Lets this session (the control plane's, which may) create tables of any engine: the instance
/// enforces InnoDB for everyone else. A server without the setting (MySQL) needs nothing.
pub async fn allow_any_engine(conn: &mut mysql_async::Conn) -> Result<()> {
    match conn
        .query_drop("SET SESSION enforce_storage_engine = NULL")
        .await
    {
        Err(mysql_async::Error::Server(e)) if e.code == 1193 => Ok(()),
        r => Ok(r?),
    }
}

async fn create_tables(
    conn: &mut mysql_async::Conn,
    schema: &str,
    objects: &[&SchemaObject],
) -> Result<()> {
    conn.query_drop(format!("USE {}", quote_ident(schema)))
        .await?;
    // A parent's table made before InnoDB was enforced is copied as it is.
    allow_any_engine(conn).await?;
    // References may point at tables another connection has not created yet.
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await?;
    for o in objects {
        let sql = if o.kind == ObjectKind::Table {
            strip_auto_increment(&o.create)
        } else {
            o.create.clone()
        };
        conn.query_drop(sql)
            .await
            .map_err(|source| EngineError::SchemaCopy {
                object: o.name.clone(),
                source,
            })?;
    }
    Ok(())
}

/// Creates the objects in `schema` (expected empty) through connections made with `opts`: tables and
/// sequences first, spread over a few connections, then views, retried until those that read other
/// views find them.
/// The user a view made by a branch password is defined by on every instance: a password's own
/// user exists only on its branch (and only while the password does), so a view naming it as
/// definer would fail everywhere else; the admin role's shared user, with the same rights on the
/// schema, exists on every instance.
pub const VIEW_DEFINER: &str = "`strata_admin`@`127.0.0.1`";

/// A view's statement with a password user's `DEFINER` replaced by [`VIEW_DEFINER`] (other
/// definers are kept).
pub fn portable_definer(create: &str) -> std::borrow::Cow<'_, str> {
    let marker = format!(" DEFINER=`{}", crate::config::PASSWORD_USER_PREFIX);
    // The clause comes before `VIEW`; the body may hold the same words.
    let head = create.find(" VIEW ").unwrap_or(create.len());
    let Some(at) = create[..head].find(&marker) else {
        return std::borrow::Cow::Borrowed(create);
    };
    // `name`@`host`: two backquoted identifiers (doubled backquotes inside), then a space.
    let rest = &create[at + " DEFINER=".len()..];
    let mut quoted = 0;
    let mut end = None;
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '`' {
            if chars.peek().is_some_and(|(_, n)| *n == '`') && quoted % 2 == 1 {
                chars.next();
                continue;
            }
            quoted += 1;
            if quoted == 4 {
                end = Some(i + 1);
                break;
            }
        }
    }
    let Some(end) = end else {
        return std::borrow::Cow::Borrowed(create);
    };
    let user = &rest[..end];
    if !user.contains("`@`") {
        return std::borrow::Cow::Borrowed(create);
    }
    std::borrow::Cow::Owned(format!(
        "{} DEFINER={VIEW_DEFINER}{}",
        &create[..at],
        &rest[end..]
    ))
}

pub async fn apply_schema(
    opts: mysql_async::Opts,
    schema: &str,
    objects: &[SchemaObject],
) -> Result<()> {
    let tables: Vec<&SchemaObject> = objects
        .iter()
        .filter(|o| o.kind != ObjectKind::View)
        .collect();
    let lanes = PARALLEL_CREATES.min(tables.len()).max(1);
    let mut work: Vec<Vec<&SchemaObject>> = vec![Vec::new(); lanes];
    for (i, t) in tables.into_iter().enumerate() {
        work[i % lanes].push(t);
    }
    let mut conns = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        conns.push(mysql_async::Conn::new(opts.clone()).await?);
    }
    let results = futures_util::future::join_all(
        conns
            .iter_mut()
            .zip(work.iter())
            .map(|(c, w)| create_tables(c, schema, w)),
    )
    .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;

    let conn = &mut conns[0];
    let mut pending: Vec<&SchemaObject> = objects
        .iter()
        .filter(|o| o.kind == ObjectKind::View)
        .collect();
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut last_error = None;
        for v in &pending {
            if let Err(e) = conn.query_drop(portable_definer(&v.create).as_ref()).await {
                last_error = Some((v.name.clone(), e));
                failed.push(*v);
            }
        }
        if failed.len() == pending.len() {
            if let Some((object, source)) = last_error {
                return Err(EngineError::SchemaCopy { object, source });
            }
        }
        pending = failed;
    }
    for c in conns {
        let _ = c.disconnect().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_table_option() {
        let cases = [
            (
                "CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=55 DEFAULT CHARSET=utf8mb4",
                "CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            ),
            (
                "CREATE TABLE `t` (\n  `a` int(11) DEFAULT NULL COMMENT ' AUTO_INCREMENT=5'\n) ENGINE=InnoDB",
                "CREATE TABLE `t` (\n  `a` int(11) DEFAULT NULL COMMENT ' AUTO_INCREMENT=5'\n) ENGINE=InnoDB",
            ),
            ("CREATE TABLE `t` (\n  `a` int\n) ENGINE=InnoDB", "CREATE TABLE `t` (\n  `a` int\n) ENGINE=InnoDB"),
            ("garbage", "garbage"),
        ];
        for (input, want) in cases {
            assert_eq!(strip_auto_increment(input), want);
        }
    }
}

#[cfg(test)]
mod definer_tests {
    use super::*;

    #[test]
    fn password_users_are_replaced_as_view_definers() {
        for (create, want) in [
            (
                "CREATE ALGORITHM=UNDEFINED DEFINER=`strata_p_abc`@`127.0.0.1` SQL SECURITY DEFINER VIEW `v` AS select 1 AS `1`",
                "CREATE ALGORITHM=UNDEFINED DEFINER=`strata_admin`@`127.0.0.1` SQL SECURITY DEFINER VIEW `v` AS select 1 AS `1`",
            ),
            // Other definers, and the words only in the body, stay.
            (
                "CREATE ALGORITHM=UNDEFINED DEFINER=`strata_root`@`127.0.0.1` SQL SECURITY DEFINER VIEW `v` AS select 1 AS `1`",
                "CREATE ALGORITHM=UNDEFINED DEFINER=`strata_root`@`127.0.0.1` SQL SECURITY DEFINER VIEW `v` AS select 1 AS `1`",
            ),
            (
                "CREATE VIEW `v` AS select ' DEFINER=`strata_p_x' AS `s`",
                "CREATE VIEW `v` AS select ' DEFINER=`strata_p_x' AS `s`",
            ),
        ] {
            assert_eq!(portable_definer(create), want, "{create}");
        }
    }
}
