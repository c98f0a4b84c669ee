//! Backups, restores and snapshots against real `mariadbd` instances and Debian's `mariadb-backup`,
//! with writes running throughout.

use mysql_async::prelude::Queryable;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use strata_engine::backup::{self, BackupTools, SnapshotMethod, Validation};
use strata_engine::supervisor::{
    datadir_of, pick_port, prepare_instance_dir, provision, InstanceSpec,
};
use strata_engine::{template, Instance, ServerBinaries};

fn spec(root: &Path, id: &str, production: bool) -> InstanceSpec {
    InstanceSpec {
        id: id.into(),
        dir: root.join("instances").join(id),
        schema: "shop".into(),
        production,
        safe_migrations: false,
        port: pick_port().unwrap(),
        server_id: 7,
    }
}

/// A running production instance with `orders` holding ids 1..=20000, and a connection to it.
async fn source(
    bins: &Arc<ServerBinaries>,
    root: &Path,
    id: &str,
) -> (Arc<Instance>, mysql_async::Conn) {
    let tpl = template::ensure_template(bins, root).unwrap();
    let src_spec = spec(root, id, true);
    provision(&src_spec, &tpl).unwrap();
    let src = Instance::start(bins.clone(), src_spec).unwrap();
    src.wait_ready(Duration::from_secs(60)).await.unwrap();
    let mut c = src.connect().await.unwrap();
    c.query_drop("CREATE TABLE orders (id BIGINT PRIMARY KEY, note TEXT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO orders SELECT seq, REPEAT('y', 200) FROM seq_1_to_20000")
        .await
        .unwrap();
    (src, c)
}

/// Inserts rows one autocommit at a time until stopped; `acked` is the highest id the server has
/// acknowledged (ids are sequential, so every id up to it is committed).
fn start_writer(
    inst: &Instance,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicI64>,
) -> tokio::task::JoinHandle<i64> {
    let opts = inst.admin_opts();
    tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        let mut id: i64 = acked.load(Ordering::SeqCst);
        while !stop.load(Ordering::SeqCst) {
            id += 1;
            c.exec_drop(
                "INSERT INTO orders (id, note) VALUES (?, REPEAT('x', 200))",
                (id,),
            )
            .await
            .unwrap();
            acked.store(id, Ordering::SeqCst);
            if id % 100 == 0 {
                // Deletes too, so the row events carry both directions.
                c.exec_drop("DELETE FROM orders WHERE id = ?", (id - 50,))
                    .await
                    .unwrap();
            }
        }
        id
    })
}

async fn ids(inst: &Instance) -> Vec<i64> {
    let mut c = inst.connect().await.unwrap();
    c.query("SELECT id FROM orders ORDER BY id").await.unwrap()
}

/// Every id up to `upto` that the writer did not delete is present.
fn assert_has_all(ids: &[i64], upto: i64) {
    let set: std::collections::HashSet<_> = ids.iter().copied().collect();
    for id in 1..=upto {
        let deleted = id > 50 && (id + 50) % 100 == 0;
        assert!(
            deleted || set.contains(&id),
            "row {id} acknowledged before the backup point is missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_writes_restores_every_committed_row_and_validation_catches_corruption() {
    let bins = Arc::new(ServerBinaries::detect().expect("mariadbd installed"));
    let tools = BackupTools::detect().expect("mariadb-backup installed");
    let root = tempfile::tempdir().unwrap();
    let (src, mut c) = source(&bins, root.path(), "src").await;
    c.query_drop("CREATE TABLE empty_one (id INT PRIMARY KEY)")
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicI64::new(20000));
    let writer = start_writer(&src, stop.clone(), acked.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = acked.load(Ordering::SeqCst);
    let store = backup::BackupStore::local(root.path().join("backups"));
    let target = root.path().join("backups/b1");
    let phases = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = phases.clone();
    let manifest = backup::take_backup(&tools, &src, &bins.version, &target, &move |p| {
        let mut s = seen.lock().unwrap();
        if s.last() != Some(&p.phase) {
            s.push(p.phase.clone());
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let last = writer.await.unwrap();
    assert!(
        last > before + 10,
        "writes went on during the backup ({before} → {last})"
    );
    let phases = phases.lock().unwrap().clone();
    assert!(
        phases.contains(&"copying".to_string()) && phases.contains(&"preparing".to_string()),
        "{phases:?}"
    );

    // Counts at the backup point: at least every row acknowledged before it started.
    let tables = manifest.tables.clone().expect("counts recorded");
    assert_eq!(tables["empty_one"], 0);
    assert!(
        tables["orders"] >= before - before / 100,
        "{} vs {before}",
        tables["orders"]
    );
    assert!(
        manifest.binlog_position.is_some() && manifest.gtid.is_some(),
        "{manifest:?}"
    );
    assert!(manifest.bytes > 1_000_000);

    // Restore on a scratch instance: it opens, counts match, nothing acknowledged before is lost.
    let scratch = spec(root.path(), "scratch", false);
    assert_eq!(
        backup::validate(
            bins.clone(),
            &store,
            "b1",
            scratch.clone(),
            &manifest,
            &|_| {}
        )
        .await,
        Validation::Passed
    );
    let restored_spec = spec(root.path(), "restored", false);
    prepare_instance_dir(&restored_spec).unwrap();
    backup::restore_into(&target, &datadir_of(&restored_spec)).unwrap();
    let restored = Instance::start(bins.clone(), restored_spec).unwrap();
    restored.wait_ready(Duration::from_secs(60)).await.unwrap();
    let got = ids(&restored).await;
    assert_eq!(got.len() as i64, tables["orders"]);
    assert_has_all(&got, before);
    // The restored instance works as a branch: its role users were made afresh.
    let rw = strata_model::Role::Readwriter;
    let mut app = mysql_async::Conn::new(
        restored.opts(&rw.internal_user(), restored.credentials().password(rw)),
    )
    .await
    .unwrap();
    app.query_drop("INSERT INTO orders (id, note) VALUES (-1, 'after restore')")
        .await
        .unwrap();
    drop(app);
    restored.stop().await;

    // Wrong counts are caught.
    let mut wrong = manifest.clone();
    wrong
        .tables
        .as_mut()
        .unwrap()
        .insert("orders".into(), tables["orders"] + 1);
    match backup::validate(bins.clone(), &store, "b1", scratch.clone(), &wrong, &|_| {}).await {
        Validation::Failed(why) => assert!(why.contains("`orders`"), "{why}"),
        Validation::Passed => panic!("a count mismatch passed validation"),
    }
    // A corrupted data file is caught.
    let ibd = target.join("shop/orders.ibd");
    let mut bytes = std::fs::read(&ibd).unwrap();
    // Pages 3.. hold the clustered index's root and first leaves.
    for b in &mut bytes[3 * 16384..8 * 16384] {
        *b ^= 0x5a;
    }
    std::fs::write(&ibd, bytes).unwrap();
    match backup::validate(bins.clone(), &store, "b1", scratch, &manifest, &|_| {}).await {
        Validation::Failed(why) => eprintln!("corruption caught: {why}"),
        Validation::Passed => panic!("a corrupted backup passed validation"),
    }
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_a_live_instance_has_every_committed_row() {
    let bins = Arc::new(ServerBinaries::detect().expect("mariadbd installed"));
    let tools = BackupTools::detect().expect("mariadb-backup installed");
    // STRATA_TEST_REFLINK_DIR points at a directory on a reflink-capable file system (CI mounts an
    // XFS image); without it the test runs where temporary files go and takes the copy path.
    let base = std::env::var_os("STRATA_TEST_REFLINK_DIR").map(std::path::PathBuf::from);
    let root = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let (src, mut c) = source(&bins, root.path(), "parent").await;

    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let start: i64 = c
            .query_first("SELECT MAX(id) FROM orders")
            .await
            .unwrap()
            .unwrap();
        let acked = Arc::new(AtomicI64::new(start));
        let writer = start_writer(&src, stop.clone(), acked.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = acked.load(Ordering::SeqCst);
        let child_spec = spec(root.path(), &format!("child{round}"), false);
        prepare_instance_dir(&child_spec).unwrap();
        let method = backup::snapshot_into(&tools, &src, &datadir_of(&child_spec), &|_| {})
            .await
            .unwrap();
        let after = acked.load(Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        writer.await.unwrap();
        if base.is_some() {
            assert_eq!(
                method,
                SnapshotMethod::Reflink,
                "the file system shares blocks"
            );
        }
        let log = child_spec.dir.join("mysqld.log");
        let child = Instance::start(bins.clone(), child_spec).unwrap();
        if let Err(e) = child.wait_ready(Duration::from_secs(60)).await {
            panic!(
                "the snapshot does not open: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let got = ids(&child).await;
        assert_has_all(&got, before);
        // Nothing newer than the snapshot, and no holes: a prefix of the parent's history.
        let max = *got.last().unwrap();
        assert!(
            max <= after + 1,
            "row {max} is newer than the snapshot ({after})"
        );
        assert_has_all(&got, max);
        eprintln!(
            "round {round}: {method:?}, {} rows, parent had {before}..{after}",
            got.len()
        );
        child.stop().await;
    }
    src.stop().await;
}
