//! The MySQL gateway end to end: real clients (the stock `mariadb` CLI, mysql_async) through
//! `strata up`'s gateway to real `mariadbd` instances.

mod common;

use common::{password, Strata};
use mysql_async::prelude::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}
fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

fn opts(s: &Strata, user: &str, pw: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(s.mysql_port)
        .user(Some(user))
        .pass(Some(pw))
        .db_name(Some("shop"))
        .prefer_socket(false)
        .into()
}

fn setup(extra: &[&str]) -> (tempfile::TempDir, Strata) {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start_with(root.path(), "127.0.0.1:0", extra);
    s.json(&["database", "create", "shop", "--wait"]);
    (root, s)
}

#[test]
fn logins_tls_roles_and_routing() {
    let (_root, s) = setup(&[]);
    let (admin, admin_pw, _) = password(&s, "shop", "main", "admin");
    let ca = s.ca();
    let ca = ca.to_str().unwrap();

    // Plaintext on loopback, native password.
    let o = s.gateway_sql(&admin, &admin_pw, &["shop"], "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20)); INSERT INTO t (v) VALUES ('a'),('b'); SELECT COUNT(*) FROM t");
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "2");
    // TLS, verified against the generated CA, both auth methods.
    for auth in ["mysql_native_password", "caching_sha2_password"] {
        let o = s.gateway_sql(
            &admin,
            &admin_pw,
            &[
                "--ssl",
                &format!("--ssl-ca={ca}"),
                "--ssl-verify-server-cert",
                &format!("--default-auth={auth}"),
                "shop",
            ],
            "SELECT v FROM t ORDER BY id LIMIT 1",
        );
        assert!(o.status.success(), "{auth}: {}", err(&o));
        assert_eq!(out(&o), "a");
    }
    // mysql_async over TLS, verifying the gateway with the CA.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tls = mysql_async::SslOpts::default()
            .with_root_certs(vec![std::path::PathBuf::from(ca).into()]);
        let o: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(opts(&s, &admin, &admin_pw))
            .ssl_opts(tls)
            .into();
        let mut c = mysql_async::Conn::new(o).await.unwrap();
        let v: Option<String> = c
            .query_first("SELECT v FROM t ORDER BY id LIMIT 1")
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some("a"));
        c.disconnect().await.unwrap();
    });
    drop(rt);
    // The empty database name and the database's name are both accepted; others are not.
    assert!(s
        .gateway_sql(&admin, &admin_pw, &[], "SELECT COUNT(*) FROM shop.t")
        .status
        .success());
    let o = s.gateway_sql(&admin, &admin_pw, &["other"], "SELECT 1");
    assert!(err(&o).contains("ERROR 1044"), "{}", err(&o));
    let o = s.gateway_sql(&admin, &admin_pw, &["shop"], "USE other");
    assert!(err(&o).contains("ERROR 1044"), "{}", err(&o));
    // Wrong password, unknown user.
    let o = s.gateway_sql(&admin, "strata_pw_wrong", &["shop"], "SELECT 1");
    assert!(
        err(&o).contains("ERROR 1045") && err(&o).contains("Access denied"),
        "{}",
        err(&o)
    );
    let o = s.gateway_sql("nosuchuser", &admin_pw, &["shop"], "SELECT 1");
    assert!(err(&o).contains("ERROR 1045"), "{}", err(&o));

    // Roles are enforced by the instance behind the gateway.
    let (reader, reader_pw, _) = password(&s, "shop", "main", "reader");
    assert_eq!(
        out(&s.gateway_sql(&reader, &reader_pw, &["shop"], "SELECT COUNT(*) FROM t")),
        "2"
    );
    let o = s.gateway_sql(
        &reader,
        &reader_pw,
        &["shop"],
        "INSERT INTO t (v) VALUES ('x')",
    );
    assert!(err(&o).contains("ERROR 1142"), "{}", err(&o));
    let (writer, writer_pw, _) = password(&s, "shop", "main", "writer");
    assert!(s
        .gateway_sql(
            &writer,
            &writer_pw,
            &["shop"],
            "INSERT INTO t (v) VALUES ('w')"
        )
        .status
        .success());
    assert!(
        err(&s.gateway_sql(&writer, &writer_pw, &["shop"], "SELECT * FROM t"))
            .contains("ERROR 1142")
    );
    // Table rebuilds need an admin password (the server would let read and write grants do it).
    let (rw, rw_pw, _) = password(&s, "shop", "main", "readwriter");
    for sql in [
        "OPTIMIZE TABLE t",
        "REPAIR TABLE t",
        "PREPARE s FROM 'OPTIMIZE TABLE t'",
    ] {
        let o = s.gateway_sql(&rw, &rw_pw, &["shop"], sql);
        assert!(
            err(&o).contains("ERROR 1142") && err(&o).contains("admin password"),
            "{sql}: {}",
            err(&o)
        );
    }
    assert!(s
        .gateway_sql(&rw, &rw_pw, &["shop"], "ANALYZE TABLE t")
        .status
        .success());
    assert!(s
        .gateway_sql(&admin, &admin_pw, &["shop"], "OPTIMIZE TABLE t")
        .status
        .success());

    // A branch password reaches only its branch.
    s.json(&["branch", "create", "shop", "dev", "--wait"]);
    let (dev_admin, dev_pw, _) = password(&s, "shop", "dev", "admin");
    assert_eq!(
        out(&s.gateway_sql(&dev_admin, &dev_pw, &["shop"], "SELECT COUNT(*) FROM t")),
        "0"
    );

    // IP restrictions and expiry.
    let (limited, limited_pw, limited_id) = password(&s, "shop", "main", "reader");
    let (st, _) = s.api(
        "PATCH",
        &s.org_path(&format!(
            "databases/shop/branches/main/passwords/{limited_id}"
        )),
        Some(serde_json::json!({"cidrs": ["10.0.0.0/8"]})),
    );
    assert_eq!(st, 200);
    assert!(
        err(&s.gateway_sql(&limited, &limited_pw, &["shop"], "SELECT 1")).contains("ERROR 1045")
    );
    let p = s.json(&[
        "password", "create", "shop", "main", "brief", "--role", "reader", "--ttl", "1",
    ]);
    let (u, pw) = (
        p["username"].as_str().unwrap(),
        p["plain_text"].as_str().unwrap(),
    );
    assert!(s.gateway_sql(u, pw, &["shop"], "SELECT 1").status.success());
    // A session logged in before the expiry hears it at its first statement after it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut before = rt
        .block_on(mysql_async::Conn::new(opts(&s, u, pw)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let e = rt.block_on(before.query_drop("SELECT 1")).unwrap_err();
    assert!(e.to_string().contains("deleted or has expired"), "{e}");
    drop(rt);
    assert!(err(&s.gateway_sql(u, pw, &["shop"], "SELECT 1")).contains("ERROR 1045"));
    // A deleted password stops working.
    let (gone, gone_pw, gone_id) = password(&s, "shop", "main", "reader");
    s.ok(&["password", "delete", "shop", "main", &gone_id, "--force"]);
    assert!(err(&s.gateway_sql(&gone, &gone_pw, &["shop"], "SELECT 1")).contains("ERROR 1045"));
}

#[test]
fn safe_migrations_refuse_direct_ddl() {
    let (_root, s) = setup(&[]);
    let (admin, pw, _) = password(&s, "shop", "main", "admin");
    assert!(s
        .gateway_sql(
            &admin,
            &pw,
            &["shop"],
            "CREATE TABLE t (id INT PRIMARY KEY)"
        )
        .status
        .success());
    // A latin1 client: its text reaches the gateway's lexer as bytes that are not UTF-8.
    let latin1 = |sql: &str| {
        let o = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, pymysql\n\
                 c = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2], password=sys.argv[3], database='shop', charset='latin1')\n\
                 try:\n\
                 \x20   c.cursor().execute(sys.argv[4].replace('~', '\\xa0'))\n\
                 \x20   print('ok')\n\
                 except pymysql.err.MySQLError as e:\n\
                 \x20   print(e.args[0], e.args[1])",
                &s.mysql_port.to_string(),
                &admin,
                &pw,
                sql,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    // Leaves a pooled backend connection of the latin1 profile, opened before safe migrations.
    assert_eq!(latin1("SELECT 1"), "ok");
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let main_id = s.wait_branch("shop", "main")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let schema = || s.sql_ok(&main_id, "strata_root", "SHOW CREATE TABLE shop.t");
    let before = schema();
    // The server is the wall, not only the lexer: DDL a lexer may misread (a non-breaking space
    // in latin1) is refused by the server's grants, also on that pooled connection.
    let r = latin1("ALTER~TABLE t ADD COLUMN sneaky INT");
    eprintln!("latin1 ALTER: {r}");
    assert!(r.starts_with("1142") || r.contains("direct DDL"), "{r}");
    // ... and whoever holds the admin role's server credential directly.
    for sql in [
        "ALTER TABLE shop.t ADD COLUMN c INT",
        "CREATE TABLE shop.u (id INT PRIMARY KEY)",
        "DROP TABLE shop.t",
        "TRUNCATE TABLE shop.t",
        "CREATE VIEW shop.v AS SELECT 1",
        "CREATE INDEX i ON shop.t (id)",
        "CREATE PROCEDURE shop.p() SELECT 1",
        "DROP DATABASE shop",
    ] {
        let e = s.sql_err(&main_id, "strata_admin", sql);
        assert!(
            e.contains("ERROR 1142") || e.contains("ERROR 1044") || e.contains("ERROR 1370"),
            "{sql}: {e}"
        );
    }
    assert_eq!(schema(), before, "production's schema is unchanged");
    for sql in [
        "ALTER TABLE t ADD COLUMN c INT",
        "CREATE TABLE u (id INT PRIMARY KEY)",
        "DROP TABLE t",
        "RENAME TABLE t TO t2",
        "TRUNCATE TABLE t",
        "/* hidden */ ALTER TABLE t ADD COLUMN c INT",
        "/*!50000 ALTER TABLE t ADD COLUMN c INT */",
        "SELECT 1; DROP TABLE t",
        "PREPARE s FROM 'DROP TABLE t'",
        "SET STATEMENT max_statement_time=100 FOR ALTER TABLE t ADD COLUMN c INT",
        "SET STATEMENT max_statement_time=10 FOR DROP DATABASE shop",
        "SET STATEMENT sql_mode='' FOR TRUNCATE TABLE t",
        "EXECUTE IMMEDIATE 'alt' 'er table t add column c int'",
    ] {
        let o = s.gateway_sql(&admin, &pw, &["shop"], sql);
        assert!(
            err(&o).contains("ERROR 1105 (HY000)") && err(&o).contains("direct DDL is disabled"),
            "{sql}: {}",
            err(&o)
        );
    }
    assert!(s
        .gateway_sql(
            &admin,
            &pw,
            &["shop"],
            "INSERT INTO t VALUES (1); SELECT * FROM t"
        )
        .status
        .success());
    assert!(s
        .gateway_sql(
            &admin,
            &pw,
            &["shop"],
            "CREATE TEMPORARY TABLE tmp (id INT); DROP TEMPORARY TABLE tmp"
        )
        .status
        .success());
    // Prepared statements (binary protocol) are guarded too.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        let e = c.prep("ALTER TABLE t ADD COLUMN z INT").await.unwrap_err();
        assert!(e.to_string().contains("direct DDL is disabled"), "{e}");
        // Compound statements run the statements inside them.
        for sql in [
            "BEGIN NOT ATOMIC DROP TABLE t; END",
            "IF 1 THEN SELECT 1; ELSE ALTER TABLE t ADD COLUMN z INT; END IF",
            "BEGIN NOT ATOMIC EXECUTE IMMEDIATE CONCAT('DROP ', 'TABLE t'); END",
        ] {
            let e = c.query_drop(sql).await.unwrap_err();
            assert!(
                e.to_string().contains("direct DDL is disabled"),
                "{sql}: {e}"
            );
        }
        c.disconnect().await.unwrap();
    });
    // Development branches take DDL from admin passwords.
    s.json(&["branch", "create", "shop", "dev", "--wait"]);
    let (dev, dev_pw, _) = password(&s, "shop", "dev", "admin");
    assert!(s
        .gateway_sql(&dev, &dev_pw, &["shop"], "ALTER TABLE t ADD COLUMN c INT")
        .status
        .success());
    // Turning safe migrations off lets DDL through again.
    s.json(&["branch", "safe-migrations", "disable", "shop", "main"]);
    assert!(s
        .gateway_sql(&admin, &pw, &["shop"], "ALTER TABLE t ADD COLUMN c INT")
        .status
        .success());
    s.sql_ok(
        &main_id,
        "strata_admin",
        "CREATE TABLE shop.u (id INT PRIMARY KEY)",
    );
    // Routines, triggers and events: never, on any branch.
    let e = s.sql_err(
        &main_id,
        "strata_admin",
        "CREATE PROCEDURE shop.p() SELECT 1",
    );
    assert!(e.contains("ERROR 1044") || e.contains("ERROR 1142"), "{e}");
    // Databases are the API's, on any branch, with safe migrations off too.
    for sql in [
        "DROP DATABASE shop",
        "DROP SCHEMA IF EXISTS shop",
        "CREATE DATABASE other",
        "PREPARE s FROM 'DROP DATABASE shop'",
        // Objects no deploy request can carry: refused where they would be made.
        "CREATE SEQUENCE s1",
        "CREATE TABLE hist (id INT PRIMARY KEY) WITH SYSTEM VERSIONING",
    ] {
        let o = s.gateway_sql(&admin, &pw, &["shop"], sql);
        assert!(err(&o).contains("VT12001"), "{sql}: {}", err(&o));
    }
    assert!(s
        .gateway_sql(&admin, &pw, &["shop"], "SELECT COUNT(*) FROM t")
        .status
        .success());
}

#[test]
fn pooling_transactions_session_state_and_binary_protocol() {
    let (_root, s) = setup(&["--pool-size", "4"]);
    let (admin, pw, _) = password(&s, "shop", "main", "admin");
    let (rw, rw_pw, _) = password(&s, "shop", "main", "readwriter");
    assert!(s
        .gateway_sql(
            &admin,
            &pw,
            &["shop"],
            "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, v INT NOT NULL)"
        )
        .status
        .success());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // 50 clients, one pool of 4 backend connections.
        let mut tasks = Vec::new();
        for i in 0..50 {
            let o = opts(&s, &rw, &rw_pw);
            tasks.push(tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(o).await.unwrap();
                for j in 0..20 {
                    c.exec_drop("INSERT INTO t (v) VALUES (?)", (i * 100 + j,)).await.unwrap();
                    let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM t").await.unwrap();
                    assert!(n.unwrap() >= 1);
                }
                c
            }));
        }
        let mut conns = Vec::new();
        for t in tasks {
            conns.push(t.await.unwrap());
        }
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM t").await.unwrap();
        assert_eq!(n, Some(1000));
        // Backend connections of the readwriter role: at most the pool size, although 50 clients are connected.
        let backends: Option<i64> = c
            .query_first("SELECT COUNT(*) FROM information_schema.processlist WHERE user = 'strata_readwriter'")
            .await
            .unwrap();
        assert!(backends.unwrap() <= 4, "{backends:?} backend connections for 50 clients");
        drop(conns);

        // Transactions keep their connection; other clients do not see uncommitted rows.
        let mut a = mysql_async::Conn::new(opts(&s, &rw, &rw_pw)).await.unwrap();
        let mut b = mysql_async::Conn::new(opts(&s, &rw, &rw_pw)).await.unwrap();
        a.query_drop("BEGIN").await.unwrap();
        a.query_drop("INSERT INTO t (v) VALUES (-1)").await.unwrap();
        let seen: Option<i64> = a.query_first("SELECT COUNT(*) FROM t WHERE v = -1").await.unwrap();
        assert_eq!(seen, Some(1));
        let other: Option<i64> = b.query_first("SELECT COUNT(*) FROM t WHERE v = -1").await.unwrap();
        assert_eq!(other, Some(0));
        a.query_drop("ROLLBACK").await.unwrap();
        let after: Option<i64> = b.query_first("SELECT COUNT(*) FROM t WHERE v = -1").await.unwrap();
        assert_eq!(after, Some(0));

        // Session state stays with its session.
        a.query_drop("SET @mine = 41").await.unwrap();
        b.query_drop("SET @mine = 7").await.unwrap();
        let va: Option<i64> = a.query_first("SELECT @mine + 1").await.unwrap();
        let vb: Option<i64> = b.query_first("SELECT @mine").await.unwrap();
        assert_eq!((va, vb), (Some(42), Some(7)));
        let mut fresh = mysql_async::Conn::new(opts(&s, &rw, &rw_pw)).await.unwrap();
        let none: Option<Option<i64>> = fresh.query_first("SELECT @mine").await.unwrap();
        assert_eq!(none, Some(None), "a new session never sees another's variables");

        // Table locks stay with their session and end with it, however they were taken; taken
        // out of the gateway's sight (from a string) they are refused.
        let mut locker = mysql_async::Conn::new(opts(&s, &rw, &rw_pw)).await.unwrap();
        let e = locker
            .query_drop("EXECUTE IMMEDIATE 'LOCK TABLES t WRITE'")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("statements of their own"), "{e}");
        locker.disconnect().await.unwrap();
        for lock in [
            "LOCK TABLES t WRITE",
            "SET STATEMENT max_statement_time=5 FOR LOCK TABLES t WRITE",
        ] {
            let mut locker = mysql_async::Conn::new(opts(&s, &rw, &rw_pw)).await.unwrap();
            locker.query_drop(lock).await.unwrap();
            locker.disconnect().await.unwrap();
            // Another role's session: another backend connection, which a leaked lock would block.
            let mut next = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
            next.query_drop("SET SESSION lock_wait_timeout = 5").await.unwrap();
            next.query_drop("INSERT INTO t (v) VALUES (-2)").await.unwrap_or_else(|e| {
                panic!("after {lock:?} and a disconnect, another session: {e}")
            });
            next.query_drop("DELETE FROM t WHERE v = -2").await.unwrap();
            next.disconnect().await.unwrap();
        }

        // Every spelling of turning autocommit off makes the next UPDATE part of a transaction.
        for off in ["SET autocommit = 0", "SET @@autocommit = 0", "SET @@AUTOCOMMIT = OFF", "SET SESSION autocommit = 0"] {
            let mut c = mysql_async::Conn::new(opts(&s, &rw, &rw_pw)).await.unwrap();
            c.query_drop("INSERT INTO t (v) VALUES (-3)").await.unwrap();
            c.query_drop(off).await.unwrap();
            // The connection it was set on stays with this session: no one else gets autocommit off.
            let mut other = mysql_async::Conn::new(opts(&s, &rw, &rw_pw)).await.unwrap();
            let ac: Option<i64> = other.query_first("SELECT @@autocommit").await.unwrap();
            assert_eq!(ac, Some(1), "{off} leaked to another session");
            other.disconnect().await.unwrap();
            c.query_drop("UPDATE t SET v = -4 WHERE v = -3").await.unwrap();
            c.query_drop("ROLLBACK").await.unwrap();
            let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM t WHERE v = -3").await.unwrap();
            assert_eq!(n, Some(1), "{off}: ROLLBACK undid the UPDATE");
            c.query_drop("SET autocommit = 1").await.unwrap();
            c.query_drop("DELETE FROM t WHERE v IN (-3, -4)").await.unwrap();
            c.disconnect().await.unwrap();
        }

        // LAST_INSERT_ID follows the client, not the pooled connection.
        fresh.query_drop("INSERT INTO t (v) VALUES (5)").await.unwrap();
        let id = fresh.last_insert_id().unwrap();
        let again: Option<u64> = fresh.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
        assert_eq!(again, Some(id));
        // So does ROW_COUNT(): the rows the client's last statement changed, -1 after a SELECT.
        fresh
            .query_drop("UPDATE t SET v = v WHERE v = 5 OR id = 0")
            .await
            .unwrap();
        fresh
            .query_drop("UPDATE t SET v = 6 WHERE v = 5")
            .await
            .unwrap();
        let affected = fresh.affected_rows() as i64;
        assert!(affected >= 1);
        let changed: Option<i64> = fresh.query_first("SELECT ROW_COUNT()").await.unwrap();
        assert_eq!(changed, Some(affected));
        let after_select: Option<i64> = fresh.query_first("SELECT ROW_COUNT()").await.unwrap();
        assert_eq!(after_select, Some(-1));
        // FOUND_ROWS() too: another session's large SELECT on the pooled connection is not seen.
        let mut other = mysql_async::Conn::new(opts(&s, &rw, &rw_pw)).await.unwrap();
        let _: Vec<i64> = other.query("SELECT seq FROM seq_1_to_77").await.unwrap();
        other.disconnect().await.unwrap();
        let _: Vec<i64> = fresh.query("SELECT seq FROM seq_1_to_3").await.unwrap();
        for _ in 0..3 {
            let mut newcomer = mysql_async::Conn::new(opts(&s, &rw, &rw_pw)).await.unwrap();
            // Its own last result set: the one row of the client library's set-up query.
            let found: Option<u64> = newcomer.query_first("SELECT FOUND_ROWS()").await.unwrap();
            assert_eq!(found, Some(1), "a new session sees another's FOUND_ROWS()");
            newcomer.disconnect().await.unwrap();
        }
        let found: Option<u64> = fresh.query_first("SELECT FOUND_ROWS()").await.unwrap();
        assert_eq!(found, Some(3));
        // With SQL_CALC_FOUND_ROWS the session keeps its connection and the server answers.
        let _: Vec<i64> = fresh
            .query("SELECT SQL_CALC_FOUND_ROWS seq FROM seq_1_to_50 LIMIT 2")
            .await
            .unwrap();
        let found: Option<u64> = fresh.query_first("SELECT FOUND_ROWS()").await.unwrap();
        assert_eq!(found, Some(50));
        // CONNECTION_ID() is the session's id at the gateway, the one KILL takes.
        let own: Option<u32> = fresh.query_first("SELECT CONNECTION_ID()").await.unwrap();
        assert_eq!(own, Some(fresh.id()));
        // Named as the server names it: the alias, else the call as written.
        for (sql, name) in [
            ("SELECT CONNECTION_ID() AS cid", "cid"),
            ("select connection_id()", "connection_id()"),
            ("SELECT FOUND_ROWS() total", "total"),
        ] {
            let r = fresh.query_iter(sql).await.unwrap();
            let columns = r.columns().unwrap();
            assert_eq!(columns[0].name_str(), name, "{sql}");
            drop(columns);
            r.drop_result().await.unwrap();
        }
        fresh
            .query_drop("UPDATE t SET v = 5 WHERE v = 6")
            .await
            .unwrap();

        // Binary protocol, multi-statements, several result sets.
        let stmt = a.prep("SELECT v FROM t WHERE id = ?").await.unwrap();
        let v: Option<i64> = a.exec_first(&stmt, (id,)).await.unwrap();
        assert_eq!(v, Some(5));
        let mut r = a.query_iter("SELECT 1; SELECT 2, 3").await.unwrap();
        let first: Vec<i64> = r.collect().await.unwrap();
        let second: Vec<(i64, i64)> = r.collect().await.unwrap();
        assert_eq!((first, second), (vec![1], vec![(2, 3)]));
        drop(r);
        for c in [a, b, c, fresh] {
            c.disconnect().await.unwrap();
        }
    });
}

/// The default statement time limit is each role connection's own on the instance (no timer per
/// query in the gateway): a long query ends with the server's 1969, in text and prepared form; an
/// OLAP session has it lifted on its connection, which is reset before anyone else gets it.
#[test]
fn the_default_time_limit_holds_and_olap_lifts_it_for_its_session_only() {
    let (_root, s) = setup(&["--query-timeout", "1"]);
    let (admin, pw, _) = password(&s, "shop", "main", "admin");
    let slow = "SELECT SLEEP(1.5) AS s";
    let o = s.gateway_sql(&admin, &pw, &["shop"], slow);
    assert!(err(&o).contains("max_statement_time"), "{}", err(&o));
    let o = s.gateway_sql(
        &admin,
        &pw,
        &["shop"],
        &format!("SET workload = olap; {slow}"),
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = s.gateway_sql(
        &admin,
        &pw,
        &["shop"],
        &format!("SET workload = olap; SET workload = oltp; {slow}"),
    );
    assert!(err(&o).contains("max_statement_time"), "{}", err(&o));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // An OLAP session, then plain sessions on the same pool: the lifted limit stayed with the
        // OLAP session's connection and was put back when it ended.
        let mut olap = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        olap.query_drop("SET workload = olap").await.unwrap();
        let v: Option<i64> = olap.exec_first("SELECT SLEEP(?)", (1.5,)).await.unwrap();
        assert_eq!(v, Some(0));
        olap.disconnect().await.unwrap();
        for _ in 0..3 {
            let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
            let e = c.exec_drop("SELECT SLEEP(?)", (1.5,)).await.unwrap_err();
            assert!(e.to_string().contains("max_statement_time"), "{e}");
            c.disconnect().await.unwrap();
        }
        // The limit cannot be lifted by setting the variable, in any spelling.
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        for sql in [
            "SET SESSION max_statement_time = 0",
            "SET @@max_statement_time = DEFAULT",
            "SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(1.5)",
            "EXECUTE IMMEDIATE 'SET max_statement_time = 3600'",
        ] {
            let e = c.query_drop(sql).await.unwrap_err();
            assert!(
                e.to_string().contains("up to the query timeout"),
                "{sql}: {e}"
            );
        }
        c.query_drop("SET SESSION max_statement_time = 0.5")
            .await
            .unwrap();
        let e = c.query_drop("SELECT SLEEP(0.8)").await.unwrap_err();
        assert!(e.to_string().contains("max_statement_time"), "{e}");
        c.query_drop("SET workload = olap").await.unwrap();
        c.query_drop("SET SESSION max_statement_time = 0")
            .await
            .unwrap();
        c.disconnect().await.unwrap();
    });
}

/// Warnings and errors quote values and names: a client reads its own (`SHOW WARNINGS` after its
/// statement), never another password's left on a pooled connection.
#[test]
fn warnings_and_errors_stay_with_their_client() {
    let (_root, s) = setup(&[]);
    let (a, a_pw, _) = password(&s, "shop", "main", "readwriter");
    let (b, b_pw, _) = password(&s, "shop", "main", "readwriter");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for binary in [false, true] {
            let mut mine = mysql_async::Conn::new(opts(&s, &a, &a_pw)).await.unwrap();
            let sql = "SELECT CAST('card-4111111111111111' AS INT)";
            if binary {
                mine.exec_drop(sql, ()).await.unwrap();
            } else {
                mine.query_drop(sql).await.unwrap();
            }
            let own: Vec<(String, u32, String)> = mine.query("SHOW WARNINGS").await.unwrap();
            assert!(own.iter().any(|w| w.2.contains("card-4111")), "{own:?}");
            let _ = mine.query_drop("SELECT * FROM secret_table_name").await;
            let own: Vec<(String, u32, String)> = mine.query("SHOW ERRORS").await.unwrap();
            assert!(
                own.iter().any(|w| w.2.contains("secret_table_name")),
                "{own:?}"
            );
            // Left as is: the connection goes back to the pool when the session ends.
            let _ = mine.query_drop("SELECT * FROM secret_table_name").await;
            mine.disconnect().await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            for _ in 0..4 {
                let mut other = mysql_async::Conn::new(opts(&s, &b, &b_pw)).await.unwrap();
                let w: Vec<(String, u32, String)> = other.query("SHOW WARNINGS").await.unwrap();
                let e: Vec<(String, u32, String)> = other.query("SHOW ERRORS").await.unwrap();
                let count: Option<u64> = other.query_first("SELECT @@warning_count").await.unwrap();
                assert!(
                    w.is_empty() && e.is_empty() && count == Some(0),
                    "{w:?} {e:?} {count:?}"
                );
                other.disconnect().await.unwrap();
            }
        }
    });
}

/// All pools of a branch together keep to the branch's share of its instance's connections (240 of
/// a development branch's 300): one role cannot take the instance's connections from the others,
/// and what a burst left idle is handed over at once when another role needs room.
#[test]
fn a_branch_pools_share_a_bound_and_idle_connections_make_room() {
    let (_root, s) = setup(&[]);
    s.json(&["branch", "create", "shop", "dev", "--wait"]);
    let roles = ["admin", "readwriter", "reader", "writer"];
    let pws: Vec<(String, String)> = roles
        .iter()
        .map(|r| {
            let (u, p, _) = password(&s, "shop", "dev", r);
            (u, p)
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // 64 pinned connections of one password, at once: (connections, errors).
        let burst = |u: &str, p: &str| {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..64 {
                let o = opts(&s, u, p);
                set.spawn(async move {
                    let mut c = mysql_async::Conn::new(o).await?;
                    // Session state: the connection stays with this client.
                    c.query_drop("SET @held = 1").await?;
                    Ok::<_, mysql_async::Error>(c)
                });
            }
            async move {
                let (mut ok, mut err) = (Vec::new(), Vec::new());
                while let Some(r) = set.join_next().await {
                    match r.unwrap() {
                        Ok(c) => ok.push(c),
                        Err(e) => err.push(e.to_string()),
                    }
                }
                (ok, err)
            }
        };
        let mut held = Vec::new();
        let mut refused = Vec::new();
        for (u, p) in &pws {
            let (ok, err) = burst(u, p).await;
            held.extend(ok);
            refused.extend(err);
        }
        assert_eq!(held.len(), 240, "refused: {:?}", refused.first());
        assert_eq!(refused.len(), 16);
        assert!(
            refused.iter().all(|e| e.contains("Too many connections")),
            "{refused:?}"
        );
        for c in held.drain(..) {
            c.disconnect().await.unwrap();
        }
        // Every pool is now idle at the bound: the writer, refused before, gets room at once from
        // the others' idle connections.
        let (u, p) = &pws[3];
        let (ok, err) = burst(u, p).await;
        assert!(err.is_empty(), "{err:?}");
        for c in ok {
            c.disconnect().await.unwrap();
        }
    });
    s.json(&["branch", "show", "shop", "dev"]);
}

/// One password holds at most three quarters of its branch's backend connections: another
/// application on the branch still gets its own.
#[test]
fn one_password_cannot_take_every_connection_of_its_branch() {
    let (_root, s) = setup(&["--pool-size", "300"]);
    s.json(&["branch", "create", "shop", "dev", "--wait"]);
    let (greedy, greedy_pw, _) = password(&s, "shop", "dev", "reader");
    let (other, other_pw, _) = password(&s, "shop", "dev", "reader");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let o = opts(&s, &greedy, &greedy_pw);
            set.spawn(async move {
                let mut c = mysql_async::Conn::new(o).await?;
                c.query_drop("SET @held = 1").await?;
                Ok::<_, mysql_async::Error>(c)
            });
        }
        let (mut held, mut refused) = (Vec::new(), Vec::new());
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Ok(c) => held.push(c),
                Err(e) => refused.push(e.to_string()),
            }
        }
        // 3/4 of a development branch's 240.
        assert_eq!(held.len(), 180, "refused: {:?}", refused.first());
        assert!(
            refused.iter().all(|e| e.contains("its share")),
            "{refused:?}"
        );
        let mut c = mysql_async::Conn::new(opts(&s, &other, &other_pw))
            .await
            .unwrap();
        c.query_drop("SET @mine = 1").await.unwrap();
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        c.disconnect().await.unwrap();
        for c in held {
            c.disconnect().await.unwrap();
        }
    });
}

#[test]
fn query_limits_and_kill() {
    let (_root, s) = setup(&["--max-rows", "100", "--transaction-timeout", "1"]);
    let (admin, pw, _) = password(&s, "shop", "main", "admin");
    let o = s.gateway_sql(
        &admin,
        &pw,
        &["shop"],
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t SELECT seq, 0 FROM seq_1_to_150",
    );
    assert!(o.status.success(), "{}", err(&o));
    // Reads over the row limit fail; OLAP lifts the read limit.
    let o = s.gateway_sql(&admin, &pw, &["shop"], "SELECT * FROM t");
    assert!(err(&o).contains("Row count exceeded 100"), "{}", err(&o));
    assert_eq!(
        out(&s.gateway_sql(&admin, &pw, &["shop"], "SELECT COUNT(*) FROM t")),
        "150"
    );
    let o = s.gateway_sql(
        &admin,
        &pw,
        &["shop"],
        "SET workload = olap; SELECT * FROM t",
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).lines().count(), 150);
    // Updates and deletes over the limit fail and change nothing, in OLAP too.
    for sql in [
        "UPDATE t SET v = 1",
        "SET workload = olap; UPDATE t SET v = 1",
        "DELETE FROM t",
        // Rows returned count too: DELETE … RETURNING reports no count of rows changed.
        "DELETE FROM t RETURNING id",
        "SET workload = olap; DELETE FROM t RETURNING id",
    ] {
        let o = s.gateway_sql(&admin, &pw, &["shop"], sql);
        assert!(
            err(&o).contains("Row count exceeded 100"),
            "{sql}: {}",
            err(&o)
        );
    }
    assert_eq!(
        out(&s.gateway_sql(&admin, &pw, &["shop"], "SELECT COUNT(*), SUM(v) FROM t")),
        "150\t0"
    );
    // Not only a text's first statement (one COM_QUERY holding several: the mariadb client
    // would split them); a text that would end the limit's own transaction is refused whole.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        for text in [
            "DO 0; DELETE FROM t",
            "SELECT 1; UPDATE t SET v = 1 WHERE id > 0",
        ] {
            let e = c.query_drop(text).await.unwrap_err();
            assert!(
                e.to_string().contains("Row count exceeded 100"),
                "{text}: {e}"
            );
        }
        for text in [
            "SET @a = 1; DELETE FROM t; COMMIT",
            "CREATE TABLE t2 (id INT); DELETE FROM t",
        ] {
            let e = c.query_drop(text).await.unwrap_err();
            assert!(e.to_string().contains("cannot share a text"), "{text}: {e}");
        }
        // The limit is per statement, as if each came alone: many rows inserted beside a small
        // update, or two updates each within it, pass.
        c.query_drop("CREATE TEMPORARY TABLE w (id INT PRIMARY KEY, v INT)")
            .await
            .unwrap();
        c.query_drop(
            "INSERT INTO w SELECT seq, 0 FROM seq_1_to_150; UPDATE w SET v = 1 WHERE id <= 60; UPDATE w SET v = 2 WHERE id > 60 AND id <= 120",
        )
        .await
        .unwrap();
        let sum: Option<i64> = c.query_first("SELECT SUM(v) FROM w").await.unwrap();
        assert_eq!(sum, Some(180));
        // CHECK constraints cannot be switched off for a session.
        let e = c
            .query_drop("SET SESSION check_constraint_checks = 0")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("always hold"), "{e}");
        c.disconnect().await.unwrap();
    });
    drop(rt);
    assert_eq!(
        out(&s.gateway_sql(&admin, &pw, &["shop"], "SELECT COUNT(*) FROM t")),
        "150"
    );
    // The byte limit holds for what DELETE … RETURNING returns (from a temporary table, so only
    // the caller's own rows are at stake); nothing is deleted.
    let o = s.gateway_sql(
        &admin,
        &pw,
        &["shop"],
        "CREATE TEMPORARY TABLE tt SELECT seq AS id FROM seq_1_to_30; \
         DELETE FROM tt RETURNING id, REPEAT('z', 10000000); SELECT COUNT(*) FROM tt",
    );
    assert!(
        err(&o).contains("result set larger than max"),
        "{}",
        err(&o)
    );
    // ... also inside a transaction, which stays usable.
    let o = s.gateway_sql(
        &admin,
        &pw,
        &["shop"],
        "BEGIN; UPDATE t SET v = 2 WHERE id <= 10; UPDATE t SET v = 1",
    );
    assert!(err(&o).contains("Row count exceeded 100"), "{}", err(&o));
    let o = s.gateway_sql(
        &admin,
        &pw,
        &["shop"],
        "BEGIN; UPDATE t SET v = 2 WHERE id <= 10; COMMIT; SELECT SUM(v) FROM t",
    );
    assert_eq!(out(&o), "20", "{}", err(&o));
    assert!(s
        .gateway_sql(&admin, &pw, &["shop"], "UPDATE t SET v = 3 WHERE id <= 100")
        .status
        .success());

    // Prepared (binary protocol) updates are held to the limit too.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        let e = c
            .exec_drop("UPDATE t SET v = ? WHERE id > ?", (7, 0))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Row count exceeded 100"), "{e}");
        c.exec_drop("UPDATE t SET v = ? WHERE id <= ?", (3, 5))
            .await
            .unwrap();
        c.disconnect().await.unwrap();
    });
    drop(rt);

    // The per-query timeout directive stops a long query.
    let start = Instant::now();
    let o = s.gateway_sql(
        &admin,
        &pw,
        &["shop"],
        "SELECT /*vt+ QUERY_TIMEOUT_MS=300 */ COUNT(*) FROM seq_1_to_300000000 WHERE seq % 7 = 3",
    );
    assert!(
        !o.status.success() && err(&o).contains("interrupted"),
        "{}",
        err(&o)
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    // The same through a prepared statement (binary protocol).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        let start = Instant::now();
        let e = c
            .exec_drop(
                "SELECT /*vt+ QUERY_TIMEOUT_MS=300 */ COUNT(*) FROM seq_1_to_300000000 WHERE seq % ? = 3",
                (7,),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("interrupted"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
        // The connection goes on.
        let one: Option<i64> = c.exec_first("SELECT ?", (1,)).await.unwrap();
        assert_eq!(one, Some(1));
        c.disconnect().await.unwrap();
    });
    drop(rt);

    // A transaction left open past the limit is rolled back.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("UPDATE t SET v = 9 WHERE id = 1")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1800)).await;
        // The next statement hears it, and nothing of the transaction commits: not the UPDATE
        // before the limit, not what comes after it.
        let e = c
            .query_drop("UPDATE t SET v = 8 WHERE id = 2")
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("exceeded timeout: 1s"),
            "the next statement is told: {e}"
        );
        c.query_drop("COMMIT").await.unwrap();
        let mut d = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        let v: Vec<(i64, i64)> = d
            .query("SELECT id, v FROM t WHERE id IN (1, 2) ORDER BY id")
            .await
            .unwrap();
        assert_eq!(
            v,
            [(1, 3), (2, 3)],
            "the expired transaction was rolled back"
        );
        // Prepared statements and COMMIT hear it too; a ROLLBACK is simply done.
        for last in ["COMMIT", "prepared", "ROLLBACK"] {
            c.query_drop("BEGIN").await.unwrap();
            c.exec_drop("UPDATE t SET v = ? WHERE id = ?", (7, 3))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let r = match last {
                "prepared" => c.exec_drop("UPDATE t SET v = ? WHERE id = ?", (7, 4)).await,
                sql => c.query_drop(sql).await,
            };
            if last == "ROLLBACK" {
                r.unwrap();
            } else {
                assert!(
                    r.unwrap_err().to_string().contains("exceeded timeout"),
                    "{last}"
                );
            }
        }
        // A statement running in a transaction ends at the transaction's limit.
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("UPDATE t SET v = 6 WHERE id = 5")
            .await
            .unwrap();
        let started = Instant::now();
        let e = c
            .query_drop("SELECT COUNT(*) FROM seq_1_to_300000000 WHERE seq % 7 = 3")
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
        let e = c.query_drop("COMMIT").await.unwrap_err();
        assert!(e.to_string().contains("exceeded timeout"), "{e}");
        let v: Vec<i64> = d
            .query("SELECT v FROM t WHERE id IN (3, 4, 5) ORDER BY id")
            .await
            .unwrap();
        assert_eq!(
            v,
            [3, 3, 3],
            "nothing of the expired transactions committed"
        );
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1), "the connection goes on");

        // KILL QUERY from another client stops a running query.
        let mut victim = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        let victim_id = victim.id();
        let running = tokio::spawn(async move {
            let r = victim
                .query_drop("SELECT COUNT(*) FROM seq_1_to_300000000 WHERE seq % 7 = 3")
                .await;
            (r, victim)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        d.query_drop(format!("KILL QUERY {victim_id}"))
            .await
            .unwrap();
        let (r, victim) = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .unwrap()
            .unwrap();
        assert!(r.unwrap_err().to_string().contains("interrupted"));
        drop(victim);

        // Table locks held idle are bounded like a transaction: released at the limit (1 s), so
        // another writer goes on, and the holder's next statement hears it.
        let mut holder = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        // Also when other statements follow it in the same text.
        holder
            .query_drop("LOCK TABLES t WRITE; SELECT 1")
            .await
            .unwrap();
        let started = Instant::now();
        d.query_drop("UPDATE t SET v = 4 WHERE id = 1")
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the other writer waited {:?}",
            started.elapsed()
        );
        let e = holder
            .query_drop("UPDATE t SET v = 5 WHERE id = 2")
            .await
            .unwrap_err();
        // Outside a transaction what ran under the locks had committed: the error says so.
        assert!(
            e.to_string()
                .contains("table locks held longer than the transaction timeout")
                && e.to_string().contains("had already committed"),
            "{e}"
        );
        holder.query_drop("SELECT 1").await.unwrap();
        // A backup lock (which blocks DDL on the table, a deploy's cut-over among it, and the
        // writers queued behind that) is not offered.
        for backup in ["BACKUP LOCK t", "backup /* x */ lock t", "BACKUP UNLOCK"] {
            let e = holder.query_drop(backup).await.unwrap_err();
            assert!(e.to_string().contains("BACKUP"), "{backup}: {e}");
        }
        // Autocommit off, a write, then LOCK TABLES (which commits it), then idle past the limit:
        // the client hears what was kept, not "nothing committed".
        holder.query_drop("SET autocommit = 0").await.unwrap();
        holder
            .query_drop("INSERT INTO t VALUES (777, 7)")
            .await
            .unwrap();
        holder.query_drop("LOCK TABLES t WRITE").await.unwrap();
        holder.query_drop("SELECT 1 FROM t LIMIT 1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let e = holder.query_drop("SELECT 1").await.unwrap_err();
        assert!(
            e.to_string()
                .contains("before LOCK TABLES had been committed"),
            "{e}"
        );
        let kept: Option<i64> = d
            .query_first("SELECT COUNT(*) FROM t WHERE id = 777")
            .await
            .unwrap();
        assert_eq!(kept, Some(1));
    });
}

#[test]
fn bad_input_never_takes_the_gateway_down() {
    let (_root, s) = setup(&[]);
    let (admin, pw, _) = password(&s, "shop", "main", "admin");
    let addr = format!("127.0.0.1:{}", s.mysql_port);
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff, 0xff, 0xff, 0x01, 0, 0, 0],
        vec![5, 0, 0, 1, 0, 0],
        vec![0x20, 0, 0, 1, 0, 0, 0, 0],
        vec![
            0x40, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'u', 0, 0xfe,
        ],
        (0..2000).map(|i| (i * 7) as u8).collect(),
    ];
    for g in &garbage {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut greeting = [0u8; 256];
        let _ = c.read(&mut greeting);
        let _ = c.write_all(g);
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    // A client vanishing in the middle of a large result.
    assert!(s.gateway_sql(&admin, &pw, &["shop"], "CREATE TABLE big (id INT PRIMARY KEY, pad CHAR(200)); INSERT INTO big SELECT seq, REPEAT('x', 200) FROM seq_1_to_50000").status.success());
    let mut child = std::process::Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &s.mysql_port.to_string(),
            "-u",
            &admin,
            &format!("-p{pw}"),
            "shop",
            "-e",
            "SELECT a.* FROM big a, big b LIMIT 100000",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    // A query larger than the packet limit (64 MiB): MySQL's clean error, in sequence, after the
    // whole packet was sent; not a broken protocol.
    let big = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, pymysql\n\
             c = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2], password=sys.argv[3], database='shop', max_allowed_packet=1 << 28)\n\
             try:\n\
             \x20   c.cursor().execute(\"SELECT '\" + 'x' * (65 << 20) + \"'\")\n\
             \x20   print('accepted')\n\
             except pymysql.err.OperationalError as e:\n\
             \x20   print(e.args[0], e.args[1])",
            &s.mysql_port.to_string(),
            &admin,
            &pw,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&big.stdout);
    assert_eq!(
        text.trim(),
        "1153 Got a packet bigger than 'max_allowed_packet' bytes",
        "{}",
        String::from_utf8_lossy(&big.stderr)
    );
    // A client hanging up while its query runs: the query is stopped on the instance.
    let mut child = std::process::Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &s.mysql_port.to_string(),
            "-u",
            &admin,
            &format!("-p{pw}"),
            "shop",
            "-e",
            "SELECT COUNT(*) FROM seq_1_to_3000000000 WHERE seq % 7 = 3",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let _ = child.wait();
    let start = Instant::now();
    loop {
        let o = s.gateway_sql(&admin, &pw, &["shop"], "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE '%seq_1_to_3000000000%' AND info NOT LIKE '%processlist%'");
        if out(&o) == "0" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the abandoned query is still running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Unknown commands and oversized packets get clean errors on a live session.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        let big = "x".repeat(70 << 20);
        let e = c.query_drop(format!("SELECT '{big}'")).await;
        assert!(e.is_err());
    });
    // Wrong passwords from one address are slowed down, and the gateway keeps serving everyone.
    let start = Instant::now();
    for _ in 0..8 {
        let o = s.gateway_sql(&admin, "strata_pw_wrong", &["shop"], "SELECT 1");
        assert!(err(&o).contains("ERROR 1045"));
    }
    assert!(
        start.elapsed() > Duration::from_millis(500),
        "failed logins are slowed down"
    );
    let o = s.gateway_sql(&admin, &pw, &["shop"], "SELECT COUNT(*) FROM big");
    assert_eq!(out(&o), "50000", "{}", err(&o));
}

#[test]
fn a_restarting_instance_gives_a_clean_error_then_serves() {
    let (_root, s) = setup(&[]);
    let (admin, pw, _) = password(&s, "shop", "main", "admin");
    let main = s.wait_branch("shop", "main");
    let pid = main["instance"]["pid"].as_u64().unwrap();
    common::unsafe_kill(pid as u32, "KILL");
    let o = s.gateway_sql(&admin, &pw, &["shop"], "SELECT 1");
    if !o.status.success() {
        assert!(
            err(&o).contains("retry"),
            "a clear error while the instance restarts: {}",
            err(&o)
        );
    }
    s.wait_branch("shop", "main");
    let start = Instant::now();
    loop {
        let o = s.gateway_sql(&admin, &pw, &["shop"], "SELECT 41 + 1");
        if o.status.success() {
            assert_eq!(out(&o), "42");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{}", err(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn shell_and_connect_use_short_lived_passwords() {
    let (_root, s) = setup(&[]);
    // strata shell runs the installed client, over TLS, with a password deleted afterwards.
    let mut child = std::process::Command::new(common::BIN)
        .args(["shell", "shop", "main"])
        .env("STRATA_CONFIG", s.root.join("config.toml"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (7); SELECT id FROM t; SHOW STATUS LIKE 'Ssl_cipher';\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains('7'));
    assert!(
        s.json(&["password", "list", "shop"])
            .as_array()
            .unwrap()
            .is_empty(),
        "the shell's password is gone"
    );

    // strata connect: a local plaintext port, any local credentials, TLS to the gateway.
    let (mut connect, port) = start_connect(&s);
    let o = std::process::Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &port,
            "-u",
            "anyone",
            "shop",
            "--batch",
            "--skip-column-names",
            "-e",
            "SELECT id * 6 FROM t",
        ])
        .output()
        .unwrap();
    assert_eq!(out(&o), "42", "{}", err(&o));
    assert_eq!(
        s.json(&["password", "list", "shop"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    common::unsafe_kill(connect.id(), "INT");
    let _ = connect.wait();
    let gone = |what: &str| {
        let start = Instant::now();
        while !s
            .json(&["password", "list", "shop"])
            .as_array()
            .unwrap()
            .is_empty()
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{what}: its password is deleted on exit"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    gone("connect, Ctrl-C");

    // Ended from outside (a service manager's SIGTERM, a closed terminal's SIGHUP), connect and
    // shell delete their passwords too; the shell's client is stopped with it.
    for sig in ["TERM", "HUP"] {
        let (mut connect, _) = start_connect(&s);
        common::unsafe_kill(connect.id(), sig);
        let _ = connect.wait();
        gone(&format!("connect, SIG{sig}"));
    }
    let mut shell = std::process::Command::new(common::BIN)
        .args(["shell", "shop", "main"])
        .env("STRATA_CONFIG", s.root.join("config.toml"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while s
        .json(&["password", "list", "shop"])
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(10), "shell started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    common::unsafe_kill(shell.id(), "TERM");
    let status = shell.wait().unwrap();
    assert!(status.success(), "{status}");
    gone("shell, SIGTERM");
}

/// `strata connect shop main` on a free port, once it says it is ready: the process and the port.
/// Its output is read no further (closed): the tunnel must not mind.
fn start_connect(s: &Strata) -> (std::process::Child, String) {
    let mut connect = std::process::Command::new(common::BIN)
        .args(["connect", "shop", "main", "--port", "0"])
        .env("STRATA_CONFIG", s.root.join("config.toml"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(connect.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    (connect, port)
}

#[test]
fn unmodified_clients_pymysql_mysqlclient_mysql2() {
    let (_root, s) = setup(&["--transaction-timeout", "2"]);
    let (user, pw, _) = password(&s, "shop", "main", "admin");
    let port = s.mysql_port.to_string();
    let ca = s.ca().display().to_string();
    let clients = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients");
    for (program, script) in [("python3", "py_clients.py"), ("node", "node_client.mjs")] {
        let o = std::process::Command::new(program)
            .arg(clients.join(script))
            .args([&port, &user, &pw, &ca, "2"])
            .current_dir(&clients)
            .output()
            .unwrap();
        assert!(o.status.success(), "{script}: {}\n{}", out(&o), err(&o));
    }
}

#[test]
fn identical_reads_in_flight_share_one_execution_and_stay_correct() {
    let (_root, s) = setup(&[]);
    let (user, pw, _) = password(&s, "shop", "main", "admin");
    assert!(s
        .gateway_sql(&user, &pw, &["shop"], "CREATE TABLE hot (id INT PRIMARY KEY, v INT NOT NULL); INSERT INTO hot SELECT seq, seq FROM seq_1_to_100000")
        .status
        .success());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let o = opts(&s, &user, &pw);
            tasks.push(tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(o).await.unwrap();
                let mut seen = Vec::new();
                for _ in 0..10 {
                    let r: Option<(i64, i64)> = c
                        .query_first("SELECT COUNT(*), SUM(v) FROM hot WHERE v % 3 = 0")
                        .await
                        .unwrap();
                    seen.push(r.unwrap());
                }
                // Inside a transaction nothing is shared: it sees its own writes.
                c.query_drop("BEGIN").await.unwrap();
                c.query_drop("UPDATE hot SET v = v WHERE id = 1")
                    .await
                    .unwrap();
                let r: Option<(i64, i64)> = c
                    .query_first("SELECT COUNT(*), SUM(v) FROM hot WHERE v % 3 = 0")
                    .await
                    .unwrap();
                c.query_drop("ROLLBACK").await.unwrap();
                seen.push(r.unwrap());
                seen
            }));
        }
        for t in tasks {
            for r in t.await.unwrap() {
                assert_eq!(r, (33333, 1_666_683_333));
            }
        }
    });
}

#[test]
fn sysbench_runs_clean_through_the_gateway_over_tls() {
    let (_root, s) = setup(&[]);
    let (user, pw, _) = password(&s, "shop", "main", "admin");
    let port = s.mysql_port.to_string();
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = vec![
            "oltp_read_write".into(),
            "--db-driver=mysql".into(),
            "--mysql-host=127.0.0.1".into(),
            format!("--mysql-port={port}"),
            format!("--mysql-user={user}"),
            format!("--mysql-password={pw}"),
            "--mysql-db=shop".into(),
            "--mysql-ssl=on".into(),
            "--tables=2".into(),
            "--table-size=1000".into(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    // sysbench 1.0 reads its TLS files by fixed names from the working directory; it presents the
    // client pair (the gateway does not ask for one) and verifies the server with cacert.pem.
    let dir = tempfile::tempdir().unwrap();
    let tls = s.ca().parent().unwrap().to_path_buf();
    std::fs::copy(tls.join("ca.pem"), dir.path().join("cacert.pem")).unwrap();
    std::fs::copy(tls.join("server.pem"), dir.path().join("client-cert.pem")).unwrap();
    std::fs::copy(
        tls.join("server-key.pem"),
        dir.path().join("client-key.pem"),
    )
    .unwrap();
    let sysbench = |extra: &[&str]| {
        std::process::Command::new("sysbench")
            .args(args(extra))
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let o = sysbench(&["prepare"]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let o = sysbench(&["--threads=4", "--time=3", "run"]);
    let text = out(&o);
    assert!(o.status.success(), "{text}{}", err(&o));
    // sysbench stops at the first error it does not expect; deadlocks it retries ("ignored errors").
    let queries = text
        .lines()
        .find(|l| l.trim_start().starts_with("queries:"))
        .unwrap_or_default()
        .to_string();
    let n: u64 = queries
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    assert!(n > 100, "{text}");
}

#[test]
fn plaintext_is_refused_when_tls_is_required() {
    // Off loopback TLS is always required; --require-tls-on-loopback applies the same rule here.
    let (_root, s) = setup(&["--require-tls-on-loopback"]);
    let (user, pw, _) = password(&s, "shop", "main", "reader");
    let o = s.gateway_sql(&user, &pw, &["--skip-ssl", "shop"], "SELECT 1");
    assert!(
        err(&o).contains("server does not allow insecure connections, client must use SSL/TLS"),
        "{}",
        err(&o)
    );
    let ca = s.ca().display().to_string();
    let o = s.gateway_sql(
        &user,
        &pw,
        &[
            "--ssl",
            &format!("--ssl-ca={ca}"),
            "--ssl-verify-server-cert",
            "shop",
        ],
        "SELECT 1",
    );
    assert_eq!(out(&o), "1", "{}", err(&o));

    // The HTTP SQL endpoint follows the same setting: plain HTTP refused, HTTPS served.
    let body = r#"{"query":"SELECT 1","session":null}"#;
    let url = |scheme: &str| {
        format!(
            "{scheme}://localhost:{}/psdb.v1alpha1.Database/Execute",
            s.http_port
        )
    };
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "-u",
            &format!("{user}:{pw}"),
            "-d",
            body,
            "-w",
            "\n%{http_code}",
        ])
        .arg(url("http"))
        .output()
        .unwrap();
    let text = out(&o);
    assert!(
        text.ends_with("403") && text.contains("client must use SSL/TLS"),
        "{text}"
    );
    let o = std::process::Command::new("curl")
        .args([
            "-s",
            "--cacert",
            &ca,
            "-u",
            &format!("{user}:{pw}"),
            "-d",
            body,
            "-w",
            "\n%{http_code}",
        ])
        .arg(url("https"))
        .output()
        .unwrap();
    assert!(out(&o).ends_with("200"), "{}", out(&o));
}

#[test]
fn the_built_in_shell_serves_when_no_client_is_installed() {
    let (_root, s) = setup(&[]);
    let empty = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::BIN)
        .args(["shell", "shop", "main"])
        .env("STRATA_CONFIG", s.root.join("config.toml"))
        .env("PATH", empty.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(5));\nINSERT INTO t VALUES (1, 'a'), (2, NULL);\nSELECT v, id * 21 AS x\n  FROM t ORDER BY id;\nSELECT * FROM nope;\nexit\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(text.contains("Query OK, 2 rows affected"), "{text}");
    assert!(
        text.contains("| a    | 21 |") && text.contains("| NULL | 42 |"),
        "{text}"
    );
    assert!(text.contains("2 rows in set"), "{text}");
    assert!(text.contains("ERROR 1146 (42S02)"), "{text}");
    assert!(s
        .json(&["password", "list", "shop"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn unknown_and_unsupported_commands_get_mysql_errors() {
    use strata_gateway::backend::Backend;
    let (_root, s) = setup(&[]);
    let (user, pw, _) = password(&s, "shop", "main", "admin");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], s.mysql_port));
        let mut c = Backend::connect(
            addr,
            &user,
            &pw,
            "shop",
            strata_gateway::backend::CLIENT_PROFILE,
            45,
        )
        .await
        .unwrap();
        for (command, code) in [
            (vec![0x42u8], 1047u16),
            (vec![0x17, 9, 9, 9, 9, 0, 1, 0, 0, 0], 1243),
            (vec![], 1047),
        ] {
            c.send_command(&command).await.unwrap();
            let f = c.next_frame().await.unwrap();
            let e = strata_wire::packets::ErrPacket::parse(f.payload()).unwrap();
            assert_eq!(e.code, code, "{command:?}: {}", e.message);
        }
        // The session is still usable.
        let t = c.query("SELECT 1").await.unwrap();
        assert_eq!(t.rows, 1);
    });
}

#[test]
fn change_user_switches_password_role_and_state() {
    let (_root, s) = setup(&[]);
    let (admin, admin_pw, _) = password(&s, "shop", "main", "admin");
    let (reader, reader_pw, _) = password(&s, "shop", "main", "reader");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &admin_pw))
            .await
            .unwrap();
        c.query_drop("CREATE TABLE cu (id INT PRIMARY KEY)")
            .await
            .unwrap();
        c.query_drop("SET @x = 1").await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("INSERT INTO cu VALUES (1)").await.unwrap();
        // To the reader password: its role, a fresh session (the open transaction rolled back).
        c.change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some(reader.clone()))
                .with_pass(Some(reader_pw.clone())),
        )
        .await
        .unwrap();
        // The very first statement runs as the new password (not on the old one's connection,
        // which held the session's state).
        let e = c.query_drop("INSERT INTO cu VALUES (2)").await.unwrap_err();
        assert!(e.to_string().contains("INSERT command denied"), "{e}");
        let x: Option<Option<i64>> = c.query_first("SELECT @x").await.unwrap();
        assert_eq!(x, Some(None), "session state is reset");
        let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM cu").await.unwrap();
        assert_eq!(n, Some(0), "the open transaction was rolled back");
        let e = c.query_drop("INSERT INTO cu VALUES (2)").await.unwrap_err();
        assert!(e.to_string().contains("INSERT command denied"), "{e}");
        // Again from admin with state, then a statement that keeps state (SET NAMES) first: every
        // statement after the change is the reader's.
        c.change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some(admin.clone()))
                .with_pass(Some(admin_pw.clone())),
        )
        .await
        .unwrap();
        let admin_user: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
        c.query_drop("SET @y = 1").await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some(reader.clone()))
                .with_pass(Some(reader_pw.clone())),
        )
        .await
        .unwrap();
        c.query_drop("SET NAMES utf8mb4").await.unwrap();
        for _ in 0..3 {
            let e = c.query_drop("INSERT INTO cu VALUES (4)").await.unwrap_err();
            assert!(e.to_string().contains("INSERT command denied"), "{e}");
        }
        let user: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
        assert_ne!(
            user, admin_user,
            "statements run as the new password's user"
        );
        // Back to admin, then a wrong password: refused, and the connection ends.
        c.change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some(admin.clone()))
                .with_pass(Some(admin_pw.clone())),
        )
        .await
        .unwrap();
        c.query_drop("INSERT INTO cu VALUES (3)").await.unwrap();
        let e = c
            .change_user(
                mysql_async::ChangeUserOpts::default()
                    .with_user(Some(admin.clone()))
                    .with_pass(Some("wrong".into())),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Access denied"), "{e}");
    });
    // A malformed COM_CHANGE_USER gets an error, and the gateway goes on serving.
    rt.block_on(async {
        use strata_gateway::backend::Backend;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], s.mysql_port));
        let mut c = Backend::connect(
            addr,
            &admin,
            &admin_pw,
            "shop",
            strata_gateway::backend::CLIENT_PROFILE,
            45,
        )
        .await
        .unwrap();
        c.send_command(&[0x11, b'x', 0]).await.unwrap();
        let f = c.next_frame().await.unwrap();
        let e = strata_wire::packets::ErrPacket::parse(f.payload()).unwrap();
        assert_eq!(e.code, 1835, "{}", e.message);
        let mut d = mysql_async::Conn::new(opts(&s, &admin, &admin_pw))
            .await
            .unwrap();
        let n: Option<i64> = d.query_first("SELECT COUNT(*) FROM cu").await.unwrap();
        assert_eq!(n, Some(1));
    });
}

/// Thousands of sockets that never log in or never finish their headers (slow-loris), on both SQL
/// listeners and the REST API: turned away past the bounds, closed at the login deadline; meanwhile
/// the REST API, a logged-in client, new logins from other addresses and the HTTP SQL endpoint all
/// answer.
#[test]
fn idle_sockets_before_login_starve_nobody() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.max(soft), hard);
    }
    let (_root, s) = setup(&["--login-timeout", "2", "--max-logins-per-address", "50"]);
    let (admin, pw, _) = password(&s, "shop", "main", "admin");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut logged_in = rt
        .block_on(mysql_async::Conn::new(opts(&s, &admin, &pw)))
        .unwrap();

    let started = Instant::now();
    let mut held = Vec::new();
    let attacker: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
    let api_port: u16 = s
        .api_url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the API's port");
    for i in 0..4500 {
        let port = [s.mysql_port, s.http_port, api_port][i % 3];
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(attacker).expect("bind 127.0.0.2");
        let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        if let Ok(stream) = rt.block_on(socket.connect(to)) {
            let mut stream = stream.into_std().unwrap();
            stream.set_nonblocking(false).unwrap();
            if port == api_port && i % 2 == 0 {
                // Slow headers: a request line and never the blank line.
                let _ = stream.write_all(b"GET /v1/organizations HTTP/1.1\r\nhost: x\r\n");
            }
            held.push((port, stream));
        }
    }
    assert!(held.len() > 3000, "connected {}", held.len());

    // Everyone else is served.
    let dbs = s.json(&["database", "list"]);
    assert_eq!(dbs.as_array().map(Vec::len), Some(1), "{dbs}");
    let one: Option<i64> = rt.block_on(logged_in.query_first("SELECT 1")).unwrap();
    assert_eq!(one, Some(1));
    let mut fresh = rt
        .block_on(mysql_async::Conn::new(opts(&s, &admin, &pw)))
        .expect("a new login from another address");
    let two: Option<i64> = rt.block_on(fresh.query_first("SELECT 2")).unwrap();
    assert_eq!(two, Some(2));
    let http = std::process::Command::new("curl")
        .args(["-s", "-u", &format!("{admin}:{pw}")])
        .args(["-H", "content-type: application/json"])
        .args(["-d", r#"{"query":"SELECT 3","session":null}"#])
        .arg(format!(
            "http://127.0.0.1:{}/psdb.v1alpha1.Database/Execute",
            s.http_port
        ))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&http.stdout);
    assert!(body.contains("\"rows\""), "HTTP SQL answers: {body}");

    // The MySQL sockets past the bound were told at once; every held socket is closed once the
    // login deadline (2 s) passes.
    let (mut refused, mut closed) = (0, 0);
    for (port, sock) in &mut held {
        sock.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        loop {
            match sock.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    closed += 1;
                    break;
                }
                Err(e) => panic!("socket to {port} still open after the login deadline: {e}"),
            }
        }
        if *port == s.mysql_port && got.windows(20).any(|w| w == b"Too many connections") {
            refused += 1;
        }
    }
    assert_eq!(closed, held.len());
    assert!(refused > 1000, "{refused} told 1040");
    assert!(started.elapsed() < Duration::from_secs(60));
    let _ = rt.block_on(logged_in.disconnect());
    let _ = rt.block_on(fresh.disconnect());
}

/// A password cannot change the credential its role's clients share on the instance: `SET PASSWORD`
/// (and every account statement) is refused by the gateway, and the form the gateway cannot read
/// (a statement prepared from a variable), which the server allows on one's own account, is undone
/// by the instance's supervisor within seconds: other clients of the role keep logging in, and
/// the changed credential stops working.
#[test]
fn a_password_cannot_take_its_roles_credential() {
    let (_root, s) = setup(&[]);
    let main_id = s.wait_branch("shop", "main")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (reader, reader_pw, _) = password(&s, "shop", "main", "reader");
    let (other, other_pw, _) = password(&s, "shop", "main", "reader");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts(&s, &reader, &reader_pw))
            .await
            .unwrap();
        for sql in [
            "SET PASSWORD = PASSWORD('stolen')",
            "EXECUTE IMMEDIATE 'SET PASSWORD = PASSWORD(''stolen'')'",
            "ALTER USER CURRENT_USER() IDENTIFIED BY 'stolen'",
            "GRANT ALL ON *.* TO CURRENT_USER()",
        ] {
            let e = c.query_drop(sql).await.unwrap_err();
            assert!(e.to_string().contains("managed with the API"), "{sql}: {e}");
        }
        // What would reach other passwords' work on the shared role user, or outlive the
        // connection with its locks: refused.
        for sql in [
            "KILL USER strata_reader",
            "KILL QUERY USER strata_reader",
            "KILL QUERY ID 1",
            "SELECT 1; KILL 1",
            "XA START 'x'",
            "XA RECOVER",
        ] {
            let e = c.query_drop(sql).await.unwrap_err();
            assert!(e.to_string().contains("VT12001"), "{sql}: {e}");
        }
        // Text built at run time cannot be read: refused on every branch.
        c.query_drop("SET @q = CONCAT('SET PASSWORD = PASSWORD(', QUOTE('stolen'), ')')")
            .await
            .unwrap();
        for sql in [
            "PREPARE s FROM @q",
            "EXECUTE IMMEDIATE @q",
            "EXECUTE IMMEDIATE CONCAT('XA', ' START ''p''')",
            "EXECUTE IMMEDIATE CONCAT('KI', 'LL QUERY USER strata_reader')",
        ] {
            let e = c.query_drop(sql).await.unwrap_err();
            assert!(e.to_string().contains("built at run time"), "{sql}: {e}");
        }
        c.disconnect().await.unwrap();
    });
    // Whoever holds the role's credential on the host changes it: the supervisor puts it back.
    s.sql_ok(
        &main_id,
        "strata_reader",
        "SET PASSWORD = PASSWORD('stolen')",
    );
    // The role's own credential logs in again within seconds, and the stolen one does not.
    let started = Instant::now();
    let mut refused = 0;
    while !s
        .mariadb(&main_id, "strata_reader", "SELECT 1")
        .status
        .success()
    {
        refused += 1;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the role's credential was not restored"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("the role's credential was refused {refused} times before it was restored");
    let port: u16 =
        std::fs::read_to_string(s.instance_dir(&main_id).join("client-strata_reader.cnf"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("port=")?.parse().ok())
            .unwrap();
    let stolen = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("strata_reader"))
        .pass(Some("stolen"))
        .prefer_socket(false);
    rt.block_on(async {
        assert!(
            mysql_async::Conn::new(stolen).await.is_err(),
            "the changed credential still logs in"
        );
        // No account of the datadir template logs in (root had no password on loopback).
        for user in ["root", ""] {
            let o = mysql_async::OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(port)
                .user(Some(user))
                .prefer_socket(false);
            assert!(
                mysql_async::Conn::new(o).await.is_err(),
                "{user:?} logs into the instance without a password"
            );
        }
        // A password assignment among others in one SET is an account statement too.
        let mut c = mysql_async::Conn::new(opts(&s, &other, &other_pw))
            .await
            .unwrap();
        let e = c
            .query_drop("SET @a = 1, PASSWORD = PASSWORD('stolen')")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("managed with the API"), "{e}");
        drop(c);
        // Every other client of the role is served, on new backend connections too.
        let mut pinned = mysql_async::Conn::new(opts(&s, &other, &other_pw))
            .await
            .unwrap();
        pinned.query_drop("BEGIN").await.unwrap();
        let mut fresh = mysql_async::Conn::new(opts(&s, &other, &other_pw))
            .await
            .unwrap();
        let one: Option<i64> = fresh.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        pinned.query_drop("ROLLBACK").await.unwrap();
    });
}

/// Request bodies on the HTTP SQL endpoint are bounded in flight: of four unfinished uploads
/// declaring the largest size, three fit the budget and the fourth gets `resource_exhausted`
/// instead of the process's memory; small requests are served meanwhile.
#[test]
fn unfinished_http_bodies_cannot_take_the_memory() {
    let (_root, s) = setup(&[]);
    let (user, pw, _) = password(&s, "shop", "main", "reader");
    let auth = {
        use std::fmt::Write as _;
        let raw = format!("{user}:{pw}");
        // Base64 by hand: the test crate has no encoder.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in raw.as_bytes().chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        let mut h = String::new();
        let _ = write!(h, "Basic {out}");
        h
    };
    let request = |length: usize, body: &str| {
        format!(
            "POST /psdb.v1alpha1.Database/Execute HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n{body}"
        )
    };
    let small = r#"{"query":"SELECT 1","session":null}"#;
    let ask = || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(request(small.len(), small).as_bytes()).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert!(ask().contains("\"rows\""), "served at first");
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).unwrap();
        c.write_all(request(64 << 20, "{\"query\":\"").as_bytes())
            .unwrap();
        held.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        ask().contains("\"rows\""),
        "small requests are served meanwhile"
    );
    // One of the four (the last to ask) was refused once it had waited for room (5 s); the
    // others still upload.
    let mut refused = 0;
    for c in held.iter_mut().rev() {
        c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = c.read(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.contains("resource_exhausted") {
                refused += 1;
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert_eq!(refused, 1, "one upload past the budget is refused");
}

/// Each password has its own user on the instance: the server shows a password only its own
/// work (processlist), stops only its own (KILL), ends a deleted password's connections, and
/// keeps the views a deleted password defined working. A branch made from another never lets the
/// parent's password users in.
#[test]
fn the_server_keeps_passwords_apart() {
    let (_root, s) = setup(&[]);
    let main_id = s.wait_branch("shop", "main")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, a_pw, a_id) = password(&s, "shop", "main", "admin");
    let (b, b_pw, _) = password(&s, "shop", "main", "admin");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut ca = mysql_async::Conn::new(opts(&s, &a, &a_pw)).await.unwrap();
        let mut cb = mysql_async::Conn::new(opts(&s, &b, &b_pw)).await.unwrap();
        ca.query_drop("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2); CREATE VIEW v AS SELECT COUNT(*) AS n FROM t")
            .await
            .unwrap();
        let ua: String = ca.query_first("SELECT USER()").await.unwrap().unwrap();
        let ub: String = cb.query_first("SELECT USER()").await.unwrap().unwrap();
        assert_ne!(ua, ub, "one server user per password");
        // A's long query: invisible to B, and out of B's reach.
        let mut cs = mysql_async::Conn::new(opts(&s, &a, &a_pw)).await.unwrap();
        let slow = tokio::spawn(async move {
            let r: Result<Option<i64>, _> = cs.query_first("SELECT SLEEP(4) AS marker_a1").await;
            (cs, r)
        });
        tokio::time::sleep(Duration::from_millis(800)).await;
        let seen_by_b: Vec<(u64, String)> = cb
            .query("SELECT ID, USER FROM information_schema.PROCESSLIST WHERE INFO LIKE CONCAT('%marker', '_a1%')")
            .await
            .unwrap();
        assert!(seen_by_b.is_empty(), "B sees A's query: {seen_by_b:?}");
        let listed: Vec<mysql_async::Row> = cb.query("SHOW FULL PROCESSLIST").await.unwrap();
        for row in &listed {
            let user: Option<String> = row.get(1);
            assert_eq!(user.as_deref(), Some(ub.split('@').next().unwrap()), "{row:?}");
        }
        let seen_by_a: Vec<(u64, String)> = ca
            .query("SELECT ID, USER FROM information_schema.PROCESSLIST WHERE INFO LIKE CONCAT('%marker', '_a1%')")
            .await
            .unwrap();
        assert_eq!(seen_by_a.len(), 1, "A sees its own query");
        let e = cb
            .query_drop(format!("KILL QUERY {}", seen_by_a[0].0))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("not owner of thread")
                || e.to_string().contains("Unknown thread id"),
            "{e}"
        );
        let (cs, r) = slow.await.unwrap();
        assert_eq!(r.unwrap(), Some(0), "A's query ran to its end");
        drop(cs);
    });
    // Deleting A ends its connections and its logins; the view it made keeps working.
    rt.block_on(async {
        let mut ca = mysql_async::Conn::new(opts(&s, &a, &a_pw)).await.unwrap();
        ca.query_drop("BEGIN").await.unwrap();
        ca.query_drop("SELECT * FROM t FOR UPDATE").await.unwrap();
        let http = |user: &str, pw: &str| http_execute(&s, user, pw, "SELECT 1", 20);
        // A login the HTTP endpoint has just checked (kept for a second) is refused at once too.
        let before = http(&a, &a_pw);
        assert!(before.contains("\"rows\""), "{before}");
        s.ok(&["password", "delete", "shop", "main", &a_id, "--force"]);
        let after = http(&a, &a_pw);
        assert!(after.contains("unauthenticated"), "{after}");
        // The very next statement hears why (not "branch not available"), and the session ends.
        let e = ca.query_drop("SELECT 1").await.unwrap_err();
        assert!(
            e.to_string().contains("1045") && e.to_string().contains("deleted or has expired"),
            "{e}"
        );
        assert!(mysql_async::Conn::new(opts(&s, &a, &a_pw)).await.is_err());
        let mut cb = mysql_async::Conn::new(opts(&s, &b, &b_pw)).await.unwrap();
        // A's transaction was rolled back with its connection: its row locks are gone.
        cb.query_drop("SET SESSION innodb_lock_wait_timeout = 2")
            .await
            .unwrap();
        cb.query_drop("UPDATE t SET id = 3 WHERE id = 2")
            .await
            .unwrap();
        let n: Option<i64> = cb.query_first("SELECT n FROM v").await.unwrap();
        assert_eq!(n, Some(2), "the deleted password's view still works");
    });
    let locked = s.sql_ok(
        &main_id,
        "strata_root",
        &format!(
            "SELECT IF(JSON_VALUE(Priv, '$.account_locked') IN ('1', 'true'), 'Y', 'N') FROM mysql.global_priv WHERE User = 'strata_p_{a_id}'"
        ),
    );
    assert_eq!(locked.trim(), "Y");
    // A branch made from main: main's password users are there (copied with the data) but locked.
    let dev = s.json(&["branch", "create", "shop", "dev", "--wait"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = Instant::now();
    loop {
        let open = s.sql_ok(
            &dev,
            "strata_root",
            "SELECT COUNT(*) FROM mysql.global_priv WHERE User LIKE 'strata\\_p\\_%' AND IFNULL(JSON_VALUE(Priv, '$.account_locked'), '0') NOT IN ('1', 'true')",
        );
        if open.trim() == "0" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the parent's password users log in on the child"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Failed logins slow down their address's failures and block a username only: a stranger's
/// failures from the same address never delay or lock out another password.
#[test]
fn failed_logins_of_a_stranger_do_not_lock_out_the_others() {
    let (_root, s) = setup(&[]);
    let (user, pw, _) = password(&s, "shop", "main", "reader");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for i in 0..9 {
            let e = mysql_async::Conn::new(opts(&s, "nobody", &format!("wrong{i}")))
                .await
                .unwrap_err();
            assert!(e.to_string().contains("Access denied"), "{e}");
        }
        let started = Instant::now();
        let mut c = mysql_async::Conn::new(opts(&s, &user, &pw)).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "a good login waited {:?} behind another's failures",
            started.elapsed()
        );
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        // The address's failures are slowed down.
        let started = Instant::now();
        assert!(mysql_async::Conn::new(opts(&s, &user, "wrong"))
            .await
            .is_err());
        assert!(
            started.elapsed() >= Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
    });
}

/// Sockets held open before login from a few addresses fill a listener's bound: a newcomer from
/// another address still gets in, as the address holding the most gives up its oldest place.
#[test]
fn a_few_addresses_cannot_fill_the_login_places_for_everyone() {
    let (_root, s) = setup(&[
        "--login-timeout",
        "20",
        "--max-logins",
        "60",
        "--max-logins-per-address",
        "50",
    ]);
    let (admin, pw, _) = password(&s, "shop", "main", "admin");
    let api_port: u16 = s
        .api_url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the API's port");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut held = Vec::new();
    for port in [s.mysql_port, api_port] {
        for (from, n) in [("127.0.0.2", 50), ("127.0.0.3", 10)] {
            for _ in 0..n {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
                let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                held.push(rt.block_on(socket.connect(to)).unwrap());
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut c = rt
        .block_on(mysql_async::Conn::new(opts(&s, &admin, &pw)))
        .expect("a login from another address");
    let one: Option<i64> = rt.block_on(c.query_first("SELECT 1")).unwrap();
    assert_eq!(one, Some(1));
    let dbs = s.json(&["database", "list"]);
    assert_eq!(dbs.as_array().map(Vec::len), Some(1), "{dbs}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let _ = rt.block_on(c.disconnect());
    drop(held);
}

/// Logged-in clients are bounded too: one password holds at most its share of the gateway's
/// sessions (MySQL's `1203`, its idle connections cannot keep the others out), and past the bound
/// in all a new connection hears `1040` on both front doors while the REST API and the sessions
/// already open keep answering (the bound leaves descriptors for them).
#[test]
fn logged_in_clients_are_bounded_per_password_and_in_all() {
    let (_root, s) = setup(&[
        "--max-connections",
        "24",
        "--max-connections-per-password",
        "10",
    ]);
    let (app, app_pw, _) = password(&s, "shop", "main", "readwriter");
    let (other, other_pw, _) = password(&s, "shop", "main", "reader");
    let (third, third_pw, _) = password(&s, "shop", "main", "admin");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let connect = |u: &str, p: &str| rt.block_on(mysql_async::Conn::new(opts(&s, u, p)));

    let mut held = Vec::new();
    for i in 0..10 {
        held.push(connect(&app, &app_pw).unwrap_or_else(|e| panic!("login {i}: {e}")));
    }
    let e = connect(&app, &app_pw).expect_err("the 11th session of one password");
    assert!(
        matches!(&e, mysql_async::Error::Server(se) if se.code == 1203 && se.message.contains("max_user_connections")),
        "{e}"
    );
    // Another password is not affected, and one session ending gives its place back.
    held.push(connect(&other, &other_pw).expect("another password logs in"));
    let _ = rt.block_on(held.remove(0).disconnect());
    std::thread::sleep(Duration::from_millis(200));
    held.push(connect(&app, &app_pw).expect("a place given back is taken again"));

    // The bound in all: 24 open connections (20 here, logged in), then 1040 on both doors.
    for _ in 0..9 {
        held.push(connect(&other, &other_pw).expect("other password"));
    }
    while held.len() < 24 {
        match connect(&third, &third_pw) {
            Ok(c) => held.push(c),
            Err(e) => panic!("{} open: {e}", held.len()),
        }
    }
    let e = connect(&third, &third_pw).expect_err("past the bound in all");
    assert!(
        matches!(&e, mysql_async::Error::Server(se) if se.code == 1040),
        "{e}"
    );
    let http = http_execute(&s, &third, &third_pw, "SELECT 3", 5);
    assert!(
        http.contains("resource_exhausted"),
        "HTTP SQL past the bound hears 503: {http}"
    );
    // The API and the sessions already open keep answering.
    let dbs = s.json(&["database", "list"]);
    assert_eq!(dbs.as_array().map(Vec::len), Some(1), "{dbs}");
    for c in held.iter_mut() {
        let one: Option<i64> = rt.block_on(c.query_first("SELECT 1")).unwrap();
        assert_eq!(one, Some(1));
    }
    // COM_CHANGE_USER to a password at its share is refused.
    let mut c = held.pop().unwrap();
    let r = rt.block_on(
        c.change_user(
            mysql_async::ChangeUserOpts::default()
                .with_user(Some(app.clone()))
                .with_pass(Some(app_pw.clone())),
        ),
    );
    assert!(r.is_err(), "change_user past the password's share");
    for c in held {
        let _ = rt.block_on(c.disconnect());
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut c = connect(&third, &third_pw).expect("places given back");
    let one: Option<i64> = rt.block_on(c.query_first("SELECT 1")).unwrap();
    assert_eq!(one, Some(1));
}

/// The row limit holds an UPDATE or DELETE however it is run (from a string, prepared with SQL,
/// inside a compound statement, beside a statement that commits), on both front doors; table
/// locks the gateway could not follow are refused; and an UPDATE under `LOCK TABLES` keeps the
/// client's table locks.
#[test]
fn the_row_limit_holds_wherever_the_statement_runs() {
    let (_root, s) = setup(&["--max-rows", "100"]);
    let (admin, pw, _) = password(&s, "shop", "main", "admin");
    let o = s.gateway_sql(
        &admin,
        &pw,
        &["shop"],
        "CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t SELECT seq, 0 FROM seq_1_to_150",
    );
    assert!(o.status.success(), "{}", err(&o));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        for (text, expect) in [
            (
                "EXECUTE IMMEDIATE 'UPDATE t SET v = 1'",
                "Row count exceeded 100",
            ),
            (
                "EXECUTE IMMEDIATE 'DEL' 'ETE FROM t'",
                "Row count exceeded 100",
            ),
            (
                "BEGIN NOT ATOMIC UPDATE t SET v = 1; END",
                "compound statement",
            ),
            ("IF 1 THEN DELETE FROM t; END IF", "compound statement"),
            ("UPDATE t SET v = 1; ANALYZE TABLE t", "cannot share a text"),
            ("UPDATE t SET v = 1; FLUSH TABLES", "cannot share a text"),
            (
                "DELETE FROM t; EXECUTE IMMEDIATE 'COMMIT'",
                "cannot share a text",
            ),
            ("UPDATE t SET v = 1; CHECK TABLE t", "cannot share a text"),
            (
                "EXECUTE IMMEDIATE 'LOCK TABLES t WRITE'",
                "statements of their own",
            ),
            ("PREPARE l FROM 'BACKUP LOCK t'", "statements of their own"),
            (
                "BEGIN NOT ATOMIC LOCK TABLES t WRITE; END",
                "statements of their own",
            ),
        ] {
            let e = c.query_drop(text).await.unwrap_err();
            assert!(e.to_string().contains(expect), "{text}: {e}");
        }
        // Upserts: the rows they update or replace count, the rows they insert do not.
        c.query_drop("CREATE TABLE up (id INT PRIMARY KEY, v INT); INSERT INTO up SELECT seq, 0 FROM seq_1_to_150")
            .await
            .unwrap();
        for text in [
            "INSERT INTO up SELECT id, 5 FROM up ON DUPLICATE KEY UPDATE v = 5",
            "REPLACE INTO up SELECT id, 5 FROM up",
            "EXECUTE IMMEDIATE 'REPLACE INTO up SELECT id, 5 FROM up'",
        ] {
            let e = c.query_drop(text).await.unwrap_err();
            assert!(e.to_string().contains("Row count exceeded 100"), "{text}: {e}");
        }
        let e = c
            .exec_drop(
                "INSERT INTO up SELECT id, ? FROM up ON DUPLICATE KEY UPDATE v = ?",
                (5, 5),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Row count exceeded 100"), "{e}");
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("UPDATE up SET v = 1 WHERE id = 1").await.unwrap();
        let e = c
            .query_drop("REPLACE INTO up SELECT id, 5 FROM up")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Row count exceeded 100"), "{e}");
        c.query_drop("COMMIT").await.unwrap();
        let changed: Option<(i64, i64)> = c
            .query_first("SELECT SUM(v = 5), SUM(v = 1) FROM up")
            .await
            .unwrap();
        assert_eq!(changed, Some((0, 1)), "nothing of a refused upsert stays");
        // Within the limit, and inserts of any number: done.
        c.query_drop("INSERT INTO up SELECT id, 8 FROM up WHERE id <= 60 ON DUPLICATE KEY UPDATE v = 8")
            .await
            .unwrap();
        c.query_drop("INSERT INTO up SELECT seq, 9 FROM seq_1001_to_1150 ON DUPLICATE KEY UPDATE v = 9")
            .await
            .unwrap();
        let counts: Option<(i64, i64, i64)> = c
            .query_first("SELECT COUNT(*), SUM(v = 8), SUM(v = 9) FROM up")
            .await
            .unwrap();
        assert_eq!(counts, Some((300, 60, 150)));
        let out = http_execute(&s, &admin, &pw, "REPLACE INTO up SELECT id, 5 FROM up", 10);
        assert!(out.contains("Row count exceeded 100"), "{out}");
        // In Oracle mode a plain BEGIN opens a block: the same refusal.
        let mut ora = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        ora.query_drop("SET sql_mode = 'ORACLE'").await.unwrap();
        for text in [
            "BEGIN UPDATE t SET v = 1; END;",
            "EXECUTE IMMEDIATE 'BEGIN UPDATE t SET v = 1; END;'",
        ] {
            let e = ora.query_drop(text).await.unwrap_err();
            assert!(e.to_string().contains("compound statement"), "{text}: {e}");
        }
        let e = ora
            .query_drop("BEGIN EXECUTE IMMEDIATE 'LOCK TABLES t WRITE'; END;")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("VT12001"), "{e}");
        ora.disconnect().await.unwrap();
        // Tables are InnoDB only, enforced by the server: a MyISAM or Aria table could not be
        // rolled back by the limit (its change stayed while the client heard it refused).
        for engine in ["Aria", "MyISAM", "MEMORY"] {
            let e = c
                .query_drop(format!(
                    "CREATE TABLE nt (id INT PRIMARY KEY) ENGINE={engine}"
                ))
                .await
                .unwrap_err();
            assert!(e.to_string().contains("1290"), "{engine}: {e}");
            let e = c
                .query_drop(format!(
                    "CREATE TEMPORARY TABLE ntt (id INT PRIMARY KEY) ENGINE={engine}"
                ))
                .await
                .unwrap_err();
            assert!(e.to_string().contains("1290"), "temporary {engine}: {e}");
        }
        assert!(c
            .query_drop("SET SESSION enforce_storage_engine = NULL")
            .await
            .is_err());
        // Prepared with SQL, then executed: the EXECUTE is held to the limit.
        c.query_drop("PREPARE d FROM 'DELETE FROM t WHERE id > ?'")
            .await
            .unwrap();
        let e = c
            .query_drop("SET @n = 0")
            .await
            .and(c.query_drop("EXECUTE d USING @n").await);
        assert!(
            e.as_ref()
                .is_err_and(|e| e.to_string().contains("Row count exceeded 100")),
            "{e:?}"
        );
        // Within the limit it runs, and commits.
        c.query_drop("SET @n = 140").await.unwrap();
        c.query_drop("EXECUTE d USING @n").await.unwrap();
        assert_eq!(c.affected_rows(), 10);
        c.query_drop("PREPARE r FROM 'SELECT COUNT(*) FROM t'")
            .await
            .unwrap();
        let n: Option<i64> = c.query_first("EXECUTE r").await.unwrap();
        assert_eq!(n, Some(140));
        c.query_drop("DEALLOCATE PREPARE d").await.unwrap();

        // An UPDATE under LOCK TABLES (autocommit on) keeps the client's table locks: another
        // client still waits for the table.
        c.query_drop("LOCK TABLES t WRITE").await.unwrap();
        c.query_drop("UPDATE t SET v = 5 WHERE id = 1")
            .await
            .unwrap();
        assert_eq!(c.affected_rows(), 1);
        let e = c.query_drop("UPDATE t SET v = 6").await.unwrap_err();
        assert!(e.to_string().contains("Row count exceeded 100"), "{e}");
        let mut other = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        let blocked = other
            .query_drop("SET STATEMENT lock_wait_timeout = 1 FOR UPDATE t SET v = 7 WHERE id = 2")
            .await;
        assert!(
            blocked.is_err(),
            "the table is still locked by the first client"
        );
        c.query_drop("UNLOCK TABLES").await.unwrap();
        other
            .query_drop("UPDATE t SET v = 7 WHERE id = 2")
            .await
            .unwrap();
        // The first UPDATE under the locks was committed; the refused one changed nothing.
        let sum: Option<(i64, i64)> = other
            .query_first("SELECT COUNT(*), SUM(v) FROM t")
            .await
            .unwrap();
        assert_eq!(sum, Some((140, 12)));
        c.disconnect().await.unwrap();
        other.disconnect().await.unwrap();
    });
    // A latin1 client: `--` and a no-break space open a comment for the server, so a quote on
    // that line hides nothing from the gateway either.
    let latin1 = |sql: &str| {
        let o = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, pymysql\n\
                 c = pymysql.connect(host='127.0.0.1', port=int(sys.argv[1]), user=sys.argv[2], password=sys.argv[3], database='shop', charset='latin1', client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)\n\
                 try:\n\
                 \x20   c.cursor().execute(sys.argv[4].replace('~', '\\xa0'))\n\
                 \x20   print('ok')\n\
                 except pymysql.err.MySQLError as e:\n\
                 \x20   print(e.args[0], e.args[1])",
                &s.mysql_port.to_string(),
                &admin,
                &pw,
                sql,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    for (body, expect) in [
        ("DELETE FROM t WHERE id > 0", "Row count exceeded 100"),
        (
            "BEGIN NOT ATOMIC UPDATE t SET v = 1; END",
            "compound statement",
        ),
        (
            "SET max_statement_time = 0",
            "max_statement_time can be set only",
        ),
    ] {
        let r = latin1(&format!("SELECT 1 --~'\n; {body}; SELECT 1 -- '"));
        assert!(r.contains(expect), "{body}: {r}");
    }
    // The HTTP SQL endpoint holds the same limit on the same forms.
    for (sql, expect) in [
        (
            "EXECUTE IMMEDIATE 'UPDATE t SET v = 1'",
            "Row count exceeded 100",
        ),
        ("BEGIN NOT ATOMIC DELETE FROM t; END", "compound statement"),
        (
            "EXECUTE IMMEDIATE 'LOCK TABLES t WRITE'",
            "statements of their own",
        ),
    ] {
        let http = std::process::Command::new("curl")
            .args(["-s", "-u", &format!("{admin}:{pw}")])
            .args(["-H", "content-type: application/json"])
            .arg("-d")
            .arg(serde_json::json!({"query": sql, "session": null}).to_string())
            .arg(format!(
                "http://127.0.0.1:{}/psdb.v1alpha1.Database/Execute",
                s.http_port
            ))
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&http.stdout);
        assert!(body.contains(expect), "{sql}: {body}");
    }
    assert_eq!(
        out(&s.gateway_sql(&admin, &pw, &["shop"], "SELECT COUNT(*), SUM(v) FROM t")),
        "140\t12"
    );
}

/// A compound statement is timed as a whole: the instance's `max_statement_time` holds each
/// statement inside it, so a loop of statements each under the limit ran on past it.
#[test]
fn a_compound_statement_is_timed_as_a_whole() {
    let (_root, s) = setup(&["--query-timeout", "2"]);
    let (admin, pw, _) = password(&s, "shop", "main", "admin");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        let started = Instant::now();
        let r = c
            .query_drop("BEGIN NOT ATOMIC DECLARE i INT DEFAULT 0; WHILE i < 6 DO DO SLEEP(1.5); SET i = i + 1; END WHILE; END")
            .await;
        let took = started.elapsed();
        assert!(r.is_err(), "stopped at the query timeout");
        assert!(took < Duration::from_secs(7), "took {took:?}");
        // The session goes on.
        let one: Option<i64> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        c.disconnect().await.unwrap();
    });
}

/// A transaction whose instance connection breaks is gone: the statement that meets the break
/// hears it, and so does the next one (a ROLLBACK is answered OK), so nothing sent in the belief
/// the transaction is open commits on its own.
#[test]
fn a_transaction_whose_connection_broke_is_reported_gone() {
    let (_root, s) = setup(&[]);
    let (admin, pw, _) = password(&s, "shop", "main", "admin");
    let main_id = s.wait_branch("shop", "main")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(s
        .gateway_sql(
            &admin,
            &pw,
            &["shop"],
            "CREATE TABLE t (id INT PRIMARY KEY)"
        )
        .status
        .success());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(opts(&s, &admin, &pw)).await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
        let thread: Option<u64> = c
            .query_first("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT ID FROM information_schema.PROCESSLIST%'")
            .await
            .unwrap();
        s.sql_ok(
            &main_id,
            "strata_root",
            &format!("KILL CONNECTION {}", thread.unwrap()),
        );
        let first = c.query_drop("INSERT INTO t VALUES (2)").await;
        let second = c.query_drop("INSERT INTO t VALUES (3)").await;
        let told = [&first, &second]
            .iter()
            .any(|r| r.as_ref().is_err_and(|e| e.to_string().contains("transaction ended")));
        assert!(told, "{first:?} / {second:?}");
        c.query_drop("ROLLBACK").await.unwrap();
        c.query_drop("INSERT INTO t VALUES (4)").await.unwrap();
        let ids: Vec<i64> = c.query("SELECT id FROM t ORDER BY id").await.unwrap();
        assert!(!ids.contains(&1), "the broken transaction's row: {ids:?}");
        assert!(ids.contains(&4));
        c.disconnect().await.unwrap();
    });
}

/// One HTTP SQL call without a session (curl, Basic auth, plain HTTP on loopback): the body of the
/// answer.
fn http_execute(s: &Strata, user: &str, pw: &str, sql: &str, timeout_secs: u32) -> String {
    let body = serde_json::json!({ "query": sql, "session": null }).to_string();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-m",
            &timeout_secs.to_string(),
            "-u",
            &format!("{user}:{pw}"),
        ])
        .args(["-H", "content-type: application/json"])
        .args(["-d", &body])
        .arg(format!(
            "http://127.0.0.1:{}/psdb.v1alpha1.Database/Execute",
            s.http_port
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}
