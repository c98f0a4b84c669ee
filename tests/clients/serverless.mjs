// The unmodified @planetscale/database driver against Strata's HTTP SQL endpoint.
// Env: PS_HOST (host:port, TLS verified through NODE_EXTRA_CA_CERTS), PS_PORT, PS_USER and PS_PASS
// (admin on a development branch), PS_READER_USER and PS_READER_PASS (reader on it), PS_MAIN_USER
// and PS_MAIN_PASS (admin on production, safe migrations on), PS_IDLE_SECS (the session idle limit),
// PS_MAX_ROWS (the row limit), a transaction time limit of 2 s and a query time limit of 1 s.
import { connect, Client, DatabaseError } from '@planetscale/database';

const env = process.env;
const config = { host: env.PS_HOST, username: env.PS_USER, password: env.PS_PASS };
const conn = connect(config);
let checks = 0;
const check = (ok, what, detail) => {
  if (!ok) throw new Error(`FAILED: ${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail, (k, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
  checks++;
};
const fails = async (p) => {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('FAILED: expected an error');
};
const post = (path, body, headers = {}) =>
  fetch(`http://127.0.0.1:${env.PS_PORT}/psdb.v1alpha1.Database/${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: 'Basic ' + btoa(`${env.PS_USER}:${env.PS_PASS}`),
      ...headers,
    },
    body,
  });

// 1. execute: positional and named parameters, rowsAffected, insertId.
await conn.execute('DROP TABLE IF EXISTS people');
await conn.execute('CREATE TABLE people (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(40) NOT NULL, age INT)');
const ins = await conn.execute('INSERT INTO people (name, age) VALUES (?, ?), (?, ?)', ['Zoë', 33, 'Ada', null]);
check(ins.rowsAffected === 2 && ins.insertId === '1', 'insert: rowsAffected and insertId (a string)', ins);
const named = await conn.execute('SELECT name, age FROM people WHERE name = :name', { name: 'Zoë' });
check(named.rows.length === 1 && named.rows[0].name === 'Zoë' && named.rows[0].age === 33, 'named parameters, UTF-8', named.rows);
const pos = await conn.execute('SELECT id, age FROM people WHERE id = ?', [2]);
check(pos.rows[0].id === '2' && pos.rows[0].age === null, 'positional parameters; BIGINT as string, NULL as null', pos.rows);
const upd = await conn.execute('UPDATE people SET age = age WHERE id = 1');
check(upd.rowsAffected === 1, 'UPDATE reports matched rows (client found rows)', upd.rowsAffected);
const arr = await conn.execute('SELECT 1 AS a, 2 AS b', null, { as: 'array' });
check(Array.isArray(arr.rows[0]) && arr.rows[0][0] === '1', 'array rows; integer literals are INT64 (strings) as on PlanetScale', arr.rows);
check(arr.types.a === 'INT64', 'integer literal typed INT64', arr.types);

// 2. Every MySQL column type, cast as the driver casts it.
await conn.execute('DROP TABLE IF EXISTS every_type');
await conn.execute(`CREATE TABLE every_type (
  id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT, mu MEDIUMINT UNSIGNED,
  i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  de DECIMAL(10,2), f FLOAT, d DOUBLE,
  dt DATE, dtt DATETIME(3), ts TIMESTAMP NULL, tm TIME, y YEAR,
  j JSON, c CHAR(3), vc VARCHAR(10), tx TEXT,
  bn BINARY(2), vb VARBINARY(4), bl BLOB, bt BIT(4),
  en ENUM('a','b'), st SET('x','y'), nl INT NULL
)`);
await conn.execute(`INSERT INTO every_type VALUES (1,
  -128, 255, -32768, 65535, -8388608, 16777215,
  -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
  '12.50', 1.5, 2.25,
  '2024-05-06', '2024-05-06 07:08:09.123', '2024-05-06 07:08:09', '-01:02:03', 2024,
  '{"tags": ["a"], "n": 1}', 'abc', 'héllo', 'long text',
  x'0102', x'ff00', x'0a0b0c', b'1010',
  'b', 'x,y', NULL)`);
const t = (await conn.execute('SELECT * FROM every_type')).rows[0];
const expect = {
  ti: -128, tu: 255, si: -32768, su: 65535, mi: -8388608, mu: 16777215,
  i: -2147483648, iu: 4294967295, bi: '-9223372036854775808', bu: '18446744073709551615',
  de: '12.50', f: 1.5, d: 2.25,
  dt: '2024-05-06', dtt: '2024-05-06 07:08:09.123', ts: '2024-05-06 07:08:09', tm: '-01:02:03', y: 2024,
  c: 'abc', vc: 'héllo', tx: 'long text', en: 'b', st: 'x,y', nl: null,
};
for (const [k, v] of Object.entries(expect)) check(t[k] === v, `column ${k}`, { got: t[k], want: v });
check(JSON.stringify(t.j) === JSON.stringify({ tags: ['a'], n: 1 }), 'JSON column parsed (typed JSON, as on PlanetScale)', t.j);
const bytes = (k, want) => check(t[k] instanceof Uint8Array && Buffer.from(t[k]).equals(Buffer.from(want)), `binary column ${k}`, t[k]);
bytes('bn', [1, 2]);
bytes('vb', [0xff, 0]);
bytes('bl', [10, 11, 12]);
bytes('bt', [10]);

// 3. Transactions: commit, rollback on a throw, statements in one transaction served in turn.
const inTx = await conn.transaction(async (tx) => {
  await tx.execute('INSERT INTO people (name) VALUES (?)', ['in-tx']);
  const [a, b] = await Promise.all([
    tx.execute('SELECT COUNT(*) AS n FROM people'),
    tx.execute('SELECT SLEEP(0.1) AS s, COUNT(*) AS n FROM people'),
  ]);
  return [a.rows[0].n, b.rows[0].n];
});
check(inTx[0] === '3' && inTx[1] === '3', 'transaction sees its own writes; concurrent calls on one session served in turn', inTx);
const rolled = await fails(
  conn.transaction(async (tx) => {
    await tx.execute('INSERT INTO people (name) VALUES (?)', ['rolled back']);
    throw new Error('app failure');
  }),
);
check(rolled.message === 'app failure', 'the app error comes back after ROLLBACK');
// ROLLBACK TO SAVEPOINT does not end the transaction: what follows is still rolled back with it.
const sp = await fails(
  conn.transaction(async (tx) => {
    await tx.execute('SAVEPOINT a');
    await tx.execute('INSERT INTO people (name) VALUES (?)', ['savepoint']);
    await tx.execute('ROLLBACK TO SAVEPOINT a');
    await tx.execute('INSERT INTO people (name) VALUES (?)', ['after savepoint']);
    throw new Error('undo it all');
  }),
);
check(sp.message === 'undo it all', 'savepoint transaction rolled back');
const count = await conn.execute('SELECT COUNT(*) AS n FROM people');
check(count.rows[0].n === '3', 'rolled-back insert is gone, committed one kept', count.rows);
// Session state lives across calls of one connection (user variable, temporary table).
const sess = connect(config);
await sess.execute('SET @x = 42');
await sess.execute('CREATE TEMPORARY TABLE tmp (v INT)');
await sess.execute('INSERT INTO tmp VALUES (7)');
const st = await sess.execute('SELECT @x AS x, (SELECT v FROM tmp) AS v');
check(st.rows[0].x === '42' && st.rows[0].v === 7, 'session state kept across calls', st.rows);
// Client.execute: a fresh session per call.
const client = new Client(config);
check((await client.execute('SELECT @x AS x')).rows[0].x === null, 'Client.execute starts a new session');

// 4. SQL errors: DatabaseError with the MySQL message, errno and sqlstate.
const dup = await fails(conn.execute('INSERT INTO people (id, name) VALUES (1, ?)', ['again']));
check(dup instanceof DatabaseError && dup.status === 400 && dup.body.code === 'ALREADY_EXISTS', 'duplicate key', dup.body);
check(/\(errno 1062\) \(sqlstate 23000\)$/.test(dup.message), 'message ends with (errno N) (sqlstate S)', dup.message);
const syntax = await fails(conn.execute('selec 1'));
check(syntax.body.code === 'INVALID_ARGUMENT' && /errno 1064/.test(syntax.message), 'syntax error', syntax.body);
const missing = await fails(conn.execute('SELECT * FROM nowhere'));
check(missing.body.code === 'NOT_FOUND', 'missing table', missing.body);
// Another client never reads this one's warnings or errors off a pooled connection (they quote
// values and names).
await conn.execute("SELECT CAST('card-4111111111111111' AS SIGNED) AS v");
await fails(conn.execute('SELECT * FROM secret_table_name'));
for (let i = 0; i < 4; i++) {
  const other = new Client(config);
  const seen = JSON.stringify([(await other.execute('SHOW WARNINGS')).rows, (await other.execute('SHOW ERRORS')).rows]);
  check(!/card-4111|secret_table_name/.test(seen), "another session does not see this one's warnings or errors", seen);
}
// KILL reaches no other client's work from here (the instance's threads are shared by the role's
// passwords): every form is refused.
for (const k of ['KILL QUERY 5', 'KILL 5', 'kill hard query 5', '/*!KILL QUERY 5*/', 'KILL CONNECTION 5']) {
  const killed = await fails(conn.execute(k));
  check(killed instanceof DatabaseError && /errno (1094|1235|1227)/.test(killed.message), `HTTP refuses ${k}`, killed.message);
}
const multi = await fails(conn.execute('SELECT 1; SELECT 2'));
check(/one statement per call/.test(multi.message), 'one statement per call', multi.message);

// 5. Roles and safe migrations, as on the MySQL port.
const reader = connect({ host: env.PS_HOST, username: env.PS_READER_USER, password: env.PS_READER_PASS });
check((await reader.execute('SELECT COUNT(*) AS n FROM people')).rows[0].n === '3', 'reader reads');
const denied = await fails(reader.execute("INSERT INTO people (name) VALUES ('no')"));
check(denied.body.code === 'PERMISSION_DENIED' && /errno 1142/.test(denied.message), 'reader cannot write', denied.body);
const main = connect({ host: env.PS_HOST, username: env.PS_MAIN_USER, password: env.PS_MAIN_PASS });
const ddl = await fails(main.execute('/* sneaky */ ALTER TABLE safe ADD COLUMN x INT'));
check(/direct DDL is disabled/.test(ddl.message), 'safe migrations refuse DDL', ddl.message);

// 5b. The gateway's limits: rows returned and changed, query time, transaction time.
await conn.execute('CREATE TABLE many (id INT PRIMARY KEY, v INT)');
await conn.execute(`INSERT INTO many SELECT seq, 0 FROM seq_1_to_${Number(env.PS_MAX_ROWS) + 10}`);
const tooMany = await fails(conn.execute('SELECT * FROM many'));
check(new RegExp(`Row count exceeded ${env.PS_MAX_ROWS}`).test(tooMany.message), 'rows returned limit', tooMany.message);
const tooManyChanged = await fails(conn.execute('UPDATE many SET v = 1'));
check(/Row count exceeded/.test(tooManyChanged.message), 'rows changed limit', tooManyChanged.message);
check((await conn.execute('SELECT COUNT(*) AS n FROM many WHERE v = 1')).rows[0].n === '0', 'the refused UPDATE changed nothing');
const olap = connect(config);
await olap.execute('SET workload = olap');
check((await olap.execute('SELECT * FROM many')).size === Number(env.PS_MAX_ROWS) + 10, 'SET workload = olap lifts the read limit');
const t0 = Date.now();
const slowQuery = await fails(conn.execute('SELECT /*vt+ QUERY_TIMEOUT_MS=300 */ COUNT(*) FROM seq_1_to_100000 a, seq_1_to_100000 b'));
check(/errno 1317/.test(slowQuery.message) && Date.now() - t0 < 5000, 'query timeout kills the query', slowQuery.message);
// The default statement time limit (--query-timeout, 1 s here); SET workload = olap lifts it for
// reads.
const cut = await fails(conn.execute('SELECT SLEEP(1.5) AS s'));
check(cut.body.code === 'DEADLINE_EXCEEDED' && /errno 1969/.test(cut.message), 'default query time limit', cut.body);
check(Number((await olap.execute('SELECT SLEEP(1.5) AS s')).rows[0].s) === 0, 'olap reads are not time-limited');
const longTx = await fails(
  connect(config).transaction(async (tx) => {
    for (let i = 0; i < 4; i++) await tx.execute('SELECT SLEEP(0.9)');
  }),
);
check(longTx.body && longTx.body.code === 'ABORTED' && /exceeded timeout: 2s/.test(longTx.message) && /errno 1105/.test(longTx.message), 'transaction time limit, in Vitess words', longTx.body);

// 6. Bad input, answered in the protocol's error form; the server keeps serving.
const bad = await fails(connect({ ...config, password: 'wrong' }).execute('SELECT 1'));
check(bad instanceof DatabaseError && bad.status === 401 && bad.message === 'invalid auth credentials', 'wrong password: 401', bad);
let r = await post('Execute', '{"query": ');
check(r.status === 400 && (await r.json()).error.code === 'invalid_argument', 'malformed JSON: 400');
r = await post('Execute', '{"session": null}');
check(r.status === 400, 'missing query: 400');
r = await post('Execute', JSON.stringify({ query: 'SELECT 1', session: { signature: 'AAAA', vitessSession: { SessionUUID: 'made-up' } } }));
check(r.status === 400 && /invalid session/.test((await r.json()).error.message), 'forged session: 400');
// A session given to one password is not another's to use.
const mine = await (await post('Execute', JSON.stringify({ query: 'SELECT 1', session: null }))).json();
r = await post('Execute', JSON.stringify({ query: 'SELECT 1', session: mine.session }), {
  authorization: 'Basic ' + btoa(`${env.PS_READER_USER}:${env.PS_READER_PASS}`),
});
check(r.status === 400 && /invalid session/.test((await r.json()).error.message), "another password's session: 400");
r = await post('Execute', '{"query":"SELECT 1"}', { authorization: 'Bearer x' });
check(r.status === 401, 'no Basic auth: 401');
r = await post('Execute', JSON.stringify({ query: 'SELECT ' + 'x'.repeat(70 << 20) }));
check(r.status === 413, 'oversized body: 413', r.status);
r = await fetch(`http://127.0.0.1:${env.PS_PORT}/nowhere`, { method: 'POST' });
check(r.status === 404, 'unknown path: 404');
// gzip when asked for (Node's fetch asks, and decodes).
r = await post('Execute', JSON.stringify({ query: "SELECT REPEAT('a', 5000) AS big" }), { 'accept-encoding': 'gzip' });
check(r.headers.get('content-encoding') === 'gzip' && (await r.json()).result.rows.length === 1, 'gzip when the client accepts it');
check((await conn.execute('SELECT 1 AS ok')).rows[0].ok === '1', 'still serving');

// 6b. A burst from one application server (more concurrent requests than the per-address bound
// on connections not yet at their first request, 64) is served in full.
const burst = await Promise.all(
  Array.from({ length: 150 }, (_, i) => new Client(config).execute('SELECT ? AS i', [i]).then((r) => Number(r.rows[0].i), (e) => `error: ${e.message}`)),
);
check(burst.every((v, i) => v === i), 'a burst of 150 concurrent requests is served', burst.filter((v, i) => v !== i).slice(0, 3));

// 7. Plain HTTP from loopback through `url`, as for local development.
const plain = connect({ url: `http://${env.PS_USER}:${env.PS_PASS}@127.0.0.1:${env.PS_PORT}` });
check((await plain.execute('SELECT 2 AS two')).rows[0].two === '2', 'plain HTTP on loopback via url');

// 8. Sessions expire: an idle transaction is rolled back and the next call on it says so.
const slow = connect(config);
const expired = await fails(
  slow.transaction(async (tx) => {
    await tx.execute('INSERT INTO people (name) VALUES (?)', ['never']);
    await new Promise((res) => setTimeout(res, (Number(env.PS_IDLE_SECS) + 2.5) * 1000));
    await tx.execute('SELECT 1');
  }),
);
check(expired.body && expired.body.code === 'ABORTED' && /rolled back/.test(expired.message), 'expired session: its transaction rolled back', expired.body);
check((await conn.execute("SELECT COUNT(*) AS n FROM people WHERE name = 'never'")).rows[0].n === '0', 'the expired transaction left nothing');

// 9. A transaction or table locks held idle end at the transaction time limit (2 s here): other
// writers are not held until the session expires.
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
const holder = connect(config);
await holder.execute('BEGIN');
await holder.execute("UPDATE people SET name = 'held' WHERE id = 1");
const locker = connect(config);
await locker.execute('LOCK TABLES many WRITE');
await sleep(3500);
const freed = await connect(config).execute('SELECT id FROM people WHERE id = 1 FOR UPDATE NOWAIT');
check(freed.rows.length === 1, 'an idle transaction past the limit no longer holds its row locks');
const heard = await fails(holder.execute('SELECT 1'));
check(heard.body && heard.body.code === 'ABORTED' && /exceeded timeout|rolled back/.test(heard.message), "the holder's next call hears its transaction ended", heard.body);
check((await conn.execute("SELECT COUNT(*) AS n FROM people WHERE name = 'held'")).rows[0].n === '0', 'nothing of it committed');
const unlocked = await connect(config).execute('SET STATEMENT lock_wait_timeout = 1 FOR SELECT COUNT(*) AS n FROM many');
check(unlocked.rows.length === 1, 'idle table locks end at the transaction time limit');
// 10. A session that held state (SET, temporary tables) and expired says so once, then goes on.
const stateful = connect(config);
await stateful.execute('SET @kept = 5');
await sleep((Number(env.PS_IDLE_SECS) + 2.5) * 1000);
const lost = await fails(stateful.execute('SELECT @kept AS k'));
check(lost.body && lost.body.code === 'ABORTED' && /session state/.test(lost.message), 'an expired session with state says it lost it', lost.body);
check((await stateful.execute('SELECT 1 AS one')).rows[0].one === '1', 'and then goes on afresh');

console.log(`serverless driver ok (${checks} checks)`);
