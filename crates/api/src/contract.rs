//! What the OpenAPI document says about request fields beyond their Rust types: the patterns,
//! ranges and fixed values the handlers enforce, so the document is exact in both directions (what
//! it allows is accepted, what it forbids is refused). Each rule names the check it mirrors.

use serde::{Deserialize, Deserializer};
use utoipa::openapi::{ObjectBuilder, Type};

// The patterns below are written out again in the request types' `#[schema(pattern = "…")]`
// (the attribute takes only a literal); a test checks the document carries exactly these.

/// `strata_model::names::validate_database_name`: lowercase alphanumerics, `_` and `-`, starting
/// with a letter or digit, at most 64, not a schema MariaDB keeps for itself.
#[cfg(test)]
pub const DATABASE_NAME: &str =
    "^(?!(mysql|information_schema|performance_schema|sys)$)[a-z0-9][a-z0-9_-]{0,63}$";
/// `strata_model::names::validate_branch_name`.
#[cfg(test)]
pub const BRANCH_NAME: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";
/// `strata_model::names::validate_display_name` (passwords, service tokens, backups, policies):
/// not blank, at most 255 characters, no control characters.
#[cfg(test)]
pub const DISPLAY_NAME: &str = "^(?=[\\s\\S]*[^\\s])[^\\x00-\\x1f\\x7f-\\x9f]{1,255}$";

/// One of `values`, or null (the fields are optional: null is the same as leaving them out).
fn one_of(values: &[&str]) -> ObjectBuilder {
    let mut allowed: Vec<serde_json::Value> = values.iter().map(|v| (*v).into()).collect();
    allowed.push(serde_json::Value::Null);
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .enum_values(Some(allowed))
}

/// `kind` of a new database.
/// Empty strings are taken as "not given" where these say so.
pub fn database_kind() -> ObjectBuilder {
    one_of(&["mysql", ""])
}
/// `region`: Strata has one.
pub fn region() -> ObjectBuilder {
    one_of(&["local", ""])
}
pub fn seed_data() -> ObjectBuilder {
    one_of(&["last_successful_backup", "current", ""])
}
pub fn password_role() -> ObjectBuilder {
    one_of(&["reader", "writer", "readwriter", "admin"])
}
pub fn deploy_strategy() -> ObjectBuilder {
    one_of(&["serial", ""])
}
/// One of `values` (a required field).
fn exactly_one_of(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
}
pub fn close_state() -> ObjectBuilder {
    exactly_one_of(&["closed"])
}
pub fn review_state() -> ObjectBuilder {
    exactly_one_of(&["approve", "comment"])
}
/// The deploy-request list's `state` filter.
pub fn request_state() -> ObjectBuilder {
    one_of(&["open", "closed"])
}
pub fn time_unit() -> ObjectBuilder {
    one_of(&["second", "minute", "hour", "day", "week", "month", "year"])
}
pub fn policy_target() -> ObjectBuilder {
    one_of(&["production", "development"])
}
pub fn migration_framework() -> ObjectBuilder {
    one_of(&[
        "rails",
        "phoenix",
        "laravel",
        "django",
        "dotnet",
        "sequelize",
        "other",
        "",
    ])
}

/// A required integer, as [`whole_number`] reads it.
pub fn whole<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    whole_number(d)?.ok_or_else(|| serde::de::Error::custom("a whole number is required"))
}

/// An integer that JSON may write with a zero fraction (`5.0`): JSON Schema's `integer` allows it,
/// and so do the API's integer fields.
pub fn whole_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
    }
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(Number::Int(n)) => Ok(Some(n)),
        Some(Number::Float(f))
            if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) =>
        {
            Ok(Some(f as i64))
        }
        Some(Number::Float(f)) => Err(serde::de::Error::custom(format!(
            "{f} is not a whole number in range"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "whole_number")]
        n: Option<i64>,
    }

    #[test]
    fn whole_numbers() {
        let n = |s: &str| serde_json::from_str::<T>(s).map(|t| t.n);
        assert_eq!(n("{}").unwrap(), None);
        assert_eq!(n(r#"{"n":null}"#).unwrap(), None);
        assert_eq!(n(r#"{"n":5}"#).unwrap(), Some(5));
        assert_eq!(n(r#"{"n":-84464.0}"#).unwrap(), Some(-84464));
        assert!(n(r#"{"n":1.5}"#).is_err());
        assert!(n(r#"{"n":1e300}"#).is_err());
        assert!(n(r#"{"n":9223372036854775808}"#).is_err());
        assert!(n(r#"{"n":"5"}"#).is_err());
    }

    #[test]
    fn the_document_carries_these_patterns() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(crate::ApiDoc::openapi()).unwrap();
        let pattern = |schema: &str, field: &str| {
            doc["components"]["schemas"][schema]["properties"][field]["pattern"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(pattern("CreateDatabase", "name"), DATABASE_NAME);
        assert_eq!(pattern("CreateBranch", "name"), BRANCH_NAME);
        assert_eq!(pattern("CreateDeployRequest", "branch"), BRANCH_NAME);
        for (schema, field) in [
            ("CreateServiceToken", "name"),
            ("CreateBackup", "name"),
            ("BackupPolicyBody", "name"),
        ] {
            assert_eq!(pattern(schema, field), DISPLAY_NAME, "{schema}.{field}");
        }
        let required = |schema: &str| doc["components"]["schemas"][schema]["required"].clone();
        assert_eq!(required("CreateDatabase"), serde_json::json!(["name"]));
        assert_eq!(
            required("UpdateDeployRequest"),
            serde_json::json!(["state"])
        );
    }

    /// The patterns agree with the model's checks (lookahead aside: the reserved names are checked
    /// separately, the regex crate has no lookahead).
    #[test]
    fn patterns_mirror_the_name_checks() {
        use strata_model::names;
        let branch = regex::Regex::new(BRANCH_NAME).unwrap();
        let database = regex::Regex::new(
            &DATABASE_NAME.replace("(?!(mysql|information_schema|performance_schema|sys)$)", ""),
        )
        .unwrap();
        let samples = [
            "main", "a", "0", "a-b_c", "-a", "_a", "A", "é", "a b", "", "mysql", "sys", "sysx",
            "a.b", "ab\n",
        ];
        let long = "a".repeat(64);
        let longer = "a".repeat(65);
        for s in samples
            .iter()
            .copied()
            .chain([long.as_str(), longer.as_str()])
        {
            assert_eq!(
                branch.is_match(s),
                names::validate_branch_name(s).is_ok(),
                "{s:?}"
            );
            let reserved =
                ["mysql", "information_schema", "performance_schema", "sys"].contains(&s);
            assert_eq!(
                database.is_match(s) && !reserved,
                names::validate_database_name(s).is_ok(),
                "{s:?}"
            );
        }
    }
}
