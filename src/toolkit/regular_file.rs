//! Reading a file a pipeline names (its config at a reload, an inventory) with a size
//! limit, and only if it is a regular file: a FIFO blocks its reader until someone
//! writes to it, and `/dev/zero` or a log file of gigabytes would be read whole.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The bytes of `path` if it is a regular file of at most `limit` bytes. Both
/// are checked on its metadata before it is opened. It is opened non-blocking, so a
/// FIFO swapped in after the check cannot block either, and read at most to `limit`.
/// Blocks: call it off the async runtime.
pub(crate) fn read(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let metadata = std::fs::metadata(path)?;
    let kind = metadata.file_type();
    let not_regular = if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() || kind.is_block_device() {
        Some("a device")
    } else {
        None
    };
    if let Some(what) = not_regular {
        return Err(std::io::Error::other(format!(
            "it is {what}, not a regular file"
        )));
    }
    if metadata.len() > limit {
        return Err(too_large(limit));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    read_capped(file, limit)
}

/// Reads `file` whole, refusing it past `limit` bytes (it stops reading there).
pub(crate) fn read_capped(file: std::fs::File, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

fn too_large(limit: u64) -> std::io::Error {
    std::io::Error::other(format!(
        "it is larger than {} MiB; is this the right file?",
        limit >> 20
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.csv");
        std::fs::write(&good, "id,address\n").unwrap();
        assert_eq!(read(&good, 1 << 20).unwrap(), b"id,address\n");

        // Refused on its metadata: the sparse file's 2 MiB are never read.
        let big = dir.path().join("big.csv");
        std::fs::File::create(&big)
            .unwrap()
            .set_len((1 << 20) + 1)
            .unwrap();
        let error = read(&big, 1 << 20).unwrap_err().to_string();
        assert_eq!(error, "it is larger than 1 MiB; is this the right file?");

        // A device is refused before it is opened; read through, /dev/zero never ends.
        let error = read(Path::new("/dev/zero"), 1 << 20)
            .unwrap_err()
            .to_string();
        assert_eq!(error, "it is a device, not a regular file");
        let zero = std::fs::File::open("/dev/zero").unwrap();
        let error = read_capped(zero, 1 << 20).unwrap_err().to_string();
        assert!(error.contains("larger than 1 MiB"), "{error}");

        // A FIFO no one writes to would block an open or a read.
        let fifo = dir.path().join("fifo.csv");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let error = read(&fifo, 1 << 20).unwrap_err().to_string();
        assert_eq!(error, "it is a FIFO, not a regular file");
        let error = read(dir.path(), 1 << 20).unwrap_err().to_string();
        assert_eq!(error, "it is a directory, not a regular file");
    }
}
