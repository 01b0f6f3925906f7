// An application's workload through Node's mysql2 (prepared statements
// with execute, text queries, a pool, streaming), run against the gate
// and against one MariaDB; tests/drivers.rs compares the lines this
// prints. Usage: node mysql2.js PORT DATABASE TABLE
const mysql = require('mysql2/promise');
const [port, db, t] = [Number(process.argv[2]), process.argv[3], process.argv[4]];

function show(v) {
  if (v === null) return 'NULL';
  if (Buffer.isBuffer(v)) return '0x' + v.toString('hex');
  if (v instanceof Date) return 'Date:' + v.toISOString();
  return typeof v + ':' + v;
}
function line(label, rows) {
  for (const r of rows) console.log(label, (Array.isArray(r) ? r : Object.values(r)).map(show).join(' | '));
  console.log(label, 'rows=' + rows.length);
}
function value(i) {
  const name = i % 11 == 0 ? null : i % 7 == 0 ? `O'Brien "${i}" \\ x` : i % 5 == 0 ? `ünïcødé-${i} ✓` : `name-${i}`;
  const amount = i % 13 == 0 ? null : `${((i * 37) % 2000) - 1000}.${String(i % 100).padStart(2, '0')}`;
  const p = (n, w = 2) => String(n).padStart(w, '0');
  const born = `${1950 + (i % 60)}-${p(1 + (i % 12))}-${p(1 + (i % 28))}`;
  const seen = `2026-${p(1 + (i % 12))}-${p(1 + (i % 28))} ${p(i % 24)}:${p(i % 60)}:${p((i * 7) % 60)}.${p(i % 1000, 3)}`;
  const dur = `${i % 17 == 0 ? '-' : ''}${p(i % 100)}:${p(i % 60)}:${p(i % 59)}`;
  const data = i % 9 == 0 ? null : Buffer.from([i % 256, 0xff, 0, (i * 3) % 256]);
  const note = i % 50 == 0 ? `long text ${i}; `.repeat(2000) : `note ${i}`;
  return [i * 37, name, amount, i * 0.25, born, seen, dur, data, i % 2, note];
}
async function bad(c, label, sql) {
  try {
    await c.query(sql);
    console.log(label, 'ran');
  } catch (e) {
    console.log(label, 'error', e.code, e.errno, e.sqlState);
  }
}

(async () => {
  const opts = { host: '127.0.0.1', port, user: 'app', password: '', database: db, charset: 'utf8mb4',
    timezone: 'Z', supportBigNumbers: true, multipleStatements: true };
  const c = await mysql.createConnection(opts);
  await c.query(`DELETE FROM ${t}`);
  let inserted = 0;
  for (let i = 1; i <= 200; i++) {
    const [r] = await c.execute(`INSERT INTO ${t} (id, name, amount, ratio, born, seen, dur, data, flag, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, value(i));
    inserted += r.affectedRows;
  }
  console.log('inserted', inserted);
  for (const mode of ['execute', 'query']) {
    const run = (sql, params) => c[mode]({ sql, rowsAsArray: true }, params);
    for (const id of [37, 370, 407, 1850, 999999]) line(`${mode} point ${id}`, (await run(`SELECT * FROM ${t} WHERE id = ?`, [id]))[0]);
    line(`${mode} top`, (await run(`SELECT id, name, amount FROM ${t} WHERE amount > ? ORDER BY amount DESC, id LIMIT 20`, ['100.00']))[0]);
    line(`${mode} agg`, (await run(`SELECT count(*), count(name), sum(amount), min(born), max(seen), avg(ratio), max(dur) FROM ${t}`, []))[0]);
    line(`${mode} group`, (await run(`SELECT flag, count(*), max(name), sum(amount) FROM ${t} GROUP BY flag ORDER BY flag`, []))[0]);
    line(`${mode} in`, (await run(`SELECT id, data, dur FROM ${t} WHERE id IN (?, ?, ?, ?) ORDER BY id`, [74, 333, 1110, 7400]))[0]);
    line(`${mode} nullsafe`, (await run(`SELECT count(*) FROM ${t} WHERE name <=> ?`, [null]))[0]);
    // Sequelize's include with a limit: the limited rows first (gathered
    // across shards), then joined; dates and times keep their types.
    line(`${mode} gathered`, (await run(`SELECT d.id, d.born, d.seen, d.dur, d.name, d.data, o.id FROM (SELECT id, born, seen, dur, name, data FROM ${t} ORDER BY name, id LIMIT 5) AS d LEFT JOIN ${t} AS o ON o.id = d.id + 37 ORDER BY d.name, d.id`, []))[0]);
    const [all, fields] = await run(`SELECT * FROM ${t} ORDER BY id`, []);
    for (const f of fields) console.log(`${mode} meta`, f.name, f.table, f.orgName, f.columnType, f.columnLength, f.decimals, f.flags, f.characterSet);
    line(`${mode} sample`, all.filter((_, k) => k % 40 == 0));
    console.log(`${mode} all`, all.length, all.map((r) => r.map(show).join('').length).reduce((a, b) => a + b, 0));
  }
  await c.beginTransaction();
  console.log('tx updated', (await c.execute(`UPDATE ${t} SET name = ? WHERE id = ?`, ['rolled back', 37]))[0].affectedRows);
  await c.rollback();
  await c.beginTransaction();
  console.log('tx updated', (await c.execute(`UPDATE ${t} SET amount = amount + 1 WHERE id IN (?, ?, ?)`, [37, 74, 111]))[0].affectedRows);
  await c.commit();
  line('after tx', (await c.query({ sql: `SELECT id, name, amount FROM ${t} WHERE id IN (37, 74, 111) ORDER BY id`, rowsAsArray: true }))[0]);
  const [u0] = await c.query(`UPDATE ${t} SET flag = flag WHERE id < 1000`);
  console.log('unchanged', u0.affectedRows, u0.changedRows, u0.info);
  const [u1] = await c.execute(`UPDATE ${t} SET flag = 1 - flag WHERE id < ?`, [1000]);
  console.log('changed', u1.affectedRows, u1.changedRows, u1.info);
  await bad(c, 'bad 0', `INSERT INTO ${t} (id) VALUES (37)`);
  await bad(c, 'bad 1', 'SELEC 1');
  await bad(c, 'bad 2', `SELECT nope FROM ${t}`);
  await bad(c, 'bad 3', 'SELECT * FROM nowhere');
  try {
    await c.execute(`SELECT nope FROM ${t} WHERE id = ?`, [1]);
  } catch (e) {
    console.log('bad prepare', e.code, e.errno, e.sqlState);
  }
  const [multi] = await c.query(`SELECT count(*) AS n FROM ${t}; SELECT id, name FROM ${t} WHERE id = 74; UPDATE ${t} SET note = 'multi' WHERE id = 74`);
  line('multi 0', multi[0]);
  line('multi 1', multi[1]);
  console.log('multi 2', multi[2].affectedRows);
  const [a1] = await c.execute(`INSERT INTO ${t}_auto (name) VALUES (?)`, ['a']);
  const [a2] = await c.execute(`INSERT INTO ${t}_auto (name) VALUES (?)`, ['b']);
  console.log('auto', a2.insertId - a1.insertId, typeof a1.insertId);
  let streamed = 0;
  await new Promise((resolve, reject) => {
    c.connection.query(`SELECT id, note FROM ${t} ORDER BY id`).stream()
      .on('data', (r) => { streamed += r.note.length; })
      .on('end', resolve).on('error', reject);
  });
  console.log('streamed', streamed);
  await c.ping();
  await c.changeUser({ database: db });
  line('after change user', (await c.query({ sql: `SELECT count(*) FROM ${t}`, rowsAsArray: true }))[0]);
  await c.end();

  const pool = mysql.createPool({ ...opts, connectionLimit: 4 });
  const counts = await Promise.all(Array.from({ length: 40 }, (_, k) =>
    pool.execute(`SELECT count(*) AS n FROM ${t} WHERE id <= ?`, [k * 37]).then(([r]) => r[0].n)));
  console.log('pool', counts.join(','));
  await pool.end();
  console.log('done');
})().catch((e) => { console.log('failed', e); process.exit(1); });
