//! A real Kafka-protocol broker for the tests: tansu (Apache-2.0, from crates.io;
//! tests/run.sh installs it when absent), on a loopback port, in memory. Topics are
//! created, and what reached the broker read back, by kafka-python
//! (tests/py/kafka_read.py), a client independent of rdkafka.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::net::free_port;
use super::python::{python, run_script};

pub struct Tansu {
    pub port: u16,
    child: Option<Child>,
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
        };
        tansu.restart();
        tansu
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
        let url = format!("tcp://{}", self.bootstrap());
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {address}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Creates topics with `partitions` partitions each, through kafka-python.
    pub fn create_topics(&self, topics: &[&str], partitions: u32) {
        let script = "import sys\nfrom kafka.admin import KafkaAdminClient, NewTopic\n\
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
