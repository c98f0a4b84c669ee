//! Where things live on disk: the data directory of `strata up` and the CLI's config file.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `$STRATA_DATA_DIR`, else `$XDG_DATA_HOME/strata`, else `~/.local/share/strata`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STRATA_DATA_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".local/share"));
    base.join("strata")
}

/// `$STRATA_CONFIG`, else `$XDG_CONFIG_HOME/strata/config.toml`, else `~/.config/strata/config.toml`.
pub fn config_path() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_CONFIG") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".config"));
    base.join("strata/config.toml")
}

/// What the CLI needs to reach the API; written by `strata up` on first start.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CliConfig {
    pub api_url: Option<String>,
    pub org: Option<String>,
    pub service_token_id: Option<String>,
    pub service_token: Option<String>,
    /// The CA that signs the gateway's certificate (for `strata shell` and `strata connect`).
    pub mysql_ca: Option<String>,
}

impl CliConfig {
    pub fn load(path: &Path) -> Result<CliConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("cannot read CLI config {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliConfig::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read CLI config {}", path.display())),
        }
    }

    /// Writes the file readable only by its owner (it holds a service token).
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = format!("# strata CLI configuration\n{}", toml::to_string(self)?);
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        drop(f);
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }
}
