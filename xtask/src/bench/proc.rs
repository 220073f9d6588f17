//! Child processes of the benchmark: a tracer started in the background and waited on until
//! it is ready, a workload run to its done line, a stop by SIGINT. Both output streams are
//! drained by threads, so a chatty tracer never blocks on a full pipe.
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A background process whose stdout and stderr are being collected.
pub struct Bg {
    child: Child,
    what: String,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
    lines: mpsc::Receiver<String>,
}

fn collect(r: impl Read + Send + 'static, tx: Option<mpsc::Sender<String>>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut r = BufReader::new(r);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some(tx) = &tx {
                let _ = tx.send(line.clone());
            }
            all.push_str(&line);
            line.clear();
        }
        all
    })
}

/// Which stream carries the readiness line.
#[derive(Clone, Copy)]
pub enum Stream {
    Out,
    Err,
}

impl Bg {
    pub fn spawn(cmd: &mut Command, watch: Stream) -> Result<Bg> {
        Self::start(cmd.stdin(Stdio::null()), watch)
    }

    /// With a pipe on stdin that [`Bg::close_stdin`] closes (the workload's `--hold`).
    pub fn spawn_with_stdin(cmd: &mut Command, watch: Stream) -> Result<Bg> {
        Self::start(cmd.stdin(Stdio::piped()), watch)
    }

    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Waits for the process to exit on its own; fails if it does not in time or fails.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                anyhow::ensure!(st.success(), "{} failed: {st}", self.what);
                return Ok(());
            }
            if Instant::now() > until {
                bail!("{} did not exit within {timeout:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start(cmd: &mut Command, watch: Stream) -> Result<Bg> {
        let what = format!("{:?}", cmd.get_program());
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().with_context(|| format!("cannot run {what}"))?;
        let (tx, lines) = mpsc::channel();
        let (o, e) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let (otx, etx) = match watch {
            Stream::Out => (Some(tx), None),
            Stream::Err => (None, Some(tx)),
        };
        Ok(Bg { child, what, out: Some(collect(o, otx)), err: Some(collect(e, etx)), lines })
    }

    /// Waits for a line of the watched stream that `ready` accepts.
    pub fn wait_line(&mut self, timeout: Duration, mut ready: impl FnMut(&str) -> bool) -> Result<()> {
        let until = Instant::now() + timeout;
        loop {
            match self.lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(l) if ready(&l) => return Ok(()),
                Ok(_) => {}
                Err(_) => {
                    let (_, err) = self.stop()?;
                    bail!("{} was not ready within {timeout:?}: {}", self.what, err.trim());
                }
            }
        }
    }

    /// Polls `ready` until true (or the process exited, or the timeout).
    pub fn wait_until(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let until = Instant::now() + timeout;
        while !ready() {
            if Instant::now() > until || self.child.try_wait()?.is_some() {
                let (_, err) = self.stop()?;
                bail!("{} was not ready within {timeout:?}: {}", self.what, err.trim());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGINT (the tracers' orderly stop), then SIGKILL after 60 s; returns (stdout, stderr).
    pub fn stop(&mut self) -> Result<(String, String)> {
        if self.child.try_wait()?.is_none() {
            unsafe { libc::kill(self.pid(), libc::SIGINT) };
        }
        let until = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = self.out.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        let err = self.err.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        Ok((out, err))
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The outcome of a finished command: status code, stdout, stderr, peak RSS in KiB (wait4).
pub struct Done {
    pub code: Option<i32>,
    pub out: String,
    pub err: String,
    pub maxrss_kib: u64,
    pub wall: Duration,
}

/// Runs to completion; the peak RSS is wait4's ru_maxrss: at least xtask's own (see [`run_peak`]), so only [`run_peak`]'s is the command's.
pub fn run(cmd: &mut Command) -> Result<Done> {
    let t = Instant::now();
    let mut bg = Bg::spawn(cmd, Stream::Out)?;
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = bg.pid();
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            bail!("wait4 {}: {}", bg.what, std::io::Error::last_os_error());
        }
    }
    let wall = t.elapsed();
    // Reaped by wait4: Child must not wait again; its pipes end with the process.
    let out = bg.out.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    let err = bg.err.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    std::mem::forget(bg);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok(Done { code, out, err, maxrss_kib: ru.ru_maxrss as u64, wall })
}

/// The hidden argument that makes xtask [`peak_rss_main`].
pub const PEAK_RSS: &str = "__peak-rss";
const PEAK_LINE: &str = "xtask-peak-rss: ";

/// [`run`] of `bin ARGS` with its own peak RSS. `Command::spawn` is a vfork: the child
/// shares xtask's mm until its exec, and exec records the old mm's high-water RSS in the
/// child's `ru_maxrss` (the kernel's exec_mmap: `setmax_mm_hiwater_rss`), so every command
/// [`run`] started reported at least xtask's own ~120 MB (`snapshot -j` at 1 M VMAs: 121,544
/// KiB in every run, for 58 MB of its own). Here a fresh xtask ([`peak_rss_main`], a few MB)
/// fork()s the command, whose pre-exec copy holds only that process's anonymous pages, and
/// reports its `ru_maxrss` and wall time on its last stderr line.
pub fn run_peak(bin: &std::path::Path, args: &[&str]) -> Result<Done> {
    let me = std::env::current_exe().context("xtask's own path")?;
    let mut d = run(Command::new(me).arg(PEAK_RSS).arg(bin).args(args))?;
    let at = d.err.rfind(PEAK_LINE).with_context(|| format!("no peak line from {}: {}", bin.display(), d.err.trim()))?;
    let line = d.err[at + PEAK_LINE.len()..].trim().to_string();
    d.err.truncate(at);
    let num = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)?.parse::<u64>().ok());
    d.maxrss_kib = num("maxrss_kib=").context("maxrss_kib")?;
    d.wall = Duration::from_nanos(num("wall_ns=").context("wall_ns")?);
    Ok(d)
}

/// `xtask __peak-rss BIN ARGS..`: fork + exec BIN, wait4 it, print its peak RSS and wall
/// time on stderr, exit with its status (see [`run_peak`]).
pub fn peak_rss_main(args: &[std::ffi::OsString]) -> ! {
    use std::os::unix::ffi::OsStrExt;
    let argv: Vec<std::ffi::CString> = args.iter().filter_map(|a| std::ffi::CString::new(a.as_bytes()).ok()).collect();
    if argv.is_empty() || argv.len() != args.len() {
        eprintln!("{PEAK_RSS}: a program and its arguments, without NUL bytes");
        std::process::exit(2);
    }
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let t = Instant::now();
    // SAFETY: this process has one thread; the child calls only execv and _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::execv(ptrs[0], ptrs.as_ptr());
            libc::_exit(127);
        }
    }
    if pid < 0 {
        eprintln!("{PEAK_RSS}: fork: {}", std::io::Error::last_os_error());
        std::process::exit(2);
    }
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    while unsafe { libc::wait4(pid, &mut status, 0, &mut ru) } != pid {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            eprintln!("{PEAK_RSS}: wait4: {}", std::io::Error::last_os_error());
            std::process::exit(2);
        }
    }
    let wall = t.elapsed();
    eprintln!("{PEAK_LINE}maxrss_kib={} wall_ns={}", ru.ru_maxrss, wall.as_nanos());
    std::process::exit(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) });
}

/// `key=value` of a `done ...` line.
pub fn field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("done "))?;
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// A free loopback port (bound and released: another process may take it meanwhile, which
/// then fails that run loudly rather than measuring the wrong server).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `GET /metrics` of a server on loopback; None until it answers 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let ok = body.lines().next()?.split_whitespace().nth(1) == Some("200");
    ok.then_some(body)
}
