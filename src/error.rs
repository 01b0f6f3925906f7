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
    /// A malformed packet from the client.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A prepared-statement id the session does not know.
    #[error("Unknown prepared statement handler ({0}) given to {1}")]
    UnknownStmt(u32, &'static str),
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
}

impl MysqlError {
    fn new(code: u16, state: &str, message: String) -> Self {
        MysqlError {
            code,
            state: state.to_string(),
            message,
        }
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
            Error::Plan(PlanError::UnknownShard { .. }) => {
                MysqlError::new(1049, "42000", self.to_string())
            }
            Error::Plan(PlanError::NoDatabase) => MysqlError::new(1046, "3D000", self.to_string()),
            Error::Plan(PlanError::Syntax(_)) => MysqlError::new(1064, "42000", self.to_string()),
            Error::Plan(PlanError::TableNotFound { .. }) => {
                MysqlError::new(1146, "42S02", self.to_string())
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
            Error::Sql(SqlError::BadAutocommit(_)) => {
                MysqlError::new(1231, "42000", self.to_string())
            }
            Error::Sql(SqlError::BadTarget(_)) => MysqlError::new(1049, "42000", self.to_string()),
            Error::AccessDenied { .. } => MysqlError::new(1045, "28000", self.to_string()),
            Error::Malformed(_) => MysqlError::new(1835, "HY000", self.to_string()),
            Error::UnknownStmt(..) => MysqlError::new(1243, "HY000", self.to_string()),
            Error::UnknownCommand(_) => MysqlError::new(1047, "08S01", self.to_string()),
            Error::Deadlock => MysqlError::new(1213, "40001", self.to_string()),
            // vtgate's RESOURCE_EXHAUSTED: ER_TOO_MANY_USER_CONNECTIONS.
            Error::TabletBusy { .. } => MysqlError::new(1203, "42000", self.to_string()),
            // vtgate's ABORTED: ER_QUERY_INTERRUPTED.
            Error::MultiDbTransaction(_) => MysqlError::new(1317, "70100", self.to_string()),
            _ => MysqlError::new(ER_UNKNOWN_ERROR, "HY000", self.to_string()),
        }
    }

    /// True when the client connection itself is gone: stop serving it quietly.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, Error::Io(_))
    }

    /// True when the backend connection that produced this error cannot be reused.
    pub fn breaks_backend_conn(&self) -> bool {
        matches!(self, Error::Backend { source, .. } if !matches!(source, mysql_async::Error::Server(_)))
    }
}
