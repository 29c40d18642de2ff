#!/usr/bin/env bash
# Figures of partition replication on release brokers, all in one run on
# this machine so they compare:
#   1. one broker, acks=1, replication factor 1 (the baseline);
#   2. three brokers, acks=all, replication factor 3, min.insync.replicas 2;
#      both with 1 KiB records, 4 partitions, our Rust client, for DURATION s;
#   3. tests/src/bin/replication_figures.rs: the unavailability window after
#      kill -9 of a leader (KILLS kills) and a follower catching up CATCH_UP_MIB.
#
# Usage: benches/scripts/replication-figures.sh [DURATION] [KILLS] [CATCH_UP_MIB]
#        (defaults 60, 20, 1024; KILLS 0 skips part 3). Results go to
#        benches/results/replication-*.json. Both throughput runs keep at most
#        1 GiB per partition replica (log.retention.bytes, checked every 5 s), so
#        a minute at full speed fits the disk.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-60}
kills=${2:-20}
catch_up=${3:-1024}
cargo build --release -p broker --bin broker -p benches --bin loadgen -p tests --bin replication_figures
target=$(realpath "${CARGO_TARGET_DIR:-target}")
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
mkdir -p benches/results
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() { # HOST:PORT
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

retention=(--set log.retention.bytes=1073741824 --set log.retention.check.interval.ms=5000)
echo "== 1 broker, acks=1, replication factor 1, ${duration}s"
"$target/release/broker" --node-id 1 --data-dir "$work/single" --listen 127.0.0.1:29092 \
  "${retention[@]}" >"$work/single.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1:29092
"$target/release/loadgen" produce --brokers 127.0.0.1:29092 --topic single --partitions 4 \
  --message-size 1024 --duration "$duration" --acks 1 --json benches/results/replication-single-acks1.json
kill -TERM "${pids[0]}"; wait "${pids[0]}" || true
pids=()
rm -rf "$work/single"

echo "== 3 brokers, acks=all, replication factor 3, min.insync.replicas 2, ${duration}s"
voters="1@127.0.0.1:29191,2@127.0.0.1:29192,3@127.0.0.1:29193"
for id in 1 2 3; do
  "$target/release/broker" --node-id "$id" --data-dir "$work/node-$id" --listen "127.0.0.1:2909$id" \
    --controller-listen "127.0.0.1:2919$id" --controller-voters "$voters" \
    --set min.insync.replicas=2 "${retention[@]}" >"$work/node-$id.log" 2>&1 &
  pids+=($!)
done
for id in 1 2 3; do wait_port "127.0.0.1:2909$id"; done
# Wait until every node sees all three brokers (registered and unfenced).
for id in 1 2 3; do
  for _ in $(seq 1 300); do
    kcat -L -b "127.0.0.1:2909$id" 2>/dev/null | grep -q "^ 3 brokers" && break
    sleep 0.1
  done
done
"$target/release/loadgen" produce --brokers 127.0.0.1:29091,127.0.0.1:29092,127.0.0.1:29093 \
  --topic replicated --partitions 4 --replication-factor 3 --message-size 1024 \
  --duration "$duration" --acks all --idempotence --json benches/results/replication-cluster-acksall.json
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
pids=()

rm -rf "$work"/node-*
if [ "$kills" -gt 0 ]; then
  echo "== failover and catch-up"
  BROKER_BIN="$target/release/broker" "$target/release/replication_figures" "$kills" "$catch_up"
fi
