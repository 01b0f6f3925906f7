//! vtgate's `ALTER VSCHEMA` statements: a keyspace's VSchema changed in
//! SQL over the client connection, as an alternative to `ctl
//! apply-vschema` with a whole document.
//!
//! This module is the pure part: the statement's grammar ([`parse`]) and
//! what each form does to a keyspace's VSchema ([`Alter::apply`]), with
//! Vitess's messages. Who may run them and how the result reaches the
//! topology store without losing a concurrent change is the session's
//! and `admin`'s (see [`crate::admin::alter_vschema`]).

use std::collections::BTreeMap;

use super::{AutoIncrement, ColumnVindex, KeyspaceVSchema, Table, Vindex};
use crate::sql::lexer::{tokenize, Token, TokenKind};

/// A change the statement asks for that the VSchema does not allow
/// (Vitess's wording; the client gets ER_UNKNOWN_ERROR, as from vtgate).
#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    /// The change contradicts the VSchema as it is.
    #[error("{0}")]
    Refused(String),
}

/// `[keyspace.]name`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    /// The keyspace qualifier, if any.
    pub keyspace: Option<String>,
    /// The table, vindex or sequence.
    pub name: String,
}

/// A vindex's type and parameters (`USING type WITH k = v, ...`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VindexSpec {
    /// The vindex type; None when only the name was given.
    pub kind: Option<String>,
    /// Parameters, `owner` excepted.
    pub params: BTreeMap<String, String>,
    /// The `owner` parameter: the table that owns a lookup vindex's rows.
    pub owner: Option<String>,
}

/// One `ALTER VSCHEMA` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alter {
    /// `CREATE VINDEX [ks.]name [USING type] [WITH params]`.
    CreateVindex(Name, VindexSpec),
    /// `DROP VINDEX [ks.]name`.
    DropVindex(Name),
    /// `ADD TABLE [ks.]t` (unsharded keyspaces).
    AddTable(Name),
    /// `DROP TABLE [ks.]t`.
    DropTable(Name),
    /// `ON [ks.]t ADD VINDEX name (cols) [USING type] [WITH params]`.
    AddColumnVindex {
        /// The table.
        table: Name,
        /// The vindex's name in the keyspace.
        vindex: String,
        /// The columns it maps.
        columns: Vec<String>,
        /// Its type and parameters, when it is new.
        spec: VindexSpec,
    },
    /// `ON [ks.]t DROP VINDEX name`.
    DropColumnVindex {
        /// The table.
        table: Name,
        /// The vindex.
        vindex: String,
    },
    /// `ADD SEQUENCE [ks.]seq` (unsharded keyspaces).
    AddSequence(Name),
    /// `DROP SEQUENCE [ks.]seq`.
    DropSequence(Name),
    /// `ON [ks.]t ADD AUTO_INCREMENT col USING [ks.]seq`.
    AddAutoIncrement {
        /// The table.
        table: Name,
        /// The column the sequence fills.
        column: String,
        /// The sequence table.
        sequence: Name,
    },
    /// `ON [ks.]t DROP AUTO_INCREMENT`.
    DropAutoIncrement(Name),
}

impl Alter {
    /// The keyspace the statement names, if it names one (the session's
    /// is used otherwise, as vtgate does).
    pub fn keyspace(&self) -> Option<&str> {
        match self {
            Alter::CreateVindex(n, _)
            | Alter::DropVindex(n)
            | Alter::AddTable(n)
            | Alter::DropTable(n)
            | Alter::AddSequence(n)
            | Alter::DropSequence(n)
            | Alter::DropAutoIncrement(n)
            | Alter::AddColumnVindex { table: n, .. }
            | Alter::DropColumnVindex { table: n, .. }
            | Alter::AddAutoIncrement { table: n, .. } => n.keyspace.as_deref(),
        }
    }

    /// The sequence an `ADD AUTO_INCREMENT` names, which must exist.
    pub fn sequence(&self) -> Option<&Name> {
        match self {
            Alter::AddAutoIncrement { sequence, .. } => Some(sequence),
            _ => None,
        }
    }

    /// Makes the change to keyspace `ks`'s VSchema `vs`, or says why not
    /// (then `vs` may be half changed: callers work on a copy).
    pub fn apply(&self, ks: &str, vs: &mut KeyspaceVSchema) -> Result<(), DdlError> {
        let refuse = |msg: String| Err(DdlError::Refused(msg));
        match self {
            Alter::CreateVindex(name, spec) => {
                let name = &name.name;
                if vs.vindexes.contains_key(name) {
                    return refuse(format!("vindex {name} already exists in keyspace {ks}"));
                }
                add_vindex(vs, name, spec);
            }
            Alter::DropVindex(name) => {
                let name = &name.name;
                if !vs.vindexes.contains_key(name) {
                    return refuse(format!("vindex {name} does not exist in keyspace {ks}"));
                }
                if let Some(t) = vs
                    .tables
                    .iter()
                    .find(|(_, t)| t.column_vindexes.iter().any(|cv| &cv.name == name))
                {
                    return refuse(format!(
                        "can not drop vindex cause {name} still defined on table {}",
                        t.0
                    ));
                }
                vs.vindexes.remove(name);
            }
            Alter::AddTable(t) | Alter::AddSequence(t) => {
                let (what, noun, kind) = match self {
                    Alter::AddSequence(_) => ("add sequence table", "sequence", "sequence"),
                    _ => ("add vschema table", "table", ""),
                };
                if vs.sharded {
                    return refuse(format!("{what}: unsupported on sharded keyspace {ks}"));
                }
                if vs.tables.contains_key(&t.name) {
                    return refuse(format!(
                        "vschema already contains {noun} {} in keyspace {ks}",
                        t.name
                    ));
                }
                let table = Table {
                    kind: kind.into(),
                    ..Table::default()
                };
                vs.tables.insert(t.name.clone(), table);
            }
            Alter::DropTable(t) => {
                if vs.tables.remove(&t.name).is_none() {
                    return refuse(format!(
                        "vschema does not contain table {} in keyspace {ks}",
                        t.name
                    ));
                }
            }
            Alter::AddColumnVindex {
                table,
                vindex,
                columns,
                spec,
            } => {
                match (&spec.kind, vs.vindexes.get(vindex)) {
                    (None, None) => {
                        return refuse(format!("vindex {vindex} does not exist in keyspace {ks}"))
                    }
                    (None, Some(_)) => {}
                    (Some(kind), Some(v)) => {
                        if &v.kind != kind {
                            return refuse(format!(
                                "vindex {vindex} defined with type {} not {kind}",
                                v.kind
                            ));
                        }
                        if v.owner != spec.owner {
                            return refuse(format!(
                                "vindex {vindex} defined with owner {} not {}",
                                v.owner.as_deref().unwrap_or(""),
                                spec.owner.as_deref().unwrap_or("")
                            ));
                        }
                        if v.params != spec.params {
                            return refuse(format!(
                                "vindex {vindex} defined with different parameters"
                            ));
                        }
                    }
                    (Some(_), None) => add_vindex(vs, vindex, spec),
                }
                let t = vs.tables.entry(table.name.clone()).or_default();
                if t.column_vindexes.iter().any(|cv| &cv.name == vindex) {
                    return refuse(format!(
                        "vindex {vindex} already defined on table {}",
                        table.name
                    ));
                }
                t.column_vindexes.push(ColumnVindex {
                    column: None,
                    columns: columns.clone(),
                    name: vindex.clone(),
                });
            }
            Alter::DropColumnVindex { table, vindex } => {
                let Some(t) = vs.tables.get_mut(&table.name) else {
                    return refuse(format!("table {ks}.{} not defined in vschema", table.name));
                };
                let Some(i) = t.column_vindexes.iter().position(|cv| &cv.name == vindex) else {
                    return refuse(format!(
                        "vindex {vindex} not defined in table {ks}.{}",
                        table.name
                    ));
                };
                t.column_vindexes.remove(i);
                if t.column_vindexes.is_empty() {
                    vs.tables.remove(&table.name);
                }
            }
            Alter::DropSequence(s) => match vs.tables.get(&s.name) {
                Some(t) if t.kind == "sequence" => {
                    vs.tables.remove(&s.name);
                }
                _ => {
                    return refuse(format!(
                        "vschema does not contain sequence {} in keyspace {ks}",
                        s.name
                    ))
                }
            },
            Alter::AddAutoIncrement {
                table,
                column,
                sequence,
            } => {
                let Some(t) = vs.tables.get_mut(&table.name) else {
                    return refuse(format!(
                        "vschema does not contain table {} in keyspace {ks}",
                        table.name
                    ));
                };
                if let Some(ai) = &t.auto_increment {
                    return refuse(format!(
                        "vschema already contains auto inc {} on table {} in keyspace {ks}",
                        ai.column, table.name
                    ));
                }
                t.auto_increment = Some(AutoIncrement {
                    column: column.clone(),
                    sequence: match &sequence.keyspace {
                        Some(q) => format!("{q}.{}", sequence.name),
                        None => sequence.name.clone(),
                    },
                });
            }
            Alter::DropAutoIncrement(table) => {
                let Some(t) = vs.tables.get_mut(&table.name) else {
                    return refuse(format!(
                        "vschema does not contain table {} in keyspace {ks}",
                        table.name
                    ));
                };
                if t.auto_increment.take().is_none() {
                    return refuse(format!(
                        "vschema does not contain auto inc on table {} in keyspace {ks}",
                        table.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Defines a vindex; the keyspace's first makes it sharded, as in Vitess.
fn add_vindex(vs: &mut KeyspaceVSchema, name: &str, spec: &VindexSpec) {
    if vs.vindexes.is_empty() {
        vs.sharded = true;
    }
    let v = Vindex {
        kind: spec.kind.clone().unwrap_or_default(),
        params: spec.params.clone(),
        owner: spec.owner.clone(),
    };
    vs.vindexes.insert(name.to_string(), v);
}

/// Who may run `ALTER VSCHEMA` (vtgate's `--vschema_ddl_authorized_users`):
/// nobody by default, `%` for everyone, else a comma-separated list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Authorized {
    /// Nobody (the flag empty).
    #[default]
    Nobody,
    /// Every user (`%`).
    Everyone,
    /// These users.
    Users(Vec<String>),
}

impl Authorized {
    /// Reads the flag's value.
    pub fn parse(flag: &str) -> Authorized {
        let users: Vec<String> = flag
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(String::from)
            .collect();
        if users.iter().any(|u| u == "%") {
            Authorized::Everyone
        } else if users.is_empty() {
            Authorized::Nobody
        } else {
            Authorized::Users(users)
        }
    }

    /// True when `user` may change VSchemas.
    pub fn allows(&self, user: &str) -> bool {
        match self {
            Authorized::Nobody => false,
            Authorized::Everyone => true,
            Authorized::Users(list) => list.iter().any(|u| u == user),
        }
    }
}

/// Reads an `ALTER VSCHEMA ...` statement; what is wrong with it
/// otherwise (the client gets a syntax error).
pub fn parse(sql: &str) -> Result<Alter, String> {
    let toks: Vec<Token> = tokenize(sql)
        .into_iter()
        .filter(|t| t.kind != TokenKind::Semicolon)
        .collect();
    let mut p = Parser { sql, toks, at: 0 };
    p.expect("alter")?;
    p.expect("vschema")?;
    let alter = if p.eat("create") {
        p.expect("vindex")?;
        let name = p.name()?;
        let spec = p.spec()?;
        Alter::CreateVindex(name, spec)
    } else if p.eat("drop") {
        if p.eat("vindex") {
            Alter::DropVindex(p.name()?)
        } else if p.eat("table") {
            Alter::DropTable(p.name()?)
        } else {
            p.expect("sequence")?;
            Alter::DropSequence(p.name()?)
        }
    } else if p.eat("add") {
        if p.eat("table") {
            Alter::AddTable(p.name()?)
        } else {
            p.expect("sequence")?;
            Alter::AddSequence(p.name()?)
        }
    } else {
        p.expect("on")?;
        let table = p.name()?;
        if p.eat("add") {
            if p.eat("vindex") {
                let vindex = p.ident()?;
                p.punct(b'(')?;
                let mut columns = vec![p.ident()?];
                while p.eat_punct(b',') {
                    columns.push(p.ident()?);
                }
                p.punct(b')')?;
                let spec = p.spec()?;
                Alter::AddColumnVindex {
                    table,
                    vindex,
                    columns,
                    spec,
                }
            } else {
                p.expect("auto_increment")?;
                let column = p.ident()?;
                p.expect("using")?;
                let sequence = p.name()?;
                Alter::AddAutoIncrement {
                    table,
                    column,
                    sequence,
                }
            }
        } else {
            p.expect("drop")?;
            if p.eat("vindex") {
                Alter::DropColumnVindex {
                    table,
                    vindex: p.ident()?,
                }
            } else {
                p.expect("auto_increment")?;
                Alter::DropAutoIncrement(table)
            }
        }
    };
    match p.toks.get(p.at) {
        None => Ok(alter),
        Some(t) => Err(p.near(t)),
    }
}

/// A cursor over the statement's tokens.
struct Parser<'a> {
    sql: &'a str,
    toks: Vec<Token>,
    at: usize,
}

impl Parser<'_> {
    fn near(&self, t: &Token) -> String {
        format!("near '{}'", &self.sql[t.start..])
    }

    fn error(&self) -> String {
        match self.toks.get(self.at) {
            Some(t) => self.near(t),
            None => "at the end of the statement".to_string(),
        }
    }

    fn eat(&mut self, kw: &str) -> bool {
        let hit = self
            .toks
            .get(self.at)
            .is_some_and(|t| t.is_word(self.sql, kw));
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, kw: &str) -> Result<(), String> {
        match self.eat(kw) {
            true => Ok(()),
            false => Err(self.error()),
        }
    }

    fn eat_punct(&mut self, c: u8) -> bool {
        let hit = self
            .toks
            .get(self.at)
            .is_some_and(|t| t.kind == TokenKind::Punct(c));
        self.at += usize::from(hit);
        hit
    }

    fn punct(&mut self, c: u8) -> Result<(), String> {
        match self.eat_punct(c) {
            true => Ok(()),
            false => Err(self.error()),
        }
    }

    /// A bare or backticked identifier.
    fn ident(&mut self) -> Result<String, String> {
        let t = match self.toks.get(self.at) {
            Some(t) if matches!(t.kind, TokenKind::Word | TokenKind::Ident) => *t,
            _ => return Err(self.error()),
        };
        self.at += 1;
        let text = t.text(self.sql);
        Ok(match t.kind {
            TokenKind::Ident => inner(text).replace("``", "`"),
            _ => text.to_string(),
        })
    }

    /// `[keyspace.]name`.
    fn name(&mut self) -> Result<Name, String> {
        let first = self.ident()?;
        if self.eat_punct(b'.') {
            let name = self.ident()?;
            return Ok(Name {
                keyspace: Some(first),
                name,
            });
        }
        Ok(Name {
            keyspace: None,
            name: first,
        })
    }

    /// `[USING type] [WITH k = v, ...]`; `owner` goes apart, as Vitess
    /// keeps it.
    fn spec(&mut self) -> Result<VindexSpec, String> {
        let mut spec = VindexSpec::default();
        if self.eat("using") {
            spec.kind = Some(self.ident()?.to_ascii_lowercase());
        }
        if self.eat("with") {
            loop {
                let key = self.ident()?;
                self.punct(b'=')?;
                let value = self.value()?;
                if key.eq_ignore_ascii_case("owner") {
                    spec.owner = Some(value);
                } else {
                    spec.params.insert(key, value);
                }
                if !self.eat_punct(b',') {
                    break;
                }
            }
        }
        Ok(spec)
    }

    /// A parameter's value: a string, a word or a number.
    fn value(&mut self) -> Result<String, String> {
        let t = match self.toks.get(self.at) {
            Some(t) => *t,
            None => return Err(self.error()),
        };
        let text = t.text(self.sql);
        let v = match t.kind {
            TokenKind::Str => crate::sql::string_literal(text),
            TokenKind::Word | TokenKind::Number => text.to_string(),
            TokenKind::Ident => inner(text).to_string(),
            _ => return Err(self.error()),
        };
        self.at += 1;
        Ok(v)
    }
}

/// A quoted token without its quotes (an unterminated one may lack the
/// closing quote: then its last character goes too).
fn inner(text: &str) -> &str {
    text.get(1..text.len().saturating_sub(1)).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(ks: Option<&str>, n: &str) -> Name {
        Name {
            keyspace: ks.map(String::from),
            name: n.into(),
        }
    }

    #[test]
    fn every_form_parses() {
        assert_eq!(
            parse("alter vschema create vindex user.hash_vdx using hash").unwrap(),
            Alter::CreateVindex(
                name(Some("user"), "hash_vdx"),
                VindexSpec {
                    kind: Some("hash".into()),
                    ..Default::default()
                }
            )
        );
        let lookup = parse(
            "ALTER VSCHEMA ON ks.t ADD VINDEX lk (a, `b`) USING lookup_unique \
             WITH table='ks.lk_idx', from = 'a,b', to=keyspace_id, owner=t;",
        )
        .unwrap();
        let Alter::AddColumnVindex {
            table,
            vindex,
            columns,
            spec,
        } = lookup
        else {
            panic!("{lookup:?}")
        };
        assert_eq!(table, name(Some("ks"), "t"));
        assert_eq!(
            (vindex.as_str(), columns),
            ("lk", vec!["a".into(), "b".into()])
        );
        assert_eq!(spec.kind.as_deref(), Some("lookup_unique"));
        assert_eq!(spec.owner.as_deref(), Some("t"));
        assert_eq!(spec.params["from"], "a,b");
        assert_eq!(spec.params["to"], "keyspace_id");
        assert_eq!(spec.params["table"], "ks.lk_idx");
        for (sql, want) in [
            (
                "alter vschema drop vindex hash_vdx",
                Alter::DropVindex(name(None, "hash_vdx")),
            ),
            (
                "alter vschema add table a",
                Alter::AddTable(name(None, "a")),
            ),
            (
                "alter vschema drop table main.a",
                Alter::DropTable(name(Some("main"), "a")),
            ),
            (
                "alter vschema add sequence a_seq",
                Alter::AddSequence(name(None, "a_seq")),
            ),
            (
                "alter vschema drop sequence a_seq",
                Alter::DropSequence(name(None, "a_seq")),
            ),
            (
                "alter vschema on a drop vindex hash",
                Alter::DropColumnVindex {
                    table: name(None, "a"),
                    vindex: "hash".into(),
                },
            ),
            (
                "alter /* c */ vschema on user.a add auto_increment id using main.a_seq",
                Alter::AddAutoIncrement {
                    table: name(Some("user"), "a"),
                    column: "id".into(),
                    sequence: name(Some("main"), "a_seq"),
                },
            ),
            (
                "alter vschema on a drop auto_increment",
                Alter::DropAutoIncrement(name(None, "a")),
            ),
        ] {
            assert_eq!(parse(sql).unwrap(), want, "{sql}");
        }
    }

    #[test]
    fn what_is_not_the_grammar_says_where() {
        for (sql, near) in [
            ("alter vschema create index x", "near 'index x'"),
            ("alter vschema on t add vindex v id", "near 'id'"),
            ("alter vschema add table", "at the end of the statement"),
            ("alter vschema add table a b", "near 'b'"),
            (
                "alter vschema on t add vindex v (a) using hash with k",
                "at the end",
            ),
        ] {
            let e = parse(sql).unwrap_err();
            assert!(e.starts_with(near), "{sql}: {e}");
        }
    }

    #[test]
    fn changes_follow_vitess() {
        let mut vs = KeyspaceVSchema::default();
        let hash = parse("alter vschema create vindex hash using hash").unwrap();
        hash.apply("ks", &mut vs).unwrap();
        assert!(vs.sharded, "the first vindex makes the keyspace sharded");
        let again = hash.apply("ks", &mut vs).unwrap_err().to_string();
        assert_eq!(again, "vindex hash already exists in keyspace ks");
        let on_t = parse("alter vschema on t add vindex hash (id)").unwrap();
        on_t.apply("ks", &mut vs).unwrap();
        assert_eq!(vs.tables["t"].column_vindexes[0].cols(), ["id"]);
        assert_eq!(
            on_t.apply("ks", &mut vs).unwrap_err().to_string(),
            "vindex hash already defined on table t"
        );
        let other_type = parse("alter vschema on u add vindex hash (id) using xxhash").unwrap();
        assert_eq!(
            other_type.apply("ks", &mut vs).unwrap_err().to_string(),
            "vindex hash defined with type hash not xxhash"
        );
        let drop = parse("alter vschema drop vindex hash").unwrap();
        assert_eq!(
            drop.apply("ks", &mut vs).unwrap_err().to_string(),
            "can not drop vindex cause hash still defined on table t"
        );
        assert_eq!(
            parse("alter vschema add table x")
                .unwrap()
                .apply("ks", &mut vs)
                .unwrap_err()
                .to_string(),
            "add vschema table: unsupported on sharded keyspace ks"
        );
        let auto = parse("alter vschema on t add auto_increment id using main.seq").unwrap();
        auto.apply("ks", &mut vs).unwrap();
        let ai = vs.tables["t"].auto_increment.clone().unwrap();
        assert_eq!(
            (ai.column.as_str(), ai.sequence.as_str()),
            ("id", "main.seq")
        );
        parse("alter vschema on t drop auto_increment")
            .unwrap()
            .apply("ks", &mut vs)
            .unwrap();
        assert!(vs.tables["t"].auto_increment.is_none());
        // The table's last vindex takes the table with it.
        parse("alter vschema on t drop vindex hash")
            .unwrap()
            .apply("ks", &mut vs)
            .unwrap();
        assert!(vs.tables.is_empty());
        drop.apply("ks", &mut vs).unwrap();
        assert!(vs.vindexes.is_empty());

        let mut main = KeyspaceVSchema::default();
        parse("alter vschema add sequence seq")
            .unwrap()
            .apply("main", &mut main)
            .unwrap();
        assert_eq!(main.tables["seq"].kind, "sequence");
        let drop_table = parse("alter vschema drop sequence plain").unwrap();
        parse("alter vschema add table plain")
            .unwrap()
            .apply("main", &mut main)
            .unwrap();
        assert_eq!(
            drop_table.apply("main", &mut main).unwrap_err().to_string(),
            "vschema does not contain sequence plain in keyspace main"
        );
    }

    #[test]
    fn cut_or_garbled_statements_never_panic() {
        use rand::{Rng, SeedableRng};
        let seeds = [
            "alter vschema on ks.t add vindex lk (a, `b`) using lookup with table='x.y', owner=t",
            "alter vschema create vindex `v``x` using hash with k = 'it''s', n = 3",
            "alter vschema on t add auto_increment id using ks.seq;",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(45);
        for seed in seeds {
            // Every prefix at a character boundary, and random splices.
            for (i, _) in seed.char_indices() {
                let _ = parse(&seed[..i]);
                let _ = crate::sql::classify(&seed[..i]);
            }
            for _ in 0..500 {
                let mut b: Vec<u8> = seed.as_bytes().to_vec();
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..b.len());
                    b[at] = b"'`(),.=; \\xa9"[rng.gen_range(0..12)];
                }
                let text = String::from_utf8_lossy(&b);
                let _ = parse(&text);
                let _ = crate::sql::classify(&text);
                let _ = crate::sql::like(&text, seed);
            }
        }
    }

    #[test]
    fn who_may_change_vschemas() {
        assert!(!Authorized::parse("").allows("root"));
        assert!(Authorized::parse("%").allows("anyone"));
        let some = Authorized::parse("alice, bob");
        assert!(some.allows("bob") && !some.allows("root"));
    }
}
