#!/usr/bin/env bash
# Figures of partition replication on release brokers, all in one run on
# this machine so they compare:
#   1. one broker, acks=1, replication factor 1 (the baseline);
#   2. three brokers, acks=all, replication factor 3, min.insync.replicas 2;
#      both with 1 KiB records, 4 partitions, our Rust client, for DURATION s,
#      ROUNDS times each (default 2) in the order 1, 2, 2, 1, 1, 2, ..., each
#      with the page cache full (see below); and first, the disk's write
#      bandwidth, which bounds the three brokers sharing it. The single
#      broker runs with its defaults (a worker thread per core); the three
#      brokers split the cores, CLUSTER_THREADS worker threads each
#      (num.worker.threads, default 1), as brokers sharing a machine should:
#      with a thread per core each, six threads contend for two cores;
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
# pages of new segments come from reclaiming old ones. This VM instead hands
# free memory back to its host (free page reporting), and its kernel pages
# out file pages unused for a minute (DAMON reclaim); the first write to a
# page handed back costs about 1.1 s of CPU per GB here, against 0.3 s for
# a page cache write into memory already backed. A run that starts with
# gigabytes free writes at a third of its speed until they are used up:
# with 3 GiB left free, the three-broker runs lost 5-8 s that way and the
# single broker up to 15 s. So each run starts right after filling the
# memory with a file's pages: where it may (as root), the script empties
# the page cache, then reads the fill file (FILL_GIB, default the size of
# the memory) until about 1 GiB is left free, as on a broker that has been
# running for a while; otherwise it reads the whole file. FILL_GIB=0 skips
# it.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-60}
kills=${2:-20}
catch_up=${3:-1024}
# The cluster runs wait for every node to see all three brokers with kcat.
command -v kcat >/dev/null || { echo "kcat is needed (scripts/install-test-deps installs it)" >&2; exit 1; }
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
cluster_threads=${CLUSTER_THREADS:-1}
fill_gib=${FILL_GIB:-$(awk '/MemTotal/ {printf "%d", $2 / 1048576}' /proc/meminfo)}
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
  if [ -w /proc/sys/vm/drop_caches ]; then
    sync
    echo 1 >/proc/sys/vm/drop_caches
    # Read the file a GiB at a time until about 1 GiB is left free.
    local gib=0
    while [ "$gib" -lt "$fill_gib" ] && [ "$(awk '/MemFree/ {print int($2 / 1048576)}' /proc/meminfo)" -gt 1 ]; do
      dd if="$work/fill" of=/dev/null bs=1M count=1024 skip=$((gib * 1024)) status=none
      gib=$((gib + 1))
    done
  else
    cat "$work/fill" >/dev/null
  fi
  awk '/MemFree/ {printf "memory free after the fill: %.1f GiB\n", $2 / 1048576}' /proc/meminfo
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
  echo "== 3 brokers, acks=all, replication factor 3, min.insync.replicas 2, $cluster_threads worker thread(s) each, ${duration}s (round $1)"
  fill
  local voters="1@127.0.0.1:29191,2@127.0.0.1:29192,3@127.0.0.1:29193"
  for id in 1 2 3; do
    "$target/release/broker" --node-id "$id" --data-dir "$work/node-$id" --listen "127.0.0.1:2909$id" \
      --controller-listen "127.0.0.1:2919$id" --controller-voters "$voters" \
      --set min.insync.replicas=2 --set "num.worker.threads=$cluster_threads" "${retention[@]}" \
      >"$work/node-$id.log" 2>&1 &
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

# The disk's write bound, which three brokers on one disk share: three
# writers of 2 GiB each, bypassing the page cache.
disk() {
  local start end
  start=$(date +%s.%N)
  for i in 1 2 3; do
    dd if=/dev/zero of="$work/disk-$i" bs=1M count=2048 oflag=direct status=none &
  done
  wait
  end=$(date +%s.%N)
  rm -f "$work"/disk-*
  awk -v s="$start" -v e="$end" 'BEGIN {printf "disk: %.0f MB/s written by 3 direct writers\n", 3 * 2048 * 1048576 / (e - s) / 1e6}' | tee benches/results/replication-disk.txt
}
disk

# Rounds in the order 1, 2, 2, 1, 1, 2, ... (1 = single broker, 2 = cluster).
rounds=${ROUNDS:-2}
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then single "$r"; cluster "$r"; else cluster "$r"; single "$r"; fi
done
TAG="$tag" ROUNDS="$rounds" python3 - <<'PY'
import json, os
tag = os.environ["TAG"]
rounds = range(1, int(os.environ["ROUNDS"]) + 1)
def rate(name):
    with open(f"benches/results/replication-{name}.json") as f:
        figures = json.load(f)
    return figures["results"][0]["mb_per_s"]
single = [rate(f"single-acks1{tag}-{r}") for r in rounds]
cluster = [rate(f"cluster-acksall{tag}-{r}") for r in rounds]
print("1 broker acks=1: " + ", ".join(f"{x:.1f}" for x in single) + " MB/s; "
      "3 brokers acks=all: " + ", ".join(f"{x:.1f}" for x in cluster) + " MB/s; "
      f"ratio of the means {sum(cluster) / sum(single):.2f}")
PY
rm -rf "$work"/node-*
if [ "$kills" -gt 0 ]; then
  echo "== failover and catch-up"
  BROKER_BIN="$target/release/broker" "$target/release/replication_figures" "$kills" "$catch_up"
fi
