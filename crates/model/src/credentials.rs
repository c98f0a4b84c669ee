//! What is stored for a password, and checking a MySQL client's scramble against it.
//!
//! Only hashes are kept: `SHA1(SHA1(pw))` for mysql_native_password and `SHA256(SHA256(pw))` for
//! caching_sha2_password's fast path. Both let the gateway verify a handshake without the plaintext.
//! Service tokens are high-entropy random strings, so a single SHA-256 is enough to store them.

use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The hashes kept for one password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHashes {
    /// `SHA1(SHA1(password))`, mysql_native_password's stored form.
    pub native: [u8; 20],
    /// `SHA256(SHA256(password))`, caching_sha2_password's fast-path verifier.
    pub sha2: [u8; 32],
}

impl PasswordHashes {
    pub fn from_plaintext(password: &str) -> Self {
        let native: [u8; 20] = Sha1::digest(Sha1::digest(password.as_bytes())).into();
        let sha2: [u8; 32] = Sha256::digest(Sha256::digest(password.as_bytes())).into();
        PasswordHashes { native, sha2 }
    }

    /// Checks a plaintext password (e.g. sent inside TLS) against the stored hashes.
    pub fn verify_plaintext(&self, password: &str) -> bool {
        let other = PasswordHashes::from_plaintext(password);
        bool::from(self.native.ct_eq(&other.native) & self.sha2.ct_eq(&other.sha2))
    }

    /// mysql_native_password: the client sends `SHA1(pw) XOR SHA1(nonce ‖ SHA1(SHA1(pw)))`.
    pub fn verify_native(&self, nonce: &[u8], scramble: &[u8]) -> bool {
        if scramble.len() != 20 {
            return false;
        }
        let mut h = Sha1::new();
        h.update(nonce);
        h.update(self.native);
        let mask = h.finalize();
        let candidate: Vec<u8> = scramble
            .iter()
            .zip(mask.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let check: [u8; 20] = Sha1::digest(&candidate).into();
        bool::from(check.ct_eq(&self.native))
    }

    /// caching_sha2_password fast path: the client sends
    /// `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) ‖ nonce)`.
    pub fn verify_caching_sha2(&self, nonce: &[u8], scramble: &[u8]) -> bool {
        if scramble.len() != 32 {
            return false;
        }
        let mut h = Sha256::new();
        h.update(self.sha2);
        h.update(nonce);
        let mask = h.finalize();
        let candidate: Vec<u8> = scramble
            .iter()
            .zip(mask.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let check: [u8; 32] = Sha256::digest(&candidate).into();
        bool::from(check.ct_eq(&self.sha2))
    }
}

/// The client side of mysql_native_password (used to log in to instances, and in tests).
pub fn scramble_native(nonce: &[u8], password: &str) -> [u8; 20] {
    let stage1 = Sha1::digest(password.as_bytes());
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(stage2);
    let mask = h.finalize();
    let mut out = [0u8; 20];
    for i in 0..20 {
        out[i] = stage1[i] ^ mask[i];
    }
    out
}

/// The client side of caching_sha2_password's fast path.
pub fn scramble_caching_sha2(nonce: &[u8], password: &str) -> [u8; 32] {
    let stage1 = Sha256::digest(password.as_bytes());
    let stage2 = Sha256::digest(stage1);
    let mut h = Sha256::new();
    h.update(stage2);
    h.update(nonce);
    let mask = h.finalize();
    let mut out = [0u8; 32];
    for i in 0..32 {
        out[i] = stage1[i] ^ mask[i];
    }
    out
}

/// The stored form of a service token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time comparison of two stored hashes.
pub fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The internal credential of one branch password's server user on an instance: derived from the
/// instance's own control credential and the password's id, so nothing more is stored and no
/// two instances share it.
pub fn password_user_secret(instance_root: &str, password_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"strata password user\0");
    h.update(instance_root.as_bytes());
    h.update(b"\0");
    h.update(password_id.as_bytes());
    crate::hex_lower(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02X}")).collect()
    }

    #[test]
    fn native_hash_matches_mysql_password_function() {
        // MySQL's PASSWORD('password') is '*' followed by this digest.
        let h = PasswordHashes::from_plaintext("password");
        assert_eq!(hex(&h.native), "2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
    }

    #[test]
    fn scrambles_verify_and_wrong_ones_do_not() {
        let h = PasswordHashes::from_plaintext("strata_pw_secret");
        let nonce = b"0123456789abcdefghij";
        assert!(h.verify_native(nonce, &scramble_native(nonce, "strata_pw_secret")));
        assert!(!h.verify_native(nonce, &scramble_native(nonce, "wrong")));
        assert!(!h.verify_native(
            b"other nonce 00000000",
            &scramble_native(nonce, "strata_pw_secret")
        ));
        assert!(h.verify_caching_sha2(nonce, &scramble_caching_sha2(nonce, "strata_pw_secret")));
        assert!(!h.verify_caching_sha2(nonce, &scramble_caching_sha2(nonce, "wrong")));
        assert!(!h.verify_native(nonce, &[]));
        assert!(!h.verify_caching_sha2(nonce, &[0; 31]));
        assert!(h.verify_plaintext("strata_pw_secret"));
        assert!(!h.verify_plaintext("strata_pw_secreT"));
    }

    proptest! {
        #[test]
        fn any_password_and_nonce_round_trip(pw in "\\PC{0,40}", nonce in proptest::collection::vec(any::<u8>(), 20)) {
            let h = PasswordHashes::from_plaintext(&pw);
            prop_assert!(h.verify_native(&nonce, &scramble_native(&nonce, &pw)));
            prop_assert!(h.verify_caching_sha2(&nonce, &scramble_caching_sha2(&nonce, &pw)));
        }
    }

    #[test]
    fn password_user_secrets_differ_by_instance_and_password() {
        let a = password_user_secret("root-a", "p1");
        assert_eq!(a.len(), 64);
        assert_eq!(a, password_user_secret("root-a", "p1"));
        assert_ne!(a, password_user_secret("root-b", "p1"));
        assert_ne!(a, password_user_secret("root-a", "p2"));
    }
}
