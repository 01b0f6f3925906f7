//! Busy polling of an event loop for a short while after its last client
//! command (`--busy-poll-us`).
//!
//! On a machine whose cores are shared with the tablets and the clients,
//! a proxy's event loop that blocks in `epoll_wait` between a statement
//! and its reply is woken onto whichever core is idle, and a virtual
//! core takes tens of microseconds to leave its idle state: while the
//! loop waits to run, every client waits for it and the machine stands
//! partly idle. Polling the loop's sockets without blocking for a short
//! while after a command keeps the loop on its core until the reply
//! comes back and the client's next command arrives. A loop with no
//! command for that long blocks as before, so an idle proxy costs
//! nothing.
//!
//! Polling is worth it only with a core to spare: a loop whose thread
//! lately waited runnable for a core (the kernel's per-thread schedstat)
//! blocks at once, so on a machine whose cores are all busy the tablets
//! and the clients keep their CPU. A process whose CPU time a cgroup
//! quota caps (a container's CPU limit) does not poll unless told to:
//! the quota would be spent polling, which no wait time shows.
//!
//! The runtime blocks only when its `on_thread_park` hook leaves no work
//! scheduled; `park_hook` wakes the loop's `spinner` task while the
//! last command is recent, which makes the runtime poll its sockets with
//! a zero timeout instead.

use std::cell::Cell;
use std::future::Future;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// Client commands read on this thread's event loop.
    static COMMANDS: Cell<u64> = const { Cell::new(0) };
    /// The spinner task of this thread's loop, while it waits.
    static SPINNER: Cell<Option<Waker>> = const { Cell::new(None) };
    /// Commands counted at the last park, and when that count changed.
    static SEEN: Cell<(u64, Option<Instant>)> = const { Cell::new((0, None)) };
    /// Whether the loop's thread got a core whenever it wanted one lately.
    static CONTENTION: std::cell::RefCell<Contention> = std::cell::RefCell::new(Contention::new());
}

/// How often the loop's wait for a core is looked at.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// A loop that waited for a core more than this share of the last
/// check's interval stops polling: the cores are taken, and polling
/// would take one from the tablets or the clients.
const MAX_WAIT_SHARE: f64 = 0.02;

/// The loop thread's scheduler statistics (`/proc/thread-self/schedstat`:
/// time run, time waited runnable for a core), sampled every
/// [`CHECK_EVERY`].
struct Contention {
    file: Option<std::fs::File>,
    at: Option<Instant>,
    waited_ns: u64,
    allowed: bool,
}

impl Contention {
    fn new() -> Contention {
        Contention {
            file: std::fs::File::open("/proc/thread-self/schedstat").ok(),
            at: None,
            waited_ns: 0,
            allowed: false,
        }
    }

    /// Whether polling is allowed, looking again once per [`CHECK_EVERY`].
    fn allowed(&mut self, now: Instant) -> bool {
        if self
            .at
            .is_some_and(|at| now.duration_since(at) < CHECK_EVERY)
        {
            return self.allowed;
        }
        let waited = self.file.as_ref().and_then(read_waited_ns);
        self.update(now, waited)
    }

    /// Takes a new sample of the thread's total wait for a core (None:
    /// unknown, which forbids polling); the first sample only sets the
    /// baseline.
    fn update(&mut self, now: Instant, waited_ns: Option<u64>) -> bool {
        let Some(waited) = waited_ns else {
            self.allowed = false;
            return false;
        };
        if let Some(at) = self.at {
            let wall = now.duration_since(at).as_nanos() as f64;
            let share = waited.saturating_sub(self.waited_ns) as f64 / wall;
            self.allowed = share <= MAX_WAIT_SHARE;
        }
        self.at = Some(now);
        self.waited_ns = waited;
        self.allowed
    }
}

/// The second field of a schedstat file: nanoseconds spent runnable,
/// waiting for a core.
fn read_waited_ns(f: &std::fs::File) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 96];
    let n = f.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The window when `--busy-poll-us` is not given and no CPU quota caps
/// the process: covers a tablet's reply and a client's next command on a
/// local network.
pub const DEFAULT_WINDOW: Duration = Duration::from_micros(200);

/// Whether a cgroup CPU quota caps this process (cgroup v2 `cpu.max`,
/// v1 `cpu.cfs_quota_us`, in its own cgroup or an ancestor). Polling spends
/// quota the scheduler's wait times do not show: a capped process would be
/// throttled for CPU it spent polling, so it does not poll by default.
pub fn cpu_quota_limited() -> bool {
    let Ok(cgroups) = std::fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    quota_in(&cgroups, |p| std::fs::read_to_string(p).ok())
}

/// [`cpu_quota_limited`] over `/proc/self/cgroup`'s text, reading the
/// cgroup files through `read`.
fn quota_in(cgroups: &str, read: impl Fn(&std::path::Path) -> Option<String>) -> bool {
    use std::path::Path;
    cgroups.lines().any(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(c), Some(p)) => (h, c, p),
            _ => return false,
        };
        // (mount root, quota file): cgroup v2 when no controller is named.
        let places: Vec<(String, &str)> = if controllers.is_empty() {
            vec![("/sys/fs/cgroup".into(), "cpu.max")]
        } else if controllers.split(',').any(|c| c == "cpu") {
            vec![
                ("/sys/fs/cgroup/cpu".into(), "cpu.cfs_quota_us"),
                (format!("/sys/fs/cgroup/{controllers}"), "cpu.cfs_quota_us"),
            ]
        } else {
            return false;
        };
        // v2: "max" or a quota in µs; v1: -1 or a quota in µs.
        let limits = |t: &str| {
            t.split_whitespace()
                .next()
                .is_some_and(|q| q.parse::<i64>().is_ok_and(|q| q > 0))
        };
        places.iter().any(|(root, file)| {
            let mut dir = Some(Path::new(path.trim_start_matches('/')));
            while let Some(d) = dir {
                if read(&Path::new(root).join(d).join(file)).is_some_and(|t| limits(&t)) {
                    return true;
                }
                dir = d.parent();
            }
            false
        })
    })
}

/// Counts a client command on the current event loop: called once per
/// command, so one thread-local increment.
#[inline]
pub fn note_command() {
    COMMANDS.with(|c| c.set(c.get().wrapping_add(1)));
}

/// Builds an event loop's runtime from `b`; with a `window`, the loop
/// polls for that long after each client command (its `park_hook` and
/// `spinner`), counting the polls in `polls` (the server's
/// `EventLoopBusyPolls`, so an operator can see the CPU it spends).
pub fn runtime(
    mut b: tokio::runtime::Builder,
    window: Option<Duration>,
    polls: &std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::io::Result<tokio::runtime::Runtime> {
    if let Some(d) = window {
        b.on_thread_park(park_hook(d, polls.clone()));
    }
    let rt = b.build()?;
    if window.is_some() {
        rt.spawn(spinner());
    }
    Ok(rt)
}

/// The `on_thread_park` hook of an event loop polling for `window` after
/// its last command: wakes the loop's spinner so the runtime polls its
/// sockets instead of blocking, and counts it in `polls`.
fn park_hook(
    window: Duration,
    polls: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> impl Fn() + Send + Sync + 'static {
    move || {
        let now_count = COMMANDS.with(Cell::get);
        let (seen, since) = SEEN.with(Cell::get);
        let now = Instant::now();
        let since = match since {
            Some(t) if now_count == seen => t,
            _ => {
                SEEN.with(|s| s.set((now_count, Some(now))));
                now
            }
        };
        if now.duration_since(since) < window && CONTENTION.with(|c| c.borrow_mut().allowed(now)) {
            if let Some(w) = SPINNER.with(Cell::take) {
                polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                w.wake();
            }
        }
    }
}

/// The task whose waking keeps a loop polling: one on each event loop
/// that has a [`park_hook`]. It does nothing when run but wait to be
/// woken again.
fn spinner() -> impl Future<Output = ()> {
    std::future::poll_fn(|cx| {
        SPINNER.with(|s| s.set(Some(cx.waker().clone())));
        Poll::<()>::Pending
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polling starts only after a first interval without waiting for a
    /// core, stops after one with waiting, and is decided once per
    /// interval.
    #[test]
    fn polls_only_while_the_thread_gets_a_core_at_once() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut c = Contention {
            file: None,
            at: None,
            waited_ns: 0,
            allowed: false,
        };
        assert!(!c.update(t0, Some(1_000_000)), "no baseline yet");
        // 10 ms with 0.1 ms waited (1 %): allowed.
        assert!(c.update(ms(10), Some(1_100_000)));
        // Inside the interval the last answer stands, whatever was waited.
        assert!(c.allowed(ms(15)));
        // 10 ms with 1 ms waited (10 %): not allowed.
        assert!(!c.update(ms(20), Some(2_100_000)));
        assert!(!c.allowed(ms(25)));
        // Unknown (no schedstat): not allowed.
        assert!(!c.update(ms(30), None));
    }

    /// The hook wakes the spinner within the window after a command and
    /// not after it, until the next command.
    #[test]
    fn polls_for_the_window_after_each_command() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        // Allowed, and not looked at again for an hour.
        CONTENTION.with(|c| {
            *c.borrow_mut() = Contention {
                file: None,
                at: Some(Instant::now() + Duration::from_secs(3600)),
                waited_ns: 0,
                allowed: true,
            }
        });
        let polls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let hook = park_hook(Duration::from_millis(20), polls.clone());
        let park = || {
            SPINNER.with(|s| s.set(Some(waker.clone())));
            hook();
            count.0.load(Ordering::Relaxed)
        };
        note_command();
        assert_eq!(park(), 1, "right after a command");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(park(), 1, "after the window");
        note_command();
        assert_eq!(park(), 2, "after the next command");
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    /// Quotas are found in the process's cgroup or an ancestor, in either
    /// cgroup version; "max" and -1 mean none.
    #[test]
    fn finds_a_cpu_quota_above_the_process() {
        let v2 = "0::/kubepods/pod1/ctr\n";
        let v1 = "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n";
        // (cgroups, the one quota file there is, its text, capped?)
        let cases = [
            (
                v2,
                "/sys/fs/cgroup/kubepods/pod1/cpu.max",
                "50000 100000\n",
                true,
            ),
            (
                v2,
                "/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max",
                "max 100000\n",
                false,
            ),
            (
                v2,
                "/sys/fs/cgroup/elsewhere/cpu.max",
                "50000 100000\n",
                false,
            ),
            (
                v1,
                "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us",
                "150000\n",
                true,
            ),
            (
                v1,
                "/sys/fs/cgroup/cpu/docker/cpu.cfs_quota_us",
                "100000\n",
                true,
            ),
            (
                v1,
                "/sys/fs/cgroup/cpu/docker/abc/cpu.cfs_quota_us",
                "-1\n",
                false,
            ),
        ];
        for (cgroups, file, text, capped) in cases {
            let read = |p: &std::path::Path| (p.to_str() == Some(file)).then(|| text.to_string());
            assert_eq!(quota_in(cgroups, read), capped, "{file}: {text:?}");
        }
    }

    /// The kernel's schedstat of this thread reads as a number: polling
    /// is possible on the machines the tests run on.
    #[test]
    fn reads_this_threads_wait_for_a_core() {
        let f = std::fs::File::open("/proc/thread-self/schedstat").expect("schedstat");
        assert!(read_waited_ns(&f).is_some());
    }
}
