//! What this machine does with no broker logic, measured in the same run as
//! the broker figures so that each can be given as a ratio:
//!
//! - raw sequential write: 1 MiB `write(2)`s into a file;
//! - loopback to file: bytes pushed through one loopback TCP connection and
//!   written into a file on the other side (what a produce path cannot beat);
//! - file to loopback: a file read and sent through one loopback TCP
//!   connection (what a consume path cannot beat);
//! - new memory: the first write of memory this process has not used, one
//!   byte per 4 KiB page: what each new page of a growing log's page cache
//!   costs the machine before any bytes are copied.
//!
//! - core stalls (measured first, before any file is being written back):
//!   one thread per core, pinned, doing nothing but read the clock; every
//!   pause between two readings is time the core was taken from it (by the
//!   hypervisor on a VM, or by interrupts and other threads). No latency
//!   figure on this machine can beat a core that vanishes for milliseconds
//!   at a time.
//!
//! Every side that writes a file fsyncs on the broker's default flush policy
//! (once a second) and once at the end.
//!
//! Each baseline deletes its file when it is done, so the next one writes
//! into page-cache memory freed a moment ago, as each standard workload
//! does (every workload starts on a fresh broker whose previous data was
//! just deleted). On a VM whose host takes back free guest memory
//! (virtio-balloon free page reporting), memory not touched lately costs a
//! host fault per page on first write, about 4-5 us per 4 KiB against
//! 1.5 us for memory freed a moment ago; the new-memory baseline reports
//! what that state costs on the day. A long-running broker whose page cache
//! has filled the machine reuses reclaimed pages, not new ones, so memory
//! freed a moment ago is the nearer model of it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// fsync interval of every baseline that writes a file.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(1000);
/// Buffer size of the receiving and sending sides.
const BUFFER_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Rate {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn write_with_flush_policy(
    file: &mut std::fs::File,
    chunk: &[u8],
    total: u64,
) -> std::io::Result<u64> {
    let mut written = 0u64;
    let mut last_sync = Instant::now();
    while written < total {
        file.write_all(chunk)?;
        written += chunk.len() as u64;
        if last_sync.elapsed() >= FLUSH_INTERVAL {
            file.sync_data()?;
            last_sync = Instant::now();
        }
    }
    file.sync_data()?;
    Ok(written)
}

/// Raw sequential write bandwidth of the disk holding `dir`.
pub fn raw_sequential_write(dir: &Path, total: u64) -> std::io::Result<Rate> {
    let path = dir.join("baseline-raw-write");
    let mut file = std::fs::File::create(&path)?;
    let chunk = vec![0x5au8; BUFFER_BYTES];
    let started = Instant::now();
    let bytes = write_with_flush_policy(&mut file, &chunk, total)?;
    let elapsed = started.elapsed();
    std::fs::remove_file(&path)?;
    Ok(Rate { bytes, elapsed })
}

/// Bytes sent in `chunk_bytes` writes over loopback TCP and written to a file by the receiver.
pub fn loopback_to_file(dir: &Path, chunk_bytes: usize, total: u64) -> std::io::Result<Rate> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let path = dir.join("baseline-loopback-to-file");
    let receiver_path = path.clone();
    let receiver = std::thread::spawn(move || -> std::io::Result<(u64, Instant)> {
        let (mut socket, _) = listener.accept()?;
        let mut file = std::fs::File::create(&receiver_path)?;
        let mut buf = vec![0u8; BUFFER_BYTES];
        let mut received = 0u64;
        let mut last_sync = Instant::now();
        loop {
            let n = socket.read(&mut buf)?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])?;
            received += n as u64;
            if last_sync.elapsed() >= FLUSH_INTERVAL {
                file.sync_data()?;
                last_sync = Instant::now();
            }
        }
        file.sync_data()?;
        Ok((received, Instant::now()))
    });
    let mut socket = TcpStream::connect(addr)?;
    socket.set_nodelay(true)?;
    let chunk = vec![0xa5u8; chunk_bytes.max(1)];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        socket.write_all(&chunk)?;
        sent += chunk.len() as u64;
    }
    drop(socket);
    let (bytes, done) = receiver.join().expect("receiver thread")?;
    std::fs::remove_file(&path)?;
    Ok(Rate {
        bytes,
        elapsed: done - started,
    })
}

/// A file of `total` bytes read and sent over loopback TCP; the receiver discards it.
pub fn file_to_loopback(dir: &Path, total: u64) -> std::io::Result<Rate> {
    let path = dir.join("baseline-file-to-loopback");
    {
        let mut file = std::fs::File::create(&path)?;
        write_with_flush_policy(&mut file, &vec![0x3cu8; BUFFER_BYTES], total)?;
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sender_path = path.clone();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut socket, _) = listener.accept()?;
        let mut file = std::fs::File::open(&sender_path)?;
        let mut buf = vec![0u8; BUFFER_BYTES];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            socket.write_all(&buf[..n])?;
        }
    });
    let mut socket = TcpStream::connect(addr)?;
    let mut buf = vec![0u8; BUFFER_BYTES];
    let started = Instant::now();
    let mut bytes = 0u64;
    loop {
        let n = socket.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    let elapsed = started.elapsed();
    sender.join().expect("sender thread")?;
    std::fs::remove_file(&path)?;
    Ok(Rate { bytes, elapsed })
}

/// Pages of memory this process never used, written once each (one byte per
/// 4 KiB page); `total` bytes of them. Run it last: it frees its memory.
pub fn new_memory_first_write(total: u64) -> Rate {
    const PAGE: usize = 4096;
    // Zeroed allocations this large come straight from mmap, untouched.
    let mut memory = vec![0u8; total as usize];
    let started = Instant::now();
    for at in (0..memory.len()).step_by(PAGE) {
        memory[at] = 1;
    }
    let elapsed = started.elapsed();
    std::hint::black_box(&memory);
    Rate {
        bytes: total,
        elapsed,
    }
}

/// A pause between two clock readings of a spinning thread longer than this
/// is counted as the core being taken away (a timer interrupt takes a few
/// microseconds).
pub const STALL_MIN: Duration = Duration::from_micros(100);

/// What one core's spinning thread saw.
#[derive(Debug, Clone, Copy)]
pub struct CoreStalls {
    pub cpu: usize,
    pub elapsed: Duration,
    /// Pauses of at least [`STALL_MIN`], and their total.
    pub stalls: u64,
    pub stalled: Duration,
    /// Pauses of more than 1 ms.
    pub stalls_over_1ms: u64,
    pub longest: Duration,
}

impl CoreStalls {
    /// The share of the run the core was away in pauses of at least [`STALL_MIN`].
    pub fn lost_share(&self) -> f64 {
        self.stalled.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Spins one thread pinned to each core this process may run on for
/// `duration`, reading the clock, and reports the pauses each saw. The
/// threads run at once, so each core is busy with its own and no other
/// thread of this machine's idle workload competes for long.
pub fn core_stalls(duration: Duration) -> std::io::Result<Vec<CoreStalls>> {
    let cpus = allowed_cpus()?;
    let threads: Vec<_> = cpus
        .into_iter()
        .map(|cpu| {
            std::thread::spawn(move || -> std::io::Result<CoreStalls> {
                pin_to(cpu)?;
                let started = Instant::now();
                let mut last = started;
                let mut stalls = CoreStalls {
                    cpu,
                    elapsed: Duration::ZERO,
                    stalls: 0,
                    stalled: Duration::ZERO,
                    stalls_over_1ms: 0,
                    longest: Duration::ZERO,
                };
                loop {
                    let now = Instant::now();
                    let pause = now - last;
                    last = now;
                    if pause >= STALL_MIN {
                        stalls.stalls += 1;
                        stalls.stalled += pause;
                        stalls.longest = stalls.longest.max(pause);
                        if pause > Duration::from_millis(1) {
                            stalls.stalls_over_1ms += 1;
                        }
                    }
                    if now - started >= duration {
                        stalls.elapsed = now - started;
                        return Ok(stalls);
                    }
                }
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("stall probe thread"))
        .collect()
}

/// The cores this process may run on.
fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, and the call writes
    // at most size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: cpu is below CPU_SETSIZE, the set's capacity.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: as in allowed_cpus; cpu comes from the allowed set, so it is
    // below CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_move_every_byte() {
        // Each baseline accounts for all the bytes it was asked to move.
        let dir = tempfile::tempdir().unwrap();
        let total = 4 << 20;
        assert!(raw_sequential_write(dir.path(), total).unwrap().bytes >= total);
        assert!(
            loopback_to_file(dir.path(), 16 * 1024, total)
                .unwrap()
                .bytes
                >= total
        );
        assert!(file_to_loopback(dir.path(), total).unwrap().bytes >= total);
        assert_eq!(new_memory_first_write(total).bytes, total);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "each baseline deletes its file: {left:?}");
    }

    #[test]
    fn core_stalls_probes_every_allowed_core_for_the_duration() {
        // One report per core this process may use, each for the whole
        // run, with its pauses inside it.
        let duration = Duration::from_millis(200);
        let cores = core_stalls(duration).unwrap();
        assert_eq!(cores.len(), allowed_cpus().unwrap().len());
        let cpus: std::collections::BTreeSet<usize> = cores.iter().map(|c| c.cpu).collect();
        assert_eq!(cpus.len(), cores.len(), "one thread per core: {cores:?}");
        for core in &cores {
            assert!(core.elapsed >= duration, "{core:?}");
            assert!(core.stalled <= core.elapsed, "{core:?}");
            assert!(core.longest <= core.stalled, "{core:?}");
            assert!(core.stalls_over_1ms <= core.stalls, "{core:?}");
            assert!((0.0..=1.0).contains(&core.lost_share()), "{core:?}");
        }
    }
}
