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
pub use role::Role;
