#!/usr/bin/env python3
"""Branch create → ready, with a 100-table parent.

Starts `strata up` on a temporary data directory, creates a database, gives its main branch 100 tables,
then times `POST …/branches` until the branch reports ready (its instance serving, the parent's schema
copied) for several branches. The baseline, measured in the same run on the same machine, is the
obvious way to get the same result without a template: `mariadb-install-db` into a new datadir, start
`mariadbd`, wait for it to answer, and load the same 100 tables with the `mariadb` client.

Usage: bench/branch_create.py [--runs N] [--tables N]   (builds target/release/strata first)
"""

import argparse, json, os, platform, re, shutil, socket, statistics, subprocess, sys, tempfile, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "strata")


def schema(tables):
    out = []
    for i in range(tables):
        out.append(
            f"CREATE TABLE t{i:03d} (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, account_id BIGINT UNSIGNED NOT NULL, "
            f"name VARCHAR(255) NOT NULL DEFAULT '', status ENUM('active','inactive') NOT NULL DEFAULT 'active', "
            f"amount DECIMAL(12,2) NOT NULL DEFAULT 0.00, payload JSON DEFAULT NULL, "
            f"created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMP NULL ON UPDATE CURRENT_TIMESTAMP, "
            f"PRIMARY KEY (id), KEY idx_account (account_id, created_at), UNIQUE KEY uk_name (account_id, name)) ENGINE=InnoDB;"
        )
    return "\n".join(out)


class Api:
    def __init__(self, url, token_id, token, org):
        self.url, self.auth, self.org = url, f"{token_id}:{token}", org

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/v1/organizations/{self.org}/{path}", data=data, method=method)
        req.add_header("Authorization", self.auth)
        if data:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req) as r:
            text = r.read()
            return json.loads(text) if text else None


def wait_ready(api, db, branch, timeout=60):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        b = api.call("GET", f"databases/{db}/branches/{branch}")
        if b["ready"]:
            return b
        if b["state"] == "failed":
            sys.exit(f"branch {branch} failed: {b.get('error')}")
        time.sleep(0.005)
    sys.exit(f"branch {branch} not ready after {timeout}s")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def baseline(work, sql, runs):
    """mariadb-install-db + mariadbd start + schema load, no template."""
    times = []
    for i in range(runs):
        d = os.path.join(work, f"naive{i}")
        os.makedirs(d)
        port = free_port()
        cnf = os.path.join(d, "my.cnf")
        with open(cnf, "w") as f:
            f.write(
                f"[mariadbd]\ndatadir={d}/data\nport={port}\nbind-address=127.0.0.1\nsocket={d}/s.sock\n"
                f"skip-name-resolve\ninnodb_buffer_pool_size=32M\ninnodb_log_file_size=16M\n"
                f"innodb_flush_log_at_trx_commit=2\nperformance_schema=OFF\n"
                + ("user=root\n" if os.geteuid() == 0 else "")
            )
        t0 = time.monotonic()
        subprocess.run(["mariadb-install-db", f"--defaults-file={cnf}", "--auth-root-authentication-method=normal",
                        "--skip-test-db"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = subprocess.Popen(["mariadbd", f"--defaults-file={cnf}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while subprocess.run(["mariadb", f"--socket={d}/s.sock", "-uroot", "-e", "SELECT 1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            time.sleep(0.005)
        subprocess.run(["mariadb", f"--socket={d}/s.sock", "-uroot", "-e", f"CREATE DATABASE bench; USE bench; {sql}"], check=True)
        times.append(time.monotonic() - t0)
        proc.terminate()
        proc.wait()
    return times


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    server = subprocess.run(["mariadbd", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.platform()}; {server}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--tables", type=int, default=100)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "strata"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="strata-bench-")
    env = dict(os.environ, STRATA_CONFIG=os.path.join(work, "config.toml"), STRATA_LOG=os.environ.get("STRATA_LOG", "warn"))
    up = subprocess.Popen([BIN, "up", "--listen", "127.0.0.1:0", "--data-dir", os.path.join(work, "data")],
                          stdout=subprocess.PIPE, stderr=open(os.environ.get("STRATA_BENCH_LOG", os.devnull), "w"), text=True, env=env)
    try:
        url = None
        for line in up.stdout:
            m = re.search(r"API:\s+(\S+)", line)
            if m:
                url = m.group(1)
                break
        cfg = dict(re.findall(r'^(\w+) = "(.*)"$', open(env["STRATA_CONFIG"]).read(), re.M))
        api = Api(url, cfg["service_token_id"], cfg["service_token"], cfg["org"])
        api.call("POST", "databases", {"name": "bench"})
        main_branch = wait_ready(api, "bench", "main")
        sql = schema(args.tables)
        cnf = os.path.join(work, "data", "instances", main_branch["id"], "client-strata_admin.cnf")
        subprocess.run(["mariadb", f"--defaults-extra-file={cnf}", "-e", sql], check=True)

        times = []
        for i in range(args.runs):
            t0 = time.monotonic()
            api.call("POST", "databases/bench/branches", {"name": f"b{i}"})
            b = wait_ready(api, "bench", f"b{i}")
            times.append(time.monotonic() - t0)
            cnf = os.path.join(work, "data", "instances", b["id"], "client-strata_admin.cnf")
            n = subprocess.run(["mariadb", f"--defaults-extra-file={cnf}", "-N", "-e", "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='bench'"],
                               capture_output=True, text=True, check=True).stdout.strip()
            assert n == str(args.tables), f"branch b{i} has {n} tables"
            api.call("DELETE", f"databases/bench/branches/b{i}")
        base = baseline(work, sql, max(3, args.runs // 3))
    finally:
        up.terminate()
        up.wait()
        shutil.rmtree(work, ignore_errors=True)

    def fmt(ts):
        ts = sorted(ts)
        return f"median {statistics.median(ts)*1000:.0f} ms, min {ts[0]*1000:.0f} ms, max {ts[-1]*1000:.0f} ms (n={len(ts)})"

    print(f"machine: {machine()}")
    print(f"strata branch create → ready, {args.tables}-table parent: {fmt(times)}")
    print(f"baseline (install-db + start + load schema):         {fmt(base)}")
    print(f"ratio (median strata / median baseline): {statistics.median(times)/statistics.median(base):.2f}")


if __name__ == "__main__":
    main()
