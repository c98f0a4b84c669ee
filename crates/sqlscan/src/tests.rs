use super::*;
use proptest::prelude::*;

#[test]
fn ddl_detection() {
    let cases: &[(&str, bool)] = &[
        ("ALTER TABLE t ADD COLUMN c INT", true),
        ("  create table t (id int)", true),
        ("DROP TABLE t", true),
        ("RENAME TABLE a TO b", true),
        ("TRUNCATE t", true),
        ("OPTIMIZE TABLE t", true),
        ("CREATE OR REPLACE VIEW v AS SELECT 1", true),
        ("SELECT 1; ALTER TABLE t ENGINE=InnoDB", true),
        ("/* note */ ALTER TABLE t ADD c INT", true),
        ("-- note\nDROP TABLE t", true),
        ("# note\nDROP TABLE t", true),
        ("/*!50000 ALTER TABLE t ADD c INT */", true),
        ("/*M!100100 DROP TABLE t */", true),
        ("SELECT 1 /*!50000 ; DROP TABLE t */", true),
        ("PREPARE s FROM 'ALTER TABLE t ADD c INT'", true),
        ("PREPARE s FROM 'SELECT 1'", false),
        (
            "SET STATEMENT max_statement_time=100 FOR ALTER TABLE t ADD c INT",
            true,
        ),
        (
            "set statement a=1, b=(SELECT 2) for set statement c=3 for DROP TABLE t",
            true,
        ),
        ("SET STATEMENT max_statement_time=100 FOR SELECT 1", false),
        ("SET STATEMENT sql_mode='' FOR TRUNCATE orders", true),
        ("EXECUTE IMMEDIATE 'alt' 'er table t add c int'", true),
        ("begin not atomic drop table emp; end", true),
        (
            "BEGIN NOT ATOMIC ALTER TABLE customers ADD COLUMN y1 INT; END",
            true,
        ),
        ("begin not atomic execute immediate 'select 1'; end", true),
        ("IF 1 THEN SELECT 1; ELSE DROP TABLE t; END IF", true),
        (
            "lbl: LOOP CREATE TABLE x (id int); LEAVE lbl; END LOOP",
            true,
        ),
        ("BEGIN NOT ATOMIC SELECT 1; END", false),
        ("BEGIN; UPDATE t SET a = 1; COMMIT", false),
        ("PREPARE s FROM 'alter\\rtable t add c int'", true),
        ("PREPARE s FROM 'drop' \"  table t\"", true),
        ("EXECUTE IMMEDIATE 'DROP TABLE t'", true),
        ("EXECUTE IMMEDIATE 'SELECT ''drop table'''", false),
        ("SELECT 'ALTER TABLE t'", false),
        ("SELECT `drop` FROM t", false),
        ("INSERT INTO t VALUES ('; DROP TABLE t')", false),
        ("SELECT 1 -- ; DROP TABLE t", false),
        ("SELECT 1 /* ; DROP TABLE t */", false),
        ("CREATE TEMPORARY TABLE tmp (id INT)", false),
        ("DROP TEMPORARY TABLE tmp", false),
        ("UPDATE t SET a = 1", false),
        ("", false),
        (";;", false),
    ];
    for (sql, ddl) in cases {
        assert_eq!(analyze(sql).has_ddl(), *ddl, "{sql:?}");
    }
    let opaque = analyze("PREPARE s FROM @sql");
    assert!(opaque.has_ddl() && opaque.statements[0].opaque);
    for sql in [
        "EXECUTE IMMEDIATE CONCAT('XA', ' START ''p''')",
        "EXECUTE IMMEDIATE @q",
        "PREPARE s FROM CONCAT('KI', 'LL 1')",
    ] {
        assert!(analyze(sql).runs_hidden_text(), "{sql}");
    }
    assert!(!analyze("PREPARE s FROM 'SELECT 1'").runs_hidden_text());
    assert!(!analyze("EXECUTE s USING @a").runs_hidden_text());
}

#[test]
fn statements_and_keywords() {
    let a = analyze("select 1; UPDATE t SET a=1;  delete from t");
    let kws: Vec<&str> = a.statements.iter().map(|s| s.keyword.as_str()).collect();
    assert_eq!(kws, ["SELECT", "UPDATE", "DELETE"]);
    assert!(analyze("update t set a = 1").is(&["UPDATE", "DELETE"]));
}

#[test]
fn directives() {
    assert_eq!(
        analyze("select /*vt+ QUERY_TIMEOUT_MS=2000 */ sleep(3)").query_timeout_ms,
        Some(2000)
    );
    assert_eq!(
        analyze("/*vt+ QUERY_TIMEOUT_MS = 15 */ select 1").query_timeout_ms,
        Some(15)
    );
    assert_eq!(
        analyze("select '/*vt+ QUERY_TIMEOUT_MS=5 */'").query_timeout_ms,
        None
    );
    assert_eq!(analyze("select 1").query_timeout_ms, None);
}

#[test]
fn session_state() {
    for sql in [
        "SELECT GET_LOCK('a', 10)",
        "select release_lock('a')",
        "SELECT @v := 1",
        "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1",
        "SELECT FOUND_ROWS()",
        "SELECT LAST_INSERT_ID(5)",
        "SELECT id INTO @x FROM t LIMIT 1",
    ] {
        assert!(analyze(sql).pins_session.is_some(), "{sql}");
    }
    for sql in [
        "SELECT 1",
        "SELECT ':='",
        "SELECT LAST_INSERT_ID()",
        "INSERT INTO t VALUES (1)",
    ] {
        assert!(analyze(sql).pins_session.is_none(), "{sql}");
    }
}

#[test]
fn local_answers() {
    assert!(analyze("SELECT LAST_INSERT_ID()").last_insert_id_query);
    assert!(analyze("select last_insert_id() as id").last_insert_id_query);
    assert!(!analyze("SELECT LAST_INSERT_ID(), 1").last_insert_id_query);
    assert_eq!(
        analyze("SET workload = olap").set_workload.as_deref(),
        Some("olap")
    );
    assert_eq!(
        analyze("set workload='OLTP'").set_workload.as_deref(),
        Some("oltp")
    );
    assert_eq!(
        analyze("SET @@workload = 'olap'").set_workload.as_deref(),
        Some("olap")
    );
    assert_eq!(
        analyze("SET SESSION workload = olap")
            .set_workload
            .as_deref(),
        Some("olap")
    );
    assert_eq!(
        analyze("SET workload = olap, autocommit = 0").set_workload,
        None
    );
    assert_eq!(analyze("KILL QUERY 42").kill, Some((true, 42)));
    assert_eq!(analyze("kill 7").kill, Some((false, 7)));
    assert_eq!(analyze("KILL CONNECTION 7").kill, Some((false, 7)));
    assert_eq!(analyze("KILL QUERY x").kill, None);
}

#[test]
fn consolidation() {
    assert!(analyze("SELECT c FROM t WHERE id = 5").consolidable);
    for sql in [
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t LOCK IN SHARE MODE",
        "SELECT 1; SELECT 2",
        "UPDATE t SET a=1",
        "SELECT GET_LOCK('x',1)",
        "SELECT * FROM t INTO OUTFILE '/tmp/x'",
    ] {
        assert!(!analyze(sql).consolidable, "{sql}");
    }
}

#[test]
fn unicode_and_unterminated() {
    let t = tokens("SELECT 'héllo', `naïve`, café FROM t");
    assert!(t.iter().any(|x| x.text == "café"));
    let _ = analyze("SELECT 'unterminated");
    let _ = analyze("SELECT `unterminated");
    let _ = analyze("/* unterminated");
    let _ = analyze("/*!50000 ALTER");
}

proptest! {
    #[test]
    fn never_panics(s in "\\PC{0,120}") {
        let _ = analyze(&s);
    }

    #[test]
    fn never_panics_on_sql_like_text(s in "[a-zA-Z0-9 ;'\"`@:=/*!+#\\-\\n()]{0,80}") {
        let _ = analyze(&s);
    }

    #[test]
    fn ddl_survives_a_comment_prefix(comment in "[a-z ]{0,20}") {
        let sql = format!("/* {comment} */ ALTER TABLE t ADD c INT");
        prop_assert!(analyze(&sql).has_ddl());
    }
}

#[test]
fn foreign_key_detection() {
    let cases: &[(&str, bool)] = &[
        (
            "CREATE TABLE c (id INT PRIMARY KEY, p INT, FOREIGN KEY (p) REFERENCES p (id))",
            true,
        ),
        (
            "create table c (id int, p int, constraint fk foreign key (p) references p(id))",
            true,
        ),
        ("CREATE TABLE c (id INT, p INT REFERENCES p (id))", true),
        (
            "ALTER TABLE c ADD CONSTRAINT fk FOREIGN KEY (p) REFERENCES p (id)",
            true,
        ),
        (
            "ALTER TABLE c ADD FOREIGN KEY (p) REFERENCES p (id) ON DELETE CASCADE",
            true,
        ),
        (
            "/*!40000 ALTER TABLE c ADD FOREIGN KEY (p) REFERENCES p (id) */",
            true,
        ),
        (
            "PREPARE s FROM 'ALTER TABLE c ADD FOREIGN KEY (p) REFERENCES p (id)'",
            true,
        ),
        (
            "EXECUTE IMMEDIATE 'CREATE TABLE c (p INT REFERENCES p (id))'",
            true,
        ),
        (
            "SELECT 1; ALTER TABLE c ADD FOREIGN KEY (p) REFERENCES p (id)",
            true,
        ),
        // Dropping a foreign key is how one gets rid of them: allowed.
        ("ALTER TABLE c DROP FOREIGN KEY fk", false),
        ("CREATE TABLE c (id INT PRIMARY KEY, p INT, KEY (p))", false),
        ("ALTER TABLE c ADD COLUMN `references` INT", false),
        (
            "ALTER TABLE c ADD COLUMN note VARCHAR(20) DEFAULT 'foreign key'",
            false,
        ),
        (
            "SELECT * FROM information_schema.REFERENTIAL_CONSTRAINTS",
            false,
        ),
        ("INSERT INTO t (v) VALUES ('FOREIGN KEY REFERENCES')", false),
        (
            "CREATE TEMPORARY TABLE tmp (p INT REFERENCES p (id))",
            false,
        ),
    ];
    for (sql, fk) in cases {
        assert_eq!(analyze(sql).has_foreign_key(), *fk, "{sql:?}");
    }
}

#[test]
fn artifact_names_are_seen() {
    let cases: &[(&str, bool)] = &[
        (
            "UPDATE `~strata_135798c8_5_new_users` SET name = 'x' WHERE id = 5",
            true,
        ),
        ("DELETE FROM shop.`~strata_135798c8_revert_blocked`", true),
        ("INSERT INTO _strata_135798c8_x VALUES (1)", true),
        ("SELECT * FROM `_STRATA_1_new_t`", true),
        (
            "PREPARE s FROM 'DELETE FROM `~strata_1_revert_blocked`'",
            true,
        ),
        ("EXECUTE IMMEDIATE 'SELECT * FROM `~strata_1_old_t`'", true),
        ("SELECT 1; DROP TRIGGER _strata_1_0_fi", true),
        ("SELECT * FROM users WHERE name = '~strata_1_old_t'", false),
        (
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_NAME LIKE '~strata%'",
            false,
        ),
        ("SELECT * FROM `strata_users`", false),
        ("DELETE FROM \"~strata_5ffc47ac_0_old_users\" WHERE id <= 10", true),
        (
            "SET STATEMENT max_statement_time=0 FOR ALTER TABLE \"~strata_1_0_new_users\" DROP COLUMN name",
            true,
        ),
        ("SELECT * FROM users WHERE name = \"plain\"", false),
        (
            "begin not atomic execute immediate concat(\"update `~str\",\"ata_1_rev_c` set a=1\"); end",
            false,
        ),
        (
            "begin not atomic update `~strata_1_rev_c` set a = 1; end",
            true,
        ),
        ("SELECT * FROM `my~strata_x`", false),
    ];
    for (sql, artifact) in cases {
        assert_eq!(analyze(sql).touches_artifact(), *artifact, "{sql:?}");
    }
}

#[test]
fn session_state_pins_the_connection() {
    for sql in [
        "LOCK TABLES users WRITE",
        "lock table users read",
        "PREPARE s FROM 'LOCK TABLES users WRITE'",
        "EXECUTE IMMEDIATE 'LOCK TABLES users WRITE'",
        "EXECUTE s",
        "HANDLER users OPEN",
        "XA START 'x'",
        "FLUSH TABLES users WITH READ LOCK",
        "CALL p()",
        "SET STATEMENT max_statement_time=1 FOR LOCK TABLES users WRITE",
    ] {
        assert!(analyze(sql).pins_session.is_some(), "{sql:?}");
    }
    for sql in [
        "SELECT * FROM users LOCK IN SHARE MODE",
        "UPDATE t SET a = 1",
        "UNLOCK TABLES",
    ] {
        assert!(analyze(sql).pins_session.is_none(), "{sql:?}");
    }
}

#[test]
fn set_statement_is_judged_by_what_it_runs() {
    let a = analyze("SET STATEMENT max_statement_time=5 FOR KILL 23");
    assert_eq!(a.kill, Some((false, 23)));
    assert_eq!(a.statements[0].keyword, "KILL");
    // No FOR: a plain (if odd) SET.
    assert_eq!(analyze("SET STATEMENT x=1").statements[0].keyword, "SET");
}

#[test]
fn routines_are_seen() {
    let cases: &[(&str, bool)] = &[
        (
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1",
            true,
        ),
        (
            "create definer=`root`@`%` trigger tr after update on t for each row begin end",
            true,
        ),
        ("CREATE OR REPLACE FUNCTION f() RETURNS INT RETURN 1", true),
        (
            "CREATE AGGREGATE FUNCTION f(x INT) RETURNS INT BEGIN RETURN 1; END",
            true,
        ),
        ("CREATE PROCEDURE p() SELECT 1", true),
        ("CREATE DEFINER = CURRENT_USER PROCEDURE p() SELECT 1", true),
        (
            "CREATE EVENT e ON SCHEDULE EVERY 1 HOUR DO DELETE FROM t",
            true,
        ),
        ("ALTER EVENT e DISABLE", true),
        ("DROP PROCEDURE IF EXISTS p", true),
        ("DROP TRIGGER tr", true),
        (
            "PREPARE s FROM 'CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET @a=1'",
            true,
        ),
        ("CREATE TABLE `trigger` (id INT)", false),
        ("CREATE TABLE events (id INT, `function` INT)", false),
        ("CREATE VIEW v AS SELECT 1 AS procedure_count", false),
        ("ALTER TABLE t ADD COLUMN event INT", false),
        ("DROP TABLE procedure_log", false),
        ("SELECT 'CREATE TRIGGER'", false),
        ("CALL p()", false),
    ];
    for (sql, routine) in cases {
        assert_eq!(analyze(sql).has_routine(), *routine, "{sql:?}");
    }
}

#[test]
fn rebuilds_are_seen() {
    for (sql, rebuild) in [
        ("OPTIMIZE TABLE t", true),
        ("optimize no_write_to_binlog table t", true),
        ("REPAIR TABLE t QUICK", true),
        (
            "SET STATEMENT max_statement_time=1 FOR OPTIMIZE TABLE t",
            true,
        ),
        ("PREPARE s FROM 'OPTIMIZE TABLE t'", true),
        ("EXECUTE IMMEDIATE 'opt' 'imize table t'", true),
        ("ANALYZE TABLE t", false),
        ("SELECT 'OPTIMIZE TABLE t'", false),
        ("CHECK TABLE t", false),
    ] {
        assert_eq!(analyze(sql).rebuilds_tables(), rebuild, "{sql:?}");
    }
}

#[test]
fn database_changes_are_seen() {
    for (sql, yes) in [
        ("DROP DATABASE shop", true),
        ("drop schema if exists `shop`", true),
        ("CREATE DATABASE other", true),
        ("ALTER DATABASE shop CHARACTER SET latin1", true),
        (
            "SET STATEMENT max_statement_time=10 FOR DROP DATABASE shop",
            true,
        ),
        ("PREPARE s FROM 'DROP DATABASE shop'", true),
        ("/*!50000 DROP DATABASE shop */", true),
        ("DROP TABLE `database`", false),
        ("SELECT DATABASE()", false),
        ("CREATE TABLE schema_log (id INT)", false),
    ] {
        assert_eq!(analyze(sql).changes_database(), yes, "{sql:?}");
    }
}

#[test]
fn undeployable_objects_are_seen() {
    for (sql, yes) in [
        ("CREATE SEQUENCE s START WITH 1", true),
        ("create or replace sequence s", true),
        ("CREATE SEQUENCE IF NOT EXISTS s", true),
        ("ALTER SEQUENCE s RESTART 5", true),
        (
            "CREATE TABLE s (next_not_cached_value BIGINT NOT NULL) SEQUENCE=1",
            true,
        ),
        ("create table s (x int) sequence = 1", true),
        ("CREATE TABLE s (x INT) SEQUENCE 1", true),
        ("CREATE TABLE s (x INT) SEQUENCE=0", false),
        ("CREATE TABLE sequence (x INT)", false),
        ("CREATE TABLE t (id INT) WITH SYSTEM VERSIONING", true),
        ("ALTER TABLE t ADD SYSTEM VERSIONING", true),
        ("EXECUTE IMMEDIATE 'CREATE SEQUENCE s'", true),
        ("DROP SEQUENCE s", false),
        ("ALTER TABLE t DROP SYSTEM VERSIONING", false),
        ("SELECT NEXTVAL(s)", false),
        ("CREATE TABLE sequence_log (id INT)", false),
    ] {
        assert_eq!(analyze(sql).makes_undeployable(), yes, "{sql:?}");
    }
}

#[test]
fn kills_of_others_are_seen() {
    for (sql, virtual_id, foreign) in [
        ("KILL 7", Some((false, 7)), false),
        ("KILL QUERY 7", Some((true, 7)), false),
        ("KILL HARD QUERY 7", Some((true, 7)), false),
        ("kill soft connection 7", Some((false, 7)), false),
        ("KILL USER strata_readwriter", None, true),
        ("KILL QUERY USER strata_readwriter", None, true),
        ("KILL QUERY ID 12", None, true),
        ("SELECT 1; KILL USER x", None, true),
        ("SELECT 1; KILL 7", None, true),
        ("EXECUTE IMMEDIATE 'KILL 7'", None, true),
        ("BEGIN NOT ATOMIC KILL USER x; END", None, true),
        ("SELECT kill FROM t", None, false),
    ] {
        let a = analyze(sql);
        assert_eq!((a.kill, a.kills_others()), (virtual_id, foreign), "{sql:?}");
    }
}

#[test]
fn xa_is_seen() {
    for (sql, yes) in [
        ("XA START 'p1'", true),
        ("xa prepare 'p1'", true),
        ("XA RECOVER", true),
        ("/*!50000 XA ROLLBACK 'x' */", true),
        ("EXECUTE IMMEDIATE 'XA RECOVER'", true),
        ("SET STATEMENT max_statement_time=1 FOR XA RECOVER", true),
        ("SELECT xa FROM t", false),
        ("BEGIN", false),
    ] {
        assert_eq!(analyze(sql).has_xa(), yes, "{sql:?}");
    }
}

#[test]
fn account_management_is_seen() {
    for (sql, yes) in [
        ("SET PASSWORD = PASSWORD('x')", true),
        ("set password for current_user() = password('x')", true),
        ("SET PASSWORD = 'x'", true),
        ("EXECUTE IMMEDIATE 'SET PASSWORD = PASSWORD(''x'')'", true),
        ("PREPARE s FROM 'set ' 'password = ''x'''", true),
        (
            "SET STATEMENT max_statement_time=1 FOR SET PASSWORD = 'x'",
            true,
        ),
        ("/*!50000 SET PASSWORD = 'x' */", true),
        ("BEGIN NOT ATOMIC SET PASSWORD = 'x'; END", true),
        ("ALTER USER CURRENT_USER() IDENTIFIED BY 'x'", true),
        ("CREATE USER 'a'@'%'", true),
        ("DROP USER IF EXISTS a", true),
        ("RENAME USER a TO b", true),
        ("CREATE ROLE r", true),
        ("GRANT SELECT ON *.* TO a", true),
        ("REVOKE ALL ON *.* FROM a", true),
        ("SET DEFAULT ROLE r", true),
        ("SET ROLE NONE", false),
        ("SELECT password FROM users", false),
        ("UPDATE users SET password = 'x' WHERE id = 1", false),
        ("INSERT INTO users (user, role) VALUES ('a', 'b')", false),
        ("SET @password = 'x'", false),
        ("CREATE TABLE user (id INT)", false),
    ] {
        assert_eq!(analyze(sql).manages_credentials(), yes, "{sql:?}");
    }
}

/// Texts the server reads differently from a naive lexer: each must be judged as the server runs it.
#[test]
fn read_as_the_server_reads() {
    let cases: &[(&str, bool, bool)] = &[
        // (text, touches an artifact, has DDL)
        (
            "SELECT /*!'*/'*/, x.* FROM `~strata_1_0_new_t` x LIMIT 3 #'",
            true,
            false,
        ),
        (
            "SELECT /*!'*/'*/; DELETE FROM `~strata_1_0_new_t` WHERE id = 1 #'",
            true,
            false,
        ),
        (
            "SELECT /*!'*/'*/; ALTER TABLE t ADD COLUMN evil INT #'",
            false,
            true,
        ),
        (
            "SELECT /*!50000 1 */, 2; ALTER TABLE t ADD c INT",
            false,
            true,
        ),
        // NO_BACKSLASH_ESCAPES (or gbk's 0xBF5C): the backslash ends nothing.
        (
            "SELECT '\\'; DELETE FROM `~strata_1_0_old_t`; #'",
            true,
            false,
        ),
        ("SELECT '\\'; ALTER TABLE t ADD c INT; #'", false, true),
        // latin1 no-break space, or a non-UTF-8 byte replaced.
        ("ALTER\u{A0}TABLE t ADD COLUMN z INT", false, true),
        ("ALTER\u{FFFD}TABLE t ADD COLUMN z INT", false, true),
        ("CREATE\u{FFFD}PROCEDURE p() SELECT 1", false, true),
        // Plain texts are unchanged.
        ("SELECT 'it''s \\' fine'", false, false),
        ("SELECT /* a */ 1 /*! , 2 */", false, false),
    ];
    for (sql, artifact, ddl) in cases {
        let a = analyze(sql);
        assert_eq!(a.touches_artifact(), *artifact, "artifact: {sql:?}");
        assert_eq!(a.has_ddl(), *ddl, "ddl: {sql:?}");
    }
    assert!(analyze("CREATE\u{A0}PROCEDURE p() SELECT 1").has_routine());
}

#[test]
fn time_limits_given_in_every_spelling() {
    let cases: &[(&str, &[Option<u64>])] = &[
        ("SELECT 1", &[]),
        ("SELECT @@max_statement_time = 0", &[]),
        ("SET max_statement_time = 0", &[Some(0)]),
        ("SET SESSION max_statement_time=1.5", &[Some(1500)]),
        ("SET LOCAL max_statement_time := 10", &[Some(10_000)]),
        ("set @@max_statement_time = 0", &[Some(0)]),
        (
            "SET @@session.max_statement_time = 1e9",
            &[Some(1_000_000_000_000)],
        ),
        ("SET @@SESSION.`max_statement_time` = 3", &[Some(3000)]),
        ("SET SESSION `max_statement_time` = 3", &[Some(3000)]),
        ("SET a = 1, max_statement_time = 0", &[Some(0)]),
        ("SET max_statement_time = DEFAULT", &[None]),
        ("SET max_statement_time = @v", &[None]),
        ("SET max_statement_time = 1 + 1", &[None]),
        ("SET max_statement_time = (SELECT 0)", &[None]),
        (
            "SET STATEMENT max_statement_time=0 FOR SELECT SLEEP(5)",
            &[Some(0)],
        ),
        (
            "SET STATEMENT sql_mode='', max_statement_time=2 FOR SELECT 1",
            &[Some(2000)],
        ),
        ("SET STATEMENT max_statement_time=@x FOR SELECT 1", &[None]),
        ("PREPARE s FROM 'SET max_statement_time=0'", &[Some(0)]),
        (
            "EXECUTE IMMEDIATE 'SET max_' 'statement_time=0'",
            &[Some(0)],
        ),
        (
            "BEGIN NOT ATOMIC SET max_statement_time=0; SELECT SLEEP(5); END",
            &[None],
        ),
        ("IF 1 THEN SET max_statement_time = 0; END IF", &[None]),
        ("SELECT 1; SET max_statement_time = 0", &[Some(0)]),
    ];
    for (sql, want) in cases {
        let got: Vec<Option<u64>> = analyze(sql).time_limits().collect();
        assert_eq!(&got, want, "{sql}");
    }
}

#[test]
fn check_constraints_cannot_be_switched_off() {
    for (sql, unchecks) in [
        ("SET check_constraint_checks = 0", true),
        ("SET SESSION check_constraint_checks=OFF", true),
        ("SET @@check_constraint_checks = 0", true),
        (
            "SET STATEMENT check_constraint_checks=0 FOR INSERT INTO t VALUES (1)",
            true,
        ),
        ("EXECUTE IMMEDIATE 'SET check_constraint_checks = 0'", true),
        (
            "BEGIN NOT ATOMIC SET check_constraint_checks = 0; INSERT INTO t VALUES (1); END",
            true,
        ),
        ("SELECT @@check_constraint_checks", false),
        ("SET foreign_key_checks = 0", false),
    ] {
        assert_eq!(analyze(sql).unchecks(), unchecks, "{sql}");
    }
}

#[test]
fn a_password_set_among_other_assignments_is_an_account_statement() {
    for sql in [
        "SET @a = 1, PASSWORD = PASSWORD('x')",
        "SET NAMES utf8mb4, PASSWORD = 'x'",
        "SET @x = 1, /*!PASSWORD*/ = PASSWORD('x')",
        "SET PASSWORD FOR CURRENT_USER() = 'x'",
    ] {
        assert!(analyze(sql).manages_credentials(), "{sql}");
    }
    assert!(!analyze("SET @password = 1").manages_credentials());
    assert!(!analyze("SELECT PASSWORD('x') = 'y'").manages_credentials());
}

#[test]
fn rows_changed_and_locks_are_seen_wherever_they_run() {
    let rows: &[(&str, bool)] = &[
        ("UPDATE t SET a = 1", true),
        ("delete from t", true),
        ("EXECUTE IMMEDIATE 'UPDATE t SET a = 1'", true),
        ("EXECUTE IMMEDIATE 'DEL' 'ETE FROM t'", true),
        ("PREPARE s FROM 'DELETE FROM t WHERE a > ?'", true),
        ("BEGIN NOT ATOMIC UPDATE t SET a = 1; END", true),
        ("IF 1 THEN DELETE FROM t; END IF", true),
        (
            "SET STATEMENT max_statement_time=1 FOR UPDATE t SET a = 1",
            true,
        ),
        // Upserts update (or replace) rows too.
        ("REPLACE INTO t SELECT * FROM u", true),
        ("replace t VALUES (1)", true),
        (
            "INSERT INTO t SELECT id, v FROM t ON DUPLICATE KEY UPDATE v = 'x'",
            true,
        ),
        (
            "insert into t values (1) on  duplicate /* */ key update v = v + 1",
            true,
        ),
        ("EXECUTE IMMEDIATE 'REPLACE INTO t VALUES (1)'", true),
        (
            "PREPARE s FROM 'INSERT INTO t VALUES (?) ON DUPLICATE KEY UPDATE v = 1'",
            true,
        ),
        ("BEGIN NOT ATOMIC REPLACE INTO t VALUES (1); END", true),
        ("SELECT 1", false),
        ("INSERT INTO t VALUES (1)", false),
        ("INSERT INTO t SELECT * FROM u", false),
        ("INSERT INTO t VALUES ('ON DUPLICATE KEY UPDATE')", false),
        ("EXECUTE IMMEDIATE 'SELECT 1'", false),
        ("PREPARE s FROM 'SELECT * FROM t'", false),
        ("SELECT 'UPDATE t SET a = 1'", false),
    ];
    for (sql, yes) in rows {
        assert_eq!(analyze(sql).changes_rows(), *yes, "{sql:?}");
    }
    assert!(analyze("REPLACE INTO t VALUES (1)").statements[0].upsert);
    assert!(!analyze("UPDATE t SET a = 1").statements[0].upsert);
    let locks: &[(&str, bool)] = &[
        ("EXECUTE IMMEDIATE 'LOCK TABLES t WRITE'", true),
        ("PREPARE s FROM 'lock table t read'", true),
        ("EXECUTE IMMEDIATE 'BACKUP LOCK t'", true),
        ("EXECUTE IMMEDIATE 'UNLOCK TABLES'", true),
        ("PREPARE s FROM 'FLUSH TABLES WITH READ LOCK'", true),
        ("EXECUTE IMMEDIATE 'HANDLER t OPEN'", true),
        ("BEGIN NOT ATOMIC LOCK TABLES t WRITE; END", true),
        ("BEGIN NOT ATOMIC BACKUP LOCK t; END", true),
        (
            "BEGIN NOT ATOMIC SELECT * FROM t LOCK IN SHARE MODE; END",
            false,
        ),
        ("LOCK TABLES t WRITE", false),
        ("BACKUP LOCK t", false),
        ("EXECUTE IMMEDIATE 'SELECT 1'", false),
    ];
    for (sql, yes) in locks {
        assert_eq!(analyze(sql).hides_locks(), *yes, "{sql:?}");
    }
    let names: &[(&str, Option<&str>)] = &[
        ("PREPARE S1 FROM 'UPDATE t SET a = 1'", Some("s1")),
        ("EXECUTE s1 USING @a", Some("s1")),
        ("EXECUTE `S1`", Some("s1")),
        ("DEALLOCATE PREPARE s1", Some("s1")),
        ("DROP PREPARE s1", Some("s1")),
        ("EXECUTE IMMEDIATE 'SELECT 1'", None),
        ("SELECT 1", None),
    ];
    for (sql, name) in names {
        assert_eq!(
            analyze(sql).statements[0].prepared_name.as_deref(),
            *name,
            "{sql:?}"
        );
    }
}

#[test]
fn versioned_comments_are_also_read_as_skipped() {
    // A server older than the version written skips the comment: this is a real CREATE TABLE.
    for sql in [
        "CREATE /*!999999 TEMPORARY */ TABLE t (a INT)",
        "CREATE /*M!999999 TEMPORARY */ TABLE t (a INT)",
        "DROP /*!99999 TEMPORARY */ TABLE t",
        "CREATE /*!99999 TEMPORARY */ TABLE t (a INT)",
    ] {
        assert!(analyze(sql).has_ddl(), "{sql}");
    }
    // Versioned comments the server runs are still code, and unversioned ones always.
    assert!(analyze("/*!50000 ALTER TABLE t ADD c INT */").has_ddl());
    assert!(!analyze("CREATE /*! TEMPORARY */ TABLE t (a INT)").has_ddl());
    assert!(!analyze("CREATE TEMPORARY TABLE t (a INT)").has_ddl());
    assert!(!analyze("/*!40101 SET NAMES utf8mb4 */").has_ddl());
    assert!(analyze("UPDATE t SET v = 1 /*!50000 WHERE id = 1 */").changes_rows());
}

#[test]
fn oracle_mode_blocks_are_compound_statements() {
    for sql in [
        "BEGIN UPDATE big SET v = 1; END;",
        "BEGIN DELETE FROM big; END",
        "<<l>> BEGIN UPDATE big SET v = 1; END",
    ] {
        let a = analyze(sql);
        assert!(
            a.statements.iter().any(|s| s.compound && s.changes_rows),
            "{sql}"
        );
    }
    let a = analyze("EXECUTE IMMEDIATE 'BEGIN UPDATE big SET v=1; END;'");
    assert!(a.statements.iter().any(|s| s.compound && s.changes_rows));
    // Inside such a block, text run from a string cannot be judged.
    assert!(analyze("BEGIN EXECUTE IMMEDIATE 'LOCK TABLES big WRITE'; END;").runs_hidden_text());
    // A transaction's BEGIN is not a block.
    for sql in ["BEGIN", "BEGIN WORK", "begin;"] {
        assert!(!analyze(sql).statements.iter().any(|s| s.compound), "{sql}");
    }
}

#[test]
fn dashes_and_a_no_break_space_are_also_read_as_a_comment() {
    // latin1's no-break space (0xA0; as the gateway reads bytes, U+FFFD) after `--` opens a
    // comment for the server: the quote on that line must not hide what follows.
    for sp in ["\u{FFFD}", "\u{A0}"] {
        let hidden = |body: &str| format!("SELECT 1 --{sp}'\n; {body}; SELECT 1 -- '");
        let a = analyze(&hidden("BEGIN NOT ATOMIC UPDATE big SET v = 1; END"));
        assert!(
            a.statements.iter().any(|s| s.compound && s.changes_rows),
            "{a:?}"
        );
        assert!(analyze(&hidden("DELETE FROM big WHERE id > 0")).changes_rows());
        let a = analyze(&hidden("LOCK TABLES big WRITE"));
        assert!(a.statements.iter().any(|s| s.keyword == "LOCK"), "{a:?}");
        assert!(a.pins_session.is_some());
        assert!(analyze(&hidden("SET max_statement_time = 0"))
            .time_limits()
            .any(|v| v == Some(0)));
        assert!(analyze(&hidden("CREATE TABLE x3 (id INT PRIMARY KEY)")).has_ddl());
    }
}

#[test]
fn found_rows_alone_is_recognised() {
    for sql in [
        "SELECT FOUND_ROWS()",
        "select found_rows() as n",
        "SELECT FOUND_ROWS() n",
    ] {
        assert!(analyze(sql).found_rows_query, "{sql}");
    }
    for sql in [
        "SELECT FOUND_ROWS() + 1",
        "SELECT FOUND_ROWS(), 1",
        "SELECT FOUND_ROWS(); SELECT 1",
        "SELECT SQL_CALC_FOUND_ROWS * FROM t",
    ] {
        assert!(!analyze(sql).found_rows_query, "{sql}");
    }
}

#[test]
fn a_session_function_answered_locally_keeps_its_column_name() {
    let cases: &[(&str, Option<&str>)] = &[
        ("SELECT CONNECTION_ID()", Some("CONNECTION_ID()")),
        ("select connection_id()", Some("connection_id()")),
        ("SELECT CONNECTION_ID() AS cid", Some("cid")),
        ("SELECT CONNECTION_ID() cid", Some("cid")),
        ("SELECT LAST_INSERT_ID() AS `the id`", Some("the id")),
        ("SELECT ROW_COUNT() AS \"n\"", Some("n")),
        ("SELECT FOUND_ROWS() AS 'total'", Some("total")),
        ("SELECT CONNECTION_ID() + 0 AS cid", None),
        ("SELECT CONNECTION_ID() AS cid, 1 AS one", None),
        ("SELECT 1", None),
    ];
    for (sql, name) in cases {
        assert_eq!(analyze(sql).local_column.as_deref(), *name, "{sql}");
    }
}
