//! Consent and legal basis (Databunker's `lbasis`, `agreement` and `pactivity` APIs):
//! which legal bases the organisation processes data under, which of them each subject
//! agreed to or withdrew from, and which processing activities rely on which bases.
//! Agreements carry no profile data and are kept after the subject is forgotten.

use serde_json::{Map, Value};
use strongroom_admin_api::retention::parse_duration;

use super::pending::ConsentTarget;
use super::*;
use crate::store::{Agreement, ConsentChange, LegalBasis, ProcessingActivity};

const MAX_TEXT: usize = 4096;

/// A brief (a legal basis's or an activity's name), as Databunker normalises it:
/// trimmed, lower-cased, then 1–64 of `[a-z0-9-]`.
pub fn normalise_brief(text: &str) -> VaultResult<String> {
    // Checked before lower-casing, which turns some non-ASCII letters (the Kelvin sign)
    // into ASCII ones.
    let trimmed = text.trim();
    let valid =
        !trimmed.is_empty() && trimmed.len() <= 64 && trimmed.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let brief = trimmed.to_ascii_lowercase();
    if valid {
        Ok(brief)
    } else {
        Err(VaultError::bad_request("a brief is 1-64 characters of a-z, 0-9 and '-'"))
    }
}

/// An agreement as the API shows it: `expired` once its end has passed; `token` is
/// `null` for an agreement kept under an identifier that names no subject yet.
pub fn agreement_view(subject: Option<&Uuid>, agreement: &Agreement) -> Value {
    let ended = agreement.status == "yes" && agreement.endtime > 0 && agreement.endtime <= now_ms() / 1000;
    serde_json::json!({
        "token": subject,
        "brief": agreement.brief,
        "status": if ended { "expired" } else { agreement.status.as_str() },
        "creationtime": agreement.creationtime,
        "when": agreement.when,
        "starttime": agreement.starttime,
        "endtime": agreement.endtime,
        "mode": agreement.mode,
        "agreementmethod": agreement.agreementmethod,
        "referencecode": agreement.referencecode,
        "lastmodifiedby": agreement.lastmodifiedby,
    })
}

impl Vault {
    async fn consent(&self, audit: AuditDraft, change: ConsentChange) -> VaultResult<Applied> {
        self.commit(audit, Change::Consent(change)).await?.outcome.map_err(rejected)
    }

    pub async fn put_legal_basis(&self, caller: &Caller, brief: &str, body: &Map<String, Value>) -> VaultResult<()> {
        let brief = normalise_brief(brief)?;
        let new_brief = match text(body, "brief")? {
            name if name.is_empty() => brief.clone(),
            name => normalise_brief(&name)?,
        };
        let status = match text(body, "status")?.as_str() {
            "disabled" => "disabled",
            _ => "active",
        };
        let basis = LegalBasis {
            brief: new_brief,
            status: status.into(),
            module: text(body, "module")?,
            shortdesc: text(body, "shortdesc")?,
            fulldesc: text(body, "fulldesc")?,
            basistype: text(body, "basistype")?,
            requiredmsg: text(body, "requiredmsg")?,
            usercontrol: flag(body, "usercontrol")?,
            requiredflag: flag(body, "requiredflag")?,
            creationtime: now_ms() / 1000,
        };
        let audit = draft(caller, Operation::LegalBasisChange, None, None, None);
        self.consent(audit, ConsentChange::PutLegalBasis { brief, basis }).await.map(drop)
    }

    pub async fn delete_legal_basis(&self, caller: &Caller, brief: &str) -> VaultResult<()> {
        let brief = normalise_brief(brief)?;
        let audit = draft(caller, Operation::LegalBasisChange, None, None, None);
        self.consent(audit, ConsentChange::DeleteLegalBasis { brief }).await.map(drop)
    }

    pub async fn legal_bases(&self) -> VaultResult<Vec<LegalBasis>> {
        self.catch_up().await?;
        Ok(self.store.legal_bases()?)
    }

    /// Records that a subject agrees (`status` absent or `yes`) — or, with `status: no`,
    /// no longer agrees — to a legal basis. Optional: `agreementmethod`, `referencecode`,
    /// `lastmodifiedby`, `starttime` and `expiration` (a duration from now, or Unix
    /// seconds).
    pub async fn accept_agreement(
        &self,
        caller: &Caller,
        brief: &str,
        mode: Mode,
        id: &str,
        body: &Map<String, Value>,
    ) -> VaultResult<()> {
        let status = match text(body, "status")?.to_lowercase().as_str() {
            "" | "yes" | "accept" | "agree" | "allow" | "true" => "yes",
            "no" | "withdraw" | "disagree" | "deny" | "false" => "no",
            _ => return Err(VaultError::bad_request("status must be yes or no")),
        };
        let now = now_ms() / 1000;
        let agreement = Agreement {
            brief: normalise_brief(brief)?,
            status: status.into(),
            creationtime: now,
            when: now,
            starttime: moment(body.get("starttime"), now)?,
            endtime: moment(body.get("expiration"), now)?,
            mode: mode_name(mode),
            agreementmethod: match text(body, "agreementmethod")? {
                method if method.is_empty() => "api".into(),
                method => method,
            },
            referencecode: text(body, "referencecode")?,
            lastmodifiedby: text(body, "lastmodifiedby")?,
        };
        let op = if status == "yes" { Operation::ConsentAccept } else { Operation::ConsentWithdraw };
        self.put_agreement(caller, op, mode, id, agreement).await
    }

    /// The subject withdraws its agreement to a legal basis.
    pub async fn withdraw_agreement(
        &self,
        caller: &Caller,
        brief: &str,
        mode: Mode,
        id: &str,
        body: &Map<String, Value>,
    ) -> VaultResult<()> {
        let now = now_ms() / 1000;
        let agreement = Agreement {
            brief: normalise_brief(brief)?,
            status: "no".into(),
            creationtime: now,
            when: now,
            starttime: 0,
            endtime: 0,
            mode: mode_name(mode),
            agreementmethod: String::new(),
            referencecode: String::new(),
            lastmodifiedby: text(body, "lastmodifiedby")?,
        };
        self.put_agreement(caller, Operation::ConsentWithdraw, mode, id, agreement).await
    }

    async fn put_agreement(
        &self,
        caller: &Caller,
        op: Operation,
        mode: Mode,
        id: &str,
        agreement: Agreement,
    ) -> VaultResult<()> {
        let change = match self.consent_target(caller, mode, id).await? {
            ConsentTarget::Subject(target) => ConsentChange::PutAgreement { target, agreement },
            ConsentTarget::Identifier { entry, unknown } => {
                // Only agreeing keeps the identifier: a withdrawal after forget-me must
                // not bring it back.
                let unknown = unknown.as_deref().map(String::as_str).filter(|_| agreement.status == "yes");
                let identity = self.pending_identity(&entry, unknown).await?;
                ConsentChange::PutByIdentifier { entry, agreement, identity }
            }
        };
        let audit = draft(caller, op, None, None, Some(mode));
        self.consent(audit, change).await.map(drop)
    }

    /// A subject's agreements (to one basis, or all), read through the log and audited;
    /// by an email or phone that names no subject, those kept under it (with a `null`
    /// token).
    pub async fn agreements(
        &self,
        caller: &Caller,
        mode: Mode,
        id: &str,
        brief: Option<&str>,
    ) -> VaultResult<Vec<Value>> {
        let brief = brief.map(normalise_brief).transpose()?;
        let change = match self.consent_target(caller, mode, id).await? {
            ConsentTarget::Subject(target) => ConsentChange::ReadAgreements { target, brief },
            ConsentTarget::Identifier { entry, .. } => ConsentChange::ReadByIdentifier { entry, brief },
        };
        let audit = draft(caller, Operation::ConsentRead, None, None, Some(mode));
        match self.consent(audit, change).await? {
            Applied::Agreements { subject, agreements } => {
                Ok(agreements.iter().map(|agreement| agreement_view(Some(&subject), agreement)).collect())
            }
            Applied::PendingAgreements { agreements } => {
                Ok(agreements.iter().map(|agreement| agreement_view(None, agreement)).collect())
            }
            _ => Err(VaultError::Storage(StoreError::Corrupt)),
        }
    }

    /// Revokes a legal basis for everyone: every agreement to it becomes `revoked`.
    pub async fn revoke_basis(&self, caller: &Caller, brief: &str) -> VaultResult<()> {
        let brief = normalise_brief(brief)?;
        let audit = draft(caller, Operation::ConsentRevokeAll, None, None, None);
        self.consent(audit, ConsentChange::RevokeBasis { brief }).await.map(drop)
    }

    pub async fn put_activity(&self, caller: &Caller, activity: &str, body: &Map<String, Value>) -> VaultResult<()> {
        let activity = normalise_brief(activity)?;
        let renamed = match text(body, "activity")? {
            name if name.is_empty() => activity.clone(),
            name => normalise_brief(&name)?,
        };
        let record = ProcessingActivity {
            title: match text(body, "title")? {
                title if title.is_empty() => renamed.clone(),
                title => title,
            },
            activity: renamed,
            script: text(body, "script")?,
            fulldesc: text(body, "fulldesc")?,
            applicableto: text(body, "applicableto")?,
            legalbasis: Vec::new(),
            creationtime: now_ms() / 1000,
        };
        let audit = draft(caller, Operation::ActivityChange, None, None, None);
        self.consent(audit, ConsentChange::PutActivity { activity, record }).await.map(drop)
    }

    pub async fn delete_activity(&self, caller: &Caller, activity: &str) -> VaultResult<()> {
        let activity = normalise_brief(activity)?;
        let audit = draft(caller, Operation::ActivityChange, None, None, None);
        self.consent(audit, ConsentChange::DeleteActivity { activity }).await.map(drop)
    }

    pub async fn link_activity(&self, caller: &Caller, activity: &str, brief: &str, link: bool) -> VaultResult<()> {
        let (activity, brief) = (normalise_brief(activity)?, normalise_brief(brief)?);
        let audit = draft(caller, Operation::ActivityChange, None, None, None);
        self.consent(audit, ConsentChange::LinkActivity { activity, brief, link }).await.map(drop)
    }

    pub async fn activities(&self) -> VaultResult<Vec<ProcessingActivity>> {
        self.catch_up().await?;
        Ok(self.store.activities()?)
    }
}

fn mode_name(mode: Mode) -> String {
    format!("{mode:?}").to_lowercase()
}

/// An optional text field of at most `MAX_TEXT` characters; empty when absent.
fn text(body: &Map<String, Value>, field: &str) -> VaultResult<String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) if s.chars().count() <= MAX_TEXT => Ok(s.clone()),
        Some(_) => Err(VaultError::bad_request(format!("{field} must be a string of at most {MAX_TEXT} characters"))),
    }
}

/// An optional boolean (or a number, above 0 being true; or a form's "true"/"false" or
/// number).
fn flag(body: &Map<String, Value>, field: &str) -> VaultResult<bool> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) => Ok(n.as_f64().is_some_and(|n| n > 0.0)),
        Some(Value::String(s)) if matches!(s.as_str(), "true" | "1" | "yes") => Ok(true),
        Some(Value::String(s)) if matches!(s.as_str(), "false" | "0" | "no" | "") => Ok(false),
        // A form carries numbers as text: read them as JSON numbers are read.
        Some(Value::String(s)) if s.parse::<f64>().is_ok() => Ok(s.parse::<f64>().is_ok_and(|n| n > 0.0)),
        Some(_) => Err(VaultError::bad_request(format!("{field} must be true or false"))),
    }
}

/// A point in time in Unix seconds: a duration from `now` (`30d`), or Unix seconds; 0
/// when absent.
fn moment(value: Option<&Value>, now: u64) -> VaultResult<u64> {
    match value {
        None | Some(Value::Null) => Ok(0),
        // A whole number, also when written as one (`1.0`, an integer to JSON Schema).
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(seconds), _) => Ok(seconds),
            (None, Some(float)) if float.is_finite() && float >= 0.0 && float.fract() == 0.0 => Ok(float as u64),
            _ => Err(VaultError::bad_request("times are Unix seconds")),
        },
        Some(Value::String(s)) if s.is_empty() => Ok(0),
        Some(Value::String(s)) => match (parse_duration(s), s.parse::<u64>()) {
            (Some(seconds), _) => Ok(now.saturating_add(seconds)),
            (None, Ok(unix)) => Ok(unix),
            _ => Err(VaultError::bad_request("times are durations like 30d or Unix seconds")),
        },
        Some(_) => Err(VaultError::bad_request("times are durations like 30d or Unix seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_limited_in_characters_not_bytes() {
        let body = |value: String| Map::from_iter([("module".to_string(), Value::String(value))]);
        assert_eq!(text(&body("é".repeat(MAX_TEXT)), "module").unwrap(), "é".repeat(MAX_TEXT));
        assert!(text(&body("é".repeat(MAX_TEXT + 1)), "module").is_err());
    }

    #[test]
    fn flags_read_numbers_in_text_as_numbers() {
        let body = |value: Value| Map::from_iter([("usercontrol".to_string(), value)]);
        for (value, expected) in
            [("2", true), ("0.5", true), ("7.3e+172", true), ("0", false), ("-1", false), ("0.0", false)]
        {
            assert_eq!(flag(&body(Value::from(value)), "usercontrol").unwrap(), expected, "{value}");
        }
        for bad in ["maybe", "1x", " "] {
            assert!(flag(&body(Value::from(bad)), "usercontrol").is_err(), "{bad}");
        }
    }

    #[test]
    fn briefs_are_normalised_and_checked() {
        assert_eq!(normalise_brief(" Marketing-Email ").unwrap(), "marketing-email");
        for bad in ["", "a b", "a_b", "ü", "\u{212A}", &"a".repeat(65)] {
            assert!(normalise_brief(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn moments_in_seconds_are_whole_numbers_however_written() {
        assert_eq!(moment(Some(&serde_json::json!(1.0)), 100).unwrap(), 1);
        assert_eq!(moment(Some(&serde_json::json!(17583.0)), 100).unwrap(), 17_583);
        for bad in [serde_json::json!(17583.9), serde_json::json!(-1.0), serde_json::json!(-1)] {
            assert!(moment(Some(&bad), 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn moments_are_durations_from_now_or_unix_seconds() {
        assert_eq!(moment(None, 100).unwrap(), 0);
        assert_eq!(moment(Some(&Value::from("1h")), 100).unwrap(), 3_700);
        assert_eq!(moment(Some(&Value::from("1700000000")), 100).unwrap(), 1_700_000_000);
        assert_eq!(moment(Some(&Value::from(1_700_000_000u64)), 100).unwrap(), 1_700_000_000);
        assert!(moment(Some(&Value::from("soon")), 100).is_err());
        assert!(moment(Some(&Value::from(-1)), 100).is_err());
    }
}
