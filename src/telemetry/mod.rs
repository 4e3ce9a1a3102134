//! What rigtap tells its operators about itself: logs (and, later, metrics and health).

pub mod log_budget;
pub mod logging;
