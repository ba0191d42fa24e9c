//! Databunker's expiration flow: an admin starts a countdown on a subject's data and hands
//! the subject an exptoken; with it the subject either retains the data or has it deleted
//! at once. When the countdown ends, the leader's sweeper (`retention::sweeper`) forgets
//! the subject. The exptoken is stored only as a SHA-256 (to find the subject) and sealed
//! under the subject's DEK (so an admin can read it back from the status).

use serde_json::Value;
use uuid::Uuid;

use super::*;
use crate::store::{Expiration, ExpirationStatus};

/// `GET /v1/exp/status/{mode}/{id}`, in Databunker's terms.
#[derive(Debug, serde::Serialize)]
pub struct ExpirationView {
    /// End of the countdown, seconds since the Unix epoch (0: no expiration).
    pub exptime: u64,
    /// `wait`, `retain`, `expired`, or empty when no expiration was started.
    pub expstatus: &'static str,
    /// Empty when there is none (no expiration, or the subject is forgotten).
    pub exptoken: String,
}

impl Vault {
    /// Starts (or restarts, with a new exptoken) a subject's expiration from now, as long
    /// as `expiration` asks (see `lifetime`; none asks for the maximum retention period).
    /// Returns the exptoken.
    pub async fn start_expiration(
        &self,
        caller: &Caller,
        mode: Mode,
        id: &str,
        expiration: Option<&Value>,
    ) -> VaultResult<Uuid> {
        let lifetime = lifetime::parse(expiration, now_ms() / 1000)?;
        let op = Operation::ExpirationStart;
        let (subject, _, active) = match self.find_audited(caller, op, mode, None, id).await? {
            Found::Active(subject, version, active) => (subject, version, active),
            Found::Forgotten(subject) => {
                self.record_access(draft(caller, op, Some(subject), None, Some(mode)), false).await?;
                return Err(VaultError::NotFound("record"));
            }
        };
        let audit = draft(caller, op, Some(subject), None, Some(mode));
        let ends_at = lifetime.end_ms(self.settings.max_user_retention, audit.time);
        let (token, expiration) = self.new_expiration(&subject, &active, audit.time, ends_at).await?;
        let change = Change::StartExpiration { subject, expected_version: None, replace: true, expiration };
        self.commit(audit, change).await?.outcome.map_err(rejected)?;
        Ok(token)
    }

    /// A fresh expiration started at `now` that ends at `ends_at` (both milliseconds since
    /// the Unix epoch), and its exptoken.
    pub(super) async fn new_expiration(
        &self,
        subject: &Uuid,
        active: &ActiveSubject,
        now: u64,
        ends_at: u64,
    ) -> VaultResult<(Uuid, Expiration)> {
        let token = Uuid::new_v4();
        let dek = self.dek(subject, active).await?;
        let sealed_token = dek.seal(token.to_string().as_bytes(), &crypto::record_aad(subject, "exptoken"))?;
        let expiration = Expiration {
            status: ExpirationStatus::Wait,
            started: now,
            ends_at,
            token_hash: auth::capability_hash(&token),
            sealed_token,
        };
        Ok((token, expiration))
    }

    /// A subject's expiration, read through the log (audited, never stale).
    pub async fn expiration_status(&self, caller: &Caller, mode: Mode, id: &str) -> VaultResult<ExpirationView> {
        let (subject, record) = self.read_subject(caller, Operation::ExpirationStatus, mode, id).await?;
        let Some(expiration) = record.expiration else {
            return Ok(ExpirationView { exptime: 0, expstatus: "", exptoken: String::new() });
        };
        // The exptoken erases the subject: only a caller that may erase it sees it.
        let may_erase = caller.require(&Scope::users("write")).is_ok() && !self.files_requests(caller);
        let exptoken = match (&record.state, expiration.sealed_token.is_empty()) {
            (SubjectState::Active(active), false) if may_erase => {
                let dek = self.dek(&subject, active).await?;
                let plaintext = dek.open(&expiration.sealed_token, &crypto::record_aad(&subject, "exptoken"))?;
                String::from_utf8(plaintext.to_vec()).map_err(|_| VaultError::Crypto(CryptoError::Malformed))?
            }
            _ => String::new(),
        };
        Ok(ExpirationView { exptime: expiration.ends_at / 1000, expstatus: expiration.status.as_str(), exptoken })
    }

    /// Clears a subject's expiration; the exptoken stops working.
    pub async fn cancel_expiration(&self, caller: &Caller, mode: Mode, id: &str) -> VaultResult<Uuid> {
        let target = self.target(caller, mode, id).await?;
        let audit = draft(caller, Operation::ExpirationCancel, None, None, Some(mode));
        resolved(self.commit(audit, Change::CancelExpiration { target }).await?)
    }

    /// `GET /v1/exp/retain/{exptoken}`: the subject keeps its data.
    pub async fn retain_data(&self, exptoken: &str) -> VaultResult<Uuid> {
        let target = self.known_exptoken(exptoken).await?;
        let receipt = self.commit(exptoken_draft(Operation::ExpirationRetain), Change::RetainData { target }).await?;
        resolved(receipt)
    }

    /// `GET /v1/exp/delete/{exptoken}`: the subject has its data forgotten now.
    pub async fn delete_by_exptoken(&self, exptoken: &str) -> VaultResult<Uuid> {
        let target = self.known_exptoken(exptoken).await?;
        let change = Change::ForgetSubject { target, condition: ForgetCondition::Always };
        resolved(self.commit(exptoken_draft(Operation::ExpirationDelete), change).await?)
    }
}

impl Vault {
    /// The target of an exptoken route, if a countdown has this exptoken. Anyone may ask,
    /// so a miss costs no write: it is answered from this node's state, caught up with
    /// the leader first.
    async fn known_exptoken(&self, exptoken: &str) -> VaultResult<Target> {
        let hash = auth::capability_hash(&parse_exptoken(exptoken)?);
        if self.store.subject_by_exptoken(&hash)?.is_none() {
            self.catch_up().await?;
            if self.store.subject_by_exptoken(&hash)?.is_none() {
                return Err(VaultError::NotFound("record"));
            }
        }
        Ok(Target::ExpToken(hash))
    }
}

fn resolved(receipt: Receipt) -> VaultResult<Uuid> {
    match receipt.outcome.map_err(rejected)? {
        Applied::Resolved(subject) => Ok(subject),
        _ => Err(VaultError::Storage(StoreError::Corrupt)),
    }
}

fn parse_exptoken(text: &str) -> VaultResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| VaultError::bad_request("exptoken must be a UUID"))
}

/// The exptoken routes have no access token: the actor is the holder of the exptoken.
fn exptoken_draft(operation: Operation) -> AuditDraft {
    AuditDraft {
        time: now_ms(),
        actor: "exptoken".into(),
        operation,
        subject: None,
        app: None,
        mode: Some("exptoken".into()),
        purpose: None,
    }
}
