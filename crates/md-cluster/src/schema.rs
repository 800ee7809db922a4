//! The database schema, created and migrated by the module itself (versioned).
//!
//! Version 1:
//! - `md_rs_meta`: `key-check` (a MAC of a fixed text under the cluster key: a node with
//!   another MDClusterKeyFile refuses to work instead of writing keys nobody else can read);
//! - `md_rs_lease`: one row per MD ever renewed: owner `<node>:<pid>`, fencing number,
//!   expiry (the database's clock), the fence of the published set (so that taking the lease
//!   and seeing a newer set are one atomic check);
//! - `md_rs_cert` + `md_rs_cert_file`: the published set per MD, private keys encrypted;
//! - `md_rs_challenge`: challenge files by DNS name, for whichever node the CA reaches;
//! - the sequence `md_rs_fence` hands out fencing numbers: they only grow, for all MDs.

use postgres::Client;

use crate::conn::db_err;

/// The schema version this code reads and writes.
pub const VERSION: i32 = 1;

/// Any number, the same for all nodes: migrations of several nodes starting at once wait
/// for each other.
const MIGRATION_LOCK: i64 = 0x6d64_5f72_735f_0001;

const V1: &str = "
CREATE TABLE md_rs_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE md_rs_lease (
    md text PRIMARY KEY,
    owner text NOT NULL,
    fence bigint NOT NULL,
    expires timestamptz NOT NULL,
    published bigint);
CREATE SEQUENCE md_rs_fence;
CREATE TABLE md_rs_cert (
    md text PRIMARY KEY,
    fence bigint NOT NULL,
    owner text NOT NULL,
    ca_url text NOT NULL,
    valid_from timestamptz NOT NULL,
    updated timestamptz NOT NULL DEFAULT now());
CREATE TABLE md_rs_cert_file (
    md text NOT NULL REFERENCES md_rs_cert (md) ON DELETE CASCADE,
    file text NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (md, file));
CREATE TABLE md_rs_challenge (
    domain text NOT NULL,
    file text NOT NULL,
    data bytea NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, file));
";

/// Bring the schema to [`VERSION`] and check the cluster key against it.
pub fn migrate(c: &mut Client, key_check: &str) -> Result<(), String> {
    let mut tx = c.transaction().map_err(db_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(db_err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS md_rs_schema (version int NOT NULL)")
        .map_err(db_err)?;
    let found: Option<i32> = tx
        .query_opt("SELECT max(version) FROM md_rs_schema", &[])
        .map_err(db_err)?
        .and_then(|r| r.get(0));
    match found {
        None => {
            tx.batch_execute(V1).map_err(db_err)?;
            tx.execute(
                "INSERT INTO md_rs_schema (version) VALUES ($1)",
                &[&VERSION],
            )
            .map_err(db_err)?;
            tx.execute(
                "INSERT INTO md_rs_meta (key, value) VALUES ('key-check', $1)",
                &[&key_check],
            )
            .map_err(db_err)?;
        }
        Some(v) if v > VERSION => {
            return Err(format!(
                "the cluster database has schema version {v}, newer than this module's \
                 {VERSION} (a node runs a newer mod_md-rs): not using it"
            ))
        }
        Some(_) => {}
    }
    let stored: Option<String> = tx
        .query_opt("SELECT value FROM md_rs_meta WHERE key = 'key-check'", &[])
        .map_err(db_err)?
        .map(|r| r.get(0));
    if stored.as_deref() != Some(key_check) {
        return Err(
            "this node's MDClusterKeyFile differs from the one the cluster's keys are \
                    encrypted with: not using the cluster database"
                .into(),
        );
    }
    tx.commit().map_err(db_err)
}
