//! The miner API as one simulated miner serves it.

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::auth::Sessions;
use super::counting::CallCounters;
use super::faults::MinerFaults;
use super::replay::{self, Recorded};
use super::telemetry::{snapshot, Model, Snapshot};
use crate::toolkit::proto::bos::v1 as api;
use crate::toolkit::proto::bos::{self as bos_root, ApiVersion, ApiVersionRequest};

/// The firmware version the simulated miners report, in Braiins OS's own format.
pub(crate) const BOS_VERSION: &str = "2026-05-18-0-5c8f0e1a-26.05-plus";

/// Everything one simulated miner knows.
pub(crate) struct MinerShared {
    pub index: usize,
    pub model: &'static Model,
    pub seed: u64,
    pub started: Instant,
    pub(crate) sessions: Sessions,
    pub faults: MinerFaults,
    /// Pause between status stream messages; zero in firehose mode.
    pub status_interval: Duration,
    pub calls: Arc<CallCounters>,
    /// `--replay`: this miner's recorded polls, and the speed.
    pub(crate) replay: Option<(Arc<[Recorded]>, f64)>,
}

#[derive(Clone)]
pub(crate) struct SimMiner(pub Arc<MinerShared>);

impl MinerShared {
    /// Replaying, the recorded answer of a call now; `None` without a recording. A
    /// call the miner did not answer at that time of the recording is UNAVAILABLE.
    fn replayed<M: prost::Message + Default>(
        &self,
        call: fn(&Recorded) -> &Option<Vec<u8>>,
    ) -> Result<Option<M>, Status> {
        let Some((polls, speed)) = &self.replay else {
            return Ok(None);
        };
        let elapsed = self.started.elapsed().mul_f64(*speed);
        let bytes = replay::at(polls, elapsed)
            .and_then(|poll| call(poll).as_ref())
            .ok_or_else(|| Status::unavailable("not answered at this time of the recording"))?;
        M::decode(bytes.as_slice())
            .map(Some)
            .map_err(|e| Status::internal(format!("the recorded answer does not decode: {e}")))
    }

    /// Replaying, the recorded answer to CGMiner API `command` now, as it came; `None`
    /// when the miner did not answer it at that time of the recording.
    pub(crate) fn replayed_text(&self, command: &str) -> Option<String> {
        let (polls, speed) = self.replay.as_ref()?;
        let elapsed = self.started.elapsed().mul_f64(*speed);
        replay::at(polls, elapsed)?.cgminer.get(command).cloned()
    }

    /// The common path of every authenticated call: token, then injected faults.
    async fn enter<T>(&self, request: &Request<T>) -> Result<Snapshot, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.sessions.check(token)?;
        if let Some(delay) = self.faults.slow {
            tokio::time::sleep(delay).await;
        }
        if let Some((code, probability)) = self.faults.error {
            if fastrand::f64() < probability {
                return Err(Status::new(code, "simulated fault"));
            }
        }
        Ok(self.telemetry())
    }

    /// The miner's figures now; absurd ones under the `malformed` fault.
    pub(crate) fn telemetry(&self) -> Snapshot {
        let mut state = snapshot(self.model, self.seed, self.index, self.started.elapsed());
        if self.faults.malformed {
            state.hashrate_ghs = f64::NAN;
            state.power_w = 9.0e9;
            for board in &mut state.boards {
                board.hashrate_ghs = -board.hashrate_ghs;
                board.chip_temp_c = -300.0;
            }
        }
        state
    }
}

fn ghs(value: f64) -> Option<api::GigaHashrate> {
    Some(api::GigaHashrate {
        gigahash_per_second: value,
    })
}

fn celsius(value: f64) -> Option<api::Temperature> {
    Some(api::Temperature { degree_c: value })
}

fn real_hashrate(value: f64) -> Option<api::RealHashrate> {
    Some(api::RealHashrate {
        last_5s: ghs(value * 1.004),
        last_15s: ghs(value * 0.998),
        last_30s: ghs(value),
        last_1m: ghs(value),
        last_5m: ghs(value * 1.001),
        last_15m: ghs(value * 0.999),
        last_30m: ghs(value),
        last_1h: ghs(value),
        last_24h: ghs(value),
        since_restart: ghs(value),
    })
}

#[tonic::async_trait]
impl bos_root::api_version_service_server::ApiVersionService for SimMiner {
    async fn get_api_version(
        &self,
        _request: Request<ApiVersionRequest>,
    ) -> Result<Response<ApiVersion>, Status> {
        let (major, minor) = if self.0.faults.old_api {
            (0, 9)
        } else {
            (1, 2)
        };
        Ok(Response::new(ApiVersion {
            major,
            minor,
            patch: 0,
            pre: String::new(),
            build: "rigtap-sim".into(),
        }))
    }
}

#[tonic::async_trait]
impl api::authentication_service_server::AuthenticationService for SimMiner {
    async fn login(
        &self,
        request: Request<api::LoginRequest>,
    ) -> Result<Response<api::LoginResponse>, Status> {
        let login = request.into_inner();
        self.0.calls.logins.fetch_add(1, Relaxed);
        if self.0.faults.auth_fail {
            return Err(Status::unauthenticated("Bad credentials"));
        }
        let token = self.0.sessions.login(&login.username, &login.password)?;
        let mut response = Response::new(api::LoginResponse {
            token: token.clone(),
            timeout_s: self.0.sessions.timeout().as_secs() as u32,
        });
        if let Ok(value) = token.parse() {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<api::GetMinerStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl api::miner_service_server::MinerService for SimMiner {
    type GetMinerStatusStream = StatusStream;

    async fn get_miner_status(
        &self,
        request: Request<api::GetMinerStatusRequest>,
    ) -> Result<Response<StatusStream>, Status> {
        self.0.enter(&request).await?;
        self.0.calls.status_streams.fetch_add(1, Relaxed);
        let shared = self.0.clone();
        let stream = futures_util::stream::unfold(true, move |first| {
            let shared = shared.clone();
            async move {
                if !first {
                    if shared.faults.stall {
                        std::future::pending::<()>().await;
                    }
                    if shared.status_interval.is_zero() {
                        tokio::task::yield_now().await;
                    } else {
                        tokio::time::sleep(shared.status_interval).await;
                    }
                }
                let status = api::GetMinerStatusResponse {
                    status: api::MinerStatus::Normal as i32,
                };
                Some((Ok(status), false))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_miner_details(
        &self,
        request: Request<api::GetMinerDetailsRequest>,
    ) -> Result<Response<api::GetMinerDetailsResponse>, Status> {
        let state = self.0.enter(&request).await?;
        if let Some(answer) = self.0.replayed(|p| &p.details)? {
            return Ok(Response::new(answer));
        }
        let i = self.0.index;
        let model = self.0.model;
        Ok(Response::new(api::GetMinerDetailsResponse {
            uid: format!("sim-{i:05}"),
            miner_identity: Some(api::MinerIdentity {
                brand: api::MinerBrand::Antminer as i32,
                name: model.name.into(),
                miner_model: model.name.into(),
                ..Default::default()
            }),
            // As the firmware writes it: <build date>-<n>-<commit>-<version>-plus.
            bos_version: Some(api::BosVersion {
                current: BOS_VERSION.into(),
                major: "26.05".into(),
                bos_plus: true,
            }),
            hostname: format!("miner-{i:05}"),
            mac_address: format!(
                "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
                (i >> 24) & 0xff,
                (i >> 16) & 0xff,
                (i >> 8) & 0xff,
                i & 0xff
            ),
            sticker_hashrate: ghs(model.nominal_ghs),
            bosminer_uptime_s: state.uptime_s,
            system_uptime_s: state.uptime_s + 60,
            status: api::MinerStatus::Normal as i32,
            kernel_version: "6.6.0".into(),
            serial_number: Some(format!("SIM{i:08}")),
            ..Default::default()
        }))
    }

    async fn get_miner_stats(
        &self,
        request: Request<api::GetMinerStatsRequest>,
    ) -> Result<Response<api::GetMinerStatsResponse>, Status> {
        let state = self.0.enter(&request).await?;
        if let Some(answer) = self.0.replayed(|p| &p.stats)? {
            return Ok(Response::new(answer));
        }
        Ok(Response::new(api::GetMinerStatsResponse {
            pool_stats: Some(pool_stats(&state)),
            miner_stats: Some(api::WorkSolverStats {
                real_hashrate: real_hashrate(state.hashrate_ghs),
                nominal_hashrate: ghs(self.0.model.nominal_ghs),
                error_hashrate: Some(api::MegaHashrate {
                    megahash_per_second: state.hashrate_ghs * 1000.0 * 0.0005,
                }),
                ..Default::default()
            }),
            power_stats: Some(api::MinerPowerStats {
                approximated_consumption: Some(api::Power {
                    watt: state.power_w.max(0.0) as u64,
                }),
                efficiency: Some(api::PowerEfficiency {
                    joule_per_terahash: state.efficiency_jth(),
                }),
            }),
        }))
    }

    async fn get_hashboards(
        &self,
        request: Request<api::GetHashboardsRequest>,
    ) -> Result<Response<api::GetHashboardsResponse>, Status> {
        let state = self.0.enter(&request).await?;
        if let Some(answer) = self.0.replayed(|p| &p.hashboards)? {
            return Ok(Response::new(answer));
        }
        let model = self.0.model;
        let hashboards = state
            .boards
            .iter()
            .enumerate()
            .map(|(b, board)| api::Hashboard {
                id: (b + 1).to_string(),
                enabled: board.enabled,
                chips_count: Some(model.chips_per_board),
                current_voltage: Some(api::Voltage {
                    volt: model.voltage_v,
                }),
                current_frequency: Some(api::Frequency {
                    hertz: model.frequency_mhz * 1e6,
                }),
                highest_chip_temp: Some(api::TemperatureSensor {
                    id: Some(b as u32),
                    location: api::SensorLocation::Chip as i32,
                    temperature: celsius(board.chip_temp_c),
                }),
                board_temp: celsius(board.board_temp_c),
                lowest_water_inlet_temp: board.water_c.and_then(|(inlet, _)| celsius(inlet)),
                highest_water_outlet_temp: board.water_c.and_then(|(_, outlet)| celsius(outlet)),
                stats: Some(api::WorkSolverStats {
                    real_hashrate: real_hashrate(board.hashrate_ghs),
                    nominal_hashrate: ghs(model.nominal_ghs / f64::from(model.boards)),
                    ..Default::default()
                }),
                model: Some(model.name.into()),
                board_name: self.0.faults.oversized.then(|| "x".repeat(2 << 20)),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(api::GetHashboardsResponse { hashboards }))
    }
}

fn pool_stats(state: &Snapshot) -> api::PoolStats {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    api::PoolStats {
        accepted_shares: state.accepted,
        rejected_shares: state.rejected,
        stale_shares: state.stale,
        last_difficulty: 262_144,
        generated_work: state.accepted * 262_144,
        last_share_time: Some(prost_types::Timestamp {
            seconds: now.as_secs() as i64 - 1,
            nanos: 0,
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl api::cooling_service_server::CoolingService for SimMiner {
    async fn get_cooling_state(
        &self,
        request: Request<api::GetCoolingStateRequest>,
    ) -> Result<Response<api::GetCoolingStateResponse>, Status> {
        let state = self.0.enter(&request).await?;
        if let Some(answer) = self.0.replayed(|p| &p.cooling)? {
            return Ok(Response::new(answer));
        }
        let fans = state
            .fan_rpm
            .iter()
            .enumerate()
            .map(|(position, rpm)| api::FanState {
                position: Some(position as u32),
                rpm: *rpm,
                target_speed_ratio: Some(f64::from(*rpm) / 7_000.0),
            })
            .collect();
        Ok(Response::new(api::GetCoolingStateResponse {
            fans,
            highest_temperature: Some(api::TemperatureSensor {
                id: None,
                location: api::SensorLocation::Chip as i32,
                temperature: celsius(state.highest_chip_temp_c()),
            }),
        }))
    }
}

#[tonic::async_trait]
impl api::pool_service_server::PoolService for SimMiner {
    async fn get_pool_groups(
        &self,
        request: Request<api::GetPoolGroupsRequest>,
    ) -> Result<Response<api::GetPoolGroupsResponse>, Status> {
        let state = self.0.enter(&request).await?;
        if let Some(answer) = self.0.replayed(|p| &p.pools)? {
            return Ok(Response::new(answer));
        }
        let worker = format!("rigtap.sim{:05}", self.0.index);
        Ok(Response::new(api::GetPoolGroupsResponse {
            pool_groups: vec![api::PoolGroup {
                name: "default".into(),
                uid: "group-1".into(),
                strategy: Some(api::pool_group::Strategy::Quota(api::Quota { value: 1 })),
                pools: vec![
                    api::Pool {
                        uid: "pool-1".into(),
                        url: "stratum+tcp://pool.example:3333".into(),
                        user: worker.clone(),
                        enabled: true,
                        alive: true,
                        active: true,
                        stats: Some(pool_stats(&state)),
                    },
                    // A backup pool not in use has its stats all the same, at zero.
                    api::Pool {
                        uid: "pool-2".into(),
                        url: "stratum+tcp://backup.example:3333".into(),
                        user: worker,
                        enabled: true,
                        alive: false,
                        active: false,
                        stats: Some(api::PoolStats::default()),
                    },
                ],
            }],
        }))
    }
}

#[tonic::async_trait]
impl api::actions_service_server::ActionsService for SimMiner {
    async fn get_locate_device_status(
        &self,
        request: Request<api::GetLocateDeviceStatusRequest>,
    ) -> Result<Response<api::LocateDeviceStatusResponse>, Status> {
        self.0.enter(&request).await?;
        Ok(Response::new(api::LocateDeviceStatusResponse {
            enabled: false,
        }))
    }
}

#[tonic::async_trait]
impl api::performance_service_server::PerformanceService for SimMiner {
    async fn get_tuner_state(
        &self,
        request: Request<api::GetTunerStateRequest>,
    ) -> Result<Response<api::GetTunerStateResponse>, Status> {
        let state = self.0.enter(&request).await?;
        let target = Some(api::Power {
            watt: self.0.model.power_w as u64,
        });
        let tuned = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(Duration::from_secs(state.uptime_s));
        use api::get_tuner_state_response::ModeState;
        Ok(Response::new(api::GetTunerStateResponse {
            overall_tuner_state: api::TunerState::Stable as i32,
            mode_state: Some(ModeState::PowerTargetModeState(api::PowerTargetModeState {
                profile: Some(api::PowerTargetProfile {
                    created: Some(prost_types::Timestamp {
                        seconds: tuned.as_secs() as i64,
                        nanos: 0,
                    }),
                    target,
                    measured_hashrate: ghs(self.0.model.nominal_ghs),
                    estimated_power_consumption: Some(api::Power {
                        watt: state.power_w as u64,
                    }),
                }),
                current_target: target,
            })),
        }))
    }

    async fn get_active_performance_mode(
        &self,
        request: Request<api::GetPerformanceModeRequest>,
    ) -> Result<Response<api::PerformanceMode>, Status> {
        self.0.enter(&request).await?;
        use api::performance_mode::Mode;
        use api::tuner_performance_mode::Target;
        Ok(Response::new(api::PerformanceMode {
            mode: Some(Mode::TunerMode(api::TunerPerformanceMode {
                target: Some(Target::PowerTarget(api::PowerTargetMode {
                    power_target: Some(api::Power {
                        watt: self.0.model.power_w as u64,
                    }),
                })),
            })),
        }))
    }
}
