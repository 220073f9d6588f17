//! Small kernel files (sysfs, procfs) read into a caller's buffer: the KSM wait polls one
//! mid-scenario, where a heap allocation could add a page fault to the counts.
use core::ffi::CStr;

/// The file's text, trimmed; `None` if it cannot be opened or read.
pub fn read<'a>(path: &CStr, buf: &'a mut [u8]) -> Option<&'a str> {
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut len = 0;
    while len < buf.len() {
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n < 0 && crate::out::errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    unsafe { libc::close(fd) };
    core::str::from_utf8(&buf[..len]).ok().map(str::trim)
}

pub fn exists(path: &CStr) -> bool {
    unsafe { libc::access(path.as_ptr(), libc::F_OK) == 0 }
}

pub fn read_u64(path: &CStr) -> Option<u64> {
    let mut buf = [0u8; 64];
    read(path, &mut buf)?.parse().ok()
}

/// The bracketed choice of a sysfs selector such as `always [madvise] never`.
pub fn selected(text: &str) -> Option<&str> {
    let open = text.find('[')?;
    let close = text[open..].find(']')? + open;
    Some(&text[open + 1..close])
}

/// Node ids of a list such as `0-1,3`, into `out`; returns how many.
pub fn node_list(text: &str, out: &mut [i32]) -> usize {
    let mut k = 0;
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap_or(-1), b.parse().unwrap_or(-1)),
            None => {
                let a = part.parse().unwrap_or(-1);
                (a, a)
            }
        };
        if a < 0 {
            continue;
        }
        for id in a..=b {
            if k < out.len() {
                out[k] = id;
                k += 1;
            }
        }
    }
    k
}

pub fn sleep_ms(ms: u64) {
    let ts = libc::timespec { tv_sec: (ms / 1000) as _, tv_nsec: ((ms % 1000) * 1_000_000) as _ };
    unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
}
