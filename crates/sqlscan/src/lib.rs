//! A lexer, not a parser: the gateway needs, per query, only the statements' leading keywords (for the
//! safe-migrations guard and the DML limits), the `/*vt+ … */` directives, and whether the text uses
//! session state that pooling must respect (user-variable assignment, named locks, FOUND_ROWS, …). A
//! hand-written byte scanner does that in well under a microsecond and never fails on syntax a
//! parser would not know; full parsing belongs to the schema engine.
//!
//! MySQL executes the contents of `/*! … */` and MariaDB of `/*M! … */` comments, so those are scanned
//! as code: DDL hidden in them is still DDL.

mod lexer;

pub use lexer::{
    has_odd_space_dashes, has_versioned_comment, tokens, tokens_read, tokens_with, Reading, Token,
    TokenKind,
};

/// What the gateway needs to know about one query text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// The statements, in order (a multi-statement text has several).
    pub statements: Vec<Statement>,
    /// `/*vt+ QUERY_TIMEOUT_MS=n */`.
    pub query_timeout_ms: Option<u64>,
    /// Why the query ties the client to its backend connection for the rest of the session, if it does.
    pub pins_session: Option<&'static str>,
    /// `SELECT LAST_INSERT_ID()` alone: answered from the client's last OK packet.
    pub last_insert_id_query: bool,
    /// `SELECT ROW_COUNT()` alone: answered from the client's last statement.
    pub row_count_query: bool,
    /// `SELECT FOUND_ROWS()` alone: answered from the client's last result set (unless a
    /// `SQL_CALC_FOUND_ROWS` query pinned the session).
    pub found_rows_query: bool,
    /// `SELECT CONNECTION_ID()` alone: answered with the gateway's id of the session (the one
    /// `KILL` takes).
    pub connection_id_query: bool,
    /// The column name of one of those answered by the gateway: the alias if given, else the
    /// function as written (the server names the column so).
    pub local_column: Option<String>,
    /// `SET workload = olap|oltp|dba` alone.
    pub set_workload: Option<String>,
    /// `KILL [HARD|SOFT] [QUERY|CONNECTION] n`: (query only, id).
    pub kill: Option<(bool, u64)>,
    /// A single SELECT that neither locks rows, nor writes, nor touches session state: safe to share
    /// with identical queries in flight.
    pub consolidable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statement {
    /// The first keyword, upper-cased ("SELECT", "ALTER", …); empty for an empty statement.
    pub keyword: String,
    /// The second word, upper-cased, when it is a word (`LOCK` in `BACKUP LOCK`).
    pub second: String,
    /// True for statements that change the schema (CREATE, ALTER, DROP, RENAME, TRUNCATE, OPTIMIZE,
    /// not temporary tables), including those prepared or executed from a string.
    pub ddl: bool,
    /// The DDL hides behind a variable (`PREPARE s FROM @sql`) and cannot be inspected.
    pub opaque: bool,
    /// A CREATE or ALTER that declares a foreign key (`FOREIGN KEY`, or a column's `REFERENCES`),
    /// also when prepared or executed from a string.
    pub foreign_key: bool,
    /// Names a deployment's table or trigger (`~strata_…`, `_strata_…`), also in prepared text.
    pub artifact: bool,
    /// Creates, alters or drops a stored routine, trigger or event (not part of a branch's schema,
    /// never deployed), also in prepared text.
    pub routine: bool,
    /// `OPTIMIZE` or `REPAIR`: rebuilds tables with only read and write privileges, also in prepared
    /// text.
    pub rebuild: bool,
    /// Creates, alters or drops a database (`DATABASE` or `SCHEMA`), also in prepared text.
    pub database: bool,
    /// Creates a sequence or a system-versioned table (`CREATE|ALTER SEQUENCE`, `WITH|ADD SYSTEM
    /// VERSIONING`): objects no deploy request can carry, also in prepared text.
    pub undeployable: bool,
    /// A KILL the gateway cannot take as its own connection ids (`KILL USER …`, `KILL QUERY ID …`,
    /// one among other statements, in a compound statement or in prepared text): it would reach
    /// other clients' work on the instance.
    pub foreign_kill: bool,
    /// An XA statement: a prepared XA transaction outlives its connection and the platform's
    /// restarts, holding its row locks, so it is not offered (as on Vitess). Also in prepared text.
    pub xa: bool,
    /// Manages accounts: `SET PASSWORD`, `CREATE|ALTER|DROP|RENAME USER|ROLE`, `GRANT`, `REVOKE`,
    /// `SET DEFAULT ROLE`, also in prepared text. Passwords are managed with the API.
    pub credentials: bool,
    /// Values the statement gives `max_statement_time` (`SET [SESSION|LOCAL] …`, `SET @@…`, `SET
    /// STATEMENT … FOR`, also in prepared text and compound statements), in milliseconds; `None` for
    /// anything but a plain number (an expression, a variable, `DEFAULT`).
    pub time_limits: Vec<Option<u64>>,
    /// Sets `check_constraint_checks` (which, off, lets rows past CHECK constraints), also in
    /// prepared text and compound statements.
    pub unchecks: bool,
    /// An UPDATE or DELETE, or an upsert (the statements the row limit holds), also run from a
    /// string (`EXECUTE IMMEDIATE`), prepared (`PREPARE … FROM`) or inside a compound statement.
    pub changes_rows: bool,
    /// `REPLACE`, or `INSERT … ON DUPLICATE KEY UPDATE`: the rows it updates or replaces count
    /// against the row limit (the server's `Duplicates:`), the rows it inserts do not.
    pub upsert: bool,
    /// Part of a text holding a compound statement (`BEGIN NOT ATOMIC … END`, `IF …`, loops).
    pub compound: bool,
    /// Takes or releases locks the session keeps (`LOCK TABLES`, `UNLOCK TABLES`, `BACKUP
    /// [UN]LOCK`, `FLUSH … WITH READ LOCK`, `HANDLER`) from a string, a prepared statement or a
    /// compound statement, where the gateway cannot follow them.
    pub hidden_locks: bool,
    /// `PREPARE name FROM …` / `EXECUTE name` / `DEALLOCATE|DROP PREPARE name`: the name, lower-cased.
    pub prepared_name: Option<String>,
}

impl Analysis {
    /// True when any statement changes the schema, or might.
    pub fn has_ddl(&self) -> bool {
        self.statements.iter().any(|s| s.ddl || s.opaque)
    }

    /// True when any statement runs text built at run time (`PREPARE … FROM @v`, `EXECUTE
    /// IMMEDIATE CONCAT(…)`), which no reading of the query can judge.
    pub fn runs_hidden_text(&self) -> bool {
        self.statements.iter().any(|s| s.opaque)
    }

    /// True when any statement creates, alters or drops a stored routine, trigger or event.
    pub fn has_routine(&self) -> bool {
        self.statements.iter().any(|s| s.routine)
    }

    /// True when any statement creates, alters or drops a database.
    pub fn changes_database(&self) -> bool {
        self.statements.iter().any(|s| s.database)
    }

    /// True when any statement rebuilds tables (`OPTIMIZE`, `REPAIR`).
    pub fn rebuilds_tables(&self) -> bool {
        self.statements.iter().any(|s| s.rebuild)
    }

    /// True when any statement declares a foreign key.
    pub fn has_foreign_key(&self) -> bool {
        self.statements.iter().any(|s| s.foreign_key)
    }

    /// True when any statement creates a sequence or a system-versioned table.
    pub fn makes_undeployable(&self) -> bool {
        self.statements.iter().any(|s| s.undeployable)
    }

    /// True when any statement is a KILL the gateway cannot take as its own.
    pub fn kills_others(&self) -> bool {
        self.statements.iter().any(|s| s.foreign_kill)
    }

    /// True when any statement is an XA statement.
    pub fn has_xa(&self) -> bool {
        self.statements.iter().any(|s| s.xa)
    }

    /// True when any statement manages accounts or their credentials.
    pub fn manages_credentials(&self) -> bool {
        self.statements.iter().any(|s| s.credentials)
    }

    /// True when any statement names a deployment's table or trigger: those belong to the
    /// deployment alone (a write to one would change what the cut-over or a revert puts in place).
    pub fn touches_artifact(&self) -> bool {
        self.statements.iter().any(|s| s.artifact)
    }

    /// True when any statement sets `check_constraint_checks`.
    pub fn unchecks(&self) -> bool {
        self.statements.iter().any(|s| s.unchecks)
    }

    /// True when any statement is (or runs) an UPDATE or DELETE.
    pub fn changes_rows(&self) -> bool {
        self.statements.iter().any(|s| s.changes_rows)
    }

    /// True when any statement takes or releases session locks out of the gateway's sight.
    pub fn hides_locks(&self) -> bool {
        self.statements.iter().any(|s| s.hidden_locks)
    }

    /// Every value the text gives `max_statement_time` (see [`Statement::time_limits`]).
    pub fn time_limits(&self) -> impl Iterator<Item = Option<u64>> + '_ {
        self.statements
            .iter()
            .flat_map(|s| s.time_limits.iter().copied())
    }

    /// True when the first statement's keyword is one of `keywords`.
    pub fn is(&self, keywords: &[&str]) -> bool {
        self.statements
            .first()
            .is_some_and(|s| keywords.contains(&s.keyword.as_str()))
    }
}

/// Words naming the kind of object a CREATE/ALTER/DROP is about.
const OBJECT_KINDS: &[&str] = &[
    "TABLE",
    "VIEW",
    "INDEX",
    "DATABASE",
    "SCHEMA",
    "SEQUENCE",
    "USER",
    "ROLE",
    "SERVER",
    "TABLESPACE",
    "TRIGGER",
    "FUNCTION",
    "PROCEDURE",
    "EVENT",
    "PACKAGE",
];
const DDL: &[&str] = &["CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "OPTIMIZE"];
const PINNING_FUNCTIONS: &[&str] = &[
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_USED_LOCK",
    "FOUND_ROWS",
    "SQL_CALC_FOUND_ROWS",
    "ROW_COUNT",
];

fn word_is(t: Option<&Token<'_>>, w: &str) -> bool {
    t.is_some_and(|t| t.kind == TokenKind::Word && t.text.eq_ignore_ascii_case(w))
}

/// Analyses a query text. A text with a backslash is also read as the server reads it without
/// backslash escapes (`NO_BACKSLASH_ESCAPES`, or a multi-byte charset where 0x5C ends a
/// character): whatever either reading finds is found.
pub fn analyze(sql: &str) -> Analysis {
    let mut a = analyze_with(sql, Reading::default());
    // The other readings, each combination of what the text holds: without backslash escapes;
    // with versioned comments not run (a server older than the version written skips them:
    // `CREATE /*!999999 TEMPORARY */ TABLE`); with `--` and latin1's no-break space opening a
    // comment (which hid the rest of a line's quote from a reading without it).
    let backslash: &[bool] = if sql.as_bytes().contains(&b'\\') {
        &[true, false]
    } else {
        &[true]
    };
    let versioned: &[bool] = if has_versioned_comment(sql) {
        &[true, false]
    } else {
        &[true]
    };
    let dashes: &[bool] = if has_odd_space_dashes(sql) {
        &[false, true]
    } else {
        &[false]
    };
    let mut others = Vec::new();
    for &backslash_escapes in backslash {
        for &versioned_code in versioned {
            for &odd_space_dashes in dashes {
                let r = Reading {
                    backslash_escapes,
                    versioned_code,
                    odd_space_dashes,
                };
                if r != Reading::default() {
                    others.push(r);
                }
            }
        }
    }
    for reading in others {
        let other = analyze_with(sql, reading);
        let flagged = |s: &Statement| {
            s.ddl
                || s.opaque
                || s.foreign_key
                || s.artifact
                || s.routine
                || s.rebuild
                || s.database
                || s.credentials
                || s.undeployable
                || s.xa
                || s.foreign_kill
                || !s.time_limits.is_empty()
                || s.unchecks
                || s.changes_rows
                || s.hidden_locks
        };
        if other.statements.iter().any(flagged) || other.statements.len() > a.statements.len() {
            a.statements.extend(other.statements);
            a.consolidable = false;
            // Session state another reading sees (a table lock) keeps the connection too.
            a.pins_session = a.pins_session.or(other.pins_session);
            a.last_insert_id_query = false;
            a.row_count_query = false;
            a.found_rows_query = false;
            a.connection_id_query = false;
            a.local_column = None;
            a.set_workload = None;
            a.kill = None;
        }
    }
    a
}

fn analyze_with(sql: &str, reading: Reading) -> Analysis {
    let toks = tokens_read(sql, reading);
    let mut a = Analysis::default();
    for t in &toks {
        if let TokenKind::Directive = t.kind {
            if let Some(ms) = directive_timeout(t.text) {
                a.query_timeout_ms = Some(ms);
            }
        }
    }
    let mut current: Vec<&Token> = Vec::with_capacity(toks.len());
    let mut stmts: Vec<Vec<&Token>> = Vec::new();
    for t in toks.iter().filter(|t| t.kind != TokenKind::Directive) {
        if t.kind == TokenKind::Semicolon {
            stmts.push(std::mem::take(&mut current));
        } else {
            current.push(t);
        }
    }
    stmts.push(current);
    let compound = stmts.iter().any(|s| opens_compound(s));
    // `SET STATEMENT var = value [, …] FOR stmt` runs `stmt`: it is judged as itself, with the
    // time limit its prefix gives.
    let mut limits: Vec<Vec<Option<u64>>> = Vec::new();
    let mut unchecked: Vec<bool> = Vec::new();
    let mut stmts: Vec<Vec<&Token>> = stmts
        .into_iter()
        .filter_map(|mut s| {
            let given = time_limits(&s);
            let unchecks = (compound || word_is(s.first().copied(), "SET"))
                && s.iter()
                    .any(|t| names_variable(t, "check_constraint_checks"));
            let has_time_limit = compound && s.iter().any(|t| names_variable(t, TIME_LIMIT));
            let prefix = s.len() - without_set_statement(&s).len();
            s.drain(..prefix);
            let body = s;
            let mut given = given;
            if given.is_empty() && has_time_limit {
                given.push(None);
            }
            if body.is_empty() {
                // Nothing left to run; a limit it gives still counts.
                if let (Some(last), false) = (limits.last_mut(), given.is_empty()) {
                    last.extend(given);
                }
                if let Some(last) = unchecked.last_mut() {
                    *last |= unchecks;
                }
                return None;
            }
            limits.push(given);
            unchecked.push(unchecks);
            Some(body)
        })
        .collect();
    stmts.retain(|s| !s.is_empty());

    // A compound statement (`BEGIN NOT ATOMIC … END`, `IF … END IF`, loops, labels) runs the
    // statements inside it, which the split on `;` separates from their opening keyword: in a
    // text holding one, every piece is judged by every word it contains.
    for (n, s) in stmts.iter().enumerate() {
        let mut st = statement(s);
        st.time_limits
            .extend(limits.get(n).into_iter().flatten().copied());
        st.unchecks |= unchecked.get(n).copied().unwrap_or(false);
        if compound {
            let has = |words: &[&str]| {
                s.iter().any(|t| {
                    t.kind == TokenKind::Word
                        && words.iter().any(|w| t.text.eq_ignore_ascii_case(w))
                })
            };
            st.compound = true;
            st.ddl |= has(DDL);
            st.opaque |= has(&["PREPARE", "EXECUTE"]);
            st.changes_rows |= has(&["UPDATE", "DELETE", "REPLACE"]);
            st.hidden_locks |= has(&["UNLOCK", "HANDLER"])
                || s.windows(2).any(|p| {
                    (word_is(Some(p[0]), "LOCK")
                        && (word_is(Some(p[1]), "TABLES") || word_is(Some(p[1]), "TABLE")))
                        || (word_is(Some(p[0]), "BACKUP") && word_is(Some(p[1]), "LOCK"))
                        || (word_is(Some(p[0]), "READ")
                            && word_is(Some(p[1]), "LOCK")
                            && has(&["FLUSH"]))
                });
            st.foreign_key |= has(&["FOREIGN", "REFERENCES"]);
            st.rebuild |= has(&["OPTIMIZE", "REPAIR"]);
            st.xa |= has(&["XA"]);
            st.foreign_kill |= has(&["KILL"]);
            st.undeployable |= has(&["SEQUENCE"])
                || s.windows(2)
                    .any(|p| word_is(Some(p[0]), "SYSTEM") && word_is(Some(p[1]), "VERSIONING"));
            st.credentials |= has(&["GRANT", "REVOKE"])
                || s.windows(2).any(|p| {
                    (word_is(Some(p[0]), "SET")
                        && (word_is(Some(p[1]), "PASSWORD") || word_is(Some(p[1]), "DEFAULT")))
                        || ((word_is(Some(p[1]), "USER") || word_is(Some(p[1]), "ROLE"))
                            && ["CREATE", "ALTER", "DROP", "RENAME"]
                                .iter()
                                .any(|w| word_is(Some(p[0]), w)))
                });
            st.artifact |= s.iter().any(|t| {
                t.kind == TokenKind::String && {
                    let v = unquote(t.text).to_ascii_lowercase();
                    v.contains("~strata_") || v.contains("_strata_")
                }
            });
        }
        if stmts.len() > 1 && word_is(s.first().copied(), "KILL") {
            st.foreign_kill = true;
        }
        a.statements.push(st);
        if [
            "LOCK",
            "BACKUP",
            "PREPARE",
            "EXECUTE",
            "HANDLER",
            "XA",
            "FLUSH",
            "CALL",
            "DEALLOCATE",
        ]
        .iter()
        .any(|k| word_is(s.first().copied(), k))
        {
            // Table locks, prepared statements, open handlers, XA transactions and whatever a
            // procedure leaves behind live in the connection: the session keeps it, and it is
            // reset before anyone else gets it.
            a.pins_session
                .get_or_insert("session state (locks, prepared statements)");
        }
        for (i, t) in s.iter().enumerate() {
            if t.kind == TokenKind::Operator && t.text == ":=" && a.pins_session.is_none() {
                a.pins_session = Some("user variable assignment");
            }
            if t.kind == TokenKind::Word {
                let is = |w: &str| t.text.eq_ignore_ascii_case(w);
                if PINNING_FUNCTIONS.iter().any(|f| is(f)) && a.pins_session.is_none() {
                    a.pins_session = Some("session-scoped function");
                }
                if is("LAST_INSERT_ID")
                    && s.get(i + 1).is_some_and(|n| n.text == "(")
                    && s.get(i + 2).is_some_and(|n| n.text != ")")
                    && a.pins_session.is_none()
                {
                    a.pins_session = Some("LAST_INSERT_ID(expr)");
                }
                if is("INTO")
                    && s.get(i + 1).is_some_and(|n| n.kind == TokenKind::Variable)
                    && a.pins_session.is_none()
                {
                    a.pins_session = Some("SELECT … INTO @variable");
                }
            }
        }
    }
    if stmts.len() == 1 {
        let s = &stmts[0];
        // Compared without copying: most statements are neither SET nor KILL.
        let is = |i: usize, k: &str| s.get(i).is_some_and(|t| t.text.eq_ignore_ascii_case(k));
        // SELECT f() [[AS] alias]
        let select_of = |f: &str| {
            let n = s.len();
            n >= 4
                && is(0, "SELECT")
                && is(1, f)
                && s[2].text == "("
                && s[3].text == ")"
                && (n == 4 || n == 5 || (n == 6 && is(4, "AS")))
        };
        a.last_insert_id_query = select_of("LAST_INSERT_ID");
        a.row_count_query = select_of("ROW_COUNT");
        a.found_rows_query = select_of("FOUND_ROWS");
        a.connection_id_query = select_of("CONNECTION_ID");
        if a.last_insert_id_query
            || a.row_count_query
            || a.found_rows_query
            || a.connection_id_query
        {
            a.local_column = Some(match s.len() {
                4 => format!("{}()", s[1].text),
                n => {
                    let alias = s[n - 1].text;
                    match alias.chars().next() {
                        Some('`') => alias.trim_matches('`').replace("``", "`"),
                        Some('"' | '\'') => unquote(alias),
                        _ => alias.to_string(),
                    }
                }
            });
        }
        if is(0, "SET") || is(0, "KILL") {
            let words: Vec<String> = s.iter().map(|t| t.text.to_ascii_uppercase()).collect();
            let w: Vec<&str> = words.iter().map(String::as_str).collect();
            // SET [SESSION|@@[session.]]workload = value
            if w.first() == Some(&"SET") {
                let rest: Vec<&str> = w[1..]
                    .iter()
                    .copied()
                    .filter(|x| !["SESSION", "@@", "@@SESSION", "."].contains(x))
                    .collect();
                let name = rest
                    .first()
                    .map(|n| n.trim_start_matches("@@SESSION.").trim_start_matches("@@"));
                if name == Some("WORKLOAD")
                    && rest.len() == 3
                    && (rest[1] == "=" || rest[1] == ":=")
                {
                    a.set_workload = Some(
                        rest[2]
                            .trim_matches(|c| c == '\'' || c == '"')
                            .to_ascii_lowercase(),
                    );
                }
            }
            // KILL [HARD|SOFT] [QUERY|CONNECTION] n
            if w.first() == Some(&"KILL") {
                let skip = usize::from(matches!(w.get(1), Some(&"HARD") | Some(&"SOFT")));
                let (query, idx) = match w.get(1 + skip) {
                    Some(&"QUERY") => (true, 2 + skip),
                    Some(&"CONNECTION") => (false, 2 + skip),
                    _ => (false, 1 + skip),
                };
                match w.get(idx).and_then(|n| n.parse::<u64>().ok()) {
                    Some(id) if w.len() == idx + 1 => a.kill = Some((query, id)),
                    _ => {
                        if let Some(st) = a.statements.first_mut() {
                            st.foreign_kill = true;
                        }
                    }
                }
            }
        }
        let locking = s.windows(2).any(|p| {
            let pair = |a: &str, b: &str| {
                p[0].text.eq_ignore_ascii_case(a) && p[1].text.eq_ignore_ascii_case(b)
            };
            pair("FOR", "UPDATE") || pair("LOCK", "IN") || pair("FOR", "SHARE")
        }) || s.iter().any(|t| t.text.eq_ignore_ascii_case("INTO"));
        a.consolidable = is(0, "SELECT")
            && !locking
            && a.pins_session.is_none()
            && !s
                .iter()
                .any(|t| t.text.eq_ignore_ascii_case("LAST_INSERT_ID"));
    }
    a
}

fn statement(s: &[&Token]) -> Statement {
    let kw = |i: usize| {
        s.get(i)
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| t.text.to_ascii_uppercase())
            .unwrap_or_default()
    };
    let keyword = kw(0);
    let mut st = Statement {
        second: kw(1),
        artifact: s.iter().any(|t| is_artifact_name(t)),
        ..Default::default()
    };
    if DDL.contains(&keyword.as_str()) {
        // CREATE/DROP TEMPORARY TABLE only touch the session.
        let temporary = (keyword == "CREATE" || keyword == "DROP")
            && (word_is(s.get(1).copied(), "TEMPORARY")
                || (word_is(s.get(1).copied(), "OR") && word_is(s.get(3).copied(), "TEMPORARY")));
        st.ddl = !temporary;
        // `DROP FOREIGN KEY` removes one, which is always allowed.
        st.foreign_key = !temporary
            && (keyword == "CREATE" || keyword == "ALTER")
            && s.iter().enumerate().any(|(i, t)| {
                (word_is(Some(t), "FOREIGN")
                    && word_is(s.get(i + 1).copied(), "KEY")
                    && !(i > 0 && word_is(s.get(i - 1).copied(), "DROP")))
                    || word_is(Some(t), "REFERENCES")
            });
    }
    st.rebuild = matches!(keyword.as_str(), "OPTIMIZE" | "REPAIR");
    if matches!(keyword.as_str(), "CREATE" | "ALTER" | "DROP") {
        // The object kind is the first of these words (DEFINER, OR REPLACE, AGGREGATE… come first).
        let kind = s
            .iter()
            .skip(1)
            .find_map(|t| OBJECT_KINDS.iter().find(|k| word_is(Some(t), k)).copied());
        st.routine = matches!(kind, Some("TRIGGER" | "FUNCTION" | "PROCEDURE" | "EVENT"));
        st.database = matches!(kind, Some("DATABASE" | "SCHEMA"));
        st.credentials = matches!(kind, Some("USER" | "ROLE"));
        // `WITH` or `ADD SYSTEM VERSIONING` (dropping it makes a table deployable again).
        // `CREATE TABLE … SEQUENCE=1` makes a sequence too.
        let sequence_option = s
            .windows(3)
            .any(|p| word_is(Some(p[0]), "SEQUENCE") && p[1].text == "=" && p[2].text != "0")
            || s.windows(2)
                .any(|p| word_is(Some(p[0]), "SEQUENCE") && p[1].text == "1");
        st.undeployable = keyword != "DROP"
            && (kind == Some("SEQUENCE")
                || sequence_option
                || s.windows(3).any(|p| {
                    !word_is(Some(p[0]), "DROP")
                        && word_is(Some(p[1]), "SYSTEM")
                        && word_is(Some(p[2]), "VERSIONING")
                }));
    }
    st.xa = keyword == "XA";
    st.upsert = keyword == "REPLACE"
        || (keyword == "INSERT"
            && s.windows(4).any(|w| {
                word_is(Some(w[0]), "ON")
                    && word_is(Some(w[1]), "DUPLICATE")
                    && word_is(Some(w[2]), "KEY")
                    && word_is(Some(w[3]), "UPDATE")
            }));
    st.changes_rows = matches!(keyword.as_str(), "UPDATE" | "DELETE") || st.upsert;
    let name_at = |i: usize| {
        s.get(i)
            .filter(|t| matches!(t.kind, TokenKind::Word | TokenKind::QuotedIdent))
            .map(|t| match t.kind {
                TokenKind::QuotedIdent => unquote(t.text).to_ascii_lowercase(),
                _ => t.text.to_ascii_lowercase(),
            })
    };
    st.prepared_name = match keyword.as_str() {
        "PREPARE" => name_at(1),
        "EXECUTE" if !word_is(s.get(1).copied(), "IMMEDIATE") => name_at(1),
        "DEALLOCATE" | "DROP" if word_is(s.get(1).copied(), "PREPARE") => name_at(2),
        _ => None,
    };
    // `SET @a = 1, PASSWORD = …`: a password assignment anywhere in a SET.
    st.credentials |= keyword == "SET"
        && s.windows(2).any(|w| {
            word_is(Some(w[0]), "PASSWORD") && (w[1].text == "=" || word_is(Some(w[1]), "FOR"))
        });
    st.credentials |= matches!(keyword.as_str(), "GRANT" | "REVOKE")
        || (keyword == "RENAME" && word_is(s.get(1).copied(), "USER"))
        || (keyword == "SET"
            && (word_is(s.get(1).copied(), "PASSWORD")
                || (word_is(s.get(1).copied(), "DEFAULT") && word_is(s.get(2).copied(), "ROLE"))));
    // PREPARE name FROM 'text' | @var ; EXECUTE IMMEDIATE 'text' | @var
    let source = if keyword == "PREPARE" && word_is(s.get(2).copied(), "FROM") {
        Some(3)
    } else if keyword == "EXECUTE" && word_is(s.get(1).copied(), "IMMEDIATE") {
        Some(2)
    } else {
        None
    };
    if let Some((start, src)) = source.and_then(|i| Some((i, s.get(i)?))) {
        match src.kind {
            TokenKind::String => {
                // Adjacent literals are one string to the server ('alt' 'er table …').
                let text: String = s[start..]
                    .iter()
                    .take_while(|t| t.kind == TokenKind::String)
                    .map(|t| unquote(t.text))
                    .collect();
                let inner = analyze(&text);
                st.ddl = inner.has_ddl();
                st.foreign_key = inner.has_foreign_key();
                st.routine = inner.has_routine();
                st.rebuild = inner.rebuilds_tables();
                st.database = inner.changes_database();
                st.credentials = inner.manages_credentials();
                st.undeployable = inner.makes_undeployable();
                st.xa = inner.has_xa();
                st.foreign_kill = inner.kill.is_some() || inner.kills_others();
                st.time_limits.extend(inner.time_limits());
                st.unchecks |= inner.unchecks();
                st.artifact |= inner.touches_artifact();
                st.changes_rows = inner.changes_rows();
                st.upsert = inner.statements.iter().any(|i| i.upsert);
                st.compound |= inner.statements.iter().any(|i| i.compound);
                st.opaque |= inner.runs_hidden_text();
                st.hidden_locks = inner.hides_locks()
                    || inner.statements.iter().any(|i| {
                        matches!(i.keyword.as_str(), "LOCK" | "UNLOCK" | "HANDLER")
                            || (i.keyword == "BACKUP"
                                && matches!(i.second.as_str(), "LOCK" | "UNLOCK"))
                            || i.keyword == "FLUSH"
                    });
            }
            _ => st.opaque = true,
        }
    }
    st.keyword = keyword;
    st
}

/// True when the statement opens a compound statement: `BEGIN NOT ATOMIC`, `IF`, `CASE`, `LOOP`,
/// `WHILE`, `REPEAT`, `FOR`, or one of them after a label (`l: LOOP`).
fn opens_compound(s: &[&Token<'_>]) -> bool {
    let s = if s.get(1).is_some_and(|t| t.text == ":") {
        &s[2..]
    } else {
        s
    };
    let first = s.first().copied();
    // `BEGIN` alone or `BEGIN WORK` starts a transaction; followed by anything else it opens a
    // block (`BEGIN NOT ATOMIC`, and in `sql_mode=ORACLE` a plain `BEGIN stmt; … END`). Oracle
    // mode's labels are `<<name>>`.
    (word_is(first, "BEGIN") && s.get(1).is_some_and(|t| !word_is(Some(t), "WORK")))
        || first.is_some_and(|t| t.text.starts_with("<<"))
        || ["IF", "CASE", "LOOP", "WHILE", "REPEAT", "FOR", "DECLARE"]
            .iter()
            .any(|k| word_is(first, k))
}

const TIME_LIMIT: &str = "max_statement_time";

/// True for a name of system variable `variable` (lower case) in any of its spellings.
fn names_variable(t: &Token<'_>, variable: &str) -> bool {
    let text = match t.kind {
        TokenKind::Word | TokenKind::Variable => t.text.to_ascii_lowercase(),
        TokenKind::QuotedIdent => unquote(t.text).to_ascii_lowercase(),
        _ => return false,
    };
    let name = text.trim_start_matches("@@");
    let name = ["session.", "local.", "global."]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
        .trim_matches('`');
    name == variable
}

/// The values a SET statement gives `max_statement_time` (see [`Statement::time_limits`]).
fn time_limits(s: &[&Token<'_>]) -> Vec<Option<u64>> {
    if !word_is(s.first().copied(), "SET") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, t) in s.iter().enumerate() {
        if !names_variable(t, TIME_LIMIT) {
            continue;
        }
        if !s
            .get(i + 1)
            .is_some_and(|n| n.text == "=" || n.text == ":=")
        {
            continue;
        }
        let value = s.get(i + 2);
        let after = s.get(i + 3);
        let plain = value.is_some_and(|v| v.kind == TokenKind::Number)
            && after.is_none_or(|a| a.text == "," || word_is(Some(a), "FOR"));
        out.push(if plain {
            value
                .and_then(|v| v.text.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(|v| (v * 1000.0).round().min(u64::MAX as f64) as u64)
        } else {
            None
        });
    }
    out
}

/// The statement a `SET STATEMENT … FOR` prefix (any number of them) runs.
fn without_set_statement<'s, 't>(mut s: &'s [&'t Token<'t>]) -> &'s [&'t Token<'t>] {
    while word_is(s.first().copied(), "SET") && word_is(s.get(1).copied(), "STATEMENT") {
        let mut depth = 0i32;
        let mut at = None;
        for (i, t) in s.iter().enumerate().skip(2) {
            match t.text {
                "(" => depth += 1,
                ")" => depth -= 1,
                _ if depth == 0 && word_is(Some(t), "FOR") => {
                    at = Some(i);
                    break;
                }
                _ => {}
            }
        }
        match at {
            Some(i) => s = &s[i + 1..],
            None => break,
        }
    }
    s
}

/// An identifier (bare or quoted, possibly qualified) starting like a deployment artifact's name.
/// A double-quoted string counts: with `ANSI_QUOTES` in the session's sql_mode it is an identifier.
fn is_artifact_name(t: &Token<'_>) -> bool {
    let unquoted;
    let name = match t.kind {
        TokenKind::Word => t.text,
        TokenKind::QuotedIdent => t.text.trim_start_matches('`'),
        TokenKind::String if t.text.starts_with('"') => {
            unquoted = unquote(t.text);
            unquoted.as_str()
        }
        _ => return false,
    };
    let head = name.get(..8).unwrap_or_default();
    head.eq_ignore_ascii_case("_strata_") || head.eq_ignore_ascii_case("~strata_")
}

/// The value of a quoted SQL string literal.
fn unquote(lit: &str) -> String {
    let q = lit.chars().next().unwrap_or('\'');
    let body = lit.get(1..lit.len().saturating_sub(1)).unwrap_or("");
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(match n {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'b' => '\u{8}',
                    'Z' => '\u{1a}',
                    '0' => '\0',
                    other => other,
                });
            }
        } else if c == q && chars.peek() == Some(&q) {
            chars.next();
            out.push(q);
        } else {
            out.push(c);
        }
    }
    out
}

fn directive_timeout(text: &str) -> Option<u64> {
    let upper = text.to_ascii_uppercase();
    let pos = upper.find("QUERY_TIMEOUT_MS")?;
    let rest = upper[pos + "QUERY_TIMEOUT_MS".len()..]
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests;
