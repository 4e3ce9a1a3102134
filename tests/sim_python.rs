//! The wire format proven by a client written by someone else: Python grpcio, with
//! stubs generated at test time from proto/, against the simulator on loopback.

mod support;

use std::time::Duration;

use rigtap::sim::telemetry::model_of;
use rigtap::sim::{Fleet, SimConfig};

use support::python::run_script;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_client_decodes_every_call() {
    let config = SimConfig {
        seed: 11,
        status_interval: Duration::from_millis(100),
        ..support::sim_config(4)
    };
    let fleet = Fleet::start(config).await.unwrap();
    let address = fleet.address(3).to_string();
    let proto = format!("{}/proto", env!("CARGO_MANIFEST_DIR"));
    // Every call in the script has a 5 s deadline, so it ends by itself.
    let output =
        tokio::task::spawn_blocking(move || run_script("sim_client.py", &[address, proto]))
            .await
            .unwrap();
    let got: serde_json::Value = serde_json::from_slice(&output).unwrap();

    let model = model_of(11, 3);
    assert_eq!(got["api_version"], serde_json::json!([1, 2]));
    assert_eq!(got["bad_login"], "UNAUTHENTICATED: Bad credentials");
    assert_eq!(got["token_length"], 16);
    assert_eq!(got["header_token_matches"], true);
    assert_eq!(got["session_timeout_s"], 3600);
    assert_eq!(got["uid"], "sim-00003");
    assert_eq!(got["model"], model.name);
    assert_eq!(got["status"], "MINER_STATUS_NORMAL");
    assert_eq!(got["stream_status"], "MINER_STATUS_NORMAL");
    assert_eq!(got["nominal_ghs"], model.nominal_ghs);
    let ghs = got["hashrate_1m_ghs"].as_f64().unwrap();
    assert!(
        ghs > 0.6 * model.nominal_ghs && ghs < 1.05 * model.nominal_ghs,
        "{ghs}"
    );
    let error_mhs = got["error_mhs"].as_f64().unwrap();
    assert!(
        (error_mhs / (ghs * 1000.0) - 0.0005).abs() < 1e-9,
        "error hashrate in MH/s"
    );
    let watts = got["power_w"].as_f64().unwrap();
    let efficiency = got["efficiency_jth"].as_f64().unwrap();
    assert!(
        (efficiency - watts / (ghs / 1000.0)).abs() < 0.01,
        "J/TH = W / TH/s"
    );
    assert_eq!(got["boards"], model.boards);
    assert_eq!(got["board_id"], "1");
    assert_eq!(got["chips"], model.chips_per_board);
    assert_eq!(got["frequency_hz"], model.frequency_mhz * 1e6);
    assert_eq!(got["chip_sensor"], "SENSOR_LOCATION_CHIP");
    assert_eq!(got["fans"].as_array().unwrap().len(), model.fans as usize);
    assert_eq!(got["pool_url"], "stratum+tcp://pool.example:3333");
    assert_eq!(got["backup_alive"], false);
    assert_eq!(got["every_pool_has_stats"], true, "the backup pool too");
    assert_eq!(
        got["bos_version"],
        serde_json::json!(["2026-05-18", "0", "5c8f0e1a", "26.05"])
    );
    assert_eq!(got["bos_major"], "26.05");
    assert_eq!(got["tuner_state"], "TUNER_STATE_STABLE");
    assert_eq!(got["tuner_target_w"], model.power_w as u64);
    assert_eq!(got["locate_enabled"], false);
    assert_eq!(got["power_target_w"], model.power_w as u64);
    drop(fleet);
}
