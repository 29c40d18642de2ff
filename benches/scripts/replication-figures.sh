#!/usr/bin/env bash
# Figures of partition replication on release brokers, all in one run on
# this machine so they compare:
#   1. one broker, acks=1, replication factor 1 (the baseline);
#   2. three brokers, acks=all, replication factor 3, min.insync.replicas 2;
#      both with 1 KiB records, 4 partitions, our Rust client, for DURATION s,
#      twice each in the order 1, 2, 2, 1, each with the page cache full
#      (see below);
#   3. tests/src/bin/replication_figures.rs: the unavailability window after
#      kill -9 of a leader (KILLS kills) and a follower catching up CATCH_UP_MIB.
#
# Usage: benches/scripts/replication-figures.sh [DURATION] [KILLS] [CATCH_UP_MIB]
#        (defaults 60, 20, 1024; KILLS 0 skips part 3). BATCH_BYTES sets the
#        producer's batch size in both (default 65536, loadgen's). Results go
#        to benches/results/replication-*.json (replication-*-b<BATCH_BYTES>-*
#        for another batch size). Every throughput run keeps at most
#        1 GiB per partition replica (log.retention.bytes, checked every 5 s), so
#        a minute at full speed fits the disk.
#
# The page cache: a broker's machine runs with its page cache full, so the
# pages of new segments come from reclaiming old ones. A run that starts
# with most memory free instead writes into pages never used since the VM
# handed them back to its host (free page reporting, as this one does):
# the first write to each costs about 1.1 s of CPU per GB here, against
# 0.3 s for a page cache write into memory already backed, and the run
# slows down by half once the memory it started with runs out. So each run
# starts right after reading a file of FILL_GIB (default: memory less
# 3 GiB) into the page cache, which puts every run where a broker that has
# been running for a while is. FILL_GIB=0 skips it.
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

batch_bytes=${BATCH_BYTES:-65536}
batch=(--batch-size "$batch_bytes")
tag=""
[ "$batch_bytes" = 65536 ] || tag="-b$batch_bytes"
retention=(--set log.retention.bytes=1073741824 --set log.retention.check.interval.ms=5000)
fill_gib=${FILL_GIB:-$(awk '/MemTotal/ {printf "%d", $2 / 1048576 - 3}' /proc/meminfo)}
# The fill file is written (a file only read, or a sparse one, is not kept
# cached the same way here), so it takes disk beside the runs' up to 40 GiB
# (three brokers: 4 partitions of 1 GiB retained, an active and a spare
# segment each).
room_gib=$(($(df --output=avail -k "$work" | tail -1) / 1048576 - 40))
if [ "$fill_gib" -gt "$room_gib" ]; then
  echo "only room for a ${room_gib} GiB fill file on $(df --output=target "$work" | tail -1)" >&2
  fill_gib=$((room_gib > 0 ? room_gib : 0))
fi
fill() {
  [ "$fill_gib" -gt 0 ] || return 0
  if [ ! -f "$work/fill" ]; then
    dd if=/dev/zero of="$work/fill" bs=1M count=$((fill_gib * 1024)) status=none
  fi
  cat "$work/fill" >/dev/null
}

single() { # ROUND
  echo "== 1 broker, acks=1, replication factor 1, ${duration}s (round $1)"
  fill
  "$target/release/broker" --node-id 1 --data-dir "$work/single" --listen 127.0.0.1:29092 \
    "${retention[@]}" >"$work/single.log" 2>&1 &
  pids+=($!)
  wait_port 127.0.0.1:29092
  "$target/release/loadgen" produce --brokers 127.0.0.1:29092 --topic single --partitions 4 \
    --message-size 1024 --duration "$duration" --acks 1 "${batch[@]}" \
    --json "benches/results/replication-single-acks1$tag-$1.json"
  kill -TERM "${pids[0]}"; wait "${pids[0]}" || true
  pids=()
  rm -rf "$work/single"
}

cluster() { # ROUND
  echo "== 3 brokers, acks=all, replication factor 3, min.insync.replicas 2, ${duration}s (round $1)"
  fill
  local voters="1@127.0.0.1:29191,2@127.0.0.1:29192,3@127.0.0.1:29193"
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
    --duration "$duration" --acks all --idempotence "${batch[@]}" \
    --json "benches/results/replication-cluster-acksall$tag-$1.json"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  rm -rf "$work"/node-*
}

single 1
cluster 1
cluster 2
single 2
TAG="$tag" python3 - <<'PY'
import json, os
tag = os.environ["TAG"]
def rate(name):
    with open(f"benches/results/replication-{name}.json") as f:
        figures = json.load(f)
    return figures["results"][0]["mb_per_s"]
single = [rate(f"single-acks1{tag}-{r}") for r in (1, 2)]
cluster = [rate(f"cluster-acksall{tag}-{r}") for r in (1, 2)]
print(f"1 broker acks=1: {single[0]:.1f} and {single[1]:.1f} MB/s; "
      f"3 brokers acks=all: {cluster[0]:.1f} and {cluster[1]:.1f} MB/s; "
      f"ratio of the means {sum(cluster) / sum(single):.2f}")
PY

rm -rf "$work"/node-*
if [ "$kills" -gt 0 ]; then
  echo "== failover and catch-up"
  BROKER_BIN="$target/release/broker" "$target/release/replication_figures" "$kills" "$catch_up"
fi
