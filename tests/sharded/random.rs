//! Random SELECTs over two sharded tables and a reference table, each
//! answered by the gate and by one MariaDB holding the same rows: the
//! shapes no list of hand-written cases reaches (joins colocated or not,
//! outer joins, derived tables, subqueries in WHERE, grouping, DISTINCT,
//! HAVING, UNION, ORDER BY and LIMIT in their combinations), from a fixed
//! seed so that a failure is the same failure at every run.
//!
//! A statement the gate refuses as unsupported (1235) is counted, not
//! failed; any other error, and any answer other than the oracle's, fails
//! (an error the oracle gives, the gate must give too).
//!
//! `SHARDGATE_RANDOM_SEED` and `SHARDGATE_RANDOM_STATEMENTS` explore
//! further; `SHARDGATE_SHOW_REFUSED` prints the refused statements;
//! `SHARDGATE_RANDOM_SQL` runs one statement over the same rows and
//! prints both answers; `SHARDGATE_RANDOM_FILE` judges a file's
//! statements, one a line.

use super::*;

/// `qa` is sharded by its id, `qb` by the `qa` row it names (some name
/// none), `qr` is a reference table (a copy on every shard); their
/// VSchema is in the test VSchema.
const TABLES: [&str; 3] = [
    "create table qa (id bigint not null primary key, k int, g int, name varchar(16), amt decimal(8,2), t datetime, u bigint unsigned)",
    "create table qb (id bigint not null primary key, a_id bigint not null, k int, tag varchar(8), qty int, f double)",
    "create table qr (k int not null primary key, label varchar(8))",
];

/// A column as a statement names it, and whether it holds numbers.
#[derive(Clone)]
struct Col {
    name: String,
    num: bool,
}

fn cols(alias: &str, table: &str) -> Vec<Col> {
    let named: &[(&str, bool)] = match table {
        "qa" => &[
            ("id", true),
            ("k", true),
            ("g", true),
            ("name", false),
            ("amt", true),
            ("t", false),
            ("u", true),
        ],
        "qb" => &[
            ("id", true),
            ("a_id", true),
            ("k", true),
            ("tag", false),
            ("qty", true),
            ("f", true),
        ],
        // The written `xa`: `qa`'s columns and a DOUBLE.
        "xa" => {
            let mut all = cols(alias, "qa");
            all.extend(cols(alias, "f"));
            return all;
        }
        "f" => &[("f", true)],
        "qr" => &[("k", true), ("label", false)],
        "d" => &[("k", true), ("n", true), ("s", true)],
        "m" => &[("a_id", true), ("mq", true)],
        "bd" => &[("a_id", true), ("k", true), ("qty", true)],
        _ => unreachable!(),
    };
    named
        .iter()
        .map(|&(c, num)| Col {
            name: format!("{alias}.{c}"),
            num,
        })
        .collect()
}

/// A column by its name alone, for [`literal`].
fn column(name: &str) -> Col {
    Col {
        name: name.into(),
        num: false,
    }
}

impl Rng {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A literal from the column's own range, so that predicates select some
/// rows and miss others.
fn literal(r: &mut Rng, c: &Col) -> String {
    let column = c.name.rsplit('.').next().unwrap_or_default();
    match column {
        "id" | "a_id" => (r.below(170) + 1).to_string(),
        "k" => (r.below(12) as i64 - 3).to_string(),
        "g" => r.below(6).to_string(),
        "qty" | "mq" => r.below(21).to_string(),
        "n" => r.below(20).to_string(),
        "amt" | "s" => format!("{}.{:02}", r.below(100) as i64 - 50, r.below(100)),
        "name" => text(r, 'n', 10),
        "tag" => text(r, 't', 5),
        "label" => format!("'l{}'", r.below(4)),
        // Times, unsigned numbers past BIGINT's range (a few sums of
        // them past BIGINT UNSIGNED's, an error both must give) and
        // doubles binary holds exactly.
        "t" => format!(
            "'2024-0{}-1{} 1{}:00:00'",
            1 + r.below(3),
            r.below(3),
            r.below(3)
        ),
        "u" if r.chance(50) => r.below(20).to_string(),
        "u" => (9_000_000_000_000_000_000u64 + r.below(20)).to_string(),
        "f" => format!(
            "{}.{}",
            r.below(8) as i64 - 2,
            r.pick(&["0", "25", "5", "75"])
        ),
        _ => "0".into(),
    }
}

/// A string of the column's range (`letter` and a digit below `n`) in
/// one of the spellings its collation, `utf8mb4_general_ci`, takes for
/// one value: lower or upper case, an accent, trailing spaces. The gate
/// compares such strings itself where it merges shards' rows (ORDER BY,
/// GROUP BY, DISTINCT, UNION, MIN and MAX).
fn text(r: &mut Rng, letter: char, n: u64) -> String {
    let digit = r.below(n);
    match r.below(10) {
        0 | 1 => format!("'{}{digit}'", letter.to_ascii_uppercase()),
        2 if letter == 'n' => format!("'ñ{digit}'"),
        3 => format!("'{letter}{digit}  '"),
        _ => format!("'{letter}{digit}'"),
    }
}

/// The rows: NULLs in every nullable column, small ranges so that joins
/// and groups meet.
fn data(r: &mut Rng) -> [String; 3] {
    fn maybe(r: &mut Rng, v: impl FnOnce(&mut Rng) -> String) -> String {
        if r.chance(12) {
            "null".into()
        } else {
            v(r)
        }
    }
    let qa: Vec<String> = (1..=150)
        .map(|id| {
            let k = maybe(r, |r| (r.below(12) as i64 - 3).to_string());
            let g = maybe(r, |r| r.below(6).to_string());
            let name = maybe(r, |r| text(r, 'n', 10));
            let amt = maybe(r, |r| {
                format!("{}.{:02}", r.below(100) as i64 - 50, r.below(100))
            });
            let t = maybe(r, |r| literal(r, &column("t")));
            let u = maybe(r, |r| literal(r, &column("u")));
            format!("({id}, {k}, {g}, {name}, {amt}, {t}, {u})")
        })
        .collect();
    let qb: Vec<String> = (1..=220)
        .map(|id| {
            let a_id = r.below(170) + 1;
            let k = maybe(r, |r| (r.below(12) as i64 - 3).to_string());
            let tag = maybe(r, |r| text(r, 't', 5));
            let qty = maybe(r, |r| r.below(21).to_string());
            let f = maybe(r, |r| literal(r, &column("f")));
            format!("({id}, {a_id}, {k}, {tag}, {qty}, {f})")
        })
        .collect();
    let qr: Vec<String> = (-3i64..9)
        .map(|k| {
            let label = maybe(r, |_| format!("'l{}'", k.rem_euclid(4)));
            format!("({k}, {label})")
        })
        .collect();
    [
        format!(
            "insert into qa (id, k, g, name, amt, t, u) values {}",
            qa.join(", ")
        ),
        format!(
            "insert into qb (id, a_id, k, tag, qty, f) values {}",
            qb.join(", ")
        ),
        format!("insert into qr (k, label) values {}", qr.join(", ")),
    ]
}

/// A FROM clause and the columns it offers.
fn from(r: &mut Rng) -> (String, Vec<Col>) {
    let qa = || cols("a", "qa");
    let qb = || cols("b", "qb");
    let qr = || cols("r", "qr");
    let both = |x: Vec<Col>, y: Vec<Col>| x.into_iter().chain(y).collect::<Vec<_>>();
    let shape = r.below(22);
    let n = r.below(15);
    match shape {
        0 | 1 => ("qa a".into(), qa()),
        // An inner join's ON with a correlated value (computed per row
        // first, where no shard answers it).
        21 => (
            format!(
                "qa a join qb b on b.k = a.k and b.qty {} (select {}(b2.qty) from qb b2 where b2.k = a.g)",
                r.pick(&[">", "<=", "<>"]),
                r.pick(&["avg", "max", "min"]),
            ),
            both(qa(), qb()),
        ),
        2 => ("qb b".into(), qb()),
        3 => ("qa a join qb b on a.id = b.a_id".into(), both(qa(), qb())),
        4 => (
            "qa a left join qb b on a.id = b.a_id".into(),
            both(qa(), qb()),
        ),
        5 => ("qa a join qb b on a.k = b.k".into(), both(qa(), qb())),
        6 => (
            format!("qa a left join qb b on b.k = a.k and b.qty > {n}"),
            both(qa(), qb()),
        ),
        7 => ("qa a join qr r on r.k = a.k".into(), both(qa(), qr())),
        8 => ("qr r left join qa a on a.g = r.k".into(), both(qr(), qa())),
        9 => (
            "qa a join qb b on a.id = b.a_id join qr r on r.k = b.k".into(),
            both(both(qa(), qb()), qr()),
        ),
        10 => (
            "(select k, count(*) as n, sum(amt) as s from qa group by k) d join qb b on b.k = d.k"
                .into(),
            both(cols("d", "d"), qb()),
        ),
        11 => (
            "qb b left join qa a on a.id = b.a_id".into(),
            both(qb(), qa()),
        ),
        12 => (
            "qa a join (select a_id, max(qty) as mq from qb group by a_id) m on m.a_id = a.id"
                .into(),
            both(qa(), cols("m", "m")),
        ),
        13 => (
            "qa a left join qb b on a.id = b.a_id left join qr r on r.k = b.k".into(),
            both(both(qa(), qb()), qr()),
        ),
        14 => (
            format!("qb b join qa a on a.k = b.k left join qr r on r.k = a.g and r.k < {n}"),
            both(both(qb(), qa()), qr()),
        ),
        15 => ("qr r join qb b on b.k = r.k".into(), both(qr(), qb())),
        16 => (
            format!(
                "(select id, k, g, name, amt, t, u from qa order by id limit {}) a join qb b on b.a_id = a.id",
                5 + n * 3
            ),
            both(qa(), qb()),
        ),
        17 => (
            "qa a left join qb b on b.a_id = a.id and b.k = a.k".into(),
            both(qa(), qb()),
        ),
        // Derived tables whose column is a correlated value (a value
        // join per row, run first), alone or joined. (The LIMIT, past the
        // table's rows, keeps the oracle from merging the derived table
        // into the statement: merged, MariaDB 10.11 reads a subquery
        // correlated to that column over a grouping from another group's
        // row.)
        19 => (
            format!(
                "(select id, k, (select count(*) from qb b2 where b2.k = qa.k and b2.qty > {n}) as g, \
                 name, amt, t, u from qa limit 1000) a"
            ),
            qa(),
        ),
        20 => (
            "(select distinct a_id, k, (select max(a2.g) from qa a2 where a2.k = qb.k) as qty from qb) b \
             join qa a on a.id = b.a_id"
                .into(),
            both(cols("b", "bd"), qa()),
        ),
        _ => (
            "qa a join qb b on b.qty = a.g left join qr r on r.label = b.tag".into(),
            both(both(qa(), qb()), qr()),
        ),
    }
}

/// One condition on the FROM clause's columns, or a subquery on `a` or
/// `b` where they are there.
fn predicate(r: &mut Rng, cols: &[Col], depth: u32) -> String {
    let has = |alias: &str| cols.iter().any(|c| c.name.starts_with(alias));
    let kind = r.below(if depth > 0 { 9 } else { 12 });
    let c = r.pick(cols).clone();
    match kind {
        0 | 1 => {
            let op = r.pick(&["=", "<>", "<", ">=", "<=>"]);
            format!("{} {op} {}", c.name, literal(r, &c))
        }
        2 => {
            let list: Vec<String> = (0..1 + r.below(4)).map(|_| literal(r, &c)).collect();
            let not = if r.chance(25) { "not " } else { "" };
            format!("{} {not}in ({})", c.name, list.join(", "))
        }
        3 => format!(
            "{} is {}null",
            c.name,
            if r.chance(50) { "not " } else { "" }
        ),
        4 if c.num => {
            let (x, y) = (literal(r, &c), literal(r, &c));
            format!("{} between {x} and {y}", c.name)
        }
        4 => {
            let first = literal(r, &c).chars().nth(1).unwrap_or('n');
            format!("{} like '{first}%'", c.name)
        }
        5 | 6 => {
            let (x, y) = (predicate(r, cols, depth + 1), predicate(r, cols, depth + 1));
            let op = if kind == 5 { "and" } else { "or" };
            format!("({x} {op} {y})")
        }
        7 => format!("not ({})", predicate(r, cols, depth + 1)),
        8 if c.num => format!("{} + 1 > {}", c.name, literal(r, &c)),
        8 => format!("coalesce({}, 'zz') < 'n5'", c.name),
        _ if has("a.") => match r.below(16) {
            // Correlated IN, ANY, ALL by a column that is no vindex
            // (ranked per row first).
            15 => match r.below(2) {
                0 => format!(
                    "a.k {}in (select b2.k from qb b2 where b2.qty = a.g)",
                    if r.chance(50) { "not " } else { "" }
                ),
                _ => format!(
                    "a.k {} {} (select b2.k from qb b2 where b2.qty = a.g)",
                    r.pick(&["=", "<>", "<", ">="]),
                    r.pick(&["any", "all"]),
                ),
            },
            // Correlated values compared, by columns that are no vindex
            // (computed per row first).
            13 => "a.amt > (select avg(a2.amt) from qa a2 where a2.g = a.g)".to_string(),
            14 => format!(
                "a.k {} (select max(b2.k) from qb b2 where b2.qty = a.g)",
                r.pick(&["=", "<>", "<", ">="]),
            ),
            12 => format!(
                "a.k {} {} (select b2.k from qb b2 where b2.qty = {})",
                r.pick(&["=", "<>", "<", ">="]),
                r.pick(&["any", "all", "some"]),
                r.below(21)
            ),
            6 => format!(
                "a.k not in (select b2.k from qb b2 where b2.qty < {})",
                r.below(21)
            ),
            7 => format!(
                "exists (select 1 from qb b2 where b2.k = a.k and b2.qty > {})",
                r.below(21)
            ),
            8 => format!(
                "not exists (select 1 from qb b2 where b2.k = a.g and b2.tag = 't{}')",
                r.below(5)
            ),
            9 => format!(
                "a.k in (select b2.k from qb b2 where b2.tag = 't{}')",
                r.below(5)
            ),
            10 => format!("a.name = 'N{}'", r.below(10)),
            11 => "a.g = (select max(b2.qty) from qb b2 where b2.a_id = a.id)".to_string(),
            0 => format!(
                "a.id in (select b2.a_id from qb b2 where b2.qty > {})",
                r.below(21)
            ),
            1 => format!(
                "exists (select 1 from qb b2 where b2.a_id = a.id and b2.tag = 't{}')",
                r.below(5)
            ),
            2 => format!(
                "not exists (select 1 from qb b2 where b2.a_id = a.id and b2.qty < {})",
                r.below(21)
            ),
            3 => format!(
                "a.k in (select r2.k from qr r2 where r2.label = 'l{}')",
                r.below(4)
            ),
            4 => format!(
                "a.amt > (select avg(a2.amt) from qa a2 where a2.g = {})",
                r.below(6)
            ),
            _ => format!(
                "a.k not in (select b2.k from qb b2 where b2.k is not null and b2.qty < {})",
                r.below(21)
            ),
        },
        _ if has("b.") => format!(
            "b.a_id in (select a2.id from qa a2 where a2.g = {})",
            r.below(6)
        ),
        _ => format!("{} is not null", c.name),
    }
}

/// A select-list item over one column (or two, or a subquery).
fn item(r: &mut Rng, c: &Col, cols: &[Col]) -> String {
    let other = r.pick(cols).clone();
    let has_a = cols.iter().any(|c| c.name.starts_with("a."));
    match (r.below(12), c.num) {
        (6, true) if other.num => format!("{} * 2 + {}", c.name, other.name),
        (6, _) => format!("if({} is null, {}, {})", c.name, other.name, c.name),
        (7, true) => format!("round({} / 3, 2)", c.name),
        (7, false) => format!("length({})", c.name),
        (8, _) => format!("ifnull({}, {})", c.name, literal(r, c)),
        (9, _) if has_a => format!(
            "(select count(*) from qb b3 where b3.a_id = a.id and b3.qty > {})",
            r.below(21)
        ),
        (5, _) if has_a => format!(
            "{}exists (select 1 from qb b3 where b3.k = a.k and b3.qty > {})",
            if r.chance(30) { "not " } else { "" },
            r.below(21)
        ),
        (3, _) if has_a => format!(
            "a.k {}in (select b3.k from qb b3 where b3.qty > {})",
            if r.chance(30) { "not " } else { "" },
            match r.chance(40) {
                true => "a.g".to_string(),
                false => r.below(21).to_string(),
            }
        ),
        (10, _) => format!("{} = {}", c.name, other.name),
        (11, true) => format!("greatest({}, {})", c.name, literal(r, c)),
        (11, false) => format!("lower({})", c.name),
        (0, true) => format!("{} + 1", c.name),
        (1, true) => format!("coalesce({}, -1)", c.name),
        (2, true) => format!(
            "case when {} > {} then 'hi' else 'lo' end",
            c.name,
            literal(r, c)
        ),
        (0, false) => format!("concat({}, '-x')", c.name),
        (1, false) => format!("coalesce({}, 'none')", c.name),
        _ => c.name.clone(),
    }
}

/// A window function over the FROM clause's rows: ranks and sums over
/// partitions (alike whatever the order of ties), and functions that
/// read a row's neighbours ordered by the rows' keys (a total order).
fn window(r: &mut Rng, cols: &[Col]) -> String {
    let has = |n: &str| cols.iter().any(|c| c.name == n);
    let mut keys: Vec<&str> = ["a.id", "b.id", "r.k", "d.k", "m.a_id"]
        .into_iter()
        .filter(|k| has(k))
        .collect();
    // The derived table of distinct rows is keyed by all its columns.
    if has("b.a_id") && !has("b.id") {
        keys.extend(["b.a_id", "b.k", "b.qty"]);
    }
    let by: Vec<String> = keys
        .iter()
        .map(|k| format!("{k}{}", if r.chance(30) { " desc" } else { "" }))
        .collect();
    let by = by.join(", ");
    let c = r.pick(cols).clone();
    let num: Vec<Col> = cols.iter().filter(|c| c.num).cloned().collect();
    let x = r.pick(&num).name.clone();
    let p = r.pick(cols).name.clone();
    let partition = match r.chance(60) {
        true => format!("partition by {p} "),
        false => String::new(),
    };
    match r.below(12) {
        0 => format!("row_number() over ({partition}order by {by})"),
        1 => format!("rank() over ({partition}order by {})", c.name),
        2 => format!("dense_rank() over (order by {} desc)", c.name),
        3 => format!("sum({x}) over ({partition})"),
        4 => format!("count(*) over ({partition})"),
        5 => format!("sum({x}) over (order by {by})"),
        6 => format!("lag({}) over ({partition}order by {by})", c.name),
        7 => format!("lead({}, 2) over (order by {by})", c.name),
        8 => format!("first_value({}) over ({partition}order by {by})", c.name),
        9 => format!(
            "max({x}) over ({partition}order by {by} rows between 1 preceding and current row)"
        ),
        10 => format!("ntile(3) over (order by {by})"),
        _ => format!("avg({x}) over ({partition})"),
    }
}

/// A subquery correlated to `g`, when it is a column of `a` or `b`.
fn over_group(g: &str, cols: &[Col]) -> Option<String> {
    let c = cols.iter().find(|c| c.name == g)?;
    match (g.split('.').next()?, c.num) {
        ("a", true) => Some(format!("(select count(*) from qb b3 where b3.k = {g})")),
        ("a", false) => Some(format!(
            "(select max(b3.qty) from qb b3 where b3.tag = {g})"
        )),
        ("b", true) => Some(format!("(select count(*) from qa a3 where a3.g = {g})")),
        ("b", false) => Some(format!(
            "(select min(a3.id) from qa a3 where a3.name = {g})"
        )),
        _ => None,
    }
}

/// An expression over one column to group by.
fn group_expr(r: &mut Rng, c: &Col) -> String {
    let n = &c.name;
    match (r.below(4), c.num) {
        // A DECIMAL's negative zero (`-3.00 % 3`) is a group of its own
        // beside `0.00` or not, by MariaDB's plan (with `group_concat`,
        // on a table too).
        (0, true) if n.ends_with(".amt") || n.ends_with(".s") => format!("abs({n}) % 3"),
        (0, true) => format!("{n} % 3"),
        (1, true) => format!("floor({n} / 4)"),
        (2, true) => format!("coalesce({n}, -1)"),
        (_, true) => format!("{n} > {}", literal(r, c)),
        (0, false) => format!("lower({n})"),
        (1, false) => format!("concat({n}, '-')"),
        (2, false) => format!("left({n}, 1)"),
        (_, false) => format!("ifnull({n}, '-')"),
    }
}

/// An aggregate over the FROM clause's columns.
fn aggregate(r: &mut Rng, cols: &[Col]) -> String {
    let c = r.pick(cols).clone();
    let num: Vec<Col> = cols.iter().filter(|c| c.num).cloned().collect();
    let x = r.pick(&num).clone();
    match r.below(17) {
        // Aggregates inside a CASE at the top of the item (once each
        // shard's own row, unaggregated).
        15 => "case when count(*) > 2 then 'many' else 'few' end".into(),
        16 => format!(
            "case when max({0}) > min({0}) then sum({0}) else 0 end",
            x.name
        ),
        11 => format!("sum({} * 2)", x.name),
        12 => format!("group_concat({0} order by {0})", c.name),
        13 => format!("count(distinct {}, {})", c.name, x.name),
        14 => format!("avg(coalesce({}, 0))", x.name),
        0 => "count(*)".into(),
        1 => format!("count({})", c.name),
        2 => format!("sum({})", x.name),
        3 => format!("min({})", c.name),
        4 => format!("max({})", c.name),
        5 => format!("avg({})", x.name),
        6 => format!("count(distinct {})", c.name),
        7 => format!("sum(distinct {})", x.name),
        8 => format!("max({0}) - min({0})", x.name),
        9 => "count(*) + 1".into(),
        _ => format!("min({})", x.name),
    }
}

/// ORDER BY every position (a total order, up to rows alike in every
/// column) and maybe a LIMIT; or no order at all.
fn order(r: &mut Rng, width: usize, sql: &mut String) -> bool {
    if r.chance(40) {
        return false;
    }
    let keys: Vec<String> = (1..=width)
        .map(|i| format!("{i}{}", if r.chance(30) { " desc" } else { "" }))
        .collect();
    sql.push_str(&format!(" order by {}", keys.join(", ")));
    if r.chance(50) {
        let n = 1 + r.below(12);
        match r.chance(30) {
            true => sql.push_str(&format!(" limit {}, {n}", r.below(10))),
            false => sql.push_str(&format!(" limit {n}")),
        }
    }
    true
}

/// One random statement and whether its rows come in a promised order.
fn statement(r: &mut Rng) -> (String, bool) {
    if r.chance(8) {
        return union(r);
    }
    if r.chance(10) {
        return special(r);
    }
    let (from, cols) = from(r);
    let mut sql = String::from("select ");
    let grouped = r.chance(40);
    let width;
    // MariaDB 10.11 puts a grouping's NULL group into the next one when
    // it groups by an expression (`floor(...)`, `x % 3`) with
    // `group_concat` or `count(distinct ...)` and orders by the grouping
    // descending (either side may plan so; see
    // `unsorted_by_a_mariadb_bug`).
    let mut merges_null = false;
    let mut window_key = None;
    if grouped {
        // Groups by columns, and by expressions over one (the gate
        // regroups by their values, compared as MariaDB compares them).
        let groups: Vec<String> = (0..r.below(3))
            .map(|_| {
                let c = r.pick(&cols).clone();
                match r.chance(30) {
                    true => group_expr(r, &c),
                    false => c.name,
                }
            })
            .collect();
        let mut items: Vec<String> = groups.clone();
        // Sometimes a subquery over the grouping, correlated to a grouped
        // column (it runs once per group).
        if r.chance(20) {
            items.extend(groups.iter().find_map(|g| over_group(g, &cols)));
        }
        items.extend((0..1 + r.below(3)).map(|_| aggregate(r, &cols)));
        // A window over the groups (not beside an aggregate of DISTINCT
        // with HAVING, below). MariaDB 10.11 does not sort the groups of
        // one table's primary key by the statement's ORDER BY beside a
        // window (`select a.id, dense_rank() over (order by a.id desc)
        // from a group by a.id order by 1`: in the window's order).
        let by_key = groups
            .iter()
            .any(|g| ["a.id", "b.id", "r.k"].contains(&g.as_str()))
            && !from.contains(" join ");
        let windowed = !groups.is_empty() && !by_key && r.chance(12);
        if windowed {
            items.push(match r.below(4) {
                0 => "rank() over (order by count(*) desc)".to_string(),
                1 => "sum(count(*)) over ()".to_string(),
                2 => format!("row_number() over (order by {})", groups.join(", ")),
                _ => format!("dense_rank() over (order by {} desc)", groups[0]),
            });
        }
        merges_null = groups.iter().any(|g| g.contains([' ', '(']))
            && items
                .iter()
                .any(|i| i.starts_with("group_concat(") || i.starts_with("count(distinct "));
        width = items.len();
        sql.push_str(&items.join(", "));
        sql.push_str(&format!(" from {from}"));
        if r.chance(60) {
            sql.push_str(&format!(" where {}", predicate(r, &cols, 0)));
        }
        if !groups.is_empty() {
            sql.push_str(&format!(" group by {}", groups.join(", ")));
            // MariaDB 10.11 groups wrongly with a window beside an
            // aggregate of DISTINCT or a GROUP_CONCAT and HAVING (`select
            // a.id, sum(distinct b.qty), count(*) over () from a join b on
            // a.k = b.k group by a.id having count(*) > 0`: no rows; over
            // a derived table, its ORDER BY not kept).
            let distinct_aggregate = items
                .iter()
                .any(|i| i.contains("(distinct ") || i.contains("group_concat("));
            if r.chance(30) && !(windowed && distinct_aggregate) {
                let num: Vec<&Col> = cols.iter().filter(|c| c.num).collect();
                let x = r.pick(&num).name.clone();
                let text: Vec<&Col> = cols.iter().filter(|c| !c.num).collect();
                let t = (*r.pick(&text)).clone();
                let having = match r.below(5) {
                    0 => format!("count(*) > {}", r.below(4)),
                    1 => format!("sum({x}) > {}", r.below(30)),
                    // Strings compared at the gate, in their collation.
                    2 => format!("max({}) >= {}", t.name, literal(r, &t)),
                    3 => format!("min({}) = {}", t.name, literal(r, &t)),
                    _ => format!("max({x}) is not null and min({x}) < {}", r.below(8)),
                };
                sql.push_str(&format!(" having {having}"));
            }
        }
    } else {
        let distinct = if r.chance(20) { "distinct " } else { "" };
        let mut items: Vec<String> = (0..1 + r.below(4))
            .map(|_| {
                let c = r.pick(&cols).clone();
                item(r, &c, &cols)
            })
            .collect();
        // DISTINCT with a subquery correlated to a column of its list.
        if !distinct.is_empty() && r.chance(30) {
            let over = items.iter().find_map(|i| over_group(i, &cols));
            items.extend(over);
        }
        // A window over the rows of every shard; or one the rows are
        // ordered by first.
        if r.chance(15) {
            items.push(window(r, &cols));
        }
        if distinct.is_empty() && r.chance(8) {
            window_key = Some(window(r, &cols));
        }
        width = items.len();
        sql.push_str(distinct);
        sql.push_str(&items.join(", "));
        sql.push_str(&format!(" from {from}"));
        if r.chance(75) {
            sql.push_str(&format!(" where {}", predicate(r, &cols, 0)));
        }
    }
    let ordered = order(r, width, &mut sql);
    if let (true, Some(w), Some(at)) = (ordered, window_key, sql.rfind(" order by ")) {
        sql.insert_str(at + " order by ".len(), &format!("{w}, "));
    }
    if merges_null {
        sql = unsorted_by_a_mariadb_bug(sql);
    }
    (sql, ordered)
}

/// `sql` ordered ascending where it ordered descending: MariaDB 10.11
/// merges a grouping's NULL group with its next (0) when it groups by
/// `floor(u / 4)` (also `round(d)`, `truncate(i / 4, 0)`, `amt % 3`) beside
/// `group_concat`, `json_arrayagg` or `count(distinct ...)` and orders
/// by the grouping descending (`... group by floor(u / 4) order by 1
/// desc`: one row fewer than without the DESC, the same table; on a table
/// and on a table of constants alike). Which side meets it depends on
/// its plan: the oracle over its tables, the gate's tablet over the rows
/// the gate joined.
fn unsorted_by_a_mariadb_bug(mut sql: String) -> String {
    if let Some(at) = sql.rfind(" order by ") {
        let tail = sql.split_off(at);
        sql.push_str(&tail.replace(" desc", ""));
    }
    sql
}

/// Shapes the composition above does not make: aggregates over no rows,
/// derived tables over a UNION or a LIMIT, a LIMIT ordered by a unique
/// column not selected, windows within a shard's partition, uncorrelated
/// scalar subqueries.
fn special(r: &mut Rng) -> (String, bool) {
    let n = r.below(20);
    let k = r.below(12) as i64 - 3;
    match r.below(8) {
        0 => (
            format!("select count(*), sum(a.k), max(a.name), avg(a.amt) from qa a where a.k > 100 + {n}"),
            false,
        ),
        1 => (
            format!(
                "select u.k, count(*) from (select k from qa union all select k from qb where qty > {n}) u group by u.k order by 1"
            ),
            true,
        ),
        2 => (
            format!(
                "select count(*), sum(t.k), min(t.name) from (select id, k, name from qa order by id desc limit {}) t",
                n + 1
            ),
            false,
        ),
        3 => (
            format!(
                "select a.name, a.k from qa a where a.k <> {k} order by a.id{} limit {}",
                if r.chance(50) { " desc" } else { "" },
                n + 1
            ),
            true,
        ),
        4 => (
            "select a.id, b.id, row_number() over (partition by a.id order by b.id) from qa a join qb b on b.a_id = a.id"
                .to_string(),
            false,
        ),
        5 => (
            format!(
                "select a.id, (select max(b2.qty) from qb b2), a.k from qa a where a.g = {} order by 1",
                n % 6
            ),
            true,
        ),
        6 => (
            format!(
                "select a.k, count(*) from qa a where a.id in (select b2.a_id from qb b2 where b2.k = {k}) group by a.k order by 1"
            ),
            true,
        ),
        _ => (
            format!(
                "select distinct b.tag from qb b where b.k in (select a2.k from qa a2 where a2.g = {}) order by 1",
                n % 6
            ),
            true,
        ),
    }
}

/// The statement written as clients often write it: a table without its
/// alias and its columns qualified by the table's name, or bare where no
/// other table of the FROM clause has a column of that name (with or
/// without the alias); over a lone table (each side of a UNION) every
/// column bare. Subqueries keep their aliases; a bare name inside one is
/// its own table's column first, and the statement's where its table has
/// none, as MariaDB reads it (the gate must read it the same). `None` for
/// a statement with no table to rewrite.
fn unaliased(r: &mut Rng, sql: &str) -> Option<String> {
    // The FROM clause's tables (`qa a`) and derived tables (`) d`), and
    // the columns they have.
    const TABLES: [(&str, &str); 3] = [("a", "qa"), ("b", "qb"), ("r", "qr")];
    const DERIVED: [(&str, &str); 4] = [("a", "qa"), ("b", "bd"), ("d", "d"), ("m", "m")];
    let joined = sql.contains(" join ");
    let item = |alias: &str, table: &str| match joined {
        true => format!(" {table} {alias} "),
        false => format!(" from {table} {alias}"),
    };
    let lone = |rest: &str| {
        ["", " where ", " group ", " order ", " limit ", " union "]
            .iter()
            .any(|end| match end.is_empty() {
                true => rest.is_empty(),
                false => rest.starts_with(end),
            })
    };
    let tables: Vec<(&str, &str)> = TABLES
        .into_iter()
        .filter(|(alias, table)| {
            let item = item(alias, table);
            sql.find(&item)
                .is_some_and(|at| joined || lone(&sql[at + item.len()..]))
        })
        .collect();
    // A bare name in a subquery may make it read its own table alone
    // (`b3.a_id = id`), a constant: MariaDB 10.11 answers `select
    // distinct <constant> from t limit 7, 2` with a row, its offset
    // dropped.
    let offset = sql
        .rfind(" limit ")
        .is_some_and(|at| sql[at..].contains(','));
    if tables.is_empty()
        || (joined && sql.contains(" union "))
        || (sql.starts_with("select distinct ") && offset)
    {
        return None;
    }
    let mut present: Vec<(&str, &str)> = tables.clone();
    present.extend(
        DERIVED
            .into_iter()
            .filter(|(alias, _)| joined && sql.contains(&format!(") {alias} "))),
    );
    let columns = |alias: &str, table: &str| -> Vec<String> {
        cols(alias, table)
            .into_iter()
            .map(|c| c.name.rsplit('.').next().unwrap_or_default().to_string())
            .collect()
    };
    let (qualified, keep_alias) = match r.below(3) {
        0 => (true, false),
        1 => (false, false),
        _ => (false, true),
    };
    let mut out = sql.to_string();
    for (alias, table) in tables {
        // Bare where no other table of the statement has the column.
        let others: Vec<String> = present
            .iter()
            .filter(|(a, _)| joined && *a != alias)
            .flat_map(|(a, t)| columns(a, t))
            .collect();
        let prefix = match keep_alias {
            true => format!("{alias}."),
            false => format!("{table}."),
        };
        out = requalified(&out, alias, |column| {
            match qualified || others.iter().any(|o| o == column) {
                true => prefix.clone(),
                false => String::new(),
            }
        });
        if !keep_alias {
            let item = item(alias, table);
            let at = out.find(&item)?;
            let kept = match joined {
                true => format!(" {table} "),
                false => format!(" from {table}"),
            };
            out.replace_range(at..at + item.len(), &kept);
        }
    }
    Some(out)
}

/// `sql` with every column qualified by `alias` qualified by what `to`
/// says for its name instead (empty: bare).
fn requalified(sql: &str, alias: &str, to: impl Fn(&str) -> String) -> String {
    let pattern = format!("{alias}.");
    let mut out = String::with_capacity(sql.len());
    let mut last = None::<char>;
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        let starts = last.is_none_or(|l| !(l.is_alphanumeric() || l == '_' || l == '.'));
        if starts && rest.starts_with(&pattern) {
            rest = &rest[pattern.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push_str(&to(&rest[..end]));
            last = Some('.');
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        last = Some(c);
    }
    out
}

/// Two SELECTs of one column each, of the same kind, joined by UNION.
fn union(r: &mut Rng) -> (String, bool) {
    let num = r.chance(60);
    // Sometimes an expression (a DECIMAL's `% 3` can be a negative zero)
    // and a string literal naming the part (MariaDB names the column by
    // the first part's value).
    let computed = num && r.chance(30);
    let tagged = r.chance(30);
    let side = |r: &mut Rng, alias: &str, table: &str| {
        let all = cols(alias, table);
        let kind: Vec<Col> = all.iter().filter(|c| c.num == num).cloned().collect();
        let c = r.pick(&kind).clone();
        let item = match computed {
            true => format!("{} % 3", c.name),
            false => c.name,
        };
        let tag = match tagged {
            true => format!(", '{alias}{}'", r.below(2)),
            false => String::new(),
        };
        format!(
            "select {item}{tag} from {table} {alias} where {}",
            predicate(r, &all, 1)
        )
    };
    let all = if r.chance(50) { " all" } else { "" };
    let mut sql = format!("{} union{all} {}", side(r, "a", "qa"), side(r, "b", "qb"));
    let ordered = order(r, 1 + usize::from(tagged), &mut sql);
    (sql, ordered)
}

/// How a statement is sent: as text, or prepared with these parameters
/// (none: its literals stay in its text).
enum Sent {
    Text,
    Prepared(Vec<Value>),
}

/// `sql` with the integers of its outermost WHERE clause as `?`
/// parameters, as an application binds its values (strings, the select
/// list, ORDER BY positions and LIMIT keep their literals: MariaDB would
/// order by a parameter as by a constant, and names a column by its `?`).
fn parameterized(sql: &str) -> (String, Vec<Value>) {
    // The clause's bounds, outside parentheses.
    let mut depth = 0i32;
    let (mut from, mut to) = (None, sql.len());
    for (i, c) in sql.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ' ' if depth == 0 => {
                let rest = &sql[i..];
                if from.is_none() && rest.starts_with(" where ") {
                    from = Some(i);
                } else if from.is_some()
                    && [" group by ", " order by ", " having ", " limit ", " union "]
                        .iter()
                        .any(|w| rest.starts_with(w))
                {
                    to = i;
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(from) = from else {
        return (sql.to_string(), Vec::new());
    };
    let (head, tail) = sql.split_at(from);
    let (tail, after) = tail.split_at(to - from);
    let bytes = tail.as_bytes();
    let (mut out, mut params) = (String::from(head), Vec::new());
    let (mut i, mut quoted) = (0, false);
    while i < bytes.len() {
        let c = bytes[i];
        let starts = !quoted
            && (c.is_ascii_digit()
                || (c == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)))
            && i > 0
            && matches!(bytes[i - 1], b' ' | b'(');
        if starts {
            let end = (i + 1..bytes.len())
                .find(|&j| !bytes[j].is_ascii_digit())
                .unwrap_or(bytes.len());
            if matches!(bytes.get(end), None | Some(b' ' | b')' | b',')) {
                params.push(Value::Int(tail[i..end].parse().unwrap()));
                out.push('?');
                i = end;
                continue;
            }
        }
        quoted ^= c == b'\'';
        out.push(c as char);
        i += 1;
    }
    out.push_str(after);
    (out, params)
}

/// A statement's column names and rows (cells as [`cells_by`] reads them).
async fn answer(
    conn: &mut Conn,
    sql: &str,
    sent: &Sent,
) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), String> {
    let failed = |e: mysql_async::Error| format!("{sql}: {e}");
    let cell = |v: Value, binary: bool| match v {
        Value::NULL => None,
        // The gate reads the shards' rows as text, where MariaDB writes a
        // DOUBLE to 15 significant digits (as vttablet's reach vtgate): a
        // binary row's DOUBLE is compared to that precision.
        Value::Double(d) if binary => Some(format!(
            "{}",
            format!("{d:.14e}").parse::<f64>().unwrap_or(d)
        )),
        Value::Float(f) if binary => Some(format!(
            "{}",
            format!("{f:.14e}").parse::<f64>().unwrap_or(f64::from(f))
        )),
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        other if binary => Some(format!("{other:?}")),
        other => Some(other.as_sql(true)),
    };
    let named = |cols: Option<std::sync::Arc<[mysql_async::Column]>>| -> Vec<String> {
        let cols = cols.unwrap_or_else(|| Vec::new().into());
        cols.iter().map(|c| c.name_str().into_owned()).collect()
    };
    let (names, rows, binary) = match sent {
        Sent::Prepared(params) => {
            let mut result = conn.exec_iter(sql, params.clone()).await.map_err(failed)?;
            let names = named(result.columns());
            let rows: Vec<mysql_async::Row> = result.collect().await.map_err(failed)?;
            (names, rows, true)
        }
        Sent::Text => {
            let mut result = conn.query_iter(sql).await.map_err(failed)?;
            let names = named(result.columns());
            let rows: Vec<mysql_async::Row> = result.collect().await.map_err(failed)?;
            (names, rows, false)
        }
    };
    let rows = rows
        .into_iter()
        .map(|r| r.unwrap().into_iter().map(|v| cell(v, binary)).collect())
        .collect();
    Ok((names, rows))
}

/// What the gate and the oracle answered for one statement.
enum Outcome {
    Same,
    /// The same but for strings that the collation takes as one value,
    /// where either spelling may stand for its group or come first in
    /// a tie.
    Alike,
    Refused(String),
    Failed(String),
}

async fn judge(sg: &mut Conn, oracle: &mut Conn, sql: &str, ordered: bool, sent: &Sent) -> Outcome {
    let (names, mut expected) = match answer(oracle, sql, sent).await {
        Ok(a) => a,
        // An error (a sum past BIGINT UNSIGNED): the gate's must be the
        // same one.
        Err(theirs) => {
            let code = |e: &str| {
                let at = e.find("ERROR ")? + 6;
                e[at..].split(' ').next().map(str::to_string)
            };
            return match answer(sg, sql, sent).await {
                Err(e) if e.contains("1235") => Outcome::Refused(e),
                Err(e) if code(&e).is_some() && code(&e) == code(&theirs) => Outcome::Same,
                Err(e) => Outcome::Failed(format!("shardgate: {e}; the oracle: {theirs}")),
                Ok(_) => Outcome::Failed(format!("shardgate answered; the oracle: {theirs}")),
            };
        }
    };
    let (got_names, mut got) = match answer(sg, sql, sent).await {
        Ok(a) => a,
        Err(e) if e.contains("1235") => return Outcome::Refused(e),
        Err(e) => return Outcome::Failed(format!("shardgate: {e}")),
    };
    if got_names != names {
        return Outcome::Failed(format!("columns {got_names:?}, the oracle's {names:?}"));
    }
    if !ordered {
        got.sort();
        expected.sort();
    }
    if got == expected {
        return Outcome::Same;
    }
    let fold = |rows: &mut Vec<Vec<Option<String>>>| {
        for cell in rows.iter_mut().flatten().flatten() {
            *cell = folded(cell);
        }
        if !ordered {
            rows.sort();
        }
    };
    let (as_got, as_expected) = (got.clone(), expected.clone());
    fold(&mut got);
    fold(&mut expected);
    if got == expected {
        return Outcome::Alike;
    }
    // From the first row that differs (as the collation weighs them).
    let at = (0..got.len().min(expected.len()))
        .find(|&i| got[i] != expected[i])
        .unwrap_or(got.len().min(expected.len()));
    let cut = |rows: &[Vec<Option<String>>]| format!("{:?}", &rows[at..rows.len().min(at + 4)]);
    Outcome::Failed(format!(
        "{} rows, the oracle {}; from row {at}: {} vs {}",
        got.len(),
        expected.len(),
        cut(if ordered { &as_got } else { &got }),
        cut(if ordered { &as_expected } else { &expected })
    ))
}

/// A cell as `utf8mb4_general_ci` weighs the strings [`text`] makes: case,
/// the accent and spaces (trailing ones, or before a `group_concat`'s
/// comma) do not count. A DECIMAL zero's sign does not either: MariaDB
/// shows a group of `x % 3` whose rows hold both `-0.00` (a negative
/// operand's) and `0.00` with the sign of the row it met first, or with
/// none (a temporary table's field keeps no sign), by its plan; the same
/// statement answers either way.
fn folded(cell: &str) -> String {
    if let Some(zero) = cell
        .strip_prefix('-')
        .filter(|z| z.starts_with('0') && z.bytes().all(|b| b == b'0' || b == b'.'))
    {
        return zero.to_string();
    }
    cell.to_lowercase()
        .chars()
        .filter(|&c| c != ' ')
        .map(|c| if c == 'ñ' { 'n' } else { c })
        .collect()
}

/// Makes the tables `ddl` describes on the gate (anew) and the oracle.
async fn make(sg: &mut Conn, oracle: &mut Conn, ddl: &[&str]) {
    for ddl in ddl {
        let table = ddl.split_whitespace().nth(2).unwrap();
        sg.query_drop(format!("drop table if exists {table}"))
            .await
            .unwrap();
        sg.query_drop(*ddl).await.unwrap();
        oracle.query_drop(*ddl).await.unwrap();
    }
}

/// Random statements answer as one MariaDB answers them.
pub async fn answer_as_one_mariadb(sg: &mut Conn, oracle: &mut Conn) {
    make(sg, oracle, &TABLES).await;
    let mut r = Rng(0x00dd_ba11_5eed_0042);
    let [qa, qb, qr] = data(&mut r);
    for ins in [&qa, &qb] {
        sg.query_drop(ins).await.unwrap();
        oracle.query_drop(ins).await.unwrap();
    }
    for uid in [300, 400] {
        connect_tablet(uid).await.query_drop(&qr).await.unwrap();
    }
    oracle.query_drop(&qr).await.unwrap();

    // Another seed or more statements explore further (the data stays).
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let mut r = Rng(env("SHARDGATE_RANDOM_SEED").unwrap_or(r.0));
    let total = env("SHARDGATE_RANDOM_STATEMENTS").unwrap_or(500);
    // A client's parameters in computed columns: named by their `?`.
    for (sql, params) in [
        (
            "select count(*) + ?, max(a.k) from qa a where a.g = ?",
            vec![5, 1],
        ),
        (
            "select a.k + ?, concat(a.name, ?) from qa a where a.id < ? order by 1, 2",
            vec![7, 2, 40],
        ),
    ] {
        let sent = Sent::Prepared(params.into_iter().map(Value::Int).collect());
        match judge(sg, oracle, sql, true, &sent).await {
            Outcome::Same | Outcome::Alike => {}
            Outcome::Refused(why) | Outcome::Failed(why) => panic!("{sql}: {why}"),
        }
    }
    // Thousands of groups of a join, run first as a table of constants
    // under a nested loop that sorts at the gate: its rows once parsed as
    // a tree as deep as they were many, which overflowed the gate's stack
    // (and ended the process).
    let deep = "select b.id, a.amt, (select count(*) from qa a3 where a3.g = b.id), min(b.qty), \
                sum(a.u) from qa a join qb b on a.k = b.k group by b.id, a.amt \
                order by 1 desc, 2, 3, 4, 5 desc";
    // A DISTINCT whose subqueries read columns it does not list (over
    // its rows, run first), value joins inside derived tables, an
    // uncorrelated NOT IN over a LEFT JOIN's right table (first, then
    // the joined rows gathered): once refused; the third planned into a
    // plan that yielded itself anew at each run, without end (and ended
    // the process). Correlated IN, ANY and ALL by columns that are no
    // vindex, ranked per row, and ORDER BY an uncorrelated NOT IN: once
    // refused; a value's subquery sorted by its item's alias: once 1054;
    // a bare column tested by a correlated IN: once read as the
    // subquery's own (every row kept, or none); an inner join's ON with a
    // correlated value: once refused. ORDER BY an uncorrelated value's
    // position: once 1054 (sent to the shards as a position). A rounded
    // DOUBLE through a table of constants: once printed without its
    // fixed decimals (`-0.5` for `-0.50`). A bare name in a subquery
    // that is the statement's column (`g`, which `qb` lacks) over a join
    // across shards or a grouping run first: once 1054 (the subquery run
    // alone, or over the derived table). ORDER BY such a value on a
    // join's side: once 1054 (a position). A derived table's and a WITH
    // table's computed columns: once named by the gate's rendering
    // (`EXISTS (SELECT ...)`), a WITH table's long one `Name_exp_N` as
    // MariaDB names it; two columns of one name: once no 1060. A UNION's
    // computed columns across shards: once named by the gate's rendering.
    // A window beside a correlated EXISTS that filters: once computed
    // over the rows before the filter (a row numbered 3 of 1). A window
    // beside a subquery over a grouping by a vindex column: once refused
    // (the grouping, first, a derived table; ordered as its window is,
    // which MariaDB keeps beside a window over a grouping by a primary
    // key, where it drops another ORDER BY). ORDER BY a window:
    // once sent to the shards whole (each shard's window), and a position
    // after it once read as a value. DISTINCT beside a window each shard
    // computes: once sent as a GROUP BY of the window (4015). A window
    // over one side's columns of a join across shards: once computed
    // over that side's rows alone.
    let apart = [
        "select distinct a.g, (select count(*) from qb b where b.k = a.k) c, \
         not exists (select 1 from qb b where b.k = a.u) from qa a where a.id > 5 order by c desc, 1, 3 limit 9",
        "select t.c, count(*) from (select distinct a.g, (select count(*) from qb b where b.k = a.k) c \
         from qa a) t group by t.c order by 1",
        "select a.amt % 3, a.g, (select count(*) from qb b3 where b3.k = a.g), sum(a.u * 2) from qa a \
         join (select a_id, max(qty) as mq from qb group by a_id) m on m.a_id = a.id \
         group by a.amt % 3, a.g order by 1 desc, 2, 3 desc, 4",
        "select if(a.u is null, r.label, a.u), r.k * 2 + a.k, a.g from qr r left join qa a on a.g = r.k \
         where a.k not in (select b2.k from qb b2 where b2.qty < 9) order by 1, 2 desc, 3",
        "select a.id, a.k not in (select b.k from qb b where b.qty = a.g), a.k > all (select b.k from qb b \
         where b.qty = a.g) from qa a where a.k >= any (select b.k from qb b where b.qty = a.g + 1) order by 1",
        "select a.g, sum(a.k in (select b.k from qb b where b.qty = a.g)), count(*) from qa a \
         where a.k not in (select b.k from qb b where b.qty = a.u) group by a.g order by 1",
        "select a.id, (select b.k + b.qty as s from qb b where b.qty = a.g order by s desc, b.id limit 1) \
         from qa a order by 1",
        "select a.id from qa a order by a.k not in (select b.k from qb b where b.qty > 10) desc, a.id limit 20",
        "select id from qa where id > 100 and k in (select b.k from qb b where b.qty = qa.g) order by 1",
        "select a.id, b.id from qa a join qb b on b.k = a.k and b.qty > (select avg(b2.qty) from qb b2 \
         where b2.k = a.g) order by 1, 2",
        "select id, k not in (select b.k from qb b where b.qty = qa.g) from qa \
         where k not in (select b.k from qb b where b.qty = qa.u and b.k is not null) order by 1",
        "select (select max(b2.qty) from qb b2) x, a.k from qa a order by x, 2 desc limit 3",
        "select x.r, count(*) from (select round(b.f / 3, 2) r, b.id from qb b join qa a on a.k = b.k) x \
         group by x.r order by 1",
        "select a.id, b.id from qa a join qb b on a.k = b.k \
         where a.k not in (select b2.k from qb b2 where b2.qty = g) order by 1, 2",
        "select qty, (select count(*) from qa a3 where a3.g = qty), count(*) from qa join qb on qa.k = qb.k \
         group by qty order by 1",
        "select (select count(*) from qb b3 where b3.a_id = id and b3.qty > 7) from qr left join qa on g = qr.k \
         where id is not null order by 1 limit 12",
        "select * from (select a.g, count(distinct a.k), exists (select 1 from qb b where b.k = a.g) \
         from qa a group by a.g) w order by 1",
        "with w as (select a.id, (select count(*) from qb b3 where b3.a_id = a.id and b3.qty > 11) \
         from qa a) select * from w order by id",
        "select * from (select a.id, b.id from qa a join qb b on b.a_id = a.id) w",
        "select a.g, count(distinct a.k) from qa a group by a.g union select b.qty, 1 from qb b order by 1, 2",
        "select not exists (select 1 from qb b3 where b3.k = a.k and b3.qty > 5), a.id, \
         row_number() over (partition by a.amt order by a.id) from qa a \
         where not exists (select 1 from qb b2 where b2.a_id = a.id and b2.qty < 18) order by 2",
        "select round(a.amt / 3, 2), avg(a.id) over (partition by b.tag) from qa a left join qb b on a.id = b.a_id \
         left join qr r on r.k = b.k where exists (select 1 from qb b2 where b2.k = a.k and b2.qty > 8) \
         order by 1, 2 desc limit 6",
        "select a.id, (select count(*) from qb b3 where b3.k = a.id), dense_rank() over (order by a.id desc) \
         from qa a group by a.id order by 1 desc",
        "select a.id, a.k from qa a order by row_number() over (order by a.k desc, a.id) limit 5",
        "select a.id, a.k, a.g from qa a order by sum(a.g) over (partition by a.id order by a.k), 2, 1 limit 8",
        "select distinct a.g, row_number() over (partition by a.id order by a.k) from qa a order by 1, 2",
        "select a.id, b.id, r.k, dense_rank() over (order by r.k desc) from qb b join qa a on a.k = b.k \
         left join qr r on r.k = a.g and r.k < 6 order by 1, 2",
    ];
    for sql in std::iter::once(deep).chain(apart) {
        match judge(sg, oracle, sql, true, &Sent::Text).await {
            Outcome::Same | Outcome::Alike => {}
            Outcome::Refused(why) | Outcome::Failed(why) => panic!("{sql}: {why}"),
        }
    }
    // Statements of a file, one a line, each judged as the random ones
    // are (in order where the outermost statement orders), text and
    // prepared.
    if let Ok(path) = std::env::var("SHARDGATE_RANDOM_FILE") {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut failed = Vec::new();
        for sql in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let ordered = sql
                .rfind(" order by ")
                .is_some_and(|at| !sql[at..].contains(')'));
            for sent in [Sent::Text, Sent::Prepared(Vec::new())] {
                match judge(sg, oracle, sql, ordered, &sent).await {
                    Outcome::Same | Outcome::Alike => eprintln!("same: {sql}"),
                    Outcome::Refused(why) => eprintln!("refused: {sql}\n    {why}"),
                    Outcome::Failed(why) => {
                        eprintln!("FAILED: {sql}\n    {why}");
                        failed.push(sql.to_string());
                    }
                }
            }
        }
        assert!(failed.is_empty(), "{} failed", failed.len());
        return;
    }
    // One statement of a failure, over the same rows, both answers shown.
    if let Ok(sql) = std::env::var("SHARDGATE_RANDOM_SQL") {
        for (who, conn) in [("shardgate", &mut *sg), ("the oracle", &mut *oracle)] {
            match answer(conn, &sql, &Sent::Text).await {
                Ok((names, rows)) => {
                    eprintln!("{who}: {names:?}");
                    rows.iter().for_each(|r| eprintln!("  {r:?}"));
                }
                Err(e) => eprintln!("{who}: {e}"),
            }
        }
        return;
    }
    let (mut same, mut alike, mut refused, mut failed) = (0, 0, 0, Vec::new());
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for n in 0..total {
        let (mut sql, ordered) = statement(&mut r);
        if r.chance(25) {
            sql = unaliased(&mut r, &sql).unwrap_or(sql);
        }
        // A quarter prepared with their literals, a quarter with the
        // integers of their WHERE as parameters.
        let (sql, sent) = match n % 4 {
            1 => {
                let (sql, params) = parameterized(&sql);
                (sql, Sent::Prepared(params))
            }
            3 => (sql, Sent::Prepared(Vec::new())),
            _ => (sql, Sent::Text),
        };
        match judge(sg, oracle, &sql, ordered, &sent).await {
            Outcome::Same => same += 1,
            Outcome::Alike => {
                same += 1;
                alike += 1;
            }
            Outcome::Refused(why) => {
                refused += 1;
                if std::env::var_os("SHARDGATE_SHOW_REFUSED").is_some() {
                    eprintln!("refused: {sql}\n    {why}");
                }
                let why = why.rsplit("unsupported: ").next().unwrap_or_default();
                *reasons.entry(why.to_string()).or_insert(0) += 1;
            }
            Outcome::Failed(why) => failed.push(format!(
                "{sql}{}\n    {why}",
                match &sent {
                    Sent::Text => String::new(),
                    Sent::Prepared(params) => format!(" (prepared, parameters {params:?})"),
                }
            )),
        }
    }
    eprintln!(
        "random statements: {same} the same ({alike} but for spellings of one string), {refused} refused, {} failed",
        failed.len()
    );
    for (why, n) in &reasons {
        eprintln!("  refused {n}: {why}");
    }
    verdict("statements", total, same, refused, &failed, 4);
}

/// Fails on any difference, and when fewer than `fifths`/5 of the
/// `total` were taken at all (a generator whose statements the gate
/// mostly refuses would test nothing).
fn verdict(what: &str, total: u64, same: u64, refused: u64, failed: &[String], fifths: u64) {
    assert!(
        failed.is_empty(),
        "{} of {total} random {what}:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert!(
        same >= total * fifths / 5,
        "only {same} of {total} {what} taken ({refused} refused)"
    );
}

/// The tables random writes change: `xa` sharded by id, `xb` by the `xa`
/// row it names, both with the columns of `qa` and `qb`.
const WRITTEN: [&str; 2] = [
    "create table xa (id bigint not null primary key, k int, g int, name varchar(16), amt decimal(8,2), t datetime, u bigint unsigned, f double)",
    "create table xb (id bigint not null primary key, a_id bigint not null, k int, tag varchar(8), qty int, f double)",
];

/// One random write over `xa` and `xb`: inserts (some of keys already
/// there, some spanning shards), updates and deletes by key, by range,
/// with ORDER BY and LIMIT, joined, and INSERT ... SELECT.
fn write(r: &mut Rng) -> String {
    let a = cols("a", "xa");
    let id = r.below(200) + 1;
    let rows = |r: &mut Rng, n: u64| -> String {
        (0..n)
            .map(|_| {
                let id = r.below(200) + 1;
                let (k, g) = (r.below(12) as i64 - 3, r.below(6));
                let name = text(r, 'n', 10);
                let amt = format!("{}.{:02}", r.below(100) as i64 - 50, r.below(100));
                let [t, u, f] = ["t", "u", "f"].map(|c| literal(r, &column(c)));
                format!("({id}, {k}, {g}, {name}, {amt}, {t}, {u}, {f})")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let columns = "(id, k, g, name, amt, t, u, f)";
    // Some with subqueries (correlated or not, over the written table
    // too: MariaDB reads them before it writes).
    // Not over `qr`: the oracle has it only where the random SELECTs ran
    // first (the shards have it then too).
    let pred = |r: &mut Rng| loop {
        let depth = if r.chance(30) { 0 } else { 1 };
        let p = predicate(r, &a, depth);
        if !p.contains(" qr ") {
            return p.replace("qa ", "xa ").replace("qb ", "xb ");
        }
    };
    let kind = r.below(14);
    match kind {
        0 | 1 => {
            let n = 1 + r.below(4);
            format!("insert into xa {columns} values {}", rows(r, n))
        }
        2 => {
            let n = 1 + r.below(4);
            format!("insert ignore into xa {columns} values {}", rows(r, n))
        }
        3 => {
            let n = 1 + r.below(3);
            format!(
                "insert into xa {columns} values {} on duplicate key update k = k + 1, name = values(name), u = u + 1",
                rows(r, n)
            )
        }
        4 => {
            let n = 1 + r.below(3);
            format!("replace into xa {columns} values {}", rows(r, n))
        }
        5 => format!(
            "update xa a set a.k = a.k + 1, a.name = {}, a.f = a.f / 3 where a.id = {id}",
            text(r, 'u', 10)
        ),
        // Sometimes as clients write them, without the alias: columns
        // named by the table, or bare (read as the subqueries' own first).
        6 | 7 if r.chance(30) => {
            let table = match r.chance(50) {
                true => "xa.",
                false => "",
            };
            let cond = requalified(&pred(r), "a", |_| table.to_string());
            match kind {
                6 => format!("update xa set {table}g = coalesce({table}g, 0) + 1 where {cond}"),
                _ => format!("delete from xa where {cond}"),
            }
        }
        6 => format!("update xa a set a.g = coalesce(a.g, 0) + 1 where {}", pred(r)),
        7 => format!("delete a from xa a where {}", pred(r)),
        8 => format!(
            "update xa set amt = amt + 1 where k > {} order by id limit {}",
            r.below(12) as i64 - 3,
            1 + r.below(5)
        ),
        9 => format!(
            "delete from xa where g = {} order by id desc limit {}",
            r.below(6),
            1 + r.below(3)
        ),
        10 => format!(
            "insert into xb (id, a_id, k, tag, qty, f) select id + {}, id, k, name, g, f / 3 from xa where g = {} and id < 100",
            1000 + r.below(5) * 200,
            r.below(6)
        ),
        11 => format!(
            "update xb b join xa a on a.id = b.a_id set b.qty = a.g where a.k = {}",
            r.below(12) as i64 - 3
        ),
        12 => format!(
            "delete b from xb b join xa a on a.k = b.k where a.g = {}",
            r.below(6)
        ),
        _ => format!("delete from xb where a_id = {id} or qty = {}", r.below(6)),
    }
}

/// Each table's rows by id, as text.
async fn contents(conn: &mut Conn) -> Vec<Vec<Vec<Option<String>>>> {
    let mut all = Vec::new();
    for t in ["xa", "xb"] {
        all.push(
            cells_by(conn, &format!("select * from {t} order by id"), false)
                .await
                .unwrap(),
        );
    }
    all
}

/// Random writes leave the tables as one MariaDB leaves them, with the
/// same counts of affected rows; a write refused as unsupported changes
/// nothing, and one that fails (a duplicate key) fails whole.
pub async fn writes_leave_what_one_mariadb_leaves(sg: &mut Conn, oracle: &mut Conn) {
    make(sg, oracle, &WRITTEN).await;
    // The tracker learns the tables' primary keys (writes that find their
    // rows first name them by it).
    let learned = eventually(20, || async {
        let mut c = connect(Some("customer")).await;
        c.query_drop("delete b from xb b join xa a on a.k = b.k where a.g = 1")
            .await
            .ok()
    })
    .await;
    assert!(learned.is_some(), "the tracker did not learn xa and xb");
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let mut r = Rng(env("SHARDGATE_RANDOM_SEED").unwrap_or(0x0bad_c0de_5eed_0007));
    let total = env("SHARDGATE_RANDOM_STATEMENTS").map_or(300, |n| n / 2);
    let (mut same, mut refused, mut failed) = (0, 0, Vec::new());
    let mut errors = std::collections::BTreeMap::<Option<u16>, usize>::new();
    // Some writes run in transactions, which end in COMMIT or ROLLBACK,
    // some with a savepoint rolled back to: a write that fails on one
    // shard inside one must leave what MariaDB leaves (the statement
    // undone, the transaction going on).
    let (mut in_txn, mut savepoint, mut transactions) = (false, false, 0);
    for n in 0..total {
        let mut control = Vec::new();
        // The second half under twopc: each tablet's part an XA
        // transaction, savepoints inside it.
        if n == total / 2 {
            if in_txn {
                control.push("commit");
                (in_txn, savepoint) = (false, false);
            }
            control.push("set transaction_mode = 'twopc'");
        }
        if !in_txn && r.chance(8) {
            control.push("begin");
            in_txn = true;
            transactions += 1;
        } else if in_txn && !savepoint && r.chance(10) {
            control.push("savepoint sp1");
            savepoint = true;
        } else if in_txn && savepoint && r.chance(10) {
            control.push("rollback to savepoint sp1");
        } else if in_txn && r.chance(10) {
            control.push(*r.pick(&["commit", "rollback"]));
            (in_txn, savepoint) = (false, false);
        }
        for sql in control {
            if !sql.starts_with("set transaction_mode") {
                oracle.query_drop(sql).await.unwrap();
            }
            if let Err(e) = sg.query_drop(sql).await {
                failed.push(format!("{sql}: {e}"));
            }
        }
        let sql = write(&mut r);
        let expected = oracle
            .query_drop(&sql)
            .await
            .map(|_| oracle.affected_rows())
            .map_err(|e| err_code(&e));
        let got = sg
            .query_drop(&sql)
            .await
            .map(|_| sg.affected_rows())
            .map_err(|e| err_code(&e));
        match (&got, &expected) {
            (Err(Some(1235)), _) => refused += 1,
            (a, b) if a == b => {
                same += 1;
                if let Err(code) = a {
                    *errors.entry(*code).or_insert(0) += 1;
                }
            }
            _ => failed.push(format!(
                "{sql}\n    shardgate {got:?}, the oracle {expected:?}"
            )),
        }
        // A write the gate refuses (and so must not have changed
        // anything) but the oracle made: the gate's tables are brought to
        // the oracle's, the refusal being no difference to report.
        if matches!(got, Err(Some(1235))) && expected.is_ok() {
            for t in ["xa", "xb"] {
                sg.query_drop(format!("delete from {t}")).await.unwrap();
                let rows = cells_by(oracle, &format!("select * from {t}"), false)
                    .await
                    .unwrap();
                for row in rows {
                    let values: Vec<String> = row
                        .iter()
                        .map(|v| v.as_ref().map_or("null".into(), |v| format!("'{v}'")))
                        .collect();
                    sg.query_drop(format!("insert into {t} values ({})", values.join(", ")))
                        .await
                        .unwrap();
                }
            }
        }
        if in_txn && n + 1 == total {
            oracle.query_drop("commit").await.unwrap();
            sg.query_drop("commit").await.unwrap();
        }
        if n % 10 == 9 || n + 1 == total {
            let (a, b) = (contents(sg).await, contents(oracle).await);
            if a != b {
                failed.push(format!("after write {n} ({sql}) the tables differ"));
                break;
            }
        }
    }
    eprintln!(
        "random writes: {same} the same (of which errors by code: {errors:?}), {refused} refused, {} failed; {transactions} transactions",
        failed.len()
    );
    verdict("writes", total, same, refused, &failed, 4);
}
