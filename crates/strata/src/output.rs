//! `--format human|json|csv`. JSON prints the API object (a list prints as an array); human and CSV
//! print the same columns, as a table or as CSV with one header row.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Csv,
}

/// One column: its header and the JSON pointer of its value.
pub type Column = (&'static str, &'static str);

pub const DATABASE: &[Column] = &[
    ("NAME", "/name"),
    ("KIND", "/kind"),
    ("STATE", "/state"),
    ("DEFAULT BRANCH", "/default_branch"),
    ("BRANCHES", "/branches_count"),
    ("CREATED AT", "/created_at"),
    ("UPDATED AT", "/updated_at"),
];
pub const DATABASE_SETTINGS: &[Column] = &[
    ("NAME", "/name"),
    ("DEFAULT BRANCH", "/default_branch"),
    ("FOREIGN KEYS", "/foreign_keys_enabled"),
    ("AUTOMATIC MIGRATIONS", "/automatic_migrations"),
    ("MIGRATION FRAMEWORK", "/migration_framework"),
    ("MIGRATION TABLE", "/migration_table_name"),
    ("REQUIRE APPROVAL", "/require_approval_for_deploy"),
    ("AGGRESSIVE CUTOVER", "/aggressive_cutover"),
    ("DELETION PROTECTED", "/deletion_protected"),
];
pub const BRANCH: &[Column] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("PARENT BRANCH", "/parent_branch"),
    ("REGION", "/region/slug"),
    ("PRODUCTION", "/production"),
    ("SAFE MIGRATIONS", "/safe_migrations"),
    ("READY", "/ready"),
    ("INSTANCE", "/instance/state"),
    ("CREATED AT", "/created_at"),
    ("UPDATED AT", "/updated_at"),
];
pub const BACKUP: &[Column] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("STATE", "/state"),
    ("SIZE", "/size"),
    ("VALIDATION", "/validation_state"),
    ("PROTECTED", "/protected"),
    ("CREATED AT", "/created_at"),
    ("STARTED AT", "/started_at"),
    ("COMPLETED AT", "/completed_at"),
    ("EXPIRES AT", "/expires_at"),
];
pub const PASSWORD: &[Column] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("BRANCH", "/database_branch/name"),
    ("USERNAME", "/username"),
    ("ROLE", "/role"),
    ("ROLE DESCRIPTION", "/role_description"),
    ("TTL", "/ttl_seconds"),
    ("EXPIRES AT", "/expires_at"),
    ("EXPIRED", "/expired"),
];
pub const PASSWORD_CREATED: &[Column] = &[
    ("NAME", "/name"),
    ("BRANCH", "/database_branch/name"),
    ("ID", "/id"),
    ("USERNAME", "/username"),
    ("ACCESS HOST URL", "/access_host_url"),
    ("DATABASE", "/connection/database"),
    ("ROLE", "/role"),
    ("ROLE DESCRIPTION", "/role_description"),
    ("PASSWORD", "/plain_text"),
    ("TTL", "/ttl_seconds"),
];
pub const ORGANIZATION: &[Column] = &[
    ("NAME", "/name"),
    ("CREATED AT", "/created_at"),
    ("UPDATED AT", "/updated_at"),
];
pub const SERVICE_TOKEN: &[Column] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("LAST USED AT", "/last_used_at"),
    ("EXPIRES AT", "/expires_at"),
    ("CREATED AT", "/created_at"),
];
pub const SERVICE_TOKEN_CREATED: &[Column] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("TOKEN", "/token"),
    ("EXPIRES AT", "/expires_at"),
    ("CREATED AT", "/created_at"),
];

fn cell(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => visible(s),
        Some(other) => other.to_string(),
    }
}

/// Text from the server as a terminal may show it: control characters (an escape sequence in a
/// table comment could erase or hide the lines a reviewer reads) and Unicode's bidirectional
/// overrides (which reorder what is shown) are written out as escapes; newlines and tabs stay.
pub fn visible(text: &str) -> String {
    let hidden = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
    };
    if !text.chars().any(hidden) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if hidden(c) {
                format!("\\u{{{:04x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn render(format: Format, columns: &[Column], items: &[Value], as_list: bool) -> String {
    match format {
        Format::Json => {
            let v = if as_list {
                Value::Array(items.to_vec())
            } else {
                items.first().cloned().unwrap_or(Value::Null)
            };
            serde_json::to_string_pretty(&v).unwrap_or_default()
        }
        Format::Csv => {
            let mut out = columns
                .iter()
                .map(|(h, _)| csv_field(&h.to_lowercase().replace(' ', "_")))
                .collect::<Vec<_>>()
                .join(",");
            for item in items {
                out.push('\n');
                out.push_str(
                    &columns
                        .iter()
                        .map(|(_, p)| csv_field(&cell(item, p)))
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            out
        }
        Format::Human => {
            if items.is_empty() && as_list {
                return "No results.".into();
            }
            let mut t = Table::new();
            t.load_style(UTF8_FULL_CONDENSED);
            t.set_header(columns.iter().map(|(h, _)| *h));
            for item in items {
                t.add_row(columns.iter().map(|(_, p)| cell(item, p)));
            }
            t.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats() {
        let items = vec![
            json!({"name": "shop", "kind": "mysql", "state": "ready", "default_branch": "main", "branches_count": 2, "created_at": "t", "updated_at": null}),
        ];
        assert_eq!(
            render(Format::Csv, DATABASE, &items, true),
            "name,kind,state,default_branch,branches,created_at,updated_at\nshop,mysql,ready,main,2,t,"
        );
        assert!(render(Format::Json, DATABASE, &items, true).starts_with('['));
        assert!(render(Format::Json, DATABASE, &items, false).starts_with('{'));
        assert!(render(Format::Human, DATABASE, &items, true).contains("shop"));
        assert_eq!(render(Format::Human, DATABASE, &[], true), "No results.");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }

    #[test]
    fn hidden_characters_are_shown() {
        assert_eq!(visible("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(visible("zz\x1b[8m"), "zz\\u{001b}[8m");
        assert_eq!(visible("a\u{202E}b\rc"), "a\\u{202e}b\\u{000d}c");
        let items = vec![json!({"name": "x\u{1b}[2K"})];
        assert!(!render(Format::Human, &[("NAME", "/name")], &items, true).contains('\u{1b}'));
    }
}
