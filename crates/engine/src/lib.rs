//! Instances: one database server process per branch.
//!
//! - [`flavour`]: find the server binaries and tell MariaDB from MySQL 8.
//! - [`config`]: the per-instance option file and start-up SQL (pure text generation).
//! - [`template`]: a pre-initialised datadir, copied to make a new instance fast.
//! - [`supervisor`]: start, watch, restart after a crash, stop cleanly.
//! - [`admin`]: the control plane's queries against an instance (schema read and copy).
//! - [`backup`]: physical backups, their restore, and consistent snapshots for data branches.

pub mod admin;
pub mod backup;
pub mod config;
pub mod flavour;
pub mod fsutil;
pub mod supervisor;
pub mod template;

pub use admin::SchemaObject;
pub use flavour::{Flavour, ServerBinaries};
pub use mysql_async;
pub use supervisor::{Instance, InstanceState, InstanceStatus, PasswordUser};

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("no database server found: install mariadb-server (Debian) or MySQL 8, or set STRATA_MYSQLD to the server binary")]
    NoServer,
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {output}")]
    Command {
        program: String,
        status: String,
        output: String,
    },
    #[error("file system error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("instance did not become ready within {secs} s: {detail}")]
    NotReady { secs: u64, detail: String },
    #[error("instance is not running")]
    NotRunning,
    #[error("instance query failed: {0}")]
    Query(#[from] mysql_async::Error),
    #[error("schema copy failed at {object}: {source}")]
    SchemaCopy {
        object: String,
        source: mysql_async::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Makes a child process get `signal` when strata dies (PR_SET_PDEATHSIG), so none outlives it.
pub(crate) fn die_with_parent(cmd: &mut tokio::process::Command, signal: nix::sys::signal::Signal) {
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(signal).map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EngineError {
    let path = path.into();
    move |source| EngineError::Io { path, source }
}
