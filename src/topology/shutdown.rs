//! The signals that end a run: SIGINT and SIGTERM.
//!
//! The first asks for an ordered stop (sources stop, queues drain, sinks flush); the
//! second, for someone who cannot wait, abandons what is still in flight.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Installs the handlers; from here on the signals no longer kill the process.
    pub fn install() -> std::io::Result<Self> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next signal and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
