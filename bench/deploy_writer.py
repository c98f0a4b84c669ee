#!/usr/bin/env python3
"""A steady writer for the online-deploy benchmarks: UPDATEs and INSERTs on one table, one connection,
as fast as it can, until the stop file appears. Prints writes, errors, writes/s and the longest single
write (the stall a schema change imposes)."""
import argparse, os, random, time
import pymysql

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--user", required=True)
p.add_argument("--password", required=True)
p.add_argument("--db", default="bench")
p.add_argument("--table", default="t")
p.add_argument("--rows", type=int, default=1_000_000)
p.add_argument("--stop-file", required=True)
p.add_argument("--rate", type=float, default=0, help="writes per second (0: unthrottled)")
a = p.parse_args()

conn = pymysql.connect(host="127.0.0.1", port=a.port, user=a.user, password=a.password, database=a.db, autocommit=True)
cur = conn.cursor()
writes = errors = 0
worst = 0.0
next_id = a.rows + 1_000_000 * (os.getpid() % 100 + 1)
start = time.monotonic()
while not os.path.exists(a.stop_file):
    t0 = time.monotonic()
    try:
        if random.random() < 0.7:
            cur.execute(f"UPDATE `{a.table}` SET k = k + 1 WHERE id = %s", (random.randint(1, a.rows),))
        else:
            next_id += 1
            cur.execute(f"INSERT INTO `{a.table}` (id, k, c, pad) VALUES (%s, 0, 'w', 'w')", (next_id,))
        writes += 1
    except pymysql.MySQLError as e:
        errors += 1
        print("write error:", e, flush=True)
        time.sleep(0.05)
    took = time.monotonic() - t0
    worst = max(worst, took)
    if a.rate > 0:
        pause = 1.0 / a.rate - took
        if pause > 0:
            time.sleep(pause)
elapsed = time.monotonic() - start
print(f"writes={writes} errors={errors} writes_per_s={writes / elapsed:.0f} max_stall_ms={worst * 1000:.0f}")
