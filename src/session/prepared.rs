//! The session's SQL prepared statements (`PREPARE`, `EXECUTE [IMMEDIATE]`,
//! `DEALLOCATE PREPARE`; see [`crate::sql::prepared`]). A statement is
//! kept by name as its text, and each EXECUTE runs that text with the
//! values filled in, through the same path as the client's own text: on
//! a sharded keyspace it is planned there (vtgate keeps such statements
//! in its session and plans each execution the same way), and no tablet
//! connection has to keep anything between PREPARE and EXECUTE.

use mysql_common::value::Value;

use super::{admitted, ddl_allowed, Session};
use crate::engine::{self, QueryDone, RowSink};
use crate::error::Error;
use crate::server::ServerCtx;
use crate::sql::lexer::{tokenize, TokenKind};
use crate::sql::prepared::{Executed, Source};
use crate::sql::{self, SqlError, Statement, Target};

/// A statement PREPARE kept.
#[derive(Debug)]
pub(super) struct SqlPrepared {
    /// Its text as the session admits any statement's (executable
    /// comments opened, vindex hints taken out).
    text: String,
    /// Its `?`: the values each EXECUTE must give.
    params: usize,
    /// The keyspace (and shard) it was prepared in: MariaDB runs a
    /// prepared statement in the database it was prepared in, whatever
    /// USE came between.
    database: (Option<String>, Option<String>),
}

impl Session {
    /// `PREPARE name FROM source`: the statement is checked where it
    /// would run, as a client's COM_STMT_PREPARE of it is (a syntax error
    /// or an unknown table is PREPARE's error, as on MariaDB), and kept.
    pub(super) async fn sql_prepare<S: RowSink + Send>(
        &mut self,
        ctx: &ServerCtx,
        name: String,
        source: Source,
        sink: &mut S,
    ) -> Result<(), Error> {
        // MariaDB forgets the statement of that name first, even when the
        // new one then fails.
        self.sql_prepared.remove(&name);
        let text = self.statement_text(ctx, source).await?;
        let (stmt, text) = preparable(ctx, &text, self.shards.no_backslash_escapes)?;
        Box::pin(self.described(ctx, &stmt, &text)).await?;
        let params = sql::count_placeholders(&text);
        let database = (self.target.keyspace.clone(), self.target.shard.clone());
        let kept = SqlPrepared {
            text,
            params,
            database,
        };
        self.sql_prepared.insert(name, kept);
        sink.ok(QueryDone {
            info: "Statement prepared".into(),
            ..QueryDone::default()
        })
    }

    /// `EXECUTE name [USING ...]` and `EXECUTE IMMEDIATE`: the statement's
    /// text with each `?` replaced by its value's literal, run as the
    /// client's next statement would be.
    pub(super) async fn sql_execute<S: RowSink + Send>(
        &mut self,
        ctx: &ServerCtx,
        what: Executed,
        args: Vec<String>,
        sink: &mut S,
    ) -> Result<(), Error> {
        let (text, params, database) = match what {
            Executed::Named(name) => match self.sql_prepared.get(&name) {
                Some(p) => (p.text.clone(), p.params, p.database.clone()),
                None => return Err(Error::UnknownStmt(name, "EXECUTE")),
            },
            Executed::Immediate(source) => {
                let text = self.statement_text(ctx, source).await?;
                let (_, text) = preparable(ctx, &text, self.shards.no_backslash_escapes)?;
                let params = sql::count_placeholders(&text);
                let here = (self.target.keyspace.clone(), self.target.shard.clone());
                (text, params, here)
            }
        };
        if params != args.len() {
            return Err(Error::ExecuteArguments);
        }
        let values = self.argument_literals(ctx, &args).await?;
        let counts = sql::prepared::count_slots(&text);
        let filled = sql::fill_placeholders(&text, values.len(), |i, out| {
            out.push_str(match counts.get(i) {
                Some(true) => sql::prepared::as_count(&values[i]),
                _ => &values[i],
            })
        })?;
        let (keyspace, shard) = database;
        let prepared_in = Target {
            keyspace,
            shard,
            tablet_type: self.target.tablet_type,
        };
        let before = std::mem::replace(&mut self.target, prepared_in.clone());
        sink.limit_rows(sql::select_cap(&filled, &self.vitess_vars));
        let res = Box::pin(self.execute_statement(ctx, &filled, sink)).await;
        // A USE the statement ran stays, as on MariaDB.
        if self.target == prepared_in {
            self.target = before;
        }
        res
    }

    /// `DEALLOCATE PREPARE name`.
    pub(super) fn sql_deallocate<S: RowSink>(
        &mut self,
        name: String,
        sink: &mut S,
    ) -> Result<(), Error> {
        match self.sql_prepared.remove(&name) {
            Some(_) => sink.ok(QueryDone::default()),
            None => Err(Error::UnknownStmt(name, "DEALLOCATE PREPARE")),
        }
    }

    /// The text a PREPARE or EXECUTE IMMEDIATE runs: the literal's, or its
    /// expression's value (a NULL is MariaDB's syntax error near 'NULL').
    async fn statement_text(&mut self, ctx: &ServerCtx, source: Source) -> Result<String, Error> {
        let expr = match source {
            Source::Text(text) => return Ok(text),
            Source::Expr(expr) => expr,
        };
        let (_, mut row) = self.evaluate(ctx, std::slice::from_ref(&expr)).await?;
        match row.pop() {
            Some(Value::Bytes(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Some(Value::NULL) | None => Err(SqlError::BadPrepared("NULL".into()).into()),
            Some(other) => Ok(other.as_sql(false)),
        }
    }

    /// USING's values as literals: a literal as written; anything else
    /// (user variables, expressions) evaluated where the session's
    /// variables live, its tablets, in one SELECT, and written back as a
    /// literal of its type (a number stays a number, so `LIMIT ?` and a
    /// vindex column's `= ?` read it as the client's value).
    async fn argument_literals(
        &mut self,
        ctx: &ServerCtx,
        args: &[String],
    ) -> Result<Vec<String>, Error> {
        if args.iter().all(|a| is_literal(a)) {
            return Ok(args.to_vec());
        }
        let (columns, row) = self.evaluate(ctx, args).await?;
        let nbe = self.shards.no_backslash_escapes;
        Ok(row
            .iter()
            .zip(&columns)
            .map(|(v, col)| engine::typed_literal(v, col, nbe))
            .collect())
    }

    /// The one row of `SELECT exprs...`, run as the session's own
    /// statement (its variables are its tablets'). What the client's last
    /// statement left for ROW_COUNT() and FOUND_ROWS() stays for the
    /// statement this one serves.
    pub(super) async fn evaluate(
        &mut self,
        ctx: &ServerCtx,
        exprs: &[String],
    ) -> Result<(Vec<mysql_common::packets::Column>, Vec<Value>), Error> {
        let select = format!("SELECT {}", exprs.join(", "));
        let mut got = engine::Gather::new(1);
        let (row_count, found_rows) = (self.shards.row_count, self.found_rows);
        let ran = Box::pin(self.execute_statement(ctx, &select, &mut got)).await;
        (self.shards.row_count, self.found_rows) = (row_count, found_rows);
        ran?;
        let row = got.rows.pop().unwrap_or_default();
        Ok((got.columns, row))
    }
}

/// `text` as a statement to prepare: admitted as any statement the
/// client sends, one statement only (MariaDB's syntax error at the
/// second), and not itself a PREPARE, EXECUTE or DEALLOCATE.
fn preparable(
    ctx: &ServerCtx,
    text: &str,
    no_backslash_escapes: bool,
) -> Result<(Statement, String), Error> {
    let (_, opened) = admitted(ctx, text)?;
    let text = opened.unwrap_or_else(|| text.to_string());
    let parts = sql::lexer::split_statements_mode(&text, no_backslash_escapes);
    if let Some(second) = parts.get(1) {
        return Err(SqlError::BadPrepared(second.to_string()).into());
    }
    let stmt = sql::classify(&text)?;
    not_nested(&stmt)?;
    ddl_allowed(ctx, &stmt)?;
    Ok((stmt, text))
}

/// MariaDB prepares no PREPARE, EXECUTE or DEALLOCATE PREPARE, in SQL or
/// by COM_STMT_PREPARE.
pub(super) fn not_nested(stmt: &Statement) -> Result<(), Error> {
    match stmt {
        Statement::Prepare { .. } | Statement::Execute { .. } | Statement::Deallocate(_) => {
            Err(Error::NotPreparable)
        }
        _ => Ok(()),
    }
}

/// Whether a USING value is a literal MariaDB reads as it is written: a
/// number (signed or not), a string (hex and bit ones too), NULL.
fn is_literal(arg: &str) -> bool {
    let toks = tokenize(arg);
    match toks.as_slice() {
        [t] => matches!(t.kind, TokenKind::Number | TokenKind::Str) || t.is_word(arg, "null"),
        [sign, n] => sign.kind == TokenKind::Punct(b'-') && n.kind == TokenKind::Number,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_used_as_written_and_the_rest_evaluated() {
        for lit in ["4", "-4", "1.5e3", "'a b'", "x'00'", "NULL", "null"] {
            assert!(is_literal(lit), "{lit}");
        }
        for expr in ["@a", "4 + 1", "concat('a')", "-@a", "now()", "- - 4"] {
            assert!(!is_literal(expr), "{expr}");
        }
    }
}
