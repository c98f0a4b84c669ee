// mysql2 against the Strata gateway, unmodified, TLS verified with the gateway's CA.
// Usage: node node_client.mjs PORT USER PASSWORD CA [TRANSACTION_TIMEOUT_SECONDS]
import fs from 'node:fs';
import mysql from 'mysql2/promise';

const [port, user, password, ca, txLimit] = process.argv.slice(2);
const conn = await mysql.createConnection({
  host: '127.0.0.1', port: Number(port), user, password, database: 'shop',
  ssl: { ca: fs.readFileSync(ca), rejectUnauthorized: true },
  multipleStatements: true,
});
const assert = (c, m) => { if (!c) throw new Error(m); };
await conn.query('DROP TABLE IF EXISTS node_t');
await conn.query('CREATE TABLE node_t (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(20), n BIGINT)');
const [ins] = await conn.execute('INSERT INTO node_t (v, n) VALUES (?, ?)', ['x', 9007199254740993n.toString()]);
assert(ins.insertId === 1, `insertId ${ins.insertId}`);
for (let i = 0; i < 20; i++) await conn.execute('INSERT INTO node_t (v, n) VALUES (?, ?)', [`v${i}`, i]);
const [rows] = await conn.execute('SELECT v FROM node_t WHERE id = ?', [1]);
assert(rows[0].v === 'x', JSON.stringify(rows));
const [multi] = await conn.query('SELECT 1 AS a; SELECT 2 AS b');
assert(multi[0][0].a === 1 && multi[1][0].b === 2, JSON.stringify(multi));
await conn.beginTransaction();
await conn.execute('DELETE FROM node_t');
await conn.rollback();
const [[{ c }]] = await conn.query('SELECT COUNT(*) AS c FROM node_t');
assert(c === 21, `count ${c}`);
// autocommit off, no BEGIN: the first UPDATE/DELETE (text and prepared) opens the transaction.
await conn.query('SET autocommit = 0');
await conn.query("UPDATE node_t SET v = 'changed' WHERE id = 1");
await conn.execute('DELETE FROM node_t WHERE id = ?', [2]);
await conn.rollback();
await conn.query('SET autocommit = 1');
const [[kept]] = await conn.query('SELECT v, (SELECT COUNT(*) FROM node_t) AS c FROM node_t WHERE id = 1');
assert(kept.v === 'x' && kept.c === 21, `after rollback with autocommit=0: ${JSON.stringify(kept)}`);
// JSON columns (LONGTEXT with a json_valid check on MariaDB) and JSON functions' results are typed
// JSON as on MySQL 8: mysql2 hands back parsed values, in text and binary results alike.
await conn.query('DROP TABLE IF EXISTS node_j');
await conn.query('CREATE TABLE node_j (id INT PRIMARY KEY, doc JSON, note LONGTEXT)');
await conn.execute('INSERT INTO node_j VALUES (?, ?, ?)', [1, JSON.stringify({ a: [1, 2], b: 'x' }), '{"not":"json typed"}']);
for (const [how, run] of [['text', (q) => conn.query(q)], ['binary', (q) => conn.execute(q)]]) {
  const [[r], fields] = await run("SELECT doc, note, JSON_OBJECT('k', 5) AS made FROM node_j WHERE id = 1");
  assert(typeof r.doc === 'object' && r.doc.a[1] === 2 && r.doc.b === 'x', `${how} JSON column: ${JSON.stringify(r.doc)}`);
  assert(typeof r.made === 'object' && r.made.k === 5, `${how} JSON_OBJECT(): ${JSON.stringify(r.made)}`);
  assert(typeof r.note === 'string', `${how} plain LONGTEXT stays a string: ${typeof r.note}`);
  assert(fields[0].columnType === 245 && fields[0].name === 'doc' && fields[0].table === 'node_j', `${how} column definition: ${JSON.stringify(fields[0])}`);
}
await conn.query('DROP TABLE node_j');
try {
  await conn.query('SELECT * FROM missing_table');
  assert(false, 'expected an error');
} catch (e) {
  assert(e.errno === 1146 && e.sqlState === '42S02', `${e.errno} ${e.sqlState}`);
}
// A transaction past the gateway's time limit: the next statement in it fails, nothing of it is
// stored, and the connection goes on.
if (txLimit) {
  for (const explicit of [true, false]) {
    if (explicit) await conn.beginTransaction(); else await conn.query('SET autocommit = 0');
    await conn.execute("INSERT INTO node_t (v, n) VALUES ('before limit', 0)");
    await new Promise((r) => setTimeout(r, (Number(txLimit) + 1.5) * 1000));
    let failed = null;
    try {
      await conn.execute("INSERT INTO node_t (v, n) VALUES ('after limit', 0)");
      await conn.commit();
    } catch (e) {
      failed = e;
    }
    assert(failed && failed.errno === 1105 && /exceeded timeout/.test(failed.message), `past the limit (explicit ${explicit}): ${failed}`);
    await conn.rollback();
    if (!explicit) await conn.query('SET autocommit = 1');
    const [[{ n }]] = await conn.query("SELECT COUNT(*) AS n FROM node_t WHERE v LIKE '% limit'");
    assert(n === 0, `rows of the aborted transaction: ${n}`);
  }
}
await conn.end();
console.log('mysql2 ok');
