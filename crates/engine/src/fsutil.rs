//! Directory copying for datadirs. The template (~30 MB) is copied plainly; backups are cloned with
//! reflinks where the file system shares blocks, a copy otherwise.

use crate::{io_err, Result};
use std::fs;
use std::path::Path;

pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(io_err(to))?;
    for entry in fs::read_dir(from).map_err(io_err(from))? {
        let entry = entry.map_err(io_err(from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io_err(&src))?;
        if kind.is_dir() {
            copy_dir(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst).map_err(io_err(&src))?;
        }
    }
    Ok(())
}

/// Creates a directory readable only by its owner: instance directories hold credentials and sockets.
pub fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err(path))
}

/// Writes a file readable only by its owner, replacing it atomically.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(contents.as_bytes()).map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Recursively clones `from` into `to` (created), leaving out top-level names `skip` accepts: each
/// file reflinked when the file system allows, copied otherwise. True when nothing was copied.
pub fn clone_dir(from: &Path, to: &Path, skip: &dyn Fn(&str) -> bool) -> Result<bool> {
    create_private_dir(to)?;
    let mut all_reflinked = true;
    for entry in fs::read_dir(from).map_err(io_err(from))? {
        let entry = entry.map_err(io_err(from))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip(&name) {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        let kind = entry.file_type().map_err(io_err(&src))?;
        if kind.is_dir() {
            all_reflinked &= clone_dir(&src, &dst, &|_| false)?;
        } else if kind.is_file() {
            let copied = reflink_copy::reflink_or_copy(&src, &dst).map_err(io_err(&src))?;
            all_reflinked &= copied.is_none();
        }
    }
    Ok(all_reflinked)
}

/// Bytes of the regular files under `path` (0 when it does not exist).
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Flushes every file and directory under `path` to stable storage (a stored backup must survive a
/// power loss, not only a crash of the process).
pub fn sync_tree(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(io_err(path))? {
            let entry = entry.map_err(io_err(path))?;
            let t = entry.file_type().map_err(io_err(entry.path()))?;
            if t.is_dir() || t.is_file() {
                sync_tree(&entry.path())?;
            }
        }
    }
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

/// Flushes a directory's own entries (after a rename into it).
pub fn sync_tree_root(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}
