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
        "CREATE TABLE p (id INT PRIMARY KEY) PARTITION BY HASH (id) PARTITIONS 2;",
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("partitioning"));
}
