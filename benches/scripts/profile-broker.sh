#!/usr/bin/env bash
# Profiles a release broker under one standard workload and draws a
# flamegraph of where its CPU goes.
#
#   benches/scripts/profile-broker.sh WORKLOAD [SECONDS]
#
# WORKLOAD: produce-1k (1 KiB records, 1 partition, acks=1), produce-100
# (100 B records), or consume-1k (1 KiB records produced first, the broker
# profiled while a consumer reads them back). Our client drives the broker;
# CLIENT=rdkafka drives it with librdkafka instead.
#
# Writes $OUT/broker-WORKLOAD.svg (default OUT: target/profiles) and the
# folded stacks beside it. Needs perf (Debian: linux-perf) and inferno's
# collapse-perf and flamegraph (installed with `cargo install inferno` when
# missing). CALL_GRAPH (default dwarf) is passed to `perf record --call-graph`:
# release builds keep no frame pointers, so dwarf unwinding is what names
# the broker's own frames. MINWIDTH (default 0.25) leaves out frames under
# that percent of the samples, which keeps the SVG to a few hundred KiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/lib.sh
workload=${1:?usage: profile-broker.sh produce-1k|produce-100|consume-1k [SECONDS]}
seconds=${2:-5}
out=${OUT:-target/profiles}
client=${CLIENT:-ours}
call_graph=${CALL_GRAPH:-dwarf}
case "$workload" in
  produce-1k) size=1024 ;;
  produce-100) size=100 ;;
  consume-1k) size=1024 ;;
  *) echo "unknown workload: $workload" >&2; exit 2 ;;
esac
command -v perf >/dev/null || { echo "perf is missing (Debian: apt-get install linux-perf)" >&2; exit 1; }
if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
  cargo install --locked inferno
fi
mkdir -p "$out" target/bench-data
cargo build --release -p broker -p benches --bins
broker=target/release/broker
loadgen=target/release/loadgen

dir=$(mktemp -d target/bench-data/profile.XXXXXX)
perf_data="$dir.perf"
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  rm -rf "$dir" "$dir.log" "$perf_data" "$perf_data.old"
}
trap cleanup EXIT
"$broker" --data-dir "$dir" --listen 127.0.0.1:0 >"$dir.log" 2>&1 &
broker_pid=$!
addr=$(broker_address "$dir.log")

common=(--brokers "$addr" --topic profile --partitions 1 --message-size "$size" --client "$client")
case "$workload" in
  produce-*) run=("$loadgen" produce "${common[@]}" --duration "$seconds" --acks 1) ;;
  consume-1k)
    "$loadgen" produce "${common[@]}" --duration "$seconds" --acks 1 | grep '^produce:'
    run=("$loadgen" consume "${common[@]}")
    ;;
esac

# Record only while the workload runs: perf attaches to the broker, the
# workload runs in the foreground, then perf is stopped.
perf record -F 499 --call-graph "$call_graph" -o "$perf_data" -p "$broker_pid" 2>"$dir.perf.log" &
perf_pid=$!
sleep 0.5
"${run[@]}" | grep -E '^(produce|consume)'
kill -INT "$perf_pid"
wait "$perf_pid" || true

svg="$out/broker-$workload.svg"
perf script -i "$perf_data" 2>/dev/null | inferno-collapse-perf >"$out/broker-$workload.folded"
inferno-flamegraph --minwidth "${MINWIDTH:-0.25}" \
  --title "broker: $workload ($client client, ${seconds}s)" \
  <"$out/broker-$workload.folded" >"$svg"
echo "flamegraph: $svg"
