#!/bin/bash
# The many-partitions run of README "Performance and memory": a `generate` source
# (20,000 miners round-robin, 20,000 samples/s) into a parquet sink partitioned by
# miner_id, for SECONDS (default 90) then SIGTERM; the collector's RSS every 10 s, its
# peak, the files written, how long the stop took and the sink's final counts.
#
#   cargo build --release && benches/partitions.sh [SECONDS] [BUDGET] [zstd|snappy]
set -euo pipefail
SECONDS_TO_RUN=${1:-90}
BUDGET=${2:-256MiB}
COMPRESSION=${3:-zstd}
BIN=${RIGTAP:-target/release/rigtap}
DIR=$(mktemp -d /tmp/rigtap-partitions.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
cat > "$DIR/pipeline.yaml" <<YAML
memory_budget: $BUDGET
api: {enabled: false}
sources:
  gen: {type: generate, rate: 20000, miners: 20000, batch_size: 1000}
sinks:
  files:
    type: parquet
    inputs: [gen]
    path: $DIR/out
    partition: miner_id={miner_id}/
    compression: $COMPRESSION
YAML
"$BIN" --log-format json run -c "$DIR/pipeline.yaml" --progress off > /dev/null 2> "$DIR/log" &
PID=$!
PEAK=0
for ((t = 1; ; t++)); do
  sleep 1
  kill -0 $PID 2> /dev/null || break
  RSS=$(awk '/VmRSS/{print $2}' /proc/$PID/status 2> /dev/null || echo 0)
  ((RSS > PEAK)) && PEAK=$RSS
  ((t % 10 == 0)) && echo "t=${t}s RSS $((RSS / 1024)) MiB"
  ((t == SECONDS_TO_RUN)) && { kill -TERM $PID; STOPPED=$(date +%s%N); }
done
wait $PID && CODE=0 || CODE=$?
STOP_MS=$((($(date +%s%N) - ${STOPPED:-$(date +%s%N)}) / 1000000))
echo "exit $CODE, peak RSS $((PEAK / 1024)) MiB, $(find "$DIR/out" -name '*.parquet' | wc -l) files, ${STOP_MS} ms from SIGTERM to exit"
grep -o '"component":"files","samples_in":[0-9]*,"samples_out":[0-9]*,"dropped":[0-9]*' "$DIR/log" | tail -1
