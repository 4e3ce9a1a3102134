//! A sample as a Kafka message: topic and key from templates, payload as JSON or as
//! `rigtap.v1.Sample` protobuf.

use prost::Message as _;
use serde::Deserialize;

use crate::toolkit::proto::rigtap::v1 as pb;
use crate::toolkit::sample::{MinerState, Sample, SampleKind};
use crate::toolkit::template::{Labels, Template};

/// The `schema-version` header: the protobuf message the payload's fields follow, also
/// for JSON, whose field names are the same.
pub(crate) const SCHEMA_VERSION: &str = "rigtap.v1.Sample";

/// What a topic template writes for a label the sample does not have.
const MISSING_IN_TOPIC: &str = "unknown";

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaEncoding {
    /// One JSON object per message, the same fields as the stdout sink's lines.
    #[default]
    Json,
    /// `rigtap.v1.Sample` from proto/rigtap/v1/sample.proto.
    Protobuf,
}

/// A topic or key template that does not parse; `key` is the setting it came from.
#[derive(Debug, thiserror::Error)]
#[error("{key} {message}")]
pub struct TemplateError {
    pub key: &'static str,
    pub message: String,
}

pub struct Encoder {
    topic: Template,
    key: Template,
    encoding: KafkaEncoding,
}

/// One message, ready to hand to the producer.
#[derive(Debug, Default, PartialEq)]
pub struct Message {
    pub topic: String,
    pub key: String,
    pub payload: Vec<u8>,
    /// The sample's identity, `miner_id/timestamp_ms/kind/board` (`-` for no board):
    /// the `sample-id` header, what consumers deduplicate on after a redelivery.
    pub id: String,
}

impl Message {
    /// The bytes it holds while in flight.
    pub fn size(&self) -> usize {
        self.topic.len() + self.key.len() + self.payload.len() + self.id.len()
    }
}

/// The identity of `sample`: the same sample delivered twice has the same one.
pub(crate) fn sample_id(sample: &Sample, out: &mut String) {
    use std::fmt::Write;
    out.clear();
    let board = sample.board.map_or("-".to_string(), |b| b.to_string());
    let _ = write!(
        out,
        "{}/{}/{}/{board}",
        sample.miner_id,
        sample.timestamp.timestamp_millis(),
        sample.kind.as_str()
    );
}

impl Encoder {
    /// Checks both templates; any name other than a sample column is a label.
    pub fn new(topic: &str, key: &str, encoding: KafkaEncoding) -> Result<Self, TemplateError> {
        let parse = |key: &'static str, text: &str| {
            Template::parse(text, Labels::Any).map_err(|message| TemplateError { key, message })
        };
        Ok(Encoder {
            topic: parse("topic", topic)?,
            key: parse("key", key)?,
            encoding,
        })
    }

    pub fn content_type(&self) -> &'static str {
        match self.encoding {
            KafkaEncoding::Json => "application/json",
            KafkaEncoding::Protobuf => "application/x-protobuf",
        }
    }

    /// Fills `message` (reusing its buffers) with `sample`.
    pub fn encode(&self, sample: &Sample, message: &mut Message) {
        message.topic.clear();
        self.topic
            .render_into(sample, &mut message.topic, |out, value| {
                topic_safe(value.unwrap_or(MISSING_IN_TOPIC), out)
            });
        message.key.clear();
        self.key
            .render_into(sample, &mut message.key, |out, value| {
                out.push_str(value.unwrap_or(""))
            });
        sample_id(sample, &mut message.id);
        message.payload.clear();
        match self.encoding {
            // Writing to a Vec cannot fail, and a Sample always serializes.
            KafkaEncoding::Json => {
                let _ = serde_json::to_writer(&mut message.payload, sample);
            }
            KafkaEncoding::Protobuf => {
                let _ = to_proto(sample).encode(&mut message.payload);
            }
        }
    }
}

/// Kafka topic names are `[a-zA-Z0-9._-]`; anything else in a value becomes `_`.
fn topic_safe(value: &str, out: &mut String) {
    out.extend(value.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '_'
        }
    }));
}

pub(crate) fn to_proto(s: &Sample) -> pb::Sample {
    pb::Sample {
        timestamp_ms: s.timestamp.timestamp_millis(),
        kind: match s.kind {
            SampleKind::Miner => pb::Kind::Miner,
            SampleKind::Board => pb::Kind::Board,
            SampleKind::Status => pb::Kind::Status,
            SampleKind::Gap => pb::Kind::Gap,
        } as i32,
        miner_id: s.miner_id.to_string(),
        board: s.board,
        state: s.state.map(|state| {
            let state = match state {
                MinerState::Connecting => pb::MinerState::Connecting,
                MinerState::Online => pb::MinerState::Online,
                MinerState::Degraded => pb::MinerState::Degraded,
                MinerState::Offline => pb::MinerState::Offline,
                MinerState::AuthFailed => pb::MinerState::AuthFailed,
                MinerState::Unsupported => pb::MinerState::Unsupported,
            };
            state as i32
        }),
        code: s.code.map(|code| code.as_str().to_string()),
        message: s.message.clone(),
        miner_status: s.miner_status.clone(),
        hashrate_ths: s.hashrate_ths,
        hashrate_nominal_ths: s.hashrate_nominal_ths,
        power_w: s.power_w,
        efficiency_jth: s.efficiency_jth,
        temp_chip_c: s.temp_chip_c,
        temp_board_c: s.temp_board_c,
        temp_water_in_c: s.temp_water_in_c,
        temp_water_out_c: s.temp_water_out_c,
        gap_end_ms: s.gap_end.map(|t| t.timestamp_millis()),
        missed: s.missed,
        fan_rpm: s.fan_rpm,
        frequency_mhz: s.frequency_mhz,
        voltage_v: s.voltage_v,
        chips: s.chips,
        shares_accepted: s.shares_accepted,
        shares_rejected: s.shares_rejected,
        shares_stale: s.shares_stale,
        uptime_s: s.uptime_s,
        shares_accepted_delta: s.shares_accepted_delta,
        shares_rejected_delta: s.shares_rejected_delta,
        shares_stale_delta: s.shares_stale_delta,
        labels: s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    fn sample() -> Sample {
        let labels = Arc::new(BTreeMap::from([(
            "site".to_string(),
            "Site A/1".to_string(),
        )]));
        let mut s = Sample::new(SampleKind::Board, "m-7".into(), labels);
        s.board = Some(2);
        s.hashrate_ths = Some(80.5);
        s.shares_accepted = Some(u64::MAX);
        s
    }

    #[test]
    fn topic_and_key_from_templates() {
        let encoder = Encoder::new(
            "miners.{site}.{kind}.{rack}",
            "{miner_id}",
            KafkaEncoding::Json,
        )
        .unwrap();
        let mut message = Message::default();
        encoder.encode(&sample(), &mut message);
        assert_eq!(message.topic, "miners.Site_A_1.board.unknown");
        assert_eq!(message.key, "m-7");
        let json: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(json["miner_id"], "m-7");
        assert_eq!(json["site"], "Site A/1");
        assert_eq!(json["shares_accepted"], u64::MAX);
        assert!(Encoder::new("miners.{kind", "{miner_id}", KafkaEncoding::Json).is_err());
    }

    #[test]
    fn protobuf_round_trips_every_field_it_carries() {
        let encoder = Encoder::new("t", "{miner_id}", KafkaEncoding::Protobuf).unwrap();
        let mut message = Message::default();
        let mut s = sample();
        s.code = Some(crate::toolkit::sample::StatusCode::RateLimited);
        encoder.encode(&s, &mut message);
        let decoded = pb::Sample::decode(message.payload.as_slice()).unwrap();
        assert_eq!(decoded, to_proto(&s));
        assert_eq!(decoded.code.as_deref(), Some("rate_limited"));
        assert_eq!(decoded.kind(), pb::Kind::Board);
        assert_eq!(decoded.board, Some(2));
        assert_eq!(decoded.hashrate_ths, Some(80.5));
        assert_eq!(decoded.power_w, None);
        assert_eq!(decoded.shares_accepted, Some(u64::MAX));
        assert_eq!(decoded.labels["site"], "Site A/1");
        assert_eq!(decoded.timestamp_ms, s.timestamp.timestamp_millis());
    }
}
