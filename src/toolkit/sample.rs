//! The `Sample`: the one record every stage speaks, and its Arrow schema.
//!
//! One row per miner per observation, flat and typed, so a Kafka JSON message and a
//! Parquet row have the same shape. Units are canonical once `normalise` has run:
//! hashrate TH/s, power W, efficiency J/TH, temperatures °C, fans RPM, UTC timestamps
//! with millisecond precision. Inventory labels travel as extra columns; their names
//! are declared in the pipeline so the schema is fixed before the first file is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

/// Label name → value, shared by every sample of one miner.
pub(crate) type Labels = Arc<BTreeMap<String, String>>;

/// What a sample describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleKind {
    /// Whole-miner telemetry.
    Miner,
    /// One hashboard's telemetry; `board` says which.
    Board,
    /// A change of the collector's view of a miner (`state`), so gaps are facts.
    Status,
    /// Polls that were due and brought nothing, from `timestamp` to `gap_end`:
    /// `missed` of them, and why (`code`, `message`).
    Gap,
}

impl SampleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SampleKind::Miner => "miner",
            SampleKind::Board => "board",
            SampleKind::Status => "status",
            SampleKind::Gap => "gap",
        }
    }
}

/// The collector's view of a miner, carried by `kind: status` samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MinerState {
    Connecting,
    Online,
    Degraded,
    Offline,
    AuthFailed,
    Unsupported,
}

impl MinerState {
    /// How many states there are, for tables indexed by [`MinerState::index`].
    pub(crate) const COUNT: usize = 6;

    /// Every state, in [`MinerState::index`] order.
    pub(crate) const ALL: [MinerState; MinerState::COUNT] = [
        MinerState::Connecting,
        MinerState::Online,
        MinerState::Degraded,
        MinerState::Offline,
        MinerState::AuthFailed,
        MinerState::Unsupported,
    ];

    /// A dense index in declaration order, for per-state tables.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MinerState::Connecting => "connecting",
            MinerState::Online => "online",
            MinerState::Degraded => "degraded",
            MinerState::Offline => "offline",
            MinerState::AuthFailed => "auth_failed",
            MinerState::Unsupported => "unsupported",
        }
    }
}

/// Why a miner is in its state, as a stable code a dashboard or an alert can group on;
/// carried by `kind: status` samples beside the words of `message`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusCode {
    /// Online: streaming and polling.
    Ok,
    /// A first connection is being made.
    Connecting,
    /// Refused, reset, no route, or the connection was lost.
    Unreachable,
    /// No answer within `connect_timeout`, `timeout`, the keepalive or the stream's
    /// idle timeout.
    Timeout,
    /// The login was refused, or a call was not allowed.
    AuthFailed,
    /// The TLS handshake failed (see the message for which part).
    TlsFailed,
    /// Firmware too old for the API, or without the call.
    UnsupportedFirmware,
    /// The miner said it is busy (RESOURCE_EXHAUSTED).
    RateLimited,
    /// An answer rigtap cannot read: above `max_message_size`, or malformed.
    BadAnswer,
    /// The miner answers, and reports it is not mining normally.
    NotMining,
    /// The breaker opened on the share of calls that failed within its window.
    BreakerOpen,
    /// Any other error the miner answered with.
    MinerError,
    /// Gaps only: the poll was not made, the pipeline being full (backpressure).
    Skipped,
    /// Gaps only: the poll was not made, the polls before it having taken longer than
    /// the interval.
    Late,
}

impl StatusCode {
    pub const ALL: [StatusCode; 14] = [
        StatusCode::Ok,
        StatusCode::Connecting,
        StatusCode::Unreachable,
        StatusCode::Timeout,
        StatusCode::AuthFailed,
        StatusCode::TlsFailed,
        StatusCode::UnsupportedFirmware,
        StatusCode::RateLimited,
        StatusCode::BadAnswer,
        StatusCode::NotMining,
        StatusCode::BreakerOpen,
        StatusCode::MinerError,
        StatusCode::Skipped,
        StatusCode::Late,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Ok => "ok",
            StatusCode::Connecting => "connecting",
            StatusCode::Unreachable => "unreachable",
            StatusCode::Timeout => "timeout",
            StatusCode::AuthFailed => "auth_failed",
            StatusCode::TlsFailed => "tls_failed",
            StatusCode::UnsupportedFirmware => "unsupported_firmware",
            StatusCode::RateLimited => "rate_limited",
            StatusCode::BadAnswer => "bad_answer",
            StatusCode::NotMining => "not_mining",
            StatusCode::BreakerOpen => "breaker_open",
            StatusCode::MinerError => "miner_error",
            StatusCode::Skipped => "skipped",
            StatusCode::Late => "late",
        }
    }
}

/// One observation of one miner (or one of its boards, or a change of its state).
///
/// Every measurement is optional: miners omit what they do not know, and "absent"
/// must stay distinguishable from zero.
///
/// Its JSON (one line of the stdout sink, a Kafka JSON payload) reads back into the
/// same sample: a disk buffer keeps samples that way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    #[serde(serialize_with = "serialize_timestamp")]
    pub timestamp: DateTime<Utc>,
    pub kind: SampleKind,
    pub miner_id: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub board: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<MinerState>,
    /// Why the miner is in `state`, as a stable code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<StatusCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miner_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashrate_ths: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashrate_nominal_ths: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_w: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub efficiency_jth: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_chip_c: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) temp_board_c: Option<f64>,
    /// Hydro miners: the coolest water inlet (of a board, or of all boards).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_water_in_c: Option<f64>,
    /// Hydro miners: the warmest water outlet (of a board, or of all boards).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_water_out_c: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fan_rpm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_mhz: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) voltage_v: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chips: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares_accepted: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shares_rejected: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shares_stale: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uptime_s: Option<u64>,
    /// Shares since the miner's previous sample (set by `normalise`; after a counter
    /// reset, the shares since the reset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shares_accepted_delta: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shares_rejected_delta: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shares_stale_delta: Option<u64>,
    /// `kind: gap`: where the gap ends (it starts at `timestamp`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_optional_timestamp"
    )]
    pub gap_end: Option<DateTime<Utc>>,
    /// `kind: gap`: the polls due in it that brought nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed: Option<u32>,
    #[serde(flatten)]
    pub labels: Labels,
}

fn serialize_timestamp<S: serde::Serializer>(
    ts: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"))
}

fn serialize_optional_timestamp<S: serde::Serializer>(
    ts: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => serialize_timestamp(ts, serializer),
        None => serializer.serialize_none(),
    }
}

impl Sample {
    /// An empty sample of `kind` for `miner_id`, stamped now (to the millisecond).
    pub fn new(kind: SampleKind, miner_id: Arc<str>, labels: Labels) -> Self {
        Sample {
            timestamp: Utc::now().trunc_subsecs(3),
            kind,
            miner_id,
            board: None,
            state: None,
            code: None,
            message: None,
            miner_status: None,
            hashrate_ths: None,
            hashrate_nominal_ths: None,
            power_w: None,
            efficiency_jth: None,
            temp_chip_c: None,
            temp_board_c: None,
            temp_water_in_c: None,
            temp_water_out_c: None,
            fan_rpm: None,
            frequency_mhz: None,
            voltage_v: None,
            chips: None,
            shares_accepted: None,
            shares_rejected: None,
            shares_stale: None,
            uptime_s: None,
            shares_accepted_delta: None,
            shares_rejected_delta: None,
            shares_stale_delta: None,
            gap_end: None,
            missed: None,
            labels,
        }
    }

    /// What this sample costs in memory, for the byte-based queue budget. Labels are
    /// shared per miner, so only their pointer is counted.
    pub(crate) fn estimated_bytes(&self) -> usize {
        std::mem::size_of::<Sample>()
            + self.miner_id.len()
            + self.message.as_ref().map_or(0, String::len)
            + self.miner_status.as_ref().map_or(0, String::len)
    }
}

/// Appends one JSON object per sample, each on its own line: the shape of the stdout
/// sink's lines, the Kafka sink's JSON payloads and the tap.
pub(crate) fn write_json_lines(samples: &[Sample], out: &mut Vec<u8>) {
    for sample in samples {
        // Writing to a Vec cannot fail, and a Sample always serializes.
        let _ = serde_json::to_writer(&mut *out, sample);
        out.push(b'\n');
    }
}

/// Reads a numeric column by name: the vocabulary of conditions and templates.
pub(crate) type NumberField = fn(&Sample) -> Option<f64>;
/// Reads a text column by name.
pub(crate) type TextField = fn(&Sample) -> Option<&str>;

/// The accessor of a numeric column, if `name` is one.
pub(crate) fn number_field(name: &str) -> Option<NumberField> {
    Some(match name {
        "board" => |s| s.board.map(f64::from),
        "hashrate_ths" => |s| s.hashrate_ths,
        "hashrate_nominal_ths" => |s| s.hashrate_nominal_ths,
        "power_w" => |s| s.power_w,
        "efficiency_jth" => |s| s.efficiency_jth,
        "temp_chip_c" => |s| s.temp_chip_c,
        "temp_board_c" => |s| s.temp_board_c,
        "temp_water_in_c" => |s| s.temp_water_in_c,
        "temp_water_out_c" => |s| s.temp_water_out_c,
        "fan_rpm" => |s| s.fan_rpm,
        "frequency_mhz" => |s| s.frequency_mhz,
        "voltage_v" => |s| s.voltage_v,
        "chips" => |s| s.chips.map(f64::from),
        "shares_accepted" => |s| s.shares_accepted.map(|v| v as f64),
        "shares_rejected" => |s| s.shares_rejected.map(|v| v as f64),
        "shares_stale" => |s| s.shares_stale.map(|v| v as f64),
        "uptime_s" => |s| s.uptime_s.map(|v| v as f64),
        "shares_accepted_delta" => |s| s.shares_accepted_delta.map(|v| v as f64),
        "shares_rejected_delta" => |s| s.shares_rejected_delta.map(|v| v as f64),
        "shares_stale_delta" => |s| s.shares_stale_delta.map(|v| v as f64),
        "missed" => |s| s.missed.map(f64::from),
        "gap_end" => |s| s.gap_end.map(|t| t.timestamp_millis() as f64),
        _ => return None,
    })
}

/// Writes a floating-point measurement.
pub(crate) type FloatFieldMut = fn(&mut Sample) -> &mut Option<f64>;

/// The floating-point measurements, by name, for checks that may clear a value.
pub(crate) fn float_field_mut(name: &str) -> Option<FloatFieldMut> {
    Some(match name {
        "hashrate_ths" => |s| &mut s.hashrate_ths,
        "hashrate_nominal_ths" => |s| &mut s.hashrate_nominal_ths,
        "power_w" => |s| &mut s.power_w,
        "efficiency_jth" => |s| &mut s.efficiency_jth,
        "temp_chip_c" => |s| &mut s.temp_chip_c,
        "temp_board_c" => |s| &mut s.temp_board_c,
        "temp_water_in_c" => |s| &mut s.temp_water_in_c,
        "temp_water_out_c" => |s| &mut s.temp_water_out_c,
        "fan_rpm" => |s| &mut s.fan_rpm,
        "frequency_mhz" => |s| &mut s.frequency_mhz,
        "voltage_v" => |s| &mut s.voltage_v,
        _ => return None,
    })
}

/// The accessor of a fixed text column, if `name` is one.
pub(crate) fn text_field(name: &str) -> Option<TextField> {
    Some(match name {
        "kind" => |s| Some(s.kind.as_str()),
        "miner_id" => |s| Some(&s.miner_id),
        "state" => |s| s.state.map(MinerState::as_str),
        "code" => |s| s.code.map(StatusCode::as_str),
        "message" => |s| s.message.as_deref(),
        "miner_status" => |s| s.miner_status.as_deref(),
        _ => return None,
    })
}

/// The names of the fixed columns, in schema order. Label names must not collide.
pub(crate) const FIXED_COLUMNS: [&str; 29] = [
    "timestamp",
    "kind",
    "miner_id",
    "board",
    "state",
    "code",
    "message",
    "miner_status",
    "hashrate_ths",
    "hashrate_nominal_ths",
    "power_w",
    "efficiency_jth",
    "temp_chip_c",
    "temp_board_c",
    "temp_water_in_c",
    "temp_water_out_c",
    "fan_rpm",
    "frequency_mhz",
    "voltage_v",
    "chips",
    "shares_accepted",
    "shares_rejected",
    "shares_stale",
    "uptime_s",
    "shares_accepted_delta",
    "shares_rejected_delta",
    "shares_stale_delta",
    "gap_end",
    "missed",
];

/// The Arrow schema of a sample stream whose declared labels are `labels`: the fixed
/// columns, then one dictionary-encoded string column per label (in the given order).
pub(crate) fn arrow_schema(labels: &[String]) -> Schema {
    let dict = || DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let f64_col = |name: &str| Field::new(name, DataType::Float64, true);
    let u64_col = |name: &str| Field::new(name, DataType::UInt64, true);
    let mut fields = vec![
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("kind", dict(), false),
        Field::new("miner_id", dict(), false),
        Field::new("board", DataType::UInt32, true),
        Field::new("state", dict(), true),
        Field::new("code", dict(), true),
        Field::new("message", DataType::Utf8, true),
        Field::new("miner_status", dict(), true),
        f64_col("hashrate_ths"),
        f64_col("hashrate_nominal_ths"),
        f64_col("power_w"),
        f64_col("efficiency_jth"),
        f64_col("temp_chip_c"),
        f64_col("temp_board_c"),
        f64_col("temp_water_in_c"),
        f64_col("temp_water_out_c"),
        f64_col("fan_rpm"),
        f64_col("frequency_mhz"),
        f64_col("voltage_v"),
        Field::new("chips", DataType::UInt32, true),
        u64_col("shares_accepted"),
        u64_col("shares_rejected"),
        u64_col("shares_stale"),
        u64_col("uptime_s"),
        u64_col("shares_accepted_delta"),
        u64_col("shares_rejected_delta"),
        u64_col("shares_stale_delta"),
        Field::new(
            "gap_end",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("missed", DataType::UInt32, true),
    ];
    fields.extend(labels.iter().map(|name| Field::new(name, dict(), true)));
    Schema::new(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_flat_with_labels_and_ms_timestamps() {
        let labels: Labels = Arc::new([("site".to_string(), "north".to_string())].into());
        let mut s = Sample::new(SampleKind::Miner, "m-1".into(), labels);
        s.timestamp = DateTime::from_timestamp_millis(1_763_820_000_123).unwrap();
        s.hashrate_ths = Some(247.5);
        let json: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(json["timestamp"], "2025-11-22T14:00:00.123Z");
        assert_eq!(json["kind"], "miner");
        assert_eq!(json["site"], "north");
        assert_eq!(json["hashrate_ths"], 247.5);
        assert!(json.get("power_w").is_none(), "absent stays absent");
    }

    #[test]
    fn json_reads_back_into_the_same_sample() {
        let labels: Labels = Arc::new([("site".to_string(), "north".to_string())].into());
        let mut s = Sample::new(SampleKind::Gap, "m-1".into(), labels);
        s.board = Some(2);
        s.state = Some(MinerState::AuthFailed);
        s.code = Some(StatusCode::BreakerOpen);
        s.message = Some("a \"quoted\" reason\n".into());
        s.hashrate_ths = Some(43.715180000000004);
        s.temp_board_c = Some(-0.0);
        s.shares_stale_delta = Some(u64::MAX);
        s.gap_end = Some(s.timestamp + chrono::Duration::milliseconds(61_001));
        s.missed = Some(7);
        let json = serde_json::to_vec(&s).unwrap();
        let back: Sample = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.labels["site"], "north");
    }

    #[test]
    fn state_indexes_fill_their_table() {
        assert_eq!(MinerState::Connecting.index(), 0);
        assert_eq!(MinerState::Unsupported.index() + 1, MinerState::COUNT);
    }

    #[test]
    fn every_fixed_column_but_the_timestamp_has_an_accessor() {
        for name in &FIXED_COLUMNS[1..] {
            assert!(
                number_field(name).is_some() ^ text_field(name).is_some(),
                "{name} needs exactly one accessor"
            );
        }
    }

    #[test]
    fn schema_matches_fixed_columns_and_labels() {
        let schema = arrow_schema(&["site".into(), "rack".into()]);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(&names[..FIXED_COLUMNS.len()], &FIXED_COLUMNS);
        assert_eq!(&names[FIXED_COLUMNS.len()..], &["site", "rack"]);
    }
}
