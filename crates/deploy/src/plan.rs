//! What a deployment does, decided before it touches anything: one step per changed table or view,
//! with the names of every artifact it will create. Pure: the plan is computed from the target's
//! schema and the schema it should have, stored in the catalog, and replayed after a restart.

use serde::{Deserialize, Serialize};
use strata_schema::lint::{key_columns, row_identifying_keys};
use strata_schema::{
    create_table_named, inherits_charset, is_character_type, table_charset, Change, Schema, Table,
};

/// Every artifact (shadow tables, placeholders, tables set aside, triggers) starts with this.
pub use strata_engine::admin::{ARTIFACT_PREFIX, LEGACY_ARTIFACT_PREFIX};

/// True for names of tables and triggers a deployment made (hidden from branch schemas).
pub fn is_artifact(name: &str) -> bool {
    strata_engine::admin::is_artifact(name)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Eight hex digits naming this deployment's artifacts: `~strata_<tag>_…` (tables) and
    /// `_strata_<tag>_…` (triggers).
    pub tag: String,
    pub steps: Vec<Step>,
    /// The plan keeps a marker table that every RENAME of the deployment renames too, so where the
    /// tables are is one fact on the server (plans stored before markers existed have `false`).
    #[serde(default)]
    pub marked: bool,
    /// Each changed table's reverse triggers record why a revert would lose data in a table of
    /// that table's own, so no artifact is shared between two tables' triggers (plans stored
    /// before have `false`: one table for all). A shared one joined the metadata locks of every
    /// table's triggers: the deploy, locking one table's set, waited for it while holding that
    /// table, and a transaction that had written another table and then wanted this one closed a
    /// metadata-lock cycle whose victim was the application (1213).
    #[serde(default)]
    pub blocked_per_table: bool,
    /// A digest of the target's schema when the deployment started: the cut-over goes ahead only
    /// over that schema (a table changed directly on the target meanwhile would be lost in the
    /// swap). Plans stored before have none.
    #[serde(default)]
    pub target_digest: Option<String>,
    /// The digest leaves out the tables changed in place: the cut-over alters them just before
    /// its swap, so a cut-over tried again after the swap's locks were not free found them
    /// changed, failed saying nothing was deployed, and left them altered. Plans stored before
    /// have `false`.
    #[serde(default)]
    pub digest_leaves_out_in_place: bool,
    /// The forward triggers record a write the new schema refuses (a new NOT NULL or CHECK) in
    /// the step's deploy-blocked table instead of failing the application's write; the cut-over
    /// then fails with that reason unless the rows match after all. Plans stored before have
    /// `false` (their triggers have no handler).
    #[serde(default)]
    pub forward_guarded: bool,
    /// The blocked tables hold one record per row (keyed by a hash of the row's key), which a
    /// later write that fits, or the row's deletion, takes back: only rows wrong *now* block. The
    /// triggers insert rather than replace (a new unique key's duplicate is recorded, never
    /// resolved by replacing another row), and the reverse ones check that what they wrote into
    /// the old table reads back exactly (a value rounded to fit blocks the revert, as PlanetScale's
    /// does). Plans stored before have `false`: one record per table, kept.
    #[serde(default)]
    pub keyed_blockers: bool,
}

/// Where a deployment's tables are, as its marker table's name records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Before,
    Swapped,
    Reverted,
}

impl Mark {
    pub const ALL: [Mark; 3] = [Mark::Before, Mark::Swapped, Mark::Reverted];

    fn suffix(self) -> &'static str {
        match self {
            Mark::Before => "mark_before",
            Mark::Swapped => "mark_swapped",
            Mark::Reverted => "mark_reverted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// A new table, created under `staged` and renamed into place at cut-over.
    CreateTable {
        table: String,
        staged: String,
        create: String,
    },
    /// A changed table, copied online into a shadow table.
    AlterTable(Box<OnlineAlter>),
    /// A changed table whose foreign keys cannot move with a copy (its own keys change, cascade
    /// or reference the table itself; another table's key to it changes) or with partition
    /// operations: altered in place with the engine's online DDL. Not revertable.
    DirectAlter {
        table: String,
        statements: Vec<String>,
        /// The table as it must end up (to tell, after a restart, whether it already did).
        create: String,
    },
    /// A dropped table, renamed aside at cut-over and dropped when the revert window closes.
    DropTable {
        table: String,
        aside: String,
        /// Its foreign keys: taken off the table set aside (its rows must not hold back the
        /// parents' writes) and made again if a revert brings it back. Empty in older plans.
        #[serde(default)]
        foreign_keys: Vec<MovedForeignKey>,
    },
    /// A view dropped (before the tables swap) or created or replaced (after it). `old` is the
    /// definition to restore on revert, `None` for a new view.
    View {
        name: String,
        statement: String,
        old: Option<String>,
    },
}

/// An ALTER done online. Before cut-over: `table` (old schema) has forward triggers into `shadow`
/// (new schema); `shadow` has reverse triggers into `old`, which is a BLACKHOLE placeholder. One
/// atomic RENAME then moves the placeholder aside, `table` to `old`, `shadow` to `table` and a second
/// placeholder to `shadow`: the triggers travel with their tables, so from that instant the reverse
/// triggers keep the old table in step with every write, ready for a revert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineAlter {
    pub table: String,
    /// The ALTER the diff gives (shown; used as is by instant deploys).
    pub statement: String,
    pub shadow: String,
    pub old: String,
    pub stub: String,
    pub aside: String,
    /// Where the new-schema table goes when the deployment is reverted.
    pub reverted: String,
    pub shadow_create: String,
    pub old_columns: Vec<String>,
    pub new_columns: Vec<String>,
    /// Columns present on both sides that the new schema does not generate: copied, and
    /// mirrored into the shadow.
    pub shared: Vec<String>,
    /// Columns present on both sides that the old schema does not generate: mirrored back into
    /// the old table for a revert. Empty in plans made before generated columns were told apart
    /// (`shared` then).
    #[serde(default)]
    pub shared_back: Vec<String>,
    /// Columns written back into the old table whose definition changed: the reverse triggers
    /// read each back and compare it with what was written (see [`Plan::keyed_blockers`]).
    #[serde(default)]
    pub fit_checks: Vec<FitCheck>,
    /// Shared columns with the same definition on both sides: compared value by value.
    pub compared: Vec<String>,
    /// The key rows are matched and chunked by: the old table's (non-null, unique there), its
    /// columns on both sides.
    pub key: Vec<String>,
    /// What the reverse triggers match a row of the old table by: `key` and the columns of a new
    /// identifying key. `key` alone may not be unique in the new table (a primary key widened
    /// from `(a)` to `(a, b)`), where two rows share it: by it alone, deleting one of them deleted
    /// the other's old row. Empty in plans made before (`key` then).
    #[serde(default)]
    pub back_match: Vec<String>,
    /// The old table's index over `key` (`PRIMARY` or a unique key's name).
    pub key_index: String,
    /// Non-unique keys of the new schema, left out of the shadow during the copy and built after it
    /// (a sorted build is much faster than row-by-row maintenance): `(name, definition)`.
    #[serde(default)]
    pub deferred_keys: Vec<(String, String)>,
    /// The table's foreign keys (the same on both sides, none that cascades): the shadow is
    /// copied without them and gains them, under temporary names, just before the cut-over; after
    /// each swap the live table takes the application's names back. Empty in older plans.
    #[serde(default)]
    pub foreign_keys: Vec<MovedForeignKey>,
    /// Foreign keys of other tables that reference this one. A RENAME drags them along: after
    /// each swap, forward or back, each is pointed at the live table again (metadata only).
    /// Empty in older plans.
    #[serde(default)]
    pub children: Vec<ChildForeignKey>,
}

/// A foreign key of another table referencing an online alter's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildForeignKey {
    /// The referencing table.
    pub table: String,
    pub name: String,
    /// The definition from `FOREIGN KEY` on, naming the altered table.
    pub body: String,
    /// Its name between the two ALTERs that point it at the live table (a key cannot be dropped
    /// and added under one name in one ALTER).
    pub moving_name: String,
}

/// The foreign keys referencing `table` from other tables (see [`OnlineAlter::children`]), or
/// `None` when the table must be altered in place: a table that references it on both sides does
/// so differently, or a referenced column changes. Tables made or dropped by the same deployment
/// count too (a RENAME drags their keys as well), and tables it alters (their own swap points
/// their keys at the live table by name).
fn movable_children(
    tag: &str,
    step: usize,
    (target, result): (&Schema, &Schema),
    (old, new): (&Table, &Table),
) -> Option<Vec<ChildForeignKey>> {
    let referencing = |s: &Schema| {
        let mut by_table: std::collections::BTreeMap<String, Vec<strata_schema::Index>> =
            Default::default();
        for t in s.tables.values().filter(|t| t.name != old.name) {
            for f in &t.foreign_keys {
                if f.foreign_key().is_some_and(|p| p.table == old.name) {
                    by_table.entry(t.name.clone()).or_default().push(f.clone());
                }
            }
        }
        by_table
    };
    let (before, after) = (referencing(target), referencing(result));
    for (table, keys) in &before {
        match after.get(table) {
            Some(k) if k != keys => return None,
            None if result.tables.contains_key(table) => return None,
            _ => {}
        }
    }
    for table in after.keys() {
        if !before.contains_key(table) && target.tables.contains_key(table) {
            return None;
        }
    }
    let mut all = before;
    for (table, keys) in after {
        all.entry(table).or_insert(keys);
    }
    let mut children = Vec::new();
    for (table, keys) in all {
        for fk in keys {
            let parts = fk.foreign_key()?;
            if parts.referenced.iter().any(|c| {
                column_definition(old, c).is_none()
                    || column_definition(old, c) != column_definition(new, c)
            }) {
                return None;
            }
            let body = fk.definition[fk.definition.find("FOREIGN KEY")?..].to_string();
            let k = children.len();
            children.push(ChildForeignKey {
                table: table.clone(),
                name: fk.name,
                body,
                moving_name: format!("{LEGACY_ARTIFACT_PREFIX}{tag}_{step}_c{k}"),
            });
        }
    }
    Some(children)
}

/// A foreign key carried over to the shadow of an online alter. Constraint names are unique in a
/// schema, so two tables cannot hold the application's name at once: the shadow's copy is made
/// under `shadow_name`, and whichever side is not live holds `parked_name` or `shadow_name` (the
/// server renames a generated `<table>_ibfk_<n>` with its table by itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedForeignKey {
    /// The application's name for it.
    pub name: String,
    /// The definition from `FOREIGN KEY` on, as the server prints it.
    pub body: String,
    pub shadow_name: String,
    pub parked_name: String,
}

impl MovedForeignKey {
    /// Key `k` of step `step`'s table, with its temporary names.
    fn of(tag: &str, step: usize, k: usize, fk: &strata_schema::Index) -> Option<Self> {
        Some(MovedForeignKey {
            name: fk.name.clone(),
            body: fk.definition[fk.definition.find("FOREIGN KEY")?..].to_string(),
            shadow_name: format!("{LEGACY_ARTIFACT_PREFIX}{tag}_{step}_fk{k}"),
            parked_name: format!("{LEGACY_ARTIFACT_PREFIX}{tag}_{step}_ok{k}"),
        })
    }

    /// The table it references (`REFERENCES `t``, the server's quoting).
    pub fn parent(&self) -> Option<String> {
        let after = self.body.split(" REFERENCES `").nth(1)?;
        let mut name = String::new();
        let mut chars = after.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '`' {
                if chars.peek() == Some(&'`') {
                    chars.next();
                } else {
                    return Some(name);
                }
            }
            name.push(c);
        }
        None
    }

    /// `ADD CONSTRAINT <name> <body>`.
    pub fn add(&self, name: &str) -> String {
        format!(
            "ADD CONSTRAINT {} {}",
            strata_model::role::quote_ident(name),
            self.body
        )
    }
}

/// The foreign keys of a table an online alter can carry (see [`OnlineAlter::foreign_keys`]), or
/// `None` when the table must be altered in place: its keys change, reference the table itself,
/// cascade (a cascade changes rows without firing the triggers that keep the shadow in step), or
/// a column they use changes.
fn movable_foreign_keys(
    tag: &str,
    step: usize,
    old: &Table,
    new: &Table,
) -> Option<Vec<MovedForeignKey>> {
    let definitions = |t: &Table| {
        t.foreign_keys
            .iter()
            .map(|f| f.definition.clone())
            .collect::<Vec<_>>()
    };
    if definitions(old) != definitions(new) {
        return None;
    }
    let mut moved = Vec::new();
    for (k, fk) in old.foreign_keys.iter().enumerate() {
        let parts = fk.foreign_key()?;
        if parts.table == old.name {
            return None;
        }
        let upper = fk.definition.to_ascii_uppercase();
        if [" CASCADE", " SET NULL", " SET DEFAULT"]
            .iter()
            .any(|a| upper.contains(a))
        {
            return None;
        }
        if parts.columns.iter().any(|c| {
            column_definition(old, c).is_none()
                || column_definition(old, c) != column_definition(new, c)
        }) {
            return None;
        }
        moved.push(MovedForeignKey::of(tag, step, k, fk)?);
    }
    Some(moved)
}

/// A column's definition in `t`, `None` when it has no such column.
fn column_definition(t: &Table, c: &str) -> Option<String> {
    t.columns
        .iter()
        .find(|x| x.name == c)
        .map(|x| x.definition.clone())
}

/// True when a column definition's type is a number (integers, DECIMAL, FLOAT, DOUBLE).
fn is_number_type(definition: &str) -> bool {
    let ty = definition
        .split(|c: char| c == '(' || c.is_whitespace())
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    [
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "integer",
        "bigint",
        "decimal",
        "numeric",
        "float",
        "double",
        "real",
    ]
    .contains(&ty.as_str())
}

/// A column whose value must read back from the old table exactly as written to the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FitCheck {
    pub column: String,
    /// Either side is a character type: compared as utf8mb4 code points without padding or case
    /// folding (two collations could not be compared as they are, and trailing spaces or case
    /// would otherwise pass as equal); other types compare as their values.
    pub textual: bool,
    /// Either side is a number type (and neither holds characters): compared as DECIMAL(65,30),
    /// exact for every integer and DECIMAL and for what a DOUBLE holds.
    #[serde(default)]
    pub numeric: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("table `{0}` has no primary key or non-null unique key shared by its old and new schema, so its rows cannot be copied online")]
    NoSharedKey(String),
    #[error("table `{0}` is changed but missing from the target or the result schema")]
    Missing(String),
}

fn has_column(t: &Table, c: &String) -> bool {
    t.columns.iter().any(|x| &x.name == c)
}

impl OnlineAlter {
    /// The columns the reverse triggers match an old row by (see [`OnlineAlter::back_match`]).
    pub fn back_key(&self) -> &[String] {
        if self.back_match.is_empty() {
            &self.key
        } else {
            &self.back_match
        }
    }

    /// The columns the reverse triggers write into the old table.
    pub fn back_columns(&self) -> &[String] {
        if self.shared_back.is_empty() {
            &self.shared
        } else {
            &self.shared_back
        }
    }
}

impl Plan {
    /// True when every step can be undone by a revert.
    pub fn revertable(&self) -> bool {
        !self
            .steps
            .iter()
            .any(|s| matches!(s, Step::DirectAlter { .. }))
    }

    /// True when the deployment makes, moves or drops tables of a foreign key: its DDL then runs
    /// with nothing of the application running (see `gate::ALONE`).
    pub fn moves_foreign_keys(&self) -> bool {
        self.steps.iter().any(|s| match s {
            Step::AlterTable(a) => !a.foreign_keys.is_empty() || !a.children.is_empty(),
            Step::CreateTable { create, .. } => create.contains("FOREIGN KEY"),
            Step::DirectAlter { create, .. } => create.contains("FOREIGN KEY"),
            Step::DropTable { foreign_keys, .. } => !foreign_keys.is_empty(),
            Step::View { .. } => false,
        })
    }

    /// The tables a revert could not undo (changed in place, with the engine's online DDL).
    pub fn changed_in_place(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::DirectAlter { table, .. } => Some(table.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The application's names of the tables and views the deployment changes: what a forced
    /// cut-over may end the holders of.
    pub fn application_tables(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::CreateTable { table, .. }
                | Step::DirectAlter { table, .. }
                | Step::DropTable { table, .. } => table.clone(),
                Step::AlterTable(a) => a.table.clone(),
                Step::View { name, .. } => name.clone(),
            })
            .collect()
    }

    pub fn online_alters(&self) -> impl Iterator<Item = &OnlineAlter> {
        self.steps.iter().filter_map(|s| match s {
            Step::AlterTable(a) => Some(a.as_ref()),
            _ => None,
        })
    }

    /// The poison table: reverse triggers record there why a write could not be mirrored into the
    /// old table, which makes a revert lose data and so refused.
    pub fn revert_blocked_table(&self) -> String {
        format!("{}{}_revert_blocked", self.table_prefix(), self.tag)
    }

    /// Where the reverse triggers of step `step` record why a revert would lose data.
    pub fn revert_blocked_for(&self, step: usize) -> String {
        if self.blocked_per_table {
            format!("{}{}_{step}_revert_blocked", self.table_prefix(), self.tag)
        } else {
            self.revert_blocked_table()
        }
    }

    /// Where the forward triggers of step `step` record a write the new schema refused (see
    /// [`Plan::forward_guarded`]).
    pub fn deploy_blocked_for(&self, step: usize) -> Option<String> {
        self.forward_guarded
            .then(|| format!("{}{}_{step}_deploy_blocked", self.table_prefix(), self.tag))
    }

    /// Every table a revert's blockers are read from: the deployment's own (which also says it
    /// was prepared) and each changed table's.
    pub fn revert_blocked_tables(&self) -> Vec<String> {
        let mut all = vec![self.revert_blocked_table()];
        if self.blocked_per_table {
            for (i, s) in self.steps.iter().enumerate() {
                if matches!(s, Step::AlterTable(_)) {
                    all.push(self.revert_blocked_for(i));
                }
            }
        }
        all
    }

    /// The prefix of this deployment's tables (see [`ARTIFACT_PREFIX`]).
    pub fn table_prefix(&self) -> &'static str {
        if self.marked {
            ARTIFACT_PREFIX
        } else {
            LEGACY_ARTIFACT_PREFIX
        }
    }

    /// The marker table's name in a given placement.
    pub fn marker(&self, mark: Mark) -> String {
        format!("{}{}_{}", self.table_prefix(), self.tag, mark.suffix())
    }

    /// `LIKE` pattern of this deployment's tables.
    pub fn artifact_like(&self) -> String {
        format!(
            "{}{}\\_%",
            self.table_prefix().replace('_', "\\_"),
            self.tag
        )
    }

    /// `LIKE` pattern of this deployment's triggers.
    pub fn trigger_like(&self) -> String {
        format!("\\_strata\\_{}\\_%", self.tag)
    }
}

/// A table or trigger name for this deployment: prefix, tag, step, kind and as much of the table's
/// name as fits in MariaDB's 64-character limit.
fn artifact(tag: &str, step: usize, kind: &str, table: &str) -> String {
    let head = format!("{ARTIFACT_PREFIX}{tag}_{step}_{kind}_");
    let room = 64usize.saturating_sub(head.len());
    let mut tail = String::new();
    for ch in table.chars() {
        if tail.len() + ch.len_utf8() > room {
            break;
        }
        tail.push(ch);
    }
    format!("{head}{tail}")
}

/// Trigger names of an online alter: forward (`f`) on the old table, reverse (`r`) on the shadow.
pub fn trigger_name(tag: &str, step: usize, direction: char, event: &str) -> String {
    format!("{LEGACY_ARTIFACT_PREFIX}{tag}_{step}_{direction}{event}")
}

fn column_names(t: &Table) -> Vec<String> {
    t.columns.iter().map(|c| c.name.clone()).collect()
}

/// The key to match rows by: the old table's primary key, else a non-null unique key, whose columns
/// the new table has and which is unique there too (or the new table has such a key of its own).
fn shared_key(old: &Table, new: &Table) -> Option<(Vec<String>, String)> {
    let has = |t: &Table, c: &String| t.columns.iter().any(|x| &x.name == c);
    let new_ok = row_identifying_keys(new)
        .iter()
        .any(|k| k.iter().all(|c| has(old, c)));
    if !new_ok {
        return None;
    }
    let keys = row_identifying_keys(old);
    let key = keys.into_iter().find(|k| k.iter().all(|c| has(new, c)))?;
    let index = old
        .indexes
        .iter()
        .find(|i| {
            (i.name == "PRIMARY" || i.definition.starts_with("UNIQUE KEY "))
                && key_columns(&i.definition) == key
        })?
        .name
        .clone();
    Some((key, index))
}

/// The plan taking `target` to `result`; `changes` is the diff between them, in its order.
pub fn plan(
    tag: &str,
    target: &Schema,
    result: &Schema,
    changes: &[Change],
) -> Result<Plan, PlanError> {
    let mut steps = Vec::new();
    let mut seen_tables = std::collections::BTreeSet::new();
    // Partition operations (DROP/ADD PARTITION) must run on the table itself: a copy would keep
    // the rows a dropped partition deletes. Such a table is changed in place, all its statements.
    let in_place: std::collections::BTreeSet<&str> = changes
        .iter()
        .filter(|c| c.in_place)
        .map(|c| c.object.as_str())
        .collect();
    for change in changes {
        let name = &change.object;
        // A table replaced by a view of the same name (or the reverse) is two changes, a drop and a
        // create: each statement says which kind of object it is about.
        if is_view_statement(&change.statement) {
            steps.push(Step::View {
                name: name.clone(),
                statement: change.statement.clone(),
                old: target.views.get(name).map(|v| v.create.clone()),
            });
            continue;
        }
        if !seen_tables.insert(name.clone()) {
            // A later statement on a table already planned (foreign keys come last in a diff).
            if let Some(Step::DirectAlter { statements, .. }) = steps.iter_mut().find(
                |s| matches!(s, Step::DirectAlter { table, .. } | Step::CreateTable { table, .. } if table == name),
            ) {
                statements.push(change.statement.clone());
            }
            continue;
        }
        let i = steps.len();
        let (before, after) = (target.tables.get(name), result.tables.get(name));
        let (before, after) = if change.statement.starts_with("DROP TABLE ") {
            (before, None)
        } else if change.statement.starts_with("CREATE TABLE ") {
            (None, after)
        } else {
            (before, after)
        };
        match (before, after) {
            (None, Some(new)) => {
                let staged = artifact(tag, i, "new", name);
                steps.push(Step::CreateTable {
                    table: name.clone(),
                    create: create_table_named(new, &staged, true),
                    staged,
                });
            }
            (Some(old), None) => steps.push(Step::DropTable {
                table: name.clone(),
                aside: artifact(tag, i, "drop", name),
                foreign_keys: old
                    .foreign_keys
                    .iter()
                    .enumerate()
                    .filter_map(|(k, fk)| MovedForeignKey::of(tag, i, k, fk))
                    .collect(),
            }),
            (Some(old), Some(new)) => {
                let moved = movable_foreign_keys(tag, i, old, new);
                let children = movable_children(tag, i, (target, result), (old, new));
                let related =
                    moved.is_none() || children.is_none() || in_place.contains(name.as_str());
                if related {
                    steps.push(Step::DirectAlter {
                        table: name.clone(),
                        statements: vec![change.statement.clone()],
                        create: create_table_named(new, name, true),
                    });
                    continue;
                }
                let (key, key_index) =
                    shared_key(old, new).ok_or_else(|| PlanError::NoSharedKey(name.clone()))?;
                let old_columns = column_names(old);
                let new_columns = column_names(new);
                // A generated column is computed by the server, which refuses values written
                // to it: left out of what is written to the side that generates it.
                let generated = |t: &Table, c: &String| {
                    t.columns.iter().any(|x| &x.name == c && x.is_generated())
                };
                let both: Vec<&String> = old_columns
                    .iter()
                    .filter(|c| new_columns.contains(c))
                    .collect();
                let shared: Vec<String> = both
                    .iter()
                    .filter(|c| !generated(new, c))
                    .map(|c| (*c).clone())
                    .collect();
                let shared_back: Vec<String> = both
                    .iter()
                    .filter(|c| !generated(old, c))
                    .map(|c| (*c).clone())
                    .collect();
                // A column printed the same on both sides still holds other bytes when it takes
                // the table's character set and that changed: compared only by the exact join.
                let charset_changed = table_charset(&old.options) != table_charset(&new.options);
                let compared: Vec<String> = shared
                    .iter()
                    .filter(|c| {
                        let def = |t: &Table| {
                            t.columns
                                .iter()
                                .find(|x| &x.name == *c)
                                .map(|x| x.definition.clone())
                        };
                        let same = def(old) == def(new);
                        same && !(charset_changed && def(new).is_some_and(|d| inherits_charset(&d)))
                    })
                    .cloned()
                    .collect();
                let definition = |t: &Table, c: &String| {
                    t.columns
                        .iter()
                        .find(|x| &x.name == c)
                        .map(|x| x.definition.clone())
                        .unwrap_or_default()
                };
                let fit_checks = shared_back
                    .iter()
                    .filter(|c| !compared.contains(*c))
                    .map(|c| {
                        let (o, n) = (definition(old, c), definition(new, c));
                        let textual = is_character_type(&o) || is_character_type(&n);
                        FitCheck {
                            column: c.clone(),
                            textual,
                            numeric: !textual && (is_number_type(&o) || is_number_type(&n)),
                        }
                    })
                    .collect();
                let shadow = artifact(tag, i, "new", name);
                let deferred = |d: &str| d.starts_with("KEY ");
                let deferred_keys: Vec<(String, String)> = new
                    .indexes
                    .iter()
                    .filter(|ix| deferred(&ix.definition))
                    .map(|ix| (ix.name.clone(), ix.definition.clone()))
                    .collect();
                let mut lean = new.clone();
                lean.indexes.retain(|ix| !deferred(&ix.definition));
                let back_match = {
                    let mut m = key.clone();
                    // Only columns that hold the same values on both sides (unchanged
                    // definitions): a converted value would match nothing.
                    if let Some(n) = row_identifying_keys(new).into_iter().find(|n| {
                        n.iter().all(|c| {
                            has_column(old, c) && (key.contains(c) || compared.contains(c))
                        })
                    }) {
                        m.extend(n.into_iter().filter(|c| !key.contains(c)));
                    }
                    m
                };
                steps.push(Step::AlterTable(Box::new(OnlineAlter {
                    table: name.clone(),
                    statement: change.statement.clone(),
                    shadow_create: create_table_named(&lean, &shadow, false),
                    deferred_keys,
                    shadow,
                    old: artifact(tag, i, "old", name),
                    stub: artifact(tag, i, "stub", name),
                    aside: artifact(tag, i, "hold", name),
                    reverted: artifact(tag, i, "rev", name),
                    old_columns,
                    new_columns,
                    shared,
                    shared_back,
                    fit_checks,
                    compared,
                    back_match,
                    key,
                    key_index,
                    foreign_keys: moved.unwrap_or_default(),
                    children: children.unwrap_or_default(),
                })));
            }
            (None, None) => return Err(PlanError::Missing(name.clone())),
        }
    }
    Ok(Plan {
        tag: tag.to_string(),
        steps,
        marked: true,
        blocked_per_table: true,
        target_digest: None,
        digest_leaves_out_in_place: false,
        forward_guarded: true,
        keyed_blockers: true,
    })
}

/// True for a diff statement about a view (`CREATE [OR REPLACE] [ALGORITHM=…] [DEFINER=…] VIEW`,
/// `DROP VIEW`), false for one about a table.
fn is_view_statement(statement: &str) -> bool {
    if statement.starts_with("DROP VIEW ") {
        return true;
    }
    if statement.starts_with("CREATE TABLE ")
        || statement.starts_with("ALTER TABLE ")
        || statement.starts_with("DROP TABLE ")
    {
        return false;
    }
    statement.starts_with("CREATE ")
        && statement
            .split(" AS ")
            .next()
            .is_some_and(|head| head.contains(" VIEW "))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use strata_schema::{changes, parse_table, Change};

    #[test]
    fn old_rows_are_matched_by_the_new_key_columns_too() {
        let t = |keys: &str| {
            format!("CREATE TABLE `acct` (\n  `user_id` int(11) NOT NULL,\n  `tenant` varchar(10) NOT NULL,\n  `bal` int(11) DEFAULT NULL,\n  {keys}\n) ENGINE=InnoDB")
        };
        let old = schema(&[&t("PRIMARY KEY (`user_id`)")]);
        // The primary key widened: `user_id` alone is no longer unique in the new table, so the
        // reverse triggers match the old row by both columns (by `user_id` alone, deleting one of
        // two new rows deleted the other's old row).
        let wider = schema(&[&t("PRIMARY KEY (`user_id`,`tenant`)")]);
        let p = plan("0000beef", &old, &wider, &changes(&old, &wider).unwrap()).unwrap();
        let a = p.online_alters().next().unwrap();
        assert_eq!(a.key, ["user_id"]);
        assert_eq!(a.back_key(), ["user_id", "tenant"]);
        let r = crate::sql::reverse_triggers(&p, 0, a);
        assert!(
            r[2].contains("WHERE `user_id` = OLD.`user_id` AND `tenant` = OLD.`tenant`"),
            "{}",
            r[2]
        );
        // A new key column whose definition changed is left out (its values differ).
        let changed = schema(&[&t("PRIMARY KEY (`user_id`,`tenant`)")
            .replace("`tenant` varchar(10)", "`tenant` varchar(20)")]);
        let p = plan(
            "0000beef",
            &old,
            &changed,
            &changes(&old, &changed).unwrap(),
        )
        .unwrap();
        assert_eq!(p.online_alters().next().unwrap().back_key(), ["user_id"]);
    }

    /// A schema of the given `SHOW CREATE TABLE` texts (shared by this crate's tests).
    pub(crate) fn schema(tables: &[&str]) -> Schema {
        let mut s = Schema::default();
        for t in tables {
            let t = parse_table(t).unwrap();
            s.tables.insert(t.name.clone(), t);
        }
        s
    }

    const USERS: &str = "CREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n  `name` varchar(10) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
    const USERS2: &str = "CREATE TABLE `users` (\n  `id` int(11) NOT NULL,\n  `name` varchar(50) NOT NULL,\n  `email` varchar(100) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `e` (`email`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
    const POSTS: &str = "CREATE TABLE `posts` (\n  `id` bigint(20) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

    #[test]
    fn one_step_per_table_with_artifact_names() {
        let a = schema(&[USERS, POSTS]);
        let b = schema(&[USERS2, "CREATE TABLE `tags` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]);
        let c = changes(&a, &b).unwrap();
        let p = plan("0a1b2c3d", &a, &b, &c).unwrap();
        assert!(p.revertable());
        let kinds: Vec<&str> = p
            .steps
            .iter()
            .map(|s| match s {
                Step::CreateTable { .. } => "create",
                Step::AlterTable(_) => "alter",
                Step::DropTable { .. } => "drop",
                Step::DirectAlter { .. } => "direct",
                Step::View { .. } => "view",
            })
            .collect();
        let mut sorted = kinds.clone();
        sorted.sort();
        assert_eq!(sorted, ["alter", "create", "drop"]);
        let alter = p.online_alters().next().unwrap();
        assert_eq!(alter.key, ["id"]);
        assert_eq!(alter.key_index, "PRIMARY");
        assert_eq!(alter.shared, ["id", "name"]);
        assert_eq!(alter.compared, ["id"]);
        assert!(alter.shadow.starts_with("~strata_0a1b2c3d_"));
        assert!(alter.shadow_create.contains(&format!("`{}`", alter.shadow)));
        assert!(!alter.shadow_create.contains("KEY `e`"));
        assert_eq!(
            alter.deferred_keys,
            [("e".to_string(), "KEY `e` (`email`)".to_string())]
        );
        assert!(is_artifact(&alter.old) && is_artifact(&alter.stub));
        // Every name distinct.
        let names = [
            &alter.shadow,
            &alter.old,
            &alter.stub,
            &alter.aside,
            &alter.reverted,
        ];
        let set: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(set.len(), names.len());
    }

    #[test]
    fn artifact_names_fit_the_identifier_limit() {
        let long = "x".repeat(64);
        let n = artifact("deadbeef", 12, "stub", &long);
        assert!(n.len() <= 64, "{n}");
        let multibyte = "é".repeat(40);
        let n = artifact("deadbeef", 3, "new", &multibyte);
        assert!(n.len() <= 64 && n.is_char_boundary(n.len()));
    }

    #[test]
    fn foreign_key_tables_are_altered_in_place() {
        let parent = "CREATE TABLE `p` (\n  `id` int(11) NOT NULL,\n  `x` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        let parent2 = "CREATE TABLE `p` (\n  `id` int(11) NOT NULL,\n  `x` bigint(20) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        let child = "CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `p` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `fk` (`p`),\n  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        // The parent alone moves online, its child's key with it.
        let a = schema(&[parent, child]);
        let b = schema(&[parent2, child]);
        let p = plan("00000001", &a, &b, &changes(&a, &b).unwrap()).unwrap();
        assert!(
            matches!(&p.steps[0], Step::AlterTable(x) if x.table == "p" && x.children.len() == 1)
        );
        assert!(p.revertable());
        // Parent and child changed together: both online.
        let child2 = child.replace(
            "`p` int(11) DEFAULT NULL,",
            "`p` int(11) DEFAULT NULL,\n  `n` int(11) DEFAULT NULL,",
        );
        let b = schema(&[parent2, &child2]);
        let p = plan("00000001", &a, &b, &changes(&a, &b).unwrap()).unwrap();
        assert_eq!(p.online_alters().count(), 2, "{p:?}");
        assert!(p.revertable());
        // A child made in the same deploy counts among the parent's children.
        let b = schema(&[parent2]);
        let p = plan("00000001", &b, &a, &changes(&b, &a).unwrap()).unwrap();
        let alter = p.online_alters().next().expect("the parent online");
        assert_eq!(alter.children.len(), 1);
        assert_eq!(alter.children[0].table, "c");
        // A key to the parent added to an existing table: in place.
        let loose = child.replace(
            ",\n  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`)",
            "",
        );
        let a2 = schema(&[parent, &loose]);
        let b2 = schema(&[parent2, child]);
        let p = plan("00000001", &a2, &b2, &changes(&a2, &b2).unwrap()).unwrap();
        assert!(!p.revertable(), "{p:?}");
        // A referenced column changes: in place.
        let parent3 = parent.replace("`id` int(11) NOT NULL", "`id` int(11) NOT NULL COMMENT 'k'");
        let b = schema(&[parent3.as_str(), child]);
        let p = plan("00000001", &a, &b, &changes(&a, &b).unwrap()).unwrap();
        assert!(matches!(&p.steps[0], Step::DirectAlter { table, .. } if table == "p"));
    }

    /// A child table (its foreign keys unchanged, none cascading, none on itself, their columns
    /// unchanged) is copied online with its keys; every other foreign-key table in place.
    #[test]
    fn child_tables_with_plain_foreign_keys_are_altered_online() {
        let parent = "CREATE TABLE `p` (\n  `id` int(11) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        let child = |cols: &str, fks: &str| {
            format!("CREATE TABLE `c` (\n  `id` int(11) NOT NULL,\n  `p` int(11) DEFAULT NULL,{cols}\n  PRIMARY KEY (`id`),\n  KEY `k` (`p`){fks}\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
        };
        let fk = ",\n  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`)";
        let auto = ",\n  CONSTRAINT `c_ibfk_1` FOREIGN KEY (`p`) REFERENCES `p` (`id`)";
        let cascade =
            ",\n  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`) ON DELETE CASCADE";
        let set_null =
            ",\n  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`) ON UPDATE SET NULL";
        let restrict = ",\n  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `p` (`id`) ON DELETE NO ACTION ON UPDATE RESTRICT";
        let own = ",\n  CONSTRAINT `fk` FOREIGN KEY (`p`) REFERENCES `c` (`id`)";
        let added = "\n  `n` int(11) DEFAULT NULL,";
        // (before, after, online)
        let cases = [
            (child("", fk), child(added, fk), true),
            (child("", auto), child(added, auto), true),
            (child("", restrict), child(added, restrict), true),
            (child("", cascade), child(added, cascade), false),
            (child("", set_null), child(added, set_null), false),
            (child("", own), child(added, own), false),
            // The key itself added or dropped: in place (rows are checked against a new key).
            (child("", ""), child(added, fk), false),
            (child("", fk), child(added, ""), false),
            // A column of the key changes.
            (
                child("", fk),
                child("", fk).replace("`p` int(11) DEFAULT NULL", "`p` int(11) NOT NULL"),
                false,
            ),
        ];
        for (before, after, online) in cases {
            let a = schema(&[parent, &before]);
            let b = schema(&[parent, &after]);
            let p = plan("00000002", &a, &b, &changes(&a, &b).unwrap()).unwrap();
            let step = p.steps.iter().find(|s| match s {
                Step::AlterTable(x) => x.table == "c",
                Step::DirectAlter { table, .. } => table == "c",
                _ => false,
            });
            match step {
                Some(Step::AlterTable(x)) => {
                    assert!(online, "online: {after}");
                    assert_eq!(x.foreign_keys.len(), 1);
                    let f = &x.foreign_keys[0];
                    assert!(f
                        .body
                        .starts_with("FOREIGN KEY (`p`) REFERENCES `p` (`id`)"));
                    assert!(!x.shadow_create.contains("FOREIGN KEY"));
                    assert!(f.shadow_name.len() <= 64 && f.parked_name != f.shadow_name);
                    assert!(p.revertable());
                }
                Some(Step::DirectAlter { .. }) => assert!(!online, "in place: {after}"),
                _ => panic!("no step for c: {after}"),
            }
        }
    }

    #[test]
    fn steps_follow_each_statement_kind() {
        let a = schema(&[USERS, POSTS]);
        let mut b = schema(&[USERS]);
        b.views.insert(
            "posts".into(),
            strata_schema::View {
                name: "posts".into(),
                create: "CREATE ALGORITHM=UNDEFINED DEFINER=`u`@`h` SQL SECURITY DEFINER VIEW `posts` AS select `users`.`id` AS `id` from `users`".into(),
            },
        );
        // A table replaced by a view of the same name: the table's drop and the view's create.
        let changes = vec![
            Change {
                object: "posts".into(),
                statement: "DROP TABLE `posts`".into(),
                in_place: false,
            },
            Change {
                object: "posts".into(),
                statement: b.views["posts"].create.clone(),
                in_place: false,
            },
        ];
        let p = plan("00000003", &a, &b, &changes).unwrap();
        assert!(matches!(&p.steps[0], Step::DropTable { table, .. } if table == "posts"));
        assert!(matches!(&p.steps[1], Step::View { name, old: None, .. } if name == "posts"));
        // And the reverse: the view dropped, the table created.
        let back = vec![
            Change {
                object: "posts".into(),
                statement: "DROP VIEW `posts`".into(),
                in_place: false,
            },
            Change {
                object: "posts".into(),
                statement: POSTS.into(),
                in_place: false,
            },
        ];
        let p = plan("00000004", &b, &a, &back).unwrap();
        assert!(
            matches!(&p.steps[0], Step::View { statement, .. } if statement.starts_with("DROP VIEW"))
        );
        assert!(matches!(&p.steps[1], Step::CreateTable { table, .. } if table == "posts"));
        assert!(p.marked);
        for (st, view) in [
            ("CREATE ALGORITHM=UNDEFINED DEFINER=`a`@`%` SQL SECURITY DEFINER VIEW `v` AS select 1", true),
            ("CREATE OR REPLACE VIEW `v` AS select 1", true),
            ("DROP VIEW `v`", true),
            ("CREATE TABLE `view` (`id` int)", false),
            ("ALTER TABLE `t` ADD COLUMN `v` int COMMENT ' VIEW '", false),
            ("DROP TABLE `v`", false),
        ] {
            assert_eq!(is_view_statement(st), view, "{st}");
        }
    }

    #[test]
    fn no_shared_key_is_an_error() {
        let a = schema(&["CREATE TABLE `t` (\n  `a` int(11) NOT NULL,\n  `b` int(11) NOT NULL,\n  PRIMARY KEY (`a`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]);
        let b = schema(&["CREATE TABLE `t` (\n  `b` int(11) NOT NULL,\n  PRIMARY KEY (`b`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"]);
        let e = plan("00000002", &a, &b, &changes(&a, &b).unwrap()).unwrap_err();
        assert_eq!(e, PlanError::NoSharedKey("t".into()));
    }
}
