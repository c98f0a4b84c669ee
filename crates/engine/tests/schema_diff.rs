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
    let mut pairs = vec![
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
    ];
    pairs.extend(partition_pairs());
    pairs.extend(charset_pairs());
    pairs.extend(replaced_pairs());
    pairs.extend(rename_pairs());
    pairs
}

/// The table's default character set changed: columns printed without one follow it, a column with
/// its own keeps it. The database's default decides for tables written without one.
fn charset_pairs() -> Vec<(String, String)> {
    let t = |cs: &str, extra: &str| {
        format!("CREATE TABLE cs (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL DEFAULT '', e ENUM('a','b c') DEFAULT NULL, note TEXT, bin VARBINARY(8), own VARCHAR(5) CHARACTER SET latin1 COLLATE latin1_bin DEFAULT NULL{extra}) ENGINE=InnoDB {cs};")
    };
    let mb4 = "DEFAULT CHARSET=utf8mb4";
    let latin1 = "DEFAULT CHARSET=latin1";
    let mb3 = "DEFAULT CHARSET=utf8mb3";
    let p = |a: String, b: String| (a, b);
    vec![
        p(t(mb4, ""), t(latin1, "")),
        p(t(latin1, ""), t(mb4, "")),
        p(t(mb4, ""), t(mb3, "")),
        p(t(latin1, ""), t(mb3, ", added VARCHAR(3)")),
        p(t(mb3, ""), t("DEFAULT CHARSET=utf8mb3 COLLATE=utf8mb3_unicode_ci", "")),
        p(t(mb4, ""), t("DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin", "")),
        // a column with its own character set, the table's in A, stays when the table's changes
        p(
            t(mb4, ", keep VARCHAR(5) CHARACTER SET utf8mb4 DEFAULT NULL"),
            t(latin1, ", keep VARCHAR(5) CHARACTER SET utf8mb4 DEFAULT NULL"),
        ),
        // a column that had the new character set already
        p(
            t(mb4, ", x CHAR(2) CHARACTER SET latin1"),
            t(latin1, ", x CHAR(2)"),
        ),
        // generated columns (one of them indexed) follow the table too
        p(
            format!("CREATE TABLE g (id INT PRIMARY KEY, a VARCHAR(10), v VARCHAR(10) AS (UPPER(a)) VIRTUAL, s VARCHAR(10) AS (LOWER(a)) STORED, KEY (v)) {mb4};"),
            format!("CREATE TABLE g (id INT PRIMARY KEY, a VARCHAR(10), v VARCHAR(10) AS (UPPER(a)) VIRTUAL, s VARCHAR(10) AS (LOWER(a)) STORED, KEY (v)) {latin1};"),
        ),
        // tables without a character set of their own, in databases of other defaults
        p(
            "ALTER DATABASE CHARACTER SET latin1; CREATE TABLE d (id INT PRIMARY KEY, s VARCHAR(9));".into(),
            "ALTER DATABASE CHARACTER SET utf8mb3; CREATE TABLE d (id INT PRIMARY KEY, s VARCHAR(9), u CHAR(2));".into(),
        ),
        p(
            "ALTER DATABASE CHARACTER SET utf8mb3; CREATE TABLE d (id INT PRIMARY KEY, s VARCHAR(9));".into(),
            "ALTER DATABASE CHARACTER SET latin1; CREATE TABLE d (id INT PRIMARY KEY, s VARCHAR(9)); CREATE TABLE n (s TEXT);".into(),
        ),
    ]
}

/// A table replaced by a view of the same name, and the reverse, with views reading them.
fn replaced_pairs() -> Vec<(String, String)> {
    let users = format!("CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(50) NOT NULL) {T};");
    let orders = format!("CREATE TABLE orders (id INT PRIMARY KEY, user_id INT NOT NULL, KEY (user_id), CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id)) {T};");
    let people = format!("CREATE TABLE people (id INT PRIMARY KEY, email VARCHAR(50) NOT NULL, active TINYINT NOT NULL DEFAULT 1) {T};");
    let named_table = format!("CREATE TABLE named (id INT PRIMARY KEY, email VARCHAR(50)) {T};");
    let named_view = "CREATE VIEW named AS SELECT id, email FROM users WHERE email <> '';";
    let reader = "CREATE VIEW named_ids AS SELECT id FROM named;";
    let p = |a: String, b: String| (a, b);
    vec![
        p(
            format!("{users}{named_table}"),
            format!("{users}{named_view}"),
        ),
        p(
            format!("{users}{named_view}"),
            format!("{users}{named_table}"),
        ),
        p(
            format!("{users}{named_table}{reader}"),
            format!("{users}{named_view}{reader}"),
        ),
        p(
            format!("{users}{named_view}{reader}"),
            format!("{users}{named_table}{reader}"),
        ),
        p(
            format!("{users}{named_table}{reader}"),
            format!("{users}{named_view}CREATE VIEW named_ids AS SELECT id, email FROM named;"),
        ),
        // the replaced table is referenced by a table that stays (its foreign key goes)
        p(
            format!("{users}{orders}"),
            format!("{people}CREATE TABLE orders (id INT PRIMARY KEY, user_id INT NOT NULL, KEY (user_id)) {T};CREATE VIEW users AS SELECT id, email FROM people;"),
        ),
        // the replaced table is referenced by a table dropped with it
        p(
            format!("{users}{orders}"),
            format!("{people}CREATE VIEW users AS SELECT id, email FROM people WHERE active = 1;"),
        ),
        p(
            format!("{people}CREATE VIEW users AS SELECT id, email FROM people WHERE active = 1;"),
            format!("{users}{orders}"),
        ),
    ]
}

/// Keys that only change their name are renamed.
fn rename_pairs() -> Vec<(String, String)> {
    let t = |keys: &str, extra: &str| {
        format!(
            "CREATE TABLE rk (id INT PRIMARY KEY, a INT, b VARCHAR(20), c INT{extra}, {keys}) {T};"
        )
    };
    let p = |a: String, b: String| (a, b);
    vec![
        p(t("KEY ka (a)", ""), t("KEY kb (a)", "")),
        p(
            t("KEY k1 (a), KEY k2 (b(5)), UNIQUE KEY u1 (a, c)", ""),
            t("KEY n2 (a), KEY n1 (b(5)), UNIQUE KEY u2 (a, c)", ", d INT"),
        ),
        p(
            t("KEY x1 (a), KEY x2 (a)", ""),
            t("KEY y1 (a), KEY y2 (a)", ""),
        ),
        p(
            t("KEY k1 (a), KEY k2 (c)", ""),
            t("KEY k2 (a), KEY k1 (c)", ""),
        ),
        p(
            t("KEY ka (a), KEY kc (c)", ""),
            t("KEY kb (a), KEY kc (c, a)", ""),
        ),
    ]
}

/// Partitioned tables: the partitioning kept under other changes, added, removed, rewritten, and
/// RANGE partitions rotated.
fn partition_pairs() -> Vec<(String, String)> {
    let cols = "id INT NOT NULL, d DATE NOT NULL, v INT DEFAULT NULL";
    let years = |ys: &[u32]| {
        ys.iter()
            .map(|y| format!("PARTITION p{y} VALUES LESS THAN ({})", y + 1))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let range = |c: &str, ys: &[u32]| {
        format!(
            "CREATE TABLE pt ({c}, PRIMARY KEY (id, d)) {T} PARTITION BY RANGE (YEAR(d)) ({});",
            years(ys)
        )
    };
    let days = |ds: &[&str]| {
        let list: Vec<String> = ds
            .iter()
            .map(|d| format!("PARTITION p{} VALUES LESS THAN ('{d}')", d.replace('-', "")))
            .collect();
        format!("CREATE TABLE rc (id INT NOT NULL, d DATE NOT NULL, PRIMARY KEY (id, d)) {T} PARTITION BY RANGE COLUMNS (d) ({});", list.join(", "))
    };
    let plain = format!("CREATE TABLE pt ({cols}, PRIMARY KEY (id)) {T};");
    let plain_wide = format!("CREATE TABLE pt ({cols}, PRIMARY KEY (id, d)) {T};");
    let hash = format!(
        "CREATE TABLE pt ({cols}, PRIMARY KEY (id, d)) {T} PARTITION BY HASH (id) PARTITIONS 4;"
    );
    let changed =
        "id INT NOT NULL, d DATE NOT NULL, w VARCHAR(10) DEFAULT NULL, v BIGINT DEFAULT NULL";
    let sub = |ys: &[u32]| {
        format!("CREATE TABLE sp ({cols}, PRIMARY KEY (id, d)) {T} PARTITION BY RANGE (YEAR(d)) SUBPARTITION BY HASH (id) SUBPARTITIONS 2 ({});", years(ys))
    };
    let p = |a: &str, b: &str| (a.to_string(), b.to_string());
    vec![
        p("", &range(cols, &[2020, 2021, 2022])),
        p(
            &range(cols, &[2020, 2021, 2022]),
            &range(changed, &[2020, 2021, 2022]),
        ),
        // keys change, the partitioning stays (or rotates)
        p(
            &range(cols, &[2020, 2021]),
            &range(&format!("{cols}, KEY iv (v)"), &[2020, 2021]),
        ),
        p(
            &range(&format!("{cols}, KEY iv (v)"), &[2020, 2021]),
            &range(
                &format!("{cols}, KEY iv2 (v), KEY idv (d, v)"),
                &[2021, 2022],
            ),
        ),
        p(&plain_wide, &range(cols, &[2020, 2021])),
        p(&range(cols, &[2020, 2021]), &plain_wide),
        // the key must grow to take the partitioning column, in the same statement
        p(&plain, &range(changed, &[2020, 2021])),
        p(&range(changed, &[2020, 2021]), &plain),
        p(&range(cols, &[2020, 2021, 2022]), &hash),
        p(&hash, &hash.replace("PARTITIONS 4", "PARTITIONS 2")),
        p(&hash, &range(cols, &[2021])),
        // rotations
        p(
            &range(cols, &[2020, 2021, 2022]),
            &range(cols, &[2021, 2022, 2023]),
        ),
        p(&range(cols, &[2020, 2021, 2022]), &range(cols, &[2022])),
        p(
            &range(cols, &[2020, 2021]),
            &range(cols, &[2020, 2021, 2022, 2023]),
        ),
        p(
            &range(cols, &[2020, 2021, 2022]),
            &range(changed, &[2021, 2022, 2023]),
        ),
        p(
            &days(&["2020-01-01", "2021-01-01"]),
            &days(&["2021-01-01", "2022-01-01", "2023-01-01"]),
        ),
        p(&sub(&[2020, 2021]), &sub(&[2021, 2022])),
        // not rotations: rewritten
        p(
            &range(cols, &[2020, 2021, 2022]),
            &range(cols, &[2020, 2022]),
        ),
        p(
            &range(cols, &[2020, 2021]),
            &range(cols, &[2020, 2021])
                .replace("YEAR(d)", "TO_DAYS(d)")
                .replace("(2021)", "(737791)")
                .replace("(2022)", "(738156)"),
        ),
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
        safe_migrations: false,
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

/// A small deterministic generator (no external RNG needed in the test).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() as usize) % xs.len()]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const TYPES: &[&str] = &[
    "INT NOT NULL DEFAULT 0",
    "INT DEFAULT NULL",
    "BIGINT UNSIGNED NOT NULL DEFAULT 0",
    "VARCHAR(20) DEFAULT NULL",
    "VARCHAR(64) NOT NULL DEFAULT ''",
    "DECIMAL(10,2) NOT NULL DEFAULT 0.00",
    "TEXT DEFAULT NULL",
    "DATETIME DEFAULT NULL",
    "ENUM('a','b','c') NOT NULL DEFAULT 'a'",
    "JSON DEFAULT NULL",
    "TINYINT(1) NOT NULL DEFAULT 0 COMMENT 'flag'",
    "DOUBLE DEFAULT NULL",
];

/// A table: columns (name, type) and secondary keys (name, unique, columns).
#[derive(Clone)]
struct Gen {
    columns: Vec<(String, String)>,
    keys: Vec<(String, bool, Vec<String>)>,
    comment: Option<String>,
}

impl Gen {
    fn sql(&self, table: &str) -> String {
        let mut parts = vec!["id INT NOT NULL AUTO_INCREMENT".to_string()];
        parts.extend(self.columns.iter().map(|(n, t)| format!("{n} {t}")));
        parts.push("PRIMARY KEY (id)".into());
        for (n, unique, cols) in &self.keys {
            let cols: Vec<String> = cols
                .iter()
                .map(|c| {
                    let t = &self.columns.iter().find(|(n, _)| n == c).unwrap().1;
                    if t.starts_with("TEXT") || t.starts_with("JSON") {
                        format!("{c}(10)")
                    } else {
                        c.clone()
                    }
                })
                .collect();
            parts.push(format!(
                "{}KEY {n} ({})",
                if *unique { "UNIQUE " } else { "" },
                cols.join(", ")
            ));
        }
        let comment = self
            .comment
            .as_ref()
            .map(|c| format!(" COMMENT='{c}'"))
            .unwrap_or_default();
        format!("CREATE TABLE {table} ({}) {T}{comment};", parts.join(", "))
    }

    fn random(r: &mut Rng) -> Gen {
        let n = 1 + r.next() as usize % 6;
        let columns: Vec<(String, String)> = (0..n)
            .map(|i| (format!("c{i}"), r.pick(TYPES).to_string()))
            .collect();
        let mut g = Gen {
            columns,
            keys: Vec::new(),
            comment: None,
        };
        for k in 0..(r.next() % 3) {
            g.add_key(r, k);
        }
        g
    }

    fn add_key(&mut self, r: &mut Rng, k: u64) {
        let indexable: Vec<String> = self.columns.iter().map(|(n, _)| n.clone()).collect();
        if indexable.is_empty() {
            return;
        }
        let first = r.pick(&indexable).clone();
        let mut cols = vec![first.clone()];
        if r.chance(40) {
            let second = r.pick(&indexable).clone();
            if second != first {
                cols.push(second);
            }
        }
        let name = format!("k{k}_{}", r.next() % 1000);
        if !self.keys.iter().any(|(n, _, c)| *n == name || *c == cols) {
            let unique = r.chance(30)
                && !cols.iter().any(|c| {
                    self.columns
                        .iter()
                        .any(|(n, t)| n == c && (t.starts_with("TEXT") || t.starts_with("JSON")))
                });
            self.keys.push((name, unique, cols));
        }
    }

    fn mutate(&self, r: &mut Rng) -> Gen {
        let mut g = self.clone();
        for _ in 0..1 + r.next() % 3 {
            match r.next() % 7 {
                0 => {
                    let at = r.next() as usize % (g.columns.len() + 1);
                    g.columns.insert(
                        at,
                        (format!("n{}", r.next() % 1000), r.pick(TYPES).to_string()),
                    );
                }
                1 if g.columns.len() > 1 => {
                    let at = r.next() as usize % g.columns.len();
                    let gone = g.columns.remove(at).0;
                    g.keys.retain(|(_, _, c)| !c.contains(&gone));
                }
                2 if !g.columns.is_empty() => {
                    let at = r.next() as usize % g.columns.len();
                    g.columns[at].1 = r.pick(TYPES).to_string();
                    let name = g.columns[at].0.clone();
                    g.keys.retain(|(_, _, c)| !c.contains(&name));
                }
                3 if g.columns.len() > 1 => {
                    let a = r.next() as usize % g.columns.len();
                    let c = g.columns.remove(a);
                    let b = r.next() as usize % (g.columns.len() + 1);
                    g.columns.insert(b, c);
                }
                4 => g.add_key(r, 7),
                5 if !g.keys.is_empty() => {
                    let at = r.next() as usize % g.keys.len();
                    g.keys.remove(at);
                }
                _ => {
                    g.comment = if g.comment.is_some() {
                        None
                    } else {
                        Some(format!("v{}", r.next() % 100))
                    }
                }
            }
        }
        g
    }
}

/// Generated pairs: random tables and random edits of them (columns added, dropped, retyped, moved;
/// keys added and dropped; comments set and cleared), several tables per schema, some created or
/// dropped between A and B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_pairs_round_trip() {
    let bins = Arc::new(ServerBinaries::detect().expect("mariadbd installed"));
    let root = tempfile::tempdir().unwrap();
    let tpl = template::ensure_template(&bins, root.path()).unwrap();
    let spec = InstanceSpec {
        id: "d2".into(),
        dir: root.path().join("instances/d2"),
        schema: "scratch".into(),
        production: false,
        safe_migrations: false,
        port: strata_engine::supervisor::pick_port().unwrap(),
        server_id: 22,
    };
    provision(&spec, &tpl).unwrap();
    let inst = Instance::start(bins, spec).unwrap();
    inst.wait_ready(Duration::from_secs(60)).await.unwrap();
    let mut c = inst.connect().await.unwrap();
    let mut r = Rng(0x5eed);
    let pairs = 300;
    let mut statements_total = 0;
    for i in 0..pairs {
        let tables: Vec<Gen> = (0..1 + r.next() % 3).map(|_| Gen::random(&mut r)).collect();
        let mut a_sql = String::new();
        let mut b_sql = String::new();
        for (k, g) in tables.iter().enumerate() {
            let name = format!("t{k}");
            if !r.chance(10) {
                a_sql.push_str(&g.sql(&name));
            }
            if !r.chance(10) {
                b_sql.push_str(&g.mutate(&mut r).sql(&name));
            }
        }
        let a = load(&mut c, &format!("ga{i}"), &a_sql).await;
        let b = load(&mut c, &format!("gb{i}"), &b_sql).await;
        let statements = diff(&a, &b).unwrap();
        statements_total += statements.len();
        c.query_drop(format!("USE `ga{i}`")).await.unwrap();
        for s in &statements {
            c.query_drop(s)
                .await
                .unwrap_or_else(|e| panic!("generated pair {i}: {s}: {e}\nA: {a_sql}\nB: {b_sql}"));
        }
        let after = read(&mut c, &format!("ga{i}")).await;
        assert!(
            same(&after, &b),
            "generated pair {i}: {statements:?}\nA: {a_sql}\nB: {b_sql}\nafter: {after:#?}"
        );
        assert!(diff(&b, &b).unwrap().is_empty());
        c.query_drop(format!("DROP DATABASE `ga{i}`; DROP DATABASE `gb{i}`"))
            .await
            .unwrap();
    }
    println!("{pairs} generated pairs, {statements_total} statements, all round-trip");
    drop(c);
    inst.stop().await;
}
