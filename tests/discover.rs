//! `rigtap discover` over a loopback block holding a mixed simulated fleet (Braiins OS
//! miners, which serve the CGMiner API beside gRPC, and stock Antminer, Whatsminer and
//! Avalon miners) and silent addresses after it: the inventory it writes names every
//! miner with the API a source should use, its model and firmware, and nothing else;
//! the run ends in bounded time.

mod support;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use rigtap::sim::telemetry::{Dialect, Firmware};
use rigtap::sim::{Fleet, SimConfig};
use support::net::{free_block, miner_address};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_finds_each_miner_with_its_api_model_and_firmware() {
    const MINERS: usize = 12;
    // Four silent addresses after the fleet: nothing listens there.
    let first = free_block(MINERS + 4);
    let fleet = Fleet::start(SimConfig {
        stock: 0.5,
        cgminer_port: Some(4028),
        first,
        ..support::sim_config(MINERS)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("found.csv");
    let range = format!("{}-{}", first.ip(), miner_address(first, MINERS + 3).ip());
    let started = Instant::now();
    let output = tokio::task::spawn_blocking({
        let out = out.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_rigtap"))
                .args([
                    "discover",
                    &range,
                    "--timeout",
                    "500ms",
                    "--rate",
                    "100/s",
                    "--username",
                    "root",
                ])
                .arg("--out")
                .arg(&out)
                .env("BOS_PASSWORD", "root")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("{MINERS} of {} addresses answered", MINERS + 4)),
        "{stdout}"
    );
    // 16 probes at 100/s, the silent ones refused at once or out in 500 ms.
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let mut rows = csv::Reader::from_path(&out).unwrap();
    let header: Vec<String> = rows.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["id", "address", "api", "model", "firmware"]);
    let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), MINERS);
    for (i, row) in rows.iter().enumerate() {
        let ip = *miner_address(first, i).ip();
        assert_eq!(row[0].parse::<Ipv4Addr>().unwrap(), ip);
        let model = &fleet.inventory()[i].labels["model"];
        let (api, port, expected_model, firmware) = match fleet.firmware(i) {
            Firmware::BraiinsOs => (
                "bos",
                50051,
                model.clone(),
                "Braiins OS 2026-05-18-0-5c8f0e1a-26.05-plus",
            ),
            Firmware::Stock(Dialect::Antminer) => ("cgminer", 4028, model.clone(), "bmminer 1.0.0"),
            Firmware::Stock(Dialect::Whatsminer) => {
                ("cgminer", 4028, "M50S".to_string(), "btminer")
            }
            Firmware::Stock(Dialect::Avalon) => ("cgminer", 4028, model.clone(), "cgminer 4.11.1"),
        };
        assert_eq!(&row[1], format!("{ip}:{port}"), "{row:?}");
        assert_eq!(
            (&row[2], &row[3], &row[4]),
            (api, expected_model.as_str(), firmware),
            "miner {i}"
        );
    }
    let apis: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.get(2).unwrap()).collect();
    assert_eq!(apis.len(), 2, "a mixed fleet: {apis:?}");
}
