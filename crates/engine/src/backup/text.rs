//! The pure parts of backups: positions, the binary log's row events, the redo log's checkpoint.

use std::collections::BTreeMap;

/// Top-level files of a backup directory that are about the backup, not part of the datadir a
/// restore makes: the manifest and `mariadb-backup`'s own files.
pub fn backup_metadata(name: &str) -> bool {
    name == super::MANIFEST
        || name == "backup-my.cnf"
        || name.starts_with("xtrabackup_")
        || name.starts_with("mariadb_backup_")
}

/// Top-level files of a live datadir a snapshot copies last, while commits wait: the InnoDB redo
/// log, the Aria logs, the binary log and its index.
pub fn snapshot_log_file(name: &str) -> bool {
    name == "ib_logfile0" || name.starts_with("aria_log") || name.starts_with("binlog.")
}

/// Files of a live datadir that are not data to copy: the binary log (a snapshot takes it with the
/// logs; a backup records its position), process files, the temporary tablespace, the buffer pool
/// dump.
pub fn skipped_in_snapshot(name: &str) -> bool {
    name.starts_with("binlog.")
        || name.starts_with("#sql")
        || name.ends_with(".pid")
        || name.ends_with(".sock")
        || name.ends_with(".err")
        || matches!(
            name,
            "ibtmp1" | "ib_buffer_pool" | "tc.log" | "multi-master.info" | "mysqld.log"
        )
        || name.starts_with("relay-log")
}

/// `(file, position)` of a consistent-snapshot transaction from `SHOW STATUS LIKE
/// 'binlog_snapshot_%'`.
pub fn snapshot_position(status: &[(String, String)]) -> Option<(String, u64)> {
    let get = |name: &str| {
        status
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let file = get("Binlog_snapshot_file")?;
    let pos = get("Binlog_snapshot_position")?.parse().ok()?;
    let file = file.rsplit('/').next().unwrap_or("").to_string();
    (!file.is_empty()).then_some((file, pos))
}

/// `mariadb-backup`'s `xtrabackup_binlog_info`: `file<TAB>position[<TAB>gtid]`.
pub fn parse_binlog_info(text: &str) -> Option<(String, u64, Option<String>)> {
    let line = text.lines().next()?;
    let mut parts = line.split('\t');
    let file = parts.next()?.trim();
    let pos = parts.next()?.trim().parse().ok()?;
    let gtid = parts
        .next()
        .map(|g| g.trim().to_string())
        .filter(|g| !g.is_empty());
    let file = file.rsplit('/').next()?.to_string();
    (!file.is_empty()).then_some((file, pos, gtid))
}

/// The binary log files from `from` to `to` inclusive, in the order of the index file.
pub fn binlog_files_between(index: &str, from: &str, to: &str) -> Option<Vec<String>> {
    let names: Vec<String> = index
        .lines()
        .map(|l| l.trim().rsplit('/').next().unwrap_or("").to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let a = names.iter().position(|n| n == from)?;
    let b = names.iter().position(|n| n == to)?;
    (a <= b).then(|| names[a..=b].to_vec())
}

/// Rows added minus rows removed per table, and the schema changes seen, in a stretch of binary log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowDelta {
    pub tables: BTreeMap<String, i64>,
    pub ddl: Vec<String>,
}

impl RowDelta {
    /// Counts taken at the stretch's start, carried to its end.
    pub fn apply(&self, mut counts: BTreeMap<String, i64>) -> BTreeMap<String, i64> {
        for (t, d) in &self.tables {
            *counts.entry(t.clone()).or_insert(0) += d;
        }
        counts
    }
}

/// Reads one backquoted identifier at the start of `s`; returns it and the rest.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('`')?.char_indices().peekable();
    let mut out = String::new();
    let body = &s[1..];
    while let Some((i, c)) = chars.next() {
        if c == '`' {
            if matches!(chars.peek(), Some((_, '`'))) {
                chars.next();
                out.push('`');
                continue;
            }
            return Some((out, &body[i + 1..]));
        }
        out.push(c);
    }
    None
}

/// `` `schema`.`table` `` at the start of `s`.
fn qualified(s: &str) -> Option<(String, String)> {
    let (schema, rest) = quoted(s)?;
    let (table, _) = quoted(rest.strip_prefix('.')?)?;
    Some((schema, table))
}

/// Parses `mariadb-binlog --base64-output=DECODE-ROWS --verbose` output: every `### INSERT INTO` /
/// `### DELETE FROM` of a table of `schema` is one row in or out; the statement after a GTID event
/// flagged `ddl` is a schema change.
pub fn row_delta(decoded: &str, schema: &str) -> RowDelta {
    let mut r = RowDeltaReader::new(schema);
    for line in decoded.lines() {
        r.line(line);
    }
    r.finish()
}

/// [`row_delta`] a line at a time, for output streamed from the tool.
pub struct RowDeltaReader {
    schema: String,
    in_ddl: bool,
    out: RowDelta,
}

impl RowDeltaReader {
    pub fn new(schema: &str) -> Self {
        RowDeltaReader {
            schema: schema.to_string(),
            in_ddl: false,
            out: RowDelta::default(),
        }
    }

    pub fn line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("### INSERT INTO ") {
            if let Some((s, t)) = qualified(rest) {
                if s == self.schema {
                    *self.out.tables.entry(t).or_insert(0) += 1;
                }
            }
        } else if let Some(rest) = line.strip_prefix("### DELETE FROM ") {
            if let Some((s, t)) = qualified(rest) {
                if s == self.schema {
                    *self.out.tables.entry(t).or_insert(0) -= 1;
                }
            }
        } else if line.starts_with('#') && line.contains("\tGTID ") {
            self.in_ddl = line.split_whitespace().any(|w| w == "ddl");
        } else if self.in_ddl
            && !line.is_empty()
            && !line.starts_with('#')
            && !line.starts_with("/*")
            && !line.starts_with("SET ")
            && !line.starts_with("use ")
            && !line.starts_with("DELIMITER")
        {
            let stmt: String = line.chars().take(120).collect();
            self.out.ddl.push(stmt);
            self.in_ddl = false;
        }
    }

    pub fn finish(self) -> RowDelta {
        self.out
    }
}

/// The newest checkpoint LSN in the header of an InnoDB redo log of MariaDB 10.8+ (`ib_logfile0`
/// starting with "Phys"): two checkpoint blocks at 4096 and 8192, each a big-endian checkpoint LSN
/// then end LSN. `None` for any other format.
pub fn redo_checkpoint(header: &[u8]) -> Option<u64> {
    if header.len() < 8192 + 16 || &header[..4] != b"Phys" {
        return None;
    }
    let at = |o: usize| u64::from_be_bytes(header[o..o + 8].try_into().unwrap_or([0; 8]));
    Some(at(4096).max(at(8192)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# at 339
#261123 19:02:41 server id 1  end_log_pos 381 CRC32 0x369bf515 \tGTID 0-1-1502 ddl
/*M!100001 SET @@session.gtid_seq_no=1502*//*!*/;
# at 381
#261123 19:02:41 server id 1  end_log_pos 507 CRC32 0x833e86a0 \tQuery\tthread_id=10\texec_time=0\terror_code=0\txid=98
SET TIMESTAMP=1795460561/*!*/;
SET @@session.sql_mode=1411383296/*!*/;
/*!\\C utf8mb3 *//*!*/;
create table sb.tt (id int primary key, v varchar(10))
/*!*/;
#261123 19:02:41 server id 1  end_log_pos 549 CRC32 0xebd3e57e \tGTID 0-1-1503 trans
START TRANSACTION
/*!*/;
#Q> insert into sb.tt values (1,'a'),(2,'b')
### INSERT INTO `sb`.`tt`
### SET
###   @1=1
### INSERT INTO `sb`.`tt`
### SET
###   @1=2
### INSERT INTO `other`.`tt`
### UPDATE `sb`.`tt`
### WHERE
### SET
### DELETE FROM `sb`.`tt`
### WHERE
### INSERT INTO `sb`.`we``ird`
COMMIT/*!*/;
";

    #[test]
    fn row_events_count_per_table_of_the_schema() {
        let d = row_delta(SAMPLE, "sb");
        assert_eq!(d.tables.get("tt"), Some(&1));
        assert_eq!(d.tables.get("we`ird"), Some(&1));
        assert_eq!(d.tables.len(), 2);
        assert_eq!(
            d.ddl,
            ["create table sb.tt (id int primary key, v varchar(10))"]
        );
        let no_ddl = row_delta(
            &SAMPLE[SAMPLE
                .find("#261123 19:02:41 server id 1  end_log_pos 549")
                .unwrap()..],
            "sb",
        );
        assert!(no_ddl.ddl.is_empty());
        let counts = no_ddl.apply(BTreeMap::from([
            ("tt".to_string(), 10),
            ("x".to_string(), 3),
        ]));
        assert_eq!(counts["tt"], 11);
        assert_eq!(counts["x"], 3);
        assert_eq!(counts["we`ird"], 1);
    }

    #[test]
    fn positions() {
        let status = vec![
            (
                "Binlog_snapshot_file".to_string(),
                "./binlog.000004".to_string(),
            ),
            ("Binlog_snapshot_position".to_string(), "339".to_string()),
        ];
        assert_eq!(
            snapshot_position(&status),
            Some(("binlog.000004".into(), 339))
        );
        assert_eq!(snapshot_position(&status[..1]), None);
        assert_eq!(
            parse_binlog_info("binlog.000004\t339\t0-1-1501\n"),
            Some(("binlog.000004".into(), 339, Some("0-1-1501".into())))
        );
        assert_eq!(
            parse_binlog_info("binlog.000004\t339"),
            Some(("binlog.000004".into(), 339, None))
        );
        assert_eq!(parse_binlog_info(""), None);
        assert_eq!(parse_binlog_info("binlog.000004\tx"), None);
        let index = "./binlog.000001\n./binlog.000002\n./binlog.000003\n";
        assert_eq!(
            binlog_files_between(index, "binlog.000002", "binlog.000003"),
            Some(vec!["binlog.000002".into(), "binlog.000003".into()])
        );
        assert_eq!(
            binlog_files_between(index, "binlog.000003", "binlog.000002"),
            None
        );
        assert_eq!(
            binlog_files_between(index, "binlog.000009", "binlog.000003"),
            None
        );
    }

    #[test]
    fn backup_metadata_is_not_restored() {
        for meta in [
            "strata-backup.json",
            "backup-my.cnf",
            "xtrabackup_info",
            "xtrabackup_binlog_info",
            "mariadb_backup_binlog_info",
        ] {
            assert!(backup_metadata(meta), "{meta}");
        }
        for data in [
            "ibdata1",
            "ib_logfile0",
            "shop",
            "mysql",
            "aria_log_control",
        ] {
            assert!(!backup_metadata(data), "{data}");
        }
    }

    #[test]
    fn redo_header() {
        let mut h = vec![0u8; 12288];
        h[..4].copy_from_slice(b"Phys");
        h[4096..4104].copy_from_slice(&1056425616u64.to_be_bytes());
        h[8192..8200].copy_from_slice(&1056425700u64.to_be_bytes());
        assert_eq!(redo_checkpoint(&h), Some(1056425700));
        assert_eq!(redo_checkpoint(&h[..5000]), None);
        h[0] = b'X';
        assert_eq!(redo_checkpoint(&h), None);
    }

    #[test]
    fn snapshot_leaves_out_logs_and_process_files() {
        for skipped in [
            "binlog.000001",
            "binlog.index",
            "ibtmp1",
            "mysqld.pid",
            "ib_buffer_pool",
            "#sql-1a2b.ibd",
        ] {
            assert!(skipped_in_snapshot(skipped), "{skipped}");
        }
        for kept in [
            "ibdata1",
            "ib_logfile0",
            "undo001",
            "aria_log_control",
            "aria_log.00000001",
            "shop",
            "mysql",
            "ddl_recovery.log",
        ] {
            assert!(!skipped_in_snapshot(kept), "{kept}");
        }
        for log in [
            "ib_logfile0",
            "aria_log_control",
            "aria_log.00000001",
            "binlog.000003",
            "binlog.index",
        ] {
            assert!(snapshot_log_file(log), "{log}");
        }
        for data in ["ibdata1", "undo001", "shop", "ddl_recovery.log"] {
            assert!(!snapshot_log_file(data), "{data}");
        }
    }
}
