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

/// One HTTP SQL session's calls on two client connections held open at once: the gateway serves
/// each connection on its own thread (`--gateway-threads 2`), so the transaction's backend
/// connection moves between them; every commit and rollback must still land exactly.
#[test]
fn a_transaction_whose_calls_come_on_two_connections_lands_exactly() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start_with(root.path(), "127.0.0.1:0", &["--gateway-threads", "2"]);
    s.json(&["database", "create", "shop", "--wait"]);
    let (user, pass, _) = common::password(&s, "shop", "main", "admin");
    let script = r#"
import base64, http.client, json, sys
port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
auth = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
def call(c, q, session):
    c.request("POST", "/psdb.v1alpha1.Database/Execute", json.dumps({"query": q, "session": session}),
              {"content-type": "application/json", "authorization": auth})
    r = c.getresponse()
    body = json.loads(r.read())
    if r.status != 200 or body.get("error"):
        sys.exit(f"{q}: {r.status} {body}")
    return body["session"]
a = http.client.HTTPConnection("127.0.0.1", port)
b = http.client.HTTPConnection("127.0.0.1", port)
s = call(a, "CREATE TABLE moved (id INT PRIMARY KEY)", None)
s = call(b, "SELECT 1", s)
for i in range(20):
    one, two = (a, b) if i % 2 == 0 else (b, a)
    s = call(one, "BEGIN", s)
    s = call(one, f"INSERT INTO moved VALUES ({i})", s)
    s = call(two, f"INSERT INTO moved VALUES ({i + 100})", s)
    s = call(one if i % 3 else two, "ROLLBACK" if i % 4 == 3 else "COMMIT", s)
# A result past a MiB (encoded and gzipped off the connection's thread) arrives whole.
import gzip
a.request("POST", "/psdb.v1alpha1.Database/Execute",
          json.dumps({"query": "SELECT REPEAT('x', 3000000) AS big, 7 AS n", "session": None}),
          {"content-type": "application/json", "authorization": auth, "accept-encoding": "gzip"})
r = a.getresponse()
raw = r.read()
assert r.getheader("content-encoding") == "gzip", r.getheaders()
row = json.loads(gzip.decompress(raw))["result"]["rows"][0]
assert row["lengths"] == ["3000000", "1"], row["lengths"]
assert base64.b64decode(row["values"]) == b"x" * 3000000 + b"7"
"#;
    run_python(script, &s, &user, &pass);
    let o = s.gateway_sql(
        &user,
        &pass,
        &["shop"],
        "SELECT COUNT(*), SUM(id % 4 = 3) FROM moved",
    );
    // Transactions 3, 7, 11, 15 and 19 rolled back: 15 committed, two rows each.
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "30\t0");
}

/// Answers a client does not read keep their share of the endpoint's result memory until they are
/// sent: a few unread large answers leave no room for another (it is refused after its wait), so
/// unread answers cannot take the process's memory; once they are read, there is room again.
#[test]
fn unread_answers_keep_their_share_of_the_result_memory() {
    let root = tempfile::tempdir().unwrap();
    let s = Strata::start_with(root.path(), "127.0.0.1:0", &[]);
    s.json(&["database", "create", "shop", "--wait"]);
    let (user, pass, _) = common::password(&s, "shop", "main", "reader");
    let script = r#"
import base64, http.client, json, socket, sys, time
port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
auth = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
def post(c, q, session):
    c.request("POST", "/psdb.v1alpha1.Database/Execute", json.dumps({"query": q, "session": session}),
              {"content-type": "application/json", "authorization": auth})
BIG = "SELECT REPEAT('x', 1048576) FROM seq_1_to_130"  # 130 MiB: the shared memory holds 512
def olap():
    c = http.client.HTTPConnection("127.0.0.1", port)
    post(c, "SET workload = olap", None)
    r = c.getresponse(); body = json.loads(r.read())
    assert not body.get("error"), body
    return c, body["session"]
# Three large answers asked for and never read: their headers (sent once the answer is made),
# not their bodies, through a small receive buffer.
unread = []
for _ in range(3):
    c, session = olap()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    post(c, BIG, session)
    r = c.getresponse()
    assert r.status == 200, r.status
    unread.append((c, r))
c, session = olap()
post(c, BIG, session)
r = c.getresponse(); body = json.loads(r.read())
err = (body.get("error") or {}).get("message", "")
assert "too many large results" in err, ("a fourth fits while three are unread", str(body)[:300])
for u, r in unread:
    u.close()
time.sleep(1)
post(c, BIG, session)
r = c.getresponse(); body = json.loads(r.read())
assert not body.get("error"), str(body)[:300]
assert len(body["result"]["rows"]) == 130
print("ok")
"#;
    run_python(script, &s, &user, &pass);
}

/// Runs a Python script against the HTTP SQL endpoint (argv: port, user, password); it must exit 0.
fn run_python(script: &str, s: &Strata, user: &str, pass: &str) {
    let out = Command::new("python3")
        .args(["-c", script, &s.http_port.to_string(), user, pass])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
