//! `rigtap top` in a real terminal (tmux): it shows the running pipeline's
//! components, its source's miners and its sink, and quits on `q`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::net::{free_block, free_port};
use support::start;

/// tmux on a server of the test's own, so nothing else's sessions are touched.
fn tmux(server: &str, args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .args(["-L", server])
        .args(args)
        .output()
        .expect("tmux runs")
}

#[test]
fn top_shows_the_pipeline_and_quits_on_q() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "api: {{address: 127.0.0.1:{port}}}\nsimulator: {{miners: 5, first: {}}}\nsources:\n  fleet:\n    type: bos\n    profile: development\n    targets: {{simulator: true}}\n    username: root\n    password: root\nsinks:\n  files: {{type: parquet, inputs: [fleet], path: {}}}\n",
        free_block(5),
        dir.path().join("out").display()
    );
    let config = dir.path().join("pipeline.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let rigtap = start(&yaml, &[]);

    let server = format!("rigtap-top-{}", std::process::id());
    let command = format!(
        "{} top -c {}",
        env!("CARGO_BIN_EXE_rigtap"),
        config.display()
    );
    let started = tmux(
        &server,
        &[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "150",
            "-y",
            "40",
            &command,
        ],
    );
    assert!(started.status.success(), "{started:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let screen = loop {
        let pane = tmux(&server, &["capture-pane", "-p", "-t", "top"]);
        let screen = String::from_utf8_lossy(&pane.stdout).to_string();
        // Online miners and rates need two reads of /status: wait for them.
        let ready = screen.contains("fleet")
            && screen.contains("files")
            && screen.lines().any(|l| {
                l.contains("fleet") && l.contains(" 5 ") && l.split_whitespace().nth(2) == Some("5")
            });
        if ready {
            break screen;
        }
        assert!(
            Instant::now() < deadline,
            "top did not show the pipeline:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for heading in [
        "components",
        "sources",
        "sinks",
        "in/s",
        "queue",
        "online",
        "delivery p99",
        "q quits",
    ] {
        assert!(
            screen.contains(heading),
            "no `{heading}` on the screen:\n{screen}"
        );
    }

    tmux(&server, &["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux(&server, &["has-session", "-t", "top"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "top did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux(&server, &["kill-server"]);
    rigtap.signal("TERM");
    let (code, _, stderr) = rigtap.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stderr}");
}
