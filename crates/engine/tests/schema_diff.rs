//! The schema engine's invariant against a live mariadbd: apply diff(A, B) to a copy of A, read the
//! schema back, and it is B; diff(B, B) is empty.

use mysql_async::prelude::Queryable;
use std::sync::Arc;
use std::time::Duration;
use strata_engine::supervisor::{provision, InstanceSpec};
use strata_engine::{admin, template, Instance, ServerBinaries};
use strata_schema::{diff, same, Schema};

const T: &str = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

fn pairs() -> Vec<(String, String)> {
    let base = format!("CREATE TABLE users (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, email VARCHAR(255) NOT NULL, name VARCHAR(100) DEFAULT NULL, UNIQUE KEY uk_email (email)) {T};");
    let orders = format!("CREATE TABLE orders (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, total DECIMAL(10,2) NOT NULL DEFAULT 0.00, KEY idx_user (user_id), CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id)) {T};");
    let p = |a: &str, b: &str| (a.to_string(), b.to_string());
    vec![
        p("", &base),
        p(&base, ""),
        p(&base, &base.replace("name VARCHAR(100) DEFAULT NULL", "name VARCHAR(200) NOT NULL DEFAULT ''")),
        p(&base, &base.replace("email VARCHAR(255) NOT NULL,", "email VARCHAR(255) NOT NULL, age INT DEFAULT NULL,")),
        p(&base, &base.replace("id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,", "id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, nick VARCHAR(20),")),
        p(&base, &base.replace(", name VARCHAR(100) DEFAULT NULL", "")),
        p(&base, &format!("CREATE TABLE users (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) DEFAULT NULL, email VARCHAR(255) NOT NULL, UNIQUE KEY uk_email (email)) {T};")),
        p(&base, &base.replace("UNIQUE KEY uk_email (email)", "KEY idx_email (email(20)), KEY idx_name (name DESC)")),
        p(&base, &base.replace(&format!(") {T};"), &format!(", CONSTRAINT chk_email CHECK (email <> '')) {T} COMMENT='people';"))),
        p(&base.replace(&format!(") {T};"), &format!(", CONSTRAINT chk_email CHECK (email <> '')) {T} COMMENT='people';")), &base),
        p(&base, &format!("{base}{orders}")),
        p(&format!("{base}{orders}"), &base),
        p(&format!("{base}{orders}"), &format!("{base}{}", orders.replace("REFERENCES users (id)", "REFERENCES users (id) ON DELETE CASCADE"))),
        p(&format!("{base}{orders}"), &format!("{base}{}", orders.replace("total DECIMAL(10,2) NOT NULL DEFAULT 0.00", "total DECIMAL(12,2) NOT NULL DEFAULT 0.00, status ENUM('new','paid') NOT NULL DEFAULT 'new'"))),
        p(&base, &format!("{base}CREATE VIEW named AS SELECT id, name FROM users WHERE name IS NOT NULL;")),
        p(&format!("{base}CREATE VIEW named AS SELECT id, name FROM users;"), &format!("{base}CREATE VIEW named AS SELECT id, email FROM users; CREATE VIEW named2 AS SELECT id FROM named;")),
        p(&format!("{base}CREATE VIEW named AS SELECT id FROM users; CREATE VIEW named2 AS SELECT id FROM named;"), &base),
        p(&format!("CREATE TABLE j (id INT PRIMARY KEY, doc JSON, c INT GENERATED ALWAYS AS (id * 2) VIRTUAL, FULLTEXT KEY ft (t), t TEXT) {T};"), &format!("CREATE TABLE j (id INT PRIMARY KEY, doc JSON, t TEXT, c INT GENERATED ALWAYS AS (id * 3) STORED, FULLTEXT KEY ft (t)) {T} ROW_FORMAT=DYNAMIC;")),
        p(&format!("CREATE TABLE k (a INT NOT NULL, b INT NOT NULL, PRIMARY KEY (a)) {T};"), &format!("CREATE TABLE k (a INT NOT NULL, b INT NOT NULL, PRIMARY KEY (a, b)) {T};")),
        p(&format!("CREATE TABLE e (id INT PRIMARY KEY, s SET('a','b'), ts TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP) {T};"), &format!("CREATE TABLE e (id INT PRIMARY KEY, s SET('a','b','c') COMMENT 'flags', ts TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) {T};")),
    ]
}

async fn load(conn: &mut mysql_async::Conn, db: &str, sql: &str) -> Schema {
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}` DEFAULT CHARSET utf8mb4; USE `{db}`")).await.unwrap();
    if !sql.is_empty() {
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{db}: {e}\n{sql}"));
    }
    read(conn, db).await
}

async fn read(conn: &mut mysql_async::Conn, db: &str) -> Schema {
    let objects = admin::read_schema(conn, db).await.unwrap();
    let items: Vec<(&str, &str, &str)> = objects
        .iter()
        .map(|o| {
            (
                if o.kind == admin::ObjectKind::View {
                    "view"
                } else {
                    "table"
                },
                o.name.as_str(),
                o.create.as_str(),
            )
        })
        .collect();
    Schema::from_statements(items).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_the_diff_yields_the_target() {
    let bins = Arc::new(ServerBinaries::detect().expect("mariadbd installed"));
    let root = tempfile::tempdir().unwrap();
    let tpl = template::ensure_template(&bins, root.path()).unwrap();
    let spec = InstanceSpec {
        id: "d1".into(),
        dir: root.path().join("instances/d1"),
        schema: "scratch".into(),
        production: false,
        port: strata_engine::supervisor::pick_port().unwrap(),
        server_id: 21,
    };
    provision(&spec, &tpl).unwrap();
    let inst = Instance::start(bins, spec).unwrap();
    inst.wait_ready(Duration::from_secs(60)).await.unwrap();
    let mut c = inst.connect().await.unwrap();
    for (i, (a_sql, b_sql)) in pairs().iter().enumerate() {
        let a = load(&mut c, &format!("a{i}"), a_sql).await;
        let b = load(&mut c, &format!("b{i}"), b_sql).await;
        let statements = diff(&a, &b).unwrap();
        c.query_drop(format!("USE `a{i}`")).await.unwrap();
        for s in &statements {
            c.query_drop(s)
                .await
                .unwrap_or_else(|e| panic!("pair {i}: {s}: {e}"));
        }
        let after = read(&mut c, &format!("a{i}")).await;
        // Views print their schema-qualified names; compare them per schema.
        let norm = |s: &Schema, db: &str| {
            let mut s = s.clone();
            for v in s.views.values_mut() {
                v.create = v.create.replace(&format!("`{db}`."), "");
            }
            s
        };
        assert!(
            same(&norm(&after, &format!("a{i}")), &norm(&b, &format!("b{i}"))),
            "pair {i}: after {statements:?}\n{after:#?}\nwanted\n{b:#?}"
        );
        assert!(
            diff(&b, &b).unwrap().is_empty(),
            "pair {i}: diff(B, B) is empty"
        );
    }
    drop(c);
    inst.stop().await;
}
