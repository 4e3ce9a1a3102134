//! A real Kafka-protocol broker for the tests: tansu (Apache-2.0, from crates.io;
//! tests/run.sh installs it when absent), on a loopback port, in memory. Topics are
//! created, and what reached the broker read back, by kafka-python
//! (tests/py/kafka_read.py), a client independent of rdkafka.
//!
//! tansu's in-memory storage forgets its topics at a restart, and answers a produce
//! request for a topic it does not know with an unknown server error, which a client
//! takes as final (a real Kafka cluster keeps its topics, and answers
//! UNKNOWN_TOPIC_OR_PARTITION, which librdkafka retries). So a test that restarts
//! the broker uses [`Tansu::start_gated`]: clients reach the broker through a loopback
//! gate that lets only the test's own admin client in until the topics exist again.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::net::free_port;
use super::python::{python, run_script};

pub struct Tansu {
    /// Where clients connect, and what the broker advertises.
    pub port: u16,
    child: Option<Child>,
    gate: Option<Gate>,
}

/// Where the test's admin client connects from, so a closed [`Gate`] knows it.
const ADMIN_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A loopback TCP forwarder in front of the broker. While closed, it turns away every
/// connection but the admin client's, as a stopped broker would (connect, then
/// closed); open, it forwards everything.
struct Gate {
    /// Where the gate listens.
    port: u16,
    /// Where the broker itself listens.
    upstream: u16,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl Gate {
    fn start(listener: TcpListener, upstream: u16) -> Gate {
        let port = listener.local_addr().expect("its address").port();
        let (open, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let accepting = std::thread::spawn({
            let (open, stop) = (open.clone(), stop.clone());
            move || {
                for client in listener.incoming() {
                    if stop.load(SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let admin = client
                        .peer_addr()
                        .is_ok_and(|a| a.ip() == IpAddr::V4(ADMIN_SOURCE));
                    if !open.load(SeqCst) && !admin {
                        continue; // dropped: closed at once
                    }
                    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, upstream));
                    if let Ok(broker) = TcpStream::connect(address) {
                        forward(client, broker);
                    }
                }
            }
        });
        Gate {
            port,
            upstream,
            open,
            stop,
            accepting: Some(accepting),
        }
    }
}

/// Copies both ways until either side closes, then closes both.
fn forward(client: TcpStream, broker: TcpStream) {
    let _ = (client.set_nodelay(true), broker.set_nodelay(true));
    for (mut from, mut to) in [
        (client.try_clone(), broker.try_clone()),
        (broker.try_clone(), client.try_clone()),
    ]
    .into_iter()
    .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
    {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = (from.shutdown(Shutdown::Both), to.shutdown(Shutdown::Both));
        });
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Wakes the accepting thread, which then sees `stop` and ends.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(thread) = self.accepting.take() {
            let _ = thread.join();
        }
    }
}

/// The tansu binary: on PATH, or where `cargo install` puts it.
fn tansu_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|p| p.exists());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    on_path
        .or_else(|| {
            cargo_home
                .map(|c| c.join("bin/tansu"))
                .filter(|p| p.exists())
        })
        .expect("tansu is not installed; run ./tests/run.sh once, which installs it")
}

impl Tansu {
    /// Starts a broker on a free loopback port and waits until it accepts connections.
    pub fn start() -> Tansu {
        let mut tansu = Tansu {
            port: free_port(),
            child: None,
            gate: None,
        };
        tansu.restart();
        tansu
    }

    /// Starts a broker behind a [`Gate`], so [`Tansu::restart_with_topics`] can
    /// create the topics again before any other client reaches it.
    pub fn start_gated() -> Tansu {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a loopback port");
        let gate = Gate::start(listener, free_port());
        let mut tansu = Tansu {
            port: gate.port,
            child: None,
            gate: Some(gate),
        };
        tansu.restart();
        tansu.open_gate();
        tansu
    }

    fn open_gate(&self) {
        if let Some(gate) = &self.gate {
            gate.open.store(true, SeqCst);
        }
    }

    /// Restarts the broker empty and creates `topics` before anyone but the test's
    /// admin client can reach it: like a real cluster's restart, whose topics stay.
    pub fn restart_with_topics(&mut self, topics: &[&str], partitions: u32) {
        let gate = self
            .gate
            .as_ref()
            .expect("a broker started with Tansu::start_gated");
        gate.open.store(false, SeqCst);
        self.restart();
        self.create_topics(topics, partitions);
        self.open_gate();
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (its in-memory storage goes with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        let advertised = format!("tcp://{}", self.bootstrap());
        let listen_port = self.gate.as_ref().map_or(self.port, |g| g.upstream);
        let listener = format!("tcp://127.0.0.1:{listen_port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &listener,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, listen_port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Creates topics with `partitions` partitions each, through kafka-python,
    /// connecting from [`ADMIN_SOURCE`].
    pub fn create_topics(&self, topics: &[&str], partitions: u32) {
        let script = "import socket, sys\n\
            connect_ex = socket.socket.connect_ex\n\
            def from_admin_source(sock, address):\n    \
                if sock.getsockname()[1] == 0:\n        \
                    sock.bind(('127.0.0.2', 0))\n    \
                return connect_ex(sock, address)\n\
            socket.socket.connect_ex = from_admin_source\n\
            from kafka.admin import KafkaAdminClient, NewTopic\n\
            admin = KafkaAdminClient(bootstrap_servers=sys.argv[1])\n\
            admin.create_topics([NewTopic(t, int(sys.argv[2]), 1) for t in sys.argv[3:]])\n";
        let status = Command::new(python())
            .args(["-c", script, &self.bootstrap(), &partitions.to_string()])
            .args(topics)
            .status()
            .expect("run kafka-python");
        assert!(status.success(), "creating topics {topics:?} failed");
    }

    /// Every message of `topics`, as kafka_read.py prints them.
    pub fn read(&self, topics: &[&str]) -> Vec<serde_json::Value> {
        let proto = format!("{}/proto", env!("CARGO_MANIFEST_DIR"));
        let mut args = vec![self.bootstrap(), proto];
        args.extend(topics.iter().map(|t| t.to_string()));
        String::from_utf8(run_script("kafka_read.py", &args))
            .expect("UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line from kafka_read.py"))
            .collect()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}
