//! What a boot needs from outside the guest: Debian's kernel and busybox (fetched once
//! into the cache), and the static musl builds of our binaries.
use super::{Arch, Series};
use crate::{debian, util};
use anyhow::{bail, Context, Result};
use std::{
    fs,
    path::{Path, PathBuf},
};

pub struct Kernel {
    /// `uname -r` of the guest, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/lazyvma`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache"));
    base.join("lazyvma")
}

/// The cache, locked against other xtask processes (apt's own lock would just fail).
pub struct Cache {
    dir: PathBuf,
    apt: debian::Apt,
    _lock: fs::File,
}

impl Cache {
    pub fn open(refresh: bool) -> Result<Cache> {
        let dir = cache_dir();
        fs::create_dir_all(&dir).with_context(|| format!("cannot create the cache folder {}", dir.display()))?;
        let lock = fs::File::create(dir.join(".lock"))?;
        lock.lock().with_context(|| format!("cannot lock {}", dir.join(".lock").display()))?;
        let apt = debian::Apt::open(&dir.join("apt"))?;
        apt.ensure_lists(refresh)?;
        Ok(Cache { dir, apt, _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn apt(&self) -> &debian::Apt {
        &self.apt
    }

    /// The newest cloud kernel of `series`, resolved through the `linux-image-cloud-<arch>`
    /// metapackage each time; the `-unsigned` image because it is the same kernel
    /// without the signing wrapper. When the newest cannot be fetched (a mirror without
    /// that security update: seen for bullseye-security), the next one the series' suites
    /// offer, with a warning.
    pub fn kernel(&self, arch: Arch, series: Series) -> Result<Kernel> {
        let meta = format!("linux-image-cloud-{}", arch.deb());
        let offers = self.apt.offers(&meta, arch.deb())?;
        let mut ours = offers.iter().filter(|o| series.suites().contains(&o.suite.as_str())).peekable();
        if ours.peek().is_none() {
            bail!("Debian's archive offers no {meta} in {:?} (try `--refresh`)", series.suites());
        }
        let mut first_err = None;
        for offer in ours {
            match self.kernel_of(arch, &meta, &offer.version) {
                Ok(k) => return Ok(k),
                Err(e) => {
                    eprintln!("vm: warning: {meta} {} ({}): {e:#}; trying an older one", offer.version, offer.suite);
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap())
    }

    fn kernel_of(&self, arch: Arch, meta: &str, meta_version: &str) -> Result<Kernel> {
        let a = arch.deb();
        let deps = self.apt.depends(meta, a, meta_version)?;
        let Some(image) = deps.iter().find(|d| d.starts_with("linux-image-")) else {
            bail!("{meta} {meta_version} depends on no linux-image-* package");
        };
        let unsigned = if image.ends_with("-unsigned") { image.clone() } else { format!("{image}-unsigned") };
        let release = unsigned["linux-image-".len()..unsigned.len() - "-unsigned".len()].to_string();
        let dest = self.dir.join("kernels").join(&release);
        let vmlinuz = dest.join(format!("boot/vmlinuz-{release}"));
        if !vmlinuz.is_file() {
            let version = &self.apt.offers(&unsigned, a)?[0].version;
            let deb = self.apt.download(&unsigned, a, version, &self.dir.join("debs"))?;
            unpack(&deb, "./boot/*", &dest)?;
            if !vmlinuz.is_file() {
                bail!("{} has no boot/vmlinuz-{release}", deb.display());
            }
        }
        Ok(Kernel { release, vmlinuz })
    }

    /// Debian's busybox-static for `arch` (the guest's shell and tools).
    pub fn busybox(&self, arch: Arch) -> Result<PathBuf> {
        let offer = &self.apt.offers("busybox-static", arch.deb())?[0];
        let dest = self.dir.join("busybox").join(format!("{}_{}", offer.version.replace(':', "%3a"), arch.deb()));
        // bookworm ships /bin/busybox, trixie (merged /usr) /usr/bin/busybox.
        let found = || ["usr/bin/busybox", "bin/busybox"].map(|p| dest.join(p)).into_iter().find(|p| p.is_file());
        if let Some(bin) = found() {
            return Ok(bin);
        }
        let deb = self.apt.download("busybox-static", arch.deb(), &offer.version, &self.dir.join("debs"))?;
        unpack(&deb, "*bin/busybox", &dest)?;
        found().with_context(|| format!("{} has no bin/busybox", deb.display()))
    }
}

/// Extracts into a temporary sibling, then renames, so an interrupted run leaves no
/// half-unpacked kernel behind.
pub fn unpack(deb: &Path, pattern: &str, dest: &Path) -> Result<()> {
    let tmp = dest.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    debian::extract(deb, pattern, &tmp)?;
    let _ = fs::remove_dir_all(dest);
    fs::rename(&tmp, dest).with_context(|| format!("cannot move {} into place", tmp.display()))?;
    Ok(())
}

/// Static `lazyvma` and `lazyvma-workload` for `arch`, built by cargo (a no-op when fresh).
/// Stripped: the guest gunzips the initramfs under TCG, where every megabyte counts.
pub fn build_binaries(arch: Arch) -> Result<Vec<PathBuf>> {
    let target = arch.musl_target();
    let mut args = vec!["build", "--release", "--target", target, "--package", "lazyvma", "--bins"];
    args.extend(["--config", "profile.release.debug=0", "--config", "profile.release.strip=\"symbols\""]);
    // No cross gcc here: rust-lld links the static aarch64 binaries.
    let linker = format!("target.{target}.linker=\"rust-lld\"");
    if arch == Arch::Aarch64 {
        args.extend(["--config", &linker]);
    }
    util::cargo(&args, &[])?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| util::workspace_root().join("target"), PathBuf::from);
    let dir = util::workspace_root().join(target_dir).join(target).join("release");
    Ok(["lazyvma", "lazyvma-workload"].iter().map(|b| dir.join(b)).collect())
}
