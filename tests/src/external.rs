//! Programs of other projects the interop tests run as real clients: Kafka's
//! Java client and command-line tools (small Java programs in `tests/java/src`
//! compiled with `javac`, and the tools' main classes), and franz-go (a Go
//! program in `tests/go`).
//!
//! `scripts/install-test-deps` fetches what they need: the jars' classpath
//! into `tests/java/target/classpath.txt` (Maven resolves it from
//! `tests/java/pom.xml`) and the Go modules into the module cache. The
//! programs themselves are built here, on first use and again whenever a
//! source is newer than the build, under a file lock because nextest runs
//! each test in its own process.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};

/// How long one run of a Java program, a Kafka tool or the Go program may take.
pub const PROGRAM_TIMEOUT: Duration = Duration::from_secs(180);
/// How long compiling the Java programs or building the Go program may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// The JVM's settings for short runs on a small machine: one GC thread, the
/// quick compiler only, a bounded heap.
const JVM_OPTIONS: &[&str] = &[
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
    "-Xmx512m",
];

fn tests_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What a finished program printed, and whether it succeeded.
pub struct ProgramOutput {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl ProgramOutput {
    /// Panics with everything the program printed unless it succeeded;
    /// returns its standard output.
    pub fn expect_success(&self, what: &str) -> &str {
        assert!(
            self.success,
            "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Standard output and standard error together, for tools that report on either.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl From<Output> for ProgramOutput {
    fn from(output: Output) -> Self {
        ProgramOutput {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs `command` with `stdin` as its input, killing it once `timeout` has
/// passed (an error that carries what it printed until then).
pub fn run_bounded(
    command: &mut Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<ProgramOutput> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let mut input = child.stdin.take().context("stdin piped")?;
    let text = stdin.unwrap_or_default().to_string();
    // A separate thread, so that a program that does not read its input
    // cannot block the harness on a full pipe.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let readers = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .map(|stream| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut bytes);
            }
            bytes
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let [stdout, stderr] = readers.map(|reader| reader.join().unwrap_or_default());
    let Some(status) = status else {
        bail!(
            "{command:?} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Ok(Output {
        status,
        stdout,
        stderr,
    }
    .into())
}

/// Runs `build` while holding an exclusive lock on `lock_path`.
fn with_lock<T>(lock_path: &Path, build: impl FnOnce() -> T) -> anyhow::Result<T> {
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .with_context(|| format!("open {}", lock_path.display()))?;
    // SAFETY: flock(2) on a descriptor we own has no memory effects; the lock
    // is released when `file` is closed at the end of this function.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    anyhow::ensure!(
        result == 0,
        "lock {}: {}",
        lock_path.display(),
        std::io::Error::last_os_error()
    );
    Ok(build())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// True when `output` is missing or older than any of `inputs`.
fn is_stale(output: &Path, inputs: &[PathBuf]) -> bool {
    let Some(built) = modified(output) else {
        return true;
    };
    inputs
        .iter()
        .any(|input| modified(input).is_none_or(|time| time > built))
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == extension))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The classpath of the Java client and Kafka's tools, as the install step wrote it.
fn jars_classpath() -> String {
    let path = tests_dir().join("java/target/classpath.txt");
    match std::fs::read_to_string(&path) {
        Ok(classpath) => classpath.trim().to_string(),
        Err(e) => panic!(
            "{} is missing ({e}): run ./scripts/install-test-deps, which fetches the Java client and Kafka's tools",
            path.display()
        ),
    }
}

/// The classpath of the compiled test programs and the jars, compiling the
/// programs first when a source is newer than the last compilation.
fn java_classpath() -> String {
    let java = tests_dir().join("java");
    let classes = java.join("target/classes");
    let stamp = classes.join(".compiled");
    let jars = jars_classpath();
    let mut sources = files_with_extension(&java.join("src"), "java");
    sources.push(java.join("target/classpath.txt"));
    with_lock(&java.join("target/compile.lock"), || {
        if !is_stale(&stamp, &sources) {
            return;
        }
        let _ = std::fs::remove_dir_all(&classes);
        std::fs::create_dir_all(&classes).expect("create the classes directory");
        let mut javac = Command::new("javac");
        javac.arg("-d").arg(&classes).arg("-cp").arg(&jars).args(
            sources
                .iter()
                .filter(|s| s.extension().is_some_and(|e| e == "java")),
        );
        run_bounded(&mut javac, None, BUILD_TIMEOUT)
            .expect("javac runs (a JDK is installed by scripts/install-test-deps)")
            .expect_success("javac of tests/java/src");
        File::create(&stamp).expect("write the compilation stamp");
    })
    .expect("lock the Java build");
    format!("{}:{jars}", classes.display())
}

/// Runs `main_class` (a test program of `tests/java/src` or one of Kafka's
/// tools) with `args` on the JVM, `stdin` as its input.
pub fn run_java(main_class: &str, args: &[&str], stdin: Option<&str>) -> ProgramOutput {
    let mut java = Command::new("java");
    java.args(JVM_OPTIONS)
        .arg("-cp")
        .arg(java_classpath())
        .arg(main_class)
        .args(args);
    run_bounded(&mut java, stdin, PROGRAM_TIMEOUT)
        .unwrap_or_else(|e| panic!("java {main_class} {args:?}: {e:#}"))
}

/// The franz-go test program, built when a source is newer than the binary.
pub fn franz_binary() -> PathBuf {
    let go = tests_dir().join("go");
    let binary = go.join("target/franz-interop");
    let sources: Vec<PathBuf> = files_with_extension(&go, "go")
        .into_iter()
        .chain([go.join("go.mod"), go.join("go.sum")])
        .collect();
    with_lock(&go.join("target/build.lock"), || {
        if !is_stale(&binary, &sources) {
            return;
        }
        let mut build = Command::new("go");
        build
            .current_dir(&go)
            // No VCS stamp: the build must not depend on how the tree was checked out.
            .env("GOFLAGS", "-mod=mod -buildvcs=false")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(".");
        run_bounded(&mut build, None, BUILD_TIMEOUT)
            .expect("go runs (scripts/install-test-deps fetches the modules)")
            .expect_success("go build of tests/go");
    })
    .expect("lock the Go build");
    binary
}

/// Runs the franz-go program against `bootstrap` with `sections`.
pub fn run_franz(bootstrap: &str, sections: &[&str]) -> ProgramOutput {
    let binary = franz_binary();
    let mut franz = Command::new(&binary);
    franz.arg(bootstrap).args(sections);
    run_bounded(&mut franz, None, PROGRAM_TIMEOUT)
        .unwrap_or_else(|e| panic!("{} {sections:?}: {e:#}", binary.display()))
}
