//! Fault injection: which simulated miners misbehave, and how.
//!
//! Rules come from `--fault KIND[:FRACTION]` flags or a YAML file (`--faults FILE`):
//!
//! ```yaml
//! faults:
//!   - kind: unavailable      # UNAVAILABLE on a call...
//!     fraction: 0.1          # ...for 10% of the fleet (or `miners: [0, 7]`)...
//!     probability: 0.5       # ...half of the time
//!   - kind: slow
//!     delay: 2s
//!     miners: [3]
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tonic::Code;

use crate::toolkit::units::HumanDuration;
use crate::toolkit::yaml::decode::from_node;
use crate::toolkit::yaml::node;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The miner does not listen: connections are refused.
    Refuse,
    /// Connections are cut after a random time up to `after`.
    Drop,
    /// The status stream sends its first message, then nothing more.
    Stall,
    /// Every call waits `delay` before answering.
    Slow,
    /// Calls fail with UNAVAILABLE (with `probability`).
    Unavailable,
    /// Calls fail with RESOURCE_EXHAUSTED (with `probability`).
    ResourceExhausted,
    /// Calls fail with INTERNAL (with `probability`).
    Internal,
    /// At most `limit` connections open at once; more are closed on accept.
    ConnectionCap,
    /// At most `limit` new connections a second; more are closed on accept.
    ConnectionRate,
    /// Telemetry holds NaN, negative and absurd values.
    Malformed,
    /// Hashboard answers exceed gRPC's default 4 MiB message limit.
    Oversized,
    /// Every login fails with "Bad credentials".
    AuthFail,
    /// The miner reports API 0.9 (firmware before BOS 23.08).
    OldApi,
}

/// One rule: a fault and the miners it applies to.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub kind: FaultKind,
    /// Share of the fleet (0 to 1) picked by seeded hash; without it and `miners`, all.
    #[serde(default)]
    pub fraction: Option<f64>,
    /// Miner indexes (0-based) the rule applies to.
    #[serde(default)]
    pub miners: Vec<usize>,
    /// Chance that one call fails, for the status-code faults.
    #[serde(default = "always")]
    pub probability: f64,
    /// Delay of `slow` (default 2s).
    #[serde(default)]
    pub delay: Option<HumanDuration>,
    /// Longest connection lifetime under `drop` (default 30s).
    #[serde(default)]
    pub after: Option<HumanDuration>,
    /// The cap of `connection_cap` (default 1) or `connection_rate` (default 1/s).
    #[serde(default)]
    pub limit: Option<u32>,
}

fn always() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultFile {
    faults: Vec<FaultRule>,
}

/// What is wrong with a fault flag or file.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{0}: cannot read: {1}")]
    Read(String, std::io::Error),
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("bad --fault `{0}`: {1}")]
    Flag(String, String),
}

impl FaultRule {
    /// Parses `KIND[:FRACTION]`, e.g. `unavailable:0.1`.
    pub fn parse_flag(text: &str) -> Result<FaultRule, FaultError> {
        let (kind, fraction) = match text.split_once(':') {
            Some((kind, fraction)) => (kind, Some(fraction)),
            None => (text, None),
        };
        let bad = |why: String| FaultError::Flag(text.to_string(), why);
        let node = node::parse(&format!("kind: {kind}\n")).map_err(|e| bad(e.message))?;
        let mut rule: FaultRule = from_node(&node).map_err(|e| bad(e.message))?;
        rule.fraction = fraction
            .map(|f| {
                f.parse::<f64>()
                    .map_err(|_| bad(format!("`{f}` is not a fraction between 0 and 1")))
            })
            .transpose()?;
        Ok(rule)
    }

    fn applies_to(&self, seed: u64, rule_index: usize, miner: usize) -> bool {
        if !self.miners.is_empty() {
            return self.miners.contains(&miner);
        }
        match self.fraction {
            None => true,
            Some(fraction) => {
                let mut rng =
                    fastrand::Rng::with_seed(seed ^ ((rule_index as u64) << 32) ^ miner as u64);
                rng.f64() < fraction
            }
        }
    }
}

/// Reads a fault file, reporting problems as `file:line:column`.
pub fn load(path: &Path) -> Result<Vec<FaultRule>, FaultError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FaultError::Read(file.clone(), e))?;
    let invalid = |mark: Option<node::Mark>, message: String| {
        let mark = mark.unwrap_or_default();
        FaultError::Invalid {
            file: file.clone(),
            line: mark.line,
            column: mark.column,
            message,
        }
    };
    let root = node::parse(&text).map_err(|e| invalid(Some(e.mark), e.message))?;
    let parsed: FaultFile = from_node(&root).map_err(|e| invalid(e.mark, e.message))?;
    Ok(parsed.faults)
}

/// The faults of one miner, resolved from the rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct MinerFaults {
    pub(crate) refuse: bool,
    pub(crate) drop_after: Option<Duration>,
    pub stall: bool,
    pub(crate) slow: Option<Duration>,
    pub error: Option<(Code, f64)>,
    pub(crate) connection_cap: Option<u32>,
    pub(crate) connection_rate: Option<u32>,
    pub malformed: bool,
    pub(crate) oversized: bool,
    pub(crate) auth_fail: bool,
    pub(crate) old_api: bool,
}

impl MinerFaults {
    pub(crate) fn resolve(rules: &[FaultRule], seed: u64, miner: usize) -> Self {
        let mut faults = MinerFaults::default();
        for (index, rule) in rules.iter().enumerate() {
            if !rule.applies_to(seed, index, miner) {
                continue;
            }
            match rule.kind {
                FaultKind::Refuse => faults.refuse = true,
                FaultKind::Drop => {
                    faults.drop_after = Some(rule.after.map_or(Duration::from_secs(30), |d| d.0))
                }
                FaultKind::Stall => faults.stall = true,
                FaultKind::Slow => {
                    faults.slow = Some(rule.delay.map_or(Duration::from_secs(2), |d| d.0))
                }
                FaultKind::Unavailable => {
                    faults.error = Some((Code::Unavailable, rule.probability))
                }
                FaultKind::ResourceExhausted => {
                    faults.error = Some((Code::ResourceExhausted, rule.probability))
                }
                FaultKind::Internal => faults.error = Some((Code::Internal, rule.probability)),
                FaultKind::ConnectionCap => faults.connection_cap = Some(rule.limit.unwrap_or(1)),
                FaultKind::ConnectionRate => faults.connection_rate = Some(rule.limit.unwrap_or(1)),
                FaultKind::Malformed => faults.malformed = true,
                FaultKind::Oversized => faults.oversized = true,
                FaultKind::AuthFail => faults.auth_fail = true,
                FaultKind::OldApi => faults.old_api = true,
            }
        }
        faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_fractions() {
        let rule = FaultRule::parse_flag("unavailable:0.25").unwrap();
        assert_eq!(rule.kind, FaultKind::Unavailable);
        let hit = (0..4000)
            .filter(|m| {
                MinerFaults::resolve(std::slice::from_ref(&rule), 9, *m)
                    .error
                    .is_some()
            })
            .count();
        assert!(
            (800..1200).contains(&hit),
            "{hit} of 4000 miners picked for 25%"
        );
        let err = FaultRule::parse_flag("unavailabel")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `unavailable`"), "{err}");
    }

    #[test]
    fn file_rules_with_miners_and_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.yaml");
        std::fs::write(
            &path,
            "faults:\n  - kind: slow\n    delay: 1s\n    miners: [2]\n",
        )
        .unwrap();
        let rules = load(&path).unwrap();
        assert_eq!(
            MinerFaults::resolve(&rules, 0, 2).slow,
            Some(Duration::from_secs(1))
        );
        assert_eq!(MinerFaults::resolve(&rules, 0, 1), MinerFaults::default());

        std::fs::write(&path, "faults:\n  - kind: slow\n    dealy: 1s\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.ends_with(":3:5: unknown field `dealy`; did you mean `delay`?"),
            "{err}"
        );
    }
}
