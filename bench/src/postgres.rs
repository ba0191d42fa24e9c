//! The alternative a team would otherwise build, measured under the same create and
//! get-by-login workloads as vaultd (spec §9): PostgreSQL with pgcrypto, an encrypted
//! profile column and hashed (HMAC) lookup columns, fsync and synchronous commit on.
//!
//! Two variants. *Unaudited*: each operation is a single statement. *Audited*, what such a
//! team needs to match vaultd, which audits every read and write: each operation and an
//! audit row of it (actor, operation, subject, time, result) in one transaction,
//! committed synchronously. Both talk to the database directly, with no HTTP layer.
//!
//! The harness starts a throwaway cluster in a temporary directory on a free port when
//! PostgreSQL's `initdb` and `pg_ctl` are installed, and skips this part otherwise.
//! pgcrypto's default `pgp_sym_encrypt` derives the key from the passphrase with an
//! iterated S2K on every call; `--pgp-options s2k-mode=1` measures it without.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use tempfile::TempDir;
use tokio_postgres::{Client as PgConnection, NoTls, Statement};

use crate::load::{Client, Outcome};
use crate::procfs;
use crate::workloads::{login, profile_json, Workload, DISTINCT_PHONES};

/// The application's keys, as an application would hold them: one for the lookup
/// hashes, one for the profile column. Sent as query parameters.
const INDEX_KEY: &str = "strongroom-bench-index-key-0123456789";
const DATA_KEY: &str = "strongroom-bench-data-key-0123456789";

const SCHEMA: &str = "
    CREATE EXTENSION IF NOT EXISTS pgcrypto;
    CREATE TABLE users (
        token uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        login_hash bytea NOT NULL UNIQUE,
        email_hash bytea NOT NULL UNIQUE,
        phone_hash bytea NOT NULL UNIQUE,
        profile bytea NOT NULL,
        created timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE audit (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        actor text NOT NULL,
        operation text NOT NULL,
        subject uuid,
        result text NOT NULL
    );
    -- A subject's events are listed by subject, as vaultd's /v1/audit/list/{token} does.
    CREATE INDEX audit_subject ON audit (subject, at);";

const INSERT: &str = "
    INSERT INTO users (login_hash, email_hash, phone_hash, profile)
    VALUES (hmac($1::text, $4::text, 'sha256'), hmac($2::text, $4::text, 'sha256'),
            hmac($3::text, $4::text, 'sha256'), pgp_sym_encrypt($5::text, $6::text, $7::text))
    RETURNING token::text";

const SELECT: &str = "
    SELECT token::text, pgp_sym_decrypt(profile, $2::text)
    FROM users WHERE login_hash = hmac($1::text, $3::text, 'sha256')";

/// The audited variant's record of one operation; the subject is null when none was found.
const AUDIT: &str = "
    INSERT INTO audit (actor, operation, subject, result) VALUES ($1::text, $2::text, $3::text::uuid, $4::text)";

/// Who the audit rows name: the application's caller, as vaultd names the token's holder.
const ACTOR: &str = "bench";

/// `initdb` and `pg_ctl`, if installed: the newest /usr/lib/postgresql/*/bin, else PATH.
pub fn find_binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).find(|dir| has_tools(dir)))
}

fn has_tools(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// A throwaway PostgreSQL cluster; stopped (immediate) and deleted when dropped.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// PostgreSQL refuses to run as root; then it runs as this user (uid, gid).
    run_as: Option<(u32, u32)>,
    dir: TempDir,
}

impl Cluster {
    /// initdb, then start with fsync and synchronous commit on; waits until it accepts
    /// connections (`pg_ctl -w`).
    pub fn start(bin: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("strongroom-bench-pg-").tempdir()?;
        let run_as = if procfs::current_uid()? == 0 {
            let ids = system_user("postgres").context(
                "running as root, and PostgreSQL will not: no `postgres` user to run it as (useradd postgres)",
            )?;
            std::os::unix::fs::chown(dir.path(), Some(ids.0), Some(ids.1))?;
            Some(ids)
        } else {
            None
        };
        let data = dir.path().join("data");
        let port = strongroom_testkit::free_ports(1)?[0].port();
        let cluster = Cluster { bin: bin.to_path_buf(), data, port, run_as, dir };
        cluster
            .tool("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args(["-U", "bench", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"])
            .run_quietly()
            .context("initdb failed")?;
        let options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=on -c synchronous_commit=on -c max_connections=200",
            cluster.dir.path().display()
        );
        let log = cluster.dir.path().join("postgres.log");
        let started = cluster
            .tool("pg_ctl")
            .arg("-D")
            .arg(&cluster.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .run_quietly();
        if let Err(error) = started {
            let text = fs::read_to_string(&log).unwrap_or_default();
            bail!("pg_ctl start failed: {error:#}\n{text}");
        }
        Ok(cluster)
    }

    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        command.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// The postmaster's pid (first line of `postmaster.pid`).
    pub fn pid(&self) -> anyhow::Result<u32> {
        let text = fs::read_to_string(self.data.join("postmaster.pid"))?;
        text.lines().next().and_then(|line| line.trim().parse().ok()).context("malformed postmaster.pid")
    }

    /// Proportional memory of the postmaster and every backend, in KiB.
    pub fn memory_kib(&self) -> anyhow::Result<u64> {
        procfs::tree_pss_kib(self.pid()?)
    }

    /// The connection string for this cluster (TCP, like the HTTP targets).
    pub fn config(&self) -> String {
        format!("host=127.0.0.1 port={} user=bench dbname=postgres", self.port)
    }

    pub async fn create_schema(&self) -> anyhow::Result<()> {
        open(&self.config())
            .await?
            .batch_execute(SCHEMA)
            .await
            .map_err(describe)
            .context("cannot create the schema")?;
        Ok(())
    }

    /// Rows in the audit table: after an audited run, one per operation that committed.
    pub async fn audit_rows(&self) -> anyhow::Result<i64> {
        let row = open(&self.config()).await?.query_one("SELECT count(*) FROM audit", &[]).await.map_err(describe)?;
        Ok(row.get(0))
    }
}

/// Connects; the connection's driver runs as a task until the client is dropped.
async fn open(config: &str) -> anyhow::Result<PgConnection> {
    let (client, connection) = tokio_postgres::connect(config, NoTls).await.map_err(describe)?;
    tokio::spawn(async move {
        // Errors surface through the client.
        let _ = connection.await;
    });
    Ok(client)
}

/// tokio-postgres's Display says only "db error"; the server's message is inside.
fn describe(error: tokio_postgres::Error) -> anyhow::Error {
    match error.as_db_error() {
        Some(db) => anyhow::anyhow!("{}: {}", db.code().code(), db.message()),
        None => anyhow::Error::new(error),
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.tool("pg_ctl").arg("-D").arg(&self.data).args(["-m", "immediate", "stop"]).run_quietly();
    }
}

trait RunQuietly {
    fn run_quietly(&mut self) -> anyhow::Result<()>;
}

impl RunQuietly for Command {
    /// Runs to completion; on failure, the error carries its output.
    fn run_quietly(&mut self) -> anyhow::Result<()> {
        let output = self.output().with_context(|| format!("cannot run {:?}", self.get_program()))?;
        if !output.status.success() {
            bail!(
                "{:?} exited with {}: {}{}",
                self.get_program(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

/// uid and gid of a local user, from /etc/passwd.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == name).then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))?
    })
}

/// One database connection running one workload.
pub struct PgClient {
    client: PgConnection,
    statement: Statement,
    /// The audit row's INSERT, for the audited variant.
    audit: Option<Statement>,
    workload: Workload,
    /// pgcrypto options for `pgp_sym_encrypt` ("" for its defaults).
    options: String,
}

impl PgClient {
    pub async fn connect(config: String, options: String, workload: Workload, audited: bool) -> anyhow::Result<Self> {
        let client = open(&config).await?;
        // The server starts with it on; set here too so the figures never depend on that.
        client.batch_execute("SET synchronous_commit = on").await.map_err(describe)?;
        let sql = match workload {
            Workload::Create => INSERT,
            Workload::Get => SELECT,
        };
        let statement = client.prepare(sql).await.map_err(describe)?;
        let audit = match audited {
            true => Some(client.prepare(AUDIT).await.map_err(describe)?),
            false => None,
        };
        Ok(PgClient { client, statement, audit, workload, options })
    }

    /// The create or get alone: one statement, committed on its own.
    async fn unaudited(&self, key: u64, login: &str) -> Result<bool, tokio_postgres::Error> {
        match self.workload {
            Workload::Create => {
                let (email, phone, profile) = create_fields(key, login);
                self.client
                    .query_one(
                        &self.statement,
                        &[&login, &email, &phone, &INDEX_KEY, &profile, &DATA_KEY, &self.options],
                    )
                    .await
                    .map(|row| row.get::<_, String>(0).len() == 36)
            }
            Workload::Get => self
                .client
                .query_opt(&self.statement, &[&login, &DATA_KEY, &INDEX_KEY])
                .await
                .map(|row| row.is_some_and(|row| row.get::<_, String>(1).starts_with('{'))),
        }
    }

    /// As application code would do it: BEGIN, the create or get, the audit row of its
    /// outcome, COMMIT (synchronous: the audit row is on disk before the answer).
    async fn audited(&mut self, key: u64, login: &str, audit: &Statement) -> Result<bool, tokio_postgres::Error> {
        let transaction = self.client.transaction().await?;
        let (operation, subject, found) = match self.workload {
            Workload::Create => {
                let (email, phone, profile) = create_fields(key, login);
                let row = transaction
                    .query_one(
                        &self.statement,
                        &[&login, &email, &phone, &INDEX_KEY, &profile, &DATA_KEY, &self.options],
                    )
                    .await?;
                let token: String = row.get(0);
                let found = token.len() == 36;
                ("create user", Some(token), found)
            }
            Workload::Get => {
                let row = transaction.query_opt(&self.statement, &[&login, &DATA_KEY, &INDEX_KEY]).await?;
                let found = row.as_ref().is_some_and(|row| row.get::<_, String>(1).starts_with('{'));
                ("get user by login", row.map(|row| row.get::<_, String>(0)), found)
            }
        };
        let result = if found { "ok" } else { "not found" };
        transaction.execute(audit, &[&ACTOR, &operation, &subject, &result]).await?;
        transaction.commit().await?;
        Ok(found)
    }
}

/// A create's email, phone and profile JSON for `key` (the same as vaultd's creates).
fn create_fields(key: u64, login: &str) -> (String, String, String) {
    (format!("{login}@example.com"), format!("+4477009{:06}", key % DISTINCT_PHONES), profile_json(key))
}

impl Client for PgClient {
    async fn call(&mut self, key: u64) -> Outcome {
        let login = login(key);
        let result = match self.audit.clone() {
            Some(audit) => self.audited(key, &login, &audit).await,
            None => self.unaudited(key, &login).await,
        };
        match result {
            Ok(true) => Outcome::Ok,
            Ok(false) => Outcome::Rejected(format!("{} {login}: no such row", self.workload.name())),
            Err(error) if self.client.is_closed() => Outcome::Failed(format!("connection: {:#}", describe(error))),
            Err(error) => Outcome::Rejected(format!("{:#}", describe(error))),
        }
    }

    /// tokio-postgres discards the answer of an abandoned query itself.
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_system_users() {
        assert_eq!(system_user("root"), Some((0, 0)));
        assert_eq!(system_user("no-such-user-here"), None);
    }
}
