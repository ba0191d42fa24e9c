//! Requests for a DPO's approval (`/v1/requests`, `/v1/request/{rtoken}`): when the vault
//! runs with `subject_changes = request`, a subject's own token does not change or erase
//! its data directly — forget-me, a profile change or an app-data change is filed as a
//! request, and a DPO (scope `requests:admin`) approves it, which applies it, or cancels
//! it. The requested change is personal data and is sealed under the subject's DEK.

use serde_json::{json, Value};

use super::apps::{open_app, updated_app};
use super::limits::MAX_OPEN_REQUESTS;
use super::*;
use crate::store::{RequestAction, RequestRecord, RequestStatus};

/// Whether a subject's own token changes its data directly or files requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectChanges {
    Direct,
    #[default]
    Request,
}

impl std::str::FromStr for SubjectChanges {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "direct" => Ok(SubjectChanges::Direct),
            "request" => Ok(SubjectChanges::Request),
            other => Err(format!("{other:?} is neither direct nor request")),
        }
    }
}

impl Vault {
    /// Whether this caller's changes to its subject's data become requests.
    pub fn files_requests(&self, caller: &Caller) -> bool {
        caller.subject.is_some() && self.settings.subject_changes == SubjectChanges::Request
    }

    /// Refuses a subject token's change that has no request form (creating or deleting
    /// an app record) while its changes go through the DPO.
    pub fn refuse_direct_subject_change(&self, caller: &Caller) -> VaultResult<()> {
        match self.files_requests(caller) {
            true => Err(VaultError::NeedsRequest),
            false => Ok(()),
        }
    }

    /// Files a request for the caller's own subject; returns its rtoken. A change must be
    /// a JSON merge object or an RFC 6902 patch, as for a direct PUT.
    pub async fn file_request(
        &self,
        caller: &Caller,
        mode: Mode,
        id: &str,
        action: RequestAction,
        app: Option<&str>,
        change: Option<&Value>,
    ) -> VaultResult<Uuid> {
        let op = Operation::RequestCreate;
        let (subject, version, active) = match self.find_audited(caller, op, mode, app, id).await? {
            Found::Active(subject, version, active) => (subject, version, active),
            Found::Forgotten(_) => return Err(VaultError::NotFound("record")),
        };
        if let Some(app) = app {
            if !active.apps.iter().any(|a| a == app) {
                return Err(VaultError::NotFound("app record"));
            }
        }
        let _start = self.starts.hold(caller, &subject).await;
        if self.store.open_requests_of(&subject)? >= MAX_OPEN_REQUESTS {
            return Err(VaultError::Conflict(
                "this person has as many open requests as a vault keeps; a DPO must settle some first",
            ));
        }
        // A change that does not apply to the record as it is now (a failing patch, one
        // removing the last lookup field) is refused when filed, not left for a DPO.
        match (change, action, app) {
            (Some(change), RequestAction::ChangeProfile, _) => {
                drop(self.updated_profile(subject, version, &active, change).await?)
            }
            (Some(change), RequestAction::ChangeAppData, Some(app)) => {
                let Some(current) = self.store.app(&subject, app)? else {
                    return Err(VaultError::NotFound("app record"));
                };
                let dek = self.dek(&subject, &active).await?;
                drop(updated_app(&dek, subject, app, &current, change, self.settings.max_record_bytes)?)
            }
            (Some(change), ..) => check_update(change)?,
            (None, ..) => {}
        }
        let rtoken = Uuid::new_v4();
        let sealed = match change {
            Some(change) => {
                let plaintext = Zeroizing::new(
                    serde_json::to_vec(change).map_err(|_| VaultError::bad_request("change is not valid JSON"))?,
                );
                self.dek(&subject, &active).await?.seal(&plaintext, &request_aad(&subject, &rtoken))?
            }
            None => Vec::new(),
        };
        let audit = draft(caller, op, Some(subject), app, Some(mode));
        let record = RequestRecord {
            subject,
            action,
            app: app.map(String::from),
            change: sealed,
            status: RequestStatus::Open,
            reason: String::new(),
            created: audit.time,
            updated: audit.time,
        };
        self.commit(audit, Change::FileRequest { rtoken, record }).await?.outcome.map_err(rejected)?;
        Ok(rtoken)
    }

    /// Requests of all subjects (a DPO's queue), optionally of one status.
    pub async fn requests(
        &self,
        caller: &Caller,
        status: Option<RequestStatus>,
        offset: usize,
        limit: usize,
    ) -> VaultResult<(u64, Vec<Value>)> {
        self.request_page(caller, None, None, status, offset, limit).await
    }

    /// One subject's requests.
    pub async fn user_requests(
        &self,
        caller: &Caller,
        mode: Mode,
        id: &str,
        offset: usize,
        limit: usize,
    ) -> VaultResult<(u64, Vec<Value>)> {
        let target = self.target(caller, mode, id).await?;
        self.request_page(caller, Some(target), Some(mode), None, offset, limit).await
    }

    async fn request_page(
        &self,
        caller: &Caller,
        target: Option<Target>,
        mode: Option<Mode>,
        status: Option<RequestStatus>,
        offset: usize,
        limit: usize,
    ) -> VaultResult<(u64, Vec<Value>)> {
        let (offset, limit) = page_bounds(offset, limit);
        let change = Change::ReadRequests { target, status, offset, limit };
        let audit = draft(caller, Operation::RequestList, None, None, mode);
        match self.commit(audit, change).await?.outcome.map_err(rejected)? {
            Applied::Requests { total, page } => Ok((total, page.iter().map(|(r, record)| row(r, record)).collect())),
            _ => Err(VaultError::Storage(StoreError::Corrupt)),
        }
    }

    /// A request with the data it would change (`original`) and the requested `change`.
    pub async fn request(&self, caller: &Caller, rtoken: &str) -> VaultResult<Value> {
        let rtoken = parse_rtoken(rtoken)?;
        let audit = draft(caller, Operation::RequestRead, None, None, None);
        let change = Change::ReadRequest { rtoken, owner: caller.subject };
        let Applied::Request { record, owner } = self.commit(audit, change).await?.outcome.map_err(rejected)? else {
            return Err(VaultError::Storage(StoreError::Corrupt));
        };
        let mut view = row(&rtoken, &record);
        if let Some(active) = owner {
            let (original, change) = self.open_request(&rtoken, &record, &active).await?;
            view["original"] = original;
            if let Some(change) = change {
                view["change"] = change;
            }
        }
        Ok(view)
    }

    /// The record a request would change, and the change (decrypted).
    async fn open_request(
        &self,
        rtoken: &Uuid,
        record: &RequestRecord,
        active: &ActiveSubject,
    ) -> VaultResult<(Value, Option<Value>)> {
        let subject = record.subject;
        let dek = self.dek(&subject, active).await?;
        let original = match &record.app {
            Some(app) => match self.store.app(&subject, app)? {
                Some(app_record) => open_app(&dek, &subject, app, &app_record.sealed)?,
                None => Value::Null,
            },
            None => self.open_profile(&subject, active).await?,
        };
        let change = match record.change.is_empty() {
            true => None,
            false => {
                let plaintext = dek.open(&record.change, &request_aad(&subject, rtoken))?;
                Some(serde_json::from_slice(&plaintext).map_err(|_| VaultError::Crypto(CryptoError::Malformed))?)
            }
        };
        Ok((original, change))
    }

    /// Approves an open request: applies it and marks it approved, in one step.
    pub async fn approve_request(&self, caller: &Caller, rtoken: &str, reason: String) -> VaultResult<Uuid> {
        let rtoken = parse_rtoken(rtoken)?;
        for attempt in 0..UPDATE_ATTEMPTS {
            self.catch_up().await?;
            let Some(record) = self.store.request(&rtoken)? else { return Err(VaultError::NotFound("request")) };
            if record.status != RequestStatus::Open {
                return Err(VaultError::Conflict("the request is no longer open"));
            }
            let subject = record.subject;
            let (operation, effect) = match self.find(&Target::Token(subject)).await? {
                Some(Found::Active(_, version, active)) => {
                    self.request_effect(&rtoken, &record, version, &active).await?
                }
                _ => return Err(VaultError::NotFound("record")),
            };
            let mut audit = draft(caller, operation, Some(subject), record.app.as_deref(), None);
            audit.purpose = Some(format!("request {rtoken} approved"));
            let change = Change::ResolveRequest {
                rtoken,
                approve: true,
                reason: reason.clone(),
                owner: None,
                then: Some(Box::new(effect)),
            };
            let receipt = self.commit(audit, change).await?;
            match receipt.outcome {
                Ok(_) => return Ok(subject),
                Err(Rejection::Stale) => self.after_conflict(&receipt, attempt).await?,
                Err(other) => return Err(rejected(other)),
            }
        }
        Err(VaultError::Conflict("record is being changed concurrently; retry"))
    }

    /// The change that carries out a request, and how it is audited.
    async fn request_effect(
        &self,
        rtoken: &Uuid,
        record: &RequestRecord,
        version: u64,
        active: &ActiveSubject,
    ) -> VaultResult<(Operation, Change)> {
        let subject = record.subject;
        let (_, requested) = self.open_request(rtoken, record, active).await?;
        let requested = requested.unwrap_or(Value::Null);
        Ok(match (record.action, &record.app) {
            (RequestAction::ForgetMe, _) => (
                Operation::UserForget,
                Change::ForgetSubject { target: Target::Token(subject), condition: ForgetCondition::Always },
            ),
            (RequestAction::ChangeProfile, _) => {
                (Operation::UserUpdate, self.updated_profile(subject, version, active, &requested).await?)
            }
            (RequestAction::ChangeAppData, Some(app)) => {
                let Some(current) = self.store.app(&subject, app)? else {
                    return Err(VaultError::NotFound("app record"));
                };
                let dek = self.dek(&subject, active).await?;
                (
                    Operation::AppUpdate,
                    updated_app(&dek, subject, app, &current, &requested, self.settings.max_record_bytes)?,
                )
            }
            (RequestAction::ChangeAppData, None) => return Err(VaultError::Storage(StoreError::Corrupt)),
        })
    }

    /// Cancels an open request: a DPO's decision, or the subject's own withdrawal.
    pub async fn cancel_request(&self, caller: &Caller, rtoken: &str, reason: String) -> VaultResult<()> {
        let rtoken = parse_rtoken(rtoken)?;
        let audit = draft(caller, Operation::RequestCancel, None, None, None);
        let change = Change::ResolveRequest { rtoken, approve: false, reason, owner: caller.subject, then: None };
        self.commit(audit, change).await?.outcome.map_err(rejected).map(drop)
    }
}

/// A request as the API lists it.
fn row(rtoken: &Uuid, record: &RequestRecord) -> Value {
    let mut row = json!({
        "rtoken": rtoken,
        "token": record.subject,
        "action": record.action.as_str(),
        "status": record.status.as_str(),
        "reason": record.reason,
        "creationtime": record.created / 1000,
        "when": record.updated / 1000,
    });
    if let Some(app) = &record.app {
        row["app"] = json!(app);
    }
    row
}

fn parse_rtoken(text: &str) -> VaultResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| VaultError::bad_request("rtoken must be a UUID"))
}

fn request_aad(subject: &Uuid, rtoken: &Uuid) -> Vec<u8> {
    crypto::record_aad(subject, &format!("request:{rtoken}"))
}
