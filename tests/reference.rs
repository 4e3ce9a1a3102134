//! rigtap's miner API against Braiins' published one (braiins/bos-plus-api 1.11.0):
//! answers encoded by an independent encoder (Python's protobuf runtime, with messages
//! built from the reference's facts in tests/data) decode into the values sent. The
//! declarations themselves are compared in src/toolkit/proto.rs.

mod support;

use prost::Message;
use rigtap::toolkit::proto::bos::v1::GetMinerDetailsResponse;
use support::python::run_script;

const FACTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/bos-plus-api-1.11.0.facts"
);

#[test]
fn details_from_a_reference_encoder_decode_with_the_deprecated_uptime() {
    // Field 8, deprecated and uint64 in the reference, was a string here: every
    // GetMinerDetails of a miner still filling it failed to decode.
    let values = serde_json::json!({
        "uid": "YZ-0042",
        "hostname": "rig-42",
        "mac_address": "02:42:ac:11:00:2a",
        "system_uptime": 1_099_511_627_783u64,
        "bosminer_uptime_s": 3600,
        "system_uptime_s": 86_400,
        "serial_number": "SN123",
    });
    let hex = run_script(
        "encode_reference.py",
        &[
            FACTS,
            ".braiins.bos.v1.GetMinerDetailsResponse",
            &values.to_string(),
        ],
    );
    let hex = String::from_utf8(hex).unwrap();
    let bytes: Vec<u8> = (0..hex.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let details = GetMinerDetailsResponse::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(details.uid, "YZ-0042");
    assert_eq!(details.hostname, "rig-42");
    assert_eq!(details.mac_address, "02:42:ac:11:00:2a");
    #[allow(deprecated)]
    let uptime = details.system_uptime;
    assert_eq!(uptime, 1_099_511_627_783);
    assert_eq!(details.bosminer_uptime_s, 3600);
    assert_eq!(details.system_uptime_s, 86_400);
    assert_eq!(details.serial_number.as_deref(), Some("SN123"));
}
