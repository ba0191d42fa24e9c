//! What the commands that call a vault's API share (`vaultd minimize`, `vaultd backup`):
//! the CA to trust for an `https://` vault, and error messages that say why a request
//! failed.

use std::path::Path;

use zeroize::Zeroizing;

/// The certificates of a PEM file, to trust as the only roots (no built-in ones).
pub fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = Zeroizing::new(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?);
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM CA certificate: {}", path.display(), with_causes(&e)))?;
    if certificates.is_empty() {
        return Err(format!("{} is not a PEM CA certificate: no certificate in it", path.display()));
    }
    Ok(certificates)
}

/// An error and its causes, `: `-separated: reqwest's own message does not say why a
/// request failed (e.g. that the vault's certificate is not signed by the given CA).
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}
