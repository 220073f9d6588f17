//! The userland's disk: a Debian bookworm tree built once per recipe (rootfs.sh, the
//! services, the arch: their hash is the cache key), then per kernel an ext4 image of it
//! and an initramfs made by the tree's own initramfs-tools with that kernel's modules.
use super::services;
use crate::{debian, vm::Arch};
use anyhow::{bail, ensure, Context, Result};
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

const RECIPE: &str = include_str!("rootfs.sh");

pub struct Image {
    pub root: PathBuf,
    pub initrd: PathBuf,
    /// Seconds spent building now (0 when everything came from the cache).
    pub built_s: f64,
}

/// The recipe's content key: 16 hex digits of its sha256.
fn key(arch: Arch) -> Result<String> {
    let text = format!("{RECIPE}\0{}\0{}\0{}", arch.deb(), services::packages(), services::disable_units());
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().context("cannot run sha256sum")?;
    child.stdin.take().unwrap().write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "sha256sum failed");
    Ok(String::from_utf8_lossy(&out.stdout)[..16].to_string())
}

/// The image and initramfs for `release`, built when missing. `dir` is the xtask cache
/// (held locked by the caller), `deb` the kernel's package.
pub fn image(dir: &Path, arch: Arch, release: &str, deb: &Path) -> Result<Image> {
    let t = Instant::now();
    let key = key(arch)?;
    let base = dir.join("userland");
    let tree = base.join(format!("rootfs-{}-{key}", arch.deb()));
    let out = base.join(format!("image-{}-{key}-{release}", arch.deb()));
    let (root, initrd) = (out.join("root.ext4"), out.join("initrd.img"));
    if root.is_file() && initrd.is_file() {
        return Ok(Image { root, initrd, built_s: 0.0 });
    }
    if !tree.join("etc/debian_version").is_file() {
        build_tree(arch, &tree)?;
    }
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    kernel_into(&tree, release, deb, &tmp.join("initrd.img"))?;
    let made = mkfs(&tree, &tmp.join("root.ext4"));
    // The tree stays the recipe's alone: this kernel's modules leave it again.
    let _ = fs::remove_dir_all(tree.join("usr/lib/modules").join(release));
    let _ = fs::remove_file(tree.join("boot").join(format!("config-{release}")));
    made?;
    let _ = fs::remove_dir_all(&out);
    fs::rename(&tmp, &out).with_context(|| format!("cannot move {} into place", tmp.display()))?;
    Ok(Image { root, initrd, built_s: t.elapsed().as_secs_f64() })
}

fn build_tree(arch: Arch, tree: &Path) -> Result<()> {
    ensure!(arch == Arch::X86_64, "the userland rootfs is built natively: an {} rootfs needs qemu-user-static and binfmt_misc, not set up here", arch.deb());
    ensure!(which("debootstrap"), "debootstrap is missing: run `cargo xtask setup`");
    let m = debian::mirror::resolve()?;
    let tmp = tree.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(tmp.parent().unwrap())?;
    let log = tree.with_extension("log");
    eprintln!("userland: building the rootfs (debootstrap + {} services; minutes, once per recipe; log {})", services::SERVICES.len(), log.display());
    let t = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(RECIPE)
        .args(["rootfs.sh", arch.deb(), &m.archive, &m.security])
        .arg(&tmp)
        .args([services::packages(), services::disable_units()])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log)?)
        .stderr(fs::File::create(&log)?.try_clone()?)
        .status()
        .context("cannot run sh")?;
    if !status.success() {
        bail!("building the rootfs failed ({status}); see {}", log.display());
    }
    fs::rename(&tmp, tree).with_context(|| format!("cannot move {} into place", tmp.display()))?;
    eprintln!("userland: rootfs built in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Unpacks the kernel package's modules into the tree and runs the tree's mkinitramfs
/// (MODULES=most, virtio named) in a chroot.
fn kernel_into(tree: &Path, release: &str, deb: &Path, initrd: &Path) -> Result<()> {
    eprintln!("userland: initramfs for {release} from the rootfs's initramfs-tools");
    // --keep-directory-symlink: bookworm's /lib is a symlink to usr/lib; the package's
    // ./lib/modules must go through it, not replace it.
    let script = r#"set -eu
tree=$1 release=$2 deb=$3
dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$tree" --wildcards '*/modules/*' './boot/config-*'
printf 'virtio_pci\nvirtio_blk\nvirtio_net\next4\n' >"$tree/etc/initramfs-tools/modules"
unshare --mount --propagation private sh -eu -c '
  mount -t proc proc "$1/proc"; mount -t sysfs sysfs "$1/sys"; mount --bind /dev "$1/dev"
  chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin mkinitramfs -o /tmp/initrd.img "$2"
' sh "$tree" "$release"
"#;
    let out = Command::new("sh").arg("-c").arg(script).arg("kernel").arg(tree).arg(release).arg(deb).output().context("cannot run sh")?;
    if !out.status.success() {
        bail!("mkinitramfs for {release} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let made = tree.join("tmp/initrd.img");
    fs::copy(&made, initrd).with_context(|| format!("cannot copy {}", made.display()))?;
    let _ = fs::remove_file(made);
    Ok(())
}

/// An ext4 image of the tree with 1 GiB free for the services' databases and logs.
fn mkfs(tree: &Path, img: &Path) -> Result<()> {
    let du = Command::new("du").args(["-s", "-B1M"]).arg(tree).output()?;
    let used: u64 = String::from_utf8_lossy(&du.stdout).split_whitespace().next().and_then(|n| n.parse().ok()).context("du printed no size")?;
    fs::File::create(img)?.set_len((used * 13 / 10 + 1024) << 20)?;
    let out = Command::new("mkfs.ext4").args(["-q", "-F", "-L", "lazyvma-root", "-d"]).arg(tree).arg(img).output().context("cannot run mkfs.ext4")?;
    ensure!(out.status.success(), "mkfs.ext4 -d {} failed: {}", tree.display(), String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

fn which(prog: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join(prog).is_file())
}
