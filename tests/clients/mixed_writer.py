"""A PyMySQL writer with PyMySQL's defaults (autocommit off: every change is committed explicitly),
for deploy tests. It owns the rows whose id % MOD == REM and the rows it inserts, and records every
acknowledged change. Runs until STOP_FILE exists, then prints one JSON object:
{"ok": n, "errors": [...], "worst_ms": x, "rows": {table: {id: w or null}}}.
Usage: mixed_writer.py PORT USER PASSWORD DATABASE TABLES(comma) MOD REM STOP_FILE SEED"""

import json
import os
import random
import sys
import time

import pymysql

port, user, password, db = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
tables = sys.argv[5].split(",")
mod, rem, stop_file, seed = int(sys.argv[6]), int(sys.argv[7]), sys.argv[8], int(sys.argv[9])
rng = random.Random(seed)


def connect():
    return pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database=db)


conn = connect()
rows = {t: {} for t in tables}
owned = {t: [] for t in tables}
ok, errors, worst = 0, [], 0.0
n = 0
while not os.path.exists(stop_file):
    n += 1
    t = rng.choice(tables)
    op = rng.random()
    changes = []
    started = time.monotonic()
    try:
        cur = conn.cursor()
        if op < 0.4:
            w = rng.randint(1, 1_000_000)
            cur.execute("INSERT INTO `%s` (w) VALUES (%%s)" % t, (w,))
            changes.append((t, cur.lastrowid, w))
        elif op < 0.7:
            i = rng.randint(1, 2000) * mod + rem if not owned[t] or rng.random() < 0.5 else rng.choice(owned[t])
            w = rng.randint(1, 1_000_000)
            cur.execute("UPDATE `%s` SET w = %%s WHERE id = %%s" % t, (w, i))
            if cur.rowcount == 1:
                changes.append((t, i, w))
        elif op < 0.8:
            i = rng.randint(1, 2000) * mod + rem
            cur.execute("DELETE FROM `%s` WHERE id = %%s" % t, (i,))
            if cur.rowcount == 1:
                changes.append((t, i, None))
        elif op < 0.9:
            # Read, think, then write the row read, in one transaction: the transaction holds the
            # table's metadata lock from its read on, which a queued DDL would deadlock against.
            i = rng.randint(1, 2000) * mod + rem
            cur.execute("SELECT w FROM `%s` WHERE id = %%s" % t, (i,))
            cur.fetchall()
            think = rng.uniform(0.005, 0.03)
            time.sleep(think)
            started += think
            w = rng.randint(1, 1_000_000)
            cur.execute("UPDATE `%s` SET w = %%s WHERE id = %%s" % t, (w, i))
            if cur.rowcount == 1:
                changes.append((t, i, w))
        else:
            # A transaction of several statements, committed together.
            w = rng.randint(1, 1_000_000)
            cur.execute("INSERT INTO `%s` (w) VALUES (%%s)" % t, (w,))
            new = cur.lastrowid
            changes.append((t, new, w))
            cur.execute("UPDATE `%s` SET w = w + 1 WHERE id = %%s" % t, (new,))
            changes.append((t, new, w + 1))
            i = rng.randint(1, 2000) * mod + rem
            cur.execute("UPDATE `%s` SET w = %%s WHERE id = %%s" % t, (w, i))
            if cur.rowcount == 1:
                changes.append((t, i, w))
        conn.commit()
        ok += 1
        for (tt, i, w) in changes:
            rows[tt][str(i)] = w
            if w is not None and i % mod != rem:
                owned[tt].append(i)
    except Exception as e:  # every error is reported: the test expects none
        errors.append("%s: %r" % (time.strftime("%H:%M:%S"), e))
        try:
            conn.rollback()
        except Exception:
            try:
                conn.close()
            except Exception:
                pass
            time.sleep(0.05)
            try:
                conn = connect()
            except Exception as e2:
                errors.append("reconnect: %r" % (e2,))
    worst = max(worst, (time.monotonic() - started) * 1000)
print(json.dumps({"ok": ok, "errors": errors, "worst_ms": worst, "rows": rows}))
