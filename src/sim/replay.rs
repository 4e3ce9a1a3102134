//! `rigtap sim --replay DIR`: a recording (the `record:` of `bos` and `cgminer`
//! sources) served back over the same APIs. Each recorded miner becomes a simulated
//! one, under its recorded id, and answers each call with what the miner answered at
//! the same time into the recording (the latest recorded answer at or before it;
//! `--speed` runs faster). A miner recorded by a `cgminer` source serves the CGMiner
//! API only, each command's answer byte for byte; a `bos` one serves gRPC. A call the
//! miner did not answer in the recording fails with UNAVAILABLE (gRPC), or has its
//! connection closed unanswered (CGMiner API).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// One recorded poll: when, and each call's answer as protobuf bytes.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Recorded {
    #[serde(rename = "t_ms")]
    pub at_ms: u64,
    #[serde(default, deserialize_with = "hex")]
    pub details: Option<Vec<u8>>,
    #[serde(default, deserialize_with = "hex")]
    pub stats: Option<Vec<u8>>,
    #[serde(default, deserialize_with = "hex")]
    pub hashboards: Option<Vec<u8>>,
    #[serde(default, deserialize_with = "hex")]
    pub cooling: Option<Vec<u8>>,
    #[serde(default, deserialize_with = "hex")]
    pub pools: Option<Vec<u8>>,
    /// A `cgminer` source's poll: each command asked (`summary`, or `summary+pools`
    /// combined) and the answer as it came.
    #[serde(default)]
    pub cgminer: BTreeMap<String, String>,
}

fn hex<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    if text.len() % 2 != 0 {
        return Err(serde::de::Error::custom("odd-length hex"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A recording: each miner's polls, in time order.
#[derive(Debug)]
pub struct Recording {
    miners: Vec<(Arc<str>, Arc<[Recorded]>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: not a recorded poll: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: no recorded polls (files `answers-*.jsonl` of a `record:` option)", .0.display())]
    Empty(PathBuf),
}

#[derive(Deserialize)]
struct Line {
    miner: String,
    #[serde(flatten)]
    poll: Recorded,
}

impl Recording {
    /// Reads every `answers-*.jsonl` of `dir`, oldest file first.
    pub fn load(dir: &Path) -> Result<Recording, ReplayError> {
        let read = |path: &Path, source| ReplayError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| read(dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("answers-") && n.ends_with(".jsonl"))
            })
            .collect();
        files.sort();
        let mut by_miner: BTreeMap<String, Vec<Recorded>> = BTreeMap::new();
        for path in &files {
            let text = std::fs::read_to_string(path).map_err(|e| read(path, e))?;
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let line: Line = serde_json::from_str(line).map_err(|e| ReplayError::Line {
                    path: path.clone(),
                    line: n + 1,
                    message: e.to_string(),
                })?;
                by_miner.entry(line.miner).or_default().push(line.poll);
            }
        }
        if by_miner.is_empty() {
            return Err(ReplayError::Empty(dir.to_path_buf()));
        }
        let miners = by_miner
            .into_iter()
            .map(|(id, mut polls)| {
                polls.sort_by_key(|p| p.at_ms);
                (Arc::from(id), Arc::from(polls))
            })
            .collect();
        Ok(Recording { miners })
    }

    pub fn len(&self) -> usize {
        self.miners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.miners.is_empty()
    }

    pub(crate) fn id(&self, index: usize) -> &Arc<str> {
        &self.miners[index].0
    }

    pub(crate) fn polls(&self, index: usize) -> Arc<[Recorded]> {
        self.miners[index].1.clone()
    }

    /// Whether miner `index` was recorded by a `cgminer` source (stock firmware).
    pub(crate) fn stock(&self, index: usize) -> bool {
        self.miners[index].1.iter().any(|p| !p.cgminer.is_empty())
    }

    /// Whether any miner was recorded by a `cgminer` source.
    pub(crate) fn has_stock(&self) -> bool {
        (0..self.len()).any(|i| self.stock(i))
    }
}

/// The poll to answer with `elapsed` into the replay: the latest at or before it, or
/// the first.
pub(crate) fn at(polls: &[Recorded], elapsed: Duration) -> Option<&Recorded> {
    let ms = elapsed.as_millis() as u64;
    let after = polls.partition_point(|p| p.at_ms <= ms);
    polls.get(after.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_poll_at_or_before_the_time_answers() {
        let polls: Vec<Recorded> = [0, 1000, 2000]
            .map(|at_ms| Recorded {
                at_ms,
                ..Recorded::default()
            })
            .into();
        let at_ms = |ms| at(&polls, Duration::from_millis(ms)).unwrap().at_ms;
        assert_eq!(
            (at_ms(0), at_ms(999), at_ms(1000), at_ms(9000)),
            (0, 0, 1000, 2000)
        );
    }

    #[test]
    fn bad_lines_say_where() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("answers-000000.jsonl"),
            "{\"t_ms\":1,\"miner\":\"m\",\"details\":\"0g\"}\n",
        )
        .unwrap();
        let e = Recording::load(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("answers-000000.jsonl:1: not a recorded poll"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Recording::load(empty.path()),
            Err(ReplayError::Empty(_))
        ));
    }
}
