#!/usr/bin/env bash
# Runs the standard workloads of docs/benchmarks.md against a fresh release
# broker on this machine, with the baselines measured in the same run, and
# prints the results table (also written to $OUT/results.md).
#
#   benches/scripts/standard-workloads.sh [SECONDS_PER_WORKLOAD]
#
# Environment: OUT (results dir, default target/bench-results), DATA (broker
# data dir's parent, default target/bench-data: the disk being measured),
# CLIENTS (default "ours rdkafka"). The pinned latency runs need taskset
# (util-linux).
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/lib.sh
seconds=${1:-10}
out=${OUT:-target/bench-results}
data=${DATA:-target/bench-data}
clients=${CLIENTS:-"ours rdkafka"}
mkdir -p "$out" "$data"
rm -f "$out"/*.json

cargo build --release -p broker -p benches --bins
broker=target/release/broker
loadgen=target/release/loadgen

# Every run gets a fresh broker on a fresh data directory, and the previous
# run's directory is deleted first: each run then starts from the same state
# and writes into page-cache memory freed a moment ago, as the baselines do.
# On one long-lived broker each run wrote into memory the runs before it had
# not used, which on a VM whose host takes back free memory costs a host
# fault per page and slowed later runs two to three times (docs/benchmarks.md,
# fix 19). PREFIX: a command the broker runs under (taskset).
broker_pid=""
dir=""
log="$out/broker.log"
: >"$log"
stop_broker() {
  if [ -n "$broker_pid" ]; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  if [ -n "$dir" ]; then
    cat "$dir.log" >>"$log" 2>/dev/null || true
    rm -rf "$dir" "$dir.log"
  fi
  broker_pid=""
  dir=""
}
trap stop_broker EXIT
start_broker() {
  stop_broker
  dir=$(mktemp -d "$data/broker.XXXXXX")
  local run_log="$dir.log"
  echo "== broker for the next run, data in $dir" >>"$log"
  $PREFIX "$broker" --data-dir "$dir" --listen 127.0.0.1:0 >"$run_log" 2>&1 &
  broker_pid=$!
  addr=$(broker_address "$run_log")
}
PREFIX=""

# The baselines write about what a workload writes (~512 MB a second): a
# shorter write fits in the disk's caches and would flatter the machine.
"$loadgen" baseline --dir "$data" --megabytes "$((seconds * 512))" --stall-seconds "$seconds" \
  --json "$out/baseline.json"

for partitions in 1 8; do
  for size in 100 1024; do
    for acks in 1 all; do
      for client in $clients; do
        name="p${partitions}-s${size}-acks${acks}-${client}"
        topic="std-$name"
        idem=""
        [ "$acks" = all ] && idem="--idempotence"
        echo "== $name"
        start_broker
        "$loadgen" produce --brokers "$addr" --topic "$topic" --partitions "$partitions" \
          --message-size "$size" --duration "$seconds" --acks "$acks" $idem --client "$client" \
          --json "$out/produce-$name.json" --plot "$out/produce-$name.svg"
        # Consume exactly what was produced: no idle wait at the end.
        produced=$(python3 -c "import json; print(json.load(open('$out/produce-$name.json'))['results'][0]['messages'])")
        "$loadgen" consume --brokers "$addr" --topic "$topic" --partitions "$partitions" \
          --message-size "$size" --count "$produced" --client "$client" \
          --json "$out/consume-$name.json"
      done
    done
  done
done

# Half the messages/s of the closed-loop run whose JSON is $1.
half_rate() {
  python3 -c "import json; print(int(json.load(open('$1'))['results'][0]['messages_per_s'] / 2))"
}

# Latency: open loop at half the closed-loop maximum (1 partition, acks=1),
# so the percentiles are the broker's and the client's, not a full buffer's.
# Twice: with linger 0 (every record sent as soon as the client can), and
# with the client's default linger (5 ms, as the closed loop ran), where at
# these rates batches fill before the linger ends. The maximum is measured
# again right before: what the machine writes per second moves over minutes
# on a VM (docs/benchmarks.md, fix 15), and half of an earlier figure can be
# more than it does now.
for size in 100 1024; do
  for client in $clients; do
    name="p1-s${size}-acks1-${client}"
    start_broker
    "$loadgen" produce --brokers "$addr" --topic "max-$name" --partitions 1 \
      --message-size "$size" --duration "$seconds" --acks 1 --client "$client" \
      --json "$out/max-$name.json" >/dev/null
    rate=$(half_rate "$out/max-$name.json")
    echo "== latency $name at $rate msg/s (half of the closed loop just before)"
    start_broker
    "$loadgen" produce --brokers "$addr" --topic "lat-$name" --partitions 1 \
      --message-size "$size" --duration "$seconds" --acks 1 --linger-ms 0 --rate "$rate" \
      --client "$client" --json "$out/latency-$name.json" --plot "$out/latency-$name.svg"
    echo "== latency $name at $rate msg/s, default linger"
    start_broker
    "$loadgen" produce --brokers "$addr" --topic "lingered-$name" --partitions 1 \
      --message-size "$size" --duration "$seconds" --acks 1 --rate "$rate" \
      --client "$client" --json "$out/lingered-$name.json" --plot "$out/lingered-$name.svg"
  done
done

# The same latency runs with the broker's threads on one core and loadgen's
# on the other: what is left of the tail when the two do not preempt each
# other. Machines with fewer than two cores skip this.
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PREFIX="taskset -c 1"
  for size in 100 1024; do
    for client in $clients; do
      name="p1-s${size}-acks1-${client}"
      rate=$(half_rate "$out/max-$name.json")
      echo "== pinned latency $name at $rate msg/s"
      start_broker
      taskset -c 0 "$loadgen" produce --brokers "$addr" --topic "pin-$name" --partitions 1 \
        --message-size "$size" --duration "$seconds" --acks 1 --linger-ms 0 --rate "$rate" \
        --client "$client" --json "$out/pinned-$name.json" --plot "$out/pinned-$name.svg"
    done
  done
  PREFIX=""
fi
stop_broker

python3 benches/scripts/results-table.py "$out" | tee "$out/results.md"
