//! A gzip'd newc cpio archive written directly (no staging tree, no root needed for
//! /dev/console), plus the guest's /init.
use anyhow::{ensure, Result};
use flate2::{write::GzEncoder, Compression};
use std::io::Write;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Entries in the order the kernel unpacks them: parents before children.
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
    names: std::collections::BTreeSet<String>,
}

impl Cpio {
    pub fn new() -> Cpio {
        Cpio { buf: Vec::new(), ino: 1, names: Default::default() }
    }

    pub fn dir(&mut self, path: &str) -> Result<()> {
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), &[])
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.entry(path, S_IFREG | mode, 1, (0, 0), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<()> {
        self.entry(path, S_IFCHR | mode, 1, (major, minor), &[])
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> Result<()> {
        ensure!(self.names.insert(path.to_string()), "initramfs: {path} added twice");
        self.header(path, mode, nlink, rdev, data.len());
        self.buf.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), size: usize) {
        let ino = self.ino;
        self.ino += 1;
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
        // rdevmajor, rdevminor, namesize (with NUL), check
        let fields = [ino, mode, 0, 0, nlink, 0, size as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// Closes the archive and compresses it like `gzip -1`.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        self.header("TRAILER!!!", 0, 1, (0, 0), 0);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&self.buf)?;
        Ok(gz.finish()?)
    }
}

/// The guest's PID 1. Busybox makes its applets at boot (the guest's arch may not run
/// here); the markers are what the host parses, so they must not change lightly.
pub const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpffs /sys/fs/bpf
mount -t tmpfs tmpfs /tmp
# The host's swap disk (NVMe) probes asynchronously: wait for it, at most 10 s.
i=0; while [ ! -b /dev/nvme0n1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mkswap /dev/nvme0n1 >/dev/null 2>&1 && swapon /dev/nvme0n1 || echo "lazyvma-vm: no swap (/dev/nvme0n1)"
echo "lazyvma-vm: uname -r: $(uname -r)"
cd /root
sh /lazyvma/cmd
echo "lazyvma-vm: exit status: $?"
poweroff -f
"#;

pub const EXIT_MARKER: &str = "lazyvma-vm: exit status: ";
pub const UNAME_MARKER: &str = "lazyvma-vm: uname -r: ";

/// `words` as one POSIX shell command line.
pub fn shell_line(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{}'", w.replace('\'', r"'\''"))).collect();
    quoted.join(" ") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_survive_the_shell() {
        let line = shell_line(&["sh".into(), "-c".into(), "echo 'a b' >/dev/null; exit 3".into()]);
        let st = std::process::Command::new("sh").arg("-c").arg(&line).status().unwrap();
        assert_eq!(st.code(), Some(3));
    }

    #[test]
    fn newc_header_is_110_bytes_and_aligned() {
        let mut c = Cpio::new();
        c.file("init", 0o755, b"abc").unwrap();
        // 110-byte header + "init\0" = 115 → pad to 116, then 3 data bytes → 120.
        assert_eq!(c.buf.len(), 120);
        assert_eq!(&c.buf[..6], b"070701");
        assert!(c.dir("init").is_err(), "duplicate names are refused");
    }
}
