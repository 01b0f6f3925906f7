//! vtgate command lines, taken as they are.
//!
//! A vtgate deployment carries a long command line: its example scripts,
//! the Vitess operator and hand-written units pass glog, gRPC, stats and
//! topology-cache flags alongside the ones that shape serving, in Go's
//! syntax (`-flag value`, `--flag=value`, `--flag=true`, dashes or
//! underscores). shardgate parses its own flags with clap; this pass runs
//! first and turns such a command line into one clap takes: Go's single
//! dash becomes two, and the vtgate flags that have nothing to act on
//! here are taken out, each with the reason it has none, so that the
//! start can say what was ignored. A flag neither side knows still stops
//! the start: a typo must not pass silently.

use std::ffi::OsString;

/// Why a vtgate flag is taken and ignored; one log line per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// glog's flags: shardgate logs to stderr (and `--log_dir`).
    Logging,
    /// vtgate's gRPC API and its tablet gRPC clients: shardgate has none.
    Grpc,
    /// Stats push, tracing and pprof endpoints shardgate does not have.
    Telemetry,
    /// vtgate's config-file loader.
    ConfigFile,
    /// Topology caching and tablet discovery timing: shardgate watches
    /// the topology and health-checks tablets on its own schedule.
    Discovery,
    /// Planner and protocol tuning whose effect shardgate has built in or
    /// does without (one planner, statements always normalized, ...).
    Tuning,
    /// A behaviour shardgate does not have: the flag's effect is missing.
    Unsupported,
}

impl Reason {
    /// The sentence the start logs before the flags of this reason.
    pub fn says(self) -> &'static str {
        match self {
            Reason::Logging => "glog flags (shardgate logs to stderr and --log_dir)",
            Reason::Grpc => "gRPC flags (shardgate has no gRPC API and reaches tablets over MySQL)",
            Reason::Telemetry => "stats push, tracing and pprof flags (shardgate serves /metrics and /debug/vars)",
            Reason::ConfigFile => "config-file flags (shardgate takes its flags on the command line)",
            Reason::Discovery => "topology cache and discovery timing flags (shardgate watches the topology and checks tablets on its own schedule)",
            Reason::Tuning => "tuning flags whose effect is built in or not needed",
            Reason::Unsupported => "flags whose behaviour shardgate does not have",
        }
    }
}

/// Whether a flag takes a value (`--f v` or `--f=v`) or is a switch
/// (`--f` or `--f=true`: Go's booleans never take a separate word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Value,
    Switch,
}

use Reason::*;
use Takes::*;

/// vtgate's flags shardgate takes and ignores, by name with underscores.
const IGNORED: &[(&str, Takes, Reason)] = &[
    ("logtostderr", Switch, Logging),
    ("alsologtostderr", Switch, Logging),
    ("stderrthreshold", Value, Logging),
    ("v", Value, Logging),
    ("vmodule", Value, Logging),
    ("log_backtrace_at", Value, Logging),
    ("log_err_stacks", Switch, Logging),
    ("log_rotate_max_size", Value, Logging),
    ("log_link", Value, Logging),
    ("keep_logs", Value, Logging),
    ("keep_logs_by_mtime", Value, Logging),
    ("purge_logs_interval", Value, Logging),
    ("grpc_port", Value, Grpc),
    ("grpc_bind_address", Value, Grpc),
    ("grpc_max_message_size", Value, Grpc),
    ("grpc_keepalive_time", Value, Grpc),
    ("grpc_keepalive_timeout", Value, Grpc),
    ("grpc_use_effective_callerid", Switch, Grpc),
    ("grpc_use_effective_groups", Switch, Grpc),
    ("grpc_auth_mode", Value, Grpc),
    ("grpc_auth_mtls_allowed_substrings", Value, Grpc),
    ("grpc_auth_static_password_file", Value, Grpc),
    ("grpc_auth_static_client_creds", Value, Grpc),
    ("grpc_cert", Value, Grpc),
    ("grpc_key", Value, Grpc),
    ("grpc_ca", Value, Grpc),
    ("grpc_crl", Value, Grpc),
    ("grpc_server_ca", Value, Grpc),
    ("grpc_compression", Value, Grpc),
    ("grpc_enable_tracing", Switch, Grpc),
    ("grpc_prometheus", Switch, Grpc),
    ("grpc_initial_conn_window_size", Value, Grpc),
    ("grpc_initial_window_size", Value, Grpc),
    ("grpc_server_initial_conn_window_size", Value, Grpc),
    ("grpc_server_initial_window_size", Value, Grpc),
    (
        "grpc_server_keepalive_enforcement_policy_min_time",
        Value,
        Grpc,
    ),
    (
        "grpc_server_keepalive_enforcement_policy_permit_without_stream",
        Switch,
        Grpc,
    ),
    ("grpc_server_keepalive_time", Value, Grpc),
    ("grpc_server_keepalive_timeout", Value, Grpc),
    ("grpc_max_connection_age", Value, Grpc),
    ("grpc_max_connection_age_grace", Value, Grpc),
    ("grpc_dial_concurrency_limit", Value, Grpc),
    ("grpc_send_session_in_streaming", Switch, Grpc),
    ("service_map", Value, Grpc),
    ("tablet_grpc_ca", Value, Grpc),
    ("tablet_grpc_cert", Value, Grpc),
    ("tablet_grpc_key", Value, Grpc),
    ("tablet_grpc_crl", Value, Grpc),
    ("tablet_grpc_server_name", Value, Grpc),
    ("tablet_protocol", Value, Grpc),
    ("tablet_manager_protocol", Value, Grpc),
    ("vtctld_addr", Value, Grpc),
    ("pprof_http", Switch, Telemetry),
    ("pprof", Value, Telemetry),
    ("emit_stats", Switch, Telemetry),
    ("stats_backend", Value, Telemetry),
    ("stats_emit_period", Value, Telemetry),
    ("stats_combine_dimensions", Value, Telemetry),
    ("stats_common_tags", Value, Telemetry),
    ("stats_drop_variables", Value, Telemetry),
    ("statsd_address", Value, Telemetry),
    ("statsd_sample_rate", Value, Telemetry),
    ("tracer", Value, Telemetry),
    ("tracing_enable_logging", Switch, Telemetry),
    ("tracing_sampling_type", Value, Telemetry),
    ("tracing_sampling_rate", Value, Telemetry),
    ("jaeger_agent_host", Value, Telemetry),
    ("datadog_agent_host", Value, Telemetry),
    ("datadog_agent_port", Value, Telemetry),
    ("config_file", Value, ConfigFile),
    ("config_path", Value, ConfigFile),
    ("config_type", Value, ConfigFile),
    ("config_name", Value, ConfigFile),
    ("config_file_not_found_handling", Value, ConfigFile),
    ("config_persistence_min_interval", Value, ConfigFile),
    ("srv_topo_timeout", Value, Discovery),
    ("srv_topo_cache_ttl", Value, Discovery),
    ("srv_topo_cache_refresh", Value, Discovery),
    ("topo_read_concurrency", Value, Discovery),
    ("tablet_refresh_interval", Value, Discovery),
    ("tablet_refresh_known_tablets", Switch, Discovery),
    ("gateway_initial_tablet_timeout", Value, Discovery),
    ("healthcheck_retry_delay", Value, Discovery),
    ("healthcheck_timeout", Value, Discovery),
    ("retry_count", Value, Tuning),
    ("planner_version", Value, Tuning),
    ("normalize_queries", Switch, Tuning),
    ("enable_system_settings", Switch, Tuning),
    ("enable_set_var", Switch, Tuning),
    ("enable_views", Switch, Tuning),
    ("warn_sharded_only", Switch, Tuning),
    ("warn_payload_size", Value, Tuning),
    ("warn_memory_rows", Value, Tuning),
    ("truncate_error_len", Value, Tuning),
    ("mysql_server_flush_delay", Value, Tuning),
    ("mysql_slow_connect_warn_threshold", Value, Tuning),
    ("mysql_allow_clear_text_without_tls", Switch, Tuning),
    ("mysql_clientcert_auth_method", Value, Tuning),
    ("mysql_tcp_version", Value, Tuning),
    ("message_stream_grace_period", Value, Tuning),
    ("buffer_drain_concurrency", Value, Tuning),
    ("buffer_implementation", Value, Tuning),
    ("dbddl_plugin", Value, Tuning),
    ("lock_heartbeat_time", Value, Tuning),
    ("stream_buffer_size", Value, Tuning),
    ("gate_query_cache_memory", Value, Tuning),
    ("gate_query_cache_size", Value, Tuning),
    ("querylog_buffer_size", Value, Tuning),
    ("onclose_timeout", Value, Tuning),
    ("onterm_timeout", Value, Tuning),
    ("catch_sigpipe", Switch, Tuning),
    ("enable_online_ddl", Switch, Unsupported),
    ("enable_partial_keyspace_migration", Switch, Unsupported),
    ("vtgate_config_terse_errors", Switch, Unsupported),
    ("security_policy", Value, Unsupported),
    ("tablet_filter_tags", Value, Unsupported),
    ("legacy_replication_lag_algorithm", Switch, Unsupported),
    ("balancer_enabled", Switch, Unsupported),
    ("balancer_vtgate_cells", Value, Unsupported),
    ("balancer_keyspaces", Value, Unsupported),
];

/// A command line made ready for clap, and what was taken out of it.
#[derive(Debug, Default)]
pub struct Rewritten {
    /// The arguments clap parses.
    pub args: Vec<OsString>,
    /// The flags taken out, as written (without value), by reason.
    pub ignored: Vec<(Reason, String)>,
}

impl Rewritten {
    /// One line per reason: the reason, then its flags.
    pub fn report(&self) -> Vec<String> {
        let mut by: std::collections::BTreeMap<Reason, Vec<&str>> = Default::default();
        for (reason, flag) in &self.ignored {
            by.entry(*reason).or_default().push(flag);
        }
        by.into_iter()
            .map(|(reason, flags)| {
                format!(
                    "vtgate {} taken and ignored: {}",
                    reason.says(),
                    flags.join(" ")
                )
            })
            .collect()
    }
}

/// Rewrites a serving command line (`args[0]` is the program). Other
/// subcommands' lines (`ctl`, `local`, `vschema`) pass through unchanged:
/// theirs are shardgate's own flags.
pub fn rewrite(args: impl IntoIterator<Item = OsString>) -> Rewritten {
    let mut args = args.into_iter();
    let mut out = Rewritten::default();
    out.args.extend(args.next());
    let rest: Vec<OsString> = args.collect();
    let serving = rest
        .first()
        .and_then(|a| a.to_str())
        .is_none_or(|a| a == "serve" || a.starts_with('-'));
    if !serving {
        out.args.extend(rest);
        return out;
    }
    let mut it = rest.into_iter();
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str() else {
            out.args.push(arg);
            continue;
        };
        if text == "--" {
            out.args.push(arg);
            out.args.extend(it.by_ref());
            break;
        }
        // Go's flag package takes `-name` as `--name`; clap's short flags
        // are one letter, so a longer single-dash word is a long flag.
        let long = match text.strip_prefix('-') {
            Some(rest)
                if !rest.starts_with('-') && (long_word(rest) || ignored(rest).is_some()) =>
            {
                format!("-{text}")
            }
            _ => text.to_string(),
        };
        let Some(body) = long.strip_prefix("--") else {
            out.args.push(long.into());
            continue;
        };
        let (name, has_value) = match body.split_once('=') {
            Some((name, _)) => (name, true),
            None => (body, false),
        };
        match ignored(name) {
            Some((takes, reason)) => {
                out.ignored.push((reason, format!("--{name}")));
                if takes == Value && !has_value {
                    it.next();
                }
            }
            None => out.args.push(long.into()),
        }
    }
    out
}

/// What is known of a flag shardgate ignores, by its name as written
/// (dashes or underscores, a value after `=` left out).
fn ignored(name: &str) -> Option<(Takes, Reason)> {
    let key = name.split('=').next().unwrap_or("").replace('-', "_");
    IGNORED
        .iter()
        .find(|(n, ..)| *n == key)
        .map(|&(_, takes, reason)| (takes, reason))
}

/// A word after one dash that Go would read as a flag name (two letters
/// or more, starting with a letter): not a negative number or a short flag.
fn long_word(s: &str) -> bool {
    let name = s.split('=').next().unwrap_or("");
    name.len() > 1 && name.starts_with(|c: char| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> (Vec<String>, Vec<String>) {
        let r = rewrite(line.split_whitespace().map(OsString::from));
        let args = r
            .args
            .iter()
            .map(|a| a.to_str().unwrap().to_string())
            .collect();
        let ignored = r.ignored.iter().map(|(_, f)| f.clone()).collect();
        (args, ignored)
    }

    #[test]
    fn go_syntax_becomes_clap_syntax_and_ignored_flags_go() {
        let (args, ignored) = run(
            "sg -logtostderr --v=2 -grpc_port 15991 --service_map grpc-vtgateservice \
             -cell zone1 --mysql_server_port=15306 --stderrthreshold 0 --no_scatter \
             --grpc-use-effective-callerid=true -tablet_refresh_interval 1m -x -v 1",
        );
        assert_eq!(
            args,
            [
                "sg",
                "--cell",
                "zone1",
                "--mysql_server_port=15306",
                "--no_scatter",
                "-x"
            ]
        );
        assert_eq!(
            ignored,
            [
                "--logtostderr",
                "--v",
                "--grpc_port",
                "--service_map",
                "--stderrthreshold",
                "--grpc-use-effective-callerid",
                "--tablet_refresh_interval",
                "--v"
            ]
        );
    }

    #[test]
    fn other_subcommands_and_values_after_double_dash_pass_through() {
        let (args, ignored) = run("sg ctl --v 2 get-tablets");
        assert_eq!(args, ["sg", "ctl", "--v", "2", "get-tablets"]);
        assert!(ignored.is_empty());
        let (args, _) = run("sg serve --port 1 -- -logtostderr");
        assert_eq!(args, ["sg", "serve", "--port", "1", "--", "-logtostderr"]);
        // A negative number after a flag is a value, not a flag.
        let (args, _) = run("sg --buffer_size -1 -h");
        assert_eq!(args, ["sg", "--buffer_size", "-1", "-h"]);
    }

    #[test]
    fn the_report_groups_flags_by_reason() {
        let r = rewrite(
            "sg --grpc_port 1 --logtostderr --service_map x --tablet_filter_tags a:b"
                .split_whitespace()
                .map(OsString::from),
        );
        let lines = r.report();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("vtgate glog flags") && lines[0].ends_with("--logtostderr"));
        assert!(lines[1].contains("gRPC") && lines[1].ends_with("--grpc_port --service_map"));
        assert!(lines[2].contains("does not have") && lines[2].ends_with("--tablet_filter_tags"));
    }

    #[test]
    fn names_are_unique_and_in_underscore_form() {
        let mut names: Vec<&str> = IGNORED.iter().map(|(n, ..)| *n).collect();
        assert!(names.iter().all(|n| !n.contains('-')));
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
    }
}
