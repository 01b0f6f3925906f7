// An application's TypeORM workload over mysql2: synchronize makes the
// tables, and the app starts a second time over them (its schema read
// back from information_schema must match the entities), then
// repositories, relations, the query builder and transactions. Run
// against the gate and against one MariaDB; tests/drivers.rs compares
// the lines this prints. Usage: node typeorm.js PORT DATABASE PREFIX
require('reflect-metadata');
const { DataSource, EntitySchema } = require('typeorm');
const [port, db] = [Number(process.argv[2]), process.argv[3]];
const Team = new EntitySchema({
  name: 'Team', tableName: 'drv_to_teams',
  columns: { id: { type: 'int', primary: true, generated: true }, name: { type: 'varchar', length: 64 }, founded: { type: 'date', nullable: true } },
  relations: { players: { type: 'one-to-many', target: 'Player', inverseSide: 'team' } },
});
const Player = new EntitySchema({
  name: 'Player', tableName: 'drv_to_players',
  columns: {
    id: { type: 'int', primary: true, generated: true }, name: { type: 'varchar', length: 64 },
    goals: { type: 'int', default: 0 }, rating: { type: 'decimal', precision: 5, scale: 2, nullable: true },
    team_id: { type: 'int' },
  },
  relations: { team: { type: 'many-to-one', target: 'Team', joinColumn: { name: 'team_id' }, inverseSide: 'players', createForeignKeyConstraints: false } },
});
const source = () => new DataSource({ type: 'mysql', host: '127.0.0.1', port, username: 'app', password: '', database: db,
  entities: [Team, Player], synchronize: true, logging: false, timezone: 'Z', dateStrings: ['DATE'] });
const out = (label, v) => console.log(label, JSON.stringify(v));

(async () => {
  let ds = await source().initialize();
  await ds.destroy();
  // The app's next start: synchronize finds the tables as it made them.
  ds = await source().initialize();
  out('second start', ds.isInitialized);
  const teams = ds.getRepository('Team');
  const players = ds.getRepository('Player');
  const made = await teams.save(Array.from({ length: 8 }, (_, i) => ({ name: `team ${String.fromCharCode(65 + i)}`, founded: i % 3 ? `19${50 + i * 5}-0${1 + i}-15` : null })));
  const base = made[0].id;
  out('teams', made.map((t) => t.id - base));
  const ps = await players.save(Array.from({ length: 40 }, (_, i) => ({ name: `player ${i}`, goals: (i * 7) % 23, rating: i % 5 ? ((i * 13) % 100) / 10 + 0.05 : null, team_id: made[i % 8].id })));
  const pbase = ps[0].id;
  out('players', ps.length);
  const rel = (p) => ({ ...p, id: p.id - pbase, team_id: p.team_id - base });
  out('find', (await players.find({ where: { team_id: base + 2 }, order: { goals: 'DESC', id: 'ASC' } })).map(rel));
  out('relations', (await teams.find({ relations: { players: true }, order: { name: 'ASC', players: { name: 'ASC' } }, take: 3 }))
    .map((t) => ({ name: t.name, founded: t.founded, players: t.players.map((p) => p.name) })));
  out('paged', await teams.findAndCount({ relations: { players: true }, skip: 2, take: 2, order: { name: 'DESC' } })
    .then(([rows, n]) => [n, rows.map((t) => [t.name, t.players.length])]));
  out('builder', await players.createQueryBuilder('p').innerJoin('p.team', 't').select('t.name', 'team')
    .addSelect('SUM(p.goals)', 'goals').addSelect('COUNT(*)', 'n').where('p.goals > :g', { g: 3 })
    .groupBy('t.name').orderBy('goals', 'DESC').addOrderBy('team').getRawMany());
  out('builder_entities', (await players.createQueryBuilder('p').leftJoinAndSelect('p.team', 't').where('t.name IN (:...names)', { names: ['team A', 'team C'] })
    .orderBy('p.id', 'ASC').getMany()).map((p) => [p.name, p.team.name]));
  out('count', [await players.count(), await players.countBy({ goals: 0 }), await players.sum('goals', {}), await players.maximum('rating', {})]);
  await ds.transaction(async (m) => {
    await m.getRepository('Player').increment({ team_id: base + 1 }, 'goals', 10);
    await m.getRepository('Team').update({ id: base + 1 }, { name: 'team B renamed' });
  });
  try {
    await ds.transaction(async (m) => {
      await m.getRepository('Player').delete({ team_id: base + 3 });
      throw new Error('undo');
    });
  } catch (e) {
    out('rolled_back', e.message);
  }
  out('after tx', [await players.countBy({ team_id: base + 3 }), (await teams.findOneBy({ id: base + 1 })).name, await players.sum('goals', { team_id: base + 1 })]);
  out('delete', (await players.delete({ goals: 0 })).affected);
  out('upsert', (await players.upsert([{ id: pbase + 1, name: 'player one', goals: 99, team_id: base }], ['id'])).identifiers.length);
  out('one', await players.findOne({ where: { id: pbase + 1 } }).then(rel));
  out('raw', await ds.query('SELECT name, goals FROM drv_to_players WHERE goals > ? ORDER BY goals DESC, name LIMIT 3', [15]));
  await ds.destroy();
  console.log('done');
})().catch((e) => { console.log('failed', e.message, e.query); process.exit(1); });
