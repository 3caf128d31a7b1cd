//! The files the relay keeps its secrets in (the root key, the TLS key): looked at without
//! following a dangling link, written whole into a new file that only the owner can read, and
//! checked at start for permissions that let others read them.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

use ring::rand::{SecureRandom, SystemRandom};

/// What is at a key file's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Nothing: the key is to be made.
    Missing,
    /// Something to read (a file, or a link to one).
    Present,
    /// A symbolic link to nothing. `Path::exists` takes it for nothing, and writing the path
    /// would create the file wherever the link points.
    DanglingLink,
}

/// Looks at `path` without following a final link, then at what the link points to.
pub(crate) fn probe(path: &Path) -> io::Result<Existing> {
    let link = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata.file_type().is_symlink(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Missing),
        Err(e) => return Err(e),
    };
    if !link {
        return Ok(Existing::Present);
    }
    match std::fs::metadata(path) {
        Ok(_) => Ok(Existing::Present),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::DanglingLink),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` as the file `path`, readable by its owner only, whatever was there before.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_new(path, bytes, 0o600)
}

/// Writes `bytes` into a new file beside `path` with permissions `mode` (on unix), syncs it, and
/// renames it over `path`. The file is never one that existed before: writing into an existing
/// file would keep its permissions (a 0644 key would stay readable by all), and opening the
/// path itself would follow a link planted there. `create_new` (`O_CREAT | O_EXCL`) opens
/// neither an existing file nor a link, dangling or not, and the rename replaces the path's
/// entry itself, never what a link there points to. Readers see the old file or the whole new
/// one, never half of it.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut random = [0u8; 8];
    SystemRandom::new().fill(&mut random).map_err(|_| io::Error::other("no randomness for a temporary name"))?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let temp = dir.join(format!(".{}.{suffix}.tmp", name.to_string_lossy()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    // The rename lasts through a crash once the directory is synced too; where a directory
    // cannot be opened (not unix), the file itself is already synced.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Whether permission bits let anyone but the owner at a key: read it, or write (replace) it.
fn exposed(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// The permission bits of the key file at `path` if its group or others may read or write it.
#[cfg(unix)]
pub(crate) fn exposed_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    exposed(mode).then_some(mode)
}

/// Warns if the key file at `path` is open to its group or others: it is the relay's to keep
/// (fixing it is the operator's call, e.g. a key shared with a group on purpose).
pub(crate) fn warn_if_exposed(path: &Path) {
    #[cfg(unix)]
    if let Some(mode) = exposed_mode(path) {
        tracing::warn!(
            path = %path.display(),
            mode = %format_args!("{mode:04o}"),
            "key file is readable or writable by group or others; make it private (chmod 600)"
        );
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(all(test, unix))]
pub(crate) mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::PathBuf;

    use super::*;

    /// An empty directory of this process's for the test `tag` (shared by the key files' tests).
    pub(crate) fn fresh_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("relay-key-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn only_owner_only_modes_are_private() {
        for private in [0o600, 0o400, 0o700] {
            assert!(!exposed(private), "{private:o}");
        }
        for open in [0o644, 0o640, 0o604, 0o620, 0o666] {
            assert!(exposed(open), "{open:o}");
        }
    }

    #[test]
    fn writes_replace_the_file_and_its_mode() {
        let dir = fresh_dir("replace");
        let key = dir.join("key.pem");
        std::fs::write(&key, "old").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(exposed_mode(&key), Some(0o644));
        write_private(&key, b"new").unwrap();
        assert_eq!((std::fs::read_to_string(&key).unwrap().as_str(), mode(&key)), ("new", 0o600));
        assert_eq!(exposed_mode(&key), None);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["key.pem"], "no temporary file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_are_seen_and_never_written_through() {
        let dir = fresh_dir("links");
        let (target, link) = (dir.join("target"), dir.join("link"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(probe(&link).unwrap(), Existing::DanglingLink);
        assert_eq!(probe(&dir.join("nothing")).unwrap(), Existing::Missing);
        std::fs::write(&target, "x").unwrap();
        assert_eq!(probe(&link).unwrap(), Existing::Present);
        assert_eq!(probe(&target).unwrap(), Existing::Present);
        write_private(&link, b"key").unwrap();
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link itself is replaced");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "x", "its target is untouched");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
