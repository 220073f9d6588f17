//! Output, phase markers and `--hold`, all without heap allocation: tests compare exact slab
//! counts between markers, so nothing here may fault in a new heap page mid-scenario.
use core::fmt::{self, Write};

/// Phase markers: `madvise(0, 0, 1000 + id)`. The advice is invalid, so the call fails with
/// EINVAL and changes nothing, but `syscalls:sys_enter_madvise` records it with the pid.
/// Every process emits the same sequence for any N, so N=0 and N=3 runs line up.
#[derive(Clone, Copy)]
#[repr(i32)]
pub enum Phase {
    Start = 0,
    Map = 1,
    Touch = 2,
    Fork = 3,
    Exec = 4,
    Split = 5,
    Merge = 6,
    Mremap = 7,
    Munmap = 8,
    Ksm = 9,
    Pageout = 10,
    PageIdle = 11,
    Migrate = 12,
    Threads = 13,
    Hold = 14,
    Release = 15,
    Exit = 16,
}

pub const MARKER_BASE: i32 = 1000;

pub fn marker(p: Phase) {
    // Raw syscall: a libc wrapper might validate the advice and never enter the kernel.
    unsafe { libc::syscall(libc::SYS_madvise, 0usize, 0usize, (MARKER_BASE + p as i32) as libc::c_long) };
}

/// A fixed-size line; longer text is cut, never reallocated.
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    pub fn new() -> Self {
        Line { buf: [0; 512], len: 0 }
    }
    /// The text so far as a NUL-terminated path in `out`.
    pub fn c_path<'a>(&self, out: &'a mut [u8]) -> &'a core::ffi::CStr {
        let n = self.len.min(out.len() - 1);
        out[..n].copy_from_slice(&self.buf[..n]);
        out[n] = 0;
        core::ffi::CStr::from_bytes_until_nul(&out[..=n]).unwrap_or(c"")
    }

    fn emit(&mut self, fd: i32) {
        if self.len == self.buf.len() {
            self.len -= 1;
        }
        self.buf[self.len] = b'\n';
        self.len += 1;
        let mut off = 0;
        while off < self.len {
            let n = unsafe { libc::write(fd, self.buf[off..].as_ptr().cast(), self.len - off) };
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                return; // a closed stdout is the reader's choice; nothing better to do
            }
            off += n as usize;
        }
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

pub fn stdout(args: fmt::Arguments) {
    let mut l = Line::new();
    let _ = l.write_fmt(args);
    l.emit(1);
}

pub fn stderr(args: fmt::Arguments) {
    let mut l = Line::new();
    let _ = l.write_str("lazyvma-workload: ");
    let _ = l.write_fmt(args);
    l.emit(2);
}

/// One line on stdout, written with a single write(2) (atomic on a pipe) and so flushed.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::out::stdout(format_args!($($t)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::out::stderr(format_args!($($t)*)) };
}

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn pid() -> i32 {
    unsafe { libc::getpid() }
}

/// `--hold`: announce that this process's layout is final, then wait until stdin reaches EOF.
/// Every process of a scenario shares stdin, so closing it releases them all at once.
pub fn hold(on: bool, role: &str) {
    if !on {
        return;
    }
    marker(Phase::Hold);
    say!("ready role={role} pid={}", pid());
    let mut buf = [0u8; 256];
    loop {
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break;
        }
        if n < 0 && errno() != libc::EINTR {
            warn!("reading stdin while holding: errno {}; releasing", errno());
            break;
        }
    }
    marker(Phase::Release);
}
