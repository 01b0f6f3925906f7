//! What the statement path counts for the web port, under vtgate's names so
//! that dashboards and alerts written for vtgate read shardgate unchanged:
//! `VtgateApi`, each command's latency by operation, keyspace and tablet
//! type (Prometheus `vtgate_api_bucket`, `_sum`, `_count`), and
//! `VtgateApiErrorCounts`, its errors by the same labels and the error's
//! Vitess code (`vtgate_api_error_counts`).
//!
//! Recording must cost next to nothing beside a statement that costs a few
//! microseconds: a session looks up its target's [`TargetTimings`] once
//! per target and keeps it; a record is then two relaxed atomic adds, on
//! one of [`SLOTS`] cache-line-sized copies picked per thread, so event
//! loops on different cores do not pass one line back and forth. The copies
//! are summed only when a page is read. Errors are rare: they go through a
//! mutex.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::sql::TabletType;

/// What a client asked for, as vtgate names its API calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// A statement run: COM_QUERY or COM_STMT_EXECUTE.
    Execute,
    /// COM_STMT_PREPARE.
    Prepare,
}

impl Operation {
    const ALL: [Operation; 2] = [Operation::Execute, Operation::Prepare];

    fn as_str(self) -> &'static str {
        match self {
            Operation::Execute => "Execute",
            Operation::Prepare => "Prepare",
        }
    }
}

/// Upper bounds of the latency buckets, in nanoseconds: vtgate's, so that
/// quantiles computed from either agree.
const CUTOFFS: [u64; 10] = [
    500_000,
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// How many copies of each histogram the threads spread over.
pub const SLOTS: usize = 4;

thread_local! {
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
}
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// One thread group's copy of one operation's histogram: per-bucket counts
/// (not cumulative; the last is beyond every cutoff) and the time summed.
/// Aligned so that two copies never share a cache line.
#[repr(align(128))]
#[derive(Default)]
struct Slot {
    buckets: [AtomicU64; CUTOFFS.len() + 1],
    nanos: AtomicU64,
}

/// The latency histograms of one target (keyspace and tablet type), one per
/// operation; what a session keeps while its target stays.
#[derive(Default)]
pub struct TargetTimings {
    slots: [[Slot; SLOTS]; Operation::ALL.len()],
}

impl TargetTimings {
    /// Counts one command of `op` that took `took`.
    #[inline]
    pub fn record(&self, op: Operation, took: Duration) {
        let nanos = took.as_nanos().min(u64::MAX as u128) as u64;
        let bucket = CUTOFFS.partition_point(|&c| c < nanos);
        let slot = &self.slots[op as usize][SLOT.with(|s| *s)];
        slot.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        slot.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// `op`'s cumulative bucket counts (the last is the total) and the
    /// time summed, over every copy.
    fn read(&self, op: Operation) -> ([u64; CUTOFFS.len() + 1], u64) {
        let mut counts = [0u64; CUTOFFS.len() + 1];
        let mut nanos = 0u64;
        for slot in &self.slots[op as usize] {
            for (c, b) in counts.iter_mut().zip(&slot.buckets) {
                *c += b.load(Ordering::Relaxed);
            }
            nanos = nanos.wrapping_add(slot.nanos.load(Ordering::Relaxed));
        }
        for i in 1..counts.len() {
            counts[i] += counts[i - 1];
        }
        (counts, nanos)
    }
}

/// A target as the labels name it: the keyspace ("" for none) and the
/// tablet type.
type TargetKey = (String, &'static str);

/// The process's `VtgateApi` and `VtgateApiErrorCounts`.
#[derive(Default)]
pub struct Api {
    timings: RwLock<BTreeMap<TargetKey, Arc<TargetTimings>>>,
    errors: Mutex<BTreeMap<(Operation, TargetKey, &'static str), u64>>,
}

impl Api {
    /// The histograms of statements on `keyspace` (None: no keyspace
    /// selected) at `tablet_type`, made on first use. A session calls this
    /// when its target changes, not per statement.
    pub fn timings(&self, keyspace: Option<&str>, tablet_type: TabletType) -> Arc<TargetTimings> {
        let key = (
            keyspace.unwrap_or_default().to_string(),
            tablet_type.as_str(),
        );
        if let Some(t) = read_lock(&self.timings).get(&key) {
            return t.clone();
        }
        let mut all = self.timings.write().unwrap_or_else(|e| e.into_inner());
        all.entry(key).or_default().clone()
    }

    /// Counts an error of `op` on `keyspace` at `tablet_type`, under the
    /// Vitess code of the error the client got.
    pub fn error(
        &self,
        op: Operation,
        keyspace: Option<&str>,
        tablet_type: TabletType,
        code: &'static str,
    ) {
        let key = (
            keyspace.unwrap_or_default().to_string(),
            tablet_type.as_str(),
        );
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *errors.entry((op, key, code)).or_default() += 1;
    }

    /// Every (operation, target) that counted a command, with its
    /// cumulative buckets (the last is the count) and summed time.
    pub fn series(&self) -> Vec<Series> {
        let mut out = Vec::new();
        for ((ks, db), t) in read_lock(&self.timings).iter() {
            for op in Operation::ALL {
                let (counts, nanos) = t.read(op);
                if counts[CUTOFFS.len()] > 0 {
                    out.push(Series {
                        operation: op.as_str(),
                        keyspace: ks.clone(),
                        db_type: db,
                        counts,
                        nanos,
                    });
                }
            }
        }
        out
    }

    /// Every error count.
    pub fn errors(&self) -> Vec<ErrorCount> {
        let errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        errors
            .iter()
            .map(|((op, (ks, db), code), n)| ErrorCount {
                operation: op.as_str(),
                keyspace: ks.clone(),
                db_type: db,
                code,
                count: *n,
            })
            .collect()
    }

    /// The Prometheus text form of both, as vtgate's exporter writes them.
    pub fn prometheus(&self, out: &mut String) {
        out.push_str("# HELP vtgate_api VtgateApi timings\n# TYPE vtgate_api histogram\n");
        for s in self.series() {
            let labels = format!(
                "db_type=\"{}\",keyspace=\"{}\",operation=\"{}\"",
                s.db_type,
                escape(&s.keyspace),
                s.operation
            );
            for (cut, n) in CUTOFFS.iter().zip(s.counts) {
                let le = *cut as f64 / 1e9;
                let _ = writeln!(out, "vtgate_api_bucket{{{labels},le=\"{le}\"}} {n}");
            }
            let total = s.count();
            let _ = writeln!(out, "vtgate_api_bucket{{{labels},le=\"+Inf\"}} {total}");
            let _ = writeln!(out, "vtgate_api_sum{{{labels}}} {}", s.nanos as f64 / 1e9);
            let _ = writeln!(out, "vtgate_api_count{{{labels}}} {total}");
        }
        out.push_str(
            "# HELP vtgate_api_error_counts Vtgate API error counts per error type\n# TYPE vtgate_api_error_counts counter\n",
        );
        for e in self.errors() {
            let _ = writeln!(
                out,
                "vtgate_api_error_counts{{code=\"{}\",db_type=\"{}\",keyspace=\"{}\",operation=\"{}\"}} {}",
                e.code,
                e.db_type,
                escape(&e.keyspace),
                e.operation,
                e.count
            );
        }
    }

    /// Both as vtgate's `/debug/vars` shows them: `VtgateApi` with
    /// cumulative histograms keyed `Operation.Keyspace.DbType` (bucket
    /// bounds in nanoseconds, then `inf`, `Count` and `Time`), and
    /// `VtgateApiErrorCounts` keyed `Operation.Keyspace.DbType.Code`.
    pub fn vars(&self) -> (serde_json::Value, serde_json::Value) {
        let mut histograms = serde_json::Map::new();
        let (mut total, mut time) = (0u64, 0u64);
        for s in self.series() {
            let n = s.count();
            total += n;
            time = time.wrapping_add(s.nanos);
            let mut h = serde_json::Map::new();
            for (cut, c) in CUTOFFS.iter().zip(s.counts) {
                h.insert(cut.to_string(), c.into());
            }
            h.insert("inf".into(), n.into());
            h.insert("Count".into(), n.into());
            h.insert("Time".into(), s.nanos.into());
            let key = format!("{}.{}.{}", s.operation, s.keyspace, s.db_type);
            histograms.insert(key, h.into());
        }
        let api = serde_json::json!({
            "TotalCount": total,
            "TotalTime": time,
            "Histograms": histograms,
        });
        let errors: serde_json::Map<String, serde_json::Value> = self
            .errors()
            .into_iter()
            .map(|e| {
                let key = format!("{}.{}.{}.{}", e.operation, e.keyspace, e.db_type, e.code);
                (key, e.count.into())
            })
            .collect();
        (api, errors.into())
    }
}

/// How many commands of one operation on one target failed with one code.
pub struct ErrorCount {
    /// `Execute` or `Prepare`.
    pub operation: &'static str,
    /// The keyspace ("" for none).
    pub keyspace: String,
    /// The tablet type.
    pub db_type: &'static str,
    /// The Vitess code of the errors.
    pub code: &'static str,
    /// How many.
    pub count: u64,
}

/// One operation on one target, as read for a page.
pub struct Series {
    /// `Execute` or `Prepare`.
    pub operation: &'static str,
    /// The keyspace ("" for none).
    pub keyspace: String,
    /// The tablet type.
    pub db_type: &'static str,
    /// Cumulative bucket counts; the last is beyond every bound.
    counts: [u64; CUTOFFS.len() + 1],
    /// Time summed over the commands, in nanoseconds.
    pub nanos: u64,
}

impl Series {
    /// How many commands.
    pub fn count(&self) -> u64 {
        self.counts[CUTOFFS.len()]
    }
}

/// A session's hold on its target's histograms, looked up again only when
/// the target changes: [`Self::aim`] before a command, [`Self::record`]
/// after it (a command that changes the target counts under the old one,
/// as in vtgate).
#[derive(Default)]
pub struct Recorder {
    held: Option<(Option<String>, TabletType, Arc<TargetTimings>)>,
}

impl Recorder {
    /// Points the recorder at the target a command starts on.
    #[inline]
    pub fn aim(&mut self, api: &Api, keyspace: Option<&str>, tablet_type: TabletType) {
        match &self.held {
            Some((ks, tt, _)) if ks.as_deref() == keyspace && *tt == tablet_type => {}
            _ => {
                let t = api.timings(keyspace, tablet_type);
                self.held = Some((keyspace.map(str::to_string), tablet_type, t));
            }
        }
    }

    /// Counts a command of `op` that took `took` on the target aimed at,
    /// and its error, if the client got one (its Vitess code).
    #[inline]
    pub fn record(&self, api: &Api, op: Operation, took: Duration, err: Option<&'static str>) {
        let Some((ks, tt, t)) = &self.held else {
            return;
        };
        t.record(op, took);
        if let Some(code) = err {
            api.error(op, ks.as_deref(), *tt, code);
        }
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// A label value as the text format wants it: backslash, quote and newline
/// escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_land_in_their_bucket_and_read_back_cumulative() {
        let api = Api::default();
        let t = api.timings(Some("ks"), TabletType::Replica);
        t.record(Operation::Execute, Duration::from_micros(100));
        t.record(Operation::Execute, Duration::from_micros(500));
        t.record(Operation::Execute, Duration::from_millis(3));
        t.record(Operation::Execute, Duration::from_secs(60));
        t.record(Operation::Prepare, Duration::from_micros(1));
        // The same target shares one set of histograms.
        assert!(Arc::ptr_eq(
            &t,
            &api.timings(Some("ks"), TabletType::Replica)
        ));
        let (counts, nanos) = t.read(Operation::Execute);
        // 100 µs and exactly 500 µs are both within the first bound.
        assert_eq!(counts, [2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4]);
        assert_eq!(nanos, 100_000 + 500_000 + 3_000_000 + 60_000_000_000);
        assert_eq!(t.read(Operation::Prepare).0[CUTOFFS.len()], 1);
    }

    #[test]
    fn every_thread_slot_is_summed() {
        let api = Arc::new(Api::default());
        let threads: Vec<_> = (0..2 * SLOTS)
            .map(|_| {
                let api = api.clone();
                std::thread::spawn(move || {
                    let t = api.timings(None, TabletType::Primary);
                    for _ in 0..100 {
                        t.record(Operation::Execute, Duration::from_millis(2));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = api.timings(None, TabletType::Primary);
        assert_eq!(
            t.read(Operation::Execute).0[CUTOFFS.len()],
            200 * SLOTS as u64
        );
    }

    #[test]
    fn the_text_form_carries_vtgates_names_and_labels() {
        let api = Api::default();
        let t = api.timings(Some("commerce"), TabletType::Primary);
        t.record(Operation::Execute, Duration::from_millis(7));
        api.error(
            Operation::Execute,
            Some("commerce"),
            TabletType::Primary,
            crate::error::vitess_code(1062),
        );
        api.error(
            Operation::Execute,
            Some("commerce"),
            TabletType::Primary,
            crate::error::vitess_code(1062),
        );
        let mut out = String::new();
        api.prometheus(&mut out);
        let labels = "db_type=\"primary\",keyspace=\"commerce\",operation=\"Execute\"";
        for line in [
            format!("vtgate_api_bucket{{{labels},le=\"0.005\"}} 0"),
            format!("vtgate_api_bucket{{{labels},le=\"0.01\"}} 1"),
            format!("vtgate_api_bucket{{{labels},le=\"+Inf\"}} 1"),
            format!("vtgate_api_sum{{{labels}}} 0.007"),
            format!("vtgate_api_count{{{labels}}} 1"),
            format!("vtgate_api_error_counts{{code=\"ALREADY_EXISTS\",{labels}}} 2"),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
        // An operation with nothing recorded has no series.
        assert!(!out.contains("Prepare"), "{out}");
        let (vars, errors) = api.vars();
        assert_eq!(
            vars["Histograms"]["Execute.commerce.primary"]["10000000"],
            1
        );
        assert_eq!(vars["TotalCount"], 1);
        assert_eq!(errors["Execute.commerce.primary.ALREADY_EXISTS"], 2);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
