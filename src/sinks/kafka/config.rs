//! What the user writes under `type: kafka`, the librdkafka properties it becomes,
//! and the checks `validate` runs on both.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use serde::{Deserialize, Deserializer};

use super::encoder::{Encoder, KafkaEncoding};
use crate::toolkit::units::{ByteSize, HumanDuration};
use crate::toolkit::yaml::decode::{from_node, within, DecodeError};
use crate::toolkit::yaml::node::Node;

/// What the user writes under `type: kafka`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KafkaConfig {
    /// Bootstrap brokers, `host:port`.
    #[serde(deserialize_with = "one_or_many")]
    pub brokers: Vec<String>,
    /// A template over sample fields and labels, e.g. `miners.{site}.{kind}`.
    pub topic: String,
    /// The message key template. The default keeps each miner's samples in one
    /// partition, in order.
    #[serde(default = "default_key")]
    pub key: String,
    #[serde(default)]
    pub encoding: KafkaEncoding,
    /// The `agent-id` header; the host name when not set.
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub acks: Acks,
    /// Exactly-once delivery per partition across the producer's own retries.
    #[serde(default = "yes")]
    pub idempotence: bool,
    #[serde(default)]
    pub compression: KafkaCompression,
    #[serde(default)]
    pub batch: KafkaBatch,
    #[serde(default)]
    pub max_in_flight: InFlightLimits,
    /// How long shutdown waits for outstanding deliveries before it reports them lost.
    #[serde(default = "default_shutdown_timeout")]
    pub(crate) shutdown_timeout: HumanDuration,
    /// Any librdkafka producer property (`security.protocol`, `sasl.*`, `ssl.*`, ...),
    /// applied last, so it wins over the settings above.
    #[serde(default)]
    pub librdkafka: Properties,
}

/// librdkafka's own upper bounds for its local queue.
const MAX_QUEUE_MESSAGES: usize = 2_147_483_647;
const MAX_QUEUE_KBYTES: u64 = 2_147_483_647;

impl KafkaConfig {
    /// The properties rigtap sets, then the user's `librdkafka:` map over them.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let config = self;
        let mut client = rigtap_properties(config);
        for (name, value) in &config.librdkafka.0 {
            client.set(name, value);
        }
        client
    }
}

/// The properties rigtap sets itself, before the user's `librdkafka:` map.
fn rigtap_properties(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    let in_flight = &config.max_in_flight;
    client
        .set("bootstrap.servers", config.brokers.join(","))
        .set("acks", config.acks.librdkafka_value())
        .set("enable.idempotence", config.idempotence.to_string())
        .set("compression.type", config.compression.librdkafka_value())
        .set("batch.num.messages", config.batch.max_messages.to_string())
        .set(
            "batch.size",
            config.batch.max_bytes.0.min(i32::MAX as u64).to_string(),
        )
        .set("linger.ms", config.batch.linger.0.as_millis().to_string())
        // Never expire a message: the sink bounds what is in flight, backpressures the
        // pipeline while the broker is away, and `shutdown_timeout` bounds the wait at
        // the end. An expired message would be a loss the broker never saw.
        .set("message.timeout.ms", "0")
        // The same partition for a key as the Java client (and kafka-python) choose.
        .set("partitioner", "murmur2_random")
        // librdkafka's own queue must hold at least what the sink lets be in flight,
        // with room for its per-message overhead (headers), so it never refuses a send.
        .set(
            "queue.buffering.max.messages",
            in_flight
                .messages
                .saturating_mul(2)
                .min(MAX_QUEUE_MESSAGES)
                .to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            (in_flight.bytes.0 / 1024 * 2 + 1024)
                .min(MAX_QUEUE_KBYTES)
                .to_string(),
        )
        .set_log_level(RDKafkaLogLevel::Warning);
    client
}

/// Decodes a `kafka` sink and checks its templates and producer settings, each
/// problem at the key it is about.
pub(super) fn decode(body: &Node) -> Result<KafkaConfig, DecodeError> {
    let config: KafkaConfig = from_node(body)?;
    let at = |key: &str, message: String| DecodeError::at_key(body, key, message);
    Encoder::new(&config.topic, &config.key, config.encoding)
        .map_err(|e| at(e.key, e.to_string()))?;
    if config.max_in_flight.messages == 0 || config.max_in_flight.bytes.0 == 0 {
        return Err(at(
            "max_in_flight",
            "`max_in_flight` bounds must be at least 1".into(),
        ));
    }
    // librdkafka's own queue is sized at twice these, and holds at most 2^31 messages.
    let in_flight = &config.max_in_flight;
    within(
        body,
        &["max_in_flight", "messages"],
        in_flight.messages,
        1,
        100_000_000,
    )?;
    within(
        body,
        &["max_in_flight", "bytes"],
        in_flight.bytes,
        ByteSize(1),
        ByteSize(1 << 40),
    )?;
    if config.idempotence && config.acks != Acks::All {
        return Err(at("acks", "`idempotence: true` needs `acks: all`; set `acks: all`, or `idempotence: false` to accept duplicates and losses on broker failover".into()));
    }
    if config.brokers.iter().all(|b| b.trim().is_empty()) {
        return Err(at(
            "brokers",
            "`brokers` is empty; list at least one `host:port`".into(),
        ));
    }
    check_properties(&config, body)?;
    Ok(config)
}

/// Asks librdkafka's own checker (which starts no client) about rigtap's properties,
/// then about each of the user's on top of them, so a refusal points at the property
/// that caused it; the value of a secret property is never repeated.
fn check_properties(config: &KafkaConfig, body: &Node) -> Result<(), DecodeError> {
    let refused = |mark, message: String| {
        DecodeError {
        mark: Some(mark),
        message: format!("librdkafka refused the producer settings: {message}; see https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md"),
        unknown_field: None,
    }
    };
    rigtap_properties(config)
        .create_native_config()
        .map_err(|e| refused(body.mark, e.to_string()))?;
    let map = body.get("librdkafka");
    for (name, value) in &config.librdkafka.0 {
        let mut client = rigtap_properties(config);
        client.set(name, value);
        if let Err(e) = client.create_native_config() {
            let message = redact(config, e.to_string());
            let mark = map
                .and_then(|m| m.entries().iter().find(|(k, _)| k.as_str() == Some(name)))
                .map_or(body.mark, |(k, _)| k.mark);
            return Err(refused(mark, message));
        }
    }
    config
        .client_config()
        .create_native_config()
        .map(drop)
        .map_err(|e| {
            refused(
                map.map_or(body.mark, |m| m.mark),
                redact(config, e.to_string()),
            )
        })
}

/// `message` with the value of every secret property replaced by `***`.
fn redact(config: &KafkaConfig, mut message: String) -> String {
    for (name, value) in &config.librdkafka.0 {
        if is_secret(name) && !value.is_empty() {
            message = message.replace(value.as_str(), "***");
        }
    }
    message
}

fn default_key() -> String {
    "{miner_id}".into()
}

fn yes() -> bool {
    true
}

fn default_shutdown_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(text) => text.split(',').map(|b| b.trim().to_string()).collect(),
        OneOrMany::Many(list) => list,
    })
}

/// How many replicas must have a message before the broker acknowledges it.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Acks {
    /// Every in-sync replica: nothing acknowledged is lost with one broker.
    #[default]
    All,
    /// The partition leader only.
    Leader,
    /// No acknowledgement: delivery is not known, only attempted.
    None,
}

impl Acks {
    pub(crate) fn librdkafka_value(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KafkaCompression {
    #[default]
    Zstd,
    Lz4,
    Snappy,
    Gzip,
    None,
}

impl KafkaCompression {
    pub(crate) fn librdkafka_value(self) -> &'static str {
        match self {
            KafkaCompression::Zstd => "zstd",
            KafkaCompression::Lz4 => "lz4",
            KafkaCompression::Snappy => "snappy",
            KafkaCompression::Gzip => "gzip",
            KafkaCompression::None => "none",
        }
    }
}

/// How the producer groups messages into requests.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct KafkaBatch {
    pub max_messages: u32,
    pub(crate) max_bytes: ByteSize,
    /// How long a message may wait for others to fill its batch.
    pub linger: HumanDuration,
}

impl Default for KafkaBatch {
    fn default() -> Self {
        KafkaBatch {
            max_messages: 10_000,
            max_bytes: ByteSize(1 << 20),
            linger: HumanDuration(Duration::from_millis(50)),
        }
    }
}

/// What the sink may have sent and not yet seen acknowledged. When either bound is
/// reached it stops taking samples, so a slow or absent broker holds the pipeline back
/// instead of growing memory.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct InFlightLimits {
    pub messages: usize,
    pub bytes: ByteSize,
}

impl Default for InFlightLimits {
    fn default() -> Self {
        InFlightLimits {
            messages: 100_000,
            bytes: ByteSize(64 << 20),
        }
    }
}

/// librdkafka properties. Values of properties that hold secrets (passwords, keys,
/// tokens) print as `***`.
#[derive(Clone, Default, Deserialize, PartialEq)]
pub(crate) struct Properties(pub BTreeMap<String, String>);

/// True for librdkafka properties whose values must never be printed.
pub(super) fn is_secret(name: &str) -> bool {
    [
        "password",
        "secret",
        "pem",
        "token",
        "jaas",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|word| name.contains(word))
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in &self.0 {
            if is_secret(name) {
                map.entry(name, &"***");
            } else {
                map.entry(name, value);
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_properties_print_as_stars() {
        let properties = Properties(BTreeMap::from([
            ("sasl.password".to_string(), "hunter2".to_string()),
            ("ssl.key.pem".to_string(), "-----BEGIN".to_string()),
            ("sasl.username".to_string(), "rigtap".to_string()),
        ]));
        let printed = format!("{properties:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("BEGIN"),
            "{printed}"
        );
        assert!(
            printed.contains("\"sasl.username\": \"rigtap\""),
            "{printed}"
        );
        assert!(printed.contains("\"sasl.password\": \"***\""), "{printed}");
    }
}
