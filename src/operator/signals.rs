//! The signals a run answers: SIGINT and SIGTERM end it, SIGHUP reloads its config.
//!
//! The first SIGINT or SIGTERM asks for an ordered stop (sources stop, queues drain,
//! sinks flush); the second, for someone who cannot wait, abandons what is still in
//! flight. A SIGHUP during that stop is a reload request (`systemctl reload`) that
//! comes too late, not impatience: it is logged and ignored. SIGHUP's default action
//! would kill the process at once, losing what it holds; rigtap takes it over
//! (`rigtap sim` stops on it, like SIGTERM).

use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers; from here on the signals no longer kill the process.
    pub fn install() -> std::io::Result<Self> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

/// Resolves after `duration` (a `--duration` flag), or never when there is none.
pub async fn deadline(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
