use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::units::{ByteSize, HumanDuration};

/// What the user writes under `type: kafka`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
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
    pub shutdown_timeout: HumanDuration,
    /// Any librdkafka producer property (`security.protocol`, `sasl.*`, `ssl.*`, ...),
    /// applied last, so it wins over the settings above.
    #[serde(default)]
    pub librdkafka: Properties,
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

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaEncoding {
    /// One JSON object per message, the same fields as the stdout sink's lines.
    #[default]
    Json,
    /// `rigtap.v1.Sample` from proto/rigtap/v1/sample.proto.
    Protobuf,
}

/// How many replicas must have a message before the broker acknowledges it.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Acks {
    /// Every in-sync replica: nothing acknowledged is lost with one broker.
    #[default]
    All,
    /// The partition leader only.
    Leader,
    /// No acknowledgement: delivery is not known, only attempted.
    None,
}

impl Acks {
    pub fn librdkafka_value(self) -> &'static str {
        match self {
            Acks::All => "all",
            Acks::Leader => "1",
            Acks::None => "0",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCompression {
    #[default]
    Zstd,
    Lz4,
    Snappy,
    Gzip,
    None,
}

impl KafkaCompression {
    pub fn librdkafka_value(self) -> &'static str {
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
pub struct KafkaBatch {
    pub max_messages: u32,
    pub max_bytes: ByteSize,
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
pub struct InFlightLimits {
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
pub struct Properties(pub BTreeMap<String, String>);

/// True for librdkafka properties whose values must never be printed.
pub fn is_secret(name: &str) -> bool {
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
