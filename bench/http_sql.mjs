// Point selects for a fixed time through the HTTP SQL endpoint (@planetscale/database, a fresh
// session per call as Client.execute does) and through the MySQL gateway (mysql2, a pool), with the
// same concurrency, one after the other. Prints queries per second and p50/p99 latency of each.
// Env: CLIENTS (the tests/clients directory), HTTP_URL, GW_PORT, USER, PASS, CONCURRENCY, SECONDS.
const env = process.env;
const ps = await import(`${env.CLIENTS}/node_modules/@planetscale/database/dist/index.js`);
const mysql = (await import(`${env.CLIENTS}/node_modules/mysql2/promise.js`)).default;
const concurrency = Number(env.CONCURRENCY ?? 16);
const seconds = Number(env.SECONDS ?? 10);
const rows = 10000;

async function run(name, query) {
  const lat = [];
  const end = performance.now() + seconds * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      let id = w;
      while (performance.now() < end) {
        id = (id * 7919 + 13) % rows + 1;
        const t0 = performance.now();
        await query(id);
        lat.push(performance.now() - t0);
        n++;
      }
    }),
  );
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))].toFixed(2);
  const qps = n / seconds;
  console.log(`${name.padEnd(6)} ${qps.toFixed(0).padStart(7)} qps  p50 ${q(0.5)} ms  p99 ${q(0.99)} ms`);
  return qps;
}

const client = new ps.Client({ url: env.HTTP_URL });
const pool = mysql.createPool({
  host: '127.0.0.1', port: Number(env.GW_PORT), user: env.USER, password: env.PASS, database: 'bench',
  connectionLimit: concurrency,
});
const sql = 'SELECT id, k, c FROM points WHERE id = ?';
// Warm both paths up.
for (let i = 1; i <= 200; i++) {
  await client.execute(sql, [i]);
  await pool.execute(sql, [i]);
}
const http = await run('http', (id) => client.execute(sql, [id]));
const wire = await run('mysql', (id) => pool.query(sql, [id]));
console.log(`ratio http/mysql: ${(http / wire).toFixed(2)}`);
await pool.end();
