//! `strata schema diff FROM.sql TO.sql`: schema as code, offline. Both files are loaded into a scratch
//! instance (the server canonicalises them), read back, and diffed with the same engine as deploy
//! requests. No output and exit 0 when they are the same.

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use strata_engine::supervisor::{provision, InstanceSpec};
use strata_engine::{admin, template, Instance, ServerBinaries};

/// Splits a file into statements at semicolons outside strings, identifiers and comments.
pub fn statements(sql: &str) -> Vec<&str> {
    let base = sql.as_ptr() as usize;
    let mut out = Vec::new();
    let mut start = 0;
    for t in strata_sqlscan::tokens(sql) {
        if t.kind == strata_sqlscan::TokenKind::Semicolon {
            let at = t.text.as_ptr() as usize - base;
            if at >= start {
                out.push(sql[start..at].trim());
                start = at + 1;
            }
        }
    }
    out.push(sql[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// Server errors of a statement naming an object that does not exist (yet): no such table or view
/// (1146), a view reading an invalid view (1356), an unknown column (1054), no such routine (1305).
const MISSING_OBJECT: &[u16] = &[1146, 1356, 1054, 1305];

/// Runs statements `0..n` in passes: a statement whose error is `missing` (it names an object not
/// there yet) is tried again in the next pass, after the others, as long as each pass runs at least
/// one more. Any other error stops at once. When a pass runs none, the error is the first statement
/// that still fails, in file order.
pub async fn in_passes<E>(
    n: usize,
    mut run: impl AsyncFnMut(usize) -> Result<(), E>,
    missing: impl Fn(&E) -> bool,
) -> Result<(), (usize, E)> {
    let mut pending: Vec<usize> = (0..n).collect();
    loop {
        let mut failed = Vec::new();
        let tried = pending.len();
        for i in pending {
            match run(i).await {
                Ok(()) => {}
                Err(e) if missing(&e) => failed.push((i, e)),
                Err(e) => return Err((i, e)),
            }
        }
        if failed.len() == tried {
            return match failed.into_iter().next() {
                Some(first) => Err(first),
                None => Ok(()),
            };
        }
        pending = failed.into_iter().map(|(i, _)| i).collect();
    }
}

async fn load(
    conn: &mut mysql_async::Conn,
    db: &str,
    file: &Path,
) -> Result<strata_schema::Schema> {
    let sql =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    conn.query_drop(format!("CREATE DATABASE `{db}` DEFAULT CHARSET utf8mb4"))
        .await?;
    conn.query_drop(format!("USE `{db}`")).await?;
    conn.query_drop("SET SESSION foreign_key_checks = 0")
        .await?;
    // Statements may come in any order: one that names an object a later one creates is tried
    // again after the others.
    let stmts = statements(&sql);
    let loaded = in_passes(
        stmts.len(),
        async |i| conn.query_drop(stmts[i]).await,
        |e| matches!(e, mysql_async::Error::Server(s) if MISSING_OBJECT.contains(&s.code)),
    )
    .await;
    if let Err((i, e)) = loaded {
        let head: String = stmts[i]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(80)
            .collect();
        bail!(
            "{}: statement {} does not load ({head}…): {e}",
            file.display(),
            i + 1
        );
    }
    let objects = admin::read_schema(conn, db).await?;
    let items: Vec<(&str, &str, &str)> = objects
        .iter()
        .map(|o| (o.kind.as_str(), o.name.as_str(), o.create.as_str()))
        .collect();
    let mut schema = strata_schema::Schema::from_statements(items)
        .with_context(|| format!("{}", file.display()))?;
    // Views print their schema-qualified names and the scratch user as definer: neither belongs in
    // statements meant for another server.
    for v in schema.views.values_mut() {
        v.create = v
            .create
            .replace(&format!("`{db}`."), "")
            .replace(" DEFINER=`strata_root`@`127.0.0.1`", "");
    }
    Ok(schema)
}

pub async fn diff(from: &Path, to: &Path) -> Result<()> {
    let bins =
        Arc::new(ServerBinaries::detect().context("the scratch instance needs a database server")?);
    let work = std::env::temp_dir().join(format!("strata-schema-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = async {
        let b = bins.clone();
        let w = work.clone();
        let tpl = tokio::task::spawn_blocking(move || template::ensure_template(&b, &w)).await??;
        let spec = InstanceSpec {
            id: "scratch".into(),
            dir: work.join("scratch"),
            schema: "scratch".into(),
            production: false,
            safe_migrations: false,
            port: strata_engine::supervisor::pick_port()?,
            server_id: 1,
        };
        provision(&spec, &tpl)?;
        let inst = Instance::start(bins.clone(), spec)?;
        let out = async {
            inst.wait_ready(Duration::from_secs(60)).await?;
            let mut conn = inst.connect().await?;
            let a = load(&mut conn, "strata_from", from).await?;
            let b = load(&mut conn, "strata_to", to).await?;
            let _ = conn.disconnect().await;
            Ok::<_, anyhow::Error>(strata_schema::diff(&a, &b)?)
        }
        .await;
        inst.stop().await;
        out
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    for s in result? {
        println!("{s};");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{in_passes, statements};
    use std::collections::BTreeSet;

    #[derive(Debug, PartialEq)]
    enum Fail {
        Missing(&'static str),
        Bad,
    }

    /// Runs statements given as (creates, needs) against a set of objects: a statement needing an
    /// object not there fails as missing; `bad` ones always fail otherwise. Returns the outcome and
    /// the order the objects were created in.
    fn simulate(
        stmts: &[(&'static str, &[&'static str])],
        bad: &[usize],
    ) -> (Result<(), (usize, Fail)>, Vec<&'static str>) {
        let mut made: Vec<&'static str> = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let out = rt.block_on(in_passes(
            stmts.len(),
            async |i| {
                if bad.contains(&i) {
                    return Err(Fail::Bad);
                }
                let (creates, needs) = stmts[i];
                if let Some(n) = needs.iter().find(|n| !made.contains(n)) {
                    return Err(Fail::Missing(n));
                }
                made.push(creates);
                Ok(())
            },
            |e| matches!(e, Fail::Missing(_)),
        ));
        (out, made)
    }

    #[test]
    fn statements_load_in_passes() {
        type Case = (
            &'static [(&'static str, &'static [&'static str])],
            &'static [usize],
            Result<(), (usize, Fail)>,
            &'static [&'static str],
        );
        let cases: Vec<Case> = vec![
            // in order: one pass
            (&[("t", &[]), ("v", &["t"])], &[], Ok(()), &["t", "v"]),
            // a view before its table
            (&[("v", &["t"]), ("t", &[])], &[], Ok(()), &["t", "v"]),
            // views reading later views, each a pass further
            (
                &[("v1", &["v2"]), ("v2", &["v3"]), ("v3", &["t"]), ("t", &[])],
                &[],
                Ok(()),
                &["t", "v3", "v2", "v1"],
            ),
            // a view that never loads: the first one still failing, with its error
            (
                &[("t", &[]), ("v2", &["v1"]), ("v1", &["nowhere"])],
                &[],
                Err((1, Fail::Missing("v1"))),
                &["t"],
            ),
            // another error stops at once
            (
                &[("v", &["t"]), ("x", &[]), ("t", &[])],
                &[1],
                Err((1, Fail::Bad)),
                &[],
            ),
            (&[], &[], Ok(()), &[]),
        ];
        for (stmts, bad, want, order) in cases {
            let (got, made) = simulate(stmts, bad);
            assert_eq!(got, want, "{stmts:?}");
            assert_eq!(made, order, "{stmts:?}");
            let unique: BTreeSet<_> = made.iter().collect();
            assert_eq!(unique.len(), made.len(), "each statement runs once");
        }
    }

    #[test]
    fn splits_outside_literals_and_comments() {
        let sql = "CREATE TABLE a (x VARCHAR(5) DEFAULT ';');\n-- note; not a split\nCREATE TABLE `b;c` (id INT) /* ; */;\n\n";
        assert_eq!(
            statements(sql),
            [
                "CREATE TABLE a (x VARCHAR(5) DEFAULT ';')",
                "-- note; not a split\nCREATE TABLE `b;c` (id INT) /* ; */"
            ]
        );
        assert!(statements("  ;; ").is_empty());
    }
}
