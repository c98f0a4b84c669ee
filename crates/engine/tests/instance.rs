//! Real `mariadbd` instances: provisioning from the template, role grants, crash restart, clean stop.

use mysql_async::prelude::Queryable;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_engine::supervisor::{provision, InstanceSpec};
use strata_engine::{admin, template, Instance, InstanceState, ServerBinaries};
use strata_model::Role;

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

async fn role_conn(inst: &Instance, role: Role) -> mysql_async::Conn {
    let opts = inst.opts(&role.internal_user(), inst.credentials().password(role));
    mysql_async::Conn::new(opts)
        .await
        .expect("role user can log in")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_lifecycle() {
    let bins = Arc::new(ServerBinaries::detect().expect("mariadbd installed"));
    let root = tempfile::tempdir().unwrap();
    let tpl = template::ensure_template(&bins, root.path()).unwrap();
    let spec = InstanceSpec {
        id: "b1".into(),
        dir: root.path().join("instances/b1"),
        schema: "shop".into(),
        production: false,
        safe_migrations: false,
        port: strata_engine::supervisor::pick_port().unwrap(),
        server_id: 11,
    };
    provision(&spec, &tpl).unwrap();
    let inst = Instance::start(bins.clone(), spec.clone()).unwrap();
    inst.wait_ready(Duration::from_secs(60)).await.unwrap();

    // Role grants, as the password-roles page describes them.
    let mut admin_c = role_conn(&inst, Role::Admin).await;
    admin_c
        .query_drop("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v INT) AUTO_INCREMENT=100")
        .await
        .unwrap();
    admin_c
        .query_drop("CREATE VIEW v AS SELECT id FROM t")
        .await
        .unwrap();
    let mut reader = role_conn(&inst, Role::Reader).await;
    assert!(reader.query_drop("SELECT * FROM t").await.is_ok());
    let e = reader
        .query_drop("INSERT INTO t (v) VALUES (1)")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("INSERT command denied"), "{e}");
    let mut writer = role_conn(&inst, Role::Writer).await;
    writer
        .query_drop("INSERT INTO t (v) VALUES (1)")
        .await
        .unwrap();
    let e = writer.query_drop("SELECT * FROM t").await.unwrap_err();
    assert!(e.to_string().contains("SELECT command denied"), "{e}");
    let mut rw = role_conn(&inst, Role::Readwriter).await;
    rw.query_drop("INSERT INTO t (v) VALUES (2)").await.unwrap();
    let n: Option<i64> = rw.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(n, Some(2));
    let e = rw
        .query_drop("CREATE TABLE u (id INT PRIMARY KEY)")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("CREATE command denied"), "{e}");
    // No role sees the server's own schemas.
    assert!(rw.query_drop("SELECT * FROM mysql.user").await.is_err());
    drop((admin_c, reader, writer, rw));

    // Schema copy into a second instance: no data, fresh AUTO_INCREMENT.
    let mut src = inst.connect().await.unwrap();
    let objects = admin::read_schema(&mut src, "shop").await.unwrap();
    assert_eq!(
        objects.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        ["t", "v"]
    );
    let spec2 = InstanceSpec {
        id: "b2".into(),
        dir: root.path().join("instances/b2"),
        port: 0,
        server_id: 12,
        ..spec.clone()
    };
    provision(&spec2, &tpl).unwrap();
    let inst2 = Instance::start(bins.clone(), spec2).unwrap();
    inst2.wait_ready(Duration::from_secs(60)).await.unwrap();
    admin::apply_schema(inst2.admin_opts(), "shop", &objects)
        .await
        .unwrap();
    let mut dst = inst2.connect().await.unwrap();
    let copied = admin::read_schema(&mut dst, "shop").await.unwrap();
    assert_eq!(copied.len(), 2);
    assert!(!copied[0].create.contains("AUTO_INCREMENT=100"));
    let n: Option<i64> = dst
        .query_first("SELECT COUNT(*) FROM shop.t")
        .await
        .unwrap();
    assert_eq!(n, Some(0));
    drop((src, dst));

    // kill -9: the supervisor restarts it within seconds.
    let pid = inst.status().pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let t = Instant::now();
    loop {
        let s = inst.status();
        if s.state == InstanceState::Running && s.pid != Some(pid) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "not restarted: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(inst.status().restarts, 1);
    let mut c = inst.connect().await.unwrap();
    let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM shop.t").await.unwrap();
    assert_eq!(n, Some(2), "committed rows survive the crash");
    drop(c);
    println!("restarted after kill -9 in {:?}", t.elapsed());

    // Clean stop leaves no process.
    let pid = inst.status().pid.unwrap();
    let pid2 = inst2.status().pid.unwrap();
    inst.stop().await;
    inst2.stop().await;
    assert_eq!(inst.status().state, InstanceState::Stopped);
    assert!(!alive(pid) && !alive(pid2));
}
