//! vtgate's own statements that the gate answers from the topology rather
//! than a plan: `ALTER VSCHEMA`, vtgate's metadata (`SET
//! @@vitess_metadata.*`, `SHOW VITESS_METADATA VARIABLES`), `SHOW
//! VITESS_REPLICATION_STATUS`, `SELECT NEXT n VALUES FROM seq` and
//! `CREATE`/`DROP`/`ALTER DATABASE`. Those that write the topology are for the
//! users `--vschema_ddl_authorized_users` names, as in vtgate.

use crate::admin::{self, AdminError};
use crate::engine::{self, RowSink, VCursor};
use crate::error::Error;
use crate::executor::{Executor, ShardConns};
use crate::server::ServerCtx;
use crate::topo::store::TopoStore;
use crate::vschema::ddl::Alter;

/// Whether keyspace `k`'s VSchema has `table` as a sequence table.
fn holds_sequence(k: &crate::topo::Keyspace, table: &str) -> bool {
    k.vschema
        .tables
        .get(table)
        .is_some_and(|t| t.kind == "sequence")
}

/// The store the gate watches, to write to or list.
fn store(ctx: &ServerCtx) -> Result<&TopoStore, Error> {
    let store = ctx.topo_store.as_ref();
    Ok(store.ok_or_else(|| AdminError::Invalid("no topology store behind this gate".into()))?)
}

/// vtgate's `ALTER VSCHEMA`: changes a keyspace's VSchema in the topology
/// store (the statement's keyspace, else the session's, `session_ks`).
/// Answered once this gate serves the new VSchema (its watch has seen
/// it), so the session's next statement is planned with it; other gates
/// see it as they see any topology change.
pub(super) async fn alter_vschema(
    ctx: &ServerCtx,
    user: &str,
    session_ks: Option<&str>,
    change: &Alter,
) -> Result<(), Error> {
    if !ctx.vschema_ddl_users.allows(user) {
        return Err(Error::VschemaDenied(user.to_string()));
    }
    let ks = change
        .keyspace()
        .or(session_ks)
        .ok_or(crate::planner::PlanError::NoDatabase)?
        .to_string();
    // The keyspace need not be served yet: its first vindex may be what
    // makes a keyspace of several shards servable. A sequence no VSchema
    // lists would fail every INSERT later.
    if let Some(seq) = change.sequence() {
        let snap = ctx.snapshot.load();
        let is_sequence = |k: &crate::topo::Keyspace| holds_sequence(k, &seq.name);
        let found = match &seq.keyspace {
            Some(q) => snap.keyspaces.get(q).is_some_and(is_sequence),
            None => snap.keyspaces.values().any(is_sequence),
        };
        if !found {
            let why = format!(
                "sequence {} is not a sequence table of any VSchema",
                seq.name
            );
            return Err(AdminError::Invalid(why).into());
        }
    }
    let vs = admin::alter_vschema(store(ctx)?, &ctx.cells, &ks, change).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ctx
        .snapshot
        .load()
        .keyspaces
        .get(&ks)
        .is_none_or(|k| k.vschema != vs)
    {
        if std::time::Instant::now() > deadline {
            tracing::warn!(keyspace = %ks, "ALTER VSCHEMA stored, not yet seen by this gate's watch");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // A table the change brought into a sharded keyspace's VSchema is
    // learned now (the tracker asks for the VSchema's tables only), not
    // at its next refresh: an INSERT without a column list right after
    // needs its columns.
    let sharded = ctx
        .snapshot
        .load()
        .keyspaces
        .get(&ks)
        .is_some_and(|k| k.sharded);
    if let (true, Some(schema)) = (sharded, &ctx.schema) {
        Box::pin(schema.relearn(std::time::Duration::from_secs(1))).await;
    }
    Ok(())
}

/// `SET @@vitess_metadata.key = 'value'` (an empty value deletes it).
pub(super) async fn set_metadata(
    ctx: &ServerCtx,
    user: &str,
    assignments: &[(String, String)],
) -> Result<(), Error> {
    if !ctx.vschema_ddl_users.allows(user) {
        return Err(Error::MetadataDenied(user.to_string()));
    }
    let store = store(ctx)?;
    for (key, value) in assignments {
        admin::set_metadata(store, key, value).await?;
    }
    Ok(())
}

/// `SHOW VITESS_METADATA VARIABLES [LIKE 'key']`: Key, Value.
pub(super) async fn show_metadata<S: RowSink + Send>(
    ctx: &ServerCtx,
    like: Option<&str>,
    sink: &mut S,
) -> Result<(), Error> {
    let rows = admin::metadata(store(ctx)?, like).await?;
    let rows = rows.into_iter().map(|(k, v)| [k, v]);
    engine::text_result(&["Key", "Value"], rows, sink)
}

/// `SHOW VITESS_REPLICATION_STATUS [LIKE 'ks/shard']`, with vtgate's
/// columns (see [`crate::gateway::health::replication_status`]).
pub(super) async fn replication_status<S: RowSink + Send>(
    ctx: &ServerCtx,
    like: Option<&str>,
    sink: &mut S,
) -> Result<(), Error> {
    let snap = ctx.snapshot.load_full();
    let health = &ctx.gateway.health;
    let rows = crate::gateway::health::replication_status(&snap, health, &ctx.login, like).await;
    let names = [
        "Keyspace",
        "Shard",
        "TabletType",
        "Alias",
        "Hostname",
        "ReplicationSource",
        "ReplicationHealth",
        "ReplicationLag",
        "ThrottlerStatus",
    ];
    engine::text_result(&names, rows, sink)
}

/// vtgate's `SELECT NEXT n VALUES FROM [ks.]seq`: `count` ids taken from
/// the sequence's blocks (those an INSERT's auto-increment takes from),
/// the first returned as `nextval`. `at` is the statement's keyspace, the
/// session's, and the table: unqualified, the session's keyspace's
/// sequence, else the one keyspace that has it (as vtgate finds tables).
pub(super) async fn next_values<S: RowSink + Send>(
    ctx: &ServerCtx,
    shards: &mut ShardConns,
    (named, own, table): (Option<&str>, Option<&str>, &str),
    count: u64,
    sink: &mut S,
) -> Result<(), Error> {
    use crate::planner::PlanError;
    let snap = ctx.snapshot.load();
    let ks = match (named, own) {
        (Some(ks), _) => ks.to_string(),
        (None, Some(own))
            if snap
                .keyspaces
                .get(own)
                .is_some_and(|k| holds_sequence(k, table)) =>
        {
            own.to_string()
        }
        (None, own) => {
            let mut holders = snap.keyspaces.values().filter(|k| holds_sequence(k, table));
            match (holders.next(), holders.next()) {
                (Some(k), None) => k.name.clone(),
                _ => own.ok_or(PlanError::NoDatabase)?.to_string(),
            }
        }
    };
    let keyspace = snap
        .keyspaces
        .get(&ks)
        .ok_or_else(|| PlanError::UnknownKeyspace(ks.clone()))?;
    if !holds_sequence(keyspace, table) {
        let why = format!("NEXT used on a non-sequence table `{table}`");
        return Err(PlanError::Routing(why).into());
    }
    let mut ex = Executor {
        ctx,
        snap: &snap,
        state: shards,
    };
    let first = ex.next_sequence(&ks, table, count).await?;
    engine::number_row("nextval", first, sink)
}

/// vtgate's answer to a database statement (`name` defaults to the
/// session's keyspace for ALTER): a database is a keyspace, so one that
/// exists is not created again and one that does not is not dropped; the
/// guarded forms of those are OK and change nothing. Making, dropping or
/// altering a keyspace is the topology's (`shardgate ctl`), as vtgate's
/// default `--dbddl_plugin` refuses it.
pub(super) fn database_ddl(
    ctx: &ServerCtx,
    session_ks: Option<&str>,
    ddl: &crate::sql::DatabaseDdl,
) -> Result<(), Error> {
    use crate::planner::PlanError;
    use crate::sql::DatabaseVerb;
    let name = ddl
        .name
        .as_deref()
        .or(session_ks)
        .ok_or(PlanError::NoDatabase)?;
    let exists = ctx.snapshot.load().keyspaces.contains_key(name)
        || crate::sql::SYSTEM_SCHEMAS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(name));
    let refused = |what: &str| {
        PlanError::Unsupported(format!(
            "{what} '{name}': keyspaces are made and removed in the topology (shardgate ctl)"
        ))
    };
    Err(match (ddl.verb, exists) {
        (DatabaseVerb::Create, true) if ddl.guarded => return Ok(()),
        (DatabaseVerb::Create, true) => PlanError::DatabaseExists(name.to_string()),
        (DatabaseVerb::Create, false) => refused("CREATE DATABASE"),
        (DatabaseVerb::Drop, false) if ddl.guarded => return Ok(()),
        (DatabaseVerb::Drop, false) => PlanError::DatabaseMissing(name.to_string()),
        (DatabaseVerb::Drop, true) => refused("DROP DATABASE"),
        (DatabaseVerb::Alter, false) => PlanError::UnknownKeyspace(name.to_string()),
        (DatabaseVerb::Alter, true) => PlanError::Unsupported("ALTER DATABASE".into()),
    }
    .into())
}
