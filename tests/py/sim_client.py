"""An independent client of the miner API: Python grpcio, stubs generated from proto/.

Usage: sim_client.py ADDRESS PROTO_DIR. Prints what it decoded as one JSON object.
"""
import json
import re
import sys

import grpc

import stubs


def main() -> None:
    address, proto_dir = sys.argv[1], sys.argv[2]
    stubs.generate(proto_dir, grpc=True)
    from bos import version_pb2, version_pb2_grpc
    from bos.v1 import (actions_pb2, actions_pb2_grpc, authentication_pb2,
                        authentication_pb2_grpc, cooling_pb2,
                        cooling_pb2_grpc, miner_pb2, miner_pb2_grpc, performance_pb2,
                        performance_pb2_grpc, pool_pb2, pool_pb2_grpc)

    channel = grpc.insecure_channel(address)
    version = version_pb2_grpc.ApiVersionServiceStub(channel).GetApiVersion(
        version_pb2.ApiVersionRequest(), timeout=5)
    auth = authentication_pb2_grpc.AuthenticationServiceStub(channel)
    try:
        auth.Login(authentication_pb2.LoginRequest(username="root", password="nope"), timeout=5)
        bad_login = "accepted"
    except grpc.RpcError as e:
        bad_login = f"{e.code().name}: {e.details()}"
    login, call = auth.Login.with_call(
        authentication_pb2.LoginRequest(username="root", password="root"), timeout=5)
    header_token = dict(call.initial_metadata()).get("authorization")
    md = [("authorization", login.token)]

    miner = miner_pb2_grpc.MinerServiceStub(channel)
    details = miner.GetMinerDetails(miner_pb2.GetMinerDetailsRequest(), metadata=md, timeout=5)
    stats = miner.GetMinerStats(miner_pb2.GetMinerStatsRequest(), metadata=md, timeout=5)
    boards = miner.GetHashboards(miner_pb2.GetHashboardsRequest(), metadata=md, timeout=5)
    cooling = cooling_pb2_grpc.CoolingServiceStub(channel).GetCoolingState(
        cooling_pb2.GetCoolingStateRequest(), metadata=md, timeout=5)
    pools = pool_pb2_grpc.PoolServiceStub(channel).GetPoolGroups(
        pool_pb2.GetPoolGroupsRequest(), metadata=md, timeout=5)
    mode = performance_pb2_grpc.PerformanceServiceStub(channel).GetActivePerformanceMode(
        performance_pb2.GetPerformanceModeRequest(), metadata=md, timeout=5)
    # What clients call after a poll.
    performance = performance_pb2_grpc.PerformanceServiceStub(channel)
    tuner = performance.GetTunerState(performance_pb2.GetTunerStateRequest(), metadata=md, timeout=5)
    locate = actions_pb2_grpc.ActionsServiceStub(channel).GetLocateDeviceStatus(
        actions_pb2.GetLocateDeviceStatusRequest(), metadata=md, timeout=5)
    stream = miner.GetMinerStatus(miner_pb2.GetMinerStatusRequest(), metadata=md, timeout=5)
    first_status = next(stream)
    stream.cancel()

    board = boards.hashboards[0]
    print(json.dumps({
        "api_version": [version.major, version.minor],
        "bad_login": bad_login,
        "token_length": len(login.token),
        "header_token_matches": header_token == login.token,
        "session_timeout_s": login.timeout_s,
        "uid": details.uid,
        "model": details.miner_identity.name,
        "status": miner_pb2.MinerStatus.Name(details.status),
        "stream_status": miner_pb2.MinerStatus.Name(first_status.status),
        "hashrate_1m_ghs": stats.miner_stats.real_hashrate.last_1m.gigahash_per_second,
        "nominal_ghs": stats.miner_stats.nominal_hashrate.gigahash_per_second,
        "error_mhs": stats.miner_stats.error_hashrate.megahash_per_second,
        "power_w": stats.power_stats.approximated_consumption.watt,
        "efficiency_jth": stats.power_stats.efficiency.joule_per_terahash,
        "accepted_shares": stats.pool_stats.accepted_shares,
        "boards": len(boards.hashboards),
        "board_id": board.id,
        "chips": board.chips_count.value,
        "frequency_hz": board.current_frequency.hertz,
        "chip_sensor": cooling_pb2.SensorLocation.Name(board.highest_chip_temp.location),
        "fans": [f.rpm for f in cooling.fans],
        "pool_url": pools.pool_groups[0].pools[0].url,
        "backup_alive": pools.pool_groups[0].pools[1].alive,
        "every_pool_has_stats": all(
            p.HasField("stats") for g in pools.pool_groups for p in g.pools),
        # Braiins OS writes <build date>-<n>-<commit>-<version>-plus.
        "bos_version": re.fullmatch(
            r"(\d{4}-\d{2}-\d{2})-(\d+)-([0-9a-f]{8})-(\d{2}\.\d{2}(?:\.\d+)?)-plus",
            details.bos_version.current).groups(),
        "bos_major": details.bos_version.major,
        "tuner_state": performance_pb2.TunerState.Name(tuner.overall_tuner_state),
        "tuner_target_w": tuner.power_target_mode_state.current_target.watt,
        "locate_enabled": locate.enabled,
        "power_target_w": mode.tuner_mode.power_target.power_target.watt,
    }))


if __name__ == "__main__":
    main()
