//! Strata's pure core: the rules every other crate agrees on, with no I/O.
//!
//! - [`names`]: what a valid organization, database, branch and password name is.
//! - [`ids`]: public ids, usernames and recognisable secrets (passwords, service tokens).
//! - [`credentials`]: the hashes stored for a password, and checking a MySQL handshake against them.
//! - [`migration_data`]: the migration frameworks and their tables (automatic copy of migration data).
//! - [`role`]: password roles and the grants each one maps to.
//! - [`timefmt`]: PlanetScale-style ISO-8601 timestamps.

pub mod cidr;
pub mod credentials;
pub mod ids;
pub mod migration_data;
pub mod names;
pub mod role;
pub mod timefmt;

pub use names::NameError;

/// A digest of a deploy request's changes (its statements, in order): an approval records it, and
/// stands only while the request's changes digest the same.
pub fn changes_digest<'a>(statements: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for s in statements {
        // Length-prefixed, so statement boundaries count.
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    hex_lower(&h.finalize())
}

/// Bytes as lower-case hexadecimal, in one allocation (this runs on every lease of a password's
/// connection: a `format!` per byte cost more than the digest itself).
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

pub use role::Role;

#[cfg(test)]
mod digest_tests {
    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(super::hex_lower(&[]), "");
        assert_eq!(super::hex_lower(&[0, 9, 0x0a, 0xff, 0x10]), "00090aff10");
        for b in 0..=255u8 {
            assert_eq!(super::hex_lower(&[b]), format!("{b:02x}"));
        }
    }

    #[test]
    fn changes_digest_sees_every_statement_and_its_boundaries() {
        let d = |s: &[&str]| super::changes_digest(s.iter().copied());
        assert_eq!(d(&["a", "b"]), d(&["a", "b"]));
        assert_ne!(d(&["a", "b"]), d(&["ab"]));
        assert_ne!(d(&["a", "b"]), d(&["b", "a"]));
        assert_ne!(d(&["a"]), d(&["a", "DROP TABLE t"]));
        assert_eq!(d(&[]).len(), 64);
    }
}
