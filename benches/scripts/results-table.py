"""Builds the results table of docs/benchmarks.md from loadgen's JSON files.

Usage: results-table.py RESULTS_DIR
Each produce figure is given beside the loopback-into-a-file baseline, each
consume figure beside the file-over-loopback baseline, as MB/s and a ratio.
"""

import glob
import json
import os
import platform
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def main(out):
    baseline = load(os.path.join(out, "baseline.json"))
    base = {row["name"]: row["mb_per_s"] for row in baseline["baseline"]}
    cpus = os.cpu_count()
    print(f"Machine: {platform.machine()}, {cpus} cores, {platform.system()} {platform.release()}")
    print(f"Baselines: raw sequential write {base['raw_sequential_write']:.0f} MB/s, "
          f"loopback into a file {base['loopback_to_file']:.0f} MB/s, "
          f"file over loopback {base['file_to_loopback']:.0f} MB/s"
          + (f", first write of new memory {base['new_memory_first_write']:.0f} MB/s"
             if "new_memory_first_write" in base else ""))
    cores = baseline.get("core_stalls", [])
    if cores:
        print(f"Core stalls (a thread reading the clock on each core, {cores[0]['seconds']:.0f} s): "
              + "; ".join(f"core {c['cpu']} lost {100 * c['stalled_seconds'] / c['seconds']:.2f}% of its time, "
                          f"{c['stalls_over_1ms'] / c['seconds']:.1f} pauses/s over 1 ms, longest {c['longest_ms']:.2f} ms"
                          for c in cores))
    print()
    print("| workload | client | produce msg/s | produce MB/s | vs loopback→file | p50 ms | p99 ms | consume msg/s | consume MB/s | vs file→loopback |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(glob.glob(os.path.join(out, "produce-*.json"))):
        name = os.path.basename(path)[len("produce-"):-len(".json")]
        produce = load(path)
        settings = produce["settings"]
        p = produce["results"][0]
        consume_path = os.path.join(out, f"consume-{name}.json")
        c = load(consume_path)["results"][0] if os.path.exists(consume_path) else None
        workload = f"{settings['partitions']} part, {settings['message_size']} B, acks={settings['acks']}"
        lat = p.get("latency_ms", {})
        row = [
            workload,
            settings["client"],
            f"{p['messages_per_s']:,.0f}",
            f"{p['mb_per_s']:.1f}",
            f"{p['mb_per_s'] / base['loopback_to_file']:.2f}",
            f"{lat.get('p50', float('nan')):.2f}",
            f"{lat.get('p99', float('nan')):.2f}",
            f"{c['messages_per_s']:,.0f}" if c else "-",
            f"{c['mb_per_s']:.1f}" if c else "-",
            f"{c['mb_per_s'] / base['file_to_loopback']:.2f}" if c else "-",
        ]
        print("| " + " | ".join(row) + " |")

    latency_table(out, "latency", "Open loop at half the closed-loop maximum (linger 0, 1 partition, acks=1):")
    latency_table(out, "lingered", "The same with the client's default linger (5 ms, as the closed loop ran):")
    latency_table(out, "pinned", "Linger 0 again, with the broker on one core and loadgen on the other (taskset):")


def latency_table(out, prefix, title):
    runs = sorted(glob.glob(os.path.join(out, f"{prefix}-*.json")))
    if not runs:
        return
    print()
    print(title)
    print()
    print("| workload | client | target msg/s | achieved msg/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in runs:
        run = load(path)
        settings = run["settings"]
        r = run["results"][0]
        lat = r.get("latency_ms", {})
        row = [
            f"{settings['message_size']} B",
            settings["client"],
            f"{float(settings['rate']):,.0f}",
            f"{r['messages_per_s']:,.0f}",
        ] + [f"{lat.get(k, float('nan')):.2f}" for k in ("p50", "p90", "p99", "p999", "max")]
        print("| " + " | ".join(row) + " |")

if __name__ == "__main__":
    main(sys.argv[1])
