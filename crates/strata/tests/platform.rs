//! End to end: `strata up` on a temporary data directory, real `mariadbd` instances, the stock
//! `mariadb` client, the CLI binary and the HTTP API.

mod common;

use common::{data_dir, servers_of, wait_no_servers, Strata};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn table_names(s: &Strata, branch_id: &str) -> Vec<String> {
    s.sql_ok(branch_id, "strata_admin", "SHOW FULL TABLES")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn databases_branches_and_passwords() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());

    // Database: create, with its main production branch ready to take connections.
    let db = s.json(&["database", "create", "shop", "--wait"]);
    assert_eq!(db["name"], "shop");
    assert_eq!(db["type"], "Database");
    assert_eq!(db["state"], "ready");
    assert_eq!(db["default_branch"], "main");
    let main = s.wait_branch("shop", "main");
    assert_eq!(main["production"], true);
    assert_eq!(main["parent_branch"], Value::Null);
    let main_id = main["id"].as_str().unwrap().to_string();
    let list = s.json(&["database", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let human = s.ok(&["database", "show", "shop"]);
    assert!(human.contains("shop") && human.contains("ready"), "{human}");
    let csv = s.ok(&["database", "list", "--format", "csv"]);
    assert!(csv.starts_with("name,kind,state,default_branch"), "{csv}");

    // Schema on main (as the admin role), with data that must not reach branches.
    s.sql_ok(
        &main_id,
        "strata_admin",
        "CREATE TABLE users (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, email VARCHAR(255) NOT NULL, UNIQUE KEY uk_email (email)) ENGINE=InnoDB;
         CREATE TABLE orders (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, user_id BIGINT UNSIGNED NOT NULL, total DECIMAL(10,2) NOT NULL DEFAULT 0.00, KEY idx_user (user_id), CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id)) ENGINE=InnoDB;
         CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100;
         CREATE VIEW big_order_ids AS SELECT id FROM big_orders;
         INSERT INTO users (email) VALUES ('a@x'), ('b@x');
         INSERT INTO orders (user_id, total) VALUES (1, 150.00), (2, 20.00);",
    );

    // Branch: created from main with its schema (tables, views, indexes, keys) and no data.
    let dev = s.json(&["branch", "create", "shop", "dev", "--wait"]);
    assert_eq!(dev["name"], "dev");
    assert_eq!(dev["parent_branch"], "main");
    assert_eq!(dev["production"], false);
    assert_eq!(dev["ready"], true);
    let dev_id = dev["id"].as_str().unwrap().to_string();
    assert_eq!(table_names(&s, &dev_id), table_names(&s, &main_id));
    for t in ["users", "orders"] {
        let show = |id: &str| {
            s.sql_ok(id, "strata_admin", &format!("SHOW CREATE TABLE {t}"))
                .replace(" AUTO_INCREMENT=3", "")
        };
        assert_eq!(show(&dev_id), show(&main_id), "table {t} copied exactly");
        assert_eq!(
            s.sql_ok(
                &dev_id,
                "strata_admin",
                &format!("SELECT COUNT(*) FROM {t}")
            )
            .trim(),
            "0"
        );
    }
    assert_eq!(
        s.sql_ok(
            &dev_id,
            "strata_admin",
            "SELECT COUNT(*) FROM big_order_ids"
        )
        .trim(),
        "0"
    );
    // Changes on the branch stay on the branch.
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE users ADD COLUMN name VARCHAR(100)",
    );
    assert!(!s
        .sql_ok(&main_id, "strata_admin", "SHOW CREATE TABLE users")
        .contains("`name`"));
    // The branch diff: per object, the DDL from the parent's schema to the branch's.
    let d = s.json(&["branch", "diff", "shop", "dev"]);
    assert_eq!(d.as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d[0]["name"], "users");
    assert_eq!(
        d[0]["raw"],
        "ALTER TABLE `users` ADD COLUMN `name` varchar(100) DEFAULT NULL AFTER `email`;"
    );
    assert!(s
        .fails(&["branch", "diff", "shop", "main"])
        .contains("no parent branch"));
    // Lint: foreign keys while the database has them off, a trigger, a table without a primary key.
    // (triggers need SUPER with binary logging on, so the control plane's user makes this one)
    s.sql_ok(&dev_id, "strata_root", "CREATE TABLE nokey (v INT); CREATE TRIGGER trg BEFORE INSERT ON users FOR EACH ROW SET NEW.email = LOWER(NEW.email)");
    let lint = s.json(&["branch", "lint", "shop", "dev"]);
    let codes: Vec<(String, String)> = lint
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["lint_error"].as_str().unwrap().to_string(),
                f["table_name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("FOREIGN_KEYS_DISABLED", "orders"),
        ("NO_PRIMARY_KEY", "nokey"),
        ("UNSUPPORTED_TRIGGER", "users"),
    ] {
        assert!(
            codes.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {codes:?}"
        );
    }
    let fk = lint
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["lint_error"] == "FOREIGN_KEYS_DISABLED")
        .unwrap();
    assert_eq!(fk["foreign_key_column_names"], json!(["user_id"]));
    assert_eq!(fk["severity"], "error");
    s.sql_ok(&dev_id, "strata_root", "DROP TABLE nokey; DROP TRIGGER trg");
    // The branch schema, through the CLI and the API (PlanetScale's {data: [{name, raw, html}]}).
    let schema = s.json(&["branch", "schema", "shop", "dev"]);
    let names: Vec<&str> = schema
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["big_order_ids", "big_orders", "orders", "users"]);
    assert!(schema[3]["raw"]
        .as_str()
        .unwrap()
        .starts_with("CREATE TABLE `users`"));
    assert!(schema[3]["raw"]
        .as_str()
        .unwrap()
        .contains("`name` varchar(100)"));
    let human = s.ok(&["branch", "schema", "shop", "main"]);
    assert!(
        human.contains("CREATE TABLE `orders`") && human.contains("CONSTRAINT `fk_user`"),
        "{human}"
    );
    let (st, v) = s.api(
        "GET",
        &s.org_path("databases/shop/branches/main/schema"),
        None,
    );
    assert_eq!(st, 200);
    assert!(v["data"][0]["html"].as_str().unwrap().starts_with("<pre>"));
    // A counter and an internal definer are not schema: the schema shown has neither.
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "CREATE TABLE counters (id INT AUTO_INCREMENT PRIMARY KEY) COMMENT 'AUTO_INCREMENT=7 stays'; INSERT INTO counters VALUES (), (); CREATE VIEW counted AS SELECT id FROM counters",
    );
    let shown = s.json(&["branch", "schema", "shop", "dev"]).to_string();
    assert!(
        !shown.contains("AUTO_INCREMENT=3") && !shown.contains("DEFINER="),
        "{shown}"
    );
    assert!(
        shown.contains("AUTO_INCREMENT PRIMARY KEY") || shown.contains("NOT NULL AUTO_INCREMENT"),
        "the column's attribute stays: {shown}"
    );
    assert!(shown.contains("AUTO_INCREMENT=7 stays"), "{shown}");
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "DROP VIEW counted; DROP TABLE counters",
    );
    // A branch of a branch, by --from.
    let feat = s.json(&[
        "branch", "create", "shop", "feat", "--from", "dev", "--wait",
    ]);
    assert_eq!(feat["parent_branch"], "dev");
    assert!(s
        .sql_ok(
            feat["id"].as_str().unwrap(),
            "strata_admin",
            "SHOW CREATE TABLE users"
        )
        .contains("`name`"));

    // The remembered base schema shows in the database's table count.
    let (_, dbv) = s.api("GET", &s.org_path("databases/shop"), None);
    assert_eq!(dbv["branches_count"], 3);
    assert_eq!(dbv["production_branches_count"], 1);

    // Role users on the instance: exactly the password-roles table.
    s.sql_ok(&dev_id, "strata_reader", "SELECT * FROM users");
    assert!(s
        .sql_err(
            &dev_id,
            "strata_reader",
            "INSERT INTO users (email) VALUES ('r@x')"
        )
        .contains("denied"));
    s.sql_ok(
        &dev_id,
        "strata_writer",
        "INSERT INTO users (email) VALUES ('w@x')",
    );
    assert!(s
        .sql_err(&dev_id, "strata_writer", "SELECT * FROM users")
        .contains("denied"));
    s.sql_ok(
        &dev_id,
        "strata_readwriter",
        "INSERT INTO users (email) VALUES ('rw@x'); SELECT * FROM users",
    );
    assert!(s
        .sql_err(
            &dev_id,
            "strata_readwriter",
            "CREATE TABLE t2 (id INT PRIMARY KEY)"
        )
        .contains("denied"));
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "CREATE TABLE t2 (id INT PRIMARY KEY); DROP TABLE t2",
    );
    for role in [
        "strata_reader",
        "strata_writer",
        "strata_readwriter",
        "strata_admin",
    ] {
        assert!(
            s.sql_err(&dev_id, role, "SELECT * FROM mysql.user")
                .contains("denied"),
            "{role}"
        );
    }

    // Passwords: every role, plaintext once, recognisable, connection details.
    let mut ids = Vec::new();
    for role in ["reader", "writer", "readwriter", "admin"] {
        let p = s.json(&[
            "password",
            "create",
            "shop",
            "dev",
            &format!("app-{role}"),
            "--role",
            role,
        ]);
        assert_eq!(p["role"], role);
        let plain = p["plain_text"].as_str().unwrap();
        assert!(
            plain.starts_with("strata_pw_") && plain.len() == 48,
            "{plain}"
        );
        assert_eq!(p["username"].as_str().unwrap().len(), 20);
        assert_eq!(p["connection"]["database"], "shop");
        assert_eq!(p["connection"]["host"], "127.0.0.1");
        assert_eq!(p["connection"]["port"], s.mysql_port);
        assert_eq!(p["database_branch"]["name"], "dev");
        assert!(p["connection"]["mysql_url"]
            .as_str()
            .unwrap()
            .contains(plain));
        ids.push(p["id"].as_str().unwrap().to_string());
    }
    let listed = s.json(&["password", "list", "shop", "dev"]);
    assert_eq!(listed.as_array().unwrap().len(), 4);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["plain_text"].is_null()));
    let shown = s.json(&["password", "show", "shop", "dev", &ids[0]]);
    assert!(shown["plain_text"].is_null());
    assert_eq!(shown["name"], "app-reader");
    // Database-wide list includes passwords of every branch.
    s.json(&["password", "create", "shop", "main", "prod-app"]);
    assert_eq!(
        s.json(&["password", "list", "shop"])
            .as_array()
            .unwrap()
            .len(),
        5
    );
    // Only hashes in the catalog: no plaintext anywhere in the file.
    let catalog = std::fs::read(data_dir(root.path()).join("catalog.db")).unwrap();
    assert!(!String::from_utf8_lossy(&catalog).contains("strata_pw_"));
    // TTL and renew.
    let t = s.json(&[
        "password", "create", "shop", "dev", "short", "--role", "reader", "--ttl", "1h",
    ]);
    assert_eq!(t["ttl_seconds"], 3600);
    assert_eq!(t["renewable"], true);
    let renewed = s.json(&[
        "password",
        "renew",
        "shop",
        "dev",
        t["id"].as_str().unwrap(),
    ]);
    assert!(renewed["expires_at"].as_str().unwrap() >= t["expires_at"].as_str().unwrap());
    assert!(s
        .fails(&["password", "renew", "shop", "dev", &ids[0]])
        .contains("no TTL"));
    // Rename and IP restrictions.
    let (st, p) = s.api(
        "PATCH",
        &s.org_path(&format!("databases/shop/branches/dev/passwords/{}", ids[0])),
        Some(json!({"name": "renamed", "cidrs": ["10.0.0.0/8"]})),
    );
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["name"], "renamed");
    assert_eq!(p["cidrs"], json!(["10.0.0.0/8"]));
    // Delete.
    s.ok(&["password", "delete", "shop", "dev", &ids[1], "--force"]);
    assert!(s
        .fails(&["password", "show", "shop", "dev", &ids[1]])
        .contains("not found"));

    // Promote / demote / safe migrations.
    let p = s.json(&["branch", "promote", "shop", "dev"]);
    assert_eq!(p["production"], true);
    let buffer = s.sql_ok(&dev_id, "strata_admin", "SELECT @@innodb_buffer_pool_size");
    assert_eq!(
        buffer.trim(),
        (128u64 << 20).to_string(),
        "production sizing applied live"
    );
    let sm = s.json(&["branch", "safe-migrations", "enable", "shop", "dev"]);
    assert_eq!(sm["safe_migrations"], true);
    // A production branch with safe migrations on cannot be deleted.
    s.ok(&["branch", "delete", "shop", "feat", "--force"]);
    let err = s.fails(&["branch", "delete", "shop", "dev", "--force"]);
    assert!(err.contains("safe migrations"), "{err}");
    assert_eq!(
        s.json(&["branch", "safe-migrations", "disable", "shop", "dev"])["safe_migrations"],
        false
    );
    assert_eq!(
        s.json(&["branch", "demote", "shop", "dev"])["production"],
        false
    );
    // The last production branch cannot be demoted; the default branch cannot be deleted.
    assert!(s
        .fails(&["branch", "demote", "shop", "main"])
        .contains("at least one production branch"));
    assert!(s
        .fails(&["branch", "delete", "shop", "main", "--force"])
        .contains("default branch"));
    s.ok(&["branch", "delete", "shop", "dev", "--force"]);
    assert!(
        !s.instance_dir(&dev_id).exists(),
        "the branch's instance directory is gone"
    );
    let names: Vec<String> = s
        .json(&["branch", "list", "shop"])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["main"]);

    // Delete the database: instances stop, files go.
    s.ok(&["database", "delete", "shop", "--force"]);
    assert!(s.json(&["database", "list"]).as_array().unwrap().is_empty());
    assert!(!s.instance_dir(&main_id).exists());
    wait_no_servers(&data_dir(root.path()), 30);

    // The OpenAPI document describes the API.
    let (st, doc) = s.api_as(None, "GET", "openapi.json", None);
    assert_eq!(st, 200);
    assert!(doc["paths"]
        ["/v1/organizations/{organization}/databases/{database}/branches/{branch}/passwords"]
        ["post"]
        .is_object());
}

#[test]
fn bad_input_gets_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    s.json(&["database", "create", "shop", "--wait"]);
    let org = s.org.clone();

    let check =
        |method: &str, path: &str, body: Option<Value>, status: u16, code: &str, text: &str| {
            let (st, v) = s.api(method, path, body);
            assert_eq!(st, status, "{method} {path}: {v}");
            assert_eq!(v["code"], code, "{method} {path}: {v}");
            let msg = v["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains(text),
                "{method} {path}: {msg:?} should mention {text:?}"
            );
            assert_eq!(
                v.as_object().unwrap().len(),
                2,
                "exactly code and message: {v}"
            );
        };
    let dbs = format!("organizations/{org}/databases");
    // Bad names.
    check(
        "POST",
        &dbs,
        Some(json!({"name": ""})),
        422,
        "invalid_params",
        "must not be empty",
    );
    check(
        "POST",
        &dbs,
        Some(json!({"name": "a".repeat(65)})),
        422,
        "invalid_params",
        "at most 64",
    );
    check(
        "POST",
        &dbs,
        Some(json!({"name": "Bad Name"})),
        422,
        "invalid_params",
        "lowercase",
    );
    check(
        "POST",
        &dbs,
        Some(json!({"name": "mysql"})),
        422,
        "invalid_params",
        "reserved",
    );
    check(
        "POST",
        &dbs,
        Some(json!({})),
        422,
        "invalid_params",
        "name is required",
    );
    check(
        "POST",
        &dbs,
        Some(json!({"name": "x", "kind": "postgresql"})),
        422,
        "invalid_params",
        "not supported",
    );
    check(
        "POST",
        &format!("{dbs}/shop/branches"),
        Some(json!({"name": "feat/x"})),
        422,
        "invalid_params",
        "Branch name",
    );
    // Malformed JSON.
    let (st, v) = {
        let client = reqwest::blocking::Client::new();
        let res = client
            .post(format!("{}/v1/{dbs}", s.api_url))
            .header("Authorization", format!("{}:{}", s.token_id, s.token))
            .header("Content-Type", "application/json")
            .body("{not json")
            .send()
            .unwrap();
        (res.status().as_u16(), res.json::<Value>().unwrap())
    };
    assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    // Duplicates.
    check(
        "POST",
        &dbs,
        Some(json!({"name": "shop"})),
        409,
        "conflict",
        "already exists",
    );
    check(
        "POST",
        &format!("{dbs}/shop/branches"),
        Some(json!({"name": "main"})),
        409,
        "conflict",
        "already exists",
    );
    // Unknown things.
    check("GET", "organizations/nope", None, 404, "not_found", "nope");
    check(
        "GET",
        "organizations/nope/databases",
        None,
        404,
        "not_found",
        "nope",
    );
    check(
        "GET",
        &format!("{dbs}/nope"),
        None,
        404,
        "not_found",
        "Database 'nope'",
    );
    check(
        "GET",
        &format!("{dbs}/shop/branches/nope"),
        None,
        404,
        "not_found",
        "Branch 'nope'",
    );
    check(
        "GET",
        &format!("{dbs}/shop/branches/main/passwords/nope"),
        None,
        404,
        "not_found",
        "Password 'nope'",
    );
    check(
        "DELETE",
        &format!("{dbs}/shop/branches/main/passwords/nope"),
        None,
        404,
        "not_found",
        "Password",
    );
    check(
        "POST",
        &format!("{dbs}/shop/branches"),
        Some(json!({"name": "x", "parent_branch": "ghost"})),
        404,
        "not_found",
        "Parent branch 'ghost'",
    );
    check("GET", "no/such/path", None, 404, "not_found", "Not Found");
    check("PUT", &dbs, None, 405, "method_not_allowed", "not allowed");
    // Roles, TTLs, IP ranges, paging.
    let pw = format!("{dbs}/shop/branches/main/passwords");
    check(
        "POST",
        &pw,
        Some(json!({"name": "x", "role": "root"})),
        422,
        "invalid_params",
        "invalid role 'root'",
    );
    check(
        "POST",
        &pw,
        Some(json!({"name": "x", "ttl": -1})),
        422,
        "invalid_params",
        "ttl",
    );
    // A TTL whose expiry would overflow the clock is refused, not an already-expired credential.
    check(
        "POST",
        &pw,
        Some(json!({"name": "x", "ttl": i64::MAX})),
        422,
        "invalid_params",
        "at most",
    );
    check(
        "POST",
        &format!("organizations/{org}/service-tokens"),
        Some(json!({"name": "x", "ttl": i64::MAX})),
        422,
        "invalid_params",
        "at most",
    );
    check(
        "POST",
        &pw,
        Some(json!({"name": "x", "cidrs": ["10.0.0.0/99"]})),
        422,
        "invalid_params",
        "not a valid IP range",
    );
    check(
        "POST",
        &pw,
        Some(json!({"name": "x", "role": 5})),
        400,
        "bad_request",
        "not valid JSON",
    );
    check(
        "GET",
        &format!("{dbs}?per_page=500"),
        None,
        422,
        "invalid_params",
        "per_page",
    );
    // Default branch and production rules.
    check(
        "DELETE",
        &format!("{dbs}/shop/branches/main"),
        None,
        422,
        "unprocessable",
        "default branch",
    );
    // Tokens: missing, malformed, wrong.
    for (auth, text) in [
        (None, "service token is required"),
        (
            Some("garbage".to_string()),
            "must be '<service token id>:<service token>'",
        ),
        (Some(format!("{}:wrong", s.token_id)), "invalid"),
        (Some(format!("nosuchtoken:{}", s.token)), "invalid"),
    ] {
        let (st, v) = s.api_as(auth.as_deref(), "GET", &dbs, None);
        assert_eq!(st, 401, "{v}");
        assert_eq!(v["code"], "unauthorized");
        assert!(v["message"].as_str().unwrap().contains(text), "{v}");
    }
    // Nothing was lost or half-made by the bad requests.
    let (_, list) = s.api("GET", &dbs, None);
    assert_eq!(list["total_count"], 1);
    let (_, branches) = s.api("GET", &format!("{dbs}/shop/branches"), None);
    assert_eq!(branches["total_count"], 1);

    // CLI: one clear line on stderr and a non-zero exit.
    for (args, text) in [
        (
            vec!["database", "create", "Bad"],
            "Database name can only contain",
        ),
        (
            vec!["database", "show", "nope"],
            "Database 'nope' not found",
        ),
        (
            vec!["branch", "create", "shop", "x", "--from", "ghost"],
            "Parent branch 'ghost' not found",
        ),
        (
            vec!["branch", "delete", "shop", "main", "--force"],
            "default branch",
        ),
        (
            vec!["branch", "delete", "shop", "main"],
            "without confirmation",
        ),
        (
            vec!["password", "create", "shop", "main", "p", "--role", "god"],
            "invalid role 'god'",
        ),
        (
            vec!["password", "create", "shop", "main", "p", "--ttl", "soon"],
            "invalid TTL",
        ),
        (
            vec!["database", "list", "--org", "other"],
            "Organization 'other' not found",
        ),
    ] {
        let err = s.fails(&args);
        assert!(
            err.starts_with("Error: ") && err.contains(text),
            "{args:?}: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line: {err}"
        );
    }
    let out = s.cli(&[
        "database",
        "list",
        "--service-token",
        "wrong",
        "--service-token-id",
        &s.token_id,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid"));
    let out = s.cli(&["database", "list", "--api-url", "http://127.0.0.1:1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `strata up` running?"));
    // JSON mode reports errors as JSON on stderr, as pscale does; stdout stays empty.
    let out = s.cli(&["database", "show", "nope", "--format", "json"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(v["error"].as_str().unwrap().contains("nope"), "{v}");
    // A usage error too (the usage goes with it); without JSON mode it stays clap's text.
    for args in [
        &["deploy-request", "deploy", "--format", "json"][..],
        &["-f", "json", "database", "creat", "x"],
        &["branch", "list", "--bogus", "--format=json"],
    ] {
        let out = s.cli(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let v: Value = serde_json::from_slice(&out.stderr).unwrap();
        assert!(!v["error"].as_str().unwrap().is_empty(), "{v}");
        assert!(v["usage"].as_str().unwrap().contains("Usage:"), "{v}");
    }
    let out = s.cli(&["deploy-request", "deploy"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    // Output piped into a reader that has gone (`| head -1`): no panic, no error message.
    let mut child = Command::new(common::BIN)
        .args(["branch", "list", "shop"])
        .env("STRATA_CONFIG", s.root.join("config.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}

#[test]
fn restart_brings_everything_back_and_stop_leaves_no_server() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(root.path());
    let mut s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_admin",
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3)",
    );
    let dev_id = s.json(&["branch", "create", "shop", "dev", "--wait"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let pw = s.json(&[
        "password",
        "create",
        "shop",
        "dev",
        "app",
        "--role",
        "readwriter",
    ]);
    let before_db = s.json(&["database", "show", "shop"]);
    let before_branches = s.json(&["branch", "list", "shop"]);
    let before_pw = s.json(&["password", "list", "shop"]);
    assert_eq!(servers_of(&data).len(), 2);

    // SIGTERM: everything stops cleanly; no server is left.
    let status = s.stop();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(
        servers_of(&data).is_empty(),
        "no orphan mariadbd: {:?}",
        servers_of(&data)
    );

    let s = Strata::restart_like(root.path(), &s);
    for b in ["main", "dev"] {
        s.wait_branch("shop", b);
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        for b in v.as_array_mut().into_iter().flatten() {
            b.as_object_mut().unwrap().remove("instance");
        }
        v
    };
    assert_eq!(s.json(&["database", "show", "shop"]), before_db);
    assert_eq!(
        strip(&s.json(&["branch", "list", "shop"])),
        strip(&before_branches)
    );
    assert_eq!(s.json(&["password", "list", "shop"]), before_pw);
    assert_eq!(
        s.json(&[
            "password",
            "show",
            "shop",
            "dev",
            pw["id"].as_str().unwrap()
        ])["username"],
        pw["username"]
    );
    // Instances serve again, with their data.
    assert_eq!(
        s.sql_ok(&main_id, "strata_admin", "SELECT COUNT(*) FROM t")
            .trim(),
        "3"
    );
    assert_eq!(
        s.sql_ok(&dev_id, "strata_reader", "SELECT COUNT(*) FROM t")
            .trim(),
        "0"
    );
}

#[test]
fn crashed_instance_is_restarted_and_a_killed_platform_leaves_no_orphans() {
    let root = tempfile::tempdir().unwrap();
    let data = data_dir(root.path());
    let mut s = Strata::start(root.path());
    s.json(&["database", "create", "shop", "--wait"]);
    let main = s.wait_branch("shop", "main");
    let main_id = main["id"].as_str().unwrap().to_string();
    s.sql_ok(
        &main_id,
        "strata_admin",
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)",
    );

    // kill -9 of the branch's mariadbd: serving again within seconds, and the branch says so.
    let pid = main["instance"]["pid"].as_u64().unwrap() as u32;
    common::unsafe_kill(pid, "KILL");
    let start = Instant::now();
    let back = loop {
        let (_, b) = s.api("GET", &s.org_path("databases/shop/branches/main"), None);
        if b["instance"]["state"] == "running" && b["instance"]["pid"].as_u64() != Some(pid as u64)
        {
            break b;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not restarted: {b}"
        );
        std::thread::sleep(Duration::from_millis(25));
    };
    let took = start.elapsed();
    assert_eq!(back["instance"]["restarts"], 1);
    assert!(
        back["instance"]["last_exit"]
            .as_str()
            .unwrap()
            .contains("signal 9"),
        "{back}"
    );
    assert_eq!(
        s.sql_ok(&main_id, "strata_admin", "SELECT COUNT(*) FROM t")
            .trim(),
        "1"
    );
    println!("instance serving again {took:?} after kill -9");

    // kill -9 of strata itself: its servers get SIGTERM from the kernel and shut down.
    s.crash();
    wait_no_servers(&data, 60);
    // And the next start brings everything back.
    let s = Strata::start(root.path());
    s.wait_branch("shop", "main");
    assert_eq!(
        s.sql_ok(&main_id, "strata_admin", "SELECT COUNT(*) FROM t")
            .trim(),
        "1"
    );
}

#[test]
fn a_second_platform_on_the_same_data_directory_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let _s = Strata::start(root.path());
    let out = std::process::Command::new(common::BIN)
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir(root.path()))
        .env("STRATA_CONFIG", root.path().join("config2.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
