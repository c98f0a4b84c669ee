//! Online deploys.
//!
//! - [`plan`]: what a deployment does, table by table, with its artifacts' names (pure).
//! - [`sql`]: the statements: shadow tables, triggers, chunked copy, verification, RENAMEs (pure).
//! - [`run`]: each phase against the target instance, safe to repeat after a crash.
//! - [`Progress`] and [`throttle_pause`]: what the API shows and how the copy yields (pure).
//!
//! Change capture is by triggers, not the binlog: see ARCHITECTURE.md for why.

pub mod force;
pub mod gate;
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
    #[error("view `{view}` cannot be created on the target: {message}")]
    ViewRejected { view: String, message: String },
    #[error("the migration table `{table}` has more than {limit} rows: it does not look like a migration log, so its data is not copied (check the database's migration table setting)")]
    MigrationTableTooLarge { table: String, limit: u64 },
    #[error("table `{table}`: foreign key `{constraint}` cannot be added: {example} has no matching row in `{parent}`; fix or delete such rows first")]
    Orphans {
        table: String,
        constraint: String,
        parent: String,
        /// The first offending row's key columns and values, e.g. `user_id = 999`.
        example: String,
    },
    #[error("table `{table}`: a write during the deploy does not fit the new schema ({reason}); nothing was swapped: fix such rows, then deploy again")]
    WriteRefused { table: String, reason: String },
    #[error("table `{table}`: a write since the deploy does not fit the old schema ({reason}); nothing was reverted: fix such rows, then revert again")]
    RevertRefused { table: String, reason: String },
    #[error("the deployment's tables are not on the instance (they were removed outside the deployment)")]
    NotPrepared,
    #[error("long-running transactions hold {tables}: {detail}")]
    LockTimeout { tables: String, detail: String },
    #[error("{0}")]
    ForeignKeys(String),
}

/// A deployment's progress, stored with it and shown by the API and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// `preparing`, `copying` (each chunk verified as it is copied), `building_keys`, `in_sync`, `cutting_over`, `cut_over`, `reverted`, …
    pub phase: String,
    pub tables: Vec<TableProgress>,
    /// Seconds left for the copy, at the current rate; while keys are built, for the build.
    pub eta_seconds: Option<u64>,
    /// How far the build of the keys left out of the copy is, in percent, as the server reports
    /// it (see [`key_build_percent`]); `None` before the build or while the server says nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_percent: Option<f64>,
    /// How long the cut-over's RENAME held the application's writers, in milliseconds.
    pub cutover_stall_ms: Option<u64>,
    /// How long the revert's RENAME held them.
    pub revert_stall_ms: Option<u64>,
    /// The target's migration table as it was before the deploy copied the source branch's rows
    /// into it (automatic copy of migration data): what a revert puts back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_rows_before: Option<run::TableRows>,
    /// True once the source branch's migration rows are in the target's table.
    #[serde(default)]
    pub migration_rows_copied: bool,
    /// The rows the deploy added to the target's migration log (a log merged row by row): all a
    /// revert takes out, so what the application recorded there meanwhile stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_rows_added: Option<run::TableRows>,
    /// Since when (ms since the epoch) the deployment's steps have found their tables held by
    /// long-running transactions; cleared once a step gets through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delayed_since: Option<i64>,
    /// When a forced cut-over was asked for on the deploy request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_cutover_requested_at: Option<i64>,
    /// Connections (their queries and transactions) the deployment's forced steps ended.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ended_connections: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How far an online key build is, in percent, from the server's report of it
/// (`Innodb_onlineddl_pct_progress`, in hundredths of a percent; InnoDB leaves the
/// processlist's progress columns at 0 for these builds). `None` while it reports nothing: before
/// the build reads its first rows, and after it.
pub fn key_build_percent(hundredths: u64) -> Option<f64> {
    (hundredths > 0).then(|| (hundredths.min(10_000) as f64) / 100.0)
}

/// Seconds left of work `percent` done after `elapsed`, at the same pace; `None` until there is a
/// pace to go by (1 % done).
pub fn eta_from_percent(percent: f64, elapsed: Duration) -> Option<u64> {
    if !(1.0..=100.0).contains(&percent) {
        return None;
    }
    Some((elapsed.as_secs_f64() * (100.0 - percent) / percent).round() as u64)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableProgress {
    pub table: String,
    pub rows_copied: u64,
    pub rows_total: u64,
    /// The key the copy resumes after (SQL literals), `None` before the first chunk; from
    /// deployments made before the copy was split into ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Vec<String>>,
    /// The key ranges the copy was split into, each copied by its own worker; empty until the
    /// copy starts.
    #[serde(default)]
    pub ranges: Vec<RangeProgress>,
    pub copied: bool,
    pub verified: bool,
}

/// One range of a table's keys: `(from, to]`, open where `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RangeProgress {
    pub from: Option<Vec<String>>,
    pub to: Option<Vec<String>>,
    /// The key the copy of this range resumes after (`None`: from `from`).
    pub checkpoint: Option<Vec<String>>,
    pub done: bool,
    /// Rows left to copy in this range when last counted (writes move it between counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
}

impl RangeProgress {
    /// The ranges between `bounds` (see `run::split`), starting from a table's legacy checkpoint.
    pub fn between(
        bounds: Vec<Vec<String>>,
        checkpoint: Option<Vec<String>>,
    ) -> Vec<RangeProgress> {
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        let mut from = None;
        for b in bounds.into_iter().map(Some).chain(std::iter::once(None)) {
            ranges.push(RangeProgress {
                from: from.clone(),
                to: b.clone(),
                checkpoint: None,
                done: false,
                remaining: None,
            });
            from = b;
        }
        if let Some(first) = ranges.first_mut() {
            first.checkpoint = checkpoint;
        }
        ranges
    }

    /// Where the next chunk starts after.
    pub fn resume_after(&self) -> Option<&[String]> {
        self.checkpoint.as_deref().or(self.from.as_deref())
    }
}

impl TableProgress {
    /// The rows this table's copy will have copied in all: the count taken up front, refined by
    /// each range's latest count of what it has left (writes add and remove rows meanwhile).
    pub fn expected_total(&self) -> u64 {
        if self.copied {
            return self.rows_copied;
        }
        let open: Vec<&RangeProgress> = self.ranges.iter().filter(|r| !r.done).collect();
        if !open.is_empty() && open.iter().all(|r| r.remaining.is_some()) {
            let left: u64 = open.iter().filter_map(|r| r.remaining).sum();
            return self.rows_copied + left;
        }
        self.rows_total.max(self.rows_copied)
    }
}

impl Progress {
    /// Rows copied and rows expected in all.
    pub fn rows(&self) -> (u64, u64) {
        self.tables.iter().fold((0, 0), |(c, t), p| {
            (c + p.rows_copied, t + p.expected_total())
        })
    }

    /// Percentage of rows copied: 100 only once every table's copy is done (or there is nothing to
    /// copy), never while rows are still being copied.
    pub fn percent(&self) -> f64 {
        let (c, t) = self.rows();
        let done = !self.tables.is_empty() && self.tables.iter().all(|p| p.copied);
        if done {
            return 100.0;
        }
        if t == 0 {
            return 0.0;
        }
        (c as f64 * 100.0 / t as f64).min(99.9)
    }

    /// What a person is shown for a deployment in `state`: the phase it is in and how far along
    /// it is. 100 % means the change is in sync or done: never while queued, copying rows or
    /// building keys, whatever the row counts say.
    pub fn shown(&self, state: &str) -> (String, f64) {
        let copy = self.percent().min(99.9);
        match state {
            "pending" | "ready" | "queued" | "submitting" => ("queued".into(), 0.0),
            "complete_cancel" | "cancelled" | "in_progress_cancel" => ("cancelled".into(), copy),
            "complete_error" | "error" => ("failed".into(), copy),
            "in_progress" => match self.phase.as_str() {
                "" | "preparing" => ("preparing".into(), 0.0),
                // Nothing to copy: the change is made in place once prepared.
                "copying" if self.tables.is_empty() => ("copying".into(), 0.0),
                phase => (phase.into(), copy),
            },
            "in_progress_revert" => ("reverting".into(), 100.0),
            "complete_revert" | "complete_revert_error" => ("reverted".into(), 100.0),
            _ if self.phase.is_empty() => (state.into(), 100.0),
            _ => (self.phase.clone(), 100.0),
        }
    }
}

/// The rows of `source` that `target` lacks, matched on the columns both have except
/// `counters` (auto-increment ids, which each server numbers itself), as rows of those columns.
/// Rows are SQL literals as read from the servers.
pub fn rows_to_add(
    target: &run::TableRows,
    source: &run::TableRows,
    counters: &[String],
) -> run::TableRows {
    let columns: Vec<String> = source
        .columns
        .iter()
        .filter(|c| target.columns.contains(c) && !counters.contains(c))
        .cloned()
        .collect();
    let pick = |t: &run::TableRows, row: &[String]| -> Vec<String> {
        columns
            .iter()
            .filter_map(|c| t.columns.iter().position(|x| x == c))
            .filter_map(|i| row.get(i).cloned())
            .collect()
    };
    let have: std::collections::HashSet<Vec<String>> =
        target.rows.iter().map(|r| pick(target, r)).collect();
    let mut seen = std::collections::HashSet::new();
    let rows = source
        .rows
        .iter()
        .map(|r| pick(source, r))
        .filter(|r| !have.contains(r) && seen.insert(r.clone()))
        .collect();
    run::TableRows {
        table: source.table.clone(),
        columns,
        rows,
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
    fn ranges_between_bounds() {
        let b = |v: &str| vec![v.to_string()];
        let r = RangeProgress::between(vec![b("10"), b("20")], None);
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].from.clone(), r[0].to.clone()), (None, Some(b("10"))));
        assert_eq!(
            (r[1].from.clone(), r[1].to.clone()),
            (Some(b("10")), Some(b("20")))
        );
        assert_eq!((r[2].from.clone(), r[2].to.clone()), (Some(b("20")), None));
        assert_eq!(r[1].resume_after(), Some(&b("10")[..]));
        let one = RangeProgress::between(Vec::new(), Some(b("7")));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].resume_after(), Some(&b("7")[..]));
        assert_eq!((one[0].from.clone(), one[0].to.clone()), (None, None));
        // A progress stored before ranges existed still reads.
        let old: TableProgress = serde_json::from_str(
            r#"{"table":"t","rows_copied":5,"rows_total":9,"checkpoint":["5"],"copied":false,"verified":false}"#,
        )
        .unwrap();
        assert!(old.ranges.is_empty() && old.checkpoint.is_some());
    }

    #[test]
    fn progress_percent() {
        let mut p = Progress::default();
        // Nothing counted yet (queued): nothing done.
        assert_eq!(p.percent(), 0.0);
        p.tables.push(TableProgress {
            rows_copied: 50,
            rows_total: 200,
            ..Default::default()
        });
        assert_eq!(p.percent(), 25.0);
        // Writers inserted while the copy ran: more copied than counted up front, not yet done.
        p.tables[0].rows_copied = 250;
        assert_eq!(p.percent(), 99.9);
        // A refined count of what is left decides the total.
        p.tables[0].ranges = RangeProgress::between(vec![vec!["10".into()]], None);
        p.tables[0].ranges[0].done = true;
        p.tables[0].ranges[1].remaining = Some(250);
        assert_eq!(p.rows(), (250, 500));
        assert_eq!(p.percent(), 50.0);
        p.tables[0].copied = true;
        assert_eq!(p.rows(), (250, 250));
        assert_eq!(p.percent(), 100.0);
        // Nothing counted and nothing copied yet: 0, not 100.
        let fresh = Progress {
            tables: vec![TableProgress::default()],
            ..Default::default()
        };
        assert_eq!(fresh.percent(), 0.0);
    }

    #[test]
    fn migration_rows_merge_by_content() {
        let t = |cols: &[&str], rows: &[&[&str]]| run::TableRows {
            table: "django_migrations".into(),
            columns: cols.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| v.to_string()).collect())
                .collect(),
        };
        let cols = ["id", "app", "name"];
        // Main has 1..3 and a migration deployed from another branch as id 4; this branch made
        // its own id 4. Its migration is added (numbered by main), the other branch's stays.
        let main = t(
            &cols,
            &[
                &["1", "'a'", "'0001'"],
                &["2", "'a'", "'0002'"],
                &["4", "'a'", "'0003_x'"],
            ],
        );
        let branch = t(
            &cols,
            &[
                &["1", "'a'", "'0001'"],
                &["2", "'a'", "'0002'"],
                &["4", "'a'", "'0003_y'"],
            ],
        );
        let added = rows_to_add(&main, &branch, &["id".to_string()]);
        assert_eq!(added.columns, ["app", "name"]);
        assert_eq!(added.rows, [["'a'", "'0003_y'"]]);
        // Nothing new: nothing added; duplicates in the source added once.
        assert!(rows_to_add(&main, &main, &["id".to_string()])
            .rows
            .is_empty());
        let versions = |rows: &[&[&str]]| t(&["version"], rows);
        let added = rows_to_add(
            &versions(&[&["'1'"]]),
            &versions(&[&["'1'"], &["'2'"], &["'2'"]]),
            &[],
        );
        assert_eq!(added.rows, [["'2'"]]);
        // A column only one side has is not compared (the table changed in between).
        let wider = t(&["version", "note"], &[&["'1'", "NULL"], &["'3'", "'x'"]]);
        let added = rows_to_add(&versions(&[&["'1'"]]), &wider, &[]);
        assert_eq!(
            (added.columns.clone(), added.rows),
            (vec!["version".to_string()], vec![vec!["'3'".to_string()]])
        );
    }

    #[test]
    fn key_build_progress_from_the_servers_report() {
        let cases: [(u64, Option<f64>); 5] = [
            (0, None),
            (1, Some(0.01)),
            (4605, Some(46.05)),
            (10_000, Some(100.0)),
            (12_000, Some(100.0)),
        ];
        for (hundredths, want) in cases {
            assert_eq!(key_build_percent(hundredths), want, "{hundredths}");
        }
    }

    #[test]
    fn eta_follows_the_pace() {
        let s = Duration::from_secs;
        assert_eq!(eta_from_percent(0.5, s(10)), None);
        assert_eq!(eta_from_percent(25.0, s(10)), Some(30));
        assert_eq!(eta_from_percent(50.0, s(3)), Some(3));
        assert_eq!(eta_from_percent(100.0, s(3)), Some(0));
        assert_eq!(eta_from_percent(f64::NAN, s(3)), None);
    }

    #[test]
    fn progress_shown_by_state() {
        let table = |copied: u64, total: u64, done: bool| TableProgress {
            rows_copied: copied,
            rows_total: total,
            copied: done,
            ..Default::default()
        };
        let with = |phase: &str, tables: Vec<TableProgress>| Progress {
            phase: phase.into(),
            tables,
            ..Default::default()
        };
        let half = || vec![table(50, 100, false)];
        let all = || vec![table(100, 100, true)];
        let cases: Vec<(&str, Progress, &str, f64)> = vec![
            // Queued: nothing has happened yet, whatever an earlier count said.
            ("queued", Progress::default(), "queued", 0.0),
            ("queued", with("", all()), "queued", 0.0),
            ("in_progress", Progress::default(), "preparing", 0.0),
            ("in_progress", with("preparing", half()), "preparing", 0.0),
            ("in_progress", with("copying", half()), "copying", 50.0),
            // In place: nothing to copy, not done until in sync.
            ("in_progress", with("copying", Vec::new()), "copying", 0.0),
            // Rows copied but keys still being built: not 100 yet.
            (
                "in_progress",
                with("building_keys", all()),
                "building_keys",
                99.9,
            ),
            ("pending_cutover", with("in_sync", all()), "in_sync", 100.0),
            (
                "pending_cutover",
                with("in_sync", Vec::new()),
                "in_sync",
                100.0,
            ),
            (
                "in_progress_cutover",
                with("cutting_over", all()),
                "cutting_over",
                100.0,
            ),
            (
                "complete_pending_revert",
                with("cut_over", all()),
                "cut_over",
                100.0,
            ),
            ("complete", with("cut_over", Vec::new()), "cut_over", 100.0),
            ("complete", Progress::default(), "complete", 100.0),
            (
                "in_progress_revert",
                with("cut_over", all()),
                "reverting",
                100.0,
            ),
            (
                "complete_revert",
                with("reverted", all()),
                "reverted",
                100.0,
            ),
            ("complete_error", with("copying", half()), "failed", 50.0),
            (
                "complete_error",
                with("building_keys", all()),
                "failed",
                99.9,
            ),
            (
                "complete_cancel",
                with("copying", half()),
                "cancelled",
                50.0,
            ),
        ];
        for (state, p, phase, percent) in cases {
            assert_eq!(
                p.shown(state),
                (phase.to_string(), percent),
                "{state} {p:?}"
            );
        }
    }
}
