// An application's Sequelize workload over mysql2: its tables made by
// sync(), then the models' queries (includes with limits, counts,
// transactions, bulk writes). Run against the gate and against one
// MariaDB; tests/drivers.rs compares the lines this prints.
// Usage: node sequelize.js PORT DATABASE PREFIX
const { Sequelize, DataTypes, Op } = require('sequelize');
const [port, db] = [Number(process.argv[2]), process.argv[3]];
const s = new Sequelize(db, 'app', '', { host: '127.0.0.1', port, dialect: 'mysql', logging: false, timezone: '+00:00' });
const User = s.define('User', {
  name: { type: DataTypes.STRING, allowNull: false },
  born: DataTypes.DATEONLY,
  seen: DataTypes.DATE(3),
  score: DataTypes.DECIMAL(8, 2),
  tags: DataTypes.STRING,
}, { tableName: 'drv_sq_users', timestamps: false });
const Post = s.define('Post', {
  title: DataTypes.STRING,
  words: DataTypes.INTEGER,
  user_id: { type: DataTypes.INTEGER, allowNull: false },
}, { tableName: 'drv_sq_posts', timestamps: false });
User.hasMany(Post, { foreignKey: 'user_id', onDelete: 'CASCADE' });
Post.belongsTo(User, { foreignKey: 'user_id' });
const out = (label, v) => console.log(label, JSON.stringify(v));
const plain = (rows) => rows.map((r) => r.get({ plain: true }));

(async () => {
  await s.sync({ force: true });
  const names = ['alpha', 'Alpha', 'beta', 'éclair', 'Eclair', 'gamma', "O'Hara", 'zeta'];
  const users = await User.bulkCreate(Array.from({ length: 16 }, (_, i) => ({
    name: `${names[i % names.length]} ${i}`, born: `19${70 + i}-0${1 + (i % 9)}-1${i % 10}`,
    seen: new Date(Date.UTC(2026, i % 12, 1 + i, i, i, i, i * 7)), score: (i * 13) % 50 + 0.25, tags: i % 3 ? `t${i % 3}` : null,
  })));
  const base = users[0].id;
  out('ids', users.map((u) => u.id - base));
  const solo = await User.create({ name: 'solo', score: 3 });
  out('solo', solo.id - base);
  await Post.bulkCreate(users.flatMap((u, i) => Array.from({ length: i % 4 }, (_, k) => ({ title: `p${i}-${k}`, words: (i * 31 + k * 7) % 400, user_id: u.id }))));
  out('posts', await Post.count());
  const strip = (u) => ({ ...u, id: u.id - base, Posts: (u.Posts || []).map((p) => ({ ...p, id: undefined, user_id: p.user_id - base })) });
  out('include_limit', plain(await User.findAll({ include: Post, order: [['name', 'ASC'], [Post, 'title', 'ASC']], limit: 4 })).map(strip));
  out('include_where', plain(await User.findAll({ include: { model: Post, where: { words: { [Op.gt]: 200 } } }, order: [['id', 'ASC'], [Post, 'title', 'ASC']] })).map(strip));
  out('count', [await User.count(), await User.count({ where: { score: { [Op.gt]: 20 } } }), await User.count({ include: Post, distinct: true, col: 'id' })]);
  const page = await User.findAndCountAll({ include: Post, distinct: true, limit: 3, offset: 2, order: [['name', 'DESC']] });
  out('find_and_count', [page.count, plain(page.rows).map(strip)]);
  out('group', plain(await Post.findAll({ attributes: ['user_id', [s.fn('COUNT', s.col('id')), 'n'], [s.fn('SUM', s.col('words')), 'w']], group: ['user_id'], order: [[s.literal('w'), 'DESC'], ['user_id', 'ASC']], limit: 5 })).map((r) => ({ ...r, user_id: r.user_id - base })));
  out('aggregates', [await Post.sum('words'), await Post.max('words'), await Post.min('words'), await User.max('seen')]);
  out('ops', plain(await User.findAll({ attributes: ['name'], where: { [Op.or]: [{ name: { [Op.like]: 'e%' } }, { tags: null }], born: { [Op.between]: ['1970-01-01', '1980-12-31'] } }, order: [['name', 'ASC']] })));
  out('in', plain(await User.findAll({ attributes: ['name', 'tags'], where: { id: [base + 1, base + 3, base + 5, base + 99] }, order: [['id', 'DESC']] })));
  const t = await s.transaction();
  await User.update({ score: 99 }, { where: { name: 'beta 2' }, transaction: t });
  await t.rollback();
  out('rolled_back', (await User.findOne({ where: { name: 'beta 2' } })).score);
  await s.transaction(async (tx) => {
    await User.increment('score', { by: 2, where: { tags: 't1' }, transaction: tx });
  });
  out('incremented', plain(await User.findAll({ attributes: ['name', 'score'], where: { tags: 't1' }, order: [['name', 'ASC']] })));
  const [n] = await Post.update({ words: 0 }, { where: { words: { [Op.lt]: 50 } } });
  out('updated', n);
  out('destroyed', [await Post.destroy({ where: { title: { [Op.like]: 'p5%' } } }), await Post.count()]);
  const [u, made] = await User.findOrCreate({ where: { name: 'found' }, defaults: { score: 1 } });
  out('find_or_create', [made, u.id - base, (await User.findOrCreate({ where: { name: 'found' } }))[1]]);
  await User.upsert({ id: u.id, name: 'found', score: 7 });
  out('upsert', (await User.findByPk(u.id)).score);
  try {
    await User.create({ id: u.id, name: 'duplicate' });
  } catch (e) {
    out('unique', [e.name, e.parent.errno]);
  }
  const [raw] = await s.query('SELECT name, score FROM drv_sq_users WHERE score > ? ORDER BY score DESC, name LIMIT 3', { replacements: [10] });
  out('raw', raw);
  await s.close();
  console.log('done');
})().catch((e) => { console.log('failed', e.message, e.sql); process.exit(1); });
