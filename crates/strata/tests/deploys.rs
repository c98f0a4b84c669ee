//! Online deploys end to end, under concurrent writes through the gateway: the copy, the cut-over,
//! the revert with every acknowledged write present (checked row by row), gated and instant deploys,
//! refused reverts, and kill -9 of `strata up` in the middle of a deployment.

mod common;

use common::{assert_no_artifacts, password, schema_of, Strata};
use mysql_async::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROWS: i64 = 200_000;

/// What the table must hold: id → (v, n). Rows not in `changed` still hold their initial values.
#[derive(Default)]
struct Model {
    changed: BTreeMap<i64, Option<(String, i64)>>,
}

impl Model {
    fn expected(&self, rows: i64) -> BTreeMap<i64, (String, i64)> {
        let mut m: BTreeMap<i64, (String, i64)> =
            (1..=rows).map(|i| (i, ("init".to_string(), i))).collect();
        for (id, v) in &self.changed {
            match v {
                Some(v) => {
                    m.insert(*id, v.clone());
                }
                None => {
                    m.remove(id);
                }
            }
        }
        m
    }
}

/// An acknowledged write: affected rows, the row's new (v, n) (n `None`: incremented; the whole
/// `None`: deleted), and the row's id.
type Ack = (u64, Option<(String, Option<i64>)>, i64);

struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(u64, u64, Duration)>>,
    model: Arc<Mutex<Model>>,
}

/// Two writers through the gateway, each on its own rows (even / odd ids, and its own id range for
/// inserts), recording every acknowledged write in the model.
fn start_writers(rt: &tokio::runtime::Runtime, s: &Strata, user: &str, pw: &str) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let model = Arc::new(Mutex::new(Model::default()));
    let mut tasks = Vec::new();
    for w in 0..2i64 {
        let opts = shop_opts(s, user, pw);
        let stop = stop.clone();
        let model = model.clone();
        tasks.push(rt.spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.expect("writer connects");
            let (mut ok, mut errors, mut worst) = (0u64, 0u64, Duration::ZERO);
            let mut next_insert = 1_000_000 * (w + 1);
            let mut k: i64 = w + 1;
            while !stop.load(Ordering::Relaxed) {
                k = (k * 7919 + 13) % ROWS + 1;
                let id = if k % 2 == w { k } else { k % ROWS + 1 };
                let t0 = Instant::now();
                let op = k % 10;
                let r: Result<Ack, mysql_async::Error> = async {
                    if op < 5 {
                        let v = format!("w{w}-{ok}");
                        conn.exec_drop("UPDATE t SET v = ?, n = n + 1 WHERE id = ?", (&v, id))
                            .await?;
                        Ok((conn.affected_rows(), Some((v, None)), id))
                    } else if op < 8 {
                        next_insert += 1;
                        let v = format!("i{w}-{ok}");
                        conn.exec_drop(
                            "INSERT INTO t (id, v, n) VALUES (?, ?, 0)",
                            (next_insert, &v),
                        )
                        .await?;
                        Ok((conn.affected_rows(), Some((v, Some(0))), next_insert))
                    } else {
                        conn.exec_drop("DELETE FROM t WHERE id = ?", (id,)).await?;
                        Ok((conn.affected_rows(), None, id))
                    }
                }
                .await;
                worst = worst.max(t0.elapsed());
                match r {
                    Ok((affected, change, id)) => {
                        ok += 1;
                        if affected == 1 {
                            let mut m = model.lock().unwrap();
                            let before = m
                                .changed
                                .get(&id)
                                .cloned()
                                .unwrap_or(Some(("init".into(), id)));
                            let after = match change {
                                None => None,
                                Some((v, Some(n))) => Some((v, n)),
                                Some((v, None)) => Some((v, before.map(|b| b.1).unwrap_or(0) + 1)),
                            };
                            m.changed.insert(id, after);
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        eprintln!("writer {w}: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if let Ok(c) = mysql_async::Conn::new(conn.opts().clone()).await {
                            conn = c;
                        }
                    }
                }
            }
            let _ = conn.disconnect().await;
            (ok, errors, worst)
        }));
    }
    Writers { stop, tasks, model }
}

impl Writers {
    /// Stops the writers; returns (acknowledged writes, errors, worst latency).
    fn stop(self, rt: &tokio::runtime::Runtime) -> (u64, u64, Duration, Arc<Mutex<Model>>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = (0, 0, Duration::ZERO);
        for t in self.tasks {
            let (ok, err, worst) = rt.block_on(t).unwrap();
            total.0 += ok;
            total.1 += err;
            total.2 = total.2.max(worst);
        }
        (total.0, total.1, total.2, self.model)
    }
}

/// A client connection to the gateway's `shop` database with a password.
fn shop_opts(s: &Strata, user: &str, pw: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(s.mysql_port)
        .user(Some(user))
        .pass(Some(pw))
        .db_name(Some("shop"))
        .prefer_socket(false)
        .into()
}

/// Waits for writer tasks; returns their transactions done and the errors they met.
fn join_writers(
    rt: &tokio::runtime::Runtime,
    tasks: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>,
) -> (u64, Vec<String>) {
    let (mut ok, mut errors) = (0, Vec::new());
    for t in tasks {
        let (o, e) = rt.block_on(t).unwrap();
        ok += o;
        errors.extend(e);
    }
    (ok, errors)
}

/// Compares the table, row by row, with the model.
fn check_rows(s: &Strata, branch_id: &str, model: &Model) {
    let out = s.sql_ok(
        branch_id,
        "strata_admin",
        "SELECT id, v, n FROM shop.t ORDER BY id",
    );
    let actual: BTreeMap<i64, (String, i64)> = out
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let id = f.next()?.parse().ok()?;
            let v = f.next()?.to_string();
            let n = f.next()?.parse().ok()?;
            Some((id, (v, n)))
        })
        .collect();
    let expected = model.expected(ROWS);
    if actual != expected {
        let missing: Vec<_> = expected
            .iter()
            .filter(|(k, v)| actual.get(k) != Some(v))
            .take(5)
            .collect();
        let extra: Vec<_> = actual
            .iter()
            .filter(|(k, _)| !expected.contains_key(k))
            .take(5)
            .collect();
        panic!(
            "table differs from the acknowledged writes: {} rows vs {} expected; first differing expected rows {missing:?}; first extra rows {extra:?}",
            actual.len(),
            expected.len()
        );
    }
}

fn wait_state(s: &Strata, number: &str, states: &[&str], secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let d = s.json(&["deploy-request", "progress", "shop", number]);
        let state = d["state"].as_str().unwrap_or_default().to_string();
        if states.contains(&state.as_str()) {
            return d;
        }
        assert!(
            state != "complete_error" || states.contains(&"complete_error"),
            "deployment failed: {d}"
        );
        assert!(Instant::now() < deadline, "deployment stuck: {d}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Creates branch `name` of `shop` and waits for it; its id.
fn new_branch(s: &Strata, name: &str) -> String {
    s.json(&["branch", "create", "shop", name, "--wait"])["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A development branch of `shop`'s `main` with `sql` run on it (as its admin); its id.
fn branch_with(s: &Strata, name: &str, sql: &str) -> String {
    let id = new_branch(s, name);
    s.sql_ok(&id, "strata_admin", sql);
    id
}

fn setup(s: &Strata) -> (String, String) {
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        &format!(
            "CREATE TABLE shop.t (id INT NOT NULL PRIMARY KEY, v VARCHAR(32) NOT NULL, n INT NOT NULL) ENGINE=InnoDB;
             INSERT INTO shop.t (id, v, n) SELECT seq, 'init', seq FROM seq_1_to_{ROWS};"
        ),
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let dev_id = new_branch(s, "dev");
    (main_id, dev_id)
}

fn columns(s: &Strata, branch_id: &str) -> String {
    s.sql_ok(
        branch_id,
        "strata_admin",
        "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='shop' AND TABLE_NAME='t'",
    )
    .trim()
    .to_string()
}

#[test]
fn online_deploy_and_revert_keep_every_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN extra INT NULL, ADD INDEX iv (v), MODIFY v VARCHAR(64) NOT NULL",
    );
    s.json(&["deploy-request", "create", "shop", "dev"]);
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let writers = start_writers(&rt, &s, &user, &pw);
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    let dr = s.json(&["deploy-request", "deploy", "shop", "1"]);
    assert_eq!(dr["deployment"]["state"], "queued", "{dr}");
    // Queued is not done, whatever was counted.
    assert_eq!(dr["deployment"]["phase"], "queued", "{dr}");
    assert_eq!(dr["deployment"]["progress_percentage"], 0.0, "{dr}");
    assert_eq!(dr["deployment"]["revertable"], false, "{dr}");
    let d = wait_state(&s, "1", &["complete_pending_revert"], 300);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let (ok, errors, worst, model) = writers.stop(&rt);
    eprintln!(
        "deploy of {ROWS} rows under writes: {took:?}; writes {ok}, errors {errors}, worst write latency {worst:?}, cut-over stall {} ms",
        d["cutover_stall_ms"]
    );
    assert_eq!(errors, 0, "writers saw errors");
    assert!(ok > 100, "the writers wrote ({ok})");
    assert_eq!(d["revertable"], true);
    assert!(d["cutover_stall_ms"].as_u64().unwrap() <= 500, "{d}");
    assert_eq!(columns(&s, &main_id), "id,v,n,extra");
    check_rows(&s, &main_id, &model.lock().unwrap());
    let dr = s.json(&["deploy-request", "show", "shop", "1"]);
    assert_eq!(dr["state"], "closed");
    assert_eq!(dr["deployment_state"], "complete_pending_revert");
    // Artifacts are not part of the branch's schema.
    let schema = s.json(&["branch", "schema", "shop", "main"]);
    assert!(!schema.to_string().contains("strata_"), "{schema}");
    // Production now has exactly the branch's schema (keys built after the copy included).
    assert_eq!(schema, s.json(&["branch", "schema", "shop", "dev"]));

    // Writes after the cut-over, then a revert: the old schema with those writes.
    let writers = start_writers(&rt, &s, &user, &pw);
    // Continue the model from where it is.
    {
        let prior = std::mem::take(&mut *model.lock().unwrap());
        *writers.model.lock().unwrap() = prior;
    }
    std::thread::sleep(Duration::from_secs(2));
    let reverted = s.json(&["deploy-request", "revert", "shop", "1"]);
    assert!(
        matches!(
            reverted["deployment"]["state"].as_str(),
            Some("in_progress_revert" | "complete_revert")
        ),
        "{reverted}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (ok, errors, worst, model) = writers.stop(&rt);
    eprintln!("writes across the revert: {ok}, errors {errors}, worst latency {worst:?}, revert stall {} ms", reverted["deployment"]["revert_stall_ms"]);
    assert_eq!(errors, 0);
    // The revert may still be finishing when the command answers: its stall is read once done.
    let d = wait_state(&s, "1", &["complete_revert"], 60);
    let revert_stall = d["revert_stall_ms"].as_u64().unwrap();
    // The swap back held writers for a moment: shown, never as none.
    assert!((1..=1000).contains(&revert_stall), "{d}");
    assert_eq!(d["revertable"], false, "reverted already: {d}");
    assert_eq!(columns(&s, &main_id), "id,v,n");
    check_rows(&s, &main_id, &model.lock().unwrap());
    // Artifacts are gone.
    let left = s.sql_ok(
        &main_id,
        "strata_admin",
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='shop' AND (TABLE_NAME LIKE '\\_strata\\_%' OR TABLE_NAME LIKE '~strata\\_%')",
    );
    assert_eq!(left.trim(), "0");
}

#[test]
fn gated_instant_refused_reverts_and_bad_input() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);

    // Bad input.
    assert!(s
        .fails(&["deploy-request", "deploy", "shop", "9"])
        .contains("#9 not found"));

    // A gated deploy widening a column: copies, waits in sync, applies on demand.
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t MODIFY v VARCHAR(64) NOT NULL",
    );
    let dr = s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--disable-auto-apply",
    ]);
    assert_eq!(dr["auto_cutover"], false);
    assert!(s
        .fails(&["deploy-request", "revert", "shop", "1"])
        .contains("has not been deployed"));
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    assert!(s
        .fails(&["deploy-request", "deploy", "shop", "1"])
        .contains("already deployed or in the deploy queue"));
    let d = wait_state(&s, "1", &["pending_cutover"], 300);
    assert_eq!(d["phase"], "in_sync");
    assert_eq!(d["rows_copied"], ROWS);
    // In sync: a write now is in the shadow table too, and the old schema is still live.
    s.sql_ok(
        &main_id,
        "strata_admin",
        "INSERT INTO shop.t VALUES (900001, 'while gated', 1)",
    );
    assert!(columns(&s, &main_id).contains("v"));
    let long_before = s.sql_err(
        &main_id,
        "strata_admin",
        "INSERT INTO shop.t VALUES (900002, 'this value is longer than thirty-two characters', 1)",
    );
    assert!(long_before.contains("Data too long"), "{long_before}");
    s.json(&["deploy-request", "apply", "shop", "1"]);
    wait_state(&s, "1", &["complete_pending_revert"], 60);
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT v FROM shop.t WHERE id = 900001"
        )
        .trim(),
        "while gated"
    );
    // A value only the new schema holds makes the revert lossy: refused, with the reason.
    s.sql_ok(
        &main_id,
        "strata_admin",
        "INSERT INTO shop.t VALUES (900003, 'this value is longer than thirty-two characters', 1)",
    );
    let refused = s.fails(&["deploy-request", "revert", "shop", "1"]);
    assert!(
        refused.contains("cannot be reverted without losing data")
            && refused.contains("Data too long"),
        "{refused}"
    );
    s.json(&["deploy-request", "skip-revert", "shop", "1"]);
    let d = wait_state(&s, "1", &["complete"], 60);
    assert_eq!(d["revertable"], false, "the window is closed: {d}");
    assert!(
        d["revert_expires_at"].is_null(),
        "no expiry once closed: {d}"
    );
    assert!(s
        .fails(&["deploy-request", "revert", "shop", "1"])
        .contains("cannot be reverted"));

    // An instant deploy: adding a column qualifies; adding an index does not.
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD INDEX iv (v)",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--enable-auto-apply",
    ]);
    let refused = s.fails(&["deploy-request", "deploy", "shop", "2", "--instant"]);
    assert!(
        refused.contains("cannot be deployed instantly"),
        "{refused}"
    );
    s.json(&["deploy-request", "close", "shop", "2"]);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t DROP INDEX iv, ADD COLUMN note VARCHAR(10) NULL",
    );
    s.json(&["deploy-request", "create", "shop", "dev"]);
    s.json(&["deploy-request", "deploy", "shop", "3", "--instant"]);
    let d = wait_state(&s, "3", &["complete"], 60);
    assert_eq!(d["instant_ddl"], true);
    assert_eq!(d["revertable"], false);
    assert!(columns(&s, &main_id).ends_with("note"));
    assert!(s
        .fails(&["deploy-request", "revert", "shop", "3"])
        .contains("instant deployments cannot be reverted"));
}

#[test]
fn a_request_queued_behind_a_gated_one_says_what_it_waits_for() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN gated INT NULL",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--disable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["pending_cutover"], 300);
    let gated = s.ok(&["deploy-request", "show", "shop", "1"]);
    assert!(
        gated.contains("waiting to be applied") && gated.contains("deploy-request apply"),
        "{gated}"
    );
    // Another request into `main` waits behind the gated one, and says so wherever it is shown.
    branch_with(&s, "dev2", "CREATE TABLE shop.later (id INT PRIMARY KEY)");
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev2",
        "--enable-auto-apply",
    ]);
    let deployed = s.ok(&["deploy-request", "deploy", "shop", "2"]);
    assert!(
        deployed.contains("Waiting behind deploy request #1"),
        "{deployed}"
    );
    let q = s.json(&["deploy-request", "progress", "shop", "2"]);
    assert_eq!(q["state"], "queued", "{q}");
    let note = q["queued_behind"].as_str().unwrap_or_default();
    assert!(
        note.contains("#1")
            && note.contains("waiting to be applied")
            && note.contains("deploy-request apply"),
        "{q}"
    );
    let shown = s.ok(&["deploy-request", "show", "shop", "2"]);
    assert!(
        shown.contains("Waiting behind deploy request #1"),
        "{shown}"
    );
    // A request changing a table the gated one changes, otherwise, is refused as it joins the
    // queue (as on PlanetScale), not failed once the first has deployed.
    branch_with(&s, "dev3", "ALTER TABLE shop.t ADD COLUMN other INT NULL");
    s.json(&["deploy-request", "create", "shop", "dev3"]);
    let refused = s.fails(&["deploy-request", "deploy", "shop", "3"]);
    assert!(
        refused.contains("conflicts with deploy request #1") && refused.contains("`t`"),
        "{refused}"
    );
    // Applied, the first cuts over and the second goes on: the note is gone. `deploy --wait` of
    // the request already queued follows it.
    s.json(&["deploy-request", "apply", "shop", "1"]);
    let followed = s.ok(&["deploy-request", "deploy", "shop", "2", "--wait"]);
    assert!(
        followed.contains("already in the deploy queue: following it")
            && followed.contains("complete_pending_revert"),
        "{followed}"
    );
    let d = wait_state(&s, "2", &["complete_pending_revert"], 120);
    assert!(d["queued_behind"].is_null(), "{d}");
    let tables = s.sql_ok(
        &main_id,
        "strata_admin",
        "SELECT GROUP_CONCAT(TABLE_NAME ORDER BY TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME NOT LIKE '~strata%'",
    );
    // (Straight on the instance: the revert window's own tables are there too.)
    assert_eq!(tables.trim(), "later,t");
    assert!(columns(&s, &main_id).contains("gated"));
}

#[test]
fn kill_9_of_strata_up_during_a_deploy_resumes_it() {
    let root = tempfile::tempdir().unwrap();
    let mut s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN extra INT NULL",
    );
    s.json(&["deploy-request", "create", "shop", "dev"]);
    // Slow the copy down so the kill lands in the middle of it: the database's throttle is what
    // every deployment queued after it starts with.
    assert!(s
        .fails(&["database", "throttle", "shop", "96"])
        .contains("out of range"));
    s.json(&["database", "throttle", "shop", "90"]);
    let t = s.json(&["database", "throttle", "shop"]);
    assert_eq!(t["configurations"][0]["ratio"], 90, "{t}");
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["in_progress"], 60);
    let t = s.json(&["deploy-request", "throttle", "shop", "1"]);
    assert_eq!(t["configurations"][0]["ratio"], 90, "{t}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = s.json(&["deploy-request", "progress", "shop", "1"]);
        if d["rows_copied"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{d}");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.crash();
    common::wait_no_servers(&common::data_dir(root.path()), 30);
    let s = Strata::restart_like(root.path(), &s);
    s.json(&["deploy-request", "throttle", "shop", "1", "0"]);
    let d = wait_state(&s, "1", &["complete_pending_revert"], 300);
    // Chunks copied before the kill and not yet checkpointed are copied again (INSERT IGNORE keeps
    // the first copy), so the count may run short; the rows themselves are checked below.
    assert_eq!(d["tables"][0]["verified"], true, "{d}");
    assert_eq!(columns(&s, &main_id), "id,v,n,extra");
    check_rows(&s, &main_id, &Model::default());
}

/// Runs SQL until it succeeds (the instance may be restarting).
fn sql_retry(s: &Strata, branch_id: &str, sql: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = s.mariadb(branch_id, "strata_admin", sql);
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kill_9_of_the_instance_in_sync_and_of_strata_up_in_the_revert_window() {
    let root = tempfile::tempdir().unwrap();
    let mut s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN extra INT NULL",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--disable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["pending_cutover"], 300);

    // kill -9 of production's server while the copy is held in sync: the supervisor restarts it,
    // the triggers are still there, writes made after the restart reach the new table.
    let pid = std::fs::read_to_string(s.instance_dir(&main_id).join("mysqld.pid")).unwrap();
    common::unsafe_kill(pid.trim().parse().unwrap(), "KILL");
    std::thread::sleep(Duration::from_millis(500));
    sql_retry(
        &s,
        &main_id,
        "UPDATE shop.t SET v = 'after crash', n = -1 WHERE id = 7",
    );
    sql_retry(
        &s,
        &main_id,
        "INSERT INTO shop.t VALUES (900001, 'inserted', 1)",
    );
    s.json(&["deploy-request", "apply", "shop", "1"]);
    wait_state(&s, "1", &["complete_pending_revert"], 120);
    assert_eq!(columns(&s, &main_id), "id,v,n,extra");
    let mut model = Model::default();
    model.changed.insert(7, Some(("after crash".into(), -1)));
    model.changed.insert(900001, Some(("inserted".into(), 1)));
    check_rows(&s, &main_id, &model);

    // Writes in the revert window, kill -9 of `strata up`, restart: the revert keeps them.
    s.sql_ok(&main_id, "strata_admin", "DELETE FROM shop.t WHERE id = 8; UPDATE shop.t SET extra = 5, v = 'in window' WHERE id = 9");
    s.crash();
    common::wait_no_servers(&common::data_dir(root.path()), 30);
    let s = Strata::restart_like(root.path(), &s);
    s.wait_branch("shop", "main");
    let d = wait_state(&s, "1", &["complete_pending_revert"], 60);
    assert_eq!(d["revertable"], true);
    sql_retry(&s, &main_id, "SELECT 1");
    s.json(&["deploy-request", "revert", "shop", "1"]);
    wait_state(&s, "1", &["complete_revert"], 60);
    assert_eq!(columns(&s, &main_id), "id,v,n");
    model.changed.insert(8, None);
    model.changed.insert(9, Some(("in window".into(), 9)));
    check_rows(&s, &main_id, &model);
}

/// Holds a transaction open on production's `t` (as a long-running application query would), so a
/// cut-over's RENAME waits for it.
fn hold_table(s: &Strata, branch_id: &str) -> std::process::Child {
    let cnf = s.instance_dir(branch_id).join("client-strata_admin.cnf");
    std::process::Command::new("mariadb")
        .arg(format!("--defaults-extra-file={}", cnf.display()))
        .args([
            "--batch",
            "-e",
            "BEGIN; SELECT COUNT(*) FROM shop.t; SELECT SLEEP(120);",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mariadb client installed")
}

/// Applies a gated deploy request while a transaction holds the table, so the deployment sits in
/// `in_progress_cutover` with its RENAME waiting.
fn apply_into_waiting_cutover(s: &Strata, main_id: &str, number: &str) -> std::process::Child {
    wait_state(s, number, &["pending_cutover"], 300);
    let blocker = hold_table(s, main_id);
    std::thread::sleep(Duration::from_millis(500));
    s.json(&["deploy-request", "apply", "shop", number]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = wait_state(s, number, &["in_progress_cutover"], 30);
        if d["phase"] == "cutting_over" {
            break;
        }
        assert!(Instant::now() < deadline, "{d}");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let d = s.json(&["deploy-request", "progress", "shop", number]);
    assert_eq!(d["state"], "in_progress_cutover", "the RENAME waits: {d}");
    blocker
}

#[test]
fn kill_9_of_the_instance_and_of_strata_up_while_cutting_over() {
    let root = tempfile::tempdir().unwrap();
    let mut s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);
    let mut model = Model::default();

    // kill -9 of production's server while the cut-over's RENAME waits: the supervisor restarts
    // it, the RENAME is retried and the deployment completes on the new schema.
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN extra INT NULL",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--disable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["pending_cutover"], 300);
    s.sql_ok(
        &main_id,
        "strata_admin",
        "UPDATE shop.t SET v = 'before cut-over', n = -7 WHERE id = 17",
    );
    model
        .changed
        .insert(17, Some(("before cut-over".into(), -7)));
    let mut blocker = apply_into_waiting_cutover(&s, &main_id, "1");
    let pid = std::fs::read_to_string(s.instance_dir(&main_id).join("mysqld.pid")).unwrap();
    common::unsafe_kill(pid.trim().parse().unwrap(), "KILL");
    let _ = blocker.wait();
    wait_state(&s, "1", &["complete_pending_revert"], 120);
    assert_eq!(columns(&s, &main_id), "id,v,n,extra");
    sql_retry(
        &s,
        &main_id,
        "UPDATE shop.t SET v = 'after cut-over', n = -8 WHERE id = 18",
    );
    model
        .changed
        .insert(18, Some(("after cut-over".into(), -8)));
    check_rows(&s, &main_id, &model);
    s.json(&["deploy-request", "skip-revert", "shop", "1"]);
    wait_state(&s, "1", &["complete"], 60);

    // kill -9 of `strata up` (its instances go with it) while the RENAME waits: after the restart
    // the deployment is cut over exactly once, every row in place.
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN extra2 INT NULL",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--disable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "2"]);
    wait_state(&s, "2", &["pending_cutover"], 300);
    s.sql_ok(&main_id, "strata_admin", "DELETE FROM shop.t WHERE id = 19");
    model.changed.insert(19, None);
    let mut blocker = apply_into_waiting_cutover(&s, &main_id, "2");
    s.crash();
    let _ = blocker.kill();
    let _ = blocker.wait();
    common::wait_no_servers(&common::data_dir(root.path()), 30);
    let s = Strata::restart_like(root.path(), &s);
    s.wait_branch("shop", "main");
    let d = wait_state(&s, "2", &["complete_pending_revert"], 120);
    assert_eq!(d["revertable"], true, "{d}");
    assert_eq!(columns(&s, &main_id), "id,v,n,extra,extra2");
    check_rows(&s, &main_id, &model);
    // And the revert window works after it.
    s.json(&["deploy-request", "revert", "shop", "2"]);
    wait_state(&s, "2", &["complete_revert"], 60);
    assert_eq!(columns(&s, &main_id), "id,v,n,extra");
    check_rows(&s, &main_id, &model);
}

#[test]
fn every_kind_of_change_deploys_exactly_and_reverts() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.users (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) NOT NULL);
         INSERT INTO shop.users (name) SELECT CONCAT('u', seq) FROM seq_1_to_500;
         CREATE TABLE shop.legacy (id INT PRIMARY KEY, note TEXT);
         INSERT INTO shop.legacy VALUES (1, 'old');
         CREATE TABLE shop.audit (id INT PRIMARY KEY, what VARCHAR(20));
         CREATE VIEW shop.names AS SELECT id, name FROM shop.users;
         CREATE VIEW shop.stale AS SELECT id FROM shop.legacy;
         CREATE TABLE shop.priced (id INT PRIMARY KEY, qty INT NOT NULL, price INT NOT NULL,
           total INT AS (qty * price) VIRTUAL, label VARCHAR(30) AS (CONCAT('#', id)) STORED);
         INSERT INTO shop.priced (id, qty, price) SELECT seq, seq % 7, seq % 11 FROM seq_1_to_300;",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let before = schema_of(&s, "main");
    let priced = |s: &Strata| {
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT COUNT(*), SUM(qty * price), SUM(total), COUNT(DISTINCT label) FROM shop.priced",
        )
        .trim()
        .to_string()
    };
    let priced_before = priced(&s);

    // One kind at a time, then everything at once; each deployed, checked, reverted, checked.
    let cases: &[(&str, &str)] = &[
        (
            "create alone",
            "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, user_id BIGINT, KEY (user_id))",
        ),
        (
            "alter + create",
            "ALTER TABLE shop.users ADD COLUMN email VARCHAR(100);
             CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, user_id BIGINT, KEY (user_id))",
        ),
        (
            "drop column + create",
            "ALTER TABLE shop.users DROP COLUMN name;
             DROP VIEW shop.names;
             CREATE TABLE shop.orders (id BIGINT PRIMARY KEY)",
        ),
        (
            "not null columns without a default (as Django adds them)",
            "ALTER TABLE shop.users ADD COLUMN nick VARCHAR(20) NOT NULL, ADD COLUMN score INT NOT NULL",
        ),
        ("drop table", "DROP VIEW shop.stale; DROP TABLE shop.legacy"),
        (
            "table replaced by a view",
            "DROP TABLE shop.audit; CREATE VIEW shop.audit AS SELECT id, name AS what FROM shop.users",
        ),
        (
            "view replaced by a table",
            "DROP VIEW shop.names; CREATE TABLE shop.names (id BIGINT PRIMARY KEY, name VARCHAR(50))",
        ),
        (
            "views",
            "CREATE OR REPLACE VIEW shop.names AS SELECT id, UPPER(name) AS name FROM shop.users;
             CREATE VIEW shop.counted AS SELECT COUNT(*) AS n FROM shop.names",
        ),
        (
            "generated columns (the server computes them: never copied into)",
            "ALTER TABLE shop.priced ADD COLUMN note VARCHAR(20),
               MODIFY total BIGINT AS (qty * price * 2) VIRTUAL,
               ADD COLUMN cents BIGINT AS (price * 100) STORED",
        ),
        (
            "everything",
            "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, user_id BIGINT, KEY (user_id));
             ALTER TABLE shop.users ADD COLUMN email VARCHAR(100), ADD UNIQUE KEY (email);
             ALTER TABLE shop.audit ADD COLUMN at DATETIME, DROP COLUMN what;
             DROP VIEW shop.stale; DROP TABLE shop.legacy;
             CREATE VIEW shop.order_users AS SELECT o.id, u.name FROM shop.orders o JOIN shop.users u ON u.id = o.user_id",
        ),
    ];
    for (n, (what, sql)) in cases.iter().enumerate() {
        let number = (n + 1).to_string();
        let branch = format!("dev{n}");
        let dev_id = new_branch(&s, &branch);
        s.sql_ok(&dev_id, "strata_admin", sql);
        let wanted = schema_of(&s, &branch);
        assert_ne!(wanted, before, "{what}: the branch changed nothing");
        s.json(&["deploy-request", "create", "shop", &branch]);
        let out = s.ok(&["deploy-request", "deploy", "shop", &number, "--wait"]);
        assert!(out.contains("complete_pending_revert"), "{what}: {out}");
        let d = wait_state(&s, &number, &["complete_pending_revert"], 120);
        assert_eq!(
            schema_of(&s, "main"),
            wanted,
            "{what}: production differs from the reviewed branch: {d}"
        );
        if what.starts_with("drop table") {
            // The dropped table's rows come back with the revert.
        } else {
            assert_eq!(
                s.sql_ok(&main_id, "strata_admin", "SELECT COUNT(*) FROM shop.users")
                    .trim(),
                "500",
                "{what}"
            );
        }
        if what.starts_with("generated") {
            let (count, sum) = priced_before
                .split_once('\t')
                .map(|(c, rest)| (c.to_string(), rest.split('\t').next().unwrap().to_string()))
                .unwrap();
            let doubled: i64 = sum.parse::<i64>().unwrap() * 2;
            assert_eq!(
                priced(&s),
                format!("{count}\t{sum}\t{doubled}\t{count}"),
                "{what}: the rows, with the new expression's values"
            );
        } else {
            assert_eq!(priced(&s), priced_before, "{what}");
        }
        // By the branch's name: its latest (deployed, closed) request.
        let out = s.ok(&["deploy-request", "revert", "shop", &branch, "--wait"]);
        assert!(out.contains("complete_revert"), "{what}: {out}");
        assert_eq!(schema_of(&s, "main"), before, "{what}: the revert");
        assert_eq!(priced(&s), priced_before, "{what}: the revert");
        assert_eq!(
            s.sql_ok(&main_id, "strata_admin", "SELECT note FROM shop.legacy")
                .trim(),
            "old",
            "{what}"
        );
        common::assert_no_artifacts(&s, &main_id, what);
        s.ok(&["branch", "delete", "shop", &branch, "--force"]);
    }
}

/// Runs a framework's own migrate command (tests/clients/frameworks.py) on a branch.
fn framework_migrate(s: &Strata, kind: &str, branch: &str) -> std::process::Output {
    let (user, pw, _) = password(s, "shop", branch, "admin");
    let clients = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients");
    std::process::Command::new("python3")
        .arg(clients.join("frameworks.py"))
        .args([kind, &s.mysql_port.to_string(), &user, &pw, "shop"])
        .current_dir(&clients)
        .output()
        .unwrap()
}

#[test]
fn django_and_alembic_migrate_on_a_branch_deploy_and_are_no_ops_on_main() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);

    // Bad settings are refused with the reason.
    let e = s.fails(&[
        "database",
        "update",
        "shop",
        "--migration-framework",
        "flyway",
    ]);
    assert!(e.contains("not one of"), "{e}");
    let e = s.fails(&[
        "database",
        "update",
        "shop",
        "--automatic-migrations",
        "true",
    ]);
    assert!(e.contains("needs a migration framework"), "{e}");
    let e = s.fails(&[
        "database",
        "update",
        "shop",
        "--migration-framework",
        "other",
        "--automatic-migrations",
        "true",
    ]);
    assert!(e.contains("needs a migration framework"), "{e}");
    let e = s.fails(&["database", "update", "shop"]);
    assert!(e.contains("nothing to change"), "{e}");

    for (n, (kind, framework, table, log)) in [
        ("django", "django", "", "django_migrations"),
        ("alembic", "other", "alembic_version", "alembic_version"),
    ]
    .into_iter()
    .enumerate()
    {
        let number = (n + 1).to_string();
        let db = s.json(&[
            "database",
            "update",
            "shop",
            "--automatic-migrations",
            "true",
            "--migration-framework",
            framework,
            "--migration-table-name",
            table,
        ]);
        assert_eq!(db["automatic_migrations"], true, "{db}");
        let branch = format!("{kind}-dev");
        s.json(&["branch", "create", "shop", &branch, "--wait"]);
        // Safe migrations refuse the framework on main before the deploy.
        let o = framework_migrate(&s, kind, "main");
        assert!(!o.status.success(), "{kind} on main before the deploy");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("direct DDL is disabled"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = framework_migrate(&s, kind, &branch);
        assert!(
            o.status.success(),
            "{kind} migrate on the branch: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let r = s.json(&["deploy-request", "create", "shop", &branch]);
        assert!(
            r["warnings"]
                .to_string()
                .contains(&format!("copies the rows of `{log}`")),
            "the data copy is shown for review: {r}"
        );
        let out = s.ok(&["deploy-request", "deploy", "shop", &number, "--wait"]);
        assert!(out.contains("complete_pending_revert"), "{out}");
        let on_main = s.sql_ok(
            &main_id,
            "strata_admin",
            &format!("SELECT COUNT(*) FROM shop.`{log}`"),
        );
        let on_branch = s.sql_ok(
            s.wait_branch("shop", &branch)["id"].as_str().unwrap(),
            "strata_admin",
            &format!("SELECT COUNT(*) FROM shop.`{log}`"),
        );
        assert_eq!(on_main, on_branch, "{kind}: the migration log was copied");
        assert_ne!(on_main.trim(), "0");
        // The framework's next migrate on main finds nothing to do (and so runs no DDL).
        let o = framework_migrate(&s, kind, "main");
        assert!(
            o.status.success(),
            "{kind} migrate on main after the deploy: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if kind == "django" {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.contains("No migrations to apply"), "{text}");
            assert!(text.contains("[X] 0002_item_email"), "{text}");
        }
        s.ok(&["deploy-request", "skip-revert", "shop", &number]);
        // A new branch starts with the migration log of its parent: migrate there is a no-op too.
        let next = format!("{kind}-next");
        s.json(&["branch", "create", "shop", &next, "--wait"]);
        let o = framework_migrate(&s, kind, &next);
        assert!(
            o.status.success(),
            "{kind} migrate on a new branch: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if kind == "django" {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.contains("No migrations to apply"), "{text}");
        }
    }

    // Foreign keys: refused at the statement, on any branch, while the database does not allow
    // them; allowed once it does.
    let dev_id = new_branch(&s, "fk");
    let (user, pw, _) = password(&s, "shop", "fk", "admin");
    let fk = "CREATE TABLE invoices (id BIGINT PRIMARY KEY, account_id BIGINT, CONSTRAINT fk_acc FOREIGN KEY (account_id) REFERENCES accounts (id))";
    let o = s.gateway_sql(&user, &pw, &["shop"], fk);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("VT10001: foreign key constraints are not allowed"),
        "{e}"
    );
    s.json(&["database", "update", "shop", "--allow-foreign-keys", "true"]);
    let before = s.json(&["branch", "show", "shop", "fk"])["schema_last_updated_at"].clone();
    assert!(before.is_string(), "set when the branch was made: {before}");
    std::thread::sleep(Duration::from_millis(1100));
    let o = s.gateway_sql(&user, &pw, &["shop"], fk);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = s.json(&["branch", "show", "shop", "fk"])["schema_last_updated_at"].clone();
    assert!(
        after.as_str() > before.as_str(),
        "DDL through the gateway moves schema_last_updated_at: {before} -> {after}"
    );
    let _ = dev_id;
    // Stored routines, triggers and events are no part of a schema: refused with the reason,
    // not the server's privilege error.
    for sql in [
        "CREATE TRIGGER trg BEFORE INSERT ON invoices FOR EACH ROW SET NEW.account_id = 1",
        "CREATE FUNCTION f() RETURNS INT DETERMINISTIC RETURN 1",
        "CREATE PROCEDURE p() SELECT 1",
        "CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO DELETE FROM invoices",
    ] {
        let o = s.gateway_sql(&user, &pw, &["shop"], sql);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && e.contains("ERROR 1235") && e.contains("VT12001"),
            "{sql}: {e}"
        );
    }

    // A foreign key added over rows without a parent: the deploy fails naming one, and main is
    // unchanged; once the row is fixed, the same request deploys.
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.parents (id BIGINT PRIMARY KEY);
         CREATE TABLE shop.kids (id BIGINT PRIMARY KEY, parent_id BIGINT, KEY (parent_id));
         INSERT INTO shop.parents VALUES (1);
         INSERT INTO shop.kids VALUES (1, 1), (2, 999), (3, NULL);",
    );
    let kids_id = new_branch(&s, "kids-fk");
    s.sql_ok(
        &kids_id,
        "strata_admin",
        "ALTER TABLE shop.kids ADD CONSTRAINT fk_parent FOREIGN KEY (parent_id) REFERENCES parents (id)",
    );
    let r = s.json(&["deploy-request", "create", "shop", "kids-fk"]);
    assert!(
        r["warnings"]
            .to_string()
            .contains("cannot be reverted: `kids` is changed in place"),
        "said before the deploy: {r}"
    );
    let number = r["number"].to_string();
    let before = schema_of(&s, "main");
    let o = s.cli(&["deploy-request", "deploy", "shop", &number, "--wait"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a key over orphans deployed");
    assert!(
        e.contains("fk_parent") && e.contains("parent_id = 999") && e.contains("`parents`"),
        "{e}"
    );
    assert_eq!(
        schema_of(&s, "main"),
        before,
        "a failed deploy changed main"
    );
    assert_no_artifacts(&s, &main_id, "after a deploy failed over orphans");
    s.sql_ok(
        &main_id,
        "strata_admin",
        "UPDATE shop.kids SET parent_id = 1 WHERE id = 2",
    );
    s.json(&["deploy-request", "deploy", "shop", &number, "--wait"]);
    let kids = s.sql_ok(&main_id, "strata_admin", "SHOW CREATE TABLE shop.kids");
    assert!(
        kids.contains("CONSTRAINT `fk_parent` FOREIGN KEY"),
        "{kids}"
    );
    // A table whose foreign key's column changes is altered in place (online: the server makes
    // these changes without a copy), said before the deploy; the time it held writers is counted
    // in the cut-over's stall.
    let kids2 = new_branch(&s, "kids-more");
    s.sql_ok(
        &kids2,
        "strata_admin",
        "ALTER TABLE shop.kids ADD COLUMN note VARCHAR(10) NULL; ALTER TABLE shop.kids MODIFY parent_id BIGINT NULL COMMENT 'parent', CONVERT TO CHARACTER SET latin1",
    );
    let wanted = schema_of(&s, "kids-more");
    let r = s.json(&["deploy-request", "create", "shop", "kids-more"]);
    assert!(
        r["warnings"]
            .to_string()
            .contains("cannot be reverted: `kids` is changed in place"),
        "{r}"
    );
    assert!(
        !r["warnings"].to_string().contains("cannot be made online"),
        "{r}"
    );
    let n = r["number"].to_string();
    s.ok(&["deploy-request", "deploy", "shop", &n, "--wait"]);
    let d = wait_state(&s, &n, &["complete"], 60);
    assert!(d["cutover_stall_ms"].is_u64(), "{d}");
    assert_eq!(schema_of(&s, "main"), wanted);

    // The referenced table changed alone: copied online, its children's keys follow it to the
    // new table and back on a revert, enforced all along.
    let par = new_branch(&s, "parents-more");
    s.sql_ok(
        &par,
        "strata_admin",
        "ALTER TABLE shop.parents ADD COLUMN label VARCHAR(20) NULL",
    );
    let wanted = schema_of(&s, "parents-more");
    let before = schema_of(&s, "main");
    let r = s.json(&["deploy-request", "create", "shop", "parents-more"]);
    assert!(
        !r["warnings"].to_string().contains("cannot be reverted"),
        "{r}"
    );
    let n = r["number"].to_string();
    s.ok(&["deploy-request", "deploy", "shop", &n, "--wait"]);
    assert_eq!(schema_of(&s, "main"), wanted);
    let (rw_user, rw_pw, _) = password(&s, "shop", "main", "readwriter");
    let orphan = |when: &str| {
        let o = s.gateway_sql(
            &rw_user,
            &rw_pw,
            &["shop"],
            "INSERT INTO kids (id, parent_id) VALUES (77, 4242)",
        );
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains("1452"), "{when}: {e}");
    };
    orphan("after the deploy");
    s.ok(&["deploy-request", "revert", "shop", &n, "--wait"]);
    assert_eq!(schema_of(&s, "main"), before, "the revert");
    orphan("after the revert");

    // A row without a parent written after the first check, while the cut-over waits for a long
    // transaction: it is refused once the key exists, or the deploy fails naming it. Never a key
    // over a row without a parent.
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.t (id BIGINT PRIMARY KEY, kid_id BIGINT, KEY (kid_id));
         INSERT INTO shop.t VALUES (1, 1);",
    );
    let toys_id = new_branch(&s, "toys-fk");
    s.sql_ok(
        &toys_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD CONSTRAINT fk_kid FOREIGN KEY (kid_id) REFERENCES kids (id)",
    );
    let number = s.json(&[
        "deploy-request",
        "create",
        "shop",
        "toys-fk",
        "--disable-auto-apply",
    ])["number"]
        .to_string();
    s.json(&["deploy-request", "deploy", "shop", &number]);
    let mut blocker = apply_into_waiting_cutover(&s, &main_id, &number);
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    let orphan = s.gateway_sql(&user, &pw, &["shop"], "INSERT INTO t VALUES (2, 424242)");
    let _ = blocker.kill();
    let _ = blocker.wait();
    let d = wait_state(
        &s,
        &number,
        &["complete_pending_revert", "complete", "complete_error"],
        120,
    );
    let orphans = s.sql_ok(
        &main_id,
        "strata_admin",
        "SELECT COUNT(*) FROM shop.t WHERE kid_id NOT IN (SELECT id FROM shop.kids)",
    );
    let t = s.sql_ok(&main_id, "strata_admin", "SHOW CREATE TABLE shop.t");
    eprintln!(
        "a row without a parent during the cut-over: key added {}, row {}",
        t.contains("fk_kid"),
        if orphan.status.success() {
            "taken"
        } else {
            "refused"
        }
    );
    if t.contains("fk_kid") {
        assert_eq!(
            orphans.trim(),
            "0",
            "a key over a row without a parent: {d}"
        );
        assert!(
            !orphan.status.success(),
            "the orphan was taken after the key"
        );
    } else {
        assert_eq!(d["state"], "complete_error", "{d}");
        assert!(d.to_string().contains("kid_id = 424242"), "{d}");
    }
}

/// Tools that walk every table (listings, mysqldump, SQLAlchemy's reflect) see the application's
/// tables only, while the instance holds a deployment's tables and triggers.
fn listings_leave_out_artifacts(s: &Strata, main_id: &str, when: &str) {
    let on_instance = s.sql_ok(
        main_id,
        "strata_admin",
        "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='shop' AND TABLE_NAME LIKE '~strata%'),
                (SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA='shop')",
    );
    assert!(
        !on_instance.trim().starts_with('0') && !on_instance.trim().ends_with('0'),
        "{when}: the instance holds artifact tables and triggers: {on_instance}"
    );
    for role in ["readwriter", "admin", "reader"] {
        let (user, pw, _) = password(s, "shop", "main", role);
        for sql in [
            "SHOW TABLES",
            "SHOW FULL TABLES FROM shop",
            "SHOW TABLE STATUS",
            "SHOW TABLES LIKE '%strata%'",
            "SHOW TRIGGERS",
            "SHOW TRIGGERS FROM shop LIKE 'users'",
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()",
            "SELECT t.TABLE_NAME AS n FROM information_schema.COLUMNS t WHERE TABLE_SCHEMA = 'shop'",
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS",
            "SELECT TABLE_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'shop'",
        ] {
            let o = s.gateway_sql(&user, &pw, &["shop"], sql);
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success(),
                "{when}, {role}: {sql}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(!out.contains("strata_"), "{when}, {role}: {sql}: {out}");
            if sql.starts_with("SHOW TABLES") && !sql.contains("LIKE") {
                assert_eq!(out.trim(), "users", "{when}, {role}: {sql}");
            }
        }
        // Prepared statements (binary rows), as mysql2's execute() and Go's database/sql send.
        let rt = tokio::runtime::Runtime::new().unwrap();
        let names: Vec<String> = rt.block_on(async {
            let opts = shop_opts(s, &user, &pw);
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            let mut all: Vec<String> = c
                .exec(
                    "SELECT TABLE_ROWS, CREATE_TIME, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
                    ("shop",),
                )
                .await
                .map(|rows: Vec<(Option<u64>, Option<mysql_async::Value>, String)>| {
                    rows.into_iter().map(|r| r.2).collect()
                })
                .unwrap();
            let shown: Vec<String> = c.exec("SHOW TABLES", ()).await.unwrap();
            all.extend(shown);
            let triggers: Vec<String> = c
                .exec("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS", ())
                .await
                .unwrap();
            all.extend(triggers);
            c.disconnect().await.unwrap();
            all
        });
        assert!(
            names.iter().all(|n| !n.contains("strata_")) && names.contains(&"users".to_string()),
            "{when}, {role}: prepared listings: {names:?}"
        );
        // The HTTP SQL endpoint the serverless driver speaks.
        let ca = common::data_dir(&s.root).join("tls/ca.pem");
        let out = std::process::Command::new("curl")
            .args(["-s", "--cacert"])
            .arg(&ca)
            .args(["-u", &format!("{user}:{pw}")])
            .args(["-H", "content-type: application/json"])
            .args(["-d", r#"{"query":"SHOW FULL TABLES","session":null}"#])
            .arg(format!(
                "https://localhost:{}/psdb.v1alpha1.Database/Execute",
                s.http_port
            ))
            .output()
            .expect("curl installed");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let rows = v["result"]["rows"].as_array().cloned().unwrap_or_default();
        assert_eq!(rows.len(), 1, "{when}, {role}: HTTP SHOW FULL TABLES: {v}");
        if role == "reader" {
            continue;
        }
        let dump = std::process::Command::new("mysqldump")
            .args(["-h", "127.0.0.1", "-P", &s.mysql_port.to_string(), "-u"])
            .args([
                user.as_str(),
                &format!("-p{pw}"),
                "--no-tablespaces",
                "shop",
            ])
            .output()
            .expect("mysqldump installed");
        let text = String::from_utf8_lossy(&dump.stdout);
        assert!(
            dump.status.success(),
            "{when}, {role}: mysqldump: {}",
            String::from_utf8_lossy(&dump.stderr)
        );
        assert!(
            text.contains("CREATE TABLE `users`") && !text.contains("strata_"),
            "{when}, {role}: mysqldump: {text}"
        );
        let reflect = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, sqlalchemy as sa\n\
                 e = sa.create_engine(sys.argv[1])\n\
                 m = sa.MetaData()\n\
                 m.reflect(e)\n\
                 print(sorted(m.tables))",
                &format!(
                    "mysql+pymysql://{user}:{pw}@127.0.0.1:{}/shop",
                    s.mysql_port
                ),
            ])
            .output()
            .expect("python3 runs");
        assert_eq!(
            String::from_utf8_lossy(&reflect.stdout).trim(),
            "['users']",
            "{when}, {role}: reflect: {}",
            String::from_utf8_lossy(&reflect.stderr)
        );
    }
}

#[test]
fn artifacts_are_out_of_reach_and_a_view_that_cannot_exist_is_refused_up_front() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.users (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20) NOT NULL);
         INSERT INTO shop.users (name) SELECT CONCAT('u', seq) FROM seq_1_to_300;",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let before = schema_of(&s, "main");

    // A gated deploy sits in sync: its tables exist, and no password can reach them.
    let dev_id = new_branch(&s, "dev");
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.users ADD COLUMN email VARCHAR(100) NULL",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--disable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["pending_cutover"], 120);
    let shadow = s.sql_ok(
        &main_id,
        "strata_admin",
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='shop' AND TABLE_NAME LIKE '~strata\\_%\\_new\\_users'",
    );
    let shadow = shadow.trim().to_string();
    assert!(!shadow.is_empty());
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    for sql in [
        format!("UPDATE `{shadow}` SET name = 'HACKED' WHERE id = 5"),
        format!("DELETE FROM shop.`{shadow}`"),
        format!("SELECT * FROM `{shadow}`"),
        format!("PREPARE s FROM 'DELETE FROM `{shadow}`'"),
        "DELETE FROM _strata_00000000_revert_blocked".to_string(),
    ] {
        let o = s.gateway_sql(&user, &pw, &["shop"], &sql);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && e.contains("reserved for deployments"),
            "{sql}: {e}"
        );
    }
    listings_leave_out_artifacts(&s, &main_id, "while the deploy waits to cut over");
    s.json(&["deploy-request", "apply", "shop", "1"]);
    wait_state(&s, "1", &["complete_pending_revert"], 120);
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT COUNT(*) FROM shop.users WHERE name LIKE 'u%'"
        )
        .trim(),
        "300"
    );
    listings_leave_out_artifacts(&s, &main_id, "in the revert window");
    s.ok(&["deploy-request", "revert", "shop", "1", "--wait"]);
    assert_eq!(schema_of(&s, "main"), before);

    // A view of a table neither side has: refused before anything is queued, with the view named
    // (not found at the cut-over, after production was changed).
    s.json(&["branch", "create", "shop", "dev2", "--wait"]);
    let dev2_id = s.wait_branch("shop", "dev2")["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.sql_ok(
        &dev2_id,
        "strata_admin",
        "ALTER TABLE shop.users ADD COLUMN nick VARCHAR(10) NULL;
         CREATE TABLE shop.tmpgone (id INT PRIMARY KEY); CREATE VIEW shop.v_gone AS SELECT id FROM shop.tmpgone; DROP TABLE shop.tmpgone;",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev2",
        "--enable-auto-apply",
    ]);
    let out = s.cli(&["deploy-request", "deploy", "shop", "2", "--wait"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && text.contains("view `v_gone` does not work on branch `dev2`"),
        "{text}"
    );
    let shown = s.json(&["deploy-request", "show", "shop", "2"]);
    assert_eq!(shown["deployable"], false, "{shown}");
    assert!(shown["deployment"].is_null(), "nothing was queued: {shown}");
    let lint = s.json(&["branch", "lint", "shop", "dev2"]).to_string();
    assert!(
        lint.contains("BROKEN_VIEW") && lint.contains("v_gone"),
        "the lint says it first: {lint}"
    );
    assert_eq!(schema_of(&s, "main"), before, "production untouched");
    common::assert_no_artifacts(&s, &main_id, "");
}

#[test]
fn a_request_deploys_what_was_queued_and_keeps_its_record() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.a (id BIGINT PRIMARY KEY); CREATE TABLE shop.b (id BIGINT PRIMARY KEY)",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let branch = |name: &str, sql: &str| {
        let id = new_branch(&s, name);
        s.sql_ok(&id, "strata_admin", sql);
        id
    };
    let one = branch("one", "ALTER TABLE shop.a ADD COLUMN x INT");
    let two = branch("two", "ALTER TABLE shop.b ADD COLUMN y INT");
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "one",
        "--disable-auto-apply",
    ]);
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "two",
        "--enable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["pending_cutover"], 120);
    // #2 waits behind #1; its branch changes meanwhile.
    s.json(&["deploy-request", "deploy", "shop", "2"]);
    s.sql_ok(&two, "strata_admin", "ALTER TABLE shop.b ADD COLUMN z INT");
    let diff2 = s.json(&["deploy-request", "diff", "shop", "2"]).to_string();
    assert!(
        diff2.contains("`y`") && !diff2.contains("`z`"),
        "a queued request shows what it deploys: {diff2}"
    );
    // #2 is queued: nothing copied yet, and it says so.
    let queued = s.json(&["deploy-request", "progress", "shop", "2"]);
    assert_eq!(queued["state"], "queued", "{queued}");
    assert_eq!(queued["progress_percentage"], 0.0, "{queued}");
    // apply --wait follows the cut-over and prints the state it ends in.
    let applied = s.json(&["deploy-request", "apply", "shop", "1", "--wait"]);
    assert_eq!(applied["state"], "complete_pending_revert", "{applied}");
    let d = wait_state(&s, "2", &["complete_error"], 120);
    assert_eq!(d["phase"], "failed", "{d}");
    // A deploy that failed its checks did not close #1's revert window.
    let first = s.json(&["deploy-request", "progress", "shop", "1"]);
    assert_eq!(first["state"], "complete_pending_revert", "{first}");
    assert!(s
        .fails(&["deploy-request", "throttle", "shop", "2", "50"])
        .contains("nothing to throttle"));
    assert!(
        d.to_string().contains("changed after it was deployed"),
        "{d}"
    );
    let b = s.sql_ok(&main_id, "strata_admin", "SHOW CREATE TABLE shop.b");
    assert!(!b.contains("`y`") && !b.contains("`z`"), "{b}");
    // Deployed again, it deploys what it shows now.
    let out = s.cli(&["deploy-request", "deploy", "shop", "2", "--wait"]);
    let b = s.sql_ok(&main_id, "strata_admin", "SHOW CREATE TABLE shop.b");
    let p = s.json(&["deploy-request", "progress", "shop", "2"]);
    assert!(
        b.contains("`y`") && b.contains("`z`"),
        "{b}\n{p}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A deployed request keeps its record, whatever its branch does next.
    s.sql_ok(&one, "strata_admin", "ALTER TABLE shop.a ADD COLUMN w INT");
    let diff1 = s.json(&["deploy-request", "diff", "shop", "1"]).to_string();
    assert!(
        diff1.contains("`x`") && !diff1.contains("`w`"),
        "the record of #1: {diff1}"
    );

    // An object the schema engine cannot read on one branch makes that request not deployable,
    // with the reason, and never breaks the list of requests.
    branch("seq", "CREATE SEQUENCE shop.s2");
    let r = s.json(&["deploy-request", "create", "shop", "seq"]);
    assert_eq!(r["deployable"], false, "{r}");
    assert!(r["problems"].to_string().contains("s2"), "{r}");
    let list = s.json(&["deploy-request", "list", "shop"]);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
}

/// A table changed directly on production (safe migrations switched off) while a gated deploy of
/// it waits for its cut-over: applying it swaps nothing and ends the deployment with the reason,
/// and the direct change and its data stay.
#[test]
fn a_direct_change_on_the_target_stops_the_cut_over() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN a INT",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--disable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["pending_cutover"], 120);
    s.json(&["branch", "safe-migrations", "disable", "shop", "main"]);
    s.sql_ok(
        &main_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN b INT DEFAULT 5; INSERT INTO shop.t VALUES (0, 'direct', 0, 9)",
    );
    s.json(&["deploy-request", "apply", "shop", "1"]);
    let d = wait_state(&s, "1", &["complete_error"], 120);
    assert!(
        d["error"]
            .as_str()
            .unwrap_or_default()
            .contains("changed directly"),
        "{d}"
    );
    let t = s.sql_ok(&main_id, "strata_root", "SHOW CREATE TABLE shop.t");
    assert!(t.contains("`b` int") && !t.contains("`a` int"), "{t}");
    assert_eq!(
        s.sql_ok(&main_id, "strata_root", "SELECT b FROM shop.t WHERE id = 0")
            .trim(),
        "9"
    );
    assert_no_artifacts(&s, &main_id, "after a cut-over refused");
}

/// Two branches made from `main` each add a migration; deployed one after the other, both stay
/// recorded on `main` (a log gains the rows it lacks; it is not replaced by the last branch's).
#[test]
fn migration_logs_of_two_branches_both_reach_main() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.schema_migrations (version VARCHAR(64) NOT NULL PRIMARY KEY);
         INSERT INTO shop.schema_migrations VALUES ('1'), ('2');
         CREATE TABLE shop.django_migrations (id INT AUTO_INCREMENT PRIMARY KEY, app VARCHAR(50), name VARCHAR(100));
         INSERT INTO shop.django_migrations (app, name) VALUES ('a', '0001'), ('a', '0002');",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    s.json(&[
        "database",
        "update",
        "shop",
        "--automatic-migrations",
        "true",
        "--migration-framework",
        "rails",
    ]);
    // A branch made from main now, with one migration of its own, deployed as request `number`.
    let migrate = |b: &str, number: u32, insert: &str| {
        let id = new_branch(&s, b);
        (id, b.to_string(), number, insert.to_string())
    };
    let deploy = |(id, b, number, insert): (String, String, u32, String)| {
        s.sql_ok(
            &id,
            "strata_admin",
            &format!("CREATE TABLE shop.t_{b} (id INT PRIMARY KEY); {insert}"),
        );
        s.json(&["deploy-request", "create", "shop", &b]);
        let out = s.ok(&[
            "deploy-request",
            "deploy",
            "shop",
            &number.to_string(),
            "--wait",
        ]);
        assert!(out.contains("complete_pending_revert"), "{b}: {out}");
    };
    // Both branches are made before either deploys.
    let made = [
        migrate("ra", 1, "INSERT INTO shop.schema_migrations VALUES ('3ra')"),
        migrate("rb", 2, "INSERT INTO shop.schema_migrations VALUES ('3rb')"),
    ];
    made.into_iter().for_each(deploy);
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT GROUP_CONCAT(version ORDER BY version) FROM shop.schema_migrations"
        )
        .trim(),
        "1,2,3ra,3rb"
    );
    // A log numbered by AUTO_INCREMENT: the same check with Django's table.
    s.json(&[
        "database",
        "update",
        "shop",
        "--migration-framework",
        "django",
    ]);
    let insert = |name: &str| {
        format!("INSERT INTO shop.django_migrations (app, name) VALUES ('a', '{name}')")
    };
    let made = [
        migrate("da", 3, &insert("0003_da")),
        migrate("db", 4, &insert("0003_db")),
    ];
    made.into_iter().for_each(deploy);
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT GROUP_CONCAT(name ORDER BY name) FROM shop.django_migrations"
        )
        .trim(),
        "0001,0002,0003_da,0003_db"
    );
    // A revert takes out only what its deploy added: a row the application recorded meanwhile
    // (and the other deploy's) stays.
    s.sql_ok(
        &main_id,
        "strata_admin",
        "INSERT INTO shop.django_migrations (app, name) VALUES ('b', '0001_by_app')",
    );
    s.ok(&["deploy-request", "revert", "shop", "4", "--wait"]);
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT GROUP_CONCAT(name ORDER BY name) FROM shop.django_migrations"
        )
        .trim(),
        "0001,0001_by_app,0002,0003_da"
    );
    // A table of heads (Alembic's): replaced by a branch that moved it, left alone by a branch
    // that did not (made before another branch's migration was deployed, it would take the
    // heads back).
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
         INSERT INTO shop.alembic_version VALUES ('a1');",
    );
    s.json(&[
        "database",
        "update",
        "shop",
        "--migration-framework",
        "other",
        "--migration-table-name",
        "alembic_version",
    ]);
    let heads = || {
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT GROUP_CONCAT(version_num) FROM shop.alembic_version",
        )
        .trim()
        .to_string()
    };
    let made = [
        migrate("stale", 6, ""),
        migrate(
            "moves",
            5,
            "UPDATE shop.alembic_version SET version_num = 'a2'",
        ),
    ];
    let [stale, moves] = made;
    deploy(moves);
    assert_eq!(heads(), "a2");
    deploy(stale);
    assert_eq!(
        heads(),
        "a2",
        "a branch that never migrated took the heads back"
    );
}

/// A deploy's revert window stays open while a later deploy of the same branch copies, waits to
/// be applied or is cancelled; it closes when the later one cuts over.
#[test]
fn a_revert_window_stays_open_until_the_next_deploy_cuts_over() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let (_main_id, dev_id) = setup(&s);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN a1 INT NULL",
    );
    s.json(&["deploy-request", "create", "shop", "dev"]);
    s.ok(&["deploy-request", "deploy", "shop", "1", "--wait"]);
    wait_state(&s, "1", &["complete_pending_revert"], 120);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN a2 INT NULL",
    );
    let second = s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--disable-auto-apply",
    ]);
    assert!(
        second["warnings"]
            .to_string()
            .contains("ends the revert window of deploy request #1"),
        "said before the deploy: {second}"
    );
    s.json(&["deploy-request", "deploy", "shop", "2"]);
    wait_state(&s, "2", &["pending_cutover"], 300);
    let first = s.json(&["deploy-request", "progress", "shop", "1"]);
    assert_eq!(first["state"], "complete_pending_revert", "{first}");
    assert_eq!(first["revertable"], true, "{first}");
    s.json(&["deploy-request", "cancel", "shop", "2"]);
    wait_state(&s, "2", &["complete_cancel", "cancelled"], 60);
    let first = s.json(&["deploy-request", "progress", "shop", "1"]);
    assert_eq!(
        first["revertable"], true,
        "a cancelled deploy leaves it open: {first}"
    );
    s.json(&["deploy-request", "edit", "shop", "2", "--enable-auto-apply"]);
    s.ok(&["deploy-request", "deploy", "shop", "2", "--wait"]);
    wait_state(&s, "2", &["complete_pending_revert"], 300);
    let first = wait_state(&s, "1", &["complete"], 60);
    assert_eq!(first["revertable"], false, "{first}");
    let refused = s.cli(&["deploy-request", "revert", "shop", "1"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("its revert window was closed when deploy request #2 was deployed"),
        "{refused:?}"
    );
}

/// A branch's next request holds only its own changes after a deploy and after a revert: a column
/// another branch deployed meanwhile is never shown (or deployed) as this branch dropping it.
#[test]
fn after_a_deploy_or_a_revert_a_branch_never_undoes_another_branchs_change() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.shared (id INT PRIMARY KEY); CREATE TABLE shop.mine (id INT PRIMARY KEY)",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let branch = |name: &str| new_branch(&s, name);
    let (other, mine) = (branch("other"), branch("mine"));
    // Another team adds a column to `shared` and deploys it.
    s.sql_ok(
        &other,
        "strata_admin",
        "ALTER TABLE shop.shared ADD COLUMN team INT NULL",
    );
    s.json(&["deploy-request", "create", "shop", "other"]);
    s.ok(&["deploy-request", "deploy", "shop", "1", "--wait"]);
    s.ok(&["deploy-request", "skip-revert", "shop", "1"]);
    // This branch changes only `mine`: deployed, reverted, deployed again.
    s.sql_ok(
        &mine,
        "strata_admin",
        "ALTER TABLE shop.mine ADD COLUMN a INT NULL",
    );
    for (number, step) in (2..).zip(["deploy", "after its revert", "after a second deploy"]) {
        let r = s.json(&["deploy-request", "create", "shop", "mine"]);
        let diff = s.json(&["deploy-request", "diff", "shop", &number.to_string()]);
        assert!(
            !diff.to_string().contains("team"),
            "{step}: the request would undo the other branch's column: {diff} {r}"
        );
        if step == "after a second deploy" {
            // Nothing of this branch's is left to deploy.
            assert_eq!(r["deployment_state"], "no_changes", "{step}: {r}");
            break;
        }
        let n = number.to_string();
        s.ok(&["deploy-request", "deploy", "shop", &n, "--wait"]);
        if step == "deploy" {
            s.ok(&["deploy-request", "revert", "shop", &n, "--wait"]);
        } else {
            s.ok(&["deploy-request", "skip-revert", "shop", &n]);
        }
    }
    let shared = s.sql_ok(&main_id, "strata_admin", "SHOW CREATE TABLE shop.shared");
    assert!(shared.contains("`team`"), "{shared}");
}

/// A write the live schema takes but the new one refuses (a new CHECK) while a gated deploy waits
/// in sync: the application's write succeeds, and the cut-over fails with the reason, naming the
/// table, with nothing swapped. Once the row fits, the same request deploys.
#[test]
fn a_write_the_new_schema_refuses_never_fails_the_application() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD CONSTRAINT ck_n CHECK (n < 1000000)",
    );
    let wanted = schema_of(&s, "dev");
    let before = schema_of(&s, "main");
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--disable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["pending_cutover"], 300);
    s.sql_ok(
        &main_id,
        "strata_admin",
        "INSERT INTO shop.t VALUES (900001, 'too big', 5000000); UPDATE shop.t SET n = 7000000 WHERE id = 3",
    );
    s.json(&["deploy-request", "apply", "shop", "1"]);
    let d = wait_state(&s, "1", &["complete_error"], 60);
    let error = d["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("table `t`") && error.contains("ck_n") && !error.contains("strata_"),
        "{d}"
    );
    assert_eq!(schema_of(&s, "main"), before, "nothing was swapped");
    common::assert_no_artifacts(&s, &main_id, "after a refused write");
    // The rows made to fit: the same request deploys.
    s.sql_ok(
        &main_id,
        "strata_admin",
        "DELETE FROM shop.t WHERE id = 900001; UPDATE shop.t SET n = 3 WHERE id = 3",
    );
    s.ok(&["deploy-request", "deploy", "shop", "1", "--wait"]);
    s.json(&["deploy-request", "apply", "shop", "1"]);
    wait_state(&s, "1", &["complete_pending_revert"], 300);
    assert_eq!(schema_of(&s, "main"), wanted);

    // A new NOT NULL: an UPDATE setting only that column to NULL leaves the shadow's row as it
    // was, which no comparison of the (changed) column can see: the apply fails all the same, and
    // the acknowledged write stays.
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.u (id INT PRIMARY KEY, a VARCHAR(20) NULL); INSERT INTO shop.u SELECT seq, CONCAT('a', seq) FROM seq_1_to_50",
    );
    let nn = new_branch(&s, "nn");
    s.sql_ok(
        &nn,
        "strata_admin",
        "ALTER TABLE shop.u MODIFY a VARCHAR(20) NOT NULL DEFAULT ''",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "nn",
        "--disable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "2"]);
    wait_state(&s, "2", &["pending_cutover"], 300);
    s.sql_ok(
        &main_id,
        "strata_admin",
        "UPDATE shop.u SET a = NULL WHERE id = 7",
    );
    s.json(&["deploy-request", "apply", "shop", "2"]);
    let d = wait_state(&s, "2", &["complete_error"], 60);
    assert!(
        d["error"]
            .as_str()
            .unwrap_or_default()
            .contains("table `u`"),
        "{d}"
    );
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT COUNT(*) FROM shop.u WHERE id = 7 AND a IS NULL"
        )
        .trim(),
        "1",
        "the acknowledged write stays"
    );
}

/// A row only blocks while it is wrong: a refused write taken back (the row fixed or deleted)
/// lets the cut-over and the revert go ahead. A value the old schema would round (DECIMAL scale,
/// fractional seconds) blocks the revert as one too long does, as PlanetScale's revert refuses.
#[test]
fn a_row_blocks_only_while_it_does_not_fit_and_a_revert_never_rounds() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.p (id INT PRIMARY KEY, price DECIMAL(10,2) NOT NULL, at DATETIME NULL, label VARCHAR(10) NULL);
         INSERT INTO shop.p SELECT seq, seq / 4, '2026-01-01 10:00:00', CONCAT('l', seq) FROM seq_1_to_200;
         CREATE TABLE shop.e (k VARCHAR(10) PRIMARY KEY, s ENUM('open','closed') NOT NULL, d DOUBLE NULL, v VARCHAR(5) NULL);
         INSERT INTO shop.e VALUES ('a', 'open', 0.5, 'x'), ('b', 'closed', NULL, NULL)",
    );
    let pb = new_branch(&s, "pb");

    // Forward: a write the new CHECK refuses, then taken back, no longer blocks the cut-over.
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD CONSTRAINT ck_n CHECK (n < 1000000)",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--disable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["pending_cutover"], 300);
    s.sql_ok(
        &main_id,
        "strata_admin",
        "INSERT INTO shop.t VALUES (900001, 'too big', 5000000); UPDATE shop.t SET n = 7000000 WHERE id = 3; UPDATE shop.t SET n = 8000000 WHERE id = 4",
    );
    s.sql_ok(
        &main_id,
        "strata_admin",
        "DELETE FROM shop.t WHERE id = 900001; UPDATE shop.t SET n = 3 WHERE id = 3; UPDATE shop.t SET id = 900004, n = 4 WHERE id = 4",
    );
    s.json(&["deploy-request", "apply", "shop", "1"]);
    wait_state(&s, "1", &["complete_pending_revert"], 120);
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT COUNT(*), SUM(n) FROM shop.t WHERE id IN (3, 4, 900001, 900004)"
        )
        .trim(),
        "2\t7"
    );
    s.json(&["deploy-request", "skip-revert", "shop", "1"]);
    wait_state(&s, "1", &["complete"], 60);

    // Reverse: wider types deployed; values only they hold block the revert while they are there.
    s.sql_ok(
        &pb,
        "strata_admin",
        "ALTER TABLE shop.p MODIFY price DECIMAL(12,4) NOT NULL, MODIFY at DATETIME(6) NULL, MODIFY label VARCHAR(40) NULL;
         ALTER TABLE shop.e MODIFY s ENUM('open','closed','on_hold') NOT NULL, MODIFY d DECIMAL(30,10) NULL, MODIFY v VARCHAR(40) NULL",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "pb",
        "--enable-auto-apply",
    ]);
    s.ok(&["deploy-request", "deploy", "shop", "2", "--wait"]);
    wait_state(&s, "2", &["complete_pending_revert"], 120);
    let refused_with = |why: &str| {
        let refused = s.fails(&["deploy-request", "revert", "shop", "2"]);
        assert!(
            refused.contains("cannot be reverted without losing data") && refused.contains(why),
            "{why}: {refused}"
        );
    };
    // A value only the widened ENUM holds: the application's write succeeds (error 1265 has a
    // warning's SQLSTATE), the revert is refused.
    s.sql_ok(
        &main_id,
        "strata_admin",
        "INSERT INTO shop.e VALUES ('x1', 'on_hold', NULL, NULL)",
    );
    refused_with("Data truncated for column 's'");
    let refused = s.fails(&["deploy-request", "revert", "shop", "2"]);
    assert!(
        !refused.contains("~strata") && !refused.contains("at row 1"),
        "{refused}"
    );
    // Digits a DOUBLE would lose.
    s.sql_ok(
        &main_id,
        "strata_admin",
        "UPDATE shop.e SET s = 'open' WHERE k = 'x1'; INSERT INTO shop.e VALUES ('x2', 'open', 12345678901234567890.0123456789, NULL)",
    );
    refused_with("`d`");
    // A key changed only in case is the same row: its record goes with the fix.
    s.sql_ok(
        &main_id,
        "strata_admin",
        "UPDATE shop.e SET d = 1.5 WHERE k = 'x2'; INSERT INTO shop.e VALUES ('Abc', 'open', NULL, REPEAT('L', 30))",
    );
    refused_with("Data too long");
    s.sql_ok(
        &main_id,
        "strata_admin",
        "UPDATE shop.e SET k = 'abc', v = 'fit' WHERE k = 'Abc'",
    );
    s.sql_ok(
        &main_id,
        "strata_admin",
        "INSERT INTO shop.p VALUES (1000, 1.2345, NULL, 'a')",
    );
    refused_with("'price'");
    s.sql_ok(
        &main_id,
        "strata_admin",
        "UPDATE shop.p SET price = 1.23 WHERE id = 1000; UPDATE shop.p SET at = '2026-02-02 10:00:00.5' WHERE id = 5",
    );
    refused_with("`at`");
    s.sql_ok(
        &main_id,
        "strata_admin",
        "UPDATE shop.p SET at = '2026-02-02 10:00:01' WHERE id = 5; INSERT INTO shop.p VALUES (1001, 2, NULL, 'a label longer than ten characters')",
    );
    refused_with("Data too long");
    s.sql_ok(
        &main_id,
        "strata_admin",
        "UPDATE shop.p SET id = 1002, label = 'short' WHERE id = 1001; UPDATE shop.p SET label = 'trailing  ' WHERE id = 6",
    );
    // A misfit committed after the revert's first check, while the revert waits for the table:
    // caught at the swap, nothing reverted, and the window stays open.
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            s.sql_ok(
                &main_id,
                "strata_admin",
                "BEGIN; INSERT INTO shop.e VALUES ('race', 'open', NULL, 'longer than five'); DO SLEEP(1.5); COMMIT",
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        let refused = s.fails(&["deploy-request", "revert", "shop", "2"]);
        assert!(
            refused.contains("was not reverted") && refused.contains("Data too long"),
            "{refused}"
        );
        writer.join().unwrap();
    });
    let d = wait_state(&s, "2", &["complete_pending_revert"], 10);
    assert_eq!(d["revertable"], true, "{d}");
    s.sql_ok(
        &main_id,
        "strata_admin",
        "DELETE FROM shop.e WHERE k = 'race'",
    );
    s.ok(&["deploy-request", "revert", "shop", "2", "--wait"]);
    wait_state(&s, "2", &["complete_revert"], 120);
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT CONCAT_WS('|', id, price, at, label) FROM shop.p WHERE id IN (5, 6, 1000, 1001, 1002) ORDER BY id"
        )
        .trim(),
        "5|1.25|2026-02-02 10:00:01|l5\n6|1.50|2026-01-01 10:00:00|trailing  \n1000|1.23|a\n1002|2.00|short"
    );
    assert_eq!(
        s.sql_ok(&main_id, "strata_admin", "SELECT COUNT(*) FROM shop.p")
            .trim(),
        "202"
    );
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT GROUP_CONCAT(CONCAT_WS('|', k, s, d, v) ORDER BY k) FROM shop.e"
        )
        .trim(),
        "a|open|0.5|x,abc|open|fit,b|closed,x1|open,x2|open|1.5"
    );

    // Forward: a value the narrowed column would cut, written while the deploy waits in sync,
    // fails the apply (nothing swapped) instead of landing cut.
    let nar = new_branch(&s, "nar");
    s.sql_ok(
        &nar,
        "strata_admin",
        "ALTER TABLE shop.t MODIFY v VARCHAR(6) NOT NULL",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "nar",
        "--disable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "3"]);
    wait_state(&s, "3", &["pending_cutover"], 300);
    s.sql_ok(
        &main_id,
        "strata_admin",
        "UPDATE shop.t SET v = '0123456789' WHERE id = 7",
    );
    s.json(&["deploy-request", "apply", "shop", "3"]);
    let d = wait_state(&s, "3", &["complete_error"], 60);
    let error = d["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("table `t`") && error.contains("'v'") && !error.contains("strata_"),
        "{d}"
    );
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT v FROM shop.t WHERE id = 7"
        )
        .trim(),
        "0123456789"
    );
}

/// A primary key widened from `(user_id)` to `(user_id, tenant)`: in the revert window two rows
/// share `user_id`. The old table's rows are matched by both columns, so deleting one of them
/// never deletes the other's old row; a row the old key cannot hold blocks the revert until it
/// can.
#[test]
fn a_widened_primary_key_reverts_without_losing_rows() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.acct (user_id INT NOT NULL, tenant VARCHAR(10) NOT NULL, bal INT, PRIMARY KEY (user_id));
         INSERT INTO shop.acct VALUES (1, 't1', 100), (2, 't1', 200), (3, 't1', 300)",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let pk = new_branch(&s, "pk");
    s.sql_ok(
        &pk,
        "strata_admin",
        "ALTER TABLE shop.acct DROP PRIMARY KEY, ADD PRIMARY KEY (user_id, tenant)",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "pk",
        "--enable-auto-apply",
    ]);
    s.ok(&["deploy-request", "deploy", "shop", "1", "--wait"]);
    wait_state(&s, "1", &["complete_pending_revert"], 120);
    s.sql_ok(
        &main_id,
        "strata_admin",
        "INSERT INTO shop.acct VALUES (1, 't2', 150); DELETE FROM shop.acct WHERE user_id = 1 AND tenant = 't2';
         INSERT INTO shop.acct VALUES (2, 't2', 250); DELETE FROM shop.acct WHERE user_id = 2 AND tenant = 't1'",
    );
    let refused = s.fails(&["deploy-request", "revert", "shop", "1"]);
    assert!(refused.contains("Duplicate entry"), "{refused}");
    // Written again now that the old key can hold it: the revert goes ahead with every row.
    s.sql_ok(
        &main_id,
        "strata_admin",
        "UPDATE shop.acct SET bal = 251 WHERE user_id = 2 AND tenant = 't2'",
    );
    s.ok(&["deploy-request", "revert", "shop", "1", "--wait"]);
    wait_state(&s, "1", &["complete_revert"], 60);
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT GROUP_CONCAT(CONCAT_WS('|', user_id, tenant, bal) ORDER BY user_id) FROM shop.acct"
        )
        .trim(),
        "1|t1|100,2|t2|251,3|t1|300"
    );
}

/// A key of 0, which an application may write under `NO_AUTO_VALUE_ON_ZERO`, stays 0 through the
/// copy and through the mirroring back for a revert: the deployment's statements and triggers had
/// the server give the row the next auto-increment value instead (the copy failed as a mismatch,
/// or passed with the row renumbered; a revert brought a row written in its window back under
/// another id).
#[test]
fn a_key_of_zero_stays_zero_through_a_deploy_and_its_revert() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.z (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20) NOT NULL);
         SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO');
         INSERT INTO shop.z VALUES (0, 'zero'), (1, 'one'), (2, 'two')",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let dev = new_branch(&s, "dev");
    s.sql_ok(
        &dev,
        "strata_admin",
        "ALTER TABLE shop.z MODIFY v VARCHAR(40) NOT NULL",
    );
    s.json(&["deploy-request", "create", "shop", "dev"]);
    s.ok(&["deploy-request", "deploy", "shop", "1", "--wait"]);
    wait_state(&s, "1", &["complete_pending_revert"], 120);
    let rows = |s: &Strata| {
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT GROUP_CONCAT(CONCAT(id, '|', v) ORDER BY id) FROM shop.z",
        )
        .trim()
        .to_string()
    };
    assert_eq!(rows(&s), "0|zero,1|one,2|two", "after the deploy");
    s.sql_ok(
        &main_id,
        "strata_admin",
        "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO');
         DELETE FROM shop.z WHERE id = 0; INSERT INTO shop.z VALUES (0, 'zero again');
         UPDATE shop.z SET v = 'uno' WHERE id = 1",
    );
    s.ok(&["deploy-request", "revert", "shop", "1", "--wait"]);
    wait_state(&s, "1", &["complete_revert"], 60);
    assert_eq!(rows(&s), "0|zero again,1|uno,2|two", "after the revert");
}

/// Transactions that delete a row the copy has not reached yet and then insert one in the same
/// range (sysbench `oltp_read_write` does this), one after the other on eight connections, for the
/// whole deploy: none of them fails (a forward trigger's delete of a row missing from the shadow
/// took a gap lock there, and two such transactions waited for each other's gap: a deadlock), and
/// the deploy finishes while they run (they never leave the table free on their own).
#[test]
fn transactions_back_to_back_never_fail_and_never_stop_a_deploy() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN extra INT NULL",
    );
    s.json(&["deploy-request", "create", "shop", "dev"]);
    // The slowest copy: it still runs when the writers have been at it a while (the copy got
    // faster, and at 90 it was done within the wait below).
    s.json(&["database", "throttle", "shop", "95"]);
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.json(&["deploy-request", "progress", "shop", "1"])["rows_copied"]
        .as_u64()
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "the copy never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    const WRITERS: i64 = 8;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let opts = shop_opts(&s, &user, &pw);
            let stop = stop.clone();
            rt.spawn(async move {
                let mut conn = mysql_async::Conn::new(opts).await.expect("writer connects");
                let (mut ok, mut errors) = (0u64, Vec::new());
                let mut k: i64 = w + 1;
                while !stop.load(Ordering::Relaxed) {
                    // The upper half of the table, far from the copy; each writer its own rows.
                    k = (k * 7919 + 13) % (ROWS / 2 / WRITERS);
                    let id = ROWS / 2 + WRITERS * k + w + 1;
                    let r: Result<(), mysql_async::Error> = async {
                        let mut tx = conn.start_transaction(Default::default()).await?;
                        // Read, then write: the table is held from the first statement.
                        tx.exec_drop("SELECT n FROM t WHERE id = ?", (id,)).await?;
                        tx.exec_drop("DELETE FROM t WHERE id = ?", (id,)).await?;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        tx.exec_drop("INSERT INTO t (id, v, n) VALUES (?, 'again', ?)", (id, id))
                            .await?;
                        tx.commit().await
                    }
                    .await;
                    match r {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            errors.push(e.to_string());
                            if let Ok(c) = mysql_async::Conn::new(conn.opts().clone()).await {
                                conn = c;
                            }
                        }
                    }
                }
                (ok, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    let copied = s.json(&["deploy-request", "progress", "shop", "1"]);
    assert_eq!(
        copied["phase"], "copying",
        "the writers ran during the copy: {copied}"
    );
    // Honest progress in the middle of a copy: a share of the rows, and when the rest is done.
    let pct = copied["progress_percentage"].as_f64().unwrap_or(-1.0);
    assert!(pct > 0.0 && pct < 100.0, "{copied}");
    assert!(copied["eta_seconds"].is_u64(), "{copied}");
    assert!(
        copied["rows_copied"].as_u64() < copied["rows_total"].as_u64(),
        "{copied}"
    );
    // The rest of the deploy, the cut-over and the end of the revert window under the same load:
    // the table is never free between these transactions on its own; the gateway holds new ones
    // back for a moment when a step needs it free.
    s.json(&["deploy-request", "throttle", "shop", "1", "0"]);
    let done = wait_state(&s, "1", &["complete_pending_revert"], 120);
    s.json(&["deploy-request", "skip-revert", "shop", "1"]);
    // Its triggers are dropped under the same load (a failed try is retried by the worker).
    let closed = wait_state(&s, "1", &["complete"], 60);
    stop.store(true, Ordering::Relaxed);
    let (ok, errors) = join_writers(&rt, tasks);
    eprintln!(
        "transactions: {ok}; cut-over stall {} ms; revert window closed: {}",
        done["cutover_stall_ms"], closed["state"]
    );
    assert!(
        errors.is_empty(),
        "{} failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(ok > 200, "the writers wrote ({ok})");
    assert!(done["cutover_stall_ms"].as_u64().unwrap() <= 500, "{done}");
    assert_eq!(columns(&s, &main_id), "id,v,n,extra");
    // Every row is there once; the rewritten ones as written.
    let rows = s.sql_ok(
        &main_id,
        "strata_admin",
        "SELECT COUNT(*), SUM(id), SUM(n = id), SUM(v = 'again') > 0 FROM shop.t",
    );
    assert_eq!(
        rows.trim(),
        format!("{ROWS}\t{}\t{ROWS}\t1", ROWS * (ROWS + 1) / 2)
    );
    assert_no_artifacts(&s, &main_id, "after the revert window closed under load");
}

/// A new primary key over a column holding duplicates fails the deploy at once with the server's
/// words (the rows are copied by the old key, a unique key in the new table): it sat in the copy,
/// retried as if a transaction held the rows, forever.
#[test]
fn a_new_primary_key_over_duplicates_fails_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t DROP PRIMARY KEY, ADD PRIMARY KEY (v), ADD UNIQUE KEY uid (id)",
    );
    s.json(&["deploy-request", "create", "shop", "dev"]);
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    let d = wait_state(&s, "1", &["complete_error"], 60);
    let why = d["error"].as_str().unwrap_or_default();
    assert!(why.contains("Duplicate entry 'init'"), "{d}");
    assert_eq!(columns(&s, &main_id), "id,v,n");
    assert_no_artifacts(&s, &main_id, "after the failed deploy");
}

/// In the revert window, transactions that write a value the old schema cannot hold and then one
/// it can (each on its own row, eight at once) never fail: the reverse triggers record the row
/// and take the record back, and those records must not lock more than the row's own. Then the
/// revert goes through with every last value.
#[test]
fn records_of_rows_that_do_not_fit_never_deadlock_writers() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let (main_id, dev_id) = setup(&s);
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t MODIFY v VARCHAR(64) NOT NULL",
    );
    s.json(&["deploy-request", "create", "shop", "dev"]);
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["complete_pending_revert"], 120);
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..8i64)
        .map(|w| {
            let opts = shop_opts(&s, &user, &pw);
            let stop = stop.clone();
            rt.spawn(async move {
                let mut conn = mysql_async::Conn::new(opts).await.expect("writer connects");
                let (mut ok, mut errors) = (0u64, Vec::new());
                let id = 1000 + w;
                while !stop.load(Ordering::Relaxed) {
                    let r: Result<(), mysql_async::Error> = async {
                        let mut tx = conn.start_transaction(Default::default()).await?;
                        tx.exec_drop("UPDATE t SET v = ? WHERE id = ?", ("L".repeat(40), id))
                            .await?;
                        tx.exec_drop("UPDATE t SET v = ? WHERE id = ?", (format!("s{ok}"), id))
                            .await?;
                        tx.commit().await
                    }
                    .await;
                    match r {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            errors.push(e.to_string());
                            if let Ok(c) = mysql_async::Conn::new(conn.opts().clone()).await {
                                conn = c;
                            }
                        }
                    }
                }
                (ok, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    let (ok, errors) = join_writers(&rt, tasks);
    eprintln!("transactions in the revert window: {ok}");
    if !errors.is_empty() {
        let st = s.sql_ok(&main_id, "strata_root", "SHOW ENGINE INNODB STATUS");
        eprintln!("DEADLOCK {}", st.replace("\\n", "\n"));
    }
    assert!(
        errors.is_empty(),
        "{} failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(ok > 200, "the writers wrote ({ok})");
    // Every row fits the old schema again: the revert goes through.
    let r = s.json(&["deploy-request", "revert", "shop", "1"]);
    assert!(
        matches!(
            r["deployment"]["state"].as_str(),
            Some("in_progress_revert" | "complete_revert")
        ),
        "{r}"
    );
    wait_state(&s, "1", &["complete_revert"], 60);
    let long = s.sql_ok(
        &main_id,
        "strata_admin",
        "SELECT COUNT(*) FROM shop.t WHERE id BETWEEN 1000 AND 1007 AND v LIKE 's%'",
    );
    assert_eq!(long.trim(), "8");
}

/// A deploy adding a unique key, waiting to cut over while rows are updated through a moment where
/// two share a value and back to unique: the cut-over goes through with every row. The update's
/// mirror replaced the other row in the new table, and the cut-over failed as if rows were lost.
#[test]
fn updates_through_a_passing_duplicate_leave_a_new_unique_key_deployable() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let (main_id, _) = setup(&s);
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.u (id INT NOT NULL PRIMARY KEY, v VARCHAR(10) NOT NULL); INSERT INTO shop.u VALUES (1,'x'),(2,'y'),(3,'p'),(4,'q')",
    );
    let dev_id = new_branch(&s, "uniq");
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.u ADD UNIQUE KEY uv (v)",
    );
    s.json(&[
        "deploy-request",
        "create",
        "shop",
        "uniq",
        "--disable-auto-apply",
    ]);
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["pending_cutover"], 120);
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    let o = s.gateway_sql(
        &user,
        &pw,
        &["shop"],
        "UPDATE u SET v = 'y' WHERE id = 1; UPDATE u SET v = 'x' WHERE id = 1; UPDATE u SET v = 'q' WHERE id = 3; DELETE FROM u WHERE id = 3; INSERT INTO u VALUES (5, 'q'); UPDATE u SET v = 'q2' WHERE id = 5",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.json(&["deploy-request", "apply", "shop", "1"]);
    wait_state(&s, "1", &["complete_pending_revert"], 120);
    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT GROUP_CONCAT(id, v ORDER BY id) FROM shop.u"
        )
        .trim(),
        "1x,2y,4q,5q2"
    );
    // While a duplicate stands, the cut-over of another such deploy waits: recorded, not lost.
    let o = s.gateway_sql(&user, &pw, &["shop"], "UPDATE u SET v = 'y' WHERE id = 1");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Duplicate entry"),
        "the unique key is live now: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A client's transaction through the gateway, holding table `t` (a row inserted, not committed).
async fn hold_t(opts: mysql_async::Opts, id: i64) -> mysql_async::Conn {
    let mut c = mysql_async::Conn::new(opts).await.expect("client connects");
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop(format!("INSERT INTO t (id, v) VALUES ({id}, 'held')"))
        .await
        .unwrap();
    c
}

/// Waits until deploy request `number` of `shop` says its step is delayed by long-running
/// transactions; its deployment then.
fn wait_delayed(s: &Strata, number: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = s.json(&["deploy-request", "progress", "shop", number]);
        if d["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Migration delayed due to long-running transactions"))
            && d["delayed_since"].is_string()
        {
            return d;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(s.root.join("up.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!("never said it was delayed: {d}\n{}", tail.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the held transaction's client hears next, and that nothing of it was committed.
async fn told_it_ended(mut c: mysql_async::Conn) -> String {
    let next = c
        .query_drop("INSERT INTO t (id, v) VALUES (-1, 'after')")
        .await;
    let e = next
        .expect_err("the ended transaction's next statement fails")
        .to_string();
    let commit = c.query_drop("COMMIT").await;
    assert!(
        commit.is_err(),
        "COMMIT of an ended transaction: {commit:?}"
    );
    e
}

/// A preparation delayed by a long transaction says so, and once the transaction ends and the
/// copy runs, the delay is no longer reported (it stayed in the request's error through the copy
/// and the key build).
#[test]
fn a_delay_of_the_preparation_is_history_once_the_copy_runs() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.t (id INT NOT NULL PRIMARY KEY, v VARCHAR(32) NOT NULL) ENGINE=InnoDB;
         INSERT INTO shop.t SELECT seq, 'init' FROM seq_1_to_60000;",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    let dev = new_branch(&s, "dev");
    s.sql_ok(
        &dev,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN a INT NULL",
    );
    s.json(&["deploy-request", "create", "shop", "dev"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut held = rt.block_on(hold_t(shop_opts(&s, &user, &pw), -5));
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    // Slow enough to be seen copying.
    s.json(&["deploy-request", "throttle", "shop", "1", "90"]);
    wait_delayed(&s, "1");
    rt.block_on(held.query_drop("ROLLBACK")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let copying = loop {
        let d = s.json(&["deploy-request", "progress", "shop", "1"]);
        if d["phase"] == "copying" && d["rows_copied"].as_u64() > Some(0) {
            break d;
        }
        assert!(Instant::now() < deadline, "never seen copying: {d}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(copying["error"], Value::Null, "{copying}");
    assert_eq!(copying["delayed_since"], Value::Null, "{copying}");
    s.json(&["deploy-request", "throttle", "shop", "1", "0"]);
    wait_state(&s, "1", &["complete_pending_revert"], 120);
}

/// A deploy whose tables long-running transactions keep busy is delayed (and says so), then
/// forced: after `--force-cutover-after`, at once with the database's aggressive cut-over, or when
/// `force-cutover` is asked for. The transactions it ends are rolled back and their clients told.
#[test]
fn long_transactions_delay_a_deploy_until_its_cut_over_is_forced() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start_with(
        root.path(),
        "127.0.0.1:0",
        // Transactions outlive the gateway's own limit here: only a forced cut-over ends them.
        &[
            "--force-cutover-after",
            "20",
            "--transaction-timeout",
            "600",
        ],
    );
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.t (id INT NOT NULL PRIMARY KEY, v VARCHAR(32) NOT NULL) ENGINE=InnoDB;
         INSERT INTO shop.t SELECT seq, 'init' FROM seq_1_to_1000;
         CREATE TABLE shop.`T` (id INT NOT NULL PRIMARY KEY) ENGINE=InnoDB;",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let delayed = |number: &str| wait_delayed(&s, number);
    let request = |n: usize, column: &str| {
        let branch = format!("dev{n}");
        let dev_id = new_branch(&s, &branch);
        s.sql_ok(
            &dev_id,
            "strata_admin",
            &format!("ALTER TABLE shop.t ADD COLUMN {column} INT NULL"),
        );
        s.json(&["deploy-request", "create", "shop", &branch]);
    };

    // 1. Forced after waiting: `--force-cutover-after 20`.
    request(1, "a");
    let held = rt.block_on(hold_t(shop_opts(&s, &user, &pw), 5001));
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    let d = delayed("1");
    let said = d["error"].as_str().unwrap();
    assert!(
        said.contains("long-running transactions hold `t`") && !said.contains("~strata"),
        "{said}"
    );
    let t0 = Instant::now();
    let done = wait_state(&s, "1", &["complete_pending_revert"], 90);
    eprintln!(
        "forced after waiting: {:?} after the delay was reported",
        t0.elapsed()
    );
    assert!(
        t0.elapsed() > Duration::from_secs(8),
        "forced before its time"
    );
    assert!(done["ended_connections"].as_u64().unwrap() >= 1, "{done}");
    assert_eq!(done["error"], Value::Null, "{done}");
    assert_eq!(done["delayed_since"], Value::Null, "{done}");
    let told = rt.block_on(told_it_ended(held));
    assert!(
        told.contains("cut-over or revert needed table `t`")
            && told.contains("nothing of it was committed"),
        "{told} (delayed: {d})"
    );
    s.json(&["deploy-request", "skip-revert", "shop", "1"]);
    wait_state(&s, "1", &["complete"], 60);

    // 2. The database's aggressive cut-over: no waiting at all.
    let db = s.json(&["database", "update", "shop", "--aggressive-cutover", "true"]);
    assert_eq!(db["aggressive_cutover"], true, "{db}");
    request(2, "b");
    let held = rt.block_on(hold_t(shop_opts(&s, &user, &pw), 5002));
    // A transaction on `T`, another table than `t` on the server: left alone.
    let mut other_table = rt.block_on(async {
        let mut c = mysql_async::Conn::new(shop_opts(&s, &user, &pw))
            .await
            .unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("INSERT INTO `T` VALUES (1)").await.unwrap();
        c
    });
    // A session with state on its connection (a user variable) running a long query on `t`: its
    // state cannot survive, so its connection is closed after it is told.
    let opts = shop_opts(&s, &user, &pw);
    let stateful = rt.spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        c.query_drop("SET @mine = 7").await.unwrap();
        let first = c.query_drop("SELECT SLEEP(60) FROM t LIMIT 1").await;
        let next = c.query_drop("SELECT @mine").await;
        (first, next)
    });
    // And a long query outside any transaction.
    let opts = shop_opts(&s, &user, &pw);
    let query = rt.spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        c.query_drop("SELECT SLEEP(60) FROM t LIMIT 1").await
    });
    // A transaction whose next text commits it implicitly (`BEGIN` again) before a long query:
    // whether it was committed is not "nothing", it is unknown to the client.
    let opts = shop_opts(&s, &user, &pw);
    let implicit = rt.spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("INSERT INTO t (id, v) VALUES (5100, 'implicit')")
            .await
            .unwrap();
        c.query_drop("BEGIN; SELECT SLEEP(60) FROM t LIMIT 1").await
    });
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    s.json(&["deploy-request", "deploy", "shop", "2", "--wait"]);
    let took = t0.elapsed();
    let done = wait_state(&s, "2", &["complete_pending_revert"], 5);
    assert!(done["ended_connections"].as_u64().unwrap() >= 2, "{done}");
    assert!(
        took < Duration::from_secs(20),
        "aggressive cut-over took {took:?}"
    );
    let told = rt.block_on(told_it_ended(held));
    assert!(told.contains("forced cut-over"), "{told}");
    let query = rt.block_on(query).unwrap();
    assert!(
        query.as_ref().is_err_and(|e| e
            .to_string()
            .contains("query ended: a deploy request's cut-over")),
        "{query:?}"
    );
    let implicit = rt.block_on(implicit).unwrap();
    assert!(
        implicit.as_ref().is_err_and(|e| {
            let e = e.to_string();
            e.contains("unknown") && !e.contains("nothing of it was committed")
        }),
        "{implicit:?}"
    );
    let (first, next) = rt.block_on(stateful).unwrap();
    assert!(
        first
            .as_ref()
            .is_err_and(|e| e.to_string().contains("so this connection is closed")),
        "{first:?}"
    );
    assert!(
        next.is_err(),
        "the stateful session went on without its state: {next:?}"
    );
    rt.block_on(async {
        other_table
            .query_drop("INSERT INTO `T` VALUES (2)")
            .await
            .unwrap();
        other_table.query_drop("COMMIT").await.unwrap();
    });
    assert_eq!(
        s.sql_ok(&main_id, "strata_admin", "SELECT COUNT(*) FROM shop.`T`")
            .trim(),
        "2"
    );
    s.json(&["deploy-request", "skip-revert", "shop", "2"]);
    wait_state(&s, "2", &["complete"], 60);
    s.json(&[
        "database",
        "update",
        "shop",
        "--aggressive-cutover",
        "false",
    ]);

    // 3. `force-cutover` on a delayed request: at once, in the middle of the step's try (the
    //    platform's 20 s are not reached).
    request(3, "c");
    let held = rt.block_on(hold_t(shop_opts(&s, &user, &pw), 5003));
    s.json(&["deploy-request", "deploy", "shop", "3"]);
    delayed("3");
    let t0 = Instant::now();
    let forced = s.json(&["deploy-request", "force-cutover", "shop", "3"]);
    assert!(
        forced["deployment"]["force_cutover_requested_at"].is_string(),
        "{forced}"
    );
    wait_state(&s, "3", &["complete_pending_revert"], 60);
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "forced in {:?}",
        t0.elapsed()
    );
    rt.block_on(told_it_ended(held));
    // The force was for that cut-over: a revert waits for a transaction holding `t`, ending
    // nobody. It is under way, delayed, and said so; it finishes once the transaction ends, and
    // the branch's change shows in its diff again (a revert the worker finished left the branch
    // with no changes, and a rebase then took them from it).
    let mut holder = rt.block_on(hold_t(shop_opts(&s, &user, &pw), 5004));
    let revert = s.cli(&["deploy-request", "revert", "shop", "3"]);
    let said = String::from_utf8_lossy(&revert.stdout).to_string();
    assert!(
        revert.status.success() && said.contains("is being reverted"),
        "{revert:?}"
    );
    let d = delayed("3");
    assert_eq!(d["state"], "in_progress_revert", "{d}");
    std::thread::sleep(Duration::from_secs(2));
    rt.block_on(async {
        holder.query_drop("ROLLBACK").await.unwrap();
        holder.disconnect().await.unwrap();
    });
    wait_state(&s, "3", &["complete_revert"], 60);
    let diff = s.cli(&["branch", "diff", "shop", "dev3"]);
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains("`c`"),
        "the branch's change is its own again: {diff:?}"
    );
    // 4. An instant deploy waits for a long transaction without holding the table's writers (its
    //    ALTER, queued behind the transaction, held them all for as long).
    request(4, "d");
    let held = rt.block_on(hold_t(shop_opts(&s, &user, &pw), 5005));
    let opts = shop_opts(&s, &user, &pw);
    let writing = Arc::new(AtomicBool::new(true));
    let still = writing.clone();
    let writer = rt.spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        let (mut longest, mut n) = (Duration::ZERO, 0u32);
        while still.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            c.query_drop("UPDATE t SET v = 'w' WHERE id = 7")
                .await
                .unwrap();
            longest = longest.max(t0.elapsed());
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (longest, n)
    });
    s.json(&["deploy-request", "deploy", "shop", "4", "--instant"]);
    // Long enough for the deploy to reach its ALTER, short of its 10 s budget.
    std::thread::sleep(Duration::from_secs(7));
    rt.block_on(async {
        let mut held = held;
        held.query_drop("COMMIT").await.unwrap();
    });
    wait_state(&s, "4", &["complete"], 60);
    writing.store(false, Ordering::Relaxed);
    let (longest, writes) = rt.block_on(writer).unwrap();
    assert!(writes > 20, "{writes}");
    assert!(
        longest < Duration::from_millis(1500),
        "a writer waited {longest:?} behind the instant deploy"
    );
    // 5. Asked for in the revert window, a force is for the revert: it ends the transaction in
    //    its way.
    request(5, "e");
    s.ok(&["deploy-request", "deploy", "shop", "5", "--wait"]);
    let held = rt.block_on(hold_t(shop_opts(&s, &user, &pw), 5006));
    s.json(&["deploy-request", "force-cutover", "shop", "5"]);
    s.json(&["deploy-request", "revert", "shop", "5"]);
    wait_state(&s, "5", &["complete_revert"], 60);
    let told = rt.block_on(told_it_ended(held));
    assert!(told.contains("nothing of it was committed"), "{told}");
    // A request not being deployed has no cut-over to force.
    let refused = s.cli(&["deploy-request", "force-cutover", "shop", "1"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no cut-over to force"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    assert_eq!(
        s.sql_ok(
            &main_id,
            "strata_admin",
            "SELECT COUNT(*), MAX(id) FROM shop.t"
        )
        .trim(),
        "1002\t5100",
        "no row of an ended transaction was committed (the one committed is there)"
    );
    assert_eq!(columns(&s, &main_id), "id,v,a,b,d");
    let d = s.json(&["deploy-request", "progress", "shop", "3"]);
    assert_eq!(d["state"], "complete_revert", "{d}");
}

/// Foreign keys hold through deploys and reverts of a parent and of a child, under writers: a
/// parent whose child has a child of its own is refused (1451) at every moment, one without is
/// deleted with its children (the cascade), a parent and its child inserted in one transaction
/// always go in, and no row is ever left without its parent.
#[test]
fn foreign_keys_hold_through_deploys_and_reverts_under_writers() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.json(&["database", "update", "shop", "--allow-foreign-keys", "true"]);
    s.sql_ok(
        &main_id,
        "strata_admin",
        "USE shop;
         CREATE TABLE users (id BIGINT PRIMARY KEY, n INT NOT NULL DEFAULT 0);
         CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, KEY (user_id), CONSTRAINT fk_orders_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE ON UPDATE CASCADE);
         CREATE TABLE items (id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL, KEY (order_id), CONSTRAINT fk_items_order FOREIGN KEY (order_id) REFERENCES orders (id));
         INSERT INTO users SELECT seq, 0 FROM seq_1_to_60000;
         INSERT INTO orders SELECT seq, seq FROM seq_1_to_60000;
         INSERT INTO items SELECT seq, seq FROM seq_1_to_3000;
         CREATE TABLE sessions (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE);
         INSERT INTO sessions SELECT seq, seq FROM seq_1_to_60000;",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let schema_before = schema_of(&s, "main");
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    let opts = shop_opts(&s, &user, &pw);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // (parents deleted though a grandchild holds them, errors, parents deleted as they may be)
    let writer = {
        let (opts, stop) = (opts.clone(), stop.clone());
        rt.spawn(async move {
            let mut c = mysql_async::Conn::new(opts).await.expect("writer connects");
            let (mut wrongly, mut errors, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
            let (mut held, mut free, mut fresh) = (1i64, 3001i64, 100_000i64);
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) && free <= 60_000 {
                rounds += 1;
                // Held by an item through its order: refused, deploy or not.
                match c.exec_drop("DELETE FROM users WHERE id = ?", (held,)).await {
                    // Refused naming the application's tables only.
                    Err(mysql_async::Error::Server(e))
                        if e.code == 1451 && !e.message.contains("strata_") => {}
                    Err(e) => errors.push(format!("delete {held}: {e}")),
                    Ok(()) => wrongly.push(held),
                }
                held = held % 3000 + 1;
                // Nothing below its order: deleted, and its order with it.
                match c.exec_drop("DELETE FROM users WHERE id = ?", (free,)).await {
                    Ok(()) if c.affected_rows() == 1 => deleted.push(free),
                    Ok(()) => errors.push(format!("delete {free}: no row")),
                    Err(e) => errors.push(format!("delete {free}: {e}")),
                }
                free += 1;
                // A parent and its child in one transaction.
                fresh += 1;
                let r: Result<(), mysql_async::Error> = async {
                    let mut tx = c.start_transaction(Default::default()).await?;
                    tx.exec_drop("INSERT INTO users (id) VALUES (?)", (fresh,))
                        .await?;
                    tx.exec_drop("INSERT INTO orders VALUES (?, ?)", (fresh, fresh))
                        .await?;
                    tx.commit().await
                }
                .await;
                if let Err(e) = r {
                    errors.push(format!("insert {fresh}: {e}"));
                }
            }
            eprintln!("writer: {rounds} rounds");
            (wrongly, errors, deleted)
        })
    };
    // A parent changed online and reverted, then a child.
    for (branch, sql) in [
        (
            "parent",
            "ALTER TABLE shop.users ADD COLUMN note VARCHAR(20) NULL",
        ),
        ("child", "ALTER TABLE shop.items ADD COLUMN qty INT NULL"),
    ] {
        let id = new_branch(&s, branch);
        s.sql_ok(&id, "strata_admin", sql);
        let r = s.json(&["deploy-request", "create", "shop", branch]);
        assert!(
            !r["warnings"].to_string().contains("cannot be reverted"),
            "{branch}: {r}"
        );
        let n = r["number"].to_string();
        s.ok(&["deploy-request", "deploy", "shop", &n, "--wait"]);
        s.ok(&["deploy-request", "revert", "shop", &n, "--wait"]);
    }
    stop.store(true, Ordering::Relaxed);
    let (wrongly, errors, deleted) = rt.block_on(writer).unwrap();
    assert!(
        wrongly.is_empty(),
        "parents deleted past a key: {wrongly:?}"
    );
    assert!(errors.is_empty(), "the writer saw errors: {errors:?}");
    assert!(!deleted.is_empty());
    let orphans = s.sql_ok(
        &main_id,
        "strata_admin",
        "SELECT (SELECT COUNT(*) FROM shop.orders o LEFT JOIN shop.users u ON u.id = o.user_id WHERE u.id IS NULL), (SELECT COUNT(*) FROM shop.items i LEFT JOIN shop.orders o ON o.id = i.order_id WHERE o.id IS NULL), (SELECT COUNT(*) FROM shop.users WHERE id <= 3000)",
    );
    let counts: Vec<&str> = orphans.lines().last().unwrap().split('\t').collect();
    assert_eq!(counts, ["0", "0", "3000"], "orphans, orphans, held parents");
    // Reverted both: the schema as it was, to the names of the keys the server made for the
    // foreign keys.
    assert_eq!(schema_of(&s, "main"), schema_before);
    let sessions = s.sql_ok(
        &main_id,
        "strata_admin",
        "SELECT COUNT(*) FROM shop.sessions x LEFT JOIN shop.users u ON u.id = x.user_id WHERE u.id IS NULL",
    );
    assert_eq!(
        sessions.lines().last(),
        Some("0"),
        "sessions without a user"
    );
    for t in ["users", "orders", "items"] {
        let create = s.sql_ok(
            &main_id,
            "strata_admin",
            &format!("SHOW CREATE TABLE shop.{t}"),
        );
        assert!(!create.contains("strata_"), "{create}");
    }
    assert_no_artifacts(&s, &main_id, "after the deploys and reverts");
    // A request whose branch is gone still says how its deployment ended.
    s.ok(&["branch", "delete", "shop", "parent", "--force"]);
    let shown = s.json(&["deploy-request", "show", "shop", "1"]);
    assert_eq!(shown["deployment_state"], "complete_revert", "{shown}");
}

/// An in-place change the server can make only by rebuilding the table while holding its writers
/// (a column type change on a table whose foreign key cascades) is refused before anything is
/// queued when the table is large, with the server's reason, and said as a warning when it is
/// small.
#[test]
fn an_in_place_change_that_would_hold_writers_is_refused_before_it_is_queued() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.json(&["database", "update", "shop", "--allow-foreign-keys", "true"]);
    s.sql_ok(
        &main_id,
        "strata_admin",
        "USE shop;
         CREATE TABLE users (id BIGINT PRIMARY KEY);
         CREATE TABLE big (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, note VARCHAR(20) NULL, KEY (user_id), CONSTRAINT fk_big FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE);
         CREATE TABLE small (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, note VARCHAR(20) NULL, KEY (user_id), CONSTRAINT fk_small FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE);
         INSERT INTO users SELECT seq FROM seq_1_to_30000;
         INSERT INTO big SELECT seq, seq, '7' FROM seq_1_to_30000;
         INSERT INTO small SELECT seq, seq, '7' FROM seq_1_to_50;
         ANALYZE TABLE big, small;",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let before = schema_of(&s, "main");
    let id = |name: &str| new_branch(&s, name);
    let (big, small) = (id("big"), id("small"));
    s.sql_ok(
        &big,
        "strata_admin",
        "ALTER TABLE shop.big MODIFY note BIGINT NULL",
    );
    let r = s.json(&["deploy-request", "create", "shop", "big"]);
    assert_eq!(r["deployment_state"], "error", "{r}");
    let problems = r["problems"].to_string();
    assert!(
        problems.contains("the change to `big` cannot be made online")
            && problems.contains("Cannot change column type"),
        "refused with the server's reason: {r}"
    );
    let o = s.cli(&["deploy-request", "deploy", "shop", "1", "--wait"]);
    assert!(!o.status.success(), "deployed: {r}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot be made online"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(schema_of(&s, "main"), before, "nothing was changed");
    // The same change of a small table is deployable, and said.
    s.sql_ok(
        &small,
        "strata_admin",
        "ALTER TABLE shop.small MODIFY note BIGINT NULL",
    );
    let r = s.json(&["deploy-request", "create", "shop", "small"]);
    assert_eq!(r["deployment_state"], "ready", "{r}");
    assert!(
        r["warnings"]
            .to_string()
            .contains("the change to `small` cannot be made online"),
        "said, as a warning: {r}"
    );
    s.ok(&["deploy-request", "deploy", "shop", "2", "--wait"]);
    let create = s.sql_ok(&main_id, "strata_admin", "SHOW CREATE TABLE shop.small");
    assert!(create.contains("`note` bigint"), "{create}");
    let scratch = s.sql_ok(
        &main_id,
        "strata_root",
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '%probe%'",
    );
    assert_eq!(
        scratch.lines().last(),
        Some("0"),
        "the scratch database is gone"
    );
}

/// A deploy's preparation cut short (a long transaction holds one of its tables) is done again
/// later, while writers use prepared statements on the tables it had already prepared: none of
/// them fails (the tables the first try's triggers wrote to were dropped and made again, and
/// statements compiled with those triggers failed with "Table … doesn't exist" meanwhile: a race
/// this test does not always meet, seen under heavier load with foreign keys).
#[test]
fn a_preparation_done_again_never_fails_prepared_statements() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.a1 (id INT PRIMARY KEY, n INT NOT NULL);
         CREATE TABLE shop.t (id INT NOT NULL PRIMARY KEY, v VARCHAR(32) NOT NULL);
         INSERT INTO shop.a1 SELECT seq, 0 FROM seq_1_to_1000;
         INSERT INTO shop.t SELECT seq, 'init' FROM seq_1_to_1000;",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let dev = new_branch(&s, "dev");
    s.sql_ok(
        &dev,
        "strata_admin",
        "ALTER TABLE shop.a1 ADD COLUMN x INT NULL; ALTER TABLE shop.t ADD COLUMN x INT NULL",
    );
    s.json(&["deploy-request", "create", "shop", "dev"]);
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..3i64)
        .map(|w| {
            let opts = shop_opts(&s, &user, &pw);
            let stop = stop.clone();
            rt.spawn(async move {
                let mut c = mysql_async::Conn::new(opts).await.expect("writer connects");
                let (mut ok, mut errors) = (0u64, Vec::new());
                let mut k = w;
                while !stop.load(Ordering::Relaxed) {
                    k = (k + 3) % 1000;
                    // Server-side prepared statements (the binary protocol).
                    let r = c
                        .exec_drop("UPDATE a1 SET n = n + 1 WHERE id = ?", (k + 1,))
                        .await;
                    match r {
                        Ok(()) => ok += 1,
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (ok, errors)
            })
        })
        .collect();
    // `t` is held by a transaction: the preparation stops at it, after `a1`'s triggers.
    let held = rt.block_on(hold_t(shop_opts(&s, &user, &pw), 5001));
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_delayed(&s, "1");
    rt.block_on(async {
        let mut held = held;
        held.query_drop("ROLLBACK").await.unwrap();
    });
    wait_state(&s, "1", &["complete_pending_revert"], 120);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (ok, errors) = join_writers(&rt, tasks);
    assert!(ok > 100, "{ok}");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(columns(&s, &main_id), "id,v,x");
}

/// A request with a table changed in place and one swapped, whose swap waits for a long
/// transaction: the cut-over is tried again and goes through (it had failed saying nothing was
/// deployed, with the in-place change made).
#[test]
fn a_cut_over_tried_again_after_its_in_place_changes_goes_through() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.json(&["database", "update", "shop", "--allow-foreign-keys", "true"]);
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.users (id INT PRIMARY KEY);
         CREATE TABLE shop.orders (id INT PRIMARY KEY, user_id INT NOT NULL, note VARCHAR(20) NULL, KEY (user_id), CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE);
         CREATE TABLE shop.t (id INT NOT NULL PRIMARY KEY, v VARCHAR(32) NOT NULL);
         INSERT INTO shop.users SELECT seq FROM seq_1_to_100;
         INSERT INTO shop.orders SELECT seq, seq, 'n' FROM seq_1_to_100;
         INSERT INTO shop.t SELECT seq, 'init' FROM seq_1_to_100;",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let dev = new_branch(&s, "dev");
    s.sql_ok(
        &dev,
        "strata_admin",
        "ALTER TABLE shop.orders ADD INDEX idx_note (note); ALTER TABLE shop.t ADD COLUMN x INT NULL",
    );
    let wanted = schema_of(&s, "dev");
    let r = s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--disable-auto-apply",
    ]);
    assert!(
        r["warnings"]
            .to_string()
            .contains("cannot be reverted: `orders` is changed in place"),
        "{r}"
    );
    s.json(&["deploy-request", "deploy", "shop", "1"]);
    wait_state(&s, "1", &["pending_cutover"], 120);
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let held = rt.block_on(hold_t(shop_opts(&s, &user, &pw), 5001));
    s.json(&["deploy-request", "apply", "shop", "1"]);
    wait_delayed(&s, "1");
    // The in-place change is made by now; the swap waits.
    std::thread::sleep(Duration::from_secs(2));
    rt.block_on(async {
        let mut held = held;
        held.query_drop("ROLLBACK").await.unwrap();
    });
    let d = wait_state(
        &s,
        "1",
        &["complete", "complete_pending_revert", "complete_error"],
        120,
    );
    assert_ne!(d["state"], "complete_error", "{d}");
    assert_eq!(schema_of(&s, "main"), wanted);
}

/// A revert of foreign-key tables (run with nothing of the application running) waits for a
/// transaction holding a table it swaps, and is forced through when asked: the transaction is
/// ended and its client told (a step alone could not be forced: it waited for good).
#[test]
fn a_revert_of_foreign_key_tables_is_forced_past_a_long_transaction() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.json(&["database", "update", "shop", "--allow-foreign-keys", "true"]);
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.users (id INT PRIMARY KEY);
         CREATE TABLE shop.t (id INT NOT NULL PRIMARY KEY, v VARCHAR(32) NOT NULL, user_id INT NULL, KEY (user_id), CONSTRAINT fk_t_user FOREIGN KEY (user_id) REFERENCES users (id));
         INSERT INTO shop.users SELECT seq FROM seq_1_to_100;
         INSERT INTO shop.t SELECT seq, 'init', seq FROM seq_1_to_100;",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let dev = new_branch(&s, "dev");
    s.sql_ok(
        &dev,
        "strata_admin",
        "ALTER TABLE shop.t ADD COLUMN x INT NULL",
    );
    let r = s.json(&["deploy-request", "create", "shop", "dev"]);
    assert!(
        !r["warnings"].to_string().contains("cannot be reverted"),
        "{r}"
    );
    s.ok(&["deploy-request", "deploy", "shop", "1", "--wait"]);
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let held = rt.block_on(hold_t(shop_opts(&s, &user, &pw), 5001));
    let revert = s.cli(&["deploy-request", "revert", "shop", "1"]);
    assert!(revert.status.success(), "{revert:?}");
    let d = s.json(&["deploy-request", "progress", "shop", "1"]);
    assert_eq!(d["state"], "in_progress_revert", "{d}");
    let t0 = Instant::now();
    s.json(&["deploy-request", "force-cutover", "shop", "1"]);
    wait_state(&s, "1", &["complete_revert"], 60);
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    let told = rt.block_on(told_it_ended(held));
    assert!(told.contains("nothing of it was committed"), "{told}");
    assert_eq!(columns(&s, &main_id), "id,v,user_id");
    // Dropping a child table: what a revert would bring back is said before the deploy.
    let gone = new_branch(&s, "gone");
    s.sql_ok(&gone, "strata_admin", "DROP TABLE shop.t");
    let r = s.json(&["deploy-request", "create", "shop", "gone"]);
    assert!(
        r["warnings"]
            .to_string()
            .contains("Table `t` has foreign keys: a revert of this deploy brings its rows back"),
        "{r}"
    );
}

/// A deploy waiting for a long transaction when an earlier deploy into the same branch is
/// reverted fails at once, saying why, and ends nobody's transaction (it waited, then forced its
/// step, and only then failed).
#[test]
fn a_deploy_planned_before_a_revert_fails_at_once_ending_nobody() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.a (id INT PRIMARY KEY);
         CREATE TABLE shop.t (id INT NOT NULL PRIMARY KEY, v VARCHAR(32) NOT NULL);
         INSERT INTO shop.a SELECT seq FROM seq_1_to_100;
         INSERT INTO shop.t SELECT seq, 'init' FROM seq_1_to_100;",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let branch = |name: &str, sql: &str| {
        let id = new_branch(&s, name);
        s.sql_ok(&id, "strata_admin", sql);
        s.json(&["deploy-request", "create", "shop", name]);
    };
    branch("one", "ALTER TABLE shop.a ADD COLUMN y INT NULL");
    s.ok(&["deploy-request", "deploy", "shop", "1", "--wait"]);
    branch("two", "ALTER TABLE shop.t ADD COLUMN x INT NULL");
    let (user, pw, _) = password(&s, "shop", "main", "readwriter");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut held = rt.block_on(hold_t(shop_opts(&s, &user, &pw), 5001));
    s.json(&["deploy-request", "deploy", "shop", "2"]);
    wait_delayed(&s, "2");
    s.ok(&["deploy-request", "revert", "shop", "1", "--wait"]);
    let d = wait_state(&s, "2", &["complete_error"], 30);
    assert!(
        d["error"]
            .to_string()
            .contains("deploy request #1 was reverted"),
        "{d}"
    );
    rt.block_on(async {
        held.query_drop("COMMIT")
            .await
            .expect("the transaction was left alone");
    });
    assert_eq!(columns(&s, &main_id), "id,v");
}
