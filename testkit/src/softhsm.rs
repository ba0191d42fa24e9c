//! A throwaway SoftHSM2 token, made by `hack/softhsm-token.sh`, and the environment that
//! points vaultd at it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use tempfile::TempDir;

/// The project's `hack/softhsm-token.sh`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/softhsm-token.sh")
}

/// Runs `script DIR` (a token in `dir`, created) and returns the variables it exports.
pub fn token_environment(script: &Path, dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let output = Command::new("bash")
        .arg(script)
        .arg(dir)
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed ({}): {}", script.display(), output.status, String::from_utf8_lossy(&output.stderr));
    }
    let variables = parse_exports(&String::from_utf8_lossy(&output.stdout));
    if !variables.iter().any(|(name, _)| name == "VAULTD_HSM_MODULE") {
        bail!("{} printed no VAULTD_HSM_MODULE", script.display());
    }
    Ok(variables)
}

/// `export NAME=VALUE` lines (values without quoting, as the script prints them).
pub fn parse_exports(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(name, value)| (name.trim().to_string(), value.trim().trim_matches('"').to_string()))
        .collect()
}

/// A SoftHSM token in a temporary directory of its own, removed when dropped.
pub struct SoftHsm {
    pub dir: TempDir,
    /// `SOFTHSM2_CONF` and the `VAULTD_HSM_*` variables, for vaultd's environment.
    pub env: HashMap<String, String>,
}

impl SoftHsm {
    /// A new token; panics when it cannot be made (for tests).
    pub fn new() -> Self {
        Self::create().unwrap_or_else(|error| panic!("cannot make a SoftHSM token: {error:#}"))
    }

    /// A new token, made by the project's script.
    pub fn create() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let env = token_environment(&script(), dir.path())?.into_iter().collect();
        Ok(SoftHsm { dir, env })
    }

    /// The token's user PIN.
    pub fn pin(&self) -> String {
        std::fs::read_to_string(&self.env["VAULTD_HSM_PIN_FILE"]).unwrap()
    }
}

impl Default for SoftHsm {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_script_output() {
        let text = "export SOFTHSM2_CONF=/t/softhsm2.conf\nexport VAULTD_HSM_MODULE=/usr/lib/x.so\nnoise\n";
        assert_eq!(
            parse_exports(text),
            vec![
                ("SOFTHSM2_CONF".to_string(), "/t/softhsm2.conf".to_string()),
                ("VAULTD_HSM_MODULE".to_string(), "/usr/lib/x.so".to_string()),
            ]
        );
    }
}
