//! Reads the config file with bounds, so that a reload cannot exhaust memory or hang.
//!
//! A 100 MB file cost 5 GB of memory to parse, `/dev/zero` at the config path was read until
//! memory ran out, and a FIFO there blocked the reload loop forever. [`read`] therefore opens
//! the path (following symlinks: Kubernetes mounts ConfigMaps as symlinks to regular files)
//! without waiting (`O_NONBLOCK`, so opening a FIFO does not wait for a writer), checks with
//! `fstat` on the opened file that it is a regular file, refuses one larger than
//! [`MAX_CONFIG_BYTES`], reads at most one byte more than that (the file may grow after the
//! check), and requires UTF-8. [`read_async`] runs [`read`] on tokio's blocking pool and
//! gives up after a timeout, so that a read stuck in the kernel (a hung network file
//! system) leaves the reload loop free.
//!
//! This module must not parse or validate the text, and must not know the daemon's types:
//! it takes a [`Path`] and returns a [`String`].

use std::fs::{File, FileType};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest config file that is read: 1 MiB. The example config is a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Why the config file could not be read. Each message names the path and what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("cannot open config file {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("config file {} is {kind}, not a regular file", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "config file {} is larger than {limit} bytes, the limit on config file size",
        path.display()
    )]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("cannot read config file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "config file {} is not valid UTF-8 (the first invalid byte is at offset {offset})",
        path.display()
    )]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error(
        "reading config file {} did not finish within {}; the read was abandoned",
        path.display(),
        humantime::format_duration(*timeout)
    )]
    TimedOut { path: PathBuf, timeout: Duration },
    #[error("reading config file {} failed: the reading task {reason}", path.display())]
    Task { path: PathBuf, reason: &'static str },
}

/// Reads the config file at `path`, blocking.
///
/// # Errors
///
/// [`ReadError::Open`] when the path cannot be opened (missing, no permission),
/// [`ReadError::NotRegular`] for a FIFO, device, directory or socket,
/// [`ReadError::TooLarge`] past [`MAX_CONFIG_BYTES`], [`ReadError::Read`] when reading
/// fails, and [`ReadError::NotUtf8`].
pub fn read(path: &Path) -> Result<String, ReadError> {
    let file = open(path)?;
    let metadata = file.metadata().map_err(|source| ReadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !metadata.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: describe(metadata.file_type()),
        });
    }
    let too_large = || ReadError::TooLarge {
        path: path.to_path_buf(),
        limit: MAX_CONFIG_BYTES,
    };
    if metadata.len() > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Reads the config file at `path` on tokio's blocking pool, giving up after `timeout`.
///
/// The caller is never blocked: if the read is stuck, this returns
/// [`ReadError::TimedOut`] and the blocking thread is left to finish on its own (it holds
/// one thread of the blocking pool until then). A runtime that is dropped waits for such a
/// thread; shut it down with `Runtime::shutdown_timeout` where that matters.
///
/// # Errors
///
/// As [`read`], plus [`ReadError::TimedOut`], and [`ReadError::Task`] if the reading task
/// panicked or was cancelled.
pub async fn read_async(path: &Path, timeout: Duration) -> Result<String, ReadError> {
    let owned = path.to_path_buf();
    run_blocking(path, timeout, move || read(&owned)).await
}

async fn run_blocking<F>(path: &Path, timeout: Duration, job: F) -> Result<String, ReadError>
where
    F: FnOnce() -> Result<String, ReadError> + Send + 'static,
{
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(job)).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(ReadError::Task {
            path: path.to_path_buf(),
            reason: if join.is_panic() {
                "panicked"
            } else {
                "was cancelled"
            },
        }),
        Err(_) => Err(ReadError::TimedOut {
            path: path.to_path_buf(),
            timeout,
        }),
    }
}

#[cfg(unix)]
fn open(path: &Path) -> Result<File, ReadError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| {
            // Opening a Unix socket fails (ENXIO); say what the path is rather than that.
            match std::fs::metadata(path) {
                Ok(meta) if meta.file_type().is_socket() => ReadError::NotRegular {
                    path: path.to_path_buf(),
                    kind: "a socket",
                },
                _ => ReadError::Open {
                    path: path.to_path_buf(),
                    source,
                },
            }
        })
}

#[cfg(not(unix))]
fn open(path: &Path) -> Result<File, ReadError> {
    File::open(path).map_err(|source| ReadError::Open {
        path: path.to_path_buf(),
        source,
    })
}

fn describe(kind: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "something else"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;

    /// A blocking read must come back this fast; generous for a loaded CI machine.
    const PROMPT: Duration = Duration::from_secs(5);

    /// Runs the blocking `read` on its own thread and fails the test if it does not return
    /// within `PROMPT` (a regression would otherwise hang the test run).
    fn read_promptly(path: &Path) -> Result<String, ReadError> {
        let (tx, rx) = mpsc::channel();
        let owned = path.to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(read(&owned));
        });
        rx.recv_timeout(PROMPT)
            .expect("the blocking read did not return promptly")
    }

    async fn read_async_promptly(path: &Path) -> Result<String, ReadError> {
        let started = Instant::now();
        let result = read_async(path, PROMPT * 2).await;
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
        result
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[tokio::test]
    async fn a_regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "authd.toml",
            b"[server]\nlisten = \"127.0.0.1:0\"\n",
        );
        assert_eq!(read(&path).unwrap(), "[server]\nlisten = \"127.0.0.1:0\"\n");
        assert_eq!(
            read_async_promptly(&path).await.unwrap(),
            "[server]\nlisten = \"127.0.0.1:0\"\n"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlink_to_a_regular_file_is_read() {
        // How Kubernetes mounts a ConfigMap: authd.toml -> ..data/authd.toml.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        write(&dir.path().join("..data"), "authd.toml", b"x = 1\n");
        let link = dir.path().join("authd.toml");
        std::os::unix::fs::symlink("..data/authd.toml", &link).unwrap();
        assert_eq!(read(&link).unwrap(), "x = 1\n");
        assert_eq!(read_async_promptly(&link).await.unwrap(), "x = 1\n");
    }

    #[tokio::test]
    async fn files_over_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = write(dir.path(), "big.toml", &vec![b'#'; 2 * 1024 * 1024]);
        let error = read(&big).unwrap_err();
        assert!(matches!(error, ReadError::TooLarge { limit, .. } if limit == MAX_CONFIG_BYTES));
        let message = error.to_string();
        assert!(message.contains("big.toml"), "{message}");
        assert!(message.contains("1048576 bytes"), "{message}");
        assert!(message.contains("limit"), "{message}");
        assert!(matches!(
            read_async_promptly(&big).await,
            Err(ReadError::TooLarge { .. })
        ));
        // Exactly at the limit is fine; one byte more is not.
        let limit = usize::try_from(MAX_CONFIG_BYTES).unwrap();
        let at = write(dir.path(), "at.toml", &vec![b'#'; limit]);
        assert_eq!(read(&at).unwrap().len(), limit);
        let over = write(dir.path(), "over.toml", &vec![b'#'; limit + 1]);
        assert!(matches!(read(&over), Err(ReadError::TooLarge { .. })));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn dev_zero_is_refused_without_reading_it() {
        let zero = Path::new("/dev/zero");
        let error = read_promptly(zero).unwrap_err();
        assert!(
            matches!(
                error,
                ReadError::NotRegular {
                    kind: "a character device",
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("/dev/zero"));
        assert!(matches!(
            read_async_promptly(zero).await,
            Err(ReadError::NotRegular { .. })
        ));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("authd.toml");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c_path` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let error = read_promptly(&fifo).unwrap_err();
        assert!(
            matches!(
                error,
                ReadError::NotRegular {
                    kind: "a FIFO (named pipe)",
                    ..
                }
            ),
            "{error}"
        );
        assert!(matches!(
            read_async_promptly(&fifo).await,
            Err(ReadError::NotRegular {
                kind: "a FIFO (named pipe)",
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_promptly(dir.path()).unwrap_err();
        assert!(
            matches!(
                error,
                ReadError::NotRegular {
                    kind: "a directory",
                    ..
                }
            ),
            "{error}"
        );
        assert!(matches!(
            read_async_promptly(dir.path()).await,
            Err(ReadError::NotRegular {
                kind: "a directory",
                ..
            })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authd.toml");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let error = read_promptly(&path).unwrap_err();
        assert!(
            matches!(
                error,
                ReadError::NotRegular {
                    kind: "a socket",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_missing_file_is_an_open_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.toml");
        let error = read(&path).unwrap_err();
        assert!(
            matches!(&error, ReadError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(error.to_string().contains("missing.toml"), "{error}");
        assert!(matches!(
            read_async_promptly(&path).await,
            Err(ReadError::Open { .. })
        ));
    }

    #[tokio::test]
    async fn invalid_utf8_is_refused_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "latin1.toml", b"name = \"caf\xe9\"\n");
        let error = read(&path).unwrap_err();
        assert!(
            matches!(error, ReadError::NotUtf8 { offset: 11, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("latin1.toml"));
        assert!(matches!(
            read_async_promptly(&path).await,
            Err(ReadError::NotUtf8 { .. })
        ));
    }

    #[tokio::test]
    async fn a_stuck_read_times_out_without_blocking_the_caller() {
        let (release, stuck) = mpsc::channel::<()>();
        let started = Instant::now();
        let result = run_blocking(
            Path::new("/stuck/authd.toml"),
            Duration::from_millis(100),
            move || {
                // Stands in for a read stuck in the kernel (a hung NFS mount).
                let _ = stuck.recv();
                Ok(String::new())
            },
        )
        .await;
        assert!(started.elapsed() < PROMPT);
        let error = result.unwrap_err();
        assert!(matches!(error, ReadError::TimedOut { .. }), "{error}");
        assert!(error.to_string().contains("/stuck/authd.toml"), "{error}");
        assert!(error.to_string().contains("100ms"), "{error}");
        // Let the blocking thread finish so that the runtime can shut down.
        release.send(()).unwrap();
    }

    #[tokio::test]
    async fn a_panicking_read_is_a_task_error() {
        let result = run_blocking(Path::new("/x"), PROMPT, || panic!("boom")).await;
        assert!(matches!(
            result,
            Err(ReadError::Task {
                reason: "panicked",
                ..
            })
        ));
    }
}
