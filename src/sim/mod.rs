//! `rigtap sim`: a fleet of simulated miners serving the miner API on loopback.
//!
//! Miner `i` listens on the `i`-th IPv4 address after `first`, on the same port, so
//! 10,000 miners need no port juggling (all of 127.0.0.0/8 is loopback). Each miner has
//! seeded telemetry ([`telemetry`]), login sessions ([`auth`]), optional faults
//! ([`faults`]), and an accept loop that counts its connections ([`listener`]). The
//! same fleet backs the integration tests and the benchmarks, and can run inside the
//! collector's own process.

pub(crate) mod auth;
pub mod cgminer;
pub mod counting;
pub(crate) mod embedded;
pub mod faults;
pub mod listener;
pub mod replay;
pub mod service;
pub mod telemetry;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::toolkit::inventory::{self, InventoryRow};
use crate::toolkit::proto::bos::api_version_service_server::ApiVersionServiceServer;
use crate::toolkit::proto::bos::v1::actions_service_server::ActionsServiceServer;
use crate::toolkit::proto::bos::v1::authentication_service_server::AuthenticationServiceServer;
use crate::toolkit::proto::bos::v1::cooling_service_server::CoolingServiceServer;
use crate::toolkit::proto::bos::v1::miner_service_server::MinerServiceServer;
use crate::toolkit::proto::bos::v1::performance_service_server::PerformanceServiceServer;
use crate::toolkit::proto::bos::v1::pool_service_server::PoolServiceServer;
use counting::{CallCounters, CountCalls, PerSecond};
use faults::{FaultRule, MinerFaults};
use listener::{incoming, ConnectionCounters};
use replay::Recording;
use service::{MinerShared, SimMiner};
use telemetry::{Dialect, Firmware};

/// How to run a simulated fleet.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub miners: usize,
    /// Miner 0's address; the others follow on consecutive addresses, same port.
    pub first: SocketAddrV4,
    pub seed: u64,
    pub username: String,
    pub password: String,
    /// A session expires after this long without a call.
    pub session_timeout: Duration,
    pub tls: Option<SimTls>,
    pub faults: Vec<FaultRule>,
    /// Pause between status stream messages (zero: as fast as flow control allows).
    pub status_interval: Duration,
    /// Serve the CGMiner-style API on this port of each miner's address, as the
    /// firmware does on 4028 (stock miners always serve it, on 4028 by default).
    pub cgminer_port: Option<u16>,
    /// The share of miners (0 to 1) on stock firmware: Antminer, Whatsminer or Avalon,
    /// serving only the CGMiner API; their inventory rows say `api: cgminer`.
    pub stock: f64,
    /// Serve a recording instead of simulated telemetry (`miners` is its miner
    /// count), at this speed (1: the recorded pace).
    pub replay: Option<(Arc<Recording>, f64)>,
}

/// PEM files' contents for the fleet's TLS; with `client_ca`, clients need certificates.
#[derive(Clone, Debug)]
pub struct SimTls {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            miners: 10,
            first: SocketAddrV4::new(Ipv4Addr::new(127, 1, 0, 1), 50051),
            seed: 0,
            username: "root".into(),
            password: "root".into(),
            session_timeout: Duration::from_secs(3600),
            tls: None,
            faults: Vec::new(),
            status_interval: Duration::from_secs(5),
            cgminer_port: None,
            stock: 0.0,
            replay: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "miner {index} at {addr}: cannot listen: {source}; is another simulator or miner using it?"
    )]
    Bind {
        index: usize,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{first} plus {miners} miners leaves loopback (127.0.0.0/8); the simulator only serves loopback addresses")]
    NotLoopback { first: SocketAddrV4, miners: usize },
    #[error("a simulated fleet has from 1 to {MAX_MINERS} miners, not {0}")]
    Miners(usize),
    #[error("`stock` is the share of miners on stock firmware, from 0 to 1, not {0}")]
    Stock(f64),
    #[error("TLS setup failed: {0}")]
    Tls(#[from] tonic::transport::Error),
}

/// A service that takes gzip-compressed requests and answers in gzip when asked to,
/// so a collector's `compression: gzip` can be tested.
macro_rules! gzip {
    ($server:expr) => {
        $server
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
    };
}

/// One miner's server and counters.
struct MinerHandle {
    addr: SocketAddr,
    firmware: Firmware,
    /// Where it serves the CGMiner API, and in which dialect; and that server.
    cgminer: Option<(SocketAddr, Dialect)>,
    cgminer_task: Option<JoinHandle<()>>,
    shared: Arc<MinerShared>,
    counters: Arc<ConnectionCounters>,
    task: Option<JoinHandle<()>>,
    /// Cuts the connections of the running server (they live in tasks of their own).
    kill: CancellationToken,
}

/// The label columns of a simulated fleet's inventory; a fleet with stock miners adds
/// `api` (`bos` or `cgminer`), which gives each source its own miners.
pub(crate) const INVENTORY_LABELS: [&str; 4] = ["site", "rack", "model", "api"];

/// The CGMiner API's port when a fleet has stock miners and names none.
const CGMINER_PORT: u16 = 4028;

impl SimConfig {
    fn labels(&self) -> &'static [&'static str] {
        match &self.replay {
            // A recording's miners are known by their ids (and their API) alone.
            Some((recording, _)) if recording.has_stock() => &INVENTORY_LABELS[3..],
            Some(_) => &[],
            None if self.stock > 0.0 => &INVENTORY_LABELS,
            None => &INVENTORY_LABELS[..3],
        }
    }

    /// Miner `index`'s id: its recorded one when replaying.
    fn id(&self, index: usize) -> Arc<str> {
        match &self.replay {
            Some((recording, _)) if index < recording.len() => recording.id(index).clone(),
            _ => format!("sim-{index:05}").into(),
        }
    }

    fn cgminer_port(&self) -> Option<u16> {
        let stock = match &self.replay {
            Some((recording, _)) => recording.has_stock(),
            None => self.stock > 0.0,
        };
        self.cgminer_port.or(stock.then_some(CGMINER_PORT))
    }

    /// Miner `index`'s firmware and model: a replayed miner runs the firmware its
    /// source recorded (its dialect is in the recorded answers).
    fn firmware(&self, index: usize) -> (Firmware, &'static telemetry::Model) {
        match &self.replay {
            Some((recording, _)) if index < recording.len() => {
                let model = telemetry::model_of(self.seed, index);
                match recording.stock(index) {
                    true => (Firmware::Stock(Dialect::Antminer), model),
                    false => (Firmware::BraiinsOs, model),
                }
            }
            _ => telemetry::firmware_of(self.seed, index, self.stock),
        }
    }
}

/// The most miners one simulated fleet serves: each costs a listener and a connection
/// (two open files), so one process needs a raised open-file limit long before this.
pub const MAX_MINERS: usize = 100_000;

/// The inventory of the fleet `config` describes, without starting it: ids
/// `sim-00000`..., 2,500 miners a site and 40 a rack.
pub fn inventory(config: &SimConfig) -> Result<Vec<InventoryRow>, SimError> {
    if !(0.0..=1.0).contains(&config.stock) {
        return Err(SimError::Stock(config.stock));
    }
    (0..config.miners)
        .map(|i| {
            let address = address_of(config.first, i).ok_or(SimError::NotLoopback {
                first: config.first,
                miners: config.miners,
            })?;
            let (firmware, model) = config.firmware(i);
            let (address, api) = match (firmware, config.cgminer_port()) {
                (Firmware::Stock(_), Some(port)) => {
                    (SocketAddrV4::new(*address.ip(), port), "cgminer")
                }
                _ => (address, "bos"),
            };
            let values = [
                format!("site-{}", i / 2500 + 1),
                format!("rack-{:03}", (i / 40) % 1000),
                model.name.to_string(),
                api.to_string(),
            ];
            Ok(InventoryRow {
                id: config.id(i),
                address: address.to_string(),
                labels: Arc::new(
                    INVENTORY_LABELS
                        .iter()
                        .zip(values)
                        .filter(|(name, _)| config.labels().contains(name))
                        .map(|(name, value)| (name.to_string(), value))
                        .collect(),
                ),
            })
        })
        .collect()
}

/// A running simulated fleet. Dropping it stops every miner.
pub struct Fleet {
    miners: Vec<MinerHandle>,
    inventory: Vec<InventoryRow>,
    tls: Option<ServerTlsConfig>,
    connect_rate: Arc<PerSecond>,
    /// Calls per second, fleet-wide.
    call_rate: Arc<PerSecond>,
}

/// The address of miner `index`: `first` plus `index`, same port.
pub(crate) fn address_of(first: SocketAddrV4, index: usize) -> Option<SocketAddrV4> {
    let ip = u32::from(*first.ip()).checked_add(u32::try_from(index).ok()?)?;
    let ip = Ipv4Addr::from(ip);
    ip.is_loopback()
        .then(|| SocketAddrV4::new(ip, first.port()))
}

impl Fleet {
    /// Binds and serves every miner; returns once all listen.
    pub async fn start(config: SimConfig) -> Result<Fleet, SimError> {
        let tls = match &config.tls {
            None => None,
            Some(tls) => {
                let mut server_tls =
                    ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert, &tls.key));
                if let Some(ca) = &tls.client_ca {
                    server_tls = server_tls.client_ca_root(Certificate::from_pem(ca));
                }
                Some(server_tls)
            }
        };
        // A listener and a connection per miner, plus the runtime's own.
        let needed = 2 * config.miners as u64 + 64;
        if let Some(limit) = crate::toolkit::limits::open_files_short_of(needed) {
            tracing::warn!(miners = config.miners, needed, limit, "the open-file limit is too low for this fleet: connections beyond it will hang. Raise it (`ulimit -n`, or LimitNOFILE in a systemd unit) or simulate fewer miners");
        }
        let started = Instant::now();
        let mut fleet = Fleet {
            miners: Vec::with_capacity(config.miners),
            inventory: {
                if !(1..=MAX_MINERS).contains(&config.miners) {
                    return Err(SimError::Miners(config.miners));
                }
                inventory(&config)?
            },
            tls,
            connect_rate: Arc::new(PerSecond::keeping(600)),
            call_rate: Arc::new(PerSecond::keeping(600)),
        };
        for index in 0..config.miners {
            let addr = address_of(config.first, index).ok_or(SimError::NotLoopback {
                first: config.first,
                miners: config.miners,
            })?;
            let faults = MinerFaults::resolve(&config.faults, config.seed, index);
            let (firmware, model) = config.firmware(index);
            let dialect = match firmware {
                Firmware::BraiinsOs => Dialect::Antminer,
                Firmware::Stock(dialect) => dialect,
            };
            let cgminer = config.cgminer_port().map(|port| {
                (
                    SocketAddr::from(SocketAddrV4::new(*addr.ip(), port)),
                    dialect,
                )
            });
            let shared = Arc::new(MinerShared {
                index,
                model,
                seed: config.seed,
                started,
                sessions: auth::Sessions::new(
                    config.username.clone(),
                    config.password.clone(),
                    config.session_timeout,
                ),
                faults,
                status_interval: config.status_interval,
                calls: Default::default(),
                replay: config
                    .replay
                    .as_ref()
                    .filter(|(recording, _)| index < recording.len())
                    .map(|(recording, speed)| (recording.polls(index), *speed)),
            });
            fleet.miners.push(MinerHandle {
                addr: addr.into(),
                firmware,
                cgminer,
                cgminer_task: None,
                shared,
                counters: Arc::default(),
                task: None,
                kill: CancellationToken::new(),
            });
            if !fleet.miners[index].shared.faults.refuse {
                fleet.serve(index).await?;
            }
        }
        Ok(fleet)
    }

    /// Starts (or restarts) miner `index`'s servers: gRPC unless it runs stock
    /// firmware, and the CGMiner API where it serves one.
    async fn serve(&mut self, index: usize) -> Result<(), SimError> {
        let miner = &mut self.miners[index];
        miner.kill = CancellationToken::new();
        if let Some((addr, dialect)) = miner.cgminer {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SimError::Bind {
                    index,
                    addr,
                    source,
                })?;
            let (shared, kill) = (miner.shared.clone(), miner.kill.clone());
            miner.cgminer_task = Some(tokio::spawn(cgminer::serve(
                listener, shared, dialect, kill,
            )));
        }
        if miner.firmware != Firmware::BraiinsOs {
            return Ok(());
        }
        let listener = TcpListener::bind(miner.addr)
            .await
            .map_err(|source| SimError::Bind {
                index,
                addr: miner.addr,
                source,
            })?;
        let service = SimMiner(miner.shared.clone());
        let mut builder = Server::builder();
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls.clone())?;
        }
        let router = builder
            .layer(CountCalls {
                calls: miner.shared.calls.clone(),
                fleet: self.call_rate.clone(),
            })
            .add_service(gzip!(ApiVersionServiceServer::new(service.clone())))
            .add_service(gzip!(AuthenticationServiceServer::new(service.clone())))
            .add_service(gzip!(MinerServiceServer::new(service.clone())))
            .add_service(gzip!(CoolingServiceServer::new(service.clone())))
            .add_service(gzip!(PoolServiceServer::new(service.clone())))
            .add_service(gzip!(PerformanceServiceServer::new(service.clone())))
            .add_service(gzip!(ActionsServiceServer::new(service)));
        let connections = incoming(
            listener,
            miner.shared.faults.clone(),
            miner.counters.clone(),
            self.connect_rate.clone(),
            miner.kill.clone(),
        );
        let addr = miner.addr;
        miner.task = Some(tokio::spawn(async move {
            if let Err(error) = router.serve_with_incoming(connections).await {
                tracing::warn!(%addr, %error, "simulated miner stopped");
            }
        }));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.miners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.miners.is_empty()
    }

    pub fn address(&self, index: usize) -> SocketAddr {
        self.miners[index].addr
    }

    /// Stops miner `index` at once: its listener closes and its connections drop,
    /// like a miner that lost power.
    pub async fn kill(&mut self, index: usize) {
        let miner = &mut self.miners[index];
        miner.kill.cancel();
        for task in [miner.task.take(), miner.cgminer_task.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
            let _ = task.await;
        }
    }

    /// Brings a killed miner back.
    pub async fn restart(&mut self, index: usize) -> Result<(), SimError> {
        self.kill(index).await;
        self.serve(index).await
    }

    /// Connection counters of miner `index`, as seen by the miner.
    pub fn counters(&self, index: usize) -> &ConnectionCounters {
        &self.miners[index].counters
    }

    /// What a collector needs to find and label each miner.
    pub fn inventory(&self) -> &[InventoryRow] {
        &self.inventory
    }

    /// Logins and status streams miner `index` has seen.
    pub fn calls(&self, index: usize) -> &CallCounters {
        &self.miners[index].shared.calls
    }

    /// Connections open across the fleet.
    pub fn open_connections(&self) -> usize {
        self.miners
            .iter()
            .map(|m| m.counters.open.load(Relaxed))
            .sum()
    }

    /// New connections per second across the fleet, as the miners saw them (the last
    /// ten minutes).
    pub fn connect_rate(&self) -> &PerSecond {
        &self.connect_rate
    }

    /// Calls per second across the fleet (the last ten minutes).
    pub fn call_rate(&self) -> &PerSecond {
        &self.call_rate
    }

    /// Writes the inventory CSV a collector can read: id, address, site, rack, model
    /// (and api, in a fleet with stock miners).
    pub fn write_inventory(&self, path: &Path) -> std::io::Result<()> {
        let labels: Vec<&str> = self
            .inventory
            .first()
            .map(|row| row.labels.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let order: Vec<&str> = INVENTORY_LABELS
            .iter()
            .copied()
            .filter(|l| labels.contains(l))
            .collect();
        inventory::write(path, &self.inventory, &order)
    }

    /// What miner `index` runs.
    pub fn firmware(&self, index: usize) -> Firmware {
        self.miners[index].firmware
    }

    /// Where miner `index` serves the CGMiner API, if it does.
    pub fn cgminer_address(&self, index: usize) -> Option<SocketAddr> {
        self.miners[index].cgminer.map(|(addr, _)| addr)
    }

    /// Stops every miner.
    pub async fn shutdown(mut self) {
        for index in 0..self.miners.len() {
            self.kill(index).await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for miner in &mut self.miners {
            miner.kill.cancel();
            for task in [miner.task.take(), miner.cgminer_task.take()]
                .into_iter()
                .flatten()
            {
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_stay_on_loopback() {
        let first = SocketAddrV4::new(Ipv4Addr::new(127, 1, 0, 1), 50051);
        assert_eq!(
            address_of(first, 255).unwrap().to_string(),
            "127.1.1.0:50051"
        );
        assert_eq!(
            address_of(first, 10_000).unwrap().to_string(),
            "127.1.39.17:50051"
        );
        let last = SocketAddrV4::new(Ipv4Addr::new(127, 255, 255, 250), 1);
        assert!(address_of(last, 10).is_none());
    }
}
