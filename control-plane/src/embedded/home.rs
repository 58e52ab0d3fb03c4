//! The Quiver home (`--home`, else `$QUIVER_HOME`, else `~/.quiver`): the store, the managed
//! model repository, the download cache, and the files through which the CLI finds the server
//! (`server`, its URL) and proves who it is (`token`, mode 0600).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// The paths under a Quiver home.
#[derive(Debug, Clone)]
pub struct Home {
    /// The home directory.
    pub root: PathBuf,
}

impl Home {
    /// `dir`, else `$QUIVER_HOME`, else `~/.quiver`.
    pub fn resolve(dir: Option<PathBuf>) -> io::Result<Home> {
        let root = match dir.or_else(|| std::env::var_os("QUIVER_HOME").map(PathBuf::from)) {
            Some(dir) => dir,
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".quiver"),
                None => return Err(io::Error::other("no Quiver home: pass --home or set QUIVER_HOME (HOME is not set)")),
            },
        };
        Ok(Home { root })
    }

    /// The store file.
    pub fn store(&self) -> PathBuf {
        self.root.join("store.redb")
    }

    /// The managed model repository.
    pub fn repository(&self) -> PathBuf {
        self.root.join("repository")
    }

    /// The download cache.
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// Creates the directories.
    pub fn prepare(&self) -> io::Result<()> {
        for dir in [self.root.clone(), self.repository(), self.cache()] {
            fs::create_dir_all(&dir)?;
        }
        Ok(())
    }

    /// The management API's bearer token: the one in `token`, or a new random one written
    /// there readable by the owner only (0600), so a restart keeps the CLI's access.
    pub fn token(&self) -> io::Result<String> {
        let path = self.root.join("token");
        match fs::read_to_string(&path) {
            Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let bytes: [u8; 32] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&path, &token)?;
        Ok(token)
    }

    /// Records the server's URL for the CLI.
    pub fn write_server_url(&self, url: &str) -> io::Result<()> {
        let path = self.root.join("server");
        let staging = self.root.join(".server.tmp");
        fs::write(&staging, url)?;
        fs::rename(staging, path)
    }
}

/// Writes `contents` to `path`, created with mode 0600 (on Unix) before anything is in it.
fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_private_and_stable() {
        let root = std::env::temp_dir().join(format!("quiver-home-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let home = Home::resolve(Some(root.clone())).unwrap();
        home.prepare().unwrap();
        let token = home.token().unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(home.token().unwrap(), token, "kept across restarts");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(root.join("token")).unwrap().permissions().mode() & 0o777, 0o600);
        }
        home.write_server_url("http://127.0.0.1:8000").unwrap();
        assert_eq!(fs::read_to_string(root.join("server")).unwrap(), "http://127.0.0.1:8000");
        let _ = fs::remove_dir_all(&root);
    }
}
