//! Online deploys.
//!
//! - [`plan`]: what a deployment does, table by table, with its artifacts' names (pure).
//! - [`sql`]: the statements: shadow tables, triggers, chunked copy, verification, RENAMEs (pure).
//! - [`run`]: each phase against the target instance, safe to repeat after a crash.
//! - [`Progress`] and [`throttle_pause`]: what the API shows and how the copy yields (pure).
//!
//! Change capture is by triggers, not the binlog: see ARCHITECTURE.md for why.

pub mod plan;
pub mod run;
pub mod sql;

pub use plan::{is_artifact, plan, OnlineAlter, Plan, PlanError, Step};

use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DeployError {
    #[error("instance query failed: {0}")]
    Query(#[from] strata_engine::mysql_async::Error),
    #[error("table `{table}`: the new schema cannot hold the existing rows: {message}")]
    CopyRejected { table: String, message: String },
    #[error("table `{table}`: the copy does not match the original ({missing} rows missing or different, {extra} extra); a new unique key or a narrower column may not fit the data")]
    Mismatch {
        table: String,
        missing: u64,
        extra: u64,
    },
    #[error("could not take the table locks in time (long-running transactions hold them): {statement}: {detail}")]
    LockTimeout { statement: String, detail: String },
}

/// A deployment's progress, stored with it and shown by the API and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// `preparing`, `copying`, `verifying`, `in_sync`, `cutting_over`, `cut_over`, `reverted`, …
    pub phase: String,
    pub tables: Vec<TableProgress>,
    /// Seconds left for the copy, at the current rate.
    pub eta_seconds: Option<u64>,
    /// How long the cut-over's RENAME held the application's writers, in milliseconds.
    pub cutover_stall_ms: Option<u64>,
    /// How long the revert's RENAME held them.
    pub revert_stall_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableProgress {
    pub table: String,
    pub rows_copied: u64,
    pub rows_total: u64,
    /// The key the copy resumes after (SQL literals), `None` before the first chunk.
    pub checkpoint: Option<Vec<String>>,
    pub copied: bool,
    pub verified: bool,
}

impl Progress {
    pub fn rows(&self) -> (u64, u64) {
        self.tables.iter().fold((0, 0), |(c, t), p| {
            (c + p.rows_copied, t + p.rows_total.max(p.rows_copied))
        })
    }

    /// Percentage of rows copied (100 when there is nothing to copy).
    pub fn percent(&self) -> f64 {
        let (c, t) = self.rows();
        if t == 0 {
            100.0
        } else {
            (c as f64 * 100.0 / t as f64).min(100.0)
        }
    }
}

/// The pause after a chunk that took `busy`, for a throttle ratio in 0..=95 (PlanetScale's scale):
/// at ratio r the copy works (100 - r)% of the time.
pub fn throttle_pause(ratio: u8, busy: Duration) -> Duration {
    let r = u32::from(ratio.min(95));
    busy * r / (100 - r)
}

/// The next chunk size, steering each chunk toward `target` time, within bounds.
pub fn next_chunk_size(current: u64, took: Duration, target: Duration) -> u64 {
    let took = took.as_secs_f64().max(0.001);
    let scaled = (current as f64 * target.as_secs_f64() / took) as u64;
    // Change by at most 2x per chunk: one slow chunk (a lock wait) must not collapse the size.
    scaled.clamp(current / 2, current * 2).clamp(500, 100_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_ratios() {
        let busy = Duration::from_millis(100);
        assert_eq!(throttle_pause(0, busy), Duration::ZERO);
        assert_eq!(throttle_pause(50, busy), Duration::from_millis(100));
        assert_eq!(throttle_pause(25, busy), busy * 25 / 75);
        assert_eq!(throttle_pause(95, busy), Duration::from_millis(1900));
        assert_eq!(throttle_pause(200, busy), Duration::from_millis(1900));
    }

    #[test]
    fn chunk_sizes_steer_to_target() {
        let t = Duration::from_millis(200);
        assert_eq!(
            next_chunk_size(10_000, Duration::from_millis(200), t),
            10_000
        );
        assert_eq!(
            next_chunk_size(10_000, Duration::from_millis(100), t),
            20_000
        );
        assert_eq!(next_chunk_size(10_000, Duration::from_secs(10), t), 5_000);
        assert_eq!(next_chunk_size(1000, Duration::from_secs(10), t), 500);
        assert_eq!(
            next_chunk_size(90_000, Duration::from_millis(1), t),
            100_000
        );
    }

    #[test]
    fn progress_percent() {
        let mut p = Progress::default();
        assert_eq!(p.percent(), 100.0);
        p.tables.push(TableProgress {
            rows_copied: 50,
            rows_total: 200,
            ..Default::default()
        });
        assert_eq!(p.percent(), 25.0);
    }
}
