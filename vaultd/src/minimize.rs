//! `vaultd minimize`: runs a retention policy once against a vault. This is the command a
//! `RetentionPolicy`'s CronJob runs; it is also how to try a policy by hand
//! (`dryRun: true` in the file reports without changing anything).

use std::path::{Path, PathBuf};
use std::time::Duration;

use strongroom_admin_api::retention::{PolicyDocument, RunReport, RunRequest};

use crate::api_client::{ca_certificates, with_causes};
use crate::config;

#[derive(Debug, thiserror::Error)]
pub enum MinimizeError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a RetentionPolicy (YAML or JSON): {message}")]
    Policy { path: PathBuf, message: String },
    #[error("{0}")]
    Certificate(String),
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot reach the vault at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the vault refused the run ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the vault answered something that is not a run report: {0}")]
    Answer(String),
}

pub struct MinimizeOptions {
    /// Base URL of any node's API, e.g. `http://customers.shop.svc:3000`.
    pub vault: String,
    pub token_file: PathBuf,
    pub policy_file: PathBuf,
    /// PEM file of the CA to trust for an `https://` vault URL (the only one trusted: no
    /// built-in roots).
    pub ca_file: Option<PathBuf>,
    /// How long the run may take.
    pub timeout: Duration,
}

/// Reads the policy file: the whole resource, YAML or JSON.
pub fn read_policy(path: &Path) -> Result<RunRequest, MinimizeError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| MinimizeError::Read { path: path.to_path_buf(), source })?;
    let invalid = |message: String| MinimizeError::Policy { path: path.to_path_buf(), message };
    // JSON is YAML too, but serde_json's messages are clearer for JSON files.
    let document: PolicyDocument = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?
    } else {
        serde_saphyr::from_str(&text).map_err(|e| invalid(e.to_string()))?
    };
    let policy = document.policy_name().ok_or_else(|| invalid("metadata.name is missing".into()))?;
    document.spec.validate().map_err(invalid)?;
    Ok(RunRequest { policy, spec: document.spec })
}

/// Runs the policy and returns the vault's report.
pub fn run(options: &MinimizeOptions) -> Result<RunReport, MinimizeError> {
    let request = read_policy(&options.policy_file)?;
    let token = config::read_secret_file(&options.token_file)?;
    let client = client(options)?;
    let url = format!("{}/v1/sys/retention/run", options.vault.trim_end_matches('/'));
    let unreachable = |e: reqwest::Error| MinimizeError::Unreachable { url: url.clone(), message: with_causes(&e) };
    let response =
        client.post(&url).header("X-Bunker-Token", token.as_str()).json(&request).send().map_err(unreachable)?;
    let status = response.status();
    let body: serde_json::Value = response.json().map_err(|e| MinimizeError::Answer(e.to_string()))?;
    if !status.is_success() {
        let message = body.get("message").and_then(|m| m.as_str()).unwrap_or("no message").to_string();
        return Err(MinimizeError::Refused { status: status.as_u16(), message });
    }
    serde_json::from_value(body).map_err(|e| MinimizeError::Answer(e.to_string()))
}

fn client(options: &MinimizeOptions) -> Result<reqwest::blocking::Client, MinimizeError> {
    let mut builder = reqwest::blocking::Client::builder().timeout(options.timeout);
    if let Some(path) = &options.ca_file {
        let certificates = ca_certificates(path).map_err(MinimizeError::Certificate)?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| MinimizeError::Unreachable { url: options.vault.clone(), message: with_causes(&e) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn reads_the_whole_resource_as_yaml_or_json() {
        let yaml = write(
            "apiVersion: strongroom.dev/v1alpha1\nkind: RetentionPolicy\nmetadata: {name: drop-phone, namespace: shop}\n\
             spec:\n  vaultRef: {name: customers}\n  schedule: \"0 3 * * *\"\n  rules:\n  - name: drop-phone-after-90d\n    \
             match: {olderThan: 90d, since: created, hasFields: [phone]}\n    action: dropFields\n    fields: [phone]\n",
        );
        let request = read_policy(yaml.path()).unwrap();
        assert_eq!(request.policy, "shop/drop-phone");
        assert_eq!(request.spec.rules[0].fields, ["phone"]);

        let json = write(
            r#"{"metadata":{"name":"trial"},"spec":{"dryRun":true,"rules":[{"name":"x","match":{},"action":"delete"}]}}"#,
        );
        let request = read_policy(json.path()).unwrap();
        assert_eq!(request.policy, "trial");
        assert!(request.spec.dry_run);
    }

    #[test]
    fn refuses_policies_the_vault_would_refuse() {
        let unnamed = write("spec:\n  rules:\n  - {name: x, match: {}, action: delete}\n");
        assert!(read_policy(unnamed.path()).unwrap_err().to_string().contains("metadata.name"));
        let no_fields = write("metadata: {name: p}\nspec:\n  rules:\n  - {name: x, match: {}, action: dropFields}\n");
        assert!(read_policy(no_fields.path()).unwrap_err().to_string().contains("needs fields"));
        let garbage = write("metadata: [\n");
        assert!(matches!(read_policy(garbage.path()), Err(MinimizeError::Policy { .. })));
    }
}
