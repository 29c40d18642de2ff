//! A private network for fault tests: one Linux network namespace per host,
//! joined by veth pairs to a bridge in the root namespace, on a /24 of
//! `10.0.0.0/8` that no interface of this machine uses. The test process
//! reaches every host through the bridge, whose address is the subnet's `.1`;
//! host `n` is `.(10 + n)`.
//!
//! A cut is a blackhole route inside a host's namespace for the address it
//! must no longer reach. Each namespace runs with strict reverse-path
//! filtering (`rp_filter=1`), so the same route also drops every packet
//! arriving *from* that address: a cut stops traffic both ways, including
//! bytes already in flight on an established connection, and it is placed in
//! both namespaces of a cut pair anyway. The root namespace's routes are never
//! touched, so nothing outside the namespaces and the bridge needs undoing.
//!
//! Everything is named with [`NAME_PREFIX`], the test process's pid and a
//! counter, and removed when the [`Network`] is dropped (also when a test
//! panics). A run that was killed leaves its namespaces behind; the next
//! [`Network::new`] removes those of processes that no longer exist (see
//! `docs/replication.md`, "Fault tests", for doing it by hand). Needs root and
//! iproute2.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context};

/// What every namespace and bridge of a fault-test network is named with.
pub const NAME_PREFIX: &str = "kft";
/// How many candidate subnets are tried before giving up: more than enough
/// for the few networks a machine's test runs hold at once.
const SUBNET_PROBES_MAX: u32 = 64;
/// The first host address in the subnet: host `n` is `.(HOST_ADDRESS_BASE + n)`.
const HOST_ADDRESS_BASE: u8 = 10;
/// The most hosts one network has; keeps the interface names within Linux's
/// 15 characters and the addresses within the /24.
pub const HOSTS_MAX: usize = 9;

/// How long a connection from inside a namespace may take to be accepted.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Networks made by this process so far, so that each has its own names and subnet.
static NETWORKS_MADE: AtomicU32 = AtomicU32::new(0);

/// A bridge and `hosts` namespaces; see the module docs.
pub struct Network {
    bridge: String,
    subnet: [u8; 3],
    hosts: usize,
    /// The blackhole routes in place: (host, address it cannot reach).
    cuts: Mutex<BTreeSet<(usize, Ipv4Addr)>>,
}

impl Network {
    /// Creates `hosts` namespaces (hosts 1..=`hosts`) on a fresh subnet, each
    /// with `lo` up and reachable from the test process and from each other.
    pub fn new(hosts: usize) -> anyhow::Result<Network> {
        assert!(
            (1..=HOSTS_MAX).contains(&hosts),
            "a network has 1 to {HOSTS_MAX} hosts"
        );
        remove_leftovers();
        let pid = std::process::id();
        let counter = NETWORKS_MADE.fetch_add(1, Ordering::Relaxed);
        // The pid in hex keeps the names short enough for interface names:
        // "kft" + 6 hex digits + "x" + 2 hex digits + "v9" is 14 characters.
        let bridge = format!("{NAME_PREFIX}{pid:x}x{:x}", counter % 0x100);
        for probe in 0..SUBNET_PROBES_MAX {
            let subnet = candidate_subnet(pid, counter, probe);
            if subnet_in_use(subnet)? {
                continue;
            }
            let network = Network {
                bridge: bridge.clone(),
                subnet,
                hosts,
                cuts: Mutex::new(BTreeSet::new()),
            };
            network.create_bridge()?;
            // Another process may have taken the same subnet meanwhile: then
            // two interfaces carry it, and this one gives it up.
            if interfaces_on(subnet)? > 1 {
                drop(network);
                continue;
            }
            for host in 1..=hosts {
                network.create_host(host)?;
            }
            return Ok(network);
        }
        bail!("no free 10.x.y.0/24 subnet among {SUBNET_PROBES_MAX} candidates")
    }

    fn create_bridge(&self) -> anyhow::Result<()> {
        ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        let gateway = format!("{}/24", self.gateway());
        ip(&["addr", "add", &gateway, "dev", &self.bridge])?;
        ip(&["link", "set", &self.bridge, "up"])?;
        Ok(())
    }

    fn create_host(&self, host: usize) -> anyhow::Result<()> {
        let namespace = self.namespace(host);
        let outside = format!("{}v{host}", self.bridge);
        let inside = format!("{}p{host}", self.bridge);
        ip(&["netns", "add", &namespace])?;
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside, "netns", &namespace,
        ])?;
        ip(&["link", "set", &outside, "master", &self.bridge, "up"])?;
        let address = format!("{}/24", self.host_addr(host));
        ip(&["-n", &namespace, "addr", "add", &address, "dev", &inside])?;
        ip(&["-n", &namespace, "link", "set", &inside, "up"])?;
        ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        // Strict reverse-path filtering makes a blackhole route drop what
        // arrives from the blackholed address too, so one route is a cut both ways.
        for key in ["all", "default"] {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &namespace,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{key}.rp_filter=1"),
                ],
            )?;
        }
        Ok(())
    }

    /// The number of hosts.
    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// Host `host`'s namespace name.
    pub fn namespace(&self, host: usize) -> String {
        assert!(
            (1..=self.hosts).contains(&host),
            "no host {host} in a network of {}",
            self.hosts
        );
        format!("{}-{host}", self.bridge)
    }

    /// Host `host`'s address.
    pub fn host_addr(&self, host: usize) -> Ipv4Addr {
        assert!((1..=self.hosts).contains(&host), "no host {host}");
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, HOST_ADDRESS_BASE + host as u8)
    }

    /// The bridge's address: where the test process's connections come from.
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// The command prefix that runs a program inside host `host`'s namespace.
    pub fn exec_prefix(&self, host: usize) -> Vec<String> {
        vec![
            "ip".to_string(),
            "netns".to_string(),
            "exec".to_string(),
            self.namespace(host),
        ]
    }

    /// A TCP connection to `addr` made from inside host `host`'s namespace,
    /// as a client running on that host would make it: the one way to reach
    /// a host the test process is cut off from. (A socket stays in the
    /// namespace it was made in; only a helper thread enters the namespace.)
    pub fn connect_from(&self, host: usize, addr: &str) -> anyhow::Result<TcpStream> {
        let path = format!("/run/netns/{}", self.namespace(host));
        let addr: SocketAddr = addr.parse().with_context(|| format!("address {addr}"))?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let namespace =
                        std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
                    // SAFETY: setns(2) on an open namespace file changes only
                    // this thread's network namespace; the thread ends here.
                    let result = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
                    if result != 0 {
                        bail!("setns({path}): {}", std::io::Error::last_os_error());
                    }
                    TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                        .with_context(|| format!("connect to {addr} from host {host}"))
                })
                .join()
                .expect("the connecting thread does not panic")
        })
    }

    /// Cuts hosts `a` and `b` off from each other, both ways.
    pub fn cut(&self, a: usize, b: usize) -> anyhow::Result<()> {
        assert_ne!(a, b, "a host cannot be cut from itself");
        self.blackhole(a, self.host_addr(b))?;
        self.blackhole(b, self.host_addr(a))
    }

    /// Cuts host `host` off from the test process (and anything else in the
    /// root namespace), both ways.
    pub fn cut_from_test_process(&self, host: usize) -> anyhow::Result<()> {
        self.blackhole(host, self.gateway())
    }

    /// Cuts host `host` off from every other host and from the test process.
    pub fn isolate(&self, host: usize) -> anyhow::Result<()> {
        for other in (1..=self.hosts).filter(|other| *other != host) {
            self.cut(host, other)?;
        }
        self.cut_from_test_process(host)
    }

    /// Removes every cut.
    pub fn heal(&self) -> anyhow::Result<()> {
        let cuts = std::mem::take(&mut *self.cuts.lock().unwrap());
        for (host, address) in cuts {
            ip(&[
                "-n",
                &self.namespace(host),
                "route",
                "del",
                "blackhole",
                &format!("{address}/32"),
            ])?;
        }
        Ok(())
    }

    fn blackhole(&self, host: usize, address: Ipv4Addr) -> anyhow::Result<()> {
        if !self.cuts.lock().unwrap().insert((host, address)) {
            return Ok(());
        }
        ip(&[
            "-n",
            &self.namespace(host),
            "route",
            "add",
            "blackhole",
            &format!("{address}/32"),
        ])
        .map(drop)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace destroys its end of each veth pair, which
        // destroys the other end; the bridge goes last. Errors are ignored:
        // a half-built network has fewer pieces to remove.
        for host in 1..=self.hosts {
            let _ = ip(&["netns", "del", &format!("{}-{host}", self.bridge)]);
            let _ = ip(&["link", "del", &format!("{}v{host}", self.bridge)]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Candidate `probe` for a network's subnet: `10.X.Y.0/24` with X in
/// 128..=254, spread by pid and counter so that parallel test processes
/// rarely try the same one first.
fn candidate_subnet(pid: u32, counter: u32, probe: u32) -> [u8; 3] {
    const SPACE: u32 = 127 * 256;
    let n = (pid.wrapping_mul(31).wrapping_add(counter.wrapping_mul(257)) + probe * 7919) % SPACE;
    [10, 128 + (n / 256) as u8, (n % 256) as u8]
}

fn subnet_in_use(subnet: [u8; 3]) -> anyhow::Result<bool> {
    let [a, b, c] = subnet;
    let prefix = format!("{a}.{b}.{c}.");
    let routes = ip(&["-4", "route", "show", "table", "all"])?;
    Ok(interfaces_on(subnet)? > 0 || routes.contains(&prefix))
}

/// How many interfaces of the root namespace have an address in `subnet`.
fn interfaces_on(subnet: [u8; 3]) -> anyhow::Result<usize> {
    let [a, b, c] = subnet;
    let needle = format!(" {a}.{b}.{c}.");
    let addresses = ip(&["-o", "-4", "addr", "show"])?;
    Ok(addresses.lines().filter(|l| l.contains(&needle)).count())
}

/// Removes the namespaces and bridges of fault-test networks whose process
/// no longer exists (a run killed before its `Drop`), first killing any
/// broker still running inside them.
pub fn remove_leftovers() {
    let Ok(namespaces) = ip(&["netns", "list"]) else {
        return;
    };
    for line in namespaces.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if owner_is_gone(name) {
            if let Ok(pids) = ip(&["netns", "pids", name]) {
                for pid in pids
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    // SAFETY: kill(2) has no memory effects; the pid is a
                    // process inside a namespace this harness created.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
            eprintln!("netns: removing leftover namespace {name}");
            let _ = ip(&["netns", "del", name]);
        }
    }
    let Ok(links) = ip(&["-o", "link", "show"]) else {
        return;
    };
    for line in links.lines() {
        // "7: kft1a2bx0: <BROADCAST,...": the name, cut at a veth's "@peer".
        let Some(name) = line
            .split(": ")
            .nth(1)
            .map(|n| n.split('@').next().unwrap_or(n))
        else {
            continue;
        };
        if owner_is_gone(name) {
            eprintln!("netns: removing leftover interface {name}");
            let _ = ip(&["link", "del", name]);
        }
    }
}

/// True for a fault-test name (`kft<pid in hex>x...`) whose process is gone.
fn owner_is_gone(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
        return false;
    };
    let Some((pid, _)) = rest.split_once('x') else {
        return false;
    };
    let Ok(pid) = u32::from_str_radix(pid, 16) else {
        return false;
    };
    pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} (fault tests need iproute2 and root)"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
