//! The CGMiner-style JSON API on TCP 4028, as three firmware families serve it: stock
//! Antminer (bmminer; Braiins OS serves it beside gRPC too), Whatsminer (btminer) and
//! Avalon (Canaan). One connection carries one command (`{"command": "summary"}`, or
//! `summary+pools` combined) and is closed after the answer, which ends in a NUL byte.
//! The shapes are those real firmware sends, defects included: numbers as strings
//! where Antminer writes them so, and Antminer's `stats` without a comma between its
//! two objects.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::service::MinerShared;
use super::telemetry::{Dialect, Snapshot};
use tonic::Code;

/// Serves the API until `kill`, one connection at a time (as many of these firmwares
/// do).
pub(crate) async fn serve(
    listener: TcpListener,
    miner: Arc<MinerShared>,
    dialect: Dialect,
    kill: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = kill.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors, most likely: try again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tokio::select! {
            _ = kill.cancelled() => return,
            _ = answer_one(stream, &miner, dialect) => {}
        }
    }
}

/// Reads one command (within 5 s) and answers it.
async fn answer_one(mut stream: TcpStream, miner: &MinerShared, dialect: Dialect) {
    let mut request = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while request.len() < 4096 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
            }
            if serde_json::from_slice::<Value>(&request).is_ok() {
                break;
            }
        }
    });
    if read.await.is_err() {
        return;
    }
    let command = serde_json::from_slice::<Value>(&request)
        .ok()
        .and_then(|v| v.get("command")?.as_str().map(str::to_string))
        // The plain-text form: `summary|` or `summary`.
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&request)
                .trim()
                .trim_end_matches('|')
                .to_string()
        });
    if let Some(delay) = miner.faults.slow {
        tokio::time::sleep(delay).await;
    }
    // The status faults: an unavailable miner drops the connection unanswered, a
    // busy or broken one refuses the command.
    let text = match miner.faults.error {
        Some((Code::Unavailable, p)) if fastrand::f64() < p => return,
        Some((_, p)) if fastrand::f64() < p => {
            json!({"STATUS": status(dialect, false, "simulated fault"), "id": 1}).to_string() + "\0"
        }
        // A replayed answer goes out as it came, terminator and all.
        _ if miner.replay.is_some() => match miner.replayed_text(&command) {
            Some(text) => text,
            None => return,
        },
        _ => render(&command, dialect, miner, &miner.telemetry()) + "\0",
    };
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// What each firmware writes as its `Description`.
fn description(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Antminer => "bmminer 1.0.0",
        Dialect::Whatsminer => "btminer",
        Dialect::Avalon => "cgminer 4.11.1",
    }
}

fn status(dialect: Dialect, ok: bool, message: &str) -> Value {
    json!([{
        "STATUS": if ok { "S" } else { "E" },
        "When": chrono::Utc::now().timestamp(),
        "Code": if ok { 11 } else { 14 },
        "Msg": message,
        "Description": description(dialect),
    }])
}

/// The answer to `command` (several joined by `+` make one combined answer).
pub(crate) fn render(
    command: &str,
    dialect: Dialect,
    miner: &MinerShared,
    state: &Snapshot,
) -> String {
    let parts: Vec<&str> = command.split('+').filter(|c| !c.is_empty()).collect();
    if parts.len() > 1 {
        let combined: serde_json::Map<String, Value> = parts
            .iter()
            .map(|part| {
                let one = render(part, dialect, miner, state);
                let value = serde_json::from_str(&one.replace("}{", "},{")).unwrap_or(Value::Null);
                (part.to_string(), json!([value]))
            })
            .collect();
        return Value::Object(combined).to_string();
    }
    let answer = match (dialect, command) {
        (_, "summary") => summary(dialect, miner, state),
        (Dialect::Antminer, "stats") => return antminer_stats(miner, state),
        (Dialect::Avalon, "stats" | "estats") => avalon_stats(miner, state),
        (Dialect::Whatsminer, "edevs" | "devs") => whatsminer_edevs(miner, state),
        (_, "pools") => pools(dialect, miner, state),
        (_, "version") => version(dialect, miner),
        (Dialect::Whatsminer, "devdetails") => json!({
            "STATUS": status(dialect, true, "Device Details"),
            "DEVDETAILS": [{"DEVDETAILS": 0, "Name": "SM", "ID": 0, "Driver": "bitmicro", "Model": miner.model.name.trim_start_matches("Whatsminer ")}],
            "id": 1,
        }),
        _ => json!({"STATUS": status(dialect, false, "Invalid command"), "id": 1}),
    };
    answer.to_string()
}

fn summary(dialect: Dialect, miner: &MinerShared, s: &Snapshot) -> Value {
    let ghs = s.hashrate_ghs;
    let body = match dialect {
        // Antminer writes its 5 s rate as a string.
        Dialect::Antminer => json!({
            "Elapsed": s.uptime_s, "GHS 5s": format!("{:.2}", ghs * 1.002), "GHS av": ghs,
            "Accepted": s.accepted, "Rejected": s.rejected, "Stale": s.stale,
            "Hardware Errors": 12, "Best Share": 1_234_567,
        }),
        Dialect::Whatsminer => json!({
            "Elapsed": s.uptime_s, "MHS av": ghs * 1e3, "MHS 5s": ghs * 1.002e3, "MHS 1m": ghs * 1e3,
            "Accepted": s.accepted, "Rejected": s.rejected, "Stale": s.stale,
            "Temperature": s.boards.iter().map(|b| b.board_temp_c).fold(f64::MIN, f64::max),
            "Fan Speed In": s.fan_rpm.first().copied().unwrap_or(0),
            "Fan Speed Out": s.fan_rpm.get(1).copied().unwrap_or(0),
            "Power": s.power_w, "Chip Temp Min": 60.0, "Chip Temp Max": s.highest_chip_temp_c(),
            "Chip Temp Avg": 70.0, "Factory GHS": miner.model.nominal_ghs,
        }),
        // Avalon reports 30 s and 1 m windows, no 5 s one.
        Dialect::Avalon => json!({
            "Elapsed": s.uptime_s, "MHS av": ghs * 1e3, "MHS 30s": ghs * 1.002e3, "MHS 1m": ghs * 1e3,
            "Accepted": s.accepted, "Rejected": s.rejected, "Stale": s.stale,
        }),
    };
    json!({"STATUS": status(dialect, true, "Summary"), "SUMMARY": [body], "id": 1})
}

/// Antminer's `stats`: a version object, then the miner's, with no comma between them
/// (as bmminer writes it).
fn antminer_stats(miner: &MinerShared, s: &Snapshot) -> String {
    let model = miner.model;
    let mut data = serde_json::Map::new();
    data.insert("Elapsed".into(), json!(s.uptime_s));
    data.insert("GHS 5s".into(), json!(format!("{:.2}", s.hashrate_ghs)));
    data.insert("GHS av".into(), json!(s.hashrate_ghs));
    data.insert("total_rateideal".into(), json!(model.nominal_ghs));
    data.insert("fan_num".into(), json!(s.fan_rpm.len()));
    for (i, rpm) in s.fan_rpm.iter().enumerate() {
        data.insert(format!("fan{}", i + 1), json!(rpm));
    }
    data.insert("temp_num".into(), json!(s.boards.len()));
    for (i, board) in s.boards.iter().enumerate() {
        let chain = i + 1;
        data.insert(format!("temp{chain}"), json!(board.board_temp_c.round()));
        data.insert(format!("temp2_{chain}"), json!(board.chip_temp_c.round()));
        data.insert(
            format!("chain_rate{chain}"),
            json!(format!("{:.2}", board.hashrate_ghs)),
        );
        data.insert(format!("chain_acn{chain}"), json!(model.chips_per_board));
        data.insert(format!("freq_avg{chain}"), json!(model.frequency_mhz));
    }
    let version = json!({"BMMiner": "1.0.0", "Miner": "uart_trans.1.3", "CompileTime": "Sat Mar 13 2021", "Type": model.name});
    format!(
        "{{\"STATUS\":{},\"STATS\":[{}{}],\"id\":1}}",
        status(Dialect::Antminer, true, "CGMiner stats"),
        version,
        Value::Object(data)
    )
}

/// Whatsminer's `edevs`: one object per hashboard.
fn whatsminer_edevs(miner: &MinerShared, s: &Snapshot) -> Value {
    let devs: Vec<Value> = s
        .boards
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "ASC": i, "Slot": i, "Name": "SM", "ID": i, "Enabled": "Y",
                "Status": if b.enabled { "Alive" } else { "Dead" },
                "Temperature": b.board_temp_c, "Chip Frequency": miner.model.frequency_mhz,
                "MHS av": b.hashrate_ghs * 1e3, "MHS 5s": b.hashrate_ghs * 1e3,
                "Chip Temp Min": b.chip_temp_c - 8.0, "Chip Temp Max": b.chip_temp_c,
                "Chip Temp Avg": b.chip_temp_c - 4.0, "Effective Chips": miner.model.chips_per_board,
            })
        })
        .collect();
    json!({"STATUS": status(Dialect::Whatsminer, true, "EDevs"), "DEVS": devs, "id": 1})
}

/// Avalon's `stats`: the miner in one `MM ID0` string of `Key[value]` pairs.
fn avalon_stats(miner: &MinerShared, s: &Snapshot) -> Value {
    let fans: String = s
        .fan_rpm
        .iter()
        .enumerate()
        .map(|(i, rpm)| format!("Fan{}[{rpm}] ", i + 1))
        .collect();
    let per_board = |f: &dyn Fn(&super::telemetry::BoardState) -> String| {
        s.boards.iter().map(f).collect::<Vec<_>>().join(" ")
    };
    let (mghs, mtmax) = (
        per_board(&|b| format!("{:.2}", b.hashrate_ghs)),
        per_board(&|b| format!("{:.0}", b.chip_temp_c)),
    );
    // PS[...]: error, input, Vout (10 mV), Iout (A), DC output (W), Vout set, wall (W).
    let wall = s.power_w;
    let mm = format!(
        "Ver[1366-22061601_4ec6bb0_4f6d5b4] DNA[020100003e6d46b1] Elapsed[{}] MW[0 0 0] LW[2140386] {fans}FanR[43%] Temp[25] TMax[{:.0}] TAvg[{:.0}] GHSspd[{:.2}] DH[2.121%] GHSmm[{:.2}] GHSavg[{:.2}] WU[1736232.00] Freq[{:.2}] PS[0 1215 1316 {:.0} {:.0} 1320 {wall:.0}] MGHS[{mghs}] MTmax[{mtmax}] TA[{}] WORKMODE[1]",
        s.uptime_s,
        s.highest_chip_temp_c(),
        s.highest_chip_temp_c() - 6.0,
        s.hashrate_ghs,
        miner.model.nominal_ghs,
        s.hashrate_ghs,
        miner.model.frequency_mhz,
        wall * 0.94 / 13.16,
        wall * 0.94,
        miner.model.chips_per_board * miner.model.boards,
    );
    json!({
        "STATUS": status(Dialect::Avalon, true, "CGMiner stats"),
        "STATS": [{"STATS": 0, "ID": "AVA100", "Elapsed": s.uptime_s, "MM ID0": mm}],
        "id": 1,
    })
}

/// `version`: Antminer names its model (`Type`), Avalon its product (`PROD`);
/// Whatsminer names none (its `devdetails` does).
fn version(dialect: Dialect, miner: &MinerShared) -> Value {
    let entry = match dialect {
        Dialect::Antminer => {
            json!({"BMMiner": "1.0.0", "API": "3.1", "Miner": "49.0.1.3", "CompileTime": "Sat May 15 21:17:18 CST 2021", "Type": miner.model.name})
        }
        Dialect::Whatsminer => {
            json!({"API": "2.0.5", "Miner": "2.0.5", "Firmware Version": "'20230404.17.Rel'"})
        }
        Dialect::Avalon => {
            json!({"CGMiner": "4.11.1", "API": "3.7", "PROD": miner.model.name, "MODEL": "1366", "LVERSION": "22061601_4ec6bb0_4f6d5b4"})
        }
    };
    json!({"STATUS": status(dialect, true, "CGMiner versions"), "VERSION": [entry], "id": 1})
}

fn pools(dialect: Dialect, miner: &MinerShared, s: &Snapshot) -> Value {
    let worker = format!("rigtap.sim{:05}", miner.index);
    json!({
        "STATUS": status(dialect, true, "2 Pool(s)"),
        "POOLS": [
            {"POOL": 0, "URL": "stratum+tcp://pool.example:3333", "Status": "Alive", "Priority": 0,
             "Accepted": s.accepted, "Rejected": s.rejected, "Stale": s.stale, "User": worker},
            {"POOL": 1, "URL": "stratum+tcp://backup.example:3333", "Status": "Alive", "Priority": 1,
             "Accepted": 0, "Rejected": 0, "Stale": 0, "User": worker},
        ],
        "id": 1,
    })
}
