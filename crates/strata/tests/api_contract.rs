//! The REST API keeps the contract its OpenAPI document states: Schemathesis (PyPI, pinned in
//! tests/clients/requirements.txt) generates requests from the document — valid ones, ones that
//! break it, and sequences that follow the links between operations — against a live `strata up`
//! with a database in it, and checks every answer: no server error, every status and body as
//! documented, what the document allows accepted, what it forbids refused.

mod common;

use common::Strata;
use std::process::Command;

#[test]
fn the_api_keeps_its_openapi_contract() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start(root.path());
    s.json(&["database", "create", "shop", "--wait"]);
    s.json(&["branch", "create", "shop", "dev", "--wait"]);
    let schema = format!("{}/v1/openapi.json", s.api_url);
    let auth = format!("Authorization: {}:{}", s.token_id, s.token);
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/api/schemathesis.toml"
    );
    let out = Command::new("st")
        .args(["--config-file", config, "run", &schema, "-H", &auth])
        .args(["--checks", "all", "--workers", "1", "--seed", "1"])
        .args(["--max-examples", "25", "--request-timeout", "60"])
        // The token the run uses cannot delete itself halfway through.
        .args([
            "--exclude-name",
            "DELETE /v1/organizations/{organization}/service-tokens/{id}",
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis (`st`) runs: scripts/test-deps.sh installs it");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found contract failures:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
