//! The processes of a run: finding the `authd` binary and letting it validate a config
//! (`authd check`), the daemon under test (`authd serve`) and the bare hyper server (this
//! executable with `--serve-bare`) as child processes, a temporary folder and a free loopback
//! port. Every child is killed when its handle is dropped, so an early return or a panic leaves
//! nothing running; nothing here measures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

use crate::http::BareServer;

/// The daemon binary to load: `given` (`--authd`), or `authd` next to `own_exe` (the same target
/// folder, where `cargo build --release` puts both).
///
/// # Errors
/// When that file does not exist, saying how to build it.
pub(crate) fn locate_authd(given: Option<&Path>, own_exe: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        anyhow::ensure!(
            path.is_file(),
            "--authd {}: no such file (build the daemon with `cargo build --release --bin authd`)",
            path.display()
        );
        return Ok(path.to_path_buf());
    }
    let name = format!("authd{}", std::env::consts::EXE_SUFFIX);
    let path = own_exe
        .parent()
        .map_or_else(|| PathBuf::from(&name), |dir| dir.join(&name));
    anyhow::ensure!(
        path.is_file(),
        "no authd executable next to this one ({} is missing): build it with \
         `cargo build --release --bin authd`, or give its path with --authd PATH",
        path.display()
    );
    Ok(path)
}

/// Runs `authd check --config path`, so that a config is validated by the very binary that
/// will serve it.
///
/// # Errors
/// When the daemon refuses the file (its problems are in the message) or cannot run.
pub(crate) fn check_config(authd: &Path, path: &Path) -> anyhow::Result<()> {
    let out = Command::new(authd)
        .arg("check")
        .arg("--config")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} check", authd.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} check refused {}:\n{}{}",
        authd.display(),
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A temporary folder, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("authd-bench-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound and released: another process could take it in between, in
/// which case the daemon fails to start and says so).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// The daemon under test, killed when dropped.
pub(crate) struct DaemonChild {
    child: Child,
    log: PathBuf,
}

impl DaemonChild {
    /// `authd serve --config config`, logging warnings and errors to `log`.
    pub(crate) fn spawn(authd: &Path, config: &Path, log: &Path) -> anyhow::Result<DaemonChild> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(authd)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", authd.display()))?;
        Ok(DaemonChild {
            child,
            log: log.to_path_buf(),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of the daemon's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for DaemonChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bare hyper server, run as a child process like the daemon: this executable with
/// `--serve-bare`. Killed when dropped; it also stops by itself when its standard input closes.
pub(crate) struct BareChild {
    child: Child,
    pub(crate) port: u16,
}

impl BareChild {
    pub(crate) fn spawn() -> anyhow::Result<BareChild> {
        use std::io::BufRead as _;
        let exe = std::env::current_exe().context("cannot find the authd-bench executable")?;
        let mut child = Command::new(&exe)
            .arg("--serve-bare")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            // The port is the first line it prints, as soon as it listens.
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        match line.trim().parse() {
            Ok(port) => Ok(BareChild { child, port }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("the bare server did not start (it said {line:?})")
            }
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for BareChild {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `authd-bench --serve-bare`: the bare server alone, on as many runtime workers as the
/// daemon's (one per core), until standard input closes.
pub(crate) fn serve_bare() -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let server = BareServer::start(crate::system::cores())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", server.addr.port())?;
    out.flush()?;
    drop(out);
    let mut sink = [0u8; 64];
    while std::io::stdin().read(&mut sink).is_ok_and(|n| n > 0) {}
    drop(server);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn authd_is_looked_for_next_to_this_executable() {
        let dir = TempDir::new().unwrap();
        let own = dir.0.join("authd-bench");
        let err = locate_authd(None, &own).unwrap_err().to_string();
        assert!(
            err.contains("cargo build --release --bin authd") && err.contains("--authd"),
            "{err}"
        );
        let authd = dir.0.join(format!("authd{}", std::env::consts::EXE_SUFFIX));
        std::fs::write(&authd, "").unwrap();
        assert_eq!(locate_authd(None, &own).unwrap(), authd);

        let elsewhere = dir.0.join("elsewhere");
        let err = locate_authd(Some(&elsewhere), &own)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--authd") && err.contains("elsewhere"),
            "{err}"
        );
        assert_eq!(locate_authd(Some(&authd), &own).unwrap(), authd);
    }
}
