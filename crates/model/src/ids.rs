//! Public ids, password usernames and recognisable secrets.
//!
//! Secrets carry a fixed prefix and a CRC32 checksum in their last six characters, as GitHub's tokens do,
//! so a secret scanner can tell a real leaked Strata password or token from look-alike text offline.

const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Prefix of every branch password's plaintext.
pub const PASSWORD_PREFIX: &str = "strata_pw_";
/// Prefix of every service token's plaintext.
pub const SERVICE_TOKEN_PREFIX: &str = "strata_tkn_";
/// Random characters in a secret, before the checksum: 32 base62 characters is about 190 bits.
const SECRET_RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;

/// Fills `buf` with bytes from the operating system's CSPRNG.
///
/// # Panics
/// When the operating system cannot supply randomness, which leaves no safe way to make credentials.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source failed");
}

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias).
fn random_string(alphabet: &[u8], len: usize) -> String {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        random_bytes(&mut buf);
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// A 12-character lowercase alphanumeric id, the shape PlanetScale uses for passwords and tokens.
pub fn public_id() -> String {
    random_string(LOWER_ALNUM, 12)
}

/// A password's MySQL username: 20 lowercase alphanumerics, unique across the platform, so the
/// username alone identifies the password, and through it the database, branch and role.
pub fn password_username() -> String {
    random_string(LOWER_ALNUM, 20)
}

/// A random base62 secret of `len` characters (for internal instance credentials).
pub fn random_secret(len: usize) -> String {
    random_string(BASE62, len)
}

fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn new_secret(prefix: &str) -> String {
    let body = format!("{prefix}{}", random_string(BASE62, SECRET_RANDOM_LEN));
    let sum = checksum(&body);
    body + &sum
}

/// A new password plaintext: `strata_pw_` + 32 random base62 + 6-character checksum.
pub fn new_password_secret() -> String {
    new_secret(PASSWORD_PREFIX)
}

/// A new service-token plaintext: `strata_tkn_` + 32 random base62 + 6-character checksum.
pub fn new_service_token_secret() -> String {
    new_secret(SERVICE_TOKEN_PREFIX)
}

/// True when `s` is shaped like a secret with this prefix and its checksum holds.
pub fn is_well_formed_secret(s: &str, prefix: &str) -> bool {
    let Some(rest) = s.strip_prefix(prefix) else {
        return false;
    };
    if rest.len() != SECRET_RANDOM_LEN + CHECKSUM_LEN
        || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return false;
    }
    let (body, sum) = s.split_at(s.len() - CHECKSUM_LEN);
    checksum(body) == sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shapes() {
        let id = public_id();
        assert_eq!(id.len(), 12);
        assert!(id.bytes().all(|b| LOWER_ALNUM.contains(&b)));
        assert_eq!(password_username().len(), 20);
        let pw = new_password_secret();
        assert!(pw.starts_with(PASSWORD_PREFIX));
        assert_eq!(pw.len(), PASSWORD_PREFIX.len() + 38);
        assert!(is_well_formed_secret(&pw, PASSWORD_PREFIX));
        assert!(!is_well_formed_secret(&pw, SERVICE_TOKEN_PREFIX));
        let tk = new_service_token_secret();
        assert!(is_well_formed_secret(&tk, SERVICE_TOKEN_PREFIX));
    }

    #[test]
    fn ids_differ() {
        let a: std::collections::HashSet<_> = (0..1000).map(|_| public_id()).collect();
        assert_eq!(a.len(), 1000);
    }

    proptest! {
        #[test]
        fn any_single_character_change_breaks_the_checksum(pos in 0usize..38, c in proptest::sample::select(BASE62.to_vec())) {
            let pw = new_password_secret();
            let i = PASSWORD_PREFIX.len() + pos;
            let mut bytes = pw.clone().into_bytes();
            prop_assume!(bytes[i] != c);
            bytes[i] = c;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(!is_well_formed_secret(&changed, PASSWORD_PREFIX));
        }

        #[test]
        fn arbitrary_text_is_not_a_secret(s in "\\PC{0,60}") {
            prop_assume!(!s.starts_with(PASSWORD_PREFIX));
            prop_assert!(!is_well_formed_secret(&s, PASSWORD_PREFIX));
        }
    }
}
