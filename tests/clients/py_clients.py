"""PyMySQL and mysqlclient (MySQLdb) against the Strata gateway, unmodified, TLS verified with the
gateway's CA. Usage: py_clients.py PORT USER PASSWORD CA [TRANSACTION_TIMEOUT_SECONDS]"""

import sys
import time

import MySQLdb
import pymysql

port, user, password, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


def exercise(name, conn, errors):
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS py_%s" % name)
    cur.execute("CREATE TABLE py_%s (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(50), d DECIMAL(10,2), j JSON)" % name)
    cur.executemany("INSERT INTO py_%s (v, d, j) VALUES (%%s, %%s, %%s)" % name, [("a", "1.50", '{"k": 1}'), ("b", "2.25", None)])
    conn.commit()
    cur.execute("SELECT v, d FROM py_%s ORDER BY id" % name)
    rows = cur.fetchall()
    assert [(r[0], str(r[1])) for r in rows] == [("a", "1.50"), ("b", "2.25")], rows
    # transaction rollback
    conn.begin()
    cur.execute("INSERT INTO py_%s (v) VALUES ('gone')" % name)
    conn.rollback()
    cur.execute("SELECT COUNT(*) FROM py_%s" % name)
    assert cur.fetchone()[0] == 2
    # last insert id
    cur.execute("INSERT INTO py_%s (v) VALUES ('c')" % name)
    conn.commit()
    assert cur.lastrowid == 4, cur.lastrowid  # the rolled-back insert used 3
    # errors keep their MySQL code
    try:
        cur.execute("SELECT * FROM no_such_table")
        raise AssertionError("expected an error")
    except errors as e:
        assert e.args[0] == 1146, e.args
    # TLS in use
    cur.execute("SELECT 1")
    print(name, "ok")


c = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database="shop",
                    ssl_ca=ca, ssl_verify_cert=True, ssl_verify_identity=True, autocommit=True)
exercise("pymysql", c, pymysql.err.ProgrammingError)
c.close()
# plaintext on loopback, caching_sha2 not requested: default auth; PyMySQL's default autocommit=0,
# where the first UPDATE or DELETE opens the transaction and rollback() undoes it
c = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database="shop")
cur = c.cursor()
cur.execute("SELECT 1")
cur.execute("UPDATE py_pymysql SET v = 'changed' WHERE id = 1")
cur.execute("DELETE FROM py_pymysql WHERE id = 2")
c.rollback()
cur.execute("SELECT v FROM py_pymysql ORDER BY id")
assert [r[0] for r in cur.fetchall()] == ["a", "b", "c"], "rollback() after autocommit=0 UPDATE/DELETE"
cur.execute("UPDATE py_pymysql SET v = 'kept' WHERE id = 1")
c.commit()
cur.execute("SELECT v FROM py_pymysql WHERE id = 1")
assert cur.fetchone()[0] == "kept"
c.close()

# A transaction past the gateway's time limit (when the platform runs with one): the very next
# statement in it fails with Vitess's words, nothing of it is stored, and the connection goes on.
if len(sys.argv) > 5:
    limit = float(sys.argv[5])
    for explicit in (True, False):
        c = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database="shop")
        cur = c.cursor()
        if explicit:
            c.begin()
        # PyMySQL's default autocommit=0: without begin() the INSERT opens the transaction itself.
        cur.execute("INSERT INTO py_pymysql (v) VALUES ('before the limit')")
        time.sleep(limit + 1.5)
        try:
            cur.execute("INSERT INTO py_pymysql (v) VALUES ('after the limit')")
            c.commit()
            raise AssertionError("a transaction past the limit was accepted (explicit=%s)" % explicit)
        except pymysql.err.MySQLError as e:
            assert e.args[0] == 1105 and "exceeded timeout" in e.args[1], e.args
        c.rollback()
        cur.execute("SELECT COUNT(*) FROM py_pymysql WHERE v LIKE '%the limit'")
        assert cur.fetchone()[0] == 0, "nothing of the aborted transaction is stored"
        cur.execute("INSERT INTO py_pymysql (v) VALUES ('next')")
        c.commit()
        c.close()

m = MySQLdb.connect(host="127.0.0.1", port=port, user=user, password=password, database="shop",
                    ssl={"ca": ca}, ssl_mode="VERIFY_IDENTITY", autocommit=True)
exercise("mysqlclient", m, MySQLdb.ProgrammingError)
m.close()
print("python clients ok")
