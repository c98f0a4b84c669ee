//! Deployment artifacts left out of schema listings.
//!
//! A deployment's tables (`~strata_…`) and triggers (`_strata_…`) sit in the application's schema
//! during a deploy and its revert window, where the server lists them to every role user
//! (`SHOW TABLES`, `SHOW TRIGGERS`, `information_schema`). Tools that walk every table then trip
//! on names the gateway refuses (mysqldump, SQLAlchemy's `reflect`, Rails' schema dump). The server
//! marks where a listing's values come from: a column whose definition says `information_schema`
//! and an original column holding a table's or trigger's name. A row naming an artifact in such a
//! column is dropped before the client sees it. Counts and expressions over those columns are not
//! rewritten (the server computed them); only rows are left out.

use crate::Reader;

/// Original column names (in `information_schema`) whose values name a table or a trigger.
const NAME_COLUMNS: &[&[u8]] = &[
    b"TABLE_NAME",
    b"TRIGGER_NAME",
    b"EVENT_OBJECT_TABLE",
    b"REFERENCED_TABLE_NAME",
    // SHOW OPEN TABLES
    b"Table",
];

/// True for a deployment artifact's name (`~strata_…` table, `_strata_…` trigger).
pub fn is_artifact_name(name: &[u8]) -> bool {
    [&b"~strata_"[..], b"_strata_"]
        .iter()
        .any(|p| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p))
}

/// True when a column definition (protocol 41) reads a table's or trigger's name from
/// `information_schema`. Anything unreadable is not such a column.
pub fn names_objects(column_definition: &[u8]) -> bool {
    let mut r = Reader::new(column_definition);
    let mut field = || r.lenenc_bytes().ok();
    let (Some(_catalog), Some(schema), Some(_table), Some(_org_table), Some(_name), Some(org_name)) =
        (field(), field(), field(), field(), field(), field())
    else {
        return false;
    };
    reads_object_names(schema, org_name)
}

/// True when a column read from `schema`.`…`.`org_name` holds a table's or trigger's name.
pub fn reads_object_names(schema: &[u8], org_name: &[u8]) -> bool {
    schema.eq_ignore_ascii_case(b"information_schema") && NAME_COLUMNS.contains(&org_name)
}

/// True when a text-protocol row holds an artifact's name in one of `columns` (ascending indexes).
pub fn row_names_artifact(row: &[u8], columns: &[usize]) -> bool {
    let Some(&last) = columns.last() else {
        return false;
    };
    let mut r = Reader::new(row);
    for i in 0..=last {
        let Ok(v) = r.lenenc() else {
            return false;
        };
        let Some(n) = v else {
            continue; // NULL
        };
        let Ok(n) = usize::try_from(n) else {
            return false;
        };
        let Ok(value) = r.bytes(n) else {
            return false;
        };
        if columns.contains(&i) && is_artifact_name(value) {
            return true;
        }
    }
    false
}

/// The size of a binary-protocol value of `column_type` at the start of `rest`, if it can be told.
fn binary_value_len(column_type: u8, rest: &[u8]) -> Option<usize> {
    match column_type {
        0x01 => Some(1),               // TINY
        0x02 | 0x0D => Some(2),        // SHORT, YEAR
        0x03 | 0x09 | 0x04 => Some(4), // LONG, INT24, FLOAT
        0x08 | 0x05 => Some(8),        // LONGLONG, DOUBLE
        0x07 | 0x0A | 0x0B | 0x0C | 0x11 | 0x12 | 0x13 => {
            // DATE, TIME, DATETIME, TIMESTAMP (and their 2 forms): a length byte, then that much.
            rest.first().map(|n| 1 + *n as usize)
        }
        0x06 => Some(0), // NULL type
        _ => {
            // Strings, decimals, blobs, JSON, enum, set, bit, geometry: length-encoded.
            let mut r = Reader::new(rest);
            let n = r.lenenc_int().ok()?;
            let header = rest.len() - r.remaining().len();
            usize::try_from(n).ok().map(|n| header + n)
        }
    }
}

/// True when a binary-protocol row (`0x00`, NULL bitmap, values) holds an artifact's name in one of
/// `columns`, read with the result's column `types`.
pub fn binary_row_names_artifact(row: &[u8], types: &[u8], columns: &[usize]) -> bool {
    let Some(&last) = columns.last() else {
        return false;
    };
    if row.first() != Some(&0x00) || last >= types.len() {
        return false;
    }
    let bitmap_len = (types.len() + 7 + 2) / 8;
    let Some(bitmap) = row.get(1..1 + bitmap_len) else {
        return false;
    };
    let mut at = 1 + bitmap_len;
    for (i, &t) in types.iter().enumerate().take(last + 1) {
        let bit = i + 2;
        if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
            continue; // NULL
        }
        let Some(rest) = row.get(at..) else {
            return false;
        };
        let Some(len) = binary_value_len(t, rest) else {
            return false;
        };
        if columns.contains(&i) {
            let mut r = Reader::new(rest);
            if r.lenenc_bytes().is_ok_and(is_artifact_name) {
                return true;
            }
        }
        at += len;
    }
    false
}

/// Follows one response (column definitions, rows, possibly several result sets) and says which
/// rows to leave out.
#[derive(Debug, Default, Clone)]
pub struct ArtifactRows {
    columns: Vec<usize>,
    /// Every column's type, for binary-protocol rows.
    types: Vec<u8>,
    seen: usize,
    in_rows: bool,
    /// Rows left out so far.
    pub hidden: u64,
}

impl ArtifactRows {
    /// A column definition arrived.
    pub fn column(&mut self, definition: &[u8]) {
        if self.in_rows {
            // The next result set's definitions.
            self.columns.clear();
            self.types.clear();
            self.seen = 0;
            self.in_rows = false;
        }
        // One reading of the definition: its six strings, then the fixed part.
        let mut r = Reader::new(definition);
        let mut field = || r.lenenc_bytes().ok();
        let (_catalog, schema, _table, _org_table, _name, org_name) =
            (field(), field(), field(), field(), field(), field());
        if let (Some(schema), Some(org_name)) = (schema, org_name) {
            if reads_object_names(schema, org_name) {
                self.columns.push(self.seen);
            }
        }
        let ty = (|| {
            r.lenenc_int().ok()?;
            r.u16().ok()?;
            r.u32().ok()?;
            r.u8().ok()
        })();
        self.types.push(ty.unwrap_or(0xFE));
        self.seen += 1;
    }

    /// A row arrived (`binary`: of a prepared statement): true when it is to be left out.
    pub fn hide(&mut self, row: &[u8], binary: bool) -> bool {
        self.in_rows = true;
        if self.columns.is_empty() {
            return false;
        }
        let hide = if binary {
            binary_row_names_artifact(row, &self.types, &self.columns)
        } else {
            row_names_artifact(row, &self.columns)
        };
        if hide {
            self.hidden += 1;
        }
        hide
    }

    /// One result ended; a following result set starts afresh.
    pub fn end_of_result(&mut self) {
        self.in_rows = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packets::text_row;
    use crate::put_lenenc_bytes;

    fn def(schema: &str, org_name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for part in ["def", schema, "T", "T", "name", org_name] {
            put_lenenc_bytes(&mut out, part.as_bytes());
        }
        out.extend_from_slice(&[0x0C, 33, 0, 0, 1, 0, 0, 0xFD, 0, 0, 0, 0, 0]);
        out
    }

    #[test]
    fn names() {
        for (name, artifact) in [
            ("~strata_a1b2_orders_old", true),
            ("_strata_a1b2_orders_ins", true),
            ("~STRATA_x", true),
            ("orders", false),
            ("strata_orders", false),
            ("~strata", false),
            ("", false),
            ("_strat", false),
        ] {
            assert_eq!(is_artifact_name(name.as_bytes()), artifact, "{name}");
        }
    }

    #[test]
    fn columns_that_name_objects() {
        for (schema, org, yes) in [
            ("information_schema", "TABLE_NAME", true),
            ("INFORMATION_SCHEMA", "TRIGGER_NAME", true),
            ("information_schema", "EVENT_OBJECT_TABLE", true),
            ("information_schema", "Table", true),
            ("information_schema", "TABLE_TYPE", false),
            ("shop", "TABLE_NAME", false),
            ("", "", false),
        ] {
            assert_eq!(names_objects(&def(schema, org)), yes, "{schema}.{org}");
        }
        assert!(!names_objects(b""));
        assert!(!names_objects(&[0xFC]));
    }

    #[test]
    fn rows() {
        let row = text_row(&[Some(b"t"), None, Some(b"~strata_x_old")]);
        assert!(row_names_artifact(&row, &[2]));
        assert!(!row_names_artifact(&row, &[0]));
        assert!(!row_names_artifact(&row, &[1]));
        assert!(!row_names_artifact(&row, &[]));
        // A truncated row is never hidden.
        assert!(!row_names_artifact(&row[..row.len() - 3], &[2]));
        assert!(!row_names_artifact(&row, &[7]));
    }

    impl ArtifactRows {
        fn hide_text(&mut self, row: &[u8]) -> bool {
            self.hide(row, false)
        }
    }

    #[test]
    fn binary_rows() {
        let defs = [
            def_typed("information_schema", "TABLE_CATALOG", 0xFD),
            def_typed("information_schema", "TABLE_ROWS", 0x08),
            def_typed("information_schema", "CREATE_TIME", 0x0C),
            def_typed("information_schema", "TABLE_NAME", 0xFD),
        ];
        let mut f = ArtifactRows::default();
        for d in &defs {
            f.column(d);
        }
        let row = |name: &[u8], rows_null: bool| {
            let mut out = vec![0x00];
            // 4 columns + 2 offset bits: one byte of NULL bitmap.
            out.push(if rows_null { 1 << 3 } else { 0 });
            put_lenenc_bytes(&mut out, b"def");
            if !rows_null {
                out.extend_from_slice(&42u64.to_le_bytes());
            }
            out.extend_from_slice(&[7, 0xEA, 0x07, 12, 6, 5, 1, 2]);
            put_lenenc_bytes(&mut out, name);
            out
        };
        assert!(f.hide(&row(b"~strata_1_t_old", false), true));
        assert!(f.hide(&row(b"_strata_1_t_fi", true), true));
        assert!(!f.hide(&row(b"orders", false), true));
        // Cut short: never hidden, never a panic.
        let whole = row(b"~strata_1_t_old", false);
        for n in 0..whole.len() - 1 {
            let _ = f.hide(&whole[..n], true);
        }
        assert!(!f.hide(&whole[..whole.len() - 4], true));
    }

    fn def_typed(schema: &str, org_name: &str, t: u8) -> Vec<u8> {
        let mut d = def(schema, org_name);
        let at = d.len() - 6;
        d[at] = t;
        d
    }

    #[test]
    fn follows_several_result_sets() {
        let mut f = ArtifactRows::default();
        f.column(&def("information_schema", "TABLE_NAME"));
        f.column(&def("information_schema", "TABLE_TYPE"));
        assert!(f.hide_text(&text_row(&[Some(b"~strata_1_t_old"), Some(b"BASE TABLE")])));
        assert!(!f.hide_text(&text_row(&[Some(b"t"), Some(b"BASE TABLE")])));
        f.end_of_result();
        // The second result set reads other columns: the first one's positions no longer apply.
        f.column(&def("shop", "name"));
        assert!(!f.hide_text(&text_row(&[Some(b"~strata_1_t_old")])));
        assert_eq!(f.hidden, 1);
    }
}
