//! "Automatically copy migration data": the migration frameworks PlanetScale lists, the table each
//! one keeps its log of applied migrations in, and the checks on a database's setting.

use thiserror::Error;

/// The frameworks, by the name the API takes, with their migration tables (`other`: the table is
/// named by the setting).
pub const FRAMEWORKS: &[(&str, Option<&str>)] = &[
    ("rails", Some("schema_migrations")),
    ("phoenix", Some("schema_migrations")),
    ("laravel", Some("migrations")),
    ("django", Some("django_migrations")),
    ("dotnet", Some("__EFMigrationsHistory")),
    ("sequelize", Some("SequelizeMeta")),
    ("other", None),
];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MigrationDataError {
    #[error("migration framework '{0}' is not one of rails, phoenix, laravel, django, dotnet, sequelize, other")]
    UnknownFramework(String),
    #[error("migration table name '{0}' is not a valid table name (1 to 64 characters, no NUL, no trailing space, not a deployment's artifact name)")]
    BadTable(String),
    #[error("automatic copying of migration data needs a migration framework, or 'other' with a migration table name")]
    NoTable,
}

/// The canonical name of a framework (case and `.NET` spelled freely).
pub fn framework(name: &str) -> Result<&'static str, MigrationDataError> {
    let lower = name.trim().to_ascii_lowercase();
    let lower = match lower.as_str() {
        ".net" | "net" | "ef" | "efcore" => "dotnet",
        "rails/phoenix" => "rails",
        other => other,
    };
    FRAMEWORKS
        .iter()
        .find(|(f, _)| *f == lower)
        .map(|(f, _)| *f)
        .ok_or_else(|| MigrationDataError::UnknownFramework(name.to_string()))
}

/// True for a table that holds the applied heads rather than a log of every migration
/// (Alembic's `alembic_version`: a branch's row replaces its parent's). A deploy makes the target's
/// such table the branch's; every other migration table gets the branch's rows it lacks, so
/// migrations deployed from other branches stay recorded.
pub fn keeps_heads(table: &str) -> bool {
    table.eq_ignore_ascii_case("alembic_version")
}

/// Checks a table name given for the setting.
pub fn validate_table(name: &str) -> Result<(), MigrationDataError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && !name.contains('\0')
        && !name.ends_with(' ')
        && !name.starts_with("_strata_")
        && !name.starts_with("~strata_");
    if ok {
        Ok(())
    } else {
        Err(MigrationDataError::BadTable(name.to_string()))
    }
}

/// The table whose rows a deploy copies: the one named by the setting, else the framework's own.
pub fn table(framework: Option<&str>, table: Option<&str>) -> Option<String> {
    if let Some(t) = table.filter(|t| !t.is_empty()) {
        return Some(t.to_string());
    }
    let f = framework?;
    FRAMEWORKS
        .iter()
        .find(|(name, _)| *name == f)
        .and_then(|(_, t)| t.map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frameworks_and_tables() {
        let cases: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
            (Some("django"), None, Some("django_migrations")),
            (Some("rails"), None, Some("schema_migrations")),
            (Some("laravel"), None, Some("migrations")),
            (Some("dotnet"), None, Some("__EFMigrationsHistory")),
            (Some("sequelize"), None, Some("SequelizeMeta")),
            (
                Some("other"),
                Some("alembic_version"),
                Some("alembic_version"),
            ),
            (Some("other"), None, None),
            (Some("django"), Some("my_log"), Some("my_log")),
            (
                None,
                Some("__drizzle_migrations"),
                Some("__drizzle_migrations"),
            ),
            (None, None, None),
            (Some("other"), Some(""), None),
        ];
        for (f, t, want) in cases {
            assert_eq!(table(*f, *t).as_deref(), *want, "{f:?} {t:?}");
        }
        assert_eq!(framework("Django"), Ok("django"));
        assert_eq!(framework(".NET"), Ok("dotnet"));
        assert_eq!(framework(" other "), Ok("other"));
        assert!(matches!(
            framework("flyway"),
            Err(MigrationDataError::UnknownFramework(_))
        ));
        assert!(framework("").is_err());
        for bad in [
            "",
            " x ",
            "_strata_1_x",
            "~strata_1_x",
            "a\0b",
            &"x".repeat(65),
        ] {
            assert!(validate_table(bad).is_err(), "{bad:?}");
        }
        for good in [
            "alembic_version",
            "SequelizeMeta",
            "__EFMigrationsHistory",
            "mig log",
        ] {
            assert!(validate_table(good).is_ok(), "{good:?}");
        }
    }
}
