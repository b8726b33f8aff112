//! Writing the files the commands produce (encodings, converted checkpoints, predictions,
//! run records).
//!
//! A regular file (or a new path) is replaced whole, through a sibling temporary file and a
//! rename, so a reader never sees half a file; the file gets the permissions a plain `create`
//! gives (the umask's), and missing parent directories are created. Anything else already at
//! the path (a device such as `/dev/null`, a pipe, a symbolic link) is written through and never
//! replaced. A directory at the path is an error.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` as described in the module docs. Errors name no path: callers add
/// it as context.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    check_writable(path)?;
    if let Ok(meta) = fs::symlink_metadata(path)
        && !meta.file_type().is_file()
    {
        return fs::write(path, bytes);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let tmp = temporary_sibling(path);
    let written = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// An error when `path` cannot be an output file: it is a directory (following links). For
/// commands that check their output paths before long work.
pub fn check_writable(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory; give a file name",
        ));
    }
    Ok(())
}

/// `DIR/.NAME.tmp-PID` beside `path`.
fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lf-output-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_new_file_in_a_new_directory_is_written_whole_with_nothing_left_beside_it() {
        let dir = scratch("new");
        let path = dir.join("a/b/out.bin");
        write_file(&path, b"hello").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        write_file(&path, b"again").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"again");
        let names: Vec<_> = fs::read_dir(dir.join("a/b")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn files_get_the_umask_permissions_and_links_are_written_through() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("perm");
        let path = dir.join("out.bin");
        write_file(&path, b"x").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // Whatever the umask, `create` asks for 0o666: group or others can read unless the
        // umask removes it; a private temporary file would be 0o600 whatever the umask.
        let plain = dir.join("plain.bin");
        fs::write(&plain, b"x").unwrap();
        assert_eq!(
            mode,
            fs::metadata(&plain).unwrap().permissions().mode() & 0o777
        );

        let target = dir.join("target.bin");
        fs::write(&target, b"old").unwrap();
        let link = dir.join("link.bin");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_file(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&target).unwrap(), b"new");

        // A device is written to, not replaced by a regular file.
        write_file(Path::new("/dev/null"), b"discarded").unwrap();
        assert!(!fs::metadata("/dev/null").unwrap().file_type().is_file());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = scratch("dir");
        let err = write_file(&dir, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
        assert!(dir.is_dir());
        fs::remove_dir_all(dir).unwrap();
    }
}
