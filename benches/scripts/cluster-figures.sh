#!/usr/bin/env bash
# Figures of the cluster's control plane on real release brokers (see
# tests/src/bin/cluster_figures.rs): controller election after kill -9,
# partition leader failover after kill -9, 10,000 partitions on 3 nodes
# (time, controller memory, metadata log size, restart time).
#
# Usage: benches/scripts/cluster-figures.sh [ROUNDS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p broker --bin broker -p tests --bin cluster_figures
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
target=$(realpath "${CARGO_TARGET_DIR:-target}")
BROKER_BIN="$target/release/broker" "$target/release/cluster_figures" "${1:-5}"
