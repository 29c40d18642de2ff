//! Integration-test harness: starts real `broker` processes on free ports with
//! their own data directories, and gives tests small helpers around them.
//!
//! The broker binary is found next to the test executable's target directory
//! (`target/<profile>/broker`), or at `$BROKER_BIN`; `cargo nextest run
//! --workspace` and `cargo test --workspace` build it before running tests.

pub mod cluster;
pub mod external;
pub mod netns;
pub mod proxy;
pub mod replication;

pub use cluster::{Cluster, ClusterView, PartitionView};

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a broker may take to start listening.
pub const BROKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a log line may take to reach the harness after the event it reports.
pub const OUTPUT_WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a broker may take to exit after SIGTERM.
pub const BROKER_STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub fn broker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BROKER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test-exe> -> target/<profile>/broker
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    profile_dir.join("broker")
}

/// A running broker process. Killed (SIGKILL) on drop if still running.
pub struct BrokerProcess {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    /// A command the broker is run under, e.g. `ip netns exec NS` (empty: none).
    wrapper: Vec<String>,
    log: SharedLog,
}

impl BrokerProcess {
    /// Starts a broker on a free port with the given data dir and extra
    /// arguments (e.g. `["--set", "auto.create.topics.enable=false"]`).
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<BrokerProcess> {
        let args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let (child, addr, log) = spawn(&[], data_dir, "127.0.0.1:0", &args)?;
        Ok(BrokerProcess {
            child: Some(child),
            addr,
            data_dir: data_dir.to_owned(),
            args,
            wrapper: Vec::new(),
            log,
        })
    }

    /// Starts a broker listening on `listen` (a fixed address) without waiting
    /// for it to serve: a cluster node serves only once the controller quorum
    /// has unfenced it, which needs its peers started too. See [`Self::is_serving`].
    pub fn launch(
        data_dir: &Path,
        listen: &str,
        extra_args: &[String],
    ) -> anyhow::Result<BrokerProcess> {
        Self::launch_wrapped(&[], data_dir, listen, extra_args)
    }

    /// [`Self::launch`] under `wrapper`, a command that runs the broker
    /// (`ip netns exec NS` puts it in a network namespace). The wrapper must
    /// exec the broker, so that the process id is the broker's own; restarts
    /// use it too.
    pub fn launch_wrapped(
        wrapper: &[String],
        data_dir: &Path,
        listen: &str,
        extra_args: &[String],
    ) -> anyhow::Result<BrokerProcess> {
        let (child, log, _lines) = launch(wrapper, data_dir, listen, extra_args)?;
        Ok(BrokerProcess {
            child: Some(child),
            addr: listen.to_string(),
            data_dir: data_dir.to_owned(),
            args: extra_args.to_vec(),
            wrapper: wrapper.to_vec(),
            log,
        })
    }

    /// True once the broker has logged `listening on`, which it does when it
    /// serves clients.
    pub fn is_serving(&self) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains("listening on "))
    }

    /// The exit code if the process has exited (-1 for a signal), `None` while
    /// it runs or after the harness stopped it.
    pub fn exit_code(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.code().unwrap_or(-1)),
            _ => None,
        }
    }

    /// True while the harness has not stopped the process (it may still have crashed).
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// Everything the broker has printed so far.
    pub fn output(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until the broker has printed a line containing `needle`.
    pub fn wait_for_output(&self, needle: &str) -> bool {
        wait_until(OUTPUT_WAIT_TIMEOUT, || self.output().contains(needle))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> anyhow::Result<i32> {
        let mut child = self.child.take().context("broker already stopped")?;
        // SAFETY: kill(2) on the pid of a child we own has no memory effects.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + BROKER_STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("broker did not exit within {BROKER_STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: an unclean stop, as a crash or power cut would leave it.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("broker already stopped")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Starts the broker again on the same port and data dir.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "stop the broker before restarting it");
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        // The old socket may linger briefly; retry the bind until the deadline.
        loop {
            match spawn(&self.wrapper, &self.data_dir, &self.addr, &self.args) {
                Ok((child, _addr, log)) => {
                    self.child = Some(child);
                    self.log = log;
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("harness: restart attempt failed: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

type SharedLog = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Starts the binary and waits for its `listening on HOST:PORT` line.
fn spawn(
    wrapper: &[String],
    data_dir: &Path,
    listen: &str,
    args: &[String],
) -> anyhow::Result<(Child, String, SharedLog)> {
    let (mut child, log, rx) = launch(wrapper, data_dir, listen, args)?;
    let deadline = Instant::now() + BROKER_START_TIMEOUT;
    let addr = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(remaining) {
            Ok(line) => {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    break rest.split_whitespace().next().unwrap_or("").to_string();
                }
            }
            Err(_) => {
                let _ = child.kill();
                let lines = log.lock().unwrap().join("\n");
                bail!("broker did not report its address within {BROKER_START_TIMEOUT:?}; output:\n{lines}");
            }
        }
    };
    Ok((child, addr, log))
}

/// Starts the binary without waiting for it: its output goes to the returned
/// log and, line by line, to the receiver. A non-empty `wrapper` is the
/// command that runs the binary (its first word is the program).
fn launch(
    wrapper: &[String],
    data_dir: &Path,
    listen: &str,
    args: &[String],
) -> anyhow::Result<(Child, SharedLog, mpsc::Receiver<String>)> {
    let binary = broker_binary();
    if !binary.exists() {
        bail!(
                "broker binary not found at {} (build it with `cargo build -p broker` or set BROKER_BIN)",
                binary.display()
            );
    }
    let mut command = match wrapper.split_first() {
        Some((program, wrapper_args)) => {
            let mut command = Command::new(program);
            command.args(wrapper_args).arg(&binary);
            command
        }
        None => Command::new(&binary),
    };
    let mut child = command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(listen)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("BROKER_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if std::env::var_os("BROKER_ECHO").is_some() {
                    eprintln!("[broker] {line}");
                }
                log.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
    }
    Ok((child, log, rx))
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// Runs `tests/python/<script>` with the broker's address, asserts it exits
/// successfully having printed `ok_line`, and returns what it printed.
pub fn run_python_script(broker: &BrokerProcess, script: &str, ok_line: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let output = std::process::Command::new("python3")
        .arg(&path)
        .arg(&broker.addr)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nbroker:\n{}",
        broker.output()
    );
    assert!(stdout.contains(ok_line), "{stdout}");
    stdout
}

/// Runs kcat with `args`, feeding it `stdin` if given, asserts it exits
/// successfully, and returns what it printed.
pub fn kcat(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is installed (scripts/install-test-deps installs it)");
    let mut input = child.stdin.take().expect("kcat's stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write to kcat");
    }
    drop(input);
    let output = child.wait_with_output().expect("kcat ran");
    assert!(
        output.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("kcat prints UTF-8")
}

/// A bare Kafka connection speaking our `protocol` crate over a blocking
/// socket: for tests that need exact control over the bytes sent.
pub struct RawConnection {
    stream: std::net::TcpStream,
    correlation_id: i32,
}

/// How long a raw test connection waits for a response.
pub const RAW_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl RawConnection {
    pub fn connect(addr: &str) -> anyhow::Result<RawConnection> {
        Self::from_stream(std::net::TcpStream::connect(addr)?)
    }

    /// A connection over an already connected `stream`, e.g. one made from
    /// inside a network namespace ([`netns::Network::connect_from`]).
    pub fn from_stream(stream: std::net::TcpStream) -> anyhow::Result<RawConnection> {
        stream.set_read_timeout(Some(RAW_READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RawConnection {
            stream,
            correlation_id: 0,
        })
    }

    /// Sends a typed request and decodes the typed response.
    pub fn call<Req: protocol::Encodable, Resp: protocol::Decodable>(
        &mut self,
        api: protocol::messages::ApiKey,
        version: i16,
        request: &Req,
    ) -> anyhow::Result<Resp> {
        self.correlation_id += 1;
        let frame = protocol::header::encode_request(
            api,
            version,
            self.correlation_id,
            Some("raw-test"),
            request,
        )?;
        self.send_raw(&frame)?;
        let body = self
            .read_frame()?
            .context("connection closed before the response")?;
        let (correlation_id, response) = protocol::header::decode_response(api, version, body)?;
        anyhow::ensure!(
            correlation_id == self.correlation_id,
            "correlation id {correlation_id} does not match {}",
            self.correlation_id
        );
        Ok(response)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        use std::io::Write;
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Reads one response frame (without its size prefix); `None` if the broker closed the connection.
    pub fn read_frame(&mut self) -> anyhow::Result<Option<bytes::Bytes>> {
        use std::io::Read;
        let mut size = [0u8; 4];
        match self.stream.read_exact(&mut size) {
            Ok(()) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::UnexpectedEof
                    || e.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        }
        let size = u32::from_be_bytes(size) as usize;
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body)?;
        Ok(Some(bytes::Bytes::from(body)))
    }

    /// True once the broker has closed the connection (reads see EOF).
    pub fn is_closed_by_peer(&mut self) -> bool {
        matches!(self.read_frame(), Ok(None))
    }
}

/// Fetches partition `partition` of `topic` from `offset` (no waiting) and
/// returns the raw record set the broker sent.
pub fn fetch_partition(
    conn: &mut RawConnection,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<bytes::Bytes> {
    use protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(protocol::StrBytes::from_string(
                topic.to_string(),
            )))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(50 << 20)])]);
    let response: FetchResponse = conn.call(ApiKey::Fetch, 12, &request)?;
    let data = &response.responses[0].partitions[0];
    anyhow::ensure!(data.error_code == 0, "fetch error {}", data.error_code);
    Ok(data.records.clone().unwrap_or_default())
}

/// Milliseconds since the Unix epoch, for record timestamps (older ones fall
/// to the default 7-day retention).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// An uncompressed batch of `values`, keyed `k0`, `k1`, ..., timestamped now.
pub fn batch_of(values: &[&str]) -> bytes::Bytes {
    let now = now_ms();
    let mut builder = protocol::batch::BatchBuilder::new();
    for (i, v) in values.iter().enumerate() {
        builder.push(&protocol::batch::Record {
            key: Some(bytes::Bytes::from(format!("k{i}"))),
            value: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![],
            timestamp: now + i as i64,
        });
    }
    builder.build()
}

/// Creates `name` with `partitions` partitions through CreateTopics; panics on an error code.
pub fn create_topic(conn: &mut RawConnection, name: &str, partitions: i32) {
    use protocol::messages::create_topics_request::CreatableTopic;
    use protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
    let request = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(protocol::StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(5000);
    let response: CreateTopicsResponse = conn
        .call(ApiKey::CreateTopics, 7, &request)
        .expect("CreateTopics answered");
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
}

/// Produces one record set to `topic`/`partition` (Produce v9); returns the
/// partition's error code and base offset.
pub fn produce_to(
    conn: &mut RawConnection,
    topic: &str,
    partition: i32,
    records: bytes::Bytes,
    acks: i16,
) -> anyhow::Result<(i16, i64)> {
    use protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(protocol::StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let response: ProduceResponse = conn.call(ApiKey::Produce, 9, &request)?;
    let p = &response.responses[0].partition_responses[0];
    Ok((p.error_code, p.base_offset))
}

/// ListOffsets v7 earliest (-2) of partition 0 of `topic`: the partition's
/// error code and log start offset.
pub fn earliest_offset(conn: &mut RawConnection, topic: &str) -> (i16, i64) {
    use protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use protocol::messages::{
        ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName,
    };
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(protocol::StrBytes::from_string(topic.into())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-2)])]);
    let response: ListOffsetsResponse = conn.call(ApiKey::ListOffsets, 7, &request).unwrap();
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.offset)
}

/// How long a group may take to settle after a membership change (join, leave,
/// a session timeout): the session timeouts the group tests use plus a rebalance.
pub const GROUP_SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// FindCoordinator v4 for `group`, retried while the coordinator loads; the
/// first lookup creates `__consumer_offsets`.
pub fn wait_for_group_coordinator(conn: &mut RawConnection, group: &str) -> anyhow::Result<i32> {
    use protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    let request = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![protocol::StrBytes::from_string(group.into())]);
    while_coordinator_loads("FindCoordinator", || {
        let response: FindCoordinatorResponse = conn.call(ApiKey::FindCoordinator, 4, &request)?;
        let coordinator = &response.coordinators[0];
        Ok(match coordinator.error_code {
            0 => Ok(coordinator.node_id.0),
            code => Err(code),
        })
    })
}

/// Calls `call` until it answers something other than
/// COORDINATOR_LOAD_IN_PROGRESS (14), which a group API answers while the
/// group's offsets partition loads after a start, as clients retry it; for
/// at most the broker-start timeout. `call` gives the value, or the error
/// code the broker answered.
fn while_coordinator_loads<T>(
    api: &str,
    mut call: impl FnMut() -> anyhow::Result<Result<T, i16>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + BROKER_START_TIMEOUT;
    loop {
        let code = match call()? {
            Ok(value) => return Ok(value),
            Err(code) => code,
        };
        anyhow::ensure!(
            code == 14 && Instant::now() < deadline,
            "{api} answered error {code}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// DescribeGroups v5 of one group.
pub fn describe_group(
    conn: &mut RawConnection,
    group: &str,
) -> anyhow::Result<protocol::messages::describe_groups_response::DescribedGroup> {
    use protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(protocol::StrBytes::from_string(group.into()))]);
    let response: DescribeGroupsResponse = conn.call(ApiKey::DescribeGroups, 5, &request)?;
    response
        .groups
        .into_iter()
        .next()
        .context("one group described")
}

/// The committed offsets of `group` for `partitions` of `topic` (OffsetFetch v8), -1 where none;
/// waits out the group's offsets partition loading.
pub fn committed_offsets(
    conn: &mut RawConnection,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<Vec<i64>> {
    use protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    use protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
    let request =
        OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(protocol::StrBytes::from_string(group.into())))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(protocol::StrBytes::from_string(topic.into())))
                .with_partition_indexes(partitions.to_vec())]))]);
    // Each offsets partition loads on its own, so another group's
    // coordinator being ready says nothing about this one's.
    while_coordinator_loads("OffsetFetch", || {
        let response: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, 8, &request)?;
        let group = &response.groups[0];
        Ok(match group.error_code {
            0 => Ok(group.topics[0]
                .partitions
                .iter()
                .map(|p| p.committed_offset)
                .collect()),
            code => Err(code),
        })
    })
}

/// The partitions a consumer-protocol assignment gives, as `(topic, partition)`
/// pairs: `version: i16`, then `[topic: string, partitions: [i32]]`. Empty
/// bytes are no assignment: what DescribeGroups shows for a member while a
/// rebalance has not handed out assignments yet.
pub fn consumer_assignment(assignment: &[u8]) -> anyhow::Result<Vec<(String, i32)>> {
    if assignment.is_empty() {
        return Ok(Vec::new());
    }
    let mut rest = assignment;
    let mut take = |n: usize| -> anyhow::Result<&[u8]> {
        anyhow::ensure!(rest.len() >= n, "assignment truncated");
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let _version = take(2)?;
    let topics = i32::from_be_bytes(take(4)?.try_into()?);
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let length = i16::from_be_bytes(take(2)?.try_into()?);
        let topic = String::from_utf8(take(length.max(0) as usize)?.to_vec())?;
        let count = i32::from_be_bytes(take(4)?.try_into()?);
        for _ in 0..count.max(0) {
            out.push((topic.clone(), i32::from_be_bytes(take(4)?.try_into()?)));
        }
    }
    Ok(out)
}

/// Produces `per_partition` records to every partition of `topic` (which must
/// have `partitions` partitions) with our Rust producer, values
/// `"{partition}:{i}"` and keys `"k{i}"`, and waits until each is
/// acknowledged; record `i` of a partition lands at offset `first + i`.
pub async fn produce_numbered(
    addr: &str,
    topic: &str,
    partitions: i32,
    per_partition: usize,
    compression: client::Compression,
) -> anyhow::Result<()> {
    let mut config = client::ProducerConfig::new(addr);
    config.compression = compression;
    let producer = client::Producer::connect(config).await?;
    let mut deliveries = Vec::with_capacity(per_partition * partitions as usize);
    for i in 0..per_partition {
        for partition in 0..partitions {
            let record = client::ProducerRecord::new(topic)
                .with_partition(partition)
                .with_key(format!("k{i}"))
                .with_value(format!("{partition}:{i}"));
            deliveries.push(producer.send(record).await?);
        }
    }
    producer.flush().await;
    for delivery in deliveries {
        delivery.await?;
    }
    Ok(())
}

/// A broker whose group coordinator accepts short sessions (1 s), as the
/// consumer tests use them.
pub fn start_short_session_broker(dir: &Path) -> BrokerProcess {
    BrokerProcess::start(dir, &["--set", "group.min.session.timeout.ms=1000"]).unwrap()
}

/// A short-session broker with `topic` of `partitions` partitions, each
/// holding `per_partition` numbered records (see [`produce_numbered`]).
pub async fn broker_with_numbered_topic(
    topic: &str,
    partitions: i32,
    per_partition: usize,
) -> (tempfile::TempDir, BrokerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_short_session_broker(dir.path());
    create_topic_async(&broker.addr, topic, partitions).await;
    produce_numbered(
        &broker.addr,
        topic,
        partitions,
        per_partition,
        client::Compression::None,
    )
    .await
    .unwrap();
    (dir, broker)
}

/// Creates `name` with `partitions` partitions through CreateTopics, from
/// async code (the raw connection blocks, so it runs on a blocking thread).
pub async fn create_topic_async(addr: &str, name: &str, partitions: i32) {
    let (addr, name) = (addr.to_string(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let mut conn = RawConnection::connect(&addr).expect("connect for CreateTopics");
        create_topic(&mut conn, &name, partitions);
    })
    .await
    .expect("CreateTopics thread");
}

/// Reads partition 0 of `topic` from its start with librdkafka until `count`
/// messages arrived, each as `read` makes it; fails after `timeout`. The
/// consumer is assigned the partition; `group` is there only because
/// librdkafka wants one, and nothing is committed.
pub fn read_partition_zero_with_librdkafka<T>(
    addr: &str,
    topic: &str,
    group: &str,
    count: usize,
    timeout: Duration,
    mut read: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> T,
) -> Vec<T> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {count} messages",
            out.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap_or_else(|e| panic!("{topic}: {e}"));
            out.push(read(&message));
        }
    }
    out
}
