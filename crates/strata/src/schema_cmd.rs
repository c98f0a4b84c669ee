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
    for (i, stmt) in statements(&sql).into_iter().enumerate() {
        if let Err(e) = conn.query_drop(stmt).await {
            let head: String = stmt
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
    use super::statements;

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
