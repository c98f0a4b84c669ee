//! The schema engine's pure core.
//!
//! The server canonicalises DDL: `SHOW CREATE TABLE` prints one column, key or constraint per line in
//! a fixed form. The model keeps each of those lines verbatim, classified by kind and keyed by name,
//! so nothing the server printed is dropped; a line of a shape the model does not know is an error
//! naming the table and the construct, never a silently wrong diff. [`diff`] turns one schema into
//! another with ordered statements: CREATE TABLE, one ALTER TABLE per changed table (column order
//! kept with FIRST/AFTER, a new partitioning scheme last in it), partitions dropped and added one
//! statement each ([`Change::in_place`]), CREATE OR REPLACE VIEW, DROP VIEW, DROP TABLE.

mod diff;
pub mod lint;
pub mod merge;
mod model;

pub use diff::{
    changes, create_table_named, diff, inherits_charset, is_character_type, same, table_charset,
    Change,
};
pub use model::{
    parse_table, without_definer, Column, ForeignKeyParts, Index, Partition, Partitioning, Schema,
    SchemaError, Table, View,
};
