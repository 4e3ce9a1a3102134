//! What the user writes under `type: cgminer`: stock firmware (Antminer, Whatsminer,
//! Avalon) over the CGMiner-style API on TCP 4028.

use std::sync::LazyLock;
use std::time::Duration;

use serde::Deserialize;

use crate::fleet::backoff::BackoffConfig;
use crate::fleet::breaker::BreakerConfig;
use crate::fleet::record::RecordConfig;
use crate::fleet::targets::{Shard, Target, TargetError, TargetsConfig};
use crate::pipeline::component::DecodeContext;
use crate::toolkit::units::{ByteSize, HumanDuration, Rate, MAX_DURATION};
use crate::toolkit::yaml::decode::{from_node, within, DecodeError};
use crate::toolkit::yaml::node::{self, overlay, Node};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CgminerConfig {
    /// As for `bos`, with the API's port (4028) in each address.
    pub(crate) targets: TargetsConfig,
    #[serde(default)]
    pub(crate) shard: Option<Shard>,
    pub(crate) interval: HumanDuration,
    pub(crate) jitter: f64,
    /// Asked in turn each interval; one a firmware refuses is not asked again.
    pub(crate) commands: Vec<Command>,
    /// Ask every command at once (`summary+stats+pools`) where the firmware combines.
    pub(crate) combine: bool,
    /// Connect, ask and read the answer of one command within this.
    pub(crate) timeout: HumanDuration,
    /// New connections, fleet-wide: every command is one.
    pub(crate) connects: Rate,
    pub(crate) max_answer_size: ByteSize,
    pub(crate) backoff: BackoffConfig,
    pub(crate) breaker: BreakerConfig,
    pub(crate) batch_size: usize,
    /// Keep each poll's answers, as they came, for `rigtap sim --replay`.
    #[serde(default)]
    pub(crate) record: Option<RecordConfig>,
}

/// Every setting's default, as YAML laid under the user's (defaults.yaml).
static DEFAULTS: LazyLock<Node> = LazyLock::new(|| {
    node::parse(include_str!("defaults.yaml")).expect("defaults.yaml is valid YAML (tested)")
});

/// The commands of the CGMiner-style API rigtap reads.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Command {
    /// Hashrate, shares, uptime (Whatsminer: power, temperatures, fans too).
    Summary,
    /// Antminer: per-chain rates, chips, temperatures, fans; Avalon: the `MM ID` string.
    Stats,
    /// Avalon's name for `stats` on older firmware.
    Estats,
    /// Per-board figures (Whatsminer).
    Edevs,
    /// Per-board figures, cgminer's original name.
    Devs,
    /// Shares per pool, where the summary lacks them.
    Pools,
}

impl Command {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Command::Summary => "summary",
            Command::Stats => "stats",
            Command::Estats => "estats",
            Command::Edevs => "edevs",
            Command::Devs => "devs",
            Command::Pools => "pools",
        }
    }
}

/// Decodes a `cgminer` source and checks it; `targets.simulator: true` takes the
/// embedded fleet's stock miners from `context`.
pub fn decode(body: &Node, context: &DecodeContext) -> Result<CgminerConfig, DecodeError> {
    let mut config: CgminerConfig = from_node(&overlay(&DEFAULTS, body))?;
    if config.targets.simulator {
        let Some(fleet) = &context.embedded_fleet else {
            let targets = body.get("targets").unwrap_or(body);
            return Err(DecodeError::at_key(targets, "simulator", "`targets.simulator: true` needs a top-level `simulator:` section (e.g. `simulator: {miners: 20, stock: 0.5}`)".into()));
        };
        config.targets.embedded = Some(fleet.clone());
    }
    let at = |path: &[&str], message: String| Err(DecodeError::at_path(body, path, message));
    if !(0.0..=1.0).contains(&config.jitter) {
        return at(
            &["jitter"],
            format!(
                "`jitter` is a fraction of `interval` from 0 to 1, found {}",
                config.jitter
            ),
        );
    }
    if config.commands.is_empty() {
        return at(
            &["commands"],
            "`commands` names at least one of summary, stats, estats, edevs, devs, pools".into(),
        );
    }
    let shortest = HumanDuration(Duration::from_millis(1));
    for (path, value) in [
        (&["interval"][..], config.interval),
        (&["timeout"][..], config.timeout),
    ] {
        within(body, path, value, shortest, HumanDuration(MAX_DURATION))?;
    }
    within(
        body,
        &["max_answer_size"],
        config.max_answer_size,
        ByteSize(1 << 10),
        ByteSize(64 << 20),
    )?;
    within(body, &["batch_size"], config.batch_size, 1, 100_000)?;
    if let Some(record) = &config.record {
        record.check(body)?;
    }
    if let Err((key, message)) = config.backoff.check() {
        return at(&["backoff", key], message);
    }
    if let Err((key, message)) = config.breaker.check() {
        return at(&["breaker", key], message);
    }
    config
        .miners()
        .map_err(|e| DecodeError::at_key(body, "targets", e.to_string()))?;
    Ok(config)
}

impl CgminerConfig {
    /// This agent's miners: the targets whose inventory row (if it has an `api`
    /// column) says `cgminer`, then its shard of them.
    pub(crate) fn miners(&self) -> Result<Vec<Target>, TargetError> {
        let mut targets = self.targets.resolve_for("cgminer")?;
        if let Some(shard) = self.shard {
            targets.retain(|t| shard.owns(&t.id));
        }
        Ok(targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_yaml(yaml: &str) -> Result<CgminerConfig, DecodeError> {
        decode(&node::parse(yaml).unwrap(), &DecodeContext::default())
    }

    const MINIMAL: &str = "targets: {addresses: ['127.0.0.1:4028']}\n";

    #[test]
    fn defaults_fill_what_is_not_written_nested_fields_too() {
        let config = decode_yaml(&format!("{MINIMAL}backoff: {{initial: 100ms}}\n")).unwrap();
        assert_eq!(config.interval.0, Duration::from_secs(10));
        assert_eq!(
            config.commands,
            [
                Command::Summary,
                Command::Stats,
                Command::Edevs,
                Command::Pools
            ]
        );
        assert_eq!(config.backoff.initial.0, Duration::from_millis(100));
        assert_eq!(
            config.backoff.max.0,
            Duration::from_secs(120),
            "from the defaults"
        );
        assert!(!config.combine);
    }

    #[test]
    fn errors_point_at_the_users_line() {
        let e = decode_yaml(&format!("{MINIMAL}commands: [summary, statz]\n")).unwrap_err();
        assert_eq!(e.mark.unwrap().line, 2);
        assert!(e.message.contains("stats"), "{}", e.message);
        let e = decode_yaml(&format!("{MINIMAL}jitter: 3\n")).unwrap_err();
        assert!(e.message.contains("fraction"), "{}", e.message);
        let e = decode_yaml(&format!("{MINIMAL}timeout: 0s\n")).unwrap_err();
        assert!(e.message.contains("timeout"), "{}", e.message);
        let e = decode_yaml("targets: {simulator: true}\n").unwrap_err();
        assert!(e.message.contains("simulator:"), "{}", e.message);
    }
}
