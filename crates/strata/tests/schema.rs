//! `strata schema diff` on files, through a scratch instance.

mod common;

use std::process::Command;

fn run(from: &str, to: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("from.sql"), dir.path().join("to.sql"));
    std::fs::write(&a, from).unwrap();
    std::fs::write(&b, to).unwrap();
    Command::new(common::BIN)
        .args(["schema", "diff"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap()
}

#[test]
fn schema_diff_between_files() {
    let from = "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(100) NOT NULL);\nCREATE TABLE posts (id INT PRIMARY KEY, user_id INT NOT NULL, CONSTRAINT fk_u FOREIGN KEY (user_id) REFERENCES users (id));\nCREATE VIEW v AS SELECT id FROM users;\n";
    let to = "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(200) NOT NULL, name VARCHAR(50), UNIQUE KEY uk (email));\n-- a comment; with a semicolon\nCREATE TABLE tags (id INT PRIMARY KEY, label VARCHAR(20) NOT NULL DEFAULT ';');\nCREATE VIEW v AS SELECT id, email FROM users;\n";
    let o = run(from, to);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("CREATE TABLE `tags`"), "{text}");
    assert!(text.contains("ALTER TABLE `users` MODIFY COLUMN `email` varchar(200) NOT NULL AFTER `id`, ADD COLUMN `name` varchar(50) DEFAULT NULL AFTER `email`, ADD UNIQUE KEY `uk` (`email`);"), "{text}");
    assert!(text.contains("CREATE OR REPLACE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select `users`.`id` AS `id`,`users`.`email` AS `email` from `users`;"), "{text}");
    assert!(text.trim_end().ends_with("DROP TABLE `posts`;"), "{text}");
    // The same schema: nothing, exit 0.
    let o = run(to, to);
    assert!(o.status.success());
    assert!(o.stdout.is_empty());
    // A file that does not load names the statement.
    let o = run(from, "CREATE TABLE ok (id INT PRIMARY KEY);\nCREATE TABLE bad (id INT PRIMARY KEY, x NOTATYPE);\n");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("statement 2 does not load")
            && err.contains("CREATE TABLE bad")
            && err.contains("NOTATYPE"),
        "{err}"
    );
    // A construct the engine does not model is a named error, not a wrong diff.
    let o = run(
        from,
        "CREATE TABLE h (id INT PRIMARY KEY) WITH SYSTEM VERSIONING;",
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("system versioning"));
    // Partitioned tables diff; their RANGE partitions rotate.
    let p = |years: &[u32]| {
        let parts: Vec<String> = years
            .iter()
            .map(|y| format!("PARTITION p{y} VALUES LESS THAN ({})", y + 1))
            .collect();
        format!("CREATE TABLE p (id INT NOT NULL, d DATE NOT NULL, PRIMARY KEY (id, d)) PARTITION BY RANGE (YEAR(d)) ({});", parts.join(", "))
    };
    let o = run(&p(&[2020, 2021]), &p(&[2021, 2022]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "ALTER TABLE `p` DROP PARTITION `p2020`;\nALTER TABLE `p` ADD PARTITION (PARTITION `p2022` VALUES LESS THAN (2023) ENGINE = InnoDB);\n"
    );
}

/// Statements in any order: views before their tables and before the views they read, foreign keys
/// in a cycle. The file loads in passes and diffs like the same file in order.
#[test]
fn schema_files_in_any_order() {
    let in_order = "CREATE TABLE a (id INT PRIMARY KEY, b_id INT, KEY (b_id), CONSTRAINT fk_ab FOREIGN KEY (b_id) REFERENCES b (id));\nCREATE TABLE b (id INT PRIMARY KEY, a_id INT, KEY (a_id), CONSTRAINT fk_ba FOREIGN KEY (a_id) REFERENCES a (id));\nCREATE VIEW v1 AS SELECT id FROM a;\nCREATE VIEW v2 AS SELECT id FROM v1;\nCREATE VIEW v3 AS SELECT v2.id, b.a_id FROM v2 JOIN b ON b.id = v2.id;\n";
    let shuffled = "CREATE VIEW v3 AS SELECT v2.id, b.a_id FROM v2 JOIN b ON b.id = v2.id;\nCREATE VIEW v2 AS SELECT id FROM v1;\nCREATE TABLE b (id INT PRIMARY KEY, a_id INT, KEY (a_id), CONSTRAINT fk_ba FOREIGN KEY (a_id) REFERENCES a (id));\nCREATE VIEW v1 AS SELECT id FROM a;\nCREATE TABLE a (id INT PRIMARY KEY, b_id INT, KEY (b_id), CONSTRAINT fk_ab FOREIGN KEY (b_id) REFERENCES b (id));\n";
    for (from, to) in [
        (in_order, shuffled),
        (shuffled, in_order),
        (shuffled, shuffled),
    ] {
        let o = run(from, to);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            o.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    // From nothing, the shuffled file gives the tables, then the foreign keys, then the views in
    // the order they read each other.
    let o = run("", shuffled);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} in {text}"));
    assert!(
        at("VIEW `v1`") < at("VIEW `v2`") && at("VIEW `v2`") < at("VIEW `v3`"),
        "{text}"
    );
    assert!(at("ADD CONSTRAINT `fk_ba`") < at("VIEW `v1`"), "{text}");
    // A view reading what no statement creates is still an error naming it.
    let o = run(
        "",
        &format!("{shuffled}CREATE VIEW w AS SELECT id FROM nowhere;\n"),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("statement 6 does not load") && err.contains("nowhere"),
        "{err}"
    );
}
