//! Name rules. A database name becomes a MySQL schema name inside each of its branch instances, so it
//! must also be a safe, unquoted-friendly identifier and not one of the server's own schemas.

use thiserror::Error;

/// MySQL limits schema names to 64 characters; branch and organization names share the limit.
pub const MAX_NAME_LEN: usize = 64;
/// A password's display name is free text up to this many characters.
pub const MAX_PASSWORD_NAME_LEN: usize = 255;

const RESERVED_SCHEMAS: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("{kind} name must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} name must be at most {max} characters long (got {len})")]
    TooLong {
        kind: &'static str,
        max: usize,
        len: usize,
    },
    #[error("{kind} name can only contain {allowed}")]
    BadCharacters {
        kind: &'static str,
        allowed: &'static str,
    },
    #[error("{kind} name must start with a lowercase letter or a digit")]
    BadStart { kind: &'static str },
    #[error("{kind} name '{name}' is reserved")]
    Reserved { kind: &'static str, name: String },
}

fn check(
    kind: &'static str,
    name: &str,
    allowed: &'static str,
    ok: impl Fn(u8) -> bool,
) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            max: MAX_NAME_LEN,
            len: name.chars().count(),
        });
    }
    if !name.bytes().all(ok) {
        return Err(NameError::BadCharacters { kind, allowed });
    }
    let first = name.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(NameError::BadStart { kind });
    }
    Ok(())
}

/// Database names: lowercase alphanumerics, underscores and dashes (PlanetScale's rule).
pub fn validate_database_name(name: &str) -> Result<(), NameError> {
    check(
        "Database",
        name,
        "lowercase alphanumeric characters, underscores and dashes",
        |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-',
    )?;
    if RESERVED_SCHEMAS.contains(&name) {
        return Err(NameError::Reserved {
            kind: "Database",
            name: name.to_string(),
        });
    }
    Ok(())
}

/// Branch names: lowercase alphanumerics and hyphens (PlanetScale's rule); underscores are accepted too.
pub fn validate_branch_name(name: &str) -> Result<(), NameError> {
    check(
        "Branch",
        name,
        "lowercase alphanumeric characters, hyphens and underscores",
        |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_',
    )
}

/// Organization names follow the database rule.
pub fn validate_organization_name(name: &str) -> Result<(), NameError> {
    check(
        "Organization",
        name,
        "lowercase alphanumeric characters, underscores and dashes",
        |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-',
    )
}

/// Password and service-token display names: free text without control characters.
pub fn validate_display_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.trim().is_empty() {
        return Err(NameError::Empty { kind });
    }
    let len = name.chars().count();
    if len > MAX_PASSWORD_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            max: MAX_PASSWORD_NAME_LEN,
            len,
        });
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::BadCharacters {
            kind,
            allowed: "printable characters",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn database_names() {
        let cases: &[(&str, bool)] = &[
            ("shop", true),
            ("shop_2", true),
            ("my-db", true),
            ("0day", true),
            ("", false),
            ("Shop", false),
            ("shop db", false),
            ("shop.db", false),
            ("shop`", false),
            ("-shop", false),
            ("_shop", false),
            ("mysql", false),
            ("information_schema", false),
            ("sys", false),
            ("é", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_database_name(name).is_ok(), *ok, "{name:?}");
        }
        assert!(matches!(
            validate_database_name(&"a".repeat(65)),
            Err(NameError::TooLong { len: 65, .. })
        ));
        assert!(validate_database_name(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn branch_names() {
        for (name, ok) in [
            ("main", true),
            ("add-index", true),
            ("feat_1", true),
            ("Main", false),
            ("a/b", false),
            ("", false),
        ] {
            assert_eq!(validate_branch_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn display_names() {
        assert!(validate_display_name("Password", "my app (prod)").is_ok());
        assert!(validate_display_name("Password", "   ").is_err());
        assert!(validate_display_name("Password", "a\nb").is_err());
        assert!(validate_display_name("Password", &"x".repeat(256)).is_err());
    }

    #[test]
    fn error_texts_are_clear() {
        assert_eq!(
            validate_database_name("Bad Name").unwrap_err().to_string(),
            "Database name can only contain lowercase alphanumeric characters, underscores and dashes"
        );
    }

    proptest! {
        #[test]
        fn valid_database_names_are_safe_identifiers(name in "[a-z0-9][a-z0-9_-]{0,63}") {
            prop_assume!(!RESERVED_SCHEMAS.contains(&name.as_str()));
            prop_assert!(validate_database_name(&name).is_ok());
        }

        #[test]
        fn accepted_names_never_need_quoting_beyond_backticks(name in "\\PC{0,80}") {
            if validate_database_name(&name).is_ok() {
                prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
                prop_assert!(name.len() <= MAX_NAME_LEN);
            }
        }
    }
}
