//! Scale-out, end to end: agents that split one simulated fleet with `shard` deliver
//! into one Kafka topic (tansu), and every miner's samples come from exactly one agent
//! (the `agent-id` header); none from two, none missing. With a third agent, about a
//! third of the miners move, and only to the new one.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rigtap::sim::Fleet;
use support::kafka::Tansu;
use support::{sim_config, start};

const MINERS: usize = 200;

/// Runs `count` agents over the fleet's inventory into `topic` for a few seconds;
/// returns each miner's agents, as the messages' headers say.
fn agents(
    inventory: &std::path::Path,
    tansu: &Tansu,
    topic: &str,
    count: u32,
) -> BTreeMap<String, BTreeSet<String>> {
    let running: Vec<_> = (0..count)
        .map(|index| {
            let yaml = format!(
                "api: {{enabled: false}}\nsources:\n  fleet:\n    type: bos\n    profile: development\n    interval: 1s\n    targets: {{inventory: {}}}\n    shard: {{index: {index}, count: {count}}}\n    username: root\n    password: root\nsinks:\n  kafka: {{type: kafka, inputs: [fleet], brokers: '{}', topic: {topic}, agent_id: agent-{index}}}\n",
                inventory.display(),
                tansu.bootstrap()
            );
            start(&yaml, &["--duration", "6s"])
        })
        .collect();
    for agent in running {
        let (code, _, stderr) = agent.finish(Duration::from_secs(60));
        assert_eq!(code, Some(0), "{stderr}");
    }
    let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for message in tansu.read(&[topic]) {
        let miner = message["key"].as_str().unwrap().to_string();
        let agent = message["headers"]["agent-id"].as_str().unwrap().to_string();
        owners.entry(miner).or_default().insert(agent);
    }
    owners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_split_the_fleet_exactly_and_a_new_one_takes_only_its_share() {
    let fleet = Fleet::start(sim_config(MINERS)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("fleet.csv");
    fleet.write_inventory(&inventory).unwrap();
    let (two, three) = tokio::task::spawn_blocking(move || {
        let tansu = Tansu::start();
        tansu.create_topics(&["two", "three"], 3);
        let two = agents(&inventory, &tansu, "two", 2);
        let three = agents(&inventory, &tansu, "three", 3);
        (two, three)
    })
    .await
    .unwrap();

    for owners in [&two, &three] {
        assert_eq!(owners.len(), MINERS, "every miner's samples arrived");
        let shared: Vec<_> = owners.iter().filter(|(_, a)| a.len() != 1).collect();
        assert!(shared.is_empty(), "miners sent by two agents: {shared:?}");
    }
    let owner = |owners: &BTreeMap<String, BTreeSet<String>>, miner: &str| {
        owners[miner].iter().next().unwrap().clone()
    };
    let moved: Vec<&String> = two
        .keys()
        .filter(|miner| owner(&two, miner) != owner(&three, miner))
        .collect();
    assert!(
        moved.iter().all(|miner| owner(&three, miner) == "agent-2"),
        "miners moved only to the new agent"
    );
    let share = moved.len() as f64 / MINERS as f64;
    assert!(
        (0.2..0.47).contains(&share),
        "about a third moved: {} of {MINERS}",
        moved.len()
    );
    eprintln!(
        "shards: 2 agents split {MINERS} miners exactly; a third took {} of them ({:.0}%)",
        moved.len(),
        share * 100.0
    );
}
