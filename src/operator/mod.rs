//! Layer 5, the operator surface: what an operator runs and sees. The config file
//! ([`config`]), the agent that starts the embedded fleet, the pipeline and its
//! watchers and stops them in order ([`agent`]), the simulator command
//! ([`simulate`]), the API ([`api`]: `/metrics`, `/health`, `/tap`), health
//! ([`health`]), metrics ([`metrics`]), the progress line ([`progress`]), logs
//! ([`logging`]), signals ([`signals`]), and `rigtap tap` ([`tap`]). It reads the
//! pipeline through what components publish, never their internals.

pub mod agent;
pub(crate) mod api;
pub mod api_config;
pub mod config;
pub mod discover;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod progress;
pub(crate) mod reload;
pub(crate) mod service;
pub mod signals;
pub mod simulate;
pub(crate) mod status;
pub mod tap;
pub(crate) mod tap_path;
pub mod top;
