//! Storage engine micro-benchmarks, each printed beside the raw disk doing the
//! same work in the same run, so the ratio shows what the engine costs.
//!
//! - append: prebuilt 1 KiB and 16 KiB batches validated (headers and CRC, as
//!   the broker does on produce) and appended through `PartitionLog`, against
//!   the same bytes written with plain `write(2)`, one call per batch, to one file;
//! - read: the whole log read back sequentially through `PartitionLog::read`
//!   (zero-copy slices of the mapping, every byte touched), against the raw
//!   sequential-write bandwidth and a plain `read(2)` of the same file.
//!
//! A first line gives the disk's sequential-write bandwidth with 1 MiB writes.
//! Both sides use the same flush policy: `fsync` once a second (the broker's
//! default) and once at the end, so each figure includes getting the bytes to disk.
//!
//! Appends also report the CPU time they used per GiB (user and system, of
//! the one thread doing the work, from `/proc/thread-self/schedstat`): unlike
//! MiB/s, it hardly moves when other work shares the machine or the disk.
//!
//! Run: `cargo bench -p benches --bench storage [-- --megabytes N --dir DIR]`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use broker::storage::{FlushPolicy, LogConfig, LogManager, TopicPartition};
use bytes::Bytes;
use protocol::batch::{validate_record_set, BatchBuilder, Record};

/// Interval between fsyncs on both sides of every comparison.
const FLUSH_INTERVAL: Duration = Duration::from_millis(1000);
const MEGABYTES_DEFAULT: usize = 1024;

struct Args {
    megabytes: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        megabytes: MEGABYTES_DEFAULT,
        dir: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--megabytes" => {
                args.megabytes = iter
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--megabytes N")
            }
            "--dir" => args.dir = iter.next().map(PathBuf::from),
            // cargo bench passes --bench; ignore what we do not know.
            _ => {}
        }
    }
    args
}

/// One batch of `batch_bytes` (about), made of 1 KiB-ish records.
fn make_batch(batch_bytes: usize) -> Bytes {
    let record_value = 1000.min(batch_bytes.saturating_sub(100)).max(10);
    let mut builder = BatchBuilder::new();
    while builder.size_bytes() + record_value + 20 <= batch_bytes || builder.is_empty() {
        builder.push(&Record {
            key: None,
            value: Some(Bytes::from(vec![b'x'; record_value])),
            headers: vec![],
            timestamp: now_ms(),
        });
    }
    builder.build()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

/// CPU time the calling thread has used so far, user and system (Linux);
/// zero where `/proc/thread-self/schedstat` is missing.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn cpu_s_per_gib(bytes: u64, cpu: Duration) -> f64 {
    cpu.as_secs_f64() / (bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

/// Plain `write(2)` of `batch` repeated to reach `total` bytes, fsync every
/// FLUSH_INTERVAL and at the end. Returns bytes written, elapsed and CPU time.
fn raw_write(path: &Path, batch: &[u8], total: u64) -> (u64, Duration, Duration) {
    let mut file = std::fs::File::create(path).unwrap();
    let cpu_started = thread_cpu();
    let started = Instant::now();
    let mut last_sync = started;
    let mut written = 0u64;
    while written < total {
        file.write_all(batch).unwrap();
        written += batch.len() as u64;
        if last_sync.elapsed() >= FLUSH_INTERVAL {
            file.sync_data().unwrap();
            last_sync = Instant::now();
        }
    }
    file.sync_data().unwrap();
    (written, started.elapsed(), thread_cpu() - cpu_started)
}

fn raw_read(path: &Path) -> (u64, Duration, u64) {
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    let mut total = 0u64;
    let mut checksum = 0u64;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        checksum = checksum.wrapping_add(touch(&buf[..n]));
    }
    (total, started.elapsed(), checksum)
}

/// Reads every 64th byte: enough to fault in every page without timing a full scan.
fn touch(bytes: &[u8]) -> u64 {
    bytes.iter().step_by(64).map(|b| u64::from(*b)).sum()
}

struct EngineRun {
    appended: u64,
    append_time: Duration,
    append_cpu: Duration,
    read: u64,
    read_time: Duration,
}

fn engine(dir: &Path, batch: &Bytes, total: u64) -> EngineRun {
    let config = LogConfig {
        flush_policy: FlushPolicy::IntervalMs(FLUSH_INTERVAL.as_millis() as u64),
        retention_ms: None,
        ..LogConfig::default()
    };
    let manager = LogManager::open(dir, config.clone(), 1024).unwrap();
    let tp = TopicPartition {
        topic: "bench".into(),
        partition: 0,
    };
    let log = manager.create(&tp, config).unwrap();
    let cpu_started = thread_cpu();
    let started = Instant::now();
    let mut appended = 0u64;
    while appended < total {
        // The produce path: validate headers and CRC, then append.
        validate_record_set(batch).unwrap();
        let now = now_ms();
        let mut log = log.lock().unwrap();
        log.append(batch, 0, now).unwrap();
        drop(log);
        manager.flush_due(now).unwrap();
        appended += batch.len() as u64;
    }
    log.lock().unwrap().flush().unwrap();
    let append_time = started.elapsed();
    let append_cpu = thread_cpu() - cpu_started;

    let started = Instant::now();
    let mut offset = 0;
    let mut read = 0u64;
    let mut checksum = 0u64;
    loop {
        let log = log.lock().unwrap();
        let end = log.log_end_offset();
        if offset >= end {
            break;
        }
        let info = log.read(offset, 1 << 20, end, true).unwrap();
        drop(log);
        read += info.records.len() as u64;
        checksum = checksum.wrapping_add(touch(&info.records));
        let mut last = offset;
        for b in protocol::batch::batches(&info.records) {
            last = protocol::batch::BatchHeader::new(&b).unwrap().last_offset();
        }
        offset = last + 1;
    }
    let read_time = started.elapsed();
    std::hint::black_box(checksum);
    manager.shutdown().unwrap();
    EngineRun {
        appended,
        append_time,
        append_cpu,
        read,
        read_time,
    }
}

fn main() {
    let args = parse_args();
    let base = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
    };
    let total = args.megabytes as u64 * 1024 * 1024;
    println!(
        "storage benchmark: {} MiB per run in {}, fsync every {:?} and at the end, {} cores",
        args.megabytes,
        base.path().display(),
        FLUSH_INTERVAL,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<28} {:>12} {:>14} {:>8} {:>10} {:>14}",
        "workload", "MiB/s", "raw MiB/s", "ratio", "CPU s/GiB", "raw CPU s/GiB"
    );
    // The disk itself: the same policy, written 1 MiB at a time.
    let disk_path = base.path().join("disk");
    let (disk_bytes, disk_time, _) = raw_write(&disk_path, &vec![b'd'; 1 << 20], total);
    std::fs::remove_file(&disk_path).unwrap();
    println!(
        "{:<28} {:>12} {:>14.0}",
        "disk, 1 MiB writes",
        "",
        mb_per_s(disk_bytes, disk_time)
    );
    for batch_bytes in [1024usize, 16 * 1024] {
        let batch = make_batch(batch_bytes);
        let raw_path = base.path().join(format!("raw-{batch_bytes}"));
        let (raw_bytes, raw_time, raw_cpu) = raw_write(&raw_path, &batch, total);
        let raw_write_rate = mb_per_s(raw_bytes, raw_time);
        let (read_bytes, read_time, _) = raw_read(&raw_path);
        let raw_read_rate = mb_per_s(read_bytes, read_time);
        std::fs::remove_file(&raw_path).unwrap();

        let engine_dir = base.path().join(format!("engine-{batch_bytes}"));
        let run = engine(&engine_dir, &batch, total);
        let append_rate = mb_per_s(run.appended, run.append_time);
        let read_rate = mb_per_s(run.read, run.read_time);
        let label = format!("{} B batches", batch.len());
        println!(
            "{:<28} {:>12.0} {:>14.0} {:>8.2} {:>10.2} {:>14.2}",
            format!("append, {label}"),
            append_rate,
            raw_write_rate,
            append_rate / raw_write_rate,
            cpu_s_per_gib(run.appended, run.append_cpu),
            cpu_s_per_gib(raw_bytes, raw_cpu)
        );
        println!(
            "{:<28} {:>12.0} {:>14.0} {:>8.2}   (raw sequential write)",
            format!("read, {label}"),
            read_rate,
            raw_write_rate,
            read_rate / raw_write_rate
        );
        println!(
            "{:<28} {:>12.0} {:>14.0} {:>8.2}   (raw read(2) of the same bytes)",
            format!("read, {label}"),
            read_rate,
            raw_read_rate,
            read_rate / raw_read_rate
        );
        std::fs::remove_dir_all(&engine_dir).unwrap();
    }
}
