//! `rigtap discover RANGE...`: which addresses answer a miner API, and which, written
//! as an inventory CSV (`id,address,api,model,firmware`) ready for
//! `targets.inventory`; its `api` column gives each row to the `bos` or the `cgminer`
//! source.
//!
//! Each address is asked for the bos.v1 gRPC API first (`GetApiVersion`, which needs no
//! login; with credentials, `GetMinerDetails` too, for the model and firmware), then
//! for the CGMiner API (`version`, then `devdetails` where the version names no
//! model), both at once. At most `concurrency` probes run at once and at most `rate`
//! start a second; each step ends within `timeout`, so a silent address costs one
//! `timeout` (two for a Whatsminer's model), and a /16 takes its size over the rate,
//! or over `concurrency / timeout`, whichever is slower.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Endpoint;
use tonic::Request;

use crate::fleet::fair_rate::FairRateLimiter;
use crate::sources::cgminer::wire::ask;
use crate::toolkit::inventory::{self, InventoryRow};
use crate::toolkit::proto::bos::api_version_service_client::ApiVersionServiceClient;
use crate::toolkit::proto::bos::v1 as api;
use crate::toolkit::proto::bos::ApiVersionRequest;
use crate::toolkit::units::Rate;

/// What `rigtap discover` was asked to do.
pub struct DiscoverOptions {
    /// `10.0.0.7`, `10.0.0.1-10.0.3.254` or `10.0.0.0/22`.
    pub ranges: Vec<String>,
    pub grpc_port: u16,
    pub cgminer_port: u16,
    pub concurrency: usize,
    pub rate: Rate,
    pub timeout: Duration,
    /// With both, Braiins OS miners are asked their model and firmware too.
    pub username: Option<String>,
    pub password: Option<String>,
    pub out: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("`{0}` is not an IPv4 address, a range `A.B.C.D-A.B.C.E` or a CIDR block `A.B.C.D/N`")]
    Range(String),
    #[error("`{0}` holds more than 65,536 addresses (a /16); split it")]
    TooLarge(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What was found: the rows written, and how many addresses were probed.
pub struct Discovered {
    pub probed: usize,
    pub rows: Vec<InventoryRow>,
}

/// The most addresses one range may hold.
const MAX_RANGE: u64 = 65_536;

/// The addresses `entry` names.
fn expand(entry: &str) -> Result<Vec<Ipv4Addr>, DiscoverError> {
    let bad = || DiscoverError::Range(entry.to_string());
    let (low, high) = if let Some((base, bits)) = entry.split_once('/') {
        let base: Ipv4Addr = base.parse().map_err(|_| bad())?;
        let bits: u32 = bits.parse().ok().filter(|b| *b <= 32).ok_or_else(bad)?;
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        let low = u32::from(base) & mask;
        (low, low | !mask)
    } else if let Some((low, high)) = entry.split_once('-') {
        let low: Ipv4Addr = low.parse().map_err(|_| bad())?;
        let high: Ipv4Addr = high.parse().map_err(|_| bad())?;
        (u32::from(low), u32::from(high))
    } else {
        let one: Ipv4Addr = entry.parse().map_err(|_| bad())?;
        (u32::from(one), u32::from(one))
    };
    if high < low {
        return Err(bad());
    }
    if u64::from(high - low) >= MAX_RANGE {
        return Err(DiscoverError::TooLarge(entry.to_string()));
    }
    Ok((low..=high).map(Ipv4Addr::from).collect())
}

/// Probes every address of `options.ranges` and writes what answered to `options.out`.
pub async fn discover(options: DiscoverOptions) -> Result<Discovered, DiscoverError> {
    let mut addresses = Vec::new();
    for range in &options.ranges {
        addresses.extend(expand(range)?);
    }
    addresses.sort_unstable();
    addresses.dedup();
    let probed = addresses.len();
    let options = Arc::new(options);
    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let rate = Arc::new(FairRateLimiter::new(options.rate, Duration::ZERO));
    let mut probes = tokio::task::JoinSet::new();
    for ip in addresses {
        let permit = slots.clone().acquire_owned().await;
        rate.until_ready().await;
        let options = options.clone();
        probes.spawn(async move {
            let _permit = permit;
            probe(ip, &options).await
        });
    }
    let mut rows: Vec<InventoryRow> = Vec::new();
    while let Some(found) = probes.join_next().await {
        if let Ok(Some(row)) = found {
            rows.push(row);
        }
    }
    rows.sort_by_key(|row| row.id.parse::<Ipv4Addr>().map(u32::from).unwrap_or(0));
    inventory::write(&options.out, &rows, &COLUMNS).map_err(|source| DiscoverError::Write {
        path: options.out.clone(),
        source,
    })?;
    Ok(Discovered { probed, rows })
}

/// The label columns of a discovered inventory.
const COLUMNS: [&str; 3] = ["api", "model", "firmware"];

fn row(ip: Ipv4Addr, port: u16, api: &str, model: String, firmware: String) -> InventoryRow {
    let labels: BTreeMap<String, String> = COLUMNS
        .iter()
        .map(|c| c.to_string())
        .zip([api.to_string(), model, firmware])
        .collect();
    InventoryRow {
        id: ip.to_string().into(),
        address: format!("{ip}:{port}"),
        labels: Arc::new(labels),
    }
}

/// One address: the gRPC API, else the CGMiner API, else nothing.
async fn probe(ip: Ipv4Addr, options: &DiscoverOptions) -> Option<InventoryRow> {
    // Both at once: a silent address costs one timeout, not two. Braiins OS serves
    // both APIs; its gRPC one is the one to use.
    let (grpc, cgminer) = tokio::join!(
        tokio::time::timeout(options.timeout, grpc(ip, options)),
        cgminer(ip, options)
    );
    if let Ok(Some((model, firmware))) = grpc {
        return Some(row(ip, options.grpc_port, "bos", model, firmware));
    }
    let (model, firmware) = cgminer?;
    Some(row(ip, options.cgminer_port, "cgminer", model, firmware))
}

/// The gRPC API's version; with credentials, the model and firmware version.
async fn grpc(ip: Ipv4Addr, options: &DiscoverOptions) -> Option<(String, String)> {
    let endpoint = Endpoint::from_shared(format!("http://{ip}:{}", options.grpc_port)).ok()?;
    let channel = endpoint
        .connect_timeout(options.timeout)
        .timeout(options.timeout)
        .connect()
        .await
        .ok()?;
    let version = ApiVersionServiceClient::new(channel.clone())
        .get_api_version(ApiVersionRequest {})
        .await
        .ok()?
        .into_inner();
    let api_only = format!("Braiins OS (API {}.{})", version.major, version.minor);
    let (Some(username), Some(password)) = (&options.username, &options.password) else {
        return Some((String::new(), api_only));
    };
    let login =
        api::authentication_service_client::AuthenticationServiceClient::new(channel.clone())
            .login(api::LoginRequest {
                username: username.clone(),
                password: password.clone(),
            })
            .await;
    let token: Option<AsciiMetadataValue> =
        login.ok().and_then(|r| r.into_inner().token.parse().ok());
    let Some(token) = token else {
        return Some((String::new(), api_only));
    };
    let mut request = Request::new(api::GetMinerDetailsRequest {});
    request.metadata_mut().insert("authorization", token);
    let details = api::miner_service_client::MinerServiceClient::new(channel)
        .get_miner_details(request)
        .await;
    match details {
        Ok(details) => {
            let details = details.into_inner();
            let model = details.miner_identity.map(|i| i.name).unwrap_or_default();
            let firmware = details
                .bos_version
                .map(|v| format!("Braiins OS {}", v.current))
                .unwrap_or(api_only);
            Some((model, firmware))
        }
        Err(_) => Some((String::new(), api_only)),
    }
}

/// The CGMiner API's model and firmware, from `version` (and `devdetails`).
async fn cgminer(ip: Ipv4Addr, options: &DiscoverOptions) -> Option<(String, String)> {
    let address = format!("{ip}:{}", options.cgminer_port);
    let version = ask(&address, "version", options.timeout, 1 << 20)
        .await
        .ok()?;
    let firmware = text(&version["STATUS"][0], &["Description"]);
    let entry = &version["VERSION"][0];
    let mut model = text(entry, &["Type", "PROD", "Model"]);
    if model.is_empty() {
        if let Ok(details) = ask(&address, "devdetails", options.timeout, 1 << 20).await {
            model = text(&details["DEVDETAILS"][0], &["Model"]);
        }
    }
    Some((model, firmware))
}

/// The first of `keys` that `value` holds as text.
fn text(value: &Value, keys: &[&str]) -> String {
    keys.iter()
        .find_map(|k| value.get(*k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cidr_blocks_and_single_addresses() {
        let n = |e: &str| expand(e).map(|a| a.len());
        assert_eq!(n("10.0.0.7").unwrap(), 1);
        assert_eq!(n("10.0.0.1-10.0.0.254").unwrap(), 254);
        assert_eq!(n("10.0.0.0/22").unwrap(), 1024);
        assert_eq!(
            expand("10.0.1.77/24").unwrap()[0],
            Ipv4Addr::new(10, 0, 1, 0)
        );
        assert!(matches!(
            expand("10.0.0.9-10.0.0.1"),
            Err(DiscoverError::Range(_))
        ));
        assert!(matches!(
            expand("10.0.0.0/8"),
            Err(DiscoverError::TooLarge(_))
        ));
        assert!(matches!(
            expand("miner.local"),
            Err(DiscoverError::Range(_))
        ));
        assert!(matches!(
            expand("10.0.0.0/33"),
            Err(DiscoverError::Range(_))
        ));
    }
}
