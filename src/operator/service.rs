//! The service manager's contract (systemd's notify protocol, also spoken by other
//! managers): READY=1 once the sources have started, RELOADING=1 (with the monotonic
//! time systemd 253 asks for) and READY=1 around a reload, STOPPING=1 at shutdown,
//! and WATCHDOG=1 pings while the runtime answers. Without `NOTIFY_SOCKET` in the
//! environment (not started by a manager) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// How this process talks to its service manager.
pub(crate) struct ServiceManager {
    /// The watchdog's interval (`WatchdogSec=`), if the manager set one.
    watchdog: Option<Duration>,
}

impl ServiceManager {
    pub(crate) fn from_env() -> Self {
        ServiceManager {
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    pub(crate) fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub(crate) fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    pub(crate) fn stopping(&self) {
        send(&[NotifyState::Stopping]);
    }

    /// Pings the watchdog at half its interval, for as long as the runtime polls this
    /// future: a stuck runtime stops pinging, and the manager restarts rigtap. Never
    /// resolves; pending forever without a watchdog.
    pub(crate) async fn watchdog(&self) {
        let Some(interval) = self.watchdog else {
            return std::future::pending().await;
        };
        let mut ticker = tokio::time::interval(interval / 2);
        loop {
            ticker.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
