//! The client auth secret of a single node that was given none: generated once, kept in the
//! data directory with mode 0600, and reused on every start (so clients' credentials keep
//! working across restarts). Clusters must configure a shared secret; config.rs enforces it.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Name of the secret file inside the data directory.
pub const FILE: &str = "secret";

/// Where the generated secret of `data_dir` lives.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Reads the secret kept in `data_dir`, generating it first when there is none.
/// Returns the secret and whether it was generated now.
///
/// # Errors
/// When the directory or file cannot be created or read, or the file is empty.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(String, bool)> {
    let path = path(data_dir);
    match fs::read_to_string(&path) {
        Ok(s) => {
            let s = s.trim().to_owned();
            anyhow::ensure!(!s.is_empty(), "secret file {} is empty", path.display());
            return Ok((s, false));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read secret file {}: {e}", path.display()),
    }
    fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a secret: {e}"))?;
    let secret = hex::encode(bytes);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot create secret file {}: {e}", path.display()))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot write secret file {}: {e}", path.display()))?;
    Ok((secret, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_and_private() {
        let dir = std::env::temp_dir().join(format!("herald-secret-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (a, created) = load_or_create(&dir).unwrap();
        assert!(created);
        assert_eq!(a.len(), 64);
        let (b, created) = load_or_create(&dir).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path(&dir)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(path(&dir), "  \n").unwrap();
        assert!(load_or_create(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
