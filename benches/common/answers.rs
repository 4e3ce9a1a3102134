//! One simulated miner's five poll answers, as the bytes of the wire, and the work the
//! `bos` source does with them: decode each answer and make the samples of a poll.
//! The ceiling of benches/load.rs and the `poll` group of benches/encode.rs use both.
//! Needs `net` (tests/support/net.rs) beside it in the bench.

use std::sync::Arc;

use prost::Message;
use rigtap::sim::{Fleet, SimConfig};
use rigtap::sources::bos::poll::{samples, Answers};
use rigtap::toolkit::inventory::InventoryRow;
use rigtap::toolkit::proto::bos::v1 as api;
use rigtap::toolkit::sample::Sample;
use tonic::metadata::{Ascii, MetadataValue};

/// The answers of `GetMinerDetails`, `GetMinerStats`, `GetHashboards`,
/// `GetCoolingState` and `GetPoolGroups`, from an in-process simulated miner on a free
/// loopback address.
pub fn capture() -> Vec<Vec<u8>> {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let first = super::net::free_block(1);
        let _fleet = Fleet::start(SimConfig {
            miners: 1,
            first,
            ..SimConfig::default()
        })
        .await
        .expect("a simulated miner");
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{first}"))
            .expect("an address")
            .connect()
            .await
            .expect("the simulator answers");
        let login =
            api::authentication_service_client::AuthenticationServiceClient::new(channel.clone())
                .login(api::LoginRequest {
                    username: "root".into(),
                    password: "root".into(),
                })
                .await
                .expect("a login")
                .into_inner();
        let token: MetadataValue<Ascii> = login.token.parse().expect("a token");
        fn signed<T>(token: &MetadataValue<Ascii>, body: T) -> tonic::Request<T> {
            let mut request = tonic::Request::new(body);
            request
                .metadata_mut()
                .insert("authorization", token.clone());
            request
        }
        let mut miner = api::miner_service_client::MinerServiceClient::new(channel.clone());
        let mut cooling = api::cooling_service_client::CoolingServiceClient::new(channel.clone());
        let mut pools = api::pool_service_client::PoolServiceClient::new(channel);
        let details = miner.get_miner_details(signed(&token, api::GetMinerDetailsRequest {}));
        let details = details.await.expect("details").into_inner().encode_to_vec();
        let stats = miner.get_miner_stats(signed(&token, api::GetMinerStatsRequest {}));
        let stats = stats.await.expect("stats").into_inner().encode_to_vec();
        let boards = miner.get_hashboards(signed(&token, api::GetHashboardsRequest {}));
        let boards = boards
            .await
            .expect("hashboards")
            .into_inner()
            .encode_to_vec();
        let fans = cooling.get_cooling_state(signed(&token, api::GetCoolingStateRequest {}));
        let fans = fans.await.expect("cooling").into_inner().encode_to_vec();
        let groups = pools.get_pool_groups(signed(&token, api::GetPoolGroupsRequest {}));
        let groups = groups.await.expect("pools").into_inner().encode_to_vec();
        vec![details, stats, boards, fans, groups]
    })
}

/// The inventory row the samples are made for: three labels, as the simulator's.
pub fn target() -> InventoryRow {
    InventoryRow {
        id: "s0-sim-00000".into(),
        address: "127.0.0.1:50051".into(),
        labels: Arc::new(
            [
                ("site", "site-1"),
                ("rack", "rack-000"),
                ("model", "Antminer S21 Pro"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ),
    }
}

/// What one poll costs the source past the network: decode the five answers and make
/// the poll's samples (a miner row, one per hashboard, one per pool), appended to `out`.
pub fn poll(answers: &[Vec<u8>], target: &InventoryRow, out: &mut Vec<Sample>) {
    let decoded = Answers {
        details: Some(
            api::GetMinerDetailsResponse::decode(answers[0].as_slice()).expect("details"),
        ),
        stats: Some(api::GetMinerStatsResponse::decode(answers[1].as_slice()).expect("stats")),
        hashboards: Some(
            api::GetHashboardsResponse::decode(answers[2].as_slice()).expect("boards"),
        ),
        cooling: Some(
            api::GetCoolingStateResponse::decode(answers[3].as_slice()).expect("cooling"),
        ),
        pools: Some(api::GetPoolGroupsResponse::decode(answers[4].as_slice()).expect("pools")),
    };
    out.extend(samples(target, Some(2), &decoded, chrono::Utc::now()));
}
