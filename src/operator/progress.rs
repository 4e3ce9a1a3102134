//! A progress line on stderr every few seconds: miners online, samples per second in
//! and out, bytes delivered, drops and errors. A person at a terminal sees it by
//! default; a service manager's log does not, unless it asks for JSON lines.

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;

use std::time::{Duration, Instant};

use crate::pipeline::stats::Role;
use crate::topology::running::{PipelineView, Views};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A human line when stderr is a terminal, nothing otherwise.
    #[default]
    Auto,
    /// A JSON object per line, always.
    Json,
    Off,
}

pub(crate) const EVERY: Duration = Duration::from_secs(5);

/// Sums over the pipeline, for the progress line.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct Totals {
    pub produced: u64,
    pub delivered: u64,
    pub(crate) bytes_out: u64,
    pub dropped: u64,
    pub miners: u64,
    pub online: u64,
    pub(crate) rpc_failed: u64,
    pub failed: usize,
    /// Samples waiting in sinks' disk buffers, and the fullest one's share.
    pub(crate) buffered: u64,
    pub(crate) buffer_full: Option<f64>,
}

impl Totals {
    pub(crate) fn of(view: &PipelineView) -> Totals {
        let mut totals = Totals::default();
        for c in &view.components {
            match c.role {
                Role::Source => totals.produced += c.stats.samples_out(),
                Role::Sink => {
                    totals.delivered += c.stats.samples_out();
                    totals.bytes_out += c.stats.bytes_out();
                    if let Some(full) = c.stats.disk.fullness() {
                        totals.buffered += c.stats.disk.samples.load(Relaxed);
                        totals.buffer_full = Some(totals.buffer_full.unwrap_or(0.0).max(full));
                    }
                }
                Role::Transform => {}
            }
            totals.dropped += c.stats.dropped_total();
            totals.failed += usize::from(c.stats.failed());
            if let Some(fleet) = c.published.as_ref().and_then(|p| p.fleet()) {
                totals.miners += fleet.miners;
                totals.online += fleet.online;
                totals.rpc_failed += fleet.failed_calls;
            }
        }
        totals
    }
}

/// Writes progress until the task is dropped.
pub(crate) async fn report(mode: ProgressMode, views: Views) {
    let human = match mode {
        ProgressMode::Off => return,
        ProgressMode::Auto if !std::io::stderr().is_terminal() => return,
        ProgressMode::Auto => true,
        ProgressMode::Json => false,
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    let (mut last, mut at) = (Totals::of(&views.borrow()), Instant::now());
    loop {
        ticker.tick().await;
        let now = Totals::of(&views.borrow());
        let line = if human {
            human_line(&last, &now, at.elapsed())
        } else {
            json_line(&last, &now, at.elapsed())
        };
        eprintln!("{line}");
        (last, at) = (now, Instant::now());
    }
}

fn rate(from: u64, to: u64, elapsed: Duration) -> f64 {
    to.saturating_sub(from) as f64 / elapsed.as_secs_f64().max(0.001)
}

pub(crate) fn human_line(last: &Totals, now: &Totals, elapsed: Duration) -> String {
    let miners = if now.miners > 0 {
        format!("miners {}/{} online · ", now.online, now.miners)
    } else {
        String::new()
    };
    let buffered = match now.buffer_full {
        Some(full) => format!(
            " · disk buffer {} ({:.0}% full)",
            now.buffered,
            full * 100.0
        ),
        None => String::new(),
    };
    format!(
        "rigtap: {miners}{:.0} samples/s in · {:.0}/s delivered{buffered} · {:.1} MiB out · dropped {} · rpc errors {} · failed components {}",
        rate(last.produced, now.produced, elapsed),
        rate(last.delivered, now.delivered, elapsed),
        now.bytes_out as f64 / (1 << 20) as f64,
        now.dropped,
        now.rpc_failed,
        now.failed,
    )
}

pub(crate) fn json_line(last: &Totals, now: &Totals, elapsed: Duration) -> String {
    serde_json::json!({
        "progress": now,
        "samples_in_per_second": rate(last.produced, now.produced, elapsed).round(),
        "delivered_per_second": rate(last.delivered, now.delivered, elapsed).round(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_rates_and_totals() {
        let last = Totals::default();
        let now = Totals {
            produced: 5000,
            delivered: 4000,
            bytes_out: 3 << 20,
            dropped: 2,
            miners: 20,
            online: 18,
            rpc_failed: 7,
            failed: 0,
            ..Totals::default()
        };
        let line = human_line(&last, &now, Duration::from_secs(5));
        assert_eq!(line, "rigtap: miners 18/20 online · 1000 samples/s in · 800/s delivered · 3.0 MiB out · dropped 2 · rpc errors 7 · failed components 0");
        let buffering = Totals {
            buffered: 1200,
            buffer_full: Some(0.42),
            ..now
        };
        let line = human_line(&last, &buffering, Duration::from_secs(5));
        assert!(
            line.contains("800/s delivered · disk buffer 1200 (42% full) · 3.0 MiB"),
            "{line}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&json_line(&last, &now, Duration::from_secs(5))).unwrap();
        assert_eq!(json["samples_in_per_second"], 1000.0);
        assert_eq!(json["progress"]["online"], 18);
    }
}
