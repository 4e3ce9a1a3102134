//! Directories the pipeline will write, checked at validate time without touching
//! them: that each can be made (or is there) and written, and whether two overlap.

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
    // SAFETY: a valid NUL-terminated path; access(2) only reads it.
    if unsafe { libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
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

/// Whether `a` and `b` are the same directory or one is inside the other, as written
/// (relative to the working directory; symbolic links are not followed).
pub(crate) fn overlap(a: &Path, b: &Path) -> bool {
    let (a, b) = (absolute(a), absolute(b));
    a.starts_with(&b) || b.starts_with(&a)
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
    fn paths_overlap_when_equal_or_nested_as_written() {
        let cwd = std::env::current_dir().unwrap();
        assert!(overlap(Path::new("out"), &cwd.join("out")));
        assert!(overlap(Path::new("out/./a/../"), Path::new("out")));
        assert!(overlap(Path::new("/data"), Path::new("/data/buffer")));
        assert!(overlap(Path::new("/data/x/.."), Path::new("/data/buffer")));
        assert!(!overlap(Path::new("/data/a"), Path::new("/data/ab")));
        assert!(!overlap(Path::new("/data/a"), Path::new("/data/b")));
    }
}
