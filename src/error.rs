//! The crate's error type and the one place errors become MySQL errors
//! (code, SQLSTATE, message) for the client.

use crate::gateway::GatewayError;
use crate::planner::PlanError;
use crate::sql::SqlError;
use crate::topo::TopoError;

/// Any error on the statement path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Statement text problems.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// Planning problems.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// No tablet to send to.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// Topology problems.
    #[error(transparent)]
    Topo(#[from] TopoError),
    /// An error from a tablet, with the target it came from.
    #[error("target: {target}: {source}")]
    Backend {
        /// `ks.shard.type` as Vitess prints it.
        target: String,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// The client's credentials were refused.
    #[error("Access denied for user '{user}'@'{host}' (using password: {})", if *.using_password { "YES" } else { "NO" })]
    AccessDenied {
        /// User name sent.
        user: String,
        /// Client address.
        host: String,
        /// Whether a password was sent.
        using_password: bool,
    },
    /// A ping while the server drains before it stops (MySQL's message).
    #[error("Server shutdown in progress")]
    ShuttingDown,
    /// A statement longer than `--max_payload_size` (vtgate's message).
    #[error("query payload size above threshold")]
    PayloadTooLarge,
    /// A schema change under `--enable_direct_ddl=false` (vtgate's message).
    #[error("direct DDL is disabled")]
    DirectDdlDisabled,
    /// A TCP client that did not ask for TLS while
    /// `--mysql_server_require_secure_transport` is on (vtgate's message).
    #[error("server does not allow insecure connections, client must use SSL/TLS")]
    InsecureTransport,
    /// `ALTER VSCHEMA` by a user `--vschema_ddl_authorized_users` leaves
    /// out (vtgate's message).
    #[error("User '{0}' is not authorized to perform vschema operations")]
    VschemaDenied(String),
    /// `SET @@vitess_metadata.*` by a user `--vschema_ddl_authorized_users`
    /// leaves out (vtgate's message).
    #[error("User '{0}' not authorized to perform vitess metadata operations")]
    MetadataDenied(String),
    /// A topology change the gate was asked for (`ALTER VSCHEMA`) was
    /// refused or could not be stored.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// A read of every shard under `--no_scatter` (vtgate's message).
    #[error(
        "plan includes scatter, which is disallowed using the `no_scatter` command line argument"
    )]
    ScatterDisallowed,
    /// A malformed packet from the client.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A prepared statement the session does not know: a protocol
    /// statement's id or an SQL statement's name, and the command.
    #[error("Unknown prepared statement handler ({0}) given to {1}")]
    UnknownStmt(String, &'static str),
    /// An SQL EXECUTE with another number of values than its statement's
    /// `?` (MariaDB's message).
    #[error("Incorrect arguments to EXECUTE")]
    ExecuteArguments,
    /// A statement MariaDB does not prepare (PREPARE, EXECUTE or
    /// DEALLOCATE PREPARE itself), with MariaDB's message.
    #[error("This command is not supported in the prepared statement protocol yet")]
    NotPreparable,
    /// A command shardgate does not implement.
    #[error("unsupported command {0:#04x}")]
    UnknownCommand(u8),
    /// A value a tablet sent that does not fit its declared column type.
    #[error("cannot encode value of column {column} as {kind}: {value:?}")]
    Encode {
        /// Column name.
        column: String,
        /// Column type.
        kind: String,
        /// The offending text.
        value: String,
    },
    /// A transaction reached a second shard under `--transaction_mode=SINGLE`;
    /// the message starts as vtgate's does, which ORMs match on.
    #[error("multi-db transaction attempted: {0}")]
    MultiDbTransaction(String),
    /// The transaction was open for longer than
    /// `--queryserver-config-transaction-timeout` and was rolled back.
    #[error("transaction rolled back: it was open longer than the transaction timeout ({0:?}, --queryserver-config-transaction-timeout)")]
    TransactionTimeout(std::time::Duration),
    /// A statement that wrote on several shards inside a transaction
    /// failed on one, and what the others wrote could not be taken back
    /// alone (its savepoint was lost with a tablet connection): the whole
    /// transaction was rolled back. vtgate's message.
    #[error("transaction rolled back to reverse changes of partial DML execution: {0}")]
    PartialWriteRolledBack(Box<Error>),
    /// ROLLBACK TO or RELEASE of a savepoint the transaction does not have.
    #[error("SAVEPOINT {0} does not exist")]
    NoSavepoint(String),
    /// An integer the gate computed is beyond every BIGINT (MariaDB's
    /// words; the expression as the client wrote it).
    #[error("BIGINT value is out of range in '{0}'")]
    OutOfRange(String),
    /// A subquery used as one value returned more than one row.
    #[error("Subquery returns more than 1 row")]
    SubqueryRows,
    /// An INSERT's SELECT returned another number of columns than it names.
    #[error("Column count doesn't match value count at row 1")]
    ColumnCount,
    /// A subquery used as values returned more than one column.
    #[error("Operand should contain 1 column(s)")]
    SubqueryColumns,
    /// A recursive WITH's step returned another number of columns than
    /// its seed.
    #[error("The used SELECT statements have a different number of columns")]
    SetColumns,
    /// A statement would hold more rows in memory than `--max_memory_rows`.
    #[error("in-memory row count exceeded allowed limit of {0}")]
    TooManyRows(usize),
    /// The transaction was the youngest of a cycle of lock waits across
    /// shards and was rolled back (see [`crate::executor::deadlock`]).
    #[error("Deadlock found when trying to get lock; try restarting transaction")]
    Deadlock,
    /// Every connection to a tablet stayed in use for as long as the
    /// statement may wait (`--tablet-connections`): the statement did
    /// not run.
    #[error("target: {target}: {source}")]
    TabletBusy {
        /// The shard's target, as vtgate names it.
        target: String,
        /// The budget and the wait.
        source: crate::backend::Busy,
    },
    /// The statement was stopped by a `KILL QUERY` or `KILL CONNECTION`
    /// from another client (see [`crate::executor::interrupt`]).
    #[error("Query execution was interrupted")]
    Interrupted,
    /// The statement ran longer than its query timeout and was stopped.
    #[error("Query execution was interrupted: the query timeout ({0} ms) passed")]
    QueryTimeout(u64),
    /// A KILL named a connection id no session has.
    #[error("Unknown thread id: {0}")]
    NoSuchThread(u64),
    /// KILL without `--allow-kill-statement`, refused as vtgate refuses it.
    #[error("VT07001: kill statement execution not permitted.")]
    KillDenied,
    /// A COMMIT under `--transaction_mode=twopc` rolled the transaction
    /// back (see [`crate::executor::twopc`]).
    #[error(transparent)]
    Twopc(#[from] crate::executor::twopc::TwopcError),
    /// The client connection failed.
    #[error("client i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// An error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlError {
    /// MySQL error number.
    pub code: u16,
    /// Five-character SQLSTATE.
    pub state: String,
    /// Message text.
    pub message: String,
    /// The Vitess code vtgate would count the error under
    /// (`vtgate_api_error_counts`).
    pub vitess_code: &'static str,
}

impl MysqlError {
    /// An error with the Vitess code of its number ([`vitess_code`]).
    pub fn new(code: u16, state: &str, message: String) -> Self {
        MysqlError {
            code,
            state: state.to_string(),
            message,
            vitess_code: vitess_code(code),
        }
    }
}

/// The Vitess error code (vtrpc's name) of a MySQL error number, as
/// vttablet classifies tablet errors; `/metrics` labels errors with it so
/// that vtgate's dashboards and alerts (`vtgate_api_error_counts`) work.
/// The numbers shardgate itself answers with map to the code vtgate gives
/// the same failure.
pub fn vitess_code(errno: u16) -> &'static str {
    match errno {
        1235 => "UNIMPLEMENTED",
        1021 | 1037 | 1038 | 1040 | 1041 | 1114 | 1129 | 1135 | 1151 | 1153 | 1203 | 1206
        | 1226 => "RESOURCE_EXHAUSTED",
        1205 | 2013 => "DEADLINE_EXCEEDED",
        1053 | 2006 => "UNAVAILABLE",
        1032 | 1054 | 1082 | 1094 | 1109 | 1122 | 1141 | 1146 | 1147 | 1176 => "NOT_FOUND",
        1044 | 1045 | 1095 | 1211 | 1227 => "PERMISSION_DENIED",
        1046 | 1091 | 1099 | 1100 | 1104 | 1148 | 1169 | 1173 | 1179 | 1207 | 1215 | 1216
        | 1217 | 1223 | 1241 | 1242 | 1288 | 1289 | 1364 | 1451 | 1452 => "FAILED_PRECONDITION",
        1050 | 1062 | 1086 | 1125 => "ALREADY_EXISTS",
        // A deadlock's victim and a statement vtgate refuses mid-transaction
        // (ER_QUERY_INTERRUPTED) both end the work they were part of.
        1078 | 1080 | 1152 | 1213 | 1317 => "ABORTED",
        1047..=1052
        | 1055..=1061
        | 1063..=1075
        | 1111
        | 1115
        | 1136
        | 1138..=1140
        | 1149
        | 1193
        | 1210
        | 1231
        | 1232
        | 1243
        | 1248
        | 1264
        | 1267
        | 1270
        | 1271
        | 1273
        | 1292
        | 1298
        | 1300
        | 1305
        | 1366
        | 1406
        | 1835 => "INVALID_ARGUMENT",
        _ => "UNKNOWN",
    }
}

/// ER_UNKNOWN_ERROR, what vtgate uses for "no tablet" and other internal errors.
pub const ER_UNKNOWN_ERROR: u16 = 1105;

impl Error {
    /// Maps the error to what the client receives. Backend MySQL errors pass
    /// through with their own code and SQLSTATE.
    pub fn to_mysql(&self) -> MysqlError {
        use mysql_async::Error as Me;
        match self {
            Error::Backend {
                source: Me::Server(se),
                ..
            } => MysqlError::new(se.code, &se.state, se.message.clone()),
            Error::Plan(PlanError::UnknownKeyspace(_))
            | Error::Gateway(GatewayError::UnknownKeyspace(_)) => {
                MysqlError::new(1049, "42000", self.to_string())
            }
            Error::Admin(crate::admin::AdminError::UnknownKeyspace(_)) => {
                MysqlError::new(1049, "42000", self.to_string())
            }
            Error::Plan(PlanError::UnknownShard { .. }) => {
                MysqlError::new(1049, "42000", self.to_string())
            }
            Error::Plan(PlanError::NoDatabase) => MysqlError::new(1046, "3D000", self.to_string()),
            Error::Plan(PlanError::TooManyRows) => MysqlError::new(1172, "42000", self.to_string()),
            Error::Plan(PlanError::IntoColumnCount) => {
                MysqlError::new(1222, "21000", self.to_string())
            }
            Error::Plan(PlanError::DatabaseExists(_)) => {
                MysqlError::new(1007, "HY000", self.to_string())
            }
            Error::Plan(PlanError::DatabaseMissing(_)) => {
                MysqlError::new(1008, "HY000", self.to_string())
            }
            Error::Plan(PlanError::Syntax(_)) => MysqlError::new(1064, "42000", self.to_string()),
            Error::Plan(PlanError::TableNotFound { .. }) => {
                MysqlError::new(1146, "42S02", self.to_string())
            }
            Error::Plan(PlanError::AmbiguousTable(_) | PlanError::Routing(_)) => {
                MysqlError::new(1105, "HY000", self.to_string())
            }
            Error::Plan(PlanError::AmbiguousColumn { .. }) => {
                MysqlError::new(1052, "23000", self.to_string())
            }
            Error::Plan(PlanError::ValueCount(_)) => {
                MysqlError::new(1136, "21S01", self.to_string())
            }
            Error::Plan(PlanError::UnknownColumn { .. }) => {
                MysqlError::new(1054, "42S22", self.to_string())
            }
            Error::Plan(PlanError::NotUniqueTable(_)) => {
                MysqlError::new(1066, "42000", self.to_string())
            }
            Error::Plan(PlanError::UnknownTable(_)) => {
                MysqlError::new(1051, "42S02", self.to_string())
            }
            Error::Plan(PlanError::OperandColumns) => {
                MysqlError::new(1241, "21000", self.to_string())
            }
            Error::Plan(PlanError::GroupFunction) => {
                MysqlError::new(1111, "HY000", self.to_string())
            }
            Error::Plan(PlanError::TargetRead(_)) => {
                MysqlError::new(1093, "HY000", self.to_string())
            }
            Error::Plan(PlanError::DuplicateColumn(_)) => {
                MysqlError::new(1060, "42S21", self.to_string())
            }
            Error::Plan(PlanError::MissingVindexColumn { .. }) => {
                MysqlError::new(1364, "HY000", self.to_string())
            }
            Error::Plan(PlanError::Unsupported(_)) => {
                MysqlError::new(1235, "42000", self.to_string())
            }
            Error::Sql(SqlError::ParamCount { .. }) => {
                MysqlError::new(1210, "HY000", self.to_string())
            }
            Error::Sql(SqlError::BadTransactionMode(_)) => {
                MysqlError::new(1231, "42000", self.to_string())
            }
            Error::Sql(SqlError::TransactionModeInTransaction) => {
                MysqlError::new(1568, "25001", self.to_string())
            }
            Error::Sql(SqlError::BadKill(_) | SqlError::BadBegin(_)) => {
                MysqlError::new(1064, "42000", self.to_string())
            }
            Error::Sql(SqlError::BadQueryTimeout(_)) => {
                MysqlError::new(1231, "42000", self.to_string())
            }
            Error::Sql(SqlError::BadAutocommit(_)) => {
                MysqlError::new(1231, "42000", self.to_string())
            }
            Error::Sql(SqlError::BadTarget(_)) => MysqlError::new(1049, "42000", self.to_string()),
            Error::AccessDenied { .. } | Error::VschemaDenied(_) | Error::MetadataDenied(_) => {
                MysqlError::new(1045, "28000", self.to_string())
            }
            Error::ScatterDisallowed => MysqlError::new(1235, "42000", self.to_string()),
            // ER_SERVER_SHUTDOWN, as vtgate answers pings while it drains.
            Error::ShuttingDown => MysqlError::new(1053, "08S01", self.to_string()),
            // ER_NET_PACKET_TOO_LARGE, as vtgate codes it.
            Error::PayloadTooLarge => MysqlError::new(1153, "08S01", self.to_string()),
            Error::DirectDdlDisabled => MysqlError::new(1105, "HY000", self.to_string()),
            // ER_SECURE_TRANSPORT_REQUIRED, as MySQL's own refusal.
            Error::InsecureTransport => MysqlError::new(3159, "HY000", self.to_string()),
            Error::Sql(SqlError::WrongVariableType(_)) => {
                MysqlError::new(1232, "42000", self.to_string())
            }
            Error::Sql(SqlError::BadVitessValue { .. }) => {
                MysqlError::new(1231, "42000", self.to_string())
            }
            Error::Sql(SqlError::ShowWhere(_) | SqlError::LoadData(_)) => {
                MysqlError::new(1235, "42000", self.to_string())
            }
            Error::Sql(SqlError::VschemaSyntax(_) | SqlError::BadPrepared(_)) => {
                MysqlError::new(1064, "42000", self.to_string())
            }
            Error::Malformed(_) => MysqlError::new(1835, "HY000", self.to_string()),
            Error::UnknownStmt(..) => MysqlError::new(1243, "HY000", self.to_string()),
            Error::ExecuteArguments => MysqlError::new(1210, "HY000", self.to_string()),
            Error::NotPreparable => MysqlError::new(1295, "HY000", self.to_string()),
            Error::UnknownCommand(_) => MysqlError::new(1047, "08S01", self.to_string()),
            // The whole transaction rolled back, as after a deadlock.
            Error::Deadlock | Error::PartialWriteRolledBack(_) => {
                MysqlError::new(1213, "40001", self.to_string())
            }
            // ER_ERROR_DURING_COMMIT: the outcome is not known yet (the
            // resolver settles it), so not a rollback's code.
            Error::Twopc(crate::executor::twopc::TwopcError::InDoubt { .. }) => MysqlError {
                vitess_code: "UNKNOWN",
                ..MysqlError::new(1180, "HY000", self.to_string())
            },
            // MariaDB's ER_XA_RBROLLBACK: the client learns its COMMIT
            // rolled back, as vtgate's ABORTED.
            Error::Twopc(_) => MysqlError {
                vitess_code: "ABORTED",
                ..MysqlError::new(1402, "XA100", self.to_string())
            },
            Error::TooManyRows(_) => MysqlError::new(1041, "HY000", self.to_string()),
            Error::SubqueryRows => MysqlError::new(1242, "21000", self.to_string()),
            Error::OutOfRange(_) => MysqlError::new(1690, "22003", self.to_string()),
            Error::NoSavepoint(_) => MysqlError::new(1305, "42000", self.to_string()),
            Error::ColumnCount => MysqlError::new(1136, "21S01", self.to_string()),
            Error::SetColumns => MysqlError::new(1222, "21000", self.to_string()),
            Error::SubqueryColumns => MysqlError::new(1241, "21000", self.to_string()),
            // vtgate's RESOURCE_EXHAUSTED: ER_TOO_MANY_USER_CONNECTIONS.
            Error::TabletBusy { .. } => MysqlError::new(1203, "42000", self.to_string()),
            // vtgate's ABORTED: ER_QUERY_INTERRUPTED.
            Error::NoSuchThread(_) => MysqlError::new(1094, "HY000", self.to_string()),
            Error::KillDenied => MysqlError::new(1095, "HY000", self.to_string()),
            // vtgate's DEADLINE_EXCEEDED, which reaches the client as
            // ER_QUERY_INTERRUPTED.
            Error::QueryTimeout(_) => MysqlError {
                vitess_code: "DEADLINE_EXCEEDED",
                ..MysqlError::new(1317, "70100", self.to_string())
            },
            Error::MultiDbTransaction(_) | Error::TransactionTimeout(_) | Error::Interrupted => {
                MysqlError::new(1317, "70100", self.to_string())
            }
            // A tablet that could not be reached, or none to reach:
            // vtgate's UNAVAILABLE, which it reports as ER_UNKNOWN_ERROR.
            Error::Backend { .. } | Error::Gateway(GatewayError::NoTablet { .. }) => MysqlError {
                vitess_code: "UNAVAILABLE",
                ..MysqlError::new(ER_UNKNOWN_ERROR, "HY000", self.to_string())
            },
            _ => MysqlError::new(ER_UNKNOWN_ERROR, "HY000", self.to_string()),
        }
    }

    /// True when the client connection itself is gone: stop serving it quietly.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, Error::Io(_))
    }

    /// A tablet refused the statement because its server is read-only:
    /// a primary that a reparent has demoted (see [`crate::gateway::buffer`]).
    pub fn refused_read_only(&self) -> bool {
        matches!(self, Error::Backend { source, .. } if crate::gateway::buffer::is_read_only(source))
    }

    /// The tablet's error number, for an error a tablet's server sent.
    pub fn server_code(&self) -> Option<u16> {
        match self {
            Error::Backend {
                source: mysql_async::Error::Server(e),
                ..
            } => Some(e.code),
            _ => None,
        }
    }

    /// True when the backend connection that produced this error cannot be reused.
    pub fn breaks_backend_conn(&self) -> bool {
        matches!(self, Error::Backend { source, .. } if !matches!(source, mysql_async::Error::Server(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errors shardgate answers with itself carry the Vitess code
    /// vtgate gives the same failure, for `vtgate_api_error_counts`.
    #[test]
    fn shardgates_own_errors_map_to_vtgates_codes() {
        let code = |e: Error| e.to_mysql().vitess_code;
        assert_eq!(
            code(Error::Plan(PlanError::Syntax("x".into()))),
            "INVALID_ARGUMENT"
        );
        assert_eq!(
            code(Error::Plan(PlanError::Unsupported("x".into()))),
            "UNIMPLEMENTED"
        );
        assert_eq!(
            code(Error::Plan(PlanError::NoDatabase)),
            "FAILED_PRECONDITION"
        );
        assert_eq!(code(Error::Deadlock), "ABORTED");
        use crate::executor::twopc::TwopcError;
        assert_eq!(code(Error::Twopc(TwopcError::Abandoned)), "ABORTED");
        let in_doubt = Error::Twopc(TwopcError::InDoubt {
            dtid: "d".into(),
            source: crate::topo::TopoError::Store("down".into()),
        });
        assert_eq!(in_doubt.to_mysql().code, 1180);
        assert_eq!(code(Error::MultiDbTransaction("x".into())), "ABORTED");
        assert_eq!(
            code(Error::UnknownStmt("7".into(), "mysqld_stmt_execute")),
            "INVALID_ARGUMENT"
        );
        assert_eq!(code(Error::Malformed("x".into())), "INVALID_ARGUMENT");
        // A tablet that cannot be reached: ER_UNKNOWN_ERROR to the client,
        // UNAVAILABLE to the metrics, as vtgate counts it.
        let unreachable = Error::Backend {
            target: "ks.0.replica".into(),
            source: mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ))),
        };
        let e = unreachable.to_mysql();
        assert_eq!((e.code, e.vitess_code), (1105, "UNAVAILABLE"));
        // A tablet's duplicate key and lock wait timeout, as vttablet
        // classifies them; an error number nobody classified.
        assert_eq!(vitess_code(1062), "ALREADY_EXISTS");
        assert_eq!(vitess_code(1205), "DEADLINE_EXCEEDED");
        assert_eq!(vitess_code(4000), "UNKNOWN");
    }
}
