//! The alternative a team would otherwise build: PostgreSQL with pgcrypto, an encrypted
//! profile column and hashed (HMAC) lookup columns, with fsync on, under the same create
//! and get-by-login workloads as vaultd (spec §9).
//!
//! The harness starts a throwaway cluster in a temporary directory on a free port when
//! PostgreSQL's `initdb` and `pg_ctl` are installed, and skips this part otherwise.
//! It talks to the database directly (no HTTP layer in front) and its reads write no
//! audit record, so it is a generous baseline for what such a design costs. pgcrypto's
//! default `pgp_sym_encrypt` derives the key from the passphrase with an iterated S2K on
//! every call, which dominates its cost; `--pgp-options s2k-mode=1` measures it without.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use tempfile::TempDir;
use tokio_postgres::{Client as PgConnection, NoTls, Statement};

use crate::load::{Client, Outcome};
use crate::procfs;
use crate::workloads::{login, profile_json, Workload};

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
    );";

const INSERT: &str = "
    INSERT INTO users (login_hash, email_hash, phone_hash, profile)
    VALUES (hmac($1::text, $4::text, 'sha256'), hmac($2::text, $4::text, 'sha256'),
            hmac($3::text, $4::text, 'sha256'), pgp_sym_encrypt($5::text, $6::text, $7::text))
    RETURNING token::text";

const SELECT: &str = "
    SELECT token::text, pgp_sym_decrypt(profile, $2::text)
    FROM users WHERE login_hash = hmac($1::text, $3::text, 'sha256')";

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
        let port = free_port()?;
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

/// A port nobody listens on right now (the kernel's choice; released before use).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One database connection running one workload.
pub struct PgClient {
    client: PgConnection,
    statement: Statement,
    workload: Workload,
    /// pgcrypto options for `pgp_sym_encrypt` ("" for its defaults).
    options: String,
}

impl PgClient {
    pub async fn connect(config: String, options: String, workload: Workload) -> anyhow::Result<Self> {
        let client = open(&config).await?;
        let sql = match workload {
            Workload::Create => INSERT,
            Workload::Get => SELECT,
        };
        let statement = client.prepare(sql).await.map_err(describe)?;
        Ok(PgClient { client, statement, workload, options })
    }
}

impl Client for PgClient {
    async fn call(&mut self, key: u64) -> Outcome {
        let login = login(key);
        let result = match self.workload {
            Workload::Create => {
                let email = format!("{login}@example.com");
                let phone = format!("+4477009{:06}", key % 1_000_000);
                let profile = profile_json(key);
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
