//! The simulator seen from real tonic clients over loopback: login, every call, the
//! status stream, token expiry, TLS and mTLS, and each injected fault.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rigtap::sim::faults::FaultKind;
use rigtap::sim::{Fleet, SimConfig, SimTls};
use rigtap::toolkit::proto::bos::api_version_service_client::ApiVersionServiceClient;
use rigtap::toolkit::proto::bos::v1 as api;
use rigtap::toolkit::proto::bos::ApiVersionRequest;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request};

use support::fault;
use support::pki::pki;

use api::authentication_service_client::AuthenticationServiceClient;
use api::cooling_service_client::CoolingServiceClient;
use api::miner_service_client::MinerServiceClient;
use api::performance_service_client::PerformanceServiceClient;
use api::pool_service_client::PoolServiceClient;

/// A fleet on a free block of loopback addresses, streaming status every 100 ms.
fn config(miners: usize) -> SimConfig {
    SimConfig {
        seed: 42,
        status_interval: Duration::from_millis(100),
        ..support::sim_config(miners)
    }
}

async fn channel(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
}

async fn login(channel: &Channel, password: &str) -> Result<String, tonic::Status> {
    let response = AuthenticationServiceClient::new(channel.clone())
        .login(api::LoginRequest {
            username: "root".into(),
            password: password.into(),
        })
        .await?;
    let header = response
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.into_inner();
    assert_eq!(
        header.as_deref(),
        Some(body.token.as_str()),
        "token in header and body"
    );
    assert_eq!(body.timeout_s, 3600);
    Ok(body.token)
}

fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", token.parse().unwrap());
    request
}

#[tokio::test]
async fn login_every_call_and_the_stream() {
    let fleet = Fleet::start(config(2)).await.unwrap();
    let ch = channel(fleet.address(1)).await.unwrap();

    let version = ApiVersionServiceClient::new(ch.clone())
        .get_api_version(ApiVersionRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((version.major, version.minor), (1, 2), "no login needed");

    let denied = login(&ch, "wrong").await.unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    assert_eq!(denied.message(), "Bad credentials");
    let token = login(&ch, "root").await.unwrap();
    assert_eq!(token.len(), 16);

    let mut miner = MinerServiceClient::new(ch.clone());
    let unauthenticated = miner
        .get_miner_stats(api::GetMinerStatsRequest {})
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);

    let details = miner
        .get_miner_details(authed(&token, api::GetMinerDetailsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(details.uid, "sim-00001");
    assert_eq!(details.status, api::MinerStatus::Normal as i32);
    assert!(details.miner_identity.unwrap().name.starts_with("Antminer"));

    let stats = miner
        .get_miner_stats(authed(&token, api::GetMinerStatsRequest {}))
        .await
        .unwrap()
        .into_inner();
    let work = stats.miner_stats.unwrap();
    let ghs = work
        .real_hashrate
        .unwrap()
        .last_1m
        .unwrap()
        .gigahash_per_second;
    let nominal = work.nominal_hashrate.unwrap().gigahash_per_second;
    assert!(
        ghs > 0.6 * nominal && ghs < 1.05 * nominal,
        "{ghs} of {nominal}"
    );
    let watts = stats
        .power_stats
        .unwrap()
        .approximated_consumption
        .unwrap()
        .watt;
    assert!((2_000..4_000).contains(&watts), "{watts} W");

    let boards = miner
        .get_hashboards(authed(&token, api::GetHashboardsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .hashboards;
    assert_eq!(boards.len(), 3);
    assert_eq!(boards[0].id, "1");
    assert!(boards[0].chips_count.unwrap() >= 65);
    let hz = boards[0].current_frequency.unwrap().hertz;
    assert!((400e6..700e6).contains(&hz), "frequency in Hz: {hz}");

    let cooling = CoolingServiceClient::new(ch.clone())
        .get_cooling_state(authed(&token, api::GetCoolingStateRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cooling.fans.len(), 4);
    assert!(cooling.fans.iter().all(|f| (5_600..6_200).contains(&f.rpm)));

    let pools = PoolServiceClient::new(ch.clone())
        .get_pool_groups(authed(&token, api::GetPoolGroupsRequest {}))
        .await
        .unwrap()
        .into_inner();
    let pool = &pools.pool_groups[0].pools;
    assert!(pool[0].alive && pool[0].active);
    assert!(!pool[1].alive, "absent on the wire reads as false");

    let mode = PerformanceServiceClient::new(ch.clone())
        .get_active_performance_mode(authed(&token, api::GetPerformanceModeRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        mode.mode,
        Some(api::performance_mode::Mode::TunerMode(_))
    ));

    let mut stream = miner
        .get_miner_status(authed(&token, api::GetMinerStatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        let message = tokio::time::timeout(Duration::from_secs(2), stream.message())
            .await
            .expect("a status every 100ms")
            .unwrap()
            .unwrap();
        assert_eq!(message.status, api::MinerStatus::Normal as i32);
    }
    assert_eq!(
        fleet
            .counters(1)
            .open
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one connection for everything"
    );
}

#[tokio::test]
async fn tokens_expire_after_inactivity() {
    let mut cfg = config(1);
    cfg.session_timeout = Duration::from_millis(1200);
    let fleet = Fleet::start(cfg).await.unwrap();
    let ch = channel(fleet.address(0)).await.unwrap();
    let response = AuthenticationServiceClient::new(ch.clone())
        .login(api::LoginRequest {
            username: "root".into(),
            password: "root".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut miner = MinerServiceClient::new(ch.clone());
    let call = |miner: &mut MinerServiceClient<Channel>, token: &str| {
        let request = authed(token, api::GetMinerStatsRequest {});
        let mut miner = miner.clone();
        async move { miner.get_miner_stats(request).await }
    };
    // Calls within the timeout keep the session alive past it: five calls 400 ms apart
    // span 2 s, and each gap leaves 800 ms to spare on a loaded machine.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        call(&mut miner, &response.token).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let expired = call(&mut miner, &response.token).await.unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated);
    assert_eq!(expired.message(), "session expired; log in again");
}

async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("miner.sim");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
}

#[tokio::test]
async fn tls_and_mtls_handshakes() {
    let certs = pki();
    let mut cfg = config(1);
    cfg.tls = Some(SimTls {
        cert: certs.server.0.clone().into_bytes(),
        key: certs.server.1.clone().into_bytes(),
        client_ca: None,
    });
    let fleet = Fleet::start(cfg).await.unwrap();
    let ch = tls_channel(fleet.address(0), &certs.ca, None)
        .await
        .unwrap();
    login(&ch, "root").await.unwrap();

    let other = pki().ca;
    let wrong_ca = match tls_channel(fleet.address(0), &other, None).await {
        Ok(ch) => login(&ch, "root")
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string(),
        Err(e) => format!("{e:?}"),
    };
    assert!(
        wrong_ca.to_lowercase().contains("certificate") || wrong_ca.contains("transport"),
        "a server signed by another CA is refused: {wrong_ca}"
    );
    drop(fleet);

    let mut cfg = config(1);
    cfg.tls = Some(SimTls {
        cert: certs.server.0.clone().into_bytes(),
        key: certs.server.1.clone().into_bytes(),
        client_ca: Some(certs.ca.clone().into_bytes()),
    });
    let fleet = Fleet::start(cfg).await.unwrap();
    let with_cert = tls_channel(fleet.address(0), &certs.ca, Some(&certs.client))
        .await
        .unwrap();
    login(&with_cert, "root").await.unwrap();
    let without_cert = match tls_channel(fleet.address(0), &certs.ca, None).await {
        Ok(ch) => login(&ch, "root").await.is_err(),
        Err(_) => true,
    };
    assert!(without_cert, "mTLS refuses a client without a certificate");
}

/// Connects, logs in, and opens the status stream of the miner at `addr`.
async fn status_stream(addr: SocketAddr) -> tonic::Streaming<api::GetMinerStatusResponse> {
    let ch = channel(addr).await.unwrap();
    let token = login(&ch, "root").await.unwrap();
    MinerServiceClient::new(ch)
        .get_miner_status(authed(&token, api::GetMinerStatusRequest {}))
        .await
        .unwrap()
        .into_inner()
}

/// True when a new connection to `addr` cannot be used for a login.
async fn refused(addr: SocketAddr) -> bool {
    match channel(addr).await {
        Ok(ch) => login(&ch, "root").await.is_err(),
        Err(_) => true,
    }
}

#[tokio::test]
async fn each_fault_is_seen_by_the_client() {
    use FaultKind::*;
    let kinds = [
        Refuse,
        Unavailable,
        ResourceExhausted,
        Internal,
        Slow,
        Stall,
        ConnectionCap,
        ConnectionRate,
        Drop,
        Malformed,
        Oversized,
        AuthFail,
        OldApi,
    ];
    let mut cfg = config(kinds.len());
    cfg.faults = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| fault(*k, &[i]))
        .collect();
    cfg.faults[4].delay = Some("1s".parse().unwrap());
    cfg.faults[8].after = Some("300ms".parse().unwrap());
    let fleet = Fleet::start(cfg).await.unwrap();
    let addr = |kind: FaultKind| fleet.address(kinds.iter().position(|k| *k == kind).unwrap());

    assert!(channel(addr(Refuse)).await.is_err(), "refused connection");

    for (kind, code) in [
        (Unavailable, Code::Unavailable),
        (ResourceExhausted, Code::ResourceExhausted),
        (Internal, Code::Internal),
    ] {
        let ch = channel(addr(kind)).await.unwrap();
        let token = login(&ch, "root").await.unwrap();
        let err = MinerServiceClient::new(ch)
            .get_miner_stats(authed(&token, api::GetMinerStatsRequest {}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{kind:?}");
    }

    let ch = channel(addr(Slow)).await.unwrap();
    let token = login(&ch, "root").await.unwrap();
    let mut request = authed(&token, api::GetMinerStatsRequest {});
    request.set_timeout(Duration::from_millis(200));
    let err = MinerServiceClient::new(ch)
        .get_miner_stats(request)
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );

    let mut stream = status_stream(addr(Stall)).await;
    assert!(
        stream.message().await.unwrap().is_some(),
        "the first status arrives"
    );
    let next = tokio::time::timeout(Duration::from_millis(600), stream.message()).await;
    assert!(next.is_err(), "then the stream stalls");

    let held = channel(addr(ConnectionCap)).await.unwrap();
    login(&held, "root").await.unwrap();
    assert!(
        refused(addr(ConnectionCap)).await,
        "a second connection over the cap of 1 is closed"
    );

    let mut closed = 0;
    for _ in 0..4 {
        closed += usize::from(refused(addr(ConnectionRate)).await);
    }
    assert!(
        closed >= 2,
        "connections over 1/s are closed ({closed} of 4)"
    );

    let mut stream = status_stream(addr(Drop)).await;
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    })
    .await
    .expect("the connection is cut within 300ms");
    assert!(
        ended.is_err(),
        "a cut connection ends the stream with an error"
    );

    let ch = channel(addr(Malformed)).await.unwrap();
    let token = login(&ch, "root").await.unwrap();
    let stats = MinerServiceClient::new(ch)
        .get_miner_stats(authed(&token, api::GetMinerStatsRequest {}))
        .await
        .unwrap()
        .into_inner();
    let ghs = stats
        .miner_stats
        .unwrap()
        .real_hashrate
        .unwrap()
        .last_1m
        .unwrap()
        .gigahash_per_second;
    assert!(ghs.is_nan());

    let ch = channel(addr(Oversized)).await.unwrap();
    let token = login(&ch, "root").await.unwrap();
    let err = MinerServiceClient::new(ch)
        .get_hashboards(authed(&token, api::GetHashboardsRequest {}))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("message length too large"),
        "{err:?}"
    );

    let ch = channel(addr(AuthFail)).await.unwrap();
    assert_eq!(
        login(&ch, "root").await.unwrap_err().message(),
        "Bad credentials"
    );

    let version = ApiVersionServiceClient::new(channel(addr(OldApi)).await.unwrap())
        .get_api_version(ApiVersionRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((version.major, version.minor), (0, 9));
}

#[tokio::test]
async fn killed_miners_refuse_then_come_back() {
    let mut fleet = Fleet::start(config(3)).await.unwrap();
    let ch = channel(fleet.address(2)).await.unwrap();
    login(&ch, "root").await.unwrap();
    fleet.kill(2).await;
    assert!(
        channel(fleet.address(2)).await.is_err(),
        "a killed miner refuses"
    );
    assert!(
        login(&ch, "root").await.is_err(),
        "its connections are gone"
    );
    fleet.restart(2).await.unwrap();
    let ch = channel(fleet.address(2)).await.unwrap();
    login(&ch, "root").await.unwrap();
    assert!(fleet.connect_rate().peak_per_second() >= 1);
}
