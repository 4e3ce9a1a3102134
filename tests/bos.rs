//! The `bos` source against the simulated fleet over real gRPC on loopback: every
//! miner streamed and polled over one connection, outages and recovery, the connect
//! governor under a reconnect storm, stalled streams, credentials, TLS, the connection
//! cap, and backpressure from a blocked sink.
//!
//! Each test's fleet gets a free block of loopback addresses, so they run in parallel.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rigtap::sim::faults::{FaultKind, FaultRule};
use rigtap::sim::{Fleet, SimTls};
use rigtap::toolkit::sample::{MinerState, SampleKind, StatusCode};
use rigtap::toolkit::units::HumanDuration;

use support::collector::{
    collect, expect_samples_from_every_miner, ids, in_state, miners_with, states_reported,
};
use support::{fault, sim_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_miner_streams_and_polls_over_one_connection() {
    let fleet = Fleet::start(sim_config(200)).await.unwrap();
    // 200 miners x 5 polls a second ask twice the 500 calls/s of the development
    // profile: polls run late, but every miner still gets its turn for its login and
    // stream (the governors queue their waiters; see `fair_rate`).
    let mut collector = collect(&fleet, "interval: 1s\nrate: {connects: 200}");
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(30), &mut seen, |s| {
            miners_with(s, SampleKind::Miner).len() == 200
                && miners_with(s, SampleKind::Board).len() == 200
        })
        .await;
    for i in 0..200 {
        let counters = fleet.counters(i);
        assert_eq!(
            counters.accepted.load(Relaxed),
            1,
            "miner {i}: one connection, reused"
        );
        assert_eq!(counters.open.load(Relaxed), 1, "miner {i}: still open");
        assert_eq!(
            fleet.calls(i).status_streams.load(Relaxed),
            1,
            "miner {i}: one stream"
        );
        assert_eq!(
            fleet.calls(i).logins.load(Relaxed),
            1,
            "miner {i}: one login"
        );
    }
    let miner = seen.iter().find(|s| s.kind == SampleKind::Miner).unwrap();
    let (hashrate, nominal) = (
        miner.hashrate_ths.unwrap(),
        miner.hashrate_nominal_ths.unwrap(),
    );
    assert!(
        (90.0..500.0).contains(&nominal),
        "TH/s, not GH/s: {nominal}"
    );
    assert!(
        hashrate > 0.0 && hashrate < 1.1 * nominal,
        "{hashrate} of {nominal}"
    );
    assert!(miner.power_w.unwrap() > 2000.0);
    assert_eq!(miner.miner_status.as_deref(), Some("normal"));
    assert!(
        miner.labels["site"].starts_with("site-") && miner.labels.contains_key("rack"),
        "inventory columns are labels"
    );
    assert_eq!(in_state(&seen, MinerState::Online), ids(0..200));
    assert_eq!(collector.stats.in_state(MinerState::Online), 200);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_miners_go_offline_and_come_back_without_leaking_tasks() {
    let mut fleet = Fleet::start(sim_config(50)).await.unwrap();
    let mut collector = collect(
        &fleet,
        "interval: 500ms\nbackoff: {initial: 100ms, max: 500ms}\nbreaker: {failure_threshold: 3, open_for: 500ms}",
    );
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(20), &mut seen, |s| {
            in_state(s, MinerState::Online).len() == 50
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();

    for i in 0..10 {
        fleet.kill(i).await;
    }
    seen.clear();
    collector
        .until(Duration::from_secs(20), &mut seen, |s| {
            in_state(s, MinerState::Offline) == ids(0..10)
        })
        .await;
    let offline = seen
        .iter()
        .find(|s| s.state == Some(MinerState::Offline))
        .unwrap();
    assert!(
        offline
            .message
            .as_deref()
            .unwrap()
            .contains("check that the miner"),
        "{offline:?}"
    );
    for i in 0..10 {
        fleet.restart(i).await.unwrap();
    }
    seen.clear();
    collector
        .until(Duration::from_secs(20), &mut seen, |s| {
            in_state(s, MinerState::Online) == ids(0..10)
        })
        .await;
    assert!(
        in_state(&seen, MinerState::Offline).is_disjoint(&ids(10..50)),
        "the miners that stayed up were never reported offline"
    );

    // Tasks of the old connections are gone: the count settles back to where it was.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        while let Ok(batch) = collector.batches.try_recv() {
            drop(batch);
        }
        let alive = metrics.num_alive_tasks();
        if alive <= baseline {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{alive} tasks alive, {baseline} before the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_never_exceeds_the_connect_governor() {
    const LIMIT: u64 = 40;
    let mut fleet = Fleet::start(sim_config(200)).await.unwrap();
    let mut collector = collect(
        &fleet,
        &format!("interval: 2s\nrate: {{connects: {LIMIT}}}\nbackoff: {{initial: 50ms, max: 200ms}}\nbreaker: {{failure_threshold: 1000, open_for: 1s}}"),
    );
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(30), &mut seen, |s| {
            in_state(s, MinerState::Online).len() == 200
        })
        .await;
    let first_peak = fleet.connect_rate().peak_per_second();

    // The whole fleet drops at once and is back at once: every miner reconnects.
    fleet.connect_rate().reset();
    for i in 0..200 {
        fleet.restart(i).await.unwrap();
    }
    collector
        .until(Duration::from_secs(30), &mut seen, |_| {
            (0..200).all(|i| fleet.counters(i).accepted.load(Relaxed) >= 2)
        })
        .await;
    let storm_peak = fleet.connect_rate().peak_per_second();
    let attempts = collector.stats.connect_attempts.load(Relaxed);
    collector.stop().await;
    assert!(
        first_peak <= LIMIT,
        "start-up peaked at {first_peak}/s, limit {LIMIT}/s"
    );
    assert!(
        storm_peak <= LIMIT,
        "the storm peaked at {storm_peak}/s, limit {LIMIT}/s"
    );
    assert!(
        storm_peak >= LIMIT / 2,
        "the governor, not something else, set the pace: {storm_peak}/s"
    );
    assert!(attempts >= 400, "everyone connected twice: {attempts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_are_detected_and_reopened() {
    let mut config = sim_config(4);
    config.faults = vec![fault(FaultKind::Stall, &[0, 1])];
    let fleet = Fleet::start(config).await.unwrap();
    let mut collector = collect(
        &fleet,
        "interval: 300ms\nstream_idle_timeout: 700ms\nrate: {rpcs_per_miner: 50}",
    );
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(15), &mut seen, |_| {
            fleet.calls(0).status_streams.load(Relaxed) >= 3
                && fleet.calls(1).status_streams.load(Relaxed) >= 3
        })
        .await;
    assert_eq!(
        fleet.calls(2).status_streams.load(Relaxed),
        1,
        "a live stream is left alone"
    );
    assert!(
        fleet.counters(0).accepted.load(Relaxed) == 1,
        "re-opened on the same connection"
    );
    seen.clear();
    collector
        .until(Duration::from_secs(10), &mut seen, |s| {
            miners_with(s, SampleKind::Miner).len() == 4
        })
        .await;
    assert!(collector.stats.stream_reopens.load(Relaxed) >= 4);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_once_and_not_hammered() {
    let fleet = Fleet::start(sim_config(10)).await.unwrap();
    let mut collector = collect(
        &fleet,
        "password: wrong\nbreaker: {failure_threshold: 1, open_for: 2s}",
    );
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(15), &mut seen, |s| {
            in_state(s, MinerState::AuthFailed).len() == 10
        })
        .await;
    let failed = seen
        .iter()
        .find(|s| s.state == Some(MinerState::AuthFailed))
        .unwrap();
    let message = failed.message.as_deref().unwrap();
    assert!(
        message.contains("login as `root` was refused: Bad credentials"),
        "{message}"
    );
    assert!(
        message.contains("check `username` and `password`"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..10 {
        let logins = fleet.calls(i).logins.load(Relaxed);
        assert_eq!(
            logins, 1,
            "miner {i}: one refused login, then quiet until auth_retry"
        );
    }
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_renewed_without_a_gap() {
    let mut config = sim_config(3);
    config.session_timeout = Duration::from_millis(300);
    let fleet = Fleet::start(config).await.unwrap();
    // Poll-only, every 600ms: every poll finds its session expired. (Each expiry costs
    // a login and five retries, so the per-miner call budget is raised to keep up.)
    let mut collector = collect(
        &fleet,
        "interval: 600ms\njitter: 0\nstream: false\nrate: {rpcs_per_miner: 50}",
    );
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(15), &mut seen, |s| {
            s.iter()
                .filter(|s| s.kind == SampleKind::Miner && &*s.miner_id == "sim-00000")
                .count()
                >= 5
        })
        .await;
    let logins = fleet.calls(0).logins.load(Relaxed);
    assert!(logins >= 4, "a re-login per expired session: {logins}");
    let states = states_reported(&seen);
    assert_eq!(
        states,
        BTreeSet::from(["connecting", "online"]),
        "nothing else was reported"
    );
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mtls_and_a_wrong_ca() {
    let certs = support::pki::pki();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let ca = write("ca.pem", &certs.ca);
    let other_ca = write("other-ca.pem", &support::pki::pki().ca);
    let client_cert = write("client.pem", &certs.client.0);
    let client_key = write("client.key", &certs.client.1);
    let tls = |client_ca: bool| {
        Some(SimTls {
            cert: certs.server.0.clone().into_bytes(),
            key: certs.server.1.clone().into_bytes(),
            client_ca: client_ca.then(|| certs.ca.clone().into_bytes()),
        })
    };

    let mut config = sim_config(3);
    config.tls = tls(false);
    let fleet = Fleet::start(config).await.unwrap();
    let trusted = format!("tls: {{ca_file: {ca}, server_name: miner.sim}}");
    expect_samples_from_every_miner(&fleet, &trusted, 3).await;

    let collector = collect(
        &fleet,
        &format!("tls: {{ca_file: {other_ca}, server_name: miner.sim}}"),
    );
    let message = offline_message(collector, Duration::from_secs(15), 3).await;
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    assert!(
        message.contains("is not signed by the CA of `tls.ca_file`"),
        "{message}"
    );
    drop(fleet);

    let mut config = sim_config(3);
    config.tls = tls(true);
    let fleet = Fleet::start(config).await.unwrap();
    let mtls = format!("tls: {{ca_file: {ca}, server_name: miner.sim, cert_file: {client_cert}, key_file: {client_key}}}");
    expect_samples_from_every_miner(&fleet, &mtls, 3).await;
    // Without a client certificate, a miner that requires one refuses the handshake.
    let message = offline_message(collect(&fleet, &trusted), Duration::from_secs(15), 3).await;
    assert!(
        message.contains("wants a client certificate it trusts (mTLS)"),
        "{message}"
    );
    drop(fleet);

    // TLS to a miner that serves plaintext (as Braiins OS does) says so.
    let fleet = Fleet::start(sim_config(3)).await.unwrap();
    let message = offline_message(collect(&fleet, &trusted), Duration::from_secs(15), 3).await;
    assert!(message.contains("answers in plaintext"), "{message}");
}

/// Waits until all `miners` of `collector` are offline, stops it, and returns the
/// message of the first offline status.
async fn offline_message(
    mut collector: support::collector::Collector,
    limit: Duration,
    miners: usize,
) -> String {
    let mut seen = Vec::new();
    collector
        .until(limit, &mut seen, |s| {
            in_state(s, MinerState::Offline).len() == miners
        })
        .await;
    collector.stop().await;
    let offline = seen.iter().find(|s| s.state == Some(MinerState::Offline));
    offline
        .and_then(|s| s.message.clone())
        .expect("an offline status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_firmware_is_reported_as_unsupported_and_gzip_works() {
    let mut config = sim_config(2);
    config.faults = vec![fault(FaultKind::OldApi, &[1])];
    let fleet = Fleet::start(config).await.unwrap();
    // Compressed both ways, which the simulator accepts.
    let mut collector = collect(&fleet, "interval: 500ms\ncompression: gzip");
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(15), &mut seen, |s| {
            !in_state(s, MinerState::Unsupported).is_empty()
                && !miners_with(s, SampleKind::Miner).is_empty()
        })
        .await;
    assert_eq!(in_state(&seen, MinerState::Unsupported), ids(1..2));
    assert_eq!(
        miners_with(&seen, SampleKind::Miner),
        ids(0..1),
        "nothing is read from old firmware"
    );
    let message = seen
        .iter()
        .find_map(|s| {
            (s.state == Some(MinerState::Unsupported)).then(|| s.message.clone().unwrap())
        })
        .unwrap();
    assert!(
        message.contains("API 0.9") && message.contains("upgrade the firmware"),
        "{message}"
    );
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_only_miners_share_a_capped_pool() {
    let fleet = Fleet::start(sim_config(12)).await.unwrap();
    let mut collector = collect(&fleet, "interval: 400ms\nstream: false\nmax_connections: 4\nrate: {connects: 100, rpcs_per_miner: 50}");
    let mut seen = Vec::new();
    let gauge = collector.stats.clone();
    let mut most_held = 0;
    collector
        .until(Duration::from_secs(20), &mut seen, |s| {
            most_held = most_held.max(gauge.connections_open.load(Relaxed));
            let mut per_miner: BTreeMap<&str, usize> = BTreeMap::new();
            for sample in s.iter().filter(|s| s.kind == SampleKind::Miner) {
                *per_miner.entry(&sample.miner_id).or_default() += 1;
            }
            per_miner.len() == 12 && per_miner.values().all(|n| *n >= 3)
        })
        .await;
    // The cap counts the collector's channels. (The simulator's own count can lag by a
    // close in flight: an evicted socket closes a moment after its replacement opens.)
    assert!(
        most_held <= 4,
        "at most 4 channels held at once, saw {most_held}"
    );
    let accepted: u64 = (0..12)
        .map(|i| fleet.counters(i).accepted.load(Relaxed))
        .sum();
    assert!(
        accepted > 12,
        "evicted miners reconnected: {accepted} connections for 12 miners"
    );
    collector.stop().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while fleet.open_connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "evicted and stopped connections all close"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_recycled_after_their_ttl_without_a_gap() {
    recycled_without_a_gap("stream: true").await;
}

/// A poll-only miner's parked connection retires as a streaming miner's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_only_connections_are_recycled_after_their_ttl_without_a_gap() {
    recycled_without_a_gap("stream: false").await;
}

async fn recycled_without_a_gap(stream: &str) {
    let fleet = Fleet::start(sim_config(5)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "root\n").unwrap();
    let mut collector = collect(
        &fleet,
        &format!(
            "password_file: {}\ninterval: 500ms\nconnection_ttl: 1s\n{stream}",
            password.display()
        ),
    );
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(15), &mut seen, |_| {
            (0..5).all(|i| fleet.counters(i).accepted.load(Relaxed) >= 3)
        })
        .await;
    let states = states_reported(&seen);
    assert_eq!(
        states,
        BTreeSet::from(["connecting", "online"]),
        "a recycle is not an outage"
    );
    collector.stop().await;
}

/// A miner whose every poll takes at least 300 ms, polled every 200 ms: each poll
/// comes due at least 100 ms late, and each whole interval lost is a missed poll,
/// `late`, in a gap sample; the ledger balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_slower_than_their_interval_are_counted_late() {
    let mut config = sim_config(2);
    config.faults = vec![FaultRule {
        delay: Some(HumanDuration(Duration::from_millis(300))),
        ..fault(FaultKind::Slow, &[0])
    }];
    let fleet = Fleet::start(config).await.unwrap();
    let mut collector = collect(
        &fleet,
        "interval: 200ms\njitter: 0\nstream: false\ntimeout: 2s\nrate: {rpcs_per_miner: 100}",
    );
    let stats = collector.stats.clone();
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(30), &mut seen, |_| {
            stats.polls_late.load(Relaxed) >= 8
        })
        .await;
    seen.extend(collector.stop().await);

    let late = |miner: &str| -> u64 {
        seen.iter()
            .filter(|s| s.kind == SampleKind::Gap && &*s.miner_id == miner)
            .inspect(|s| assert_eq!(s.code, Some(StatusCode::Late), "{s:?}"))
            .map(|s| u64::from(s.missed.unwrap()))
            .sum()
    };
    let received = |miner: &str| {
        seen.iter()
            .filter(|s| s.kind == SampleKind::Miner && &*s.miner_id == miner)
            .count() as f64
    };
    let (slow, fast) = (late("sim-00000"), late("sim-00001"));
    assert_eq!(slow + fast, stats.polls_late.load(Relaxed));
    // Each poll after the first came due at least 100 ms late, less 2 ms of slack.
    let polls = received("sim-00000");
    assert!(
        slow as f64 >= 0.49 * (polls - 1.0) - 1.0,
        "{slow} late of {polls} polls"
    );
    let (expected, received, missed) = (
        stats.polls_expected.load(Relaxed),
        stats.polls_received.load(Relaxed),
        stats.polls_missed.load(Relaxed),
    );
    assert_eq!(expected, received + missed);
    assert_eq!(missed, slow + fast, "nothing else was missed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_makes_no_connection_attempts() {
    let mut config = sim_config(1);
    config.faults = vec![fault(FaultKind::Refuse, &[0])];
    let fleet = Fleet::start(config).await.unwrap();
    let mut collector = collect(
        &fleet,
        "backoff: {initial: 50ms, max: 100ms}\nbreaker: {failure_threshold: 3, open_for: 3s}",
    );
    let attempts = collector.stats.clone();
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(15), &mut seen, |_| {
            attempts.connect_attempts.load(Relaxed) >= 3
        })
        .await;
    // The third failure opened the breaker for 3 s: a second later, still no new attempt.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(attempts.connect_attempts.load(Relaxed), 3);
    assert_eq!(attempts.breaker_open.load(Relaxed), 1);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_wait_for_the_governors_and_keeps_every_state_change() {
    let fleet = Fleet::start(sim_config(100)).await.unwrap();
    // Bringing 100 miners online takes 300 calls, 15 s at 20 calls/s.
    let mut collector = collect(&fleet, "interval: 1s\nrate: {connects: 200, rpcs: 20}");
    let mut seen = Vec::new();
    collector
        .until(Duration::from_secs(20), &mut seen, |s| {
            in_state(s, MinerState::Online).len() >= 10
        })
        .await;
    let stats = collector.stats.clone();
    // The stop comes while most miners wait for their turn: they end at once rather
    // than make their calls (the old behaviour took over 10 s here), and every state
    // change counted is also emitted.
    let stopping = Instant::now();
    seen.extend(collector.stop().await);
    let online = in_state(&seen, MinerState::Online);
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        stopping.elapsed()
    );
    assert!(online.len() < 100, "the stop came during setup: {online:?}");
    assert_eq!(online.len() as i64, stats.in_state(MinerState::Online));
    assert_eq!(in_state(&seen, MinerState::Connecting), ids(0..100));
}
