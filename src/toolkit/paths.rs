//! Directories the pipeline will write, checked at validate time without touching
//! them: that each can be made (or is there) and written, and whether one is inside
//! another.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Whether `dir` is a directory this process can write, or can be created as one:
/// its nearest existing ancestor must be a directory it can write. Nothing is made.
pub(crate) fn writable_dir(dir: &Path) -> Result<(), String> {
    let absolute = absolute(dir);
    let existing = absolute
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    if !existing.is_dir() {
        return Err(format!(
            "{} is a file, not a directory, so {} cannot be made",
            existing.display(),
            dir.display()
        ));
    }
    let c_path = CString::new(existing.as_os_str().as_bytes())
        .map_err(|_| format!("{} holds a NUL byte", dir.display()))?;
    // As the effective user, whom the writes will be made as.
    // SAFETY: a valid NUL-terminated path; faccessat(2) only reads it.
    let denied = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    } != 0;
    if denied {
        let error = std::io::Error::last_os_error();
        return Err(match existing == absolute {
            true => format!("{} cannot be written: {error}", dir.display()),
            false => format!(
                "{} cannot be made: {} cannot be written ({error})",
                dir.display(),
                existing.display()
            ),
        });
    }
    Ok(())
}

/// Whether `inner` is `outer` or inside it, as written (relative to the working
/// directory; symbolic links are not followed).
pub(crate) fn within(inner: &Path, outer: &Path) -> bool {
    absolute(inner).starts_with(absolute(outer))
}

fn absolute(path: &Path) -> PathBuf {
    let joined = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    // `absolute` keeps `..`: resolved here, by name.
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_under_a_file_cannot_be_made_and_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes");
        std::fs::write(&file, "x").unwrap();
        let error = writable_dir(&file.join("out/parquet")).unwrap_err();
        assert!(
            error.starts_with(&format!("{} is a file", file.display())),
            "{error}"
        );
        assert!(writable_dir(&file).unwrap_err().contains("is a file"));
        writable_dir(&dir.path().join("new/deeper")).unwrap();
        writable_dir(dir.path()).unwrap();
    }

    #[test]
    fn within_compares_paths_as_written() {
        let cwd = std::env::current_dir().unwrap();
        assert!(within(Path::new("out"), &cwd.join("out")));
        assert!(within(&cwd.join("out"), Path::new("out")));
        assert!(within(Path::new("out/./a/../"), Path::new("out")));
        assert!(within(Path::new("/data/buffer"), Path::new("/data")));
        assert!(within(Path::new("/data/buffer"), Path::new("/data/x/..")));
        assert!(!within(Path::new("/data"), Path::new("/data/buffer")));
        assert!(!within(Path::new("/data/ab"), Path::new("/data/a")));
        assert!(!within(Path::new("/data/a"), Path::new("/data/b")));
    }
}
