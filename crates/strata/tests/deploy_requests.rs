//! Deploy requests end to end: create, the three-way check, diff, reviews, close, and bad input.

mod common;

use common::Strata;
use serde_json::Value;

#[test]
fn deploy_requests_check_three_ways_and_take_reviews() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL)",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let dev_id = s.json(&["branch", "create", "shop", "dev", "--wait"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.sql_ok(&dev_id, "strata_admin", "ALTER TABLE users ADD COLUMN name VARCHAR(50); CREATE TABLE tags (id INT PRIMARY KEY, label VARCHAR(20))");

    // Bad requests.
    assert!(s
        .fails(&["deploy-request", "create", "shop", "main"])
        .contains("into itself"));
    assert!(s
        .fails(&["deploy-request", "create", "shop", "nope"])
        .contains("Branch 'nope' not found"));
    s.json(&["branch", "create", "shop", "other", "--wait"]);
    assert!(s
        .fails(&["deploy-request", "create", "shop", "other", "--into", "dev"])
        .contains("safe migrations"));

    // A deployable request, its diff.
    let dr = s.json(&[
        "deploy-request",
        "create",
        "shop",
        "dev",
        "--notes",
        "add names and tags",
    ]);
    assert_eq!(dr["number"], 1);
    assert_eq!(dr["into_branch"], "main");
    assert_eq!(dr["state"], "open");
    assert_eq!(dr["deployment_state"], "ready", "{dr}");
    assert_eq!(dr["deployable"], true);
    assert_eq!(dr["approved"], false);
    let diff = s.json(&["deploy-request", "diff", "shop", "1"]);
    let names: Vec<&str> = diff
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tags", "users"]);
    assert_eq!(
        diff[1]["raw"],
        "ALTER TABLE `users` ADD COLUMN `name` varchar(50) DEFAULT NULL AFTER `email`;"
    );
    assert!(s
        .fails(&["deploy-request", "create", "shop", "dev"])
        .contains("already has an open deploy request (#1)"));
    assert_eq!(
        s.json(&["deploy-request", "list", "shop"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The target changes the same table differently meanwhile: a conflict, named.
    s.json(&["branch", "safe-migrations", "disable", "shop", "main"]);
    s.sql_ok(
        &main_id,
        "strata_root",
        "ALTER TABLE users ADD COLUMN nickname VARCHAR(20)",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let shown = s.json(&["deploy-request", "show", "shop", "1"]);
    assert_eq!(shown["deployable"], false, "{shown}");
    assert_eq!(shown["deployment_state"], "error");
    let problems: Vec<&str> = shown["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems.iter().any(|p| p.contains("`users`")
            && p.contains("changed on this branch and, differently, on `main`")),
        "{problems:?}"
    );
    // The diff still shows the branch's change to the conflicted table, and says why it cannot
    // deploy; the request is found by its branch's name too.
    let diff = s.json(&["deploy-request", "diff", "shop", "1"]);
    assert!(
        diff.to_string().contains("ADD COLUMN `name`"),
        "the conflicted change is shown: {diff}"
    );
    let human = s.ok(&["deploy-request", "diff", "shop", "1", "--format", "human"]);
    assert!(
        human.contains("ADD COLUMN `name`") && human.contains("Not deployable:"),
        "{human}"
    );
    assert_eq!(
        s.json(&["deploy-request", "show", "shop", "dev"])["number"],
        1
    );
    assert!(s
        .fails(&["deploy-request", "show", "shop", "main"])
        .contains("has no deploy request"));
    assert_eq!(s.json(&["deploy-request", "diff", "shop", "dev"]), diff);

    // Reviews: approving your own request is refused once another admin exists.
    assert!(s
        .fails(&["deploy-request", "review", "shop", "1"])
        .contains("--approve"));
    let other = s.json(&["service-token", "create", "--name", "reviewer"]);
    let (oid, otok) = (
        other["id"].as_str().unwrap().to_string(),
        other["token"].as_str().unwrap().to_string(),
    );
    assert!(s
        .fails(&["deploy-request", "review", "shop", "1", "--approve"])
        .contains("cannot approve your own"));
    let out = s.cli(&[
        "deploy-request",
        "review",
        "shop",
        "1",
        "--approve",
        "--service-token-id",
        &oid,
        "--service-token",
        &otok,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.ok(&[
        "deploy-request",
        "review",
        "shop",
        "1",
        "--comment",
        "looks good",
    ]);
    let shown = s.json(&["deploy-request", "show", "shop", "1"]);
    assert_eq!(shown["approved"], true);
    assert_eq!(shown["num_comments"], 1);
    // The branch changes after the approval: the approval was for other changes, it no longer
    // stands (with the database requiring approval, nothing unreviewed can deploy).
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "CREATE TABLE extra (id INT PRIMARY KEY)",
    );
    let shown = s.json(&["deploy-request", "show", "shop", "1"]);
    assert_eq!(shown["approved"], false, "{shown}");
    assert!(
        shown["warnings"]
            .to_string()
            .contains("approval was dismissed"),
        "{shown}"
    );
    s.sql_ok(&dev_id, "strata_admin", "DROP TABLE extra");
    let shown = s.json(&["deploy-request", "show", "shop", "1"]);
    assert_eq!(
        shown["approved"], true,
        "the approved changes again: {shown}"
    );
    let (st, reviews) = s.api(
        "GET",
        &s.org_path("databases/shop/deploy-requests/1/reviews"),
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(reviews["data"].as_array().unwrap().len(), 2);

    // Close; closed requests take no reviews; unknown numbers are not found.
    let closed = s.json(&["deploy-request", "close", "shop", "1"]);
    assert_eq!(closed["state"], "closed");
    assert!(closed["closed_at"].is_string());
    assert_eq!(
        closed["deployable"], false,
        "a closed request deploys nothing: {closed}"
    );
    assert!(s
        .fails(&["deploy-request", "close", "shop", "1"])
        .contains("already closed"));
    assert!(s
        .fails(&["deploy-request", "edit", "shop", "1", "--enable-auto-apply"])
        .contains("is closed"));
    assert!(s
        .fails(&["deploy-request", "review", "shop", "1", "--comment", "late"])
        .contains("closed"));
    assert!(s
        .fails(&["deploy-request", "show", "shop", "9"])
        .contains("#9 not found"));
    let (st, v) = s.api(
        "GET",
        &s.org_path("databases/shop/deploy-requests/abc"),
        None,
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["code"], "bad_request");
    let (st, v) = s.api(
        "PATCH",
        &s.org_path("databases/shop/deploy-requests/1"),
        Some(serde_json::json!({"state": "open"})),
    );
    assert_eq!(
        (st, v["code"].clone()),
        (422, Value::from("invalid_params"))
    );
    // Rebase: a branch takes its parent's later changes when nothing conflicts …
    let r1 = s.json(&["branch", "create", "shop", "r1", "--wait"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.sql_ok(&r1, "strata_admin", "CREATE TABLE r1t (id INT PRIMARY KEY)");
    s.json(&["branch", "safe-migrations", "disable", "shop", "main"]);
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE audit (id INT PRIMARY KEY)",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    // The branch's diff is its own change, not an undoing of what `main` did since.
    let before = s.json(&["branch", "diff", "shop", "r1"]);
    let names: Vec<&str> = before
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r1t"], "{before}");
    s.json(&["branch", "rebase", "shop", "r1"]);
    assert!(s
        .sql_ok(&r1, "strata_admin", "SHOW TABLES")
        .contains("audit"));
    let after = s.json(&["branch", "diff", "shop", "r1"]);
    let names: Vec<&str> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["r1t"], "{after}");
    let dr = s.json(&["deploy-request", "create", "shop", "r1"]);
    assert_eq!(dr["deployable"], true, "{dr}");
    // A database that requires approval: not deployable until approved, and the deploy says why.
    s.json(&["database", "update", "shop", "--require-approval", "true"]);
    let n = dr["number"].to_string();
    let shown = s.json(&["deploy-request", "show", "shop", &n]);
    assert_eq!(shown["deployable"], false, "{shown}");
    assert_eq!(shown["deployment_state"], "ready", "{shown}");
    assert!(s
        .fails(&["deploy-request", "deploy", "shop", &n])
        .contains("must be approved"));
    s.json(&["database", "update", "shop", "--require-approval", "false"]);
    assert_eq!(
        s.json(&["deploy-request", "show", "shop", &n])["deployable"],
        true
    );
    // … and is refused, with the reason, when they do.
    let err = s.fails(&["branch", "rebase", "shop", "dev"]);
    assert!(
        err.contains("cannot be rebased") && err.contains("`users`"),
        "{err}"
    );

    // Moving a primary key to a column the old table lacks cannot be copied online.
    let pk = s.json(&["branch", "create", "shop", "pk", "--wait"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.sql_ok(
        &pk,
        "strata_admin",
        "ALTER TABLE audit ADD COLUMN uid INT NOT NULL, DROP PRIMARY KEY, ADD PRIMARY KEY (uid)",
    );
    let dr = s.json(&["deploy-request", "create", "shop", "pk"]);
    assert_eq!(dr["deployable"], false, "{dr}");
    assert!(
        dr["problems"][0]
            .as_str()
            .unwrap()
            .contains("no shared columns covered by non-null unique keys"),
        "{dr}"
    );

    // A branch that drops a table a production view reads: not deployable, the view named. A table
    // dropped and re-created under another name with the same columns: warned as a rename.
    s.json(&["branch", "safe-migrations", "disable", "shop", "main"]);
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE logs (id INT PRIMARY KEY, line VARCHAR(100)); CREATE VIEW recent AS SELECT id FROM audit",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let vb = s.json(&["branch", "create", "shop", "vb", "--wait"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.sql_ok(
        &vb,
        "strata_admin",
        "DROP VIEW recent; DROP TABLE logs; CREATE TABLE log_lines (id INT PRIMARY KEY, line VARCHAR(100))",
    );
    let dr = s.json(&["deploy-request", "create", "shop", "vb"]);
    assert_eq!(dr["deployable"], true, "{dr}");
    assert!(
        dr["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains(
                "Table `logs` is dropped and table `log_lines` created with the same columns"
            )),
        "{dr}"
    );
    let va = s.json(&["branch", "create", "shop", "va", "--wait"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.sql_ok(&va, "strata_admin", "DROP TABLE audit");
    let dr = s.json(&["deploy-request", "create", "shop", "va"]);
    assert_eq!(dr["deployable"], false, "{dr}");
    assert!(
        dr["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap() == "view `recent` reads `audit`, which would not exist"),
        "{dr}"
    );

    // A new request for the same branch can be opened now.
    assert_eq!(
        s.json(&["deploy-request", "create", "shop", "dev"])["number"],
        6
    );
}

/// A deleted branch's open deploy request closes with it: a branch made again under the name
/// opens its own request, which shows its own changes.
#[test]
fn a_deleted_branch_closes_its_open_request() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE users (id INT PRIMARY KEY)",
    );
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let dev = s.json(&["branch", "create", "shop", "dev", "--wait"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.sql_ok(&dev, "strata_admin", "ALTER TABLE users ADD COLUMN a INT");
    s.json(&["deploy-request", "create", "shop", "dev"]);
    s.ok(&["branch", "delete", "shop", "dev", "--force"]);
    let first = s.json(&["deploy-request", "show", "shop", "1"]);
    assert_eq!(first["state"], "closed", "{first}");
    let dev = s.json(&["branch", "create", "shop", "dev", "--wait"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.sql_ok(&dev, "strata_admin", "ALTER TABLE users ADD COLUMN b INT");
    let second = s.json(&["deploy-request", "create", "shop", "dev"]);
    assert_eq!(second["number"], 2, "{second}");
    let diff = s.json(&["deploy-request", "diff", "shop", "2"]).to_string();
    assert!(diff.contains("`b`") && !diff.contains("`a`"), "{diff}");
}

/// A view a password makes on production (safe migrations off) names the admin role's shared
/// user as definer, not the password's own: a branch made from production then has a working
/// copy, the next deploy request shows no change of it, and deleting the password breaks nothing.
#[test]
fn a_view_made_by_a_password_works_on_every_branch() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    let main_id = s.new_database("shop");
    s.sql_ok(
        &main_id,
        "strata_root",
        "CREATE TABLE shop.t1 (id INT PRIMARY KEY); INSERT INTO shop.t1 VALUES (1), (2)",
    );
    let (admin, pw, admin_id) = common::password(&s, "shop", "main", "admin");
    let made = s.gateway_sql(
        &admin,
        &pw,
        &["shop"],
        "CREATE VIEW v1 AS SELECT id FROM t1",
    );
    assert!(made.status.success(), "{made:?}");
    let definer = || {
        s.sql_ok(
            &main_id,
            "strata_root",
            "SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = 'shop'",
        )
        .trim()
        .to_string()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while definer() != "strata_admin@127.0.0.1" {
        assert!(
            std::time::Instant::now() < deadline,
            "definer: {}",
            definer()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    s.json(&["password", "delete", "shop", "main", &admin_id, "--force"]);
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let dev_id = s.json(&["branch", "create", "shop", "dev", "--wait"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    // (A development branch has the schema, not the rows.)
    for (branch, rows) in [("main", "2"), ("dev", "0")] {
        let (reader, rpw, _) = common::password(&s, "shop", branch, "reader");
        let out = s.gateway_sql(&reader, &rpw, &["shop"], "SELECT COUNT(*) FROM v1");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == rows,
            "{branch}: {out:?}"
        );
    }
    // The branch's own change only: the view is not shown as changed.
    s.sql_ok(
        &dev_id,
        "strata_admin",
        "ALTER TABLE shop.t1 ADD COLUMN n INT NULL",
    );
    let dr = s.json(&["deploy-request", "create", "shop", "dev"]);
    assert_eq!(dr["deployable"], true, "{dr}");
    let diff = s.cli(&["deploy-request", "diff", "shop", "1"]);
    let diff = String::from_utf8_lossy(&diff.stdout);
    assert!(!diff.contains("VIEW"), "{diff}");
}
