//! Which miners a `bos` source polls: addresses and ranges, an inventory CSV (its extra
//! columns become labels), or the fleet this process serves itself (the embedded
//! simulator's, handed over as plain inventory rows); then, optionally, only this
//! agent's shard of them.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::toolkit::inventory::{self, InventoryError, InventoryRow};
use crate::toolkit::sample::Labels;

/// What the user writes under `targets:`; any mix of the three is allowed.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetsConfig {
    /// `host:port`, an IPv4 range `10.0.0.1-10.0.0.200:50051`, or a port range
    /// `127.0.0.1:50051-50150`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// CSV with a header: `id`, `address`, then any label columns (site, rack, model...).
    #[serde(default)]
    pub inventory: Option<PathBuf>,
    /// The miners of the pipeline's embedded `simulator:`.
    #[serde(default)]
    pub simulator: bool,
    /// Those miners, filled in when the config is decoded (never written by users).
    #[serde(skip)]
    pub embedded: Option<Arc<[InventoryRow]>>,
}

/// `shard: {index, count}`: this agent keeps the miners whose rendezvous hash picks `index`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Shard {
    pub index: u32,
    pub count: u32,
}

/// One miner to collect from: a row of an inventory.
pub(crate) type Target = InventoryRow;

#[derive(Debug, thiserror::Error)]
pub(crate) enum TargetError {
    #[error("target `{0}` is not `host:port`, `A.B.C.D-A.B.C.E:port` or `host:PORT1-PORT2`")]
    Address(String),
    #[error("target range `{0}` runs backwards or holds more than 65,536 addresses (a /16); write several ranges, or check it for a typo")]
    Range(String),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("miner id `{0}` is listed twice; ids must be unique across `targets`")]
    Duplicate(String),
    #[error("address `{address}` is listed twice (miners `{first}` and `{second}`): one miner would be collected twice")]
    SameAddress {
        address: String,
        first: String,
        second: String,
    },
    #[error("`targets.simulator: true` needs a top-level `simulator:` section")]
    NoSimulator,
    #[error(
        "`targets` lists no miners; add `addresses`, an `inventory` file, or `simulator: true`"
    )]
    Empty,
    #[error(
        "miner `{id}` has `api: {api}`; the column says `bos` or `cgminer` (or is empty: both)"
    )]
    UnknownApi { id: String, api: String },
}

/// The most addresses one range may expand to: a /16, or every port of a host. A
/// longer range is more likely a typo (`10.0.0.1-10.1.0.1`) than a site.
const MAX_RANGE: u64 = 65_536;

impl TargetsConfig {
    /// Every target, in the order written.
    pub(crate) fn resolve(&self) -> Result<Vec<Target>, TargetError> {
        let mut targets = Vec::new();
        let no_labels: Labels = Arc::default();
        for entry in &self.addresses {
            for address in expand(entry)? {
                targets.push(Target {
                    id: address.as_str().into(),
                    address,
                    labels: no_labels.clone(),
                });
            }
        }
        if let Some(path) = &self.inventory {
            targets.extend(inventory::read(path)?);
        }
        if self.simulator {
            let rows = self.embedded.as_ref().ok_or(TargetError::NoSimulator)?;
            targets.extend(rows.iter().cloned());
        }
        let mut seen = HashSet::new();
        if let Some(dup) = targets.iter().find(|t| !seen.insert(t.id.clone())) {
            return Err(TargetError::Duplicate(dup.id.to_string()));
        }
        let mut addresses = std::collections::HashMap::new();
        for target in &targets {
            if let Some(first) = addresses.insert(target.address.as_str(), &target.id) {
                return Err(TargetError::SameAddress {
                    address: target.address.clone(),
                    first: first.to_string(),
                    second: target.id.to_string(),
                });
            }
        }
        if targets.is_empty() {
            return Err(TargetError::Empty);
        }
        Ok(targets)
    }
}

impl TargetsConfig {
    /// The targets for a source of `api` (`bos`, `cgminer`): a row whose inventory
    /// names another API in an `api` column (a mixed fleet) is that source's, and a
    /// row with the column empty is both's. None left is not an error: the source
    /// warns and collects nothing.
    pub(crate) fn resolve_for(&self, api: &'static str) -> Result<Vec<Target>, TargetError> {
        let targets = self.resolve()?;
        if let Some(bad) = targets.iter().find(|t| {
            t.labels
                .get("api")
                .is_some_and(|a| !matches!(a.as_str(), "" | "bos" | "cgminer"))
        }) {
            return Err(TargetError::UnknownApi {
                id: bad.id.to_string(),
                api: bad.labels["api"].clone(),
            });
        }
        Ok(targets
            .into_iter()
            .filter(|t| t.labels.get("api").is_none_or(|a| a.is_empty() || a == api))
            .collect())
    }
}

/// Expands one `addresses` entry into `host:port` strings.
fn expand(entry: &str) -> Result<Vec<String>, TargetError> {
    let bad = || TargetError::Address(entry.to_string());
    let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() {
        return Err(bad());
    }
    let port_number = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    if let Some((low, high)) = port.split_once('-') {
        let (low, high) = (port_number(low)?, port_number(high)?);
        if high < low {
            return Err(TargetError::Range(entry.to_string()));
        }
        return Ok((low..=high).map(|p| format!("{host}:{p}")).collect());
    }
    let port = port_number(port)?;
    // A range is two IPv4 addresses; anything else with a dash is a host name.
    let range = host.split_once('-').and_then(|(low, high)| {
        Some((
            low.parse::<Ipv4Addr>().ok()?,
            high.parse::<Ipv4Addr>().ok()?,
        ))
    });
    if let Some((low, high)) = range {
        let (low, high) = (u32::from(low), u32::from(high));
        if high < low || u64::from(high - low) >= MAX_RANGE {
            return Err(TargetError::Range(entry.to_string()));
        }
        return Ok((low..=high)
            .map(|ip| format!("{}:{port}", Ipv4Addr::from(ip)))
            .collect());
    }
    Ok(vec![format!("{host}:{port}")])
}

/// A miner for unit tests; nothing listens at its address.
#[cfg(test)]
pub(crate) fn fixture(id: &str) -> Target {
    Target {
        id: id.into(),
        address: "127.0.0.1:50051".into(),
        labels: Arc::default(),
    }
}

impl Shard {
    /// Whether this shard owns the miner `id`: the shard with the highest rendezvous
    /// score wins. Adding a shard moves only the miners the new shard now wins (about
    /// 1/(count+1) of them); no other miner changes owner.
    pub(crate) fn owns(&self, id: &str) -> bool {
        let best = (0..self.count)
            .max_by_key(|&shard| score(id, shard))
            .unwrap_or(0);
        best == self.index
    }
}

/// A stable 64-bit hash of (id, shard): FNV-1a, then splitmix64's finaliser so that
/// nearby ids and shard numbers give unrelated scores. Stable across rigtap versions
/// and platforms (std's hasher is neither), so agents of different builds agree.
fn score(id: &str, shard: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes().chain(shard.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(list: &[&str]) -> Result<Vec<String>, TargetError> {
        let config = TargetsConfig {
            addresses: list.iter().map(|s| s.to_string()).collect(),
            ..TargetsConfig::default()
        };
        Ok(config.resolve()?.into_iter().map(|t| t.address).collect())
    }

    #[test]
    fn an_api_column_gives_each_row_to_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.csv");
        let write = |rows: &str| std::fs::write(&path, format!("id,address,api\n{rows}")).unwrap();
        let config = TargetsConfig {
            inventory: Some(path.clone()),
            ..TargetsConfig::default()
        };
        let ids = |api| -> Vec<String> {
            let targets = config.resolve_for(api).unwrap();
            targets.iter().map(|t| t.id.to_string()).collect()
        };
        write("a,10.0.0.1:50051,bos\nb,10.0.0.2:4028,cgminer\nc,10.0.0.3:4028,\n");
        assert_eq!(ids("bos"), ["a", "c"], "an empty cell: both");
        assert_eq!(ids("cgminer"), ["b", "c"]);
        write("a,10.0.0.1:50051,bos\n");
        assert!(ids("cgminer").is_empty(), "none left is not an error");
        write("a,10.0.0.1:50051,Cgminer\n");
        let e = config.resolve_for("bos").unwrap_err().to_string();
        assert!(e.contains("`api: Cgminer`"), "{e}");
    }

    #[test]
    fn ranges_expand() {
        assert_eq!(
            addresses(&["127.0.0.1:50051-50053"]).unwrap(),
            ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]
        );
        assert_eq!(
            addresses(&["10.0.0.254-10.0.1.1:50051", "miner-a.local:50051"]).unwrap(),
            [
                "10.0.0.254:50051",
                "10.0.0.255:50051",
                "10.0.1.0:50051",
                "10.0.1.1:50051",
                "miner-a.local:50051"
            ]
        );
    }

    #[test]
    fn bad_addresses_say_what_is_accepted() {
        let e = addresses(&["10.0.0.5"]).unwrap_err().to_string();
        assert!(e.contains("is not `host:port`"), "{e}");
        let e = addresses(&["127.0.0.1:50060-50051"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("runs backwards"), "{e}");
        let e = addresses(&["a:1", "a:1"]).unwrap_err().to_string();
        assert!(e.contains("listed twice"), "{e}");
        let e = addresses(&[]).unwrap_err().to_string();
        assert!(e.contains("lists no miners"), "{e}");
        for port in ["127.0.0.1:0", "127.0.0.1:0-3", "127.0.0.1:65536"] {
            let e = addresses(&[port]).unwrap_err().to_string();
            assert!(e.contains("is not `host:port`"), "{port}: {e}");
        }
    }

    #[test]
    fn one_address_under_two_ids_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.csv");
        std::fs::write(
            &path,
            "id,address
a,10.0.0.1:50051
b,10.0.0.1:50051
",
        )
        .unwrap();
        let config = TargetsConfig {
            inventory: Some(path),
            ..TargetsConfig::default()
        };
        let e = config.resolve().unwrap_err().to_string();
        assert_eq!(e, "address `10.0.0.1:50051` is listed twice (miners `a` and `b`): one miner would be collected twice");
    }

    #[test]
    fn inventory_and_embedded_rows_are_targets_after_the_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.csv");
        std::fs::write(&path, "id,address,site\nm1,10.0.0.1:50051,north\n").unwrap();
        let mut config = TargetsConfig {
            addresses: vec!["10.0.0.9:50051".into()],
            inventory: Some(path.clone()),
            simulator: true,
            embedded: None,
        };
        let e = config.resolve().unwrap_err().to_string();
        assert!(e.contains("needs a top-level `simulator:`"), "{e}");
        config.embedded = Some(Arc::from(vec![fixture("sim-00000")]));
        let targets = config.resolve().unwrap();
        let ids: Vec<&str> = targets.iter().map(|t| &*t.id).collect();
        assert_eq!(ids, ["10.0.0.9:50051", "m1", "sim-00000"]);
        assert_eq!(targets[1].labels["site"], "north");

        std::fs::write(&path, "id,address\nm1,10.0.0.1\n").unwrap();
        let e = config.resolve().unwrap_err().to_string();
        assert!(e.contains("inventory") && e.contains("line 2"), "{e}");
    }

    fn owner(id: &str, count: u32) -> u32 {
        (0..count)
            .find(|&index| Shard { index, count }.owns(id))
            .expect("some shard owns every miner")
    }

    #[test]
    fn shards_partition_the_fleet_exactly() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("sim-{i:05}")).collect();
        for count in [1, 2, 3, 7] {
            let mut sizes = vec![0usize; count as usize];
            for id in &ids {
                let owners = (0..count)
                    .filter(|&index| Shard { index, count }.owns(id))
                    .count();
                assert_eq!(owners, 1, "{id} must have exactly one owner of {count}");
                sizes[owner(id, count) as usize] += 1;
            }
            let fair = ids.len() / count as usize;
            for size in sizes {
                assert!(
                    size.abs_diff(fair) < fair / 10 + 50,
                    "shard of {size}, fair {fair}"
                );
            }
        }
    }

    #[test]
    fn adding_a_shard_moves_about_one_in_n_plus_one() {
        let ids: Vec<String> = (0..10_000)
            .map(|i| format!("10.0.{}.{}:50051", i / 256, i % 256))
            .collect();
        for n in [1u32, 3, 9] {
            let moved: Vec<&String> = ids
                .iter()
                .filter(|id| owner(id, n) != owner(id, n + 1))
                .collect();
            // Every moved miner moved to the new shard: nothing shuffles between old ones.
            assert!(moved.iter().all(|id| owner(id, n + 1) == n));
            let expected = ids.len() as f64 / f64::from(n + 1);
            let ratio = moved.len() as f64 / expected;
            assert!(
                (0.9..1.1).contains(&ratio),
                "n={n}: moved {} of {}, expected about {expected}",
                moved.len(),
                ids.len()
            );
        }
    }
}
