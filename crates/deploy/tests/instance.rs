//! Deployment phases against a real `mariadbd`: trigger DDL under prepared-statement writers (not
//! one write may fail; without the table lock MariaDB fails some with "Table '…' doesn't exist",
//! MDEV-26048), and the verification catching a shadow that differs from its table.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_deploy::{DeployError, OnlineAlter, Plan};
use strata_engine::mysql_async::prelude::Queryable;
use strata_engine::mysql_async::{self, Conn};
use strata_engine::supervisor::{provision, InstanceSpec};
use strata_engine::{template, Instance, ServerBinaries};
use strata_model::Role;
use strata_schema::{changes, parse_table, Schema};

const ROWS: i64 = 20_000;

fn schema(create: &str) -> Schema {
    let mut s = Schema::default();
    let t = parse_table(create).unwrap();
    s.tables.insert(t.name.clone(), t);
    s
}

struct Server {
    inst: Arc<Instance>,
    _root: tempfile::TempDir,
}

impl Server {
    async fn start(id: &str, server_id: u32) -> Server {
        let bins = Arc::new(ServerBinaries::detect().expect("mariadbd installed"));
        let root = tempfile::tempdir().unwrap();
        let tpl = template::ensure_template(&bins, root.path()).unwrap();
        let spec = InstanceSpec {
            id: id.into(),
            dir: root.path().join("instances").join(id),
            schema: "shop".into(),
            production: true,
            safe_migrations: false,
            port: strata_engine::supervisor::pick_port().unwrap(),
            server_id,
        };
        provision(&spec, &tpl).unwrap();
        let inst = Instance::start(bins.clone(), spec.clone()).unwrap();
        inst.wait_ready(Duration::from_secs(60)).await.unwrap();
        Server { inst, _root: root }
    }

    /// The application's connection options (admin role).
    fn app(&self) -> mysql_async::Opts {
        self.inst.opts(
            &Role::Admin.internal_user(),
            self.inst.credentials().password(Role::Admin),
        )
    }

    /// A deploy plan adding `extra` after column `n` of `table`.
    async fn plan_adding_column(&self, c: &mut Conn, table: &str, tag: &str) -> Plan {
        let (_, before): (String, String) = c
            .query_first(format!("SHOW CREATE TABLE shop.{table}"))
            .await
            .unwrap()
            .unwrap();
        let after = before.replace(
            "`n` int(11) DEFAULT NULL,",
            "`n` int(11) DEFAULT NULL,\n  `extra` int(11) DEFAULT NULL,",
        );
        assert_ne!(before, after);
        let (a, b) = (schema(&before), schema(&after));
        strata_deploy::plan(tag, &a, &b, &changes(&a, &b).unwrap()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_come_and_go_without_failing_a_prepared_write() {
    let server = Server::start("p1", 12).await;
    let opts = server.app();
    let mut admin = Conn::new(opts.clone()).await.unwrap();
    admin
        .query_drop("CREATE TABLE t (id BIGINT NOT NULL, v VARCHAR(50) NOT NULL, n INT NULL, PRIMARY KEY (id))")
        .await
        .unwrap();
    admin
        .query_drop(format!(
            "INSERT INTO t SELECT seq, 'init', seq FROM seq_1_to_{ROWS}"
        ))
        .await
        .unwrap();
    let plan = server.plan_adding_column(&mut admin, "t", "0000c0de").await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4i64 {
        let (opts, stop) = (opts.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut c = Conn::new(opts).await.unwrap();
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut k = w;
            while !stop.load(Ordering::Relaxed) {
                k = (k * 7919 + 13) % ROWS + 1;
                let r = match k % 3 {
                    0 => c.exec_drop("UPDATE t SET n = n + 1 WHERE id = ?", (k,)).await,
                    1 => {
                        c.exec_drop(
                            "INSERT INTO t (id, v, n) VALUES (?, 'w', 0) ON DUPLICATE KEY UPDATE n = 0",
                            (ROWS + 1 + (ok as i64) * 4 + w,),
                        )
                        .await
                    }
                    _ => c.exec_drop("DELETE FROM t WHERE id = ?", (k,)).await,
                };
                match r {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    let mut deploy = Conn::new(server.inst.admin_opts()).await.unwrap();
    for _ in 0..12 {
        strata_deploy::run::prepare(&mut deploy, "shop", &plan)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        strata_deploy::run::finish_shadows(&mut deploy, "shop", &plan)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        strata_deploy::run::cleanup(&mut deploy, "shop", &plan)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Under the same writes: a full copy, each chunk verified in its own transaction (a race would
    // show as a mismatch and fail it), then a full check from one snapshot.
    let a = plan.online_alters().next().unwrap().clone();
    for _ in 0..3 {
        strata_deploy::run::prepare(&mut deploy, "shop", &plan)
            .await
            .unwrap();
        copy_all(&mut deploy, &a).await;
        assert_eq!(mismatch(&mut deploy, &a).await, None);
    }
    strata_deploy::run::cleanup(&mut deploy, "shop", &plan)
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in writers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    eprintln!(
        "prepared writes: {ok} acknowledged, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "writes failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 500, "the writers wrote ({ok})");
    let left: Vec<String> = admin
        .query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND (TABLE_NAME LIKE '\\_strata\\_%' OR TABLE_NAME LIKE '~strata\\_%') UNION ALL SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop'")
        .await
        .unwrap();
    assert!(left.is_empty(), "artifacts left: {left:?}");
    drop(admin);
    drop(deploy);
    server.inst.stop().await;
}

/// A connection as the deploy's copy workers have (see `run::copier_session`), on `c`'s database.
async fn copier(c: &mut Conn) -> Conn {
    let db: Option<String> = c.query_first("SELECT DATABASE()").await.unwrap();
    let mut w = Conn::new(c.opts().clone()).await.unwrap();
    w.query_drop(format!("USE `{}`", db.unwrap()))
        .await
        .unwrap();
    strata_deploy::run::copier_session(&mut w).await.unwrap();
    w
}

async fn copy_all(c: &mut Conn, a: &OnlineAlter) {
    let c = &mut copier(c).await;
    let mut after: Option<Vec<String>> = None;
    loop {
        let chunk = strata_deploy::run::copy_chunk(c, a, after.as_deref(), None, 700)
            .await
            .unwrap();
        match chunk.until {
            Some(k) => after = Some(k),
            None => break,
        }
    }
}

async fn mismatch(c: &mut Conn, a: &OnlineAlter) -> Option<(u64, u64)> {
    match strata_deploy::run::verify(c, a).await {
        Ok(()) => None,
        Err(DeployError::Mismatch { missing, extra, .. }) => Some((missing, extra)),
        Err(e) => panic!("verify: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_catches_every_kind_of_difference() {
    let server = Server::start("p2", 13).await;
    let mut c = Conn::new(server.inst.admin_opts()).await.unwrap();
    c.query_drop("USE shop").await.unwrap();
    c.query_drop("CREATE TABLE u (id INT NOT NULL, v VARCHAR(20) DEFAULT NULL, n INT DEFAULT NULL, PRIMARY KEY (id))")
        .await
        .unwrap();
    // NULLs, empty strings and separators that a naive concatenation would confuse.
    c.query_drop("INSERT INTO u SELECT seq, CASE seq % 4 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN CONCAT(seq, ':1') ELSE 'N' END, IF(seq % 3 = 0, NULL, seq) FROM seq_1_to_5000")
        .await
        .unwrap();
    let plan = server.plan_adding_column(&mut c, "u", "0000beef").await;
    let a = plan.online_alters().next().unwrap().clone();
    strata_deploy::run::prepare(&mut c, "shop", &plan)
        .await
        .unwrap();
    copy_all(&mut c, &a).await;
    strata_deploy::run::finish_shadows(&mut c, "shop", &plan)
        .await
        .unwrap();
    assert_eq!(mismatch(&mut c, &a).await, None, "a faithful copy verifies");
    let shadow = format!("`{}`", a.shadow);
    // A row a transaction holds while its chunk is copied (the copy passes over it), whose
    // transaction then rolls back, so its triggers' write to the shadow goes too: the chunk's check
    // finds it missing and copies it once the transaction is gone.
    strata_deploy::run::prepare(&mut c, "shop", &plan)
        .await
        .unwrap();
    let mut holder = Conn::new(server.inst.admin_opts()).await.unwrap();
    holder.query_drop("USE shop").await.unwrap();
    holder.query_drop("BEGIN").await.unwrap();
    holder
        .query_drop("UPDATE u SET n = -1 WHERE id = 42")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        holder.query_drop("ROLLBACK").await.unwrap();
        holder
    });
    let chunk = strata_deploy::run::copy_chunk(&mut copier(&mut c).await, &a, None, None, 100)
        .await
        .unwrap();
    drop(release.await.unwrap());
    assert_eq!(chunk.rows, 100, "the held row counted once, when copied");
    let copied: Option<(i64, Option<i64>)> = c
        .query_first(format!("SELECT id, n FROM {shadow} WHERE id = 42"))
        .await
        .unwrap();
    assert_eq!(copied, Some((42, None)), "the held row copied as committed");
    strata_deploy::run::prepare(&mut c, "shop", &plan)
        .await
        .unwrap();
    copy_all(&mut c, &a).await;
    let cases = [
        // A value changed, a NULL made empty, a value made NULL, a NULL filled in.
        (
            format!("UPDATE {shadow} SET n = n + 1 WHERE id = 7"),
            Some((1, 0)),
        ),
        (
            format!("UPDATE {shadow} SET v = '' WHERE id = 8"),
            Some((1, 0)),
        ),
        (
            format!("UPDATE {shadow} SET v = NULL WHERE id = 13"),
            Some((1, 0)),
        ),
        (
            format!("UPDATE {shadow} SET n = 0 WHERE id = 9"),
            Some((1, 0)),
        ),
        // Two rows changed the same way at the same place (under a plain XOR of CRC32s, which is
        // linear, the two changes would cancel out).
        (
            format!("UPDATE {shadow} SET v = 'M' WHERE id IN (1003, 1007)"),
            Some((2, 0)),
        ),
        // A row missing, a row too many.
        (
            format!("DELETE FROM {shadow} WHERE id = 4000"),
            Some((1, 0)),
        ),
        (
            format!("INSERT INTO {shadow} (id, v, n) VALUES (9999, 'x', 1)"),
            Some((0, 1)),
        ),
        // A column the new schema adds is not compared.
        (format!("UPDATE {shadow} SET extra = 5 WHERE id = 10"), None),
    ];
    for (change, expected) in cases {
        // Each case starts from a faithful copy.
        c.query_drop(format!("DELETE FROM {shadow}")).await.unwrap();
        copy_all(&mut c, &a).await;
        c.query_drop(&change).await.unwrap();
        assert_eq!(mismatch(&mut c, &a).await, expected, "{change}");
    }
    strata_deploy::run::cleanup(&mut c, "shop", &plan)
        .await
        .unwrap();
    drop(c);
    server.inst.stop().await;
}

/// Copies every range between `bounds` (as the parallel copy's workers do) and checks the result.
async fn copy_in_ranges(c: &mut Conn, a: &OnlineAlter, bounds: Vec<Vec<String>>) {
    let c = &mut copier(c).await;
    for r in strata_deploy::RangeProgress::between(bounds, None) {
        let mut after = r.from.clone();
        loop {
            let chunk =
                strata_deploy::run::copy_chunk(c, a, after.as_deref(), r.to.as_deref(), 333)
                    .await
                    .unwrap();
            match chunk.until {
                Some(k) => after = Some(k),
                None => break,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_split_into_ranges_copies_every_row_once() {
    let server = Server::start("p3", 14).await;
    let mut c = Conn::new(server.inst.admin_opts()).await.unwrap();
    c.query_drop("USE shop").await.unwrap();
    // A dense integer key, a sparse one and a composite text key.
    c.query_drop("CREATE TABLE i (id INT NOT NULL, n INT DEFAULT NULL, PRIMARY KEY (id))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO i SELECT seq, seq FROM seq_1_to_3000")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE s (id BIGINT NOT NULL, n INT DEFAULT NULL, PRIMARY KEY (id))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO s SELECT seq * seq * seq, seq FROM seq_1_to_2000")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE w (a VARCHAR(10) NOT NULL, b INT NOT NULL, n INT DEFAULT NULL, PRIMARY KEY (a, b))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO w SELECT CONCAT('k', seq % 7), seq, seq FROM seq_1_to_2500")
        .await
        .unwrap();
    for (table, tag, rows, parts) in [
        ("i", "000000a1", 3000u64, 2u64),
        ("s", "000000a2", 2000, 3),
        ("w", "000000a3", 2500, 3),
    ] {
        let plan = server.plan_adding_column(&mut c, table, tag).await;
        let a = plan.online_alters().next().unwrap().clone();
        strata_deploy::run::prepare(&mut c, "shop", &plan)
            .await
            .unwrap();
        let bounds = strata_deploy::run::split(&mut c, &a, rows, parts)
            .await
            .unwrap();
        assert_eq!(bounds.len() as u64, parts - 1, "{table}: {bounds:?}");
        copy_in_ranges(&mut c, &a, bounds).await;
        let copied: Option<u64> = c
            .query_first(format!("SELECT COUNT(*) FROM `{}`", a.shadow))
            .await
            .unwrap();
        assert_eq!(copied, Some(rows), "{table}");
        strata_deploy::run::finish_shadows(&mut c, "shop", &plan)
            .await
            .unwrap();
        assert_eq!(mismatch(&mut c, &a).await, None, "{table}");
        strata_deploy::run::cleanup(&mut c, "shop", &plan)
            .await
            .unwrap();
    }
    drop(c);
    server.inst.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cut_over_keeps_the_auto_increment_counter() {
    let server = Server::start("p4", 15).await;
    let mut c = Conn::new(server.inst.admin_opts()).await.unwrap();
    c.query_drop("USE shop").await.unwrap();
    c.query_drop(
        "CREATE TABLE a (id INT NOT NULL AUTO_INCREMENT, n INT DEFAULT NULL, PRIMARY KEY (id))",
    )
    .await
    .unwrap();
    // Ids above 90 handed out and their rows deleted: they are not handed out again.
    c.query_drop("INSERT INTO a (n) SELECT seq FROM seq_1_to_100")
        .await
        .unwrap();
    c.query_drop("DELETE FROM a WHERE id > 90").await.unwrap();
    let next: Option<u64> = c
        .query_first("SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'a'")
        .await
        .unwrap();
    let next = next.unwrap();
    assert!(next > 100, "{next}");
    let plan = server.plan_adding_column(&mut c, "a", "000000b1").await;
    let a = plan.online_alters().next().unwrap().clone();
    strata_deploy::run::prepare(&mut c, "shop", &plan)
        .await
        .unwrap();
    copy_all(&mut c, &a).await;
    strata_deploy::run::cut_over(&mut c, "shop", &plan, Duration::from_millis(400), 5)
        .await
        .unwrap();
    c.query_drop("INSERT INTO a (n) VALUES (0)").await.unwrap();
    let id: Option<u64> = c.query_first("SELECT MAX(id) FROM a").await.unwrap();
    assert_eq!(
        id,
        Some(next),
        "the id after the cut-over is the one the old table would have given"
    );
    let cols: Option<String> = c
        .query_first("SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'a'")
        .await
        .unwrap();
    assert_eq!(cols.as_deref(), Some("id,n,extra"));
    // Reverted, then a clean-up stopped half-way (a crash): everything but the marker gone. The
    // revert, resumed, knows it is done.
    strata_deploy::run::revert(&mut c, "shop", &plan, Duration::from_millis(400), 5)
        .await
        .unwrap();
    let triggers: Vec<String> = c
        .exec(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop' AND TRIGGER_NAME LIKE ?",
            (plan.trigger_like(),),
        )
        .await
        .unwrap();
    for t in triggers {
        c.query_drop(format!("DROP TRIGGER `{t}`")).await.unwrap();
    }
    let marker = plan.marker(strata_deploy::plan::Mark::Reverted);
    let tables: Vec<String> = c
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME LIKE ?",
            (plan.artifact_like(),),
        )
        .await
        .unwrap();
    assert!(tables.contains(&marker), "{tables:?}");
    for t in tables.iter().filter(|t| **t != marker) {
        c.query_drop(format!("DROP TABLE `{t}`")).await.unwrap();
    }
    strata_deploy::run::revert(&mut c, "shop", &plan, Duration::from_millis(400), 5)
        .await
        .expect("a finished revert, resumed, is finished");
    strata_deploy::run::cleanup(&mut c, "shop", &plan)
        .await
        .unwrap();
    let cols: Option<String> = c
        .query_first("SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'a'")
        .await
        .unwrap();
    assert_eq!(cols.as_deref(), Some("id,n"));
    drop(c);
    server.inst.stop().await;
}

/// A child table with foreign keys (one named by the application, one by the server) is copied
/// online under writers: the new table has the same keys under the same names, enforced, and a
/// revert brings the old table back likewise. Resumed steps (a crash after a swap) settle the
/// names too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_table_moves_online_with_its_foreign_keys_and_reverts() {
    let server = Server::start("p5", 16).await;
    let opts = server.app();
    let mut c = Conn::new(server.inst.admin_opts()).await.unwrap();
    c.query_drop("USE shop").await.unwrap();
    c.query_drop("CREATE TABLE p (id INT NOT NULL, PRIMARY KEY (id))")
        .await
        .unwrap();
    c.query_drop(
        "CREATE TABLE kid (id INT NOT NULL, p INT DEFAULT NULL, q INT DEFAULT NULL, n INT DEFAULT NULL, PRIMARY KEY (id), KEY (p), KEY (q), CONSTRAINT fk_p FOREIGN KEY (p) REFERENCES p (id), FOREIGN KEY (q) REFERENCES p (id))",
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO p SELECT seq FROM seq_1_to_100")
        .await
        .unwrap();
    c.query_drop(format!(
        "INSERT INTO kid SELECT seq, seq % 100 + 1, (seq * 7) % 100 + 1, seq FROM seq_1_to_{ROWS}"
    ))
    .await
    .unwrap();
    let before = show(&mut c, "kid").await;
    assert!(before.contains("CONSTRAINT `kid_ibfk_1`"), "{before}");
    let after = before.replace(
        "`n` int(11) DEFAULT NULL,",
        "`n` int(11) DEFAULT NULL,\n  `extra` int(11) DEFAULT NULL,",
    );
    let (sa, sb) = (schema(&before), schema(&after));
    let plan = strata_deploy::plan("0000f00d", &sa, &sb, &changes(&sa, &sb).unwrap()).unwrap();
    assert!(plan.revertable(), "{plan:?}");
    let a = plan.online_alters().next().unwrap().clone();
    assert_eq!(a.foreign_keys.len(), 2);

    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2i64 {
        let (opts, stop) = (opts.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut c = Conn::new(opts).await.unwrap();
            let mut failed = Vec::new();
            let mut k = w;
            while !stop.load(Ordering::Relaxed) {
                k = (k * 7919 + 13) % ROWS + 1;
                let r = match k % 3 {
                    0 => {
                        c.exec_drop("UPDATE kid SET p = ? WHERE id = ?", (k % 100 + 1, k))
                            .await
                    }
                    1 => {
                        c.exec_drop(
                            "INSERT INTO kid (id, p, q, n) VALUES (?, ?, 1, 0) ON DUPLICATE KEY UPDATE n = n + 1",
                            (ROWS + k, k % 100 + 1),
                        )
                        .await
                    }
                    _ => c.exec_drop("DELETE FROM kid WHERE id = ?", (ROWS + k - 1,)).await,
                };
                if let Err(e) = r {
                    failed.push(e.to_string());
                }
            }
            failed
        }));
    }
    strata_deploy::run::prepare(&mut c, "shop", &plan)
        .await
        .unwrap();
    copy_all(&mut c, &a).await;
    strata_deploy::run::cut_over(&mut c, "shop", &plan, Duration::from_millis(400), 20)
        .await
        .unwrap();
    // Resumed after the swap (as after a crash): nothing changes.
    strata_deploy::run::cut_over(&mut c, "shop", &plan, Duration::from_millis(400), 20)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let failed = w.await.unwrap();
        assert!(failed.is_empty(), "writers failed: {failed:?}");
    }
    let strip = |s: String| strata_engine::admin::strip_auto_increment(&s);
    assert_eq!(strip(show(&mut c, "kid").await), strip(after.clone()));
    enforced(&mut Conn::new(opts.clone()).await.unwrap()).await;
    // Rows match the old table's, which the revert window keeps in step.
    let counts: Option<(i64, i64)> = c
        .query_first(format!(
            "SELECT (SELECT COUNT(*) FROM shop.kid), (SELECT COUNT(*) FROM shop.`{}`)",
            a.old
        ))
        .await
        .unwrap();
    let (live, old) = counts.unwrap();
    assert_eq!(live, old);

    strata_deploy::run::revert(&mut c, "shop", &plan, Duration::from_millis(400), 20)
        .await
        .unwrap();
    strata_deploy::run::revert(&mut c, "shop", &plan, Duration::from_millis(400), 20)
        .await
        .unwrap();
    assert_eq!(strip(show(&mut c, "kid").await), strip(before.clone()));
    enforced(&mut Conn::new(opts.clone()).await.unwrap()).await;
    strata_deploy::run::cleanup(&mut c, "shop", &plan)
        .await
        .unwrap();
    assert_eq!(strip(show(&mut c, "kid").await), strip(before));
    let left: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = 'shop'")
        .await
        .unwrap();
    assert_eq!(left, Some(2), "only the application's keys remain");
    drop(c);
    server.inst.stop().await;
}

async fn show(c: &mut Conn, t: &str) -> String {
    let r: Option<(String, String)> = c
        .query_first(format!("SHOW CREATE TABLE shop.{t}"))
        .await
        .unwrap();
    r.unwrap().1
}

/// Both keys of `kid` refuse a row without a parent, and the parent refuses losing a child's.
async fn enforced(c: &mut Conn) {
    for sql in [
        "INSERT INTO shop.kid (id, p, q) VALUES (999999, 424242, 1)",
        "INSERT INTO shop.kid (id, p, q) VALUES (999999, 1, 424242)",
    ] {
        let orphan = c.query_drop(sql).await;
        assert!(
            matches!(&orphan, Err(mysql_async::Error::Server(e)) if e.code == 1452),
            "{sql}: {orphan:?}"
        );
    }
    let parent = c.query_drop("DELETE FROM shop.p WHERE id = 1").await;
    assert!(
        matches!(&parent, Err(mysql_async::Error::Server(e)) if e.code == 1451),
        "{parent:?}"
    );
}

/// A parent table (referenced by a plain key and by a cascading one) is copied online: after the
/// cut-over and after the revert its children reference the live table under their own keys'
/// names, enforced (a cascade reaches the children), and the clean-up drops no referenced table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_table_moves_online_and_its_children_follow() {
    let server = Server::start("p6", 17).await;
    let opts = server.app();
    let mut c = Conn::new(server.inst.admin_opts()).await.unwrap();
    c.query_drop("USE shop").await.unwrap();
    c.query_drop("CREATE TABLE p (id INT NOT NULL, n INT DEFAULT NULL, PRIMARY KEY (id))")
        .await
        .unwrap();
    c.query_drop(
        "CREATE TABLE kid (id INT NOT NULL, p INT DEFAULT NULL, q INT DEFAULT NULL, PRIMARY KEY (id), KEY (p), KEY (q), CONSTRAINT fk_p FOREIGN KEY (p) REFERENCES p (id), FOREIGN KEY (q) REFERENCES p (id))",
    )
    .await
    .unwrap();
    c.query_drop(
        "CREATE TABLE toy (id INT NOT NULL, p INT NOT NULL, PRIMARY KEY (id), KEY (p), CONSTRAINT fk_toy FOREIGN KEY (p) REFERENCES p (id) ON DELETE CASCADE)",
    )
    .await
    .unwrap();
    c.query_drop(format!(
        "INSERT INTO p SELECT seq, seq FROM seq_1_to_{ROWS}"
    ))
    .await
    .unwrap();
    c.query_drop("INSERT INTO kid SELECT seq, seq, seq FROM seq_1_to_100")
        .await
        .unwrap();
    c.query_drop("INSERT INTO toy SELECT seq, seq FROM seq_1_to_200")
        .await
        .unwrap();
    let before = show(&mut c, "p").await;
    let (kid, toy) = (show(&mut c, "kid").await, show(&mut c, "toy").await);
    let after = before.replace(
        "`n` int(11) DEFAULT NULL,",
        "`n` int(11) DEFAULT NULL,\n  `extra` int(11) DEFAULT NULL,",
    );
    let mut sa = schema(&before);
    let mut sb = schema(&after);
    for t in [&kid, &toy] {
        let t = parse_table(t).unwrap();
        sa.tables.insert(t.name.clone(), t.clone());
        sb.tables.insert(t.name.clone(), t);
    }
    let plan = strata_deploy::plan("0000beef", &sa, &sb, &changes(&sa, &sb).unwrap()).unwrap();
    assert!(plan.revertable(), "{plan:?}");
    let a = plan.online_alters().next().unwrap().clone();
    assert_eq!(a.children.len(), 3, "{:?}", a.children);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (opts, stop) = (opts.clone(), stop.clone());
        tokio::spawn(async move {
            let mut c = Conn::new(opts).await.unwrap();
            let mut failed = Vec::new();
            let mut k = 1000i64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                for (sql, args) in [
                    ("INSERT INTO p (id, n) VALUES (?, 0)", (ROWS + k, 0)),
                    ("INSERT INTO kid (id, p, q) VALUES (?, ?, 1)", (k, ROWS + k)),
                    ("UPDATE p SET n = n + 1 WHERE id = ?", (k, 0)),
                ] {
                    let r = if sql.starts_with("UPDATE") {
                        c.exec_drop(sql, (args.0,)).await
                    } else if sql.contains("kid") {
                        c.exec_drop(sql, args).await
                    } else {
                        c.exec_drop(sql, (args.0,)).await
                    };
                    if let Err(e) = r {
                        failed.push(format!("{sql}: {e}"));
                    }
                }
            }
            failed
        })
    };
    strata_deploy::run::prepare(&mut c, "shop", &plan)
        .await
        .unwrap();
    copy_all(&mut c, &a).await;
    strata_deploy::run::cut_over(&mut c, "shop", &plan, Duration::from_millis(400), 20)
        .await
        .unwrap();
    strata_deploy::run::cut_over(&mut c, "shop", &plan, Duration::from_millis(400), 20)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let failed = writer.await.unwrap();
    assert!(failed.is_empty(), "writer failed: {failed:?}");
    let strip = |s: String| strata_engine::admin::strip_auto_increment(&s);
    assert_eq!(strip(show(&mut c, "p").await), strip(after.clone()));
    assert_eq!(show(&mut c, "kid").await, kid);
    assert_eq!(show(&mut c, "toy").await, toy);
    let app = &mut Conn::new(opts.clone()).await.unwrap();
    enforced(app).await;
    // The cascade reaches the children of the live table.
    app.query_drop("DELETE FROM shop.p WHERE id = 150")
        .await
        .unwrap();
    let left: Option<i64> = app
        .query_first("SELECT COUNT(*) FROM shop.toy WHERE p = 150")
        .await
        .unwrap();
    assert_eq!(left, Some(0));

    strata_deploy::run::revert(&mut c, "shop", &plan, Duration::from_millis(400), 20)
        .await
        .unwrap();
    assert_eq!(strip(show(&mut c, "p").await), strip(before.clone()));
    assert_eq!(show(&mut c, "kid").await, kid);
    assert_eq!(show(&mut c, "toy").await, toy);
    enforced(app).await;
    app.query_drop("DELETE FROM shop.p WHERE id = 160")
        .await
        .unwrap();
    let left: Option<i64> = app
        .query_first("SELECT COUNT(*) FROM shop.toy WHERE p IN (150, 160)")
        .await
        .unwrap();
    assert_eq!(left, Some(0));
    strata_deploy::run::cleanup(&mut c, "shop", &plan)
        .await
        .unwrap();
    assert_eq!(show(&mut c, "kid").await, kid);
    assert_eq!(show(&mut c, "toy").await, toy);
    drop(c);
    server.inst.stop().await;
}

/// The server reports how far an online key build is: what a deployment shows while it builds the
/// keys left out of its copy (see `run::key_build_progress`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_build_reports_its_progress() {
    let server = Server::start("p7", 18).await;
    let mut c = Conn::new(server.inst.admin_opts()).await.unwrap();
    c.query_drop("USE shop").await.unwrap();
    c.query_drop("CREATE TABLE k (id INT NOT NULL PRIMARY KEY, pad CHAR(60) NOT NULL)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO k SELECT seq, MD5(seq) FROM seq_1_to_400000")
        .await
        .unwrap();
    let mut watcher = Conn::new(server.inst.admin_opts()).await.unwrap();
    let build = tokio::spawn(async move {
        c.query_drop("ALTER TABLE k ADD INDEX ipad (pad), ALGORITHM=INPLACE, LOCK=NONE")
            .await
            .unwrap();
        c
    });
    let mut seen = Vec::new();
    while !build.is_finished() {
        if let Some(p) = strata_deploy::run::key_build_progress(&mut watcher)
            .await
            .unwrap()
        {
            seen.push(p);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(build.await.unwrap());
    assert!(
        seen.iter().any(|p| *p > 0.0 && *p < 100.0),
        "a report in the middle of the build: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "reports only go forward: {seen:?}"
    );
    assert_eq!(
        strata_deploy::run::key_build_progress(&mut watcher)
            .await
            .unwrap(),
        None,
        "nothing reported once the build is over"
    );
    server.inst.stop().await;
}

/// A transaction holding more of a chunk's rows than one batch of missing keys while the chunk is
/// copied (an application's UPDATE without an index locks every row it scans): the copy passes
/// over them all, and the check copies them batch after batch once they are free, never taking
/// the rows it could not list for rows that differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_held_past_one_batch_of_missing_keys_is_copied_not_failed() {
    let server = Server::start("p8", 19).await;
    let mut c = Conn::new(server.inst.admin_opts()).await.unwrap();
    c.query_drop("USE shop").await.unwrap();
    c.query_drop("CREATE TABLE h (id INT NOT NULL, v VARCHAR(20) DEFAULT NULL, n INT DEFAULT NULL, PRIMARY KEY (id))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO h SELECT seq, 'v', seq FROM seq_1_to_15000")
        .await
        .unwrap();
    let plan = server.plan_adding_column(&mut c, "h", "0000feed").await;
    let a = plan.online_alters().next().unwrap().clone();
    strata_deploy::run::prepare(&mut c, "shop", &plan)
        .await
        .unwrap();
    let mut holder = Conn::new(server.inst.admin_opts()).await.unwrap();
    holder.query_drop("USE shop").await.unwrap();
    holder.query_drop("BEGIN").await.unwrap();
    holder
        .query_drop("SELECT id FROM h WHERE id <= 12000 FOR UPDATE")
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        holder.query_drop("COMMIT").await.unwrap();
        holder
    });
    let chunk = strata_deploy::run::copy_chunk(&mut copier(&mut c).await, &a, None, None, 20_000)
        .await
        .unwrap_or_else(|e| panic!("the held rows are copied once free: {e}"));
    drop(release.await.unwrap());
    assert_eq!(chunk.rows, 15_000, "every row counted once");
    let copied: Option<i64> = c
        .query_first(format!("SELECT COUNT(*) FROM `{}`", a.shadow))
        .await
        .unwrap();
    assert_eq!(copied, Some(15_000));
    server.inst.stop().await;
}
