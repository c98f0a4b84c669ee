//! The unmodified `@planetscale/database` driver (npm, pinned in tests/clients/package.json) against
//! the HTTP SQL endpoint of a real `strata up`, over TLS verified with the generated CA; and HTTP/2.

mod common;

use common::Strata;
use std::process::Command;

#[test]
fn the_serverless_driver_works_unmodified() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start_with(
        root.path(),
        "127.0.0.1:0",
        &[
            // Longer than the transaction limit: an idle transaction ends at that limit, not
            // when its session expires.
            "--http-session-idle",
            "5",
            "--max-rows",
            "50",
            "--transaction-timeout",
            "2",
            "--query-timeout",
            "1",
        ],
    );
    s.json(&["database", "create", "shop", "--wait"]);
    s.json(&["branch", "create", "shop", "dev", "--wait"]);
    s.json(&["branch", "safe-migrations", "enable", "shop", "main"]);
    let (user, pass, _) = common::password(&s, "shop", "dev", "admin");
    let (reader, reader_pass, _) = common::password(&s, "shop", "dev", "reader");
    let (main_user, main_pass, _) = common::password(&s, "shop", "main", "admin");
    let shown = s.json(&[
        "password", "create", "shop", "dev", "details", "--role", "reader",
    ]);
    assert_eq!(
        shown["connection"]["http_url"],
        format!("https://127.0.0.1:{}", s.http_port),
        "{shown}"
    );
    let ca = common::data_dir(root.path()).join("tls/ca.pem");
    let clients = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients");
    let out = Command::new("node")
        .arg("serverless.mjs")
        .current_dir(clients)
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .env("PS_HOST", format!("localhost:{}", s.http_port))
        .env("PS_PORT", s.http_port.to_string())
        .env("PS_USER", &user)
        .env("PS_PASS", &pass)
        .env("PS_READER_USER", &reader)
        .env("PS_READER_PASS", &reader_pass)
        .env("PS_MAIN_USER", &main_user)
        .env("PS_MAIN_PASS", &main_pass)
        .env("PS_IDLE_SECS", "5")
        .env("PS_MAX_ROWS", "50")
        .output()
        .expect("node installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    eprintln!("{stdout}");

    // HTTP/2 over TLS (ALPN), as the Go client and fetch-h2 speak it.
    let out = Command::new("curl")
        .args(["-s", "--http2", "--cacert"])
        .arg(&ca)
        .args(["-u", &format!("{user}:{pass}")])
        .args(["-H", "content-type: application/json"])
        .args([
            "-d",
            r#"{"query":"SELECT 40 + 2 AS answer","session":null}"#,
        ])
        .args(["-w", "\n%{http_version}"])
        .arg(format!(
            "https://localhost:{}/psdb.v1alpha1.Database/Execute",
            s.http_port
        ))
        .output()
        .expect("curl installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, version) = text.rsplit_once('\n').unwrap_or_default();
    assert_eq!(version, "2", "{text}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["result"]["fields"][0]["type"], "INT64", "{v}");
    assert_eq!(v["result"]["rows"][0]["values"], "NDI=", "{v}");
}
