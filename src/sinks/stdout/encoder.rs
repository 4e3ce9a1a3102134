//! The bytes the stdout sink writes.

use std::io::Write;

use super::config::StdoutEncoding;
use crate::toolkit::sample::{write_json_lines, Sample};

/// Appends one line per sample to `out`.
pub fn encode(encoding: StdoutEncoding, samples: &[Sample], out: &mut Vec<u8>) {
    match encoding {
        StdoutEncoding::Json => write_json_lines(samples, out),
        StdoutEncoding::Text => {
            for sample in samples {
                write_text(sample, out);
                out.push(b'\n');
            }
        }
    }
}

/// `2026-11-22T14:00:00.123Z miner gen-00001 hashrate=241.3TH/s power=3402W ...`
fn write_text(s: &Sample, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "{} {} {}",
        s.timestamp.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        s.kind.as_str(),
        s.miner_id
    );
    let mut field = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            let _ = write!(out, " {name}={value}");
        }
    };
    field("board", s.board.map(|b| b.to_string()));
    field("state", s.state.map(|st| st.as_str().to_string()));
    field("code", s.code.map(|code| code.as_str().to_string()));
    field("status", s.miner_status.clone());
    field("hashrate", s.hashrate_ths.map(|v| format!("{v:.1}TH/s")));
    field("power", s.power_w.map(|v| format!("{v:.0}W")));
    field(
        "efficiency",
        s.efficiency_jth.map(|v| format!("{v:.2}J/TH")),
    );
    field("chip", s.temp_chip_c.map(|v| format!("{v:.1}C")));
    field("fan", s.fan_rpm.map(|v| format!("{v:.0}rpm")));
    field("accepted", s.shares_accepted.map(|v| v.to_string()));
    field("message", s.message.as_ref().map(|m| format!("{m:?}")));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::sample::SampleKind;

    #[test]
    fn json_lines_and_text_lines() {
        let mut s = Sample::new(SampleKind::Miner, "m-1".into(), Default::default());
        s.hashrate_ths = Some(241.34);
        s.power_w = Some(3402.0);
        let mut out = Vec::new();
        encode(StdoutEncoding::Json, &[s.clone(), s.clone()], &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["miner_id"], "m-1");

        let mut out = Vec::new();
        encode(StdoutEncoding::Text, &[s], &mut out);
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.contains(" miner m-1 hashrate=241.3TH/s power=3402W\n"),
            "{line}"
        );
    }
}
