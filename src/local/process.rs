//! Server processes started by the launcher: spawned in their own process
//! group with logs in the data root and a PID file, found again by PID file
//! (checking the command name, so a recycled PID is never signalled), and
//! stopped by PID.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::LocalError;

/// A server process.
#[derive(Debug)]
pub struct Proc {
    /// Its PID.
    pub pid: i32,
    /// Program name, for messages.
    pub name: String,
    child: Option<Child>,
}

impl Proc {
    /// Starts `bin` detached from the terminal's process group, output to `log`.
    pub fn spawn(
        bin: &str,
        args: &[String],
        log: &Path,
        pidfile: &Path,
    ) -> Result<Proc, LocalError> {
        use std::os::unix::process::CommandExt;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| LocalError::Io {
                what: format!("open {}", log.display()),
                source,
            })?;
        let err = out.try_clone().map_err(|source| LocalError::Io {
            what: format!("open {}", log.display()),
            source,
        })?;
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| LocalError::Io {
                what: format!("start {bin}"),
                source,
            })?;
        let pid = child.id() as i32;
        let _ = std::fs::write(pidfile, format!("{pid}\n"));
        Ok(Proc {
            pid,
            name: Path::new(bin)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| bin.to_string()),
            child: Some(child),
        })
    }

    /// The process named in `pidfile`, if it is alive and is `name`.
    pub fn running(pidfile: &Path, name: &str) -> Option<Proc> {
        let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
        if !alive(pid) {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        if !String::from_utf8_lossy(&cmdline).contains(name) {
            return None;
        }
        Some(Proc {
            pid,
            name: name.to_string(),
            child: None,
        })
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if !self.is_alive() {
            return;
        }
        // SAFETY: kill(2) with a PID this launcher started; no memory is touched.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < grace {
            if !self.is_alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.wait();
        }
    }

    /// True while the process runs (a zombie counts as gone).
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => alive(self.pid),
        }
    }
}

/// True when the PID exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
