//! The pipeline's `simulator:` section: a simulated fleet served inside the collector's
//! own process, so a pipeline (the default collector.yaml among them) runs end to end
//! on a machine with no miners. A `bos` source reaches it with `targets.simulator: true`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::Deserialize;

use super::faults::FaultRule;
use super::SimConfig;
use crate::toolkit::units::HumanDuration;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmbeddedSim {
    #[serde(default = "default_miners")]
    pub miners: usize,
    /// Miner 0's address; the others follow on consecutive loopback addresses.
    #[serde(default = "default_first")]
    pub first: SocketAddrV4,
    #[serde(default)]
    pub seed: u64,
    /// Credentials the simulated miners accept (a test fixture, not a secret).
    #[serde(default = "root")]
    pub username: String,
    #[serde(default = "root")]
    pub password: String,
    #[serde(default = "default_status_interval")]
    pub status_interval: HumanDuration,
    #[serde(default = "default_session_timeout")]
    pub session_timeout: HumanDuration,
    /// Fault rules, as in `rigtap sim --faults-file`.
    #[serde(default)]
    pub faults: Vec<FaultRule>,
    /// The share of miners on stock firmware (Antminer, Whatsminer, Avalon), which
    /// only a `cgminer` source reads.
    #[serde(default)]
    pub stock: f64,
    /// Serve the CGMiner API on this port too (stock miners serve it on 4028).
    #[serde(default)]
    pub cgminer_port: Option<u16>,
}

fn default_miners() -> usize {
    20
}

fn default_first() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 1, 0, 1), 50051)
}

fn root() -> String {
    "root".into()
}

fn default_status_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

fn default_session_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

impl EmbeddedSim {
    pub(crate) fn sim_config(&self) -> SimConfig {
        SimConfig {
            miners: self.miners,
            first: self.first,
            seed: self.seed,
            username: self.username.clone(),
            password: self.password.clone(),
            session_timeout: self.session_timeout.0,
            tls: None,
            faults: self.faults.clone(),
            status_interval: self.status_interval.0,
            cgminer_port: self.cgminer_port,
            stock: self.stock,
            replay: None,
        }
    }
}
