//! Writing the files the commands produce (encodings, converted checkpoints, predictions,
//! run records).
//!
//! A regular file (or a new path) is replaced whole, through a temporary file beside it and a
//! rename, so that a reader never sees half a file and a failed write leaves the old one. A new
//! file gets the permissions a plain `create` gives (the umask's), a replaced one keeps its
//! own; missing parent directories are created. A symbolic link to a regular file is replaced
//! by the new file (its target, perhaps a source checkpoint, is left alone). A device, pipe or
//! socket at the path, or a link to one (`/dev/null`, `/dev/stdout`), is written to, never
//! replaced. A directory at the path is an error.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` as described in the module docs. Errors name no path: callers add
/// it as context.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    check_writable(path)?;
    // `metadata` follows links: a link to a device is written through like the device.
    let existing = fs::metadata(path).ok();
    if let Some(meta) = &existing
        && !meta.is_file()
    {
        return fs::write(path, bytes);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    // A regular file being replaced (not a link to one) keeps its permissions.
    let keep = match &existing {
        Some(meta) if !fs::symlink_metadata(path)?.file_type().is_symlink() => {
            Some(meta.permissions())
        }
        _ => None,
    };
    let (tmp, mut file) = temporary_sibling(path)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| keep.map_or(Ok(()), |p| file.set_permissions(p)))
        .and_then(|()| {
            drop(file);
            fs::rename(&tmp, path)
        });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// The bytes of a safetensors file holding f32 tensors, each `(name, values, shape)` (values
/// row-major), with `metadata` in its header.
pub fn f32_safetensors(
    tensors: &[(&str, &[f32], Vec<usize>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, values, _)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, _, shape), bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|view| (*name, view))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, metadata)
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

/// A new file `DIR/.NAME.tmp-PID-N` beside `path`, created exclusively (never an existing file
/// or a link planted at that name).
fn temporary_sibling(path: &Path) -> io::Result<(PathBuf, fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let mut attempts = 0;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            // A name left by an earlier process of the same id: try the next.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
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
    fn permissions_links_and_devices() {
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

        // A replaced file keeps its own permissions.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write_file(&path, b"y").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read(&path).unwrap(), b"y");

        // A link to a regular file (an output directory of links into a source checkpoint) is
        // replaced; its target is left alone.
        let target = dir.join("target.bin");
        fs::write(&target, b"old").unwrap();
        let link = dir.join("link.bin");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_file(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
        assert_eq!(fs::read(&link).unwrap(), b"new");
        assert_eq!(fs::read(&target).unwrap(), b"old");

        // A device, and a link to one, are written to, not replaced by a regular file.
        write_file(Path::new("/dev/null"), b"discarded").unwrap();
        assert!(!fs::metadata("/dev/null").unwrap().file_type().is_file());
        let null_link = dir.join("null");
        std::os::unix::fs::symlink("/dev/null", &null_link).unwrap();
        write_file(&null_link, b"discarded").unwrap();
        assert!(
            fs::symlink_metadata(&null_link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
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
