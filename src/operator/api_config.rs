use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::toolkit::units::HumanDuration;

/// The top-level `api:` section: where `/metrics`, `/health` and `/tap` are served,
/// and what `/health` calls degraded.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub(crate) enabled: bool,
    /// Loopback by default: metrics name the fleet's miners and sites.
    pub address: SocketAddr,
    pub(crate) health: HealthConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            address: SocketAddr::from(([127, 0, 0, 1], 9598)),
            health: HealthConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Degraded when a `bos` source has fewer of its miners online than this fraction.
    pub min_online: f64,
    /// Degraded when a queue has stayed full this long: its consumer (a sink and its
    /// destination, usually) is not keeping up, and the sources are held back.
    pub queue_full_for: HumanDuration,
    /// Degraded when a sink has delivered nothing this long while samples wait for
    /// its destination, or while the destination refuses them.
    pub sink_failing_for: HumanDuration,
    /// Degraded when a `bos` source's fleet-wide call or connect budget (`rate.rpcs`,
    /// `rate.connects`) has been used up this long: its polls run late.
    pub short_of_call_budget_for: HumanDuration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            min_online: 0.5,
            queue_full_for: HumanDuration(Duration::from_secs(60)),
            sink_failing_for: HumanDuration(Duration::from_secs(60)),
            short_of_call_budget_for: HumanDuration(Duration::from_secs(120)),
        }
    }
}
