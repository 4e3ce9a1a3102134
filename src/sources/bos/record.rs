//! `record: {path, max_size}`: every poll's answers, each call's message as protobuf
//! (re-encoded from what was decoded) with when it came, as JSON lines in
//! `answers-NNNNNN.jsonl` under `path`. At most four files are kept, each a quarter
//! of `max_size`: the oldest goes first, so a recording never outgrows its bound.
//! `rigtap sim --replay` serves a recording back over the same API; a user can send
//! one with a bug report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use prost::Message;
use serde::Deserialize;

use super::poll::Answers;
use crate::fleet::targets::Target;
use crate::toolkit::units::ByteSize;

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

/// Files kept; each holds a quarter of `max_size`.
const FILES: u64 = 4;

pub(crate) struct Recorder {
    dir: PathBuf,
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

fn file(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("answers-{index:06}.jsonl"))
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Recorder {
    /// Starts a recording in `config.path` (created if need be).
    pub(crate) fn create(config: &RecordConfig) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(&config.path)?;
        let out = std::io::BufWriter::new(std::fs::File::create(file(&config.path, 0))?);
        Ok(Recorder {
            dir: config.path.clone(),
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

    /// Appends one poll's answers.
    pub(crate) fn poll(&self, target: &Target, answers: &Answers) {
        let encoded = |message: Option<&dyn EncodeToVec>| message.map(|m| hex(&m.bytes()));
        let line = serde_json::json!({
            "t_ms": self.started.elapsed().as_millis() as u64,
            "miner": &*target.id,
            "details": encoded(answers.details.as_ref().map(|m| m as &dyn EncodeToVec)),
            "stats": encoded(answers.stats.as_ref().map(|m| m as &dyn EncodeToVec)),
            "hashboards": encoded(answers.hashboards.as_ref().map(|m| m as &dyn EncodeToVec)),
            "cooling": encoded(answers.cooling.as_ref().map(|m| m as &dyn EncodeToVec)),
            "pools": encoded(answers.pools.as_ref().map(|m| m as &dyn EncodeToVec)),
        })
        .to_string();
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
            state.out =
                std::io::BufWriter::new(std::fs::File::create(file(&self.dir, state.index))?);
            state.written = 0;
            if let Some(oldest) = state.index.checked_sub(FILES) {
                let _ = std::fs::remove_file(file(&self.dir, oldest));
            }
        }
        writeln!(state.out, "{line}")?;
        state.written += line.len() as u64 + 1;
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = state.out.flush();
    }
}

/// A decoded answer, encoded again.
trait EncodeToVec {
    fn bytes(&self) -> Vec<u8>;
}

impl<M: Message> EncodeToVec for M {
    fn bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::targets;
    use crate::toolkit::proto::bos::v1 as api;

    #[test]
    fn a_recording_stays_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::create(&RecordConfig {
            path: dir.path().join("rec"),
            max_size: ByteSize(40_000),
        })
        .unwrap();
        let answers = Answers {
            details: Some(api::GetMinerDetailsResponse {
                hostname: "rig".into(),
                ..Default::default()
            }),
            ..Answers::default()
        };
        for _ in 0..2000 {
            recorder.poll(&targets::fixture("m1"), &answers);
        }
        drop(recorder);
        let files: Vec<_> = std::fs::read_dir(dir.path().join("rec")).unwrap().collect();
        assert_eq!(files.len(), 4, "the oldest files went");
        let total: u64 = files
            .iter()
            .map(|f| f.as_ref().unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 40_000 + 200, "{total} bytes");
        let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["miner"], "m1");
        assert_eq!(
            line["details"],
            hex(&answers.details.unwrap().encode_to_vec())
        );
        assert!(line["stats"].is_null(), "not asked: absent");
    }
}
