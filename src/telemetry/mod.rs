//! What rigtap tells its operators about itself: logs, metrics, health, a progress
//! line, and a live view of the samples passing a component.

pub mod api;
pub mod api_config;
pub mod health;
pub mod histogram;
pub mod log_budget;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod progress;
pub mod tap;
