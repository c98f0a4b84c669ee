//! Arming and removing a deployment's triggers on a real `mariadbd` while writers hammer the table
//! with prepared statements (what drivers send): not one write may fail. Creating triggers without
//! holding the table lock fails such writes with "Table '…_shadow' doesn't exist" (MDEV-26048).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_engine::mysql_async::prelude::Queryable;
use strata_engine::mysql_async::Conn;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_come_and_go_without_failing_a_prepared_write() {
    let bins = Arc::new(ServerBinaries::detect().expect("mariadbd installed"));
    let root = tempfile::tempdir().unwrap();
    let tpl = template::ensure_template(&bins, root.path()).unwrap();
    let spec = InstanceSpec {
        id: "p1".into(),
        dir: root.path().join("instances/p1"),
        schema: "shop".into(),
        production: true,
        port: strata_engine::supervisor::pick_port().unwrap(),
        server_id: 12,
    };
    provision(&spec, &tpl).unwrap();
    let inst = Instance::start(bins.clone(), spec.clone()).unwrap();
    inst.wait_ready(Duration::from_secs(60)).await.unwrap();
    let opts = inst.opts(
        &Role::Admin.internal_user(),
        inst.credentials().password(Role::Admin),
    );
    let mut admin = Conn::new(opts.clone()).await.unwrap();
    admin
        .query_drop("CREATE TABLE t (id BIGINT NOT NULL, v VARCHAR(50) NOT NULL, n INT NOT NULL, PRIMARY KEY (id))")
        .await
        .unwrap();
    admin
        .query_drop(format!(
            "INSERT INTO t SELECT seq, 'init', seq FROM seq_1_to_{ROWS}"
        ))
        .await
        .unwrap();
    let (_, before): (String, String) = admin
        .query_first("SHOW CREATE TABLE t")
        .await
        .unwrap()
        .unwrap();
    let after = before.replace(
        "`n` int(11) NOT NULL,",
        "`n` int(11) NOT NULL,\n  `extra` int(11) DEFAULT NULL,",
    );
    assert_ne!(before, after);
    let (a, b) = (schema(&before), schema(&after));
    let plan = strata_deploy::plan("0000c0de", &a, &b, &changes(&a, &b).unwrap()).unwrap();

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
    let mut deploy = Conn::new(inst.admin_opts()).await.unwrap();
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
        .query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME LIKE '\\_strata\\_%' UNION ALL SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'shop'")
        .await
        .unwrap();
    assert!(left.is_empty(), "artifacts left: {left:?}");
    drop(admin);
    drop(deploy);
    inst.stop().await;
}
