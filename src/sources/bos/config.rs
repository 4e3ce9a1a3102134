//! What the user writes under `type: bos`, with `profile:` presets.
//!
//! A profile is YAML (profiles.yaml) laid under the user's settings before decoding,
//! so every field has one definition, the presets are readable as a file, and an
//! error in a field the user wrote still points at the user's line.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use serde::Deserialize;

use super::retry::RetryConfig;
use super::tls::TlsConfig;
use crate::fleet::backoff::BackoffConfig;
use crate::fleet::breaker::BreakerConfig;
use crate::fleet::record::RecordConfig;
use crate::fleet::targets::{Shard, Target, TargetError, TargetsConfig};
use crate::pipeline::component::DecodeContext;
use crate::toolkit::secret::Secret;
use crate::toolkit::units::{ByteSize, HumanDuration, Rate, MAX_DURATION};
use crate::toolkit::yaml::decode::{from_node, unknown_name, within, DecodeError};
use crate::toolkit::yaml::node::{self, overlay, Node, Value};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BosConfig {
    pub(crate) targets: TargetsConfig,
    #[serde(default)]
    pub(crate) shard: Option<Shard>,
    pub(crate) username: String,
    /// Usually `${BOS_PASSWORD}`; or `password_file` for a mounted secret.
    #[serde(default)]
    pub(crate) password: Option<Secret>,
    #[serde(default)]
    pub(crate) password_file: Option<PathBuf>,
    /// Present means TLS; without `ca_file` the system's roots are trusted.
    #[serde(default)]
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) interval: HumanDuration,
    pub(crate) jitter: f64,
    pub(crate) polls: Vec<Poll>,
    pub(crate) stream: bool,
    pub(crate) timeout: HumanDuration,
    pub(crate) connect_timeout: HumanDuration,
    pub(crate) stream_idle_timeout: HumanDuration,
    pub(crate) compression: Compression,
    /// The largest answer a miner may send; a larger one is a `bad_answer`.
    pub(crate) max_message_size: ByteSize,
    pub(crate) max_connections: usize,
    pub(crate) connection_ttl: HumanDuration,
    pub(crate) idle_timeout: HumanDuration,
    pub(crate) keepalive: KeepaliveConfig,
    pub(crate) rate: RateConfig,
    pub(crate) backoff: BackoffConfig,
    pub(crate) retry: RetryConfig,
    pub(crate) breaker: BreakerConfig,
    pub(crate) auth_retry: HumanDuration,
    pub(crate) batch_size: usize,
    /// Every poll's answers, kept for `rigtap sim --replay` (and bug reports).
    #[serde(default)]
    pub(crate) record: Option<RecordConfig>,
}

/// The unary calls polled every `interval`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Poll {
    /// MinerService.GetMinerDetails: uptime, model.
    Details,
    /// MinerService.GetMinerStats: hashrate, power, efficiency, shares.
    Stats,
    /// MinerService.GetHashboards: one `kind: board` sample per board.
    Hashboards,
    /// CoolingService.GetCoolingState: fans, hottest sensor.
    Cooling,
    /// PoolService.GetPoolGroups: shares of the active pools when stats lack them.
    Pools,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeepaliveConfig {
    pub interval: HumanDuration,
    pub timeout: HumanDuration,
    pub(crate) while_idle: bool,
}

/// The governors' rates.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateConfig {
    /// New connections, fleet-wide.
    pub connects: Rate,
    /// Calls, fleet-wide.
    pub rpcs: Rate,
    /// Calls to one miner.
    pub(crate) rpcs_per_miner: Rate,
}

/// The `rate` keys of the first version, which took whole numbers a second only; a
/// pipeline that still names them is read as if it named the new ones.
const OLD_RATE_KEYS: [(&str, &str); 3] = [
    ("connects_per_second", "connects"),
    ("rpcs_per_second", "rpcs"),
    ("rpcs_per_second_per_miner", "rpcs_per_miner"),
];

/// The user's `rate` section with its old key names replaced (marks kept, so an
/// error still points at the user's line); an old name beside its new one is an error.
fn renamed_rate_keys(rate: &Node) -> Result<Node, DecodeError> {
    let Value::Map(entries) = &rate.value else {
        return Ok(rate.clone());
    };
    let mut renamed = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let Some((old, new)) = OLD_RATE_KEYS
            .iter()
            .find(|(old, _)| key.as_str() == Some(old))
        else {
            renamed.push((key.clone(), value.clone()));
            continue;
        };
        if rate.get(new).is_some() {
            return Err(DecodeError::at_key(rate, old, format!(
                "`{old}` is the old name of `{new}`, which is also set: keep one (`{new}: 200/s` takes a rate per second, minute or hour)"
            )));
        }
        let key = Node {
            mark: key.mark,
            value: Value::Scalar {
                text: new.to_string(),
                plain: true,
            },
        };
        renamed.push((key, value.clone()));
    }
    Ok(Node {
        mark: rate.mark,
        value: Value::Map(renamed),
    })
}

pub(crate) const PROFILES: &[&str] = &["default", "development", "high_throughput"];

static PRESETS: LazyLock<Node> = LazyLock::new(|| {
    node::parse(include_str!("profiles.yaml")).expect("profiles.yaml is valid YAML (tested)")
});

/// Decodes a `bos` source: the user's settings over its profile over `default`.
/// `targets.simulator: true` takes its miners from `context`.
pub fn decode(body: &Node, context: &DecodeContext) -> Result<BosConfig, DecodeError> {
    let (profile, mark) = match body.get("profile") {
        None => ("default", body.mark),
        Some(node) => (node.as_str().unwrap_or_default(), node.mark),
    };
    let preset = PRESETS.get(profile).ok_or_else(|| DecodeError {
        mark: Some(mark),
        message: unknown_name("profile", profile, PROFILES),
        unknown_field: None,
    })?;
    let base = overlay(
        &PRESETS.get("default").cloned().unwrap_or_else(empty),
        preset,
    );
    let mut entries = Vec::with_capacity(body.entries().len());
    for (key, value) in body.entries() {
        match key.as_str() {
            Some("profile") => {}
            Some("rate") => entries.push((key.clone(), renamed_rate_keys(value)?)),
            _ => entries.push((key.clone(), value.clone())),
        }
    }
    let mine = Node {
        mark: body.mark,
        value: Value::Map(entries),
    };
    let mut config: BosConfig = from_node(&overlay(&base, &mine))?;
    if config.targets.simulator {
        let Some(fleet) = &context.embedded_fleet else {
            let targets = body.get("targets").unwrap_or(body);
            return Err(DecodeError::at_key(targets, "simulator", "`targets.simulator: true` needs a top-level `simulator:` section (e.g. `simulator: {miners: 20}`)".into()));
        };
        config.targets.embedded = Some(fleet.clone());
    }
    config.check(body)?;
    Ok(config)
}

fn empty() -> Node {
    Node {
        mark: Default::default(),
        value: Value::Map(Vec::new()),
    }
}

impl BosConfig {
    /// Rules that span fields, bounds, and the files the source will read; each
    /// error is at the key it is about and says what to change.
    fn check(&self, body: &Node) -> Result<(), DecodeError> {
        let at = |path: &[&str], message: String| Err(DecodeError::at_path(body, path, message));
        match (&self.password, &self.password_file) {
            (Some(_), None) => {}
            (None, Some(path)) => {
                if let Err(e) = Secret::from_file(path) {
                    return at(&["password_file"], e.to_string());
                }
            }
            _ => return at(&["password"], "set exactly one of `password` (e.g. `password: ${BOS_PASSWORD}`) or `password_file`".into()),
        }
        if let Some(tls) = &self.tls {
            if let Err((key, message)) = tls.check() {
                return at(&["tls", key], message);
            }
        }
        if let Some(shard) = self.shard {
            if shard.count == 0 || shard.index >= shard.count {
                return at(
                    &["shard"],
                    format!(
                        "`shard.index` must be below `shard.count` (0-based), found index {} of {}",
                        shard.index, shard.count
                    ),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return at(
                &["jitter"],
                format!(
                    "`jitter` is a fraction of `interval` from 0 to 1, found {}",
                    self.jitter
                ),
            );
        }
        // Every duration is a wait or a deadline: zero would spin, and the upper bound
        // is the longest rigtap takes. `idle_timeout: 0` means never (no timer runs).
        let durations: [(&[&str], HumanDuration); 14] = [
            (&["interval"], self.interval),
            (&["timeout"], self.timeout),
            (&["connect_timeout"], self.connect_timeout),
            (&["stream_idle_timeout"], self.stream_idle_timeout),
            (&["connection_ttl"], self.connection_ttl),
            (&["keepalive", "interval"], self.keepalive.interval),
            (&["keepalive", "timeout"], self.keepalive.timeout),
            (&["backoff", "initial"], self.backoff.initial),
            (&["backoff", "max"], self.backoff.max),
            (&["breaker", "open_for"], self.breaker.open_for),
            (&["breaker", "window"], self.breaker.window),
            (&["retry", "backoff", "initial"], self.retry.backoff.initial),
            (&["retry", "backoff", "max"], self.retry.backoff.max),
            (&["auth_retry"], self.auth_retry),
        ];
        let shortest = HumanDuration(Duration::from_millis(1));
        for (path, value) in durations {
            within(body, path, value, shortest, HumanDuration(MAX_DURATION))?;
        }
        within(
            body,
            &["idle_timeout"],
            self.idle_timeout,
            HumanDuration(Duration::ZERO),
            HumanDuration(MAX_DURATION),
        )?;
        let needed = self.polls.len() as f64 / self.interval.0.as_secs_f64();
        let per_miner = self.rate.rpcs_per_miner;
        if needed > per_miner.as_per_second() {
            return at(&["interval"], format!(
                "{} polls every {:?} need {needed:.1} calls a second per miner, above `rate.rpcs_per_miner` ({per_miner}); raise it, lengthen `interval`, or poll fewer calls",
                self.polls.len(), self.interval.0
            ));
        }
        within(
            body,
            &["max_message_size"],
            self.max_message_size,
            ByteSize(MIN_MESSAGE),
            ByteSize(MAX_MESSAGE),
        )?;
        if let Some(record) = &self.record {
            record.check(body)?;
        }
        if let Err((path, message)) = self.retry.check() {
            return at(&path, message);
        }
        if let Err((key, message)) = self.breaker.check() {
            return at(&["breaker", key], message);
        }
        for (key, value) in [
            ("max_connections", self.max_connections),
            ("batch_size", self.batch_size),
        ] {
            if value == 0 {
                return at(
                    &[key],
                    "`max_connections` and `batch_size` must be at least 1".into(),
                );
            }
        }
        within(
            body,
            &["max_connections"],
            self.max_connections,
            1,
            MAX_MINERS,
        )?;
        within(body, &["batch_size"], self.batch_size, 1, MAX_BATCH)?;
        if let Err((key, message)) = self.backoff.check() {
            return at(&["backoff", key], message);
        }
        // The targets are resolved now, so a missing inventory, a duplicate miner or a
        // range typo is a validate error, not a failed run.
        let miners = self
            .miners()
            .map_err(|e| DecodeError::at_key(body, "targets", e.to_string()))?;
        if miners.len() > MAX_MINERS {
            return at(&["targets"], format!("this source holds {} miners; one source collects at most {MAX_MINERS}: split the fleet with `shard` over several agents", miners.len()));
        }
        Ok(())
    }

    /// This agent's miners: the targets, then its shard of them.
    pub(crate) fn miners(&self) -> Result<Vec<Target>, TargetError> {
        let mut targets = self.targets.resolve_for("bos")?;
        if let Some(shard) = self.shard {
            targets.retain(|t| shard.owns(&t.id));
        }
        Ok(targets)
    }
}

/// The most miners one source (one agent's shard) may hold: far beyond what one
/// agent serves well (see the performance section of the README), short of what
/// exhausts memory and file descriptors at once. Split larger fleets with `shard`.
pub(crate) const MAX_MINERS: usize = 100_000;

/// The largest batch handed downstream.
const MAX_BATCH: usize = 100_000;

/// `max_message_size` bounds: every answer rigtap reads is larger than 1 KiB's worth
/// of limit would allow through (a hashboard list), and 1 GiB is beyond any miner.
const MIN_MESSAGE: u64 = 1 << 10;
const MAX_MESSAGE: u64 = 1 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_yaml(yaml: &str) -> Result<BosConfig, DecodeError> {
        decode(&node::parse(yaml).unwrap(), &DecodeContext::default())
    }

    const MINIMAL: &str =
        "targets: {addresses: ['127.0.0.1:50051']}\nusername: root\npassword: root\n";

    #[test]
    fn every_profile_decodes() {
        for profile in PROFILES {
            let config = decode_yaml(&format!("{MINIMAL}profile: {profile}\n"))
                .unwrap_or_else(|e| panic!("profile {profile}: {e}"));
            assert!(!config.polls.is_empty());
        }
    }

    #[test]
    fn explicit_fields_win_over_the_profile() {
        let config = decode_yaml(&format!(
            "{MINIMAL}profile: development\ninterval: 7s\nrate: {{rpcs: 42}}\n"
        ))
        .unwrap();
        assert_eq!(config.interval.0.as_secs(), 7);
        assert_eq!(config.rate.rpcs.as_per_second(), 42.0);
        assert_eq!(
            config.rate.connects.as_per_second(),
            50.0,
            "from development"
        );
        assert_eq!(
            config.rate.rpcs_per_miner.as_per_second(),
            10.0,
            "from default"
        );
        assert_eq!(config.timeout.0.as_secs(), 2, "from development");
    }

    #[test]
    fn rates_take_fractions_per_minute_and_the_old_names() {
        let config = decode_yaml(&format!(
            "{MINIMAL}interval: 1m\nrate: {{rpcs_per_miner: 30/min, rpcs: 0.5/s, connects_per_second: 7}}\n"
        ))
        .unwrap();
        assert_eq!(config.rate.rpcs_per_miner.as_per_second(), 0.5);
        assert_eq!(config.rate.rpcs.as_per_second(), 0.5);
        assert_eq!(
            config.rate.connects.as_per_second(),
            7.0,
            "the old name, read"
        );
        let e = decode_yaml(&format!(
            "{MINIMAL}rate: {{rpcs: 5/s, rpcs_per_second: 7}}\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("old name of `rpcs`"), "{}", e.message);
        let e = decode_yaml(&format!("{MINIMAL}rate: {{rpcs: 0/min}}\n")).unwrap_err();
        assert_eq!(e.mark.unwrap().line, 4);
        assert!(e.message.contains("above zero"), "{}", e.message);
    }

    #[test]
    fn idle_timeout_zero_means_never_and_other_zeros_are_refused() {
        let config = decode_yaml(&format!("{MINIMAL}idle_timeout: 0s\n")).unwrap();
        assert!(config.idle_timeout.0.is_zero());
        let e = decode_yaml(&format!("{MINIMAL}timeout: 0s\n")).unwrap_err();
        assert!(e.message.contains("timeout"), "{}", e.message);
    }

    #[test]
    fn retry_message_size_and_breaker_are_checked_at_their_keys() {
        let config = decode_yaml(MINIMAL).unwrap();
        assert_eq!(config.retry.attempts, 3);
        assert_eq!(config.max_message_size.0, 4 << 20);
        let e =
            decode_yaml(&format!("{MINIMAL}retry: {{codes: [deadline_exceeded]}}\n")).unwrap_err();
        assert_eq!(e.mark.unwrap().line, 4);
        assert!(e.message.contains("lengthen `timeout`"), "{}", e.message);
        let e = decode_yaml(&format!("{MINIMAL}retry: {{codes: [unavalable]}}\n")).unwrap_err();
        assert!(e.message.contains("unavailable"), "{}", e.message);
        let e = decode_yaml(&format!("{MINIMAL}max_message_size: 2GiB\n")).unwrap_err();
        assert!(e.message.contains("max_message_size"), "{}", e.message);
        let e = decode_yaml(&format!("{MINIMAL}breaker: {{failure_rate: 2}}\n")).unwrap_err();
        assert_eq!(e.mark.unwrap().line, 4);
        assert!(e.message.contains("at most 1"), "{}", e.message);
    }

    #[test]
    fn errors_point_at_the_users_line() {
        let e = decode_yaml(&format!("{MINIMAL}profile: fast\n")).unwrap_err();
        assert_eq!(e.mark.unwrap().line, 4);
        assert!(
            e.message
                .contains("expected one of: default, development, high_throughput"),
            "{}",
            e.message
        );

        let e = decode_yaml(&format!("{MINIMAL}intervall: 5s\n")).unwrap_err();
        assert_eq!(e.mark.unwrap().line, 4);
        assert!(
            e.message.contains("did you mean `interval`"),
            "{}",
            e.message
        );

        let e = decode_yaml(&format!("{MINIMAL}backoff: {{initial: soon}}\n")).unwrap_err();
        assert_eq!(e.mark.unwrap().line, 4);
        assert!(e.message.contains("not a duration"), "{}", e.message);
    }

    #[test]
    fn polls_must_fit_the_per_miner_budget() {
        let e = decode_yaml(&format!("{MINIMAL}interval: 100ms\n")).unwrap_err();
        assert!(
            e.message
                .contains("50.0 calls a second per miner, above `rate.rpcs_per_miner` (10/s)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn credentials_are_required_and_never_shown() {
        let e =
            decode_yaml("targets: {addresses: ['127.0.0.1:50051']}\nusername: root\n").unwrap_err();
        assert!(
            e.message.contains("exactly one of `password`"),
            "{}",
            e.message
        );
        let config = decode_yaml(MINIMAL).unwrap();
        assert!(!format!("{config:?}").contains("password: Some(Secret(\"root\"))"));
        assert!(format!("{config:?}").contains("Secret(***)"));
    }
}
