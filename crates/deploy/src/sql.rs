//! The statements of an online deploy, as text (pure, so every one of them is testable without a
//! server).

use crate::plan::{trigger_name, Mark, OnlineAlter, Plan, Step};
use strata_model::role::{quote_ident as q, sql_string};

fn list(cols: &[String]) -> String {
    cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ")
}

fn prefixed(prefix: &str, cols: &[String]) -> String {
    cols.iter()
        .map(|c| format!("{prefix}.{}", q(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `k1 = OLD.k1 AND k2 = OLD.k2` (keys are NOT NULL, so `=` is exact).
fn key_match(key: &[String], row: &str) -> String {
    key.iter()
        .map(|c| format!("{} = {row}.{}", q(c), q(c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A BLACKHOLE table with the given column names, each LONGBLOB NULL so any value fits: it stands in
/// for a name a trigger writes to, so triggers can exist before their real target does.
pub fn placeholder(name: &str, cols: &[String]) -> String {
    let defs = cols
        .iter()
        .map(|c| format!("{} LONGBLOB NULL", q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("CREATE TABLE {} ({defs}) ENGINE=BLACKHOLE", q(name))
}

/// The tables where reverse triggers record why a revert would lose data (each table's creation,
/// then its fill: see [`blocked_fill`]).
pub fn revert_blocked_tables(plan: &Plan) -> Vec<String> {
    plan.revert_blocked_tables()
        .iter()
        .flat_map(|t| [Some(blocked_table(plan, t)), blocked_fill(plan, t)])
        .flatten()
        .collect()
}

/// Markers spread over a keyed blocked table's key space, each with an empty reason (never a live
/// record). A trigger's look-up of a row's record is a locking read (every read is, in a statement
/// that writes, under REPEATABLE READ), and a record missing locks the gap where it would be: in an
/// empty table that is the whole table, and two transactions that each looked for one row's record
/// and then recorded another waited for each other (a deadlock). With 4,096 markers a gap is a
/// 4,096th of the key space.
fn blocked_fill(plan: &Plan, name: &str) -> Option<String> {
    plan.keyed_blockers.then(|| {
        format!(
            "INSERT IGNORE INTO {} (`row_key`, `table_name`, `reason`) SELECT UNHEX(CONCAT(LPAD(HEX(seq * 16), 4, '0'), REPEAT('0', 60))), '', '' FROM seq_0_to_4095",
            q(name)
        )
    })
}

/// A blocked table: one record per row (see [`Plan::keyed_blockers`]) or, in older plans, per
/// table.
fn blocked_table(plan: &Plan, name: &str) -> String {
    if plan.keyed_blockers {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (`row_key` BINARY(32) NOT NULL PRIMARY KEY, `table_name` VARCHAR(64) NOT NULL, `reason` TEXT NOT NULL) ENGINE=InnoDB",
            q(name)
        )
    } else {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (`table_name` VARCHAR(64) NOT NULL PRIMARY KEY, `reason` TEXT NOT NULL) ENGINE=InnoDB",
            q(name)
        )
    }
}

/// A row's identity in a blocked table: a hash of its key's values (length-prefixed, so no two
/// keys give the same text).
fn row_key(key: &[String], row: &str) -> String {
    let parts = key
        .iter()
        .map(|c| format!("LENGTH({row}.{c}), {row}.{c}", c = q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("UNHEX(SHA2(CONCAT_WS('#', {parts}), 256))")
}

/// Records (or replaces) why the row `row` is wrong on the other side. A record taken back is
/// kept, with an empty reason (see [`clear`]): recording the row again updates it in place.
fn record(blocked: &str, table: &str, key: &[String], row: &str, why: &str) -> String {
    format!(
        "INSERT INTO {} (`row_key`, `table_name`, `reason`) VALUES ({}, '{}', IF({why} = '', 'refused', {why})) ON DUPLICATE KEY UPDATE `table_name` = VALUES(`table_name`), `reason` = VALUES(`reason`)",
        q(blocked),
        row_key(key, row),
        sql_string(table)
    )
}

/// Takes back a record of the row `row` (it is right on the other side now, or gone): its reason
/// is emptied, the record kept. Deleted, a record left a delete-marked entry, and recording the
/// row again next to another writer's record locked the gap before it: two transactions that each
/// wrote a misfit and then a fit (eight at once) deadlocked. The existence check is a locking read
/// (as every read in a writing statement): a missing record, the usual case, locks only the gap
/// between two of the table's markers (see [`blocked_fill`]), and only the update writes.
fn clear(blocked: &str, key: &[String], row: &str) -> String {
    let k = row_key(key, row);
    format!(
        "IF EXISTS (SELECT 1 FROM {b} WHERE `row_key` = {k} AND `reason` <> '') THEN UPDATE {b} SET `reason` = '' WHERE `row_key` = {k}; END IF",
        b = q(blocked)
    )
}

/// The condition a blocked table's live records meet (records taken back keep an empty reason).
pub const LIVE_RECORDS: &str = "`reason` <> ''";

/// The deploy-blocked tables of a plan's changed tables (see [`Plan::forward_guarded`]).
pub fn deploy_blocked_tables(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s, Step::AlterTable(_)))
        .filter_map(|(i, _)| plan.deploy_blocked_for(i))
        .flat_map(|t| [Some(blocked_table(plan, &t)), blocked_fill(plan, &t)])
        .flatten()
        .collect()
}

/// Forward triggers (on the old table, into the shadow). Created with an empty sql_mode: a value the
/// new schema cannot hold must never fail the application's write; the verification catches it.
/// What even that mode refuses (NULL into a new NOT NULL column, a new CHECK) is caught by a
/// handler that records why in the step's deploy-blocked table, so the application's write still
/// succeeds and the cut-over says why it cannot go ahead.
pub fn forward_triggers(plan: &Plan, step: usize, a: &OnlineAlter) -> Vec<String> {
    if plan.keyed_blockers {
        if let Some(blocked) = plan.deploy_blocked_for(step) {
            return forward_triggers_keyed(plan, step, a, &blocked);
        }
    }
    let tag = plan.tag.as_str();
    let (open, close) = match plan.deploy_blocked_for(step) {
        Some(blocked) => (
            format!(
                "BEGIN DECLARE why TEXT DEFAULT ''; DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN GET DIAGNOSTICS CONDITION 1 why = MESSAGE_TEXT; INSERT IGNORE INTO {} (`table_name`, `reason`) VALUES ('{}', why); END; ",
                q(&blocked),
                sql_string(&a.table)
            ),
            " END".to_string(),
        ),
        None => (String::new(), String::new()),
    };
    let t = q(&a.table);
    let s = q(&a.shadow);
    let cols = list(&a.shared);
    let new_vals = prefixed("NEW", &a.shared);
    let key_changed = a
        .key
        .iter()
        .map(|c| format!("NOT (OLD.{} <=> NEW.{})", q(c), q(c)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let body = |statements: String| {
        if open.is_empty() {
            statements
        } else {
            format!("{open}{statements};{close}")
        }
    };
    vec![
        format!(
            "CREATE TRIGGER {} AFTER INSERT ON {t} FOR EACH ROW {}",
            q(&trigger_name(tag, step, 'f', "i")),
            body(format!("REPLACE INTO {s} ({cols}) VALUES ({new_vals})"))
        ),
        format!(
            "CREATE TRIGGER {} AFTER UPDATE ON {t} FOR EACH ROW {}",
            q(&trigger_name(tag, step, 'f', "u")),
            body(format!(
                "BEGIN IF {key_changed} THEN DELETE FROM {s} WHERE {}; END IF; REPLACE INTO {s} ({cols}) VALUES ({new_vals}); END",
                key_match(&a.key, "OLD")
            ))
        ),
        format!(
            "CREATE TRIGGER {} AFTER DELETE ON {t} FOR EACH ROW {}",
            q(&trigger_name(tag, step, 'f', "d")),
            body(format!("DELETE FROM {s} WHERE {}", key_match(&a.key, "OLD")))
        ),
    ]
}

/// The SQL mode the deployment's statements and triggers run under (triggers keep the mode they
/// were created in). `NO_AUTO_VALUE_ON_ZERO`: a row copied or mirrored is written with exactly
/// its key; without it a key of 0 (an application may write one under that mode) took the next
/// auto-increment value instead, so the copy failed as a mismatch and a revert brought the row
/// back under another id.
pub const RELAXED_MODE: &str =
    "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'";

/// [`RELAXED_MODE`], strict: for the reverse triggers, so a write the old schema cannot hold is
/// recorded instead of being stored changed.
pub const STRICT_MODE: &str =
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'";

/// The reverse triggers' test for a write of the application: the copy writes the shadow too,
/// and its rows are not mirrored. The copy's sessions run with `sql_log_off = 1` (see
/// [`COPYING`]; it cannot be set for one statement), which only SUPER may set, so no application
/// session can turn the mirroring off.
/// (It was the user's name, `SUBSTRING_INDEX(USER(), …)`: evaluated for every copied row, that
/// cost 1.7 µs a row, a third of a 1M-row copy. No '@' in the text: with one, the server failed
/// to re-read the trigger when it undid a RENAME stopped by a shutdown, and left the table's
/// trigger file empty.)
pub const NOT_COPYING: &str = "@@sql_log_off = 0";

/// What the copy's sessions run with (see [`NOT_COPYING`]).
pub const COPYING: &str = "sql_log_off = 1";

/// Reverse triggers (on the shadow, into `old`). Created in strict mode: a write the old schema
/// cannot hold is not applied there; the handler records why in the revert-blocked table instead of
/// failing the application's write, and a revert is then refused with that reason.
pub fn reverse_triggers(plan: &Plan, step: usize, a: &OnlineAlter) -> Vec<String> {
    if plan.keyed_blockers {
        return reverse_triggers_keyed(plan, step, a);
    }
    let s = q(&a.shadow);
    let o = q(&a.old);
    let cols = list(a.back_columns());
    let new_vals = prefixed("NEW", a.back_columns());
    let handler = format!(
        "DECLARE why TEXT DEFAULT ''; DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN GET DIAGNOSTICS CONDITION 1 why = MESSAGE_TEXT; INSERT IGNORE INTO {} (`table_name`, `reason`) VALUES ('{}', why); END;",
        q(&plan.revert_blocked_for(step)),
        sql_string(&a.table)
    );
    let sets = a
        .back_columns()
        .iter()
        .map(|c| format!("{} = NEW.{}", q(c), q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let guard = format!("IF {NOT_COPYING} THEN BEGIN");
    vec![
        format!(
            "CREATE TRIGGER IF NOT EXISTS {} AFTER INSERT ON {s} FOR EACH ROW BEGIN {guard} {handler} INSERT INTO {o} ({cols}) VALUES ({new_vals}); END; END IF; END",
            q(&trigger_name(&plan.tag, step, 'r', "i"))
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {} AFTER UPDATE ON {s} FOR EACH ROW BEGIN {guard} {handler} UPDATE {o} SET {sets} WHERE {}; END; END IF; END",
            q(&trigger_name(&plan.tag, step, 'r', "u")),
            key_match(&a.key, "OLD")
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {} AFTER DELETE ON {s} FOR EACH ROW BEGIN {guard} {handler} DELETE FROM {o} WHERE {}; END; END IF; END",
            q(&trigger_name(&plan.tag, step, 'r', "d")),
            key_match(&a.key, "OLD")
        ),
    ]
}

/// The conditions a keyed trigger records instead of failing the application's write: every
/// error, and what says a value did not fit as written. 1265 (data truncated) has SQLSTATE 01000,
/// a warning's class, even where strict mode makes it an error, so `SQLEXCEPTION` alone misses it
/// (a value a widened ENUM or SET took failed the application's write). Forward triggers run
/// relaxed, where a value that does not fit is a warning (the row written cut, clamped or
/// emptied): those warnings are listed too. Not `SQLWARNING` as a class: writes into a
/// BLACKHOLE placeholder warn about binary logging, which says nothing of the row.
const REVERSE_CONDITIONS: &str = "SQLEXCEPTION, 1261, 1262, 1265";
const FORWARD_CONDITIONS: &str =
    "SQLEXCEPTION, 1048, 1261, 1262, 1263, 1264, 1265, 1292, 1366, 1406";

/// The handler every keyed trigger opens with: a failed write is recorded against the row (and,
/// for `extra`, more is done) instead of failing the application's write. The reason is the first
/// condition that is not 1364 (a new NOT NULL column's implicit default, which forward triggers
/// accept as the copy does).
fn keyed_handler(
    blocked: &str,
    table: &str,
    key: &[String],
    row: &str,
    extra: &str,
    forward: bool,
) -> String {
    let (conditions, implicit_defaults) = if forward {
        (
            FORWARD_CONDITIONS,
            "DECLARE CONTINUE HANDLER FOR 1364 BEGIN END; ",
        )
    } else {
        (REVERSE_CONDITIONS, "")
    };
    format!(
        "DECLARE why TEXT DEFAULT ''; {implicit_defaults}DECLARE EXIT HANDLER FOR {conditions} BEGIN DECLARE i INT DEFAULT 1; DECLARE n INT DEFAULT 0; DECLARE code INT DEFAULT 0; GET DIAGNOSTICS n = NUMBER; WHILE i <= n DO GET DIAGNOSTICS CONDITION i code = MYSQL_ERRNO, why = MESSAGE_TEXT; IF code <> 1364 THEN SET i = n; END IF; SET i = i + 1; END WHILE; {extra}{}; END;",
        record(blocked, table, key, row, "why")
    )
}

/// Deletes the row keyed like `row` from `target`. Known limit: while `target` is a BLACKHOLE
/// placeholder, the server warns the application's UPDATE and DELETE statements that row events
/// for it are not logged (the warning names the artifact). The warning comes from the tables the
/// triggers may write, opened with the statement, so looking for the row first does not avoid it.
fn delete_found(target: &str, key: &[String], row: &str) -> String {
    format!("DELETE FROM {target} WHERE {}", key_match(key, row))
}

/// Deletes the shadow's row keyed like `row`, which the copy may not have reached yet, without a
/// gap lock. Under REPEATABLE READ a DELETE that finds no row locks the gap where it would be, and
/// two transactions that each delete a key not yet copied and then insert one into that gap (the
/// gap above the copy spans the whole uncopied range) wait for each other: the server ends one
/// with a deadlock (sysbench `oltp_read_write` met it in about one copy in four). So the row is
/// first made to exist, from the application's own row (`INSERT IGNORE`: a row already there is
/// left alone under a record lock, and anything the new schema refuses is ignored, falling back
/// to the plain delete), and then deleted: record locks only, nothing logged when it was there.
fn delete_row(target: &str, key: &[String], cols: &[String], row: &str) -> String {
    format!(
        "BEGIN DECLARE CONTINUE HANDLER FOR SQLEXCEPTION, SQLWARNING BEGIN END; INSERT IGNORE INTO {target} ({}) VALUES ({}); END; {}",
        list(cols),
        prefixed(row, cols),
        delete_found(target, key, row)
    )
}

/// Writes the row `row` into `target`: an INSERT, and on a duplicate an UPDATE by the key (see
/// [`forward_triggers_keyed`]).
fn upsert_row(target: &str, key: &[String], cols: &[String], row: &str) -> String {
    let sets = cols
        .iter()
        .map(|c| format!("{} = {row}.{}", q(c), q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let found = key_match(key, row);
    format!(
        "BEGIN DECLARE dup TEXT DEFAULT NULL; BEGIN DECLARE CONTINUE HANDLER FOR 1062 GET DIAGNOSTICS CONDITION 1 dup = MESSAGE_TEXT; INSERT INTO {target} ({}) VALUES ({}); END; IF dup IS NOT NULL THEN UPDATE {target} SET {sets} WHERE {found}; IF NOT EXISTS (SELECT 1 FROM {target} WHERE {found}) THEN SIGNAL SQLSTATE '23000' SET MESSAGE_TEXT = dup, MYSQL_ERRNO = 1062; END IF; END IF; END",
        list(cols),
        prefixed(row, cols),
    )
}

/// `NOT (OLD.k1 <=> NEW.k1) OR …`
fn key_changed(key: &[String]) -> String {
    key.iter()
        .map(|c| format!("NOT (OLD.{} <=> NEW.{})", q(c), q(c)))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Forward triggers of a plan with keyed blockers (see [`Plan::keyed_blockers`]). An insert is
/// mirrored by an INSERT (the row cannot be in the shadow yet), so a duplicate on a unique key
/// new in the shadow is recorded against the row instead of taking another row's place. An update
/// is an INSERT of the new row (its row may not be copied yet), and when that meets a duplicate,
/// an UPDATE of the row by its key: a value a new unique key refuses fails that UPDATE and is
/// recorded against the row, where a REPLACE took the other row's place (a deploy adding a unique
/// key then failed at its cut-over after updates that left the data unique). A duplicate with no
/// row of that key in the shadow is recorded too.
fn forward_triggers_keyed(plan: &Plan, step: usize, a: &OnlineAlter, blocked: &str) -> Vec<String> {
    let tag = plan.tag.as_str();
    let t = q(&a.table);
    let s = q(&a.shadow);
    let (cols, values) = (list(&a.shared), prefixed("NEW", &a.shared));
    let handler = |row: &str| keyed_handler(blocked, &a.table, &a.key, row, "", true);
    vec![
        format!(
            "CREATE TRIGGER {} AFTER INSERT ON {t} FOR EACH ROW BEGIN {} INSERT INTO {s} ({cols}) VALUES ({values}); {}; END",
            q(&trigger_name(tag, step, 'f', "i")),
            handler("NEW"),
            clear(blocked, &a.key, "NEW"),
        ),
        format!(
            "CREATE TRIGGER {} AFTER UPDATE ON {t} FOR EACH ROW BEGIN {} IF {} THEN {}; END IF; {}; {}; {}; END",
            q(&trigger_name(tag, step, 'f', "u")),
            handler("NEW"),
            key_changed(&a.key),
            delete_row(&s, &a.key, &a.shared, "OLD"),
            // Always: a key changed only in case or trailing spaces is the same key to the
            // server (`<=>`) but another hash here.
            clear(blocked, &a.key, "OLD"),
            upsert_row(&s, &a.key, &a.shared, "NEW"),
            clear(blocked, &a.key, "NEW"),
        ),
        format!(
            "CREATE TRIGGER {} AFTER DELETE ON {t} FOR EACH ROW BEGIN {} {}; {}; END",
            q(&trigger_name(tag, step, 'f', "d")),
            handler("OLD"),
            delete_row(&s, &a.key, &a.shared, "OLD"),
            clear(blocked, &a.key, "OLD"),
        ),
    ]
}

/// After a write into the old table: its columns whose definition changed read back as written,
/// or the row is recorded (a revert would round or cut them); else any record of it is taken
/// back. A row not found (the old table is still a placeholder, before the cut-over) is no verdict.
fn fit_verdict(a: &OnlineAlter, blocked: &str) -> String {
    let key = a.back_key();
    let clear_new = clear(blocked, key, "NEW");
    if a.fit_checks.is_empty() {
        return format!("{clear_new};");
    }
    let misfits = a
        .fit_checks
        .iter()
        .map(|f| {
            let c = q(&f.column);
            let same = if f.textual {
                format!("CONVERT(o.{c} USING utf8mb4) COLLATE utf8mb4_nopad_bin <=> CONVERT(NEW.{c} USING utf8mb4) COLLATE utf8mb4_nopad_bin")
            } else if f.numeric {
                // Not as DOUBLE, which a DECIMAL's digits past its 17th would pass.
                format!("CAST(o.{c} AS DECIMAL(65,30)) <=> CAST(NEW.{c} AS DECIMAL(65,30))")
            } else {
                format!("o.{c} <=> NEW.{c}")
            };
            format!("IF({same}, NULL, '{}')", sql_string(&c))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let on = key
        .iter()
        .map(|c| format!("o.{c} = NEW.{c}", c = q(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "SET misfit = (SELECT NULLIF(CONCAT_WS(', ', {misfits}), '') FROM {} o WHERE {on}); IF misfit IS NULL THEN {clear_new}; ELSE {}; END IF;",
        q(&a.old),
        record(
            blocked,
            &a.table,
            key,
            "NEW",
            "CONCAT('the old schema cannot hold a value written since the deploy exactly (column ', misfit, ')')"
        )
    )
}

/// Reverse triggers of a plan with keyed blockers (see [`Plan::keyed_blockers`]). A row missing
/// from the old table (its insert was refused) is inserted by a later update that fits.
fn reverse_triggers_keyed(plan: &Plan, step: usize, a: &OnlineAlter) -> Vec<String> {
    // Rows of the old table are matched by its key and the new table's key columns: the old key
    // alone may be shared by two rows of the new table.
    let key = a.back_key();
    let blocked = plan.revert_blocked_for(step);
    let s = q(&a.shadow);
    let o = q(&a.old);
    let cols = list(a.back_columns());
    let insert = format!(
        "INSERT INTO {o} ({cols}) VALUES ({})",
        prefixed("NEW", a.back_columns())
    );
    let sets = a
        .back_columns()
        .iter()
        .map(|c| format!("{} = NEW.{}", q(c), q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let guard = format!("IF {NOT_COPYING} THEN BEGIN DECLARE misfit TEXT DEFAULT NULL;");
    let verdict = fit_verdict(a, &blocked);
    // An update moving the row to another key that the old table refuses: the row at the old
    // key is gone from the application's table, so it goes from the old table too.
    let moved = format!(
        "IF {} THEN {}; END IF; {}; ",
        key_changed(key),
        delete_found(&o, key, "OLD"),
        clear(&blocked, key, "OLD")
    );
    vec![
        format!(
            "CREATE TRIGGER IF NOT EXISTS {} AFTER INSERT ON {s} FOR EACH ROW BEGIN {guard} {} {insert}; {verdict} END; END IF; END",
            q(&trigger_name(&plan.tag, step, 'r', "i")),
            keyed_handler(&blocked, &a.table, key, "NEW", "", false),
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {} AFTER UPDATE ON {s} FOR EACH ROW BEGIN {guard} {} {}; UPDATE {o} SET {sets} WHERE {}; IF ROW_COUNT() = 0 AND NOT EXISTS (SELECT 1 FROM {o} WHERE {}) THEN {insert}; END IF; {verdict} END; END IF; END",
            q(&trigger_name(&plan.tag, step, 'r', "u")),
            keyed_handler(&blocked, &a.table, key, "NEW", &moved, false),
            clear(&blocked, key, "OLD"),
            key_match(key, "OLD"),
            key_match(key, "NEW"),
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS {} AFTER DELETE ON {s} FOR EACH ROW BEGIN {guard} {} {}; {}; END; END IF; END",
            q(&trigger_name(&plan.tag, step, 'r', "d")),
            keyed_handler(&blocked, &a.table, key, "OLD", "", false),
            delete_found(&o, key, "OLD"),
            clear(&blocked, key, "OLD"),
        ),
    ]
}

/// Builds the keys left out of the shadow during the copy (those not there yet).
pub fn add_deferred_keys(a: &OnlineAlter, present: &[String]) -> Option<String> {
    let adds: Vec<String> = a
        .deferred_keys
        .iter()
        .filter(|(name, _)| !present.contains(name))
        .map(|(_, def)| format!("ADD {def}"))
        .collect();
    if adds.is_empty() {
        return None;
    }
    Some(format!(
        "ALTER TABLE {} {}, ALGORITHM=INPLACE, LOCK=NONE",
        q(&a.shadow),
        adds.join(", ")
    ))
}

/// `key > (literals)` in expanded form (`a > x OR (a = x AND b > y)`), which the optimizer turns
/// into a range on the key's index.
pub fn key_after(key: &[String], literals: &[String], inclusive: bool) -> String {
    let cols: Vec<String> = key.iter().map(|c| q(c)).collect();
    after_rendered(&cols, literals, inclusive)
}

fn after_rendered(cols: &[String], literals: &[String], inclusive: bool) -> String {
    let mut ors = Vec::new();
    for i in 0..cols.len() {
        let mut ands: Vec<String> = (0..i)
            .map(|j| format!("{} = {}", cols[j], literals[j]))
            .collect();
        let op = if i + 1 == cols.len() && inclusive {
            ">="
        } else {
            ">"
        };
        ands.push(format!("{} {op} {}", cols[i], literals[i]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    ors.join(" OR ")
}

pub fn key_at_most(key: &[String], literals: &[String]) -> String {
    format!("NOT ({})", key_after(key, literals, false))
}

/// The conditions of the key range (after, until] on columns named `alias.key` (or bare).
fn range_conditions(
    key: &[String],
    alias: Option<&str>,
    after: Option<&[String]>,
    until: Option<&[String]>,
) -> Vec<String> {
    let cols: Vec<String> = key
        .iter()
        .map(|c| match alias {
            Some(a) => format!("{a}.{}", q(c)),
            None => q(c),
        })
        .collect();
    let mut conds = Vec::new();
    if let Some(l) = after {
        conds.push(format!("({})", after_rendered(&cols, l, false)));
    }
    if let Some(l) = until {
        conds.push(format!("NOT ({})", after_rendered(&cols, l, false)));
    }
    conds
}

fn where_all(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    }
}

fn force(a: &OnlineAlter) -> String {
    format!("FORCE INDEX ({})", q(&a.key_index))
}

/// The key of the row `n` rows after `after` within the range ending at `to` (the end of the next
/// chunk), if there is one.
pub fn chunk_end(
    a: &OnlineAlter,
    after: Option<&[String]>,
    to: Option<&[String]>,
    n: u64,
) -> String {
    let filter = where_all(&range_conditions(&a.key, None, after, to));
    format!(
        "SELECT {} FROM {} {} {filter} ORDER BY {} LIMIT 1 OFFSET {}",
        list(&a.key),
        q(&a.table),
        force(a),
        list(&a.key),
        n.saturating_sub(1)
    )
}

/// The number of rows with key in (after, to] (a consistent read, no locks): the copy's exact
/// total up front, and what is left of a range when the estimate is refined. The whole table is
/// counted along whichever index the server finds smallest (a secondary key counts 1M rows in
/// half the time of the clustered one), a range along the key.
pub fn count_range(a: &OnlineAlter, after: Option<&[String]>, to: Option<&[String]>) -> String {
    if after.is_none() && to.is_none() {
        return format!("SELECT COUNT(*) FROM {}", q(&a.table));
    }
    let filter = where_all(&range_conditions(&a.key, None, after, to));
    format!("SELECT COUNT(*) FROM {} {} {filter}", q(&a.table), force(a))
}

/// Copies the rows with key in (after, until] (open ends when `None`). `LOCK IN SHARE MODE` holds the
/// source rows until the chunk commits, so a concurrent write either lands before the copy (and is
/// copied) or after it (and its trigger overwrites the copy). `SKIP LOCKED` passes over rows an
/// application transaction holds: the copy never requests a lock it would wait for, so InnoDB's
/// deadlock detector never finds a cycle through it (whose victim, the lighter transaction, would
/// be the application's; a no-wait attempt without it was tried and did exactly that); those rows
/// are copied afterwards, one by one (see [`missing_keys`], [`copy_one`]).
pub fn copy_chunk(a: &OnlineAlter, after: Option<&[String]>, until: Option<&[String]>) -> String {
    let filter = where_all(&range_conditions(&a.key, None, after, until));
    format!(
        "INSERT IGNORE INTO {} ({cols}) SELECT {cols} FROM {} {} {filter} LOCK IN SHARE MODE SKIP LOCKED",
        q(&a.shadow),
        q(&a.table),
        force(a),
        cols = list(&a.shared),
    )
}

/// 1 when the old table and the shadow hold as many rows in the key range (after, until], read in
/// one statement (one view of what is committed, no locks).
pub fn same_count(a: &OnlineAlter, after: Option<&[String]>, until: Option<&[String]>) -> String {
    let filter = where_all(&range_conditions(&a.key, None, after, until));
    format!(
        "SELECT (SELECT COUNT(*) FROM {} {} {filter}) = (SELECT COUNT(*) FROM {} {filter})",
        q(&a.table),
        force(a),
        q(&a.shadow),
    )
}

/// The keys (up to `limit`) of rows of the range that the old table has and the shadow lacks.
pub fn missing_keys(
    a: &OnlineAlter,
    after: Option<&[String]>,
    until: Option<&[String]>,
    limit: u64,
) -> String {
    let on = a
        .key
        .iter()
        .map(|c| format!("o.{c} = s.{c}", c = q(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut conds = range_conditions(&a.key, Some("o"), after, until);
    conds.push(format!("s.{} IS NULL", q(&a.key[0])));
    format!(
        "SELECT {} FROM {} o LEFT JOIN {} s ON {on} {} LIMIT {limit}",
        prefixed("o", &a.key),
        q(&a.table),
        q(&a.shadow),
        where_all(&conds)
    )
}

/// Copies the one row with the given key (`SKIP LOCKED`: nothing while a transaction holds it).
pub fn copy_one(a: &OnlineAlter, key: &[String]) -> String {
    let cond = a
        .key
        .iter()
        .zip(key)
        .map(|(c, v)| format!("{} = {v}", q(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!(
        "INSERT IGNORE INTO {} ({cols}) SELECT {cols} FROM {} WHERE {cond} LOCK IN SHARE MODE SKIP LOCKED",
        q(&a.shadow),
        q(&a.table),
        cols = list(&a.shared),
    )
}

/// The row count and the XOR, over the rows of the key range (after, until] of the old table
/// (`shadow` false) or of the shadow, of each row's CRC32 (over its key and compared columns) times
/// an odd constant; read with shared locks when `locking`. XOR makes it order-free; the product
/// (exact in 64 bits, so one-to-one) breaks CRC32's linearity, under which two rows changed the
/// same way would cancel out. A row is written as `len#value#…#nulls` (`CONCAT_WS` skips `NULL`s;
/// the trailing `ISNULL` flags say which), so no two different rows give the same text.
pub fn checksum(
    a: &OnlineAlter,
    shadow: bool,
    after: Option<&[String]>,
    until: Option<&[String]>,
    locking: bool,
) -> String {
    let mut cols: Vec<&String> = a.key.iter().collect();
    cols.extend(a.compared.iter().filter(|c| !a.key.contains(c)));
    let values = cols
        .iter()
        .map(|c| format!("LENGTH({c}), {c}", c = q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let nulls = cols
        .iter()
        .map(|c| format!("ISNULL({})", q(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let hash = format!("CRC32(CONCAT_WS('#', {values}, CONCAT({nulls}))) * 2654435761");
    // The old table's key index by name; the shadow has only its unique keys during the copy, and
    // the range on the key picks its index.
    let from = if shadow {
        q(&a.shadow)
    } else {
        format!("{} {}", q(&a.table), force(a))
    };
    format!(
        "SELECT COUNT(*), COALESCE(BIT_XOR({hash}), 0) FROM {from} {}{}",
        where_all(&range_conditions(&a.key, None, after, until)),
        if locking { " LOCK IN SHARE MODE" } else { "" }
    )
}

/// Rows of the old table missing from the shadow or differing in a compared column, and rows of the
/// shadow missing from the old table, in the key range (after, until].
pub fn differences(
    a: &OnlineAlter,
    after: Option<&[String]>,
    until: Option<&[String]>,
) -> [String; 2] {
    let on = a
        .key
        .iter()
        .map(|c| format!("o.{c} = s.{c}", c = q(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut differs = vec![format!("s.{} IS NULL", q(&a.key[0]))];
    differs.extend(
        a.compared
            .iter()
            .map(|c| format!("NOT (o.{c} <=> s.{c})", c = q(c))),
    );
    let mut missing = range_conditions(&a.key, Some("o"), after, until);
    missing.push(format!("({})", differs.join(" OR ")));
    let mut extra = range_conditions(&a.key, Some("s"), after, until);
    extra.push(format!("o.{} IS NULL", q(&a.key[0])));
    [
        format!(
            "SELECT COUNT(*) FROM {} o LEFT JOIN {} s ON {on} {}",
            q(&a.table),
            q(&a.shadow),
            where_all(&missing)
        ),
        format!(
            "SELECT COUNT(*) FROM {} s LEFT JOIN {} o ON {on} {}",
            q(&a.shadow),
            q(&a.table),
            where_all(&extra)
        ),
    ]
}

/// The cut-over's (from, to) pairs in the order they are applied, grouped by table of the
/// application: each group moves one table and its artifacts; the marker moves with the last.
pub fn cutover_groups(plan: &Plan) -> Vec<Vec<(String, String)>> {
    let mut groups = Vec::new();
    for s in &plan.steps {
        match s {
            Step::AlterTable(a) => groups.push(vec![
                (a.old.clone(), a.aside.clone()),
                (a.table.clone(), a.old.clone()),
                (a.shadow.clone(), a.table.clone()),
                (a.stub.clone(), a.shadow.clone()),
            ]),
            Step::CreateTable { table, staged, .. } => {
                groups.push(vec![(staged.clone(), table.clone())])
            }
            Step::DropTable { table, aside, .. } => {
                groups.push(vec![(table.clone(), aside.clone())])
            }
            Step::DirectAlter { .. } | Step::View { .. } => {}
        }
    }
    with_marker(plan, groups, Mark::Before, Mark::Swapped)
}

/// Every pair of the cut-over, in order.
pub fn cutover_pairs(plan: &Plan) -> Vec<(String, String)> {
    cutover_groups(plan).concat()
}

fn with_marker(
    plan: &Plan,
    mut groups: Vec<Vec<(String, String)>>,
    from: Mark,
    to: Mark,
) -> Vec<Vec<(String, String)>> {
    if plan.marked {
        let pair = (plan.marker(from), plan.marker(to));
        match groups.last_mut() {
            Some(last) => last.push(pair),
            None => groups.push(vec![pair]),
        }
    }
    groups
}

/// The RENAMEs still to run when the first `done` pairs of `groups` took effect: one statement per
/// group. A RENAME of several application tables takes their metadata locks one by one and holds
/// those it has while it waits for the next; a transaction holding that next table and then
/// touching one already taken closed a cycle, and MariaDB's deadlock detector ended the
/// application's transaction (error 1213), never the DDL. One table per RENAME waits holding no
/// other table, as Vitess cuts over each table on its own.
pub fn renames_from(groups: &[Vec<(String, String)>], done: usize) -> Vec<String> {
    let mut skip = done;
    let mut out = Vec::new();
    for g in groups {
        if skip >= g.len() {
            skip -= g.len();
            continue;
        }
        out.extend(rename(&g[skip..]));
        skip = 0;
    }
    out
}

/// The marker table: a tiny InnoDB table whose name says where the deployment's tables are. It
/// takes part in every RENAME of the deployment, so it moves atomically with them.
pub fn marker_table(plan: &Plan) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (`id` TINYINT NOT NULL PRIMARY KEY) ENGINE=InnoDB",
        q(&plan.marker(Mark::Before))
    )
}

/// The revert's pairs, grouped by table like the cut-over's: the old tables back under their
/// names, the new ones aside.
pub fn revert_groups(plan: &Plan) -> Vec<Vec<(String, String)>> {
    let mut groups = Vec::new();
    for s in &plan.steps {
        match s {
            Step::AlterTable(a) => groups.push(vec![
                (a.table.clone(), a.reverted.clone()),
                (a.old.clone(), a.table.clone()),
            ]),
            Step::CreateTable { table, staged, .. } => {
                groups.push(vec![(table.clone(), staged.clone())])
            }
            Step::DropTable { table, aside, .. } => {
                groups.push(vec![(aside.clone(), table.clone())])
            }
            Step::DirectAlter { .. } | Step::View { .. } => {}
        }
    }
    with_marker(plan, groups, Mark::Swapped, Mark::Reverted)
}

/// Every pair of the revert, in order.
pub fn revert_pairs(plan: &Plan) -> Vec<(String, String)> {
    revert_groups(plan).concat()
}

/// How many of the pairs took effect, judged from which of their names exist now. They run as one
/// RENAME per group, so a stop between two leaves a prefix done; so does a server stopped in the
/// middle of one RENAME (seen with a shutdown): the rest must follow. `None` when no prefix
/// explains the names (something else changed them).
pub fn renames_done(pairs: &[(String, String)], exists: impl Fn(&str) -> bool) -> Option<usize> {
    let names: std::collections::BTreeSet<&str> = pairs
        .iter()
        .flat_map(|(a, b)| [a.as_str(), b.as_str()])
        .collect();
    // Before the first pair: every source exists, except names only ever made by an earlier pair.
    let mut present: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for (i, (from, _)) in pairs.iter().enumerate() {
        if !pairs[..i].iter().any(|(_, to)| to == from) {
            present.insert(from.as_str());
        }
    }
    for k in 0..=pairs.len() {
        if names.iter().all(|n| present.contains(n) == exists(n)) {
            return Some(k);
        }
        if let Some((from, to)) = pairs.get(k) {
            present.remove(from.as_str());
            present.insert(to.as_str());
        }
    }
    None
}

fn rename(pairs: &[(String, String)]) -> Option<String> {
    if pairs.is_empty() {
        return None;
    }
    Some(format!(
        "RENAME TABLE {}",
        pairs
            .iter()
            .map(|(a, b)| format!("{} TO {}", q(a), q(b)))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `CREATE VIEW …` as the server printed it, made idempotent.
pub fn create_or_replace(view_create: &str) -> String {
    let st = with_definer(view_create);
    match st.strip_prefix("CREATE ") {
        Some(rest) if !rest.starts_with("OR REPLACE ") => format!("CREATE OR REPLACE {rest}"),
        _ => st,
    }
}

/// A view's statement with a definer: schemas carry views without one, and a view made by the
/// deploy's own user would run (SQL SECURITY DEFINER) with that user's rights over the whole
/// server. The database's admin role user, which made it on the branch, defines it here too.
fn with_definer(view_create: &str) -> String {
    let Some(view) = view_create.find(" VIEW ") else {
        return view_create.to_string();
    };
    let head = &view_create[..view];
    if head.contains(" DEFINER=") {
        return view_create.to_string();
    }
    let at = head.find(" SQL SECURITY ").unwrap_or(view);
    format!(
        "{} DEFINER={}@{}{}",
        &view_create[..at],
        q(&strata_model::Role::Admin.internal_user()),
        q(strata_engine::config::INTERNAL_HOST),
        &view_create[at..]
    )
}

/// `DROP VIEW x` made idempotent.
pub fn drop_view_if_exists(statement: &str) -> String {
    match statement.strip_prefix("DROP VIEW ") {
        Some(rest) if !rest.starts_with("IF EXISTS ") => format!("DROP VIEW IF EXISTS {rest}"),
        _ => statement.to_string(),
    }
}

/// The ALTER of an instant deploy: the diff's statement with `ALGORITHM=INSTANT`, optionally on
/// another table (a probe).
pub fn instant_alter(a: &OnlineAlter, on: Option<&str>) -> String {
    let head = format!("ALTER TABLE {} ", q(&a.table));
    let body = a.statement.strip_prefix(&head).unwrap_or(&a.statement);
    format!(
        "ALTER TABLE {} {body}, ALGORITHM=INSTANT",
        q(on.unwrap_or(&a.table))
    )
}

/// The first row of `table` whose foreign key `fk` has no parent row: all of the key's columns are
/// set (a NULL in any is never checked) and no row of the referenced table matches. With
/// `parent_is_new` the referenced table is created by the same deploy (empty): any set key is one.
/// Selects the key's columns, as text.
pub fn first_orphan(
    table: &str,
    fk: &strata_schema::ForeignKeyParts,
    parent_is_new: bool,
) -> String {
    first_orphan_as(table, fk, parent_is_new, "p")
}

/// [`first_orphan`] reading the referenced table under the alias `parent` (a table held with
/// `LOCK TABLES` is read only under the aliases it was locked with).
pub fn first_orphan_as(
    table: &str,
    fk: &strata_schema::ForeignKeyParts,
    parent_is_new: bool,
    parent: &str,
) -> String {
    let set: Vec<String> = fk
        .columns
        .iter()
        .map(|c| format!("c.{} IS NOT NULL", q(c)))
        .collect();
    let cols: Vec<String> = fk
        .columns
        .iter()
        .map(|c| format!("CAST(c.{} AS CHAR)", q(c)))
        .collect();
    let missing = if parent_is_new {
        String::new()
    } else {
        let on: Vec<String> = fk
            .columns
            .iter()
            .zip(&fk.referenced)
            .map(|(c, r)| format!("{parent}.{} = c.{}", q(r), q(c)))
            .collect();
        format!(
            " AND NOT EXISTS (SELECT 1 FROM {} {parent} WHERE {})",
            q(&fk.table),
            on.join(" AND ")
        )
    };
    format!(
        "SELECT {} FROM {} c WHERE {}{missing} LIMIT 1",
        cols.join(", "),
        q(table),
        set.join(" AND ")
    )
}

/// The locks under which `table`'s new foreign keys are checked again and added: the table itself
/// (changed), the same table as `c` (read by the check) and each key's referenced table under the
/// alias `p<i>`, `i` its position in `parents` (`None`: created by the same deploy, not read).
pub fn orphan_check_lock(table: &str, parents: &[Option<&str>]) -> String {
    let mut locks = vec![
        format!("{} WRITE", q(table)),
        format!("{} AS c READ", q(table)),
    ];
    for (i, p) in parents.iter().enumerate() {
        if let Some(p) = p {
            locks.push(format!("{} AS p{i} READ", q(p)));
        }
    }
    format!("LOCK TABLES {}", locks.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan;
    use crate::plan::tests::schema;
    use strata_schema::changes;

    fn alter() -> (Plan, OnlineAlter) {
        let a = schema(&["CREATE TABLE `t` (\n  `a` int(11) NOT NULL,\n  `b` int(11) NOT NULL,\n  `v` varchar(10) DEFAULT NULL,\n  PRIMARY KEY (`a`,`b`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]);
        let b = schema(&["CREATE TABLE `t` (\n  `a` int(11) NOT NULL,\n  `b` int(11) NOT NULL,\n  `v` varchar(20) DEFAULT NULL,\n  `w` int(11) DEFAULT NULL,\n  PRIMARY KEY (`a`,`b`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]);
        let p = plan("abcdef01", &a, &b, &changes(&a, &b).unwrap()).unwrap();
        let alter = p.online_alters().next().unwrap().clone();
        (p, alter)
    }

    #[test]
    fn composite_key_ranges() {
        let k = vec!["a".to_string(), "b".to_string()];
        let l = vec!["1".to_string(), "'x'".to_string()];
        assert_eq!(
            key_after(&k, &l, false),
            "(`a` > 1) OR (`a` = 1 AND `b` > 'x')"
        );
        assert_eq!(
            key_at_most(&k, &l),
            "NOT ((`a` > 1) OR (`a` = 1 AND `b` > 'x'))"
        );
    }

    #[test]
    fn statements() {
        let (p, a) = alter();
        assert_eq!(a.shared, ["a", "b", "v"]);
        let end = chunk_end(
            &a,
            Some(&["1".into(), "2".into()]),
            Some(&["7".into(), "0".into()]),
            100,
        );
        assert!(end.ends_with("WHERE ((`a` > 1) OR (`a` = 1 AND `b` > 2)) AND NOT ((`a` > 7) OR (`a` = 7 AND `b` > 0)) ORDER BY `a`, `b` LIMIT 1 OFFSET 99"), "{end}");
        let copy = copy_chunk(&a, Some(&["1".into(), "2".into()]), None);
        assert!(copy.starts_with(&format!("INSERT IGNORE INTO `{}` (`a`, `b`, `v`) SELECT `a`, `b`, `v` FROM `t` FORCE INDEX (`PRIMARY`) WHERE ((`a` > 1) OR (`a` = 1 AND `b` > 2))", a.shadow)), "{copy}");
        let f = forward_triggers(&p, 0, &a);
        assert!(
            f[0].contains("DECLARE EXIT HANDLER FOR SQLEXCEPTION")
                && f[0].contains("_0_deploy_blocked"),
            "{}",
            f[0]
        );
        // A key moved: the old row is made to exist (no gap lock), then deleted.
        assert!(
            f[1].contains(&format!("IF NOT (OLD.`a` <=> NEW.`a`) OR NOT (OLD.`b` <=> NEW.`b`) THEN BEGIN DECLARE CONTINUE HANDLER FOR SQLEXCEPTION, SQLWARNING BEGIN END; INSERT IGNORE INTO `{s}` (`a`, `b`, `v`) VALUES (OLD.`a`, OLD.`b`, OLD.`v`); END; DELETE FROM `{s}` WHERE `a` = OLD.`a` AND `b` = OLD.`b`; END IF", s = a.shadow)),
            "{}",
            f[1]
        );
        assert!(
            f[2].contains(&format!("INSERT IGNORE INTO `{s}` (`a`, `b`, `v`) VALUES (OLD.`a`, OLD.`b`, OLD.`v`); END; DELETE FROM `{s}` WHERE `a` = OLD.`a` AND `b` = OLD.`b`", s = a.shadow)),
            "{}",
            f[2]
        );
        let r = reverse_triggers(&p, 0, &a);
        assert!(r[1].contains(&format!("UPDATE `{}` SET `a` = NEW.`a`, `b` = NEW.`b`, `v` = NEW.`v` WHERE `a` = OLD.`a` AND `b` = OLD.`b`", a.old)));
        assert!(r[0].contains("DECLARE EXIT HANDLER FOR SQLEXCEPTION"));
        assert_eq!(
            renames_from(&cutover_groups(&p), 0),
            vec![format!(
                "RENAME TABLE `{}` TO `{}`, `t` TO `{}`, `{}` TO `t`, `{}` TO `{}`, `{}` TO `{}`",
                a.old,
                a.aside,
                a.old,
                a.shadow,
                a.stub,
                a.shadow,
                p.marker(Mark::Before),
                p.marker(Mark::Swapped)
            )]
        );
        assert_eq!(
            renames_from(&revert_groups(&p), 0),
            vec![format!(
                "RENAME TABLE `t` TO `{}`, `{}` TO `t`, `{}` TO `{}`",
                a.reverted,
                a.old,
                p.marker(Mark::Swapped),
                p.marker(Mark::Reverted)
            )]
        );
        // The marker moves with every RENAME, even of a plan without tables to swap.
        let views_only = Plan {
            tag: "00000009".into(),
            steps: Vec::new(),
            marked: true,
            blocked_per_table: true,
            target_digest: None,
            digest_leaves_out_in_place: false,
            forward_guarded: true,
            keyed_blockers: true,
        };
        assert_eq!(
            renames_from(&cutover_groups(&views_only), 0),
            vec!["RENAME TABLE `~strata_00000009_mark_before` TO `~strata_00000009_mark_swapped`"]
        );
        assert_eq!(
            instant_alter(&a, Some("probe")),
            "ALTER TABLE `probe` MODIFY COLUMN `v` varchar(20) DEFAULT NULL AFTER `b`, ADD COLUMN `w` int(11) DEFAULT NULL AFTER `v`, ALGORITHM=INSTANT"
        );
        let sum = checksum(&a, false, None, Some(&["7".into(), "0".into()]), true);
        assert!(sum.starts_with("SELECT COUNT(*), COALESCE(BIT_XOR(CRC32(CONCAT_WS('#', LENGTH(`a`), `a`, LENGTH(`b`), `b`"), "{sum}");
        assert!(sum.contains(")) * 2654435761), 0) FROM"), "{sum}");
        assert!(sum.ends_with(" FROM `t` FORCE INDEX (`PRIMARY`) WHERE NOT ((`a` > 7) OR (`a` = 7 AND `b` > 0)) LOCK IN SHARE MODE"), "{sum}");
        let [missing, extra] = differences(&a, Some(&["1".into(), "2".into()]), None);
        assert!(
            missing.contains("WHERE ((o.`a` > 1) OR (o.`a` = 1 AND o.`b` > 2)) AND (s.`a` IS NULL"),
            "{missing}"
        );
        assert!(
            extra.ends_with("WHERE ((s.`a` > 1) OR (s.`a` = 1 AND s.`b` > 2)) AND o.`a` IS NULL"),
            "{extra}"
        );
        assert_eq!(
            placeholder("x", &["a".into()]),
            "CREATE TABLE `x` (`a` LONGBLOB NULL) ENGINE=BLACKHOLE"
        );
    }

    fn r_delete_guarded(trigger: &str, target: &str) -> bool {
        trigger.contains(&format!(
            "DELETE FROM `{target}` WHERE `a` = OLD.`a` AND `b` = OLD.`b`"
        ))
    }

    #[test]
    fn keyed_triggers_record_rows_and_check_what_a_revert_reads_back() {
        let (p, a) = alter();
        assert!(p.keyed_blockers);
        // `v` changed (varchar 10 → 20); `a` and `b` did not; `w` is new.
        assert_eq!(
            a.fit_checks,
            [crate::plan::FitCheck {
                column: "v".into(),
                textual: true,
                numeric: false,
            }]
        );
        let f = forward_triggers(&p, 0, &a);
        let key =
            "UNHEX(SHA2(CONCAT_WS('#', LENGTH(NEW.`a`), NEW.`a`, LENGTH(NEW.`b`), NEW.`b`), 256))";
        assert!(
            f[0].contains(&format!(
                "INSERT INTO `{}` (`a`, `b`, `v`) VALUES (NEW.`a`, NEW.`b`, NEW.`v`)",
                a.shadow
            )),
            "{}",
            f[0]
        );
        assert!(
            !f[0].contains("REPLACE INTO `~strata_abcdef01_0_new"),
            "{}",
            f[0]
        );
        // Recorded in place, taken back by emptying the reason: a record is never deleted.
        assert!(f[0].contains(&format!("INSERT INTO `~strata_abcdef01_0_deploy_blocked` (`row_key`, `table_name`, `reason`) VALUES ({key}, 't', IF(why = '', 'refused', why)) ON DUPLICATE KEY UPDATE")), "{}", f[0]);
        assert!(f[0].contains(&format!("IF EXISTS (SELECT 1 FROM `~strata_abcdef01_0_deploy_blocked` WHERE `row_key` = {key} AND `reason` <> '') THEN UPDATE `~strata_abcdef01_0_deploy_blocked` SET `reason` = ''")), "{}", f[0]);
        assert!(!f
            .concat()
            .contains("DELETE FROM `~strata_abcdef01_0_deploy_blocked`"));
        // An update never replaces another row of the shadow: INSERT, then UPDATE by the key.
        assert!(
            !f[1].contains("REPLACE INTO `~strata_abcdef01_0_new"),
            "{}",
            f[1]
        );
        assert!(f[1].contains(&format!("DECLARE CONTINUE HANDLER FOR 1062 GET DIAGNOSTICS CONDITION 1 dup = MESSAGE_TEXT; INSERT INTO `{s}` (`a`, `b`, `v`) VALUES (NEW.`a`, NEW.`b`, NEW.`v`); END; IF dup IS NOT NULL THEN UPDATE `{s}` SET `a` = NEW.`a`, `b` = NEW.`b`, `v` = NEW.`v` WHERE `a` = NEW.`a` AND `b` = NEW.`b`", s = a.shadow)), "{}", f[1]);
        assert!(f[2].contains("LENGTH(OLD.`a`)"), "{}", f[2]);
        // The old row goes by the reverse match key.
        assert!(
            r_delete_guarded(&reverse_triggers(&p, 0, &a)[2], &a.old),
            "{}",
            reverse_triggers(&p, 0, &a)[2]
        );
        let r = reverse_triggers(&p, 0, &a);
        assert!(r[0].contains("CONVERT(o.`v` USING utf8mb4) COLLATE utf8mb4_nopad_bin <=> CONVERT(NEW.`v` USING utf8mb4) COLLATE utf8mb4_nopad_bin"), "{}", r[0]);
        assert!(
            r[1].contains("IF ROW_COUNT() = 0 AND NOT EXISTS"),
            "{}",
            r[1]
        );
        assert!(
            r[1].contains(&format!(
                "DELETE FROM `{}` WHERE `a` = OLD.`a` AND `b` = OLD.`b`",
                a.old
            )),
            "{}",
            r[1]
        );
        assert!(revert_blocked_tables(&p)
            .iter()
            .filter(|t| t.starts_with("CREATE"))
            .all(|t| t.contains("`row_key` BINARY(32) NOT NULL PRIMARY KEY")));
        assert!(revert_blocked_tables(&p)
            .iter()
            .any(|t| t.contains("FROM seq_0_to_4095")));
        // Plans stored before keep their triggers' text.
        let old = Plan {
            keyed_blockers: false,
            ..p.clone()
        };
        assert!(forward_triggers(&old, 0, &a)[0].contains("REPLACE INTO"));
        assert!(!reverse_triggers(&old, 0, &a)[0].contains("misfit"));
    }

    #[test]
    fn an_interrupted_rename_is_finished_from_where_it_stopped() {
        let p = |a: &str, b: &str| (a.to_string(), b.to_string());
        // The cut-over's chain: placeholder aside, table to old, shadow to table, stub to shadow.
        let pairs = vec![
            p("old", "hold"),
            p("t", "old"),
            p("shadow", "t"),
            p("stub", "shadow"),
            p("mark_before", "mark_after"),
        ];
        let state = |names: &[&str]| {
            let set: std::collections::BTreeSet<String> =
                names.iter().map(|s| s.to_string()).collect();
            move |n: &str| set.contains(n)
        };
        let cases: &[(&[&str], Option<usize>)] = &[
            (&["old", "t", "shadow", "stub", "mark_before"], Some(0)),
            (&["hold", "t", "shadow", "stub", "mark_before"], Some(1)),
            (&["hold", "old", "shadow", "stub", "mark_before"], Some(2)),
            (&["hold", "old", "t", "stub", "mark_before"], Some(3)),
            (&["hold", "old", "t", "shadow", "mark_before"], Some(4)),
            (&["hold", "old", "t", "shadow", "mark_after"], Some(5)),
            // Not a prefix of the chain: someone else renamed or dropped tables.
            (&["old", "t", "stub", "mark_before"], None),
            (
                &["hold", "old", "t", "shadow", "mark_before", "mark_after"],
                None,
            ),
        ];
        for (names, want) in cases {
            assert_eq!(renames_done(&pairs, state(names)), *want, "{names:?}");
        }
        // One RENAME per table: the rest of the group the stop fell in, then the next groups.
        let groups = vec![
            pairs[..4].to_vec(),
            vec![p("new", "t2")],
            vec![p("t3", "aside"), pairs[4].clone()],
        ];
        let all = |d| renames_from(&groups, d);
        assert_eq!(
            all(1),
            vec![
                "RENAME TABLE `t` TO `old`, `shadow` TO `t`, `stub` TO `shadow`",
                "RENAME TABLE `new` TO `t2`",
                "RENAME TABLE `t3` TO `aside`, `mark_before` TO `mark_after`",
            ]
        );
        assert_eq!(all(4).len(), 2);
        assert_eq!(
            all(5),
            vec!["RENAME TABLE `t3` TO `aside`, `mark_before` TO `mark_after`"]
        );
        assert_eq!(all(6), vec!["RENAME TABLE `mark_before` TO `mark_after`"]);
        assert!(all(7).is_empty());
    }

    #[test]
    fn views_made_idempotent() {
        assert_eq!(
            create_or_replace("CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v` AS select 1"),
            "CREATE OR REPLACE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v` AS select 1"
        );
        // Without a definer (as schemas carry views), the admin role user's.
        assert_eq!(
            create_or_replace("CREATE ALGORITHM=UNDEFINED SQL SECURITY DEFINER VIEW `v` AS select 1"),
            "CREATE OR REPLACE ALGORITHM=UNDEFINED DEFINER=`strata_admin`@`127.0.0.1` SQL SECURITY DEFINER VIEW `v` AS select 1"
        );
        assert_eq!(
            create_or_replace("CREATE OR REPLACE VIEW `v` AS select ' VIEW ' AS `x`"),
            "CREATE OR REPLACE DEFINER=`strata_admin`@`127.0.0.1` VIEW `v` AS select ' VIEW ' AS `x`"
        );
        assert_eq!(
            drop_view_if_exists("DROP VIEW `v`"),
            "DROP VIEW IF EXISTS `v`"
        );
    }

    #[test]
    fn first_orphan_checks_set_keys_against_the_parent() {
        let fk = strata_schema::ForeignKeyParts {
            columns: vec!["user_id".into(), "org".into()],
            table: "users".into(),
            referenced: vec!["id".into(), "org".into()],
        };
        assert_eq!(
            first_orphan("orders", &fk, false),
            "SELECT CAST(c.`user_id` AS CHAR), CAST(c.`org` AS CHAR) FROM `orders` c WHERE c.`user_id` IS NOT NULL AND c.`org` IS NOT NULL AND NOT EXISTS (SELECT 1 FROM `users` p WHERE p.`id` = c.`user_id` AND p.`org` = c.`org`) LIMIT 1"
        );
        assert_eq!(
            first_orphan("orders", &fk, true),
            "SELECT CAST(c.`user_id` AS CHAR), CAST(c.`org` AS CHAR) FROM `orders` c WHERE c.`user_id` IS NOT NULL AND c.`org` IS NOT NULL LIMIT 1"
        );
        assert!(first_orphan_as("orders", &fk, false, "p1")
            .contains("FROM `users` p1 WHERE p1.`id` = c.`user_id`"));
        assert_eq!(
            orphan_check_lock("orders", &[Some("users"), None, Some("orders")]),
            "LOCK TABLES `orders` WRITE, `orders` AS c READ, `users` AS p0 READ, `orders` AS p2 READ"
        );
    }
}
