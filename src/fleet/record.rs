//! `record: {path, max_size}` on a miner source: what each miner answered in each
//! poll, with when it came, as JSON lines in `answers-SOURCE-NNNNNN.jsonl` under
//! `path` (a `bos` source writes each call's message as protobuf hex, a `cgminer`
//! source each command's answer as the bytes that came). At most four files a source
//! are kept, each a quarter of `max_size`: the oldest goes first, so a recording never
//! outgrows its bound. Several sources may record into one directory. `rigtap sim
//! --replay` serves a recording back over the same APIs; a user can send one with a
//! bug report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::toolkit::paths;
use crate::toolkit::units::ByteSize;
use crate::toolkit::yaml::decode::{within, DecodeError};
use crate::toolkit::yaml::node::Node;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordConfig {
    pub path: PathBuf,
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
}

fn default_max_size() -> ByteSize {
    ByteSize(64 << 20)
}

/// The bounds of `record.max_size`.
const MAX_SIZE_RANGE: (ByteSize, ByteSize) = (ByteSize(1 << 20), ByteSize(1 << 40));

impl RecordConfig {
    /// Its bounds, and a directory this process can make and write; `body` is the
    /// source's, where an error is placed.
    pub(crate) fn check(&self, body: &Node) -> Result<(), DecodeError> {
        let (least, most) = MAX_SIZE_RANGE;
        within(body, &["record", "max_size"], self.max_size, least, most)?;
        paths::writable_dir(&self.path)
            .map_err(|message| DecodeError::at_path(body, &["record", "path"], message))
    }
}

/// The recording's directory cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot record into {}: {source}; check `record.path`", path.display())]
pub(crate) struct RecordFailed {
    path: PathBuf,
    source: std::io::Error,
}

/// Files kept; each holds a quarter of `max_size`.
const FILES: u64 = 4;

pub(crate) struct Recorder {
    dir: PathBuf,
    source: String,
    per_file: u64,
    started: Instant,
    state: Mutex<State>,
}

struct State {
    out: std::io::BufWriter<std::fs::File>,
    written: u64,
    index: u64,
    /// Set once a write failed: the recording stops (and says so once); polling goes on.
    failed: bool,
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Recorder {
    /// Starts source `source`'s recording in `config.path` (created if need be).
    pub(crate) fn create(config: &RecordConfig, source: &str) -> Result<Recorder, RecordFailed> {
        let failed = |source| RecordFailed {
            path: config.path.clone(),
            source,
        };
        std::fs::create_dir_all(&config.path).map_err(failed)?;
        let first = file(&config.path, source, 0);
        let out = std::io::BufWriter::new(std::fs::File::create(first).map_err(failed)?);
        Ok(Recorder {
            dir: config.path.clone(),
            source: source.to_string(),
            per_file: (config.max_size.0 / FILES).max(1),
            started: Instant::now(),
            state: Mutex::new(State {
                out,
                written: 0,
                index: 0,
                failed: false,
            }),
        })
    }

    /// Appends one poll of `miner`: `answers` are the line's fields beside its time
    /// (`t_ms`, since the recording started) and the miner's id (`miner`).
    pub(crate) fn poll(&self, miner: &str, answers: Map<String, Value>) {
        let mut line = Map::with_capacity(answers.len() + 2);
        line.insert(
            "t_ms".into(),
            Value::from(self.started.elapsed().as_millis() as u64),
        );
        line.insert("miner".into(), Value::from(miner));
        line.extend(answers);
        let line = Value::Object(line).to_string();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.failed {
            return;
        }
        if let Err(e) = self.append(&mut state, &line) {
            state.failed = true;
            tracing::warn!(path = %self.dir.display(), error = %e, "cannot write the recording; it stops here (the source goes on)");
        }
    }

    fn append(&self, state: &mut State, line: &str) -> std::io::Result<()> {
        if state.written >= self.per_file {
            state.out.flush()?;
            state.index += 1;
            state.out = std::io::BufWriter::new(std::fs::File::create(file(
                &self.dir,
                &self.source,
                state.index,
            ))?);
            state.written = 0;
            if let Some(oldest) = state.index.checked_sub(FILES) {
                let _ = std::fs::remove_file(file(&self.dir, &self.source, oldest));
            }
        }
        writeln!(state.out, "{line}")?;
        state.written += line.len() as u64 + 1;
        Ok(())
    }
}

fn file(dir: &Path, source: &str, index: u64) -> PathBuf {
    dir.join(format!("answers-{source}-{index:06}.jsonl"))
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = state.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_stays_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let config = RecordConfig {
            path: dir.path().join("rec"),
            max_size: ByteSize(40_000),
        };
        let recorder = Recorder::create(&config, "fleet").unwrap();
        let other = Recorder::create(&config, "stock").unwrap();
        let answers = || {
            let mut answers = Map::new();
            answers.insert("details".into(), Value::from(hex(b"rig")));
            answers
        };
        for _ in 0..2000 {
            recorder.poll("m1", answers());
        }
        other.poll("m2", answers());
        drop((recorder, other));
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("rec"))
            .unwrap()
            .map(|f| f.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 5, "the oldest files went: {files:?}");
        assert!(files[4].ends_with("answers-stock-000000.jsonl"));
        let total: u64 = files[..4].iter().map(|f| f.metadata().unwrap().len()).sum();
        assert!(total <= 40_000 + 200, "{total} bytes");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["miner"], "m1");
        assert_eq!(line["details"], "726967");
        assert!(line["t_ms"].is_u64());
    }

    #[test]
    fn an_unwritable_directory_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let e = Recorder::create(
            &RecordConfig {
                path: blocker.join("rec"),
                max_size: default_max_size(),
            },
            "fleet",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("file/rec") && e.contains("record.path"), "{e}");
    }
}
