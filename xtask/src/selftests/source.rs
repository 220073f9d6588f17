//! The kernel's mm selftests from Debian's `linux-source-X.Y` (fetched once into the
//! cache, never copied into this repository) and the uapi headers of the same version
//! (`linux-libc-dev`), built with the host's gcc (a Debian cross gcc for an arm64 guest).
use crate::{
    debian,
    vm::{assets, Arch},
};
use anyhow::{bail, ensure, Context, Result};
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// One unpacked source: its kernel tree subset and its headers.
pub struct Source {
    /// `linux-source-6.12`'s `6.12`.
    pub series: String,
    /// The Debian version, e.g. `6.12.118-1`.
    pub version: String,
    root: PathBuf,
    headers: PathBuf,
}

/// What a selftest build needs of the tree besides [`mm_dir`]; the rest of its 150 MB stays
/// in the tarball.
const MEMBERS: [&str; 3] = ["tools/testing/selftests/kselftest*", "tools/include/*", "mm/gup_test.h"];

/// The mm selftests' folder: `vm/` before 6.3 renamed it.
fn mm_dir(series: &str) -> &'static str {
    if major_minor(series).is_some_and(|v| v < (6, 3)) {
        "tools/testing/selftests/vm"
    } else {
        "tools/testing/selftests/mm"
    }
}

/// `X.Y` of a release string (`6.18.44-...` → (6, 18)).
pub fn major_minor(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The newest `linux-source-X.Y` not newer than `kernel` (X.Y): the selftests of the
/// closest tree Debian has (6.12 for a 6.18 host).
pub fn pick_series(names: &[String], kernel: (u32, u32)) -> Option<String> {
    names
        .iter()
        .filter_map(|n| n.strip_prefix("linux-source-"))
        .filter_map(|s| Some((major_minor(s)?, s)))
        .filter(|(mm, s)| *mm <= kernel && s.matches('.').count() == 1)
        .max()
        .map(|(_, s)| s.to_string())
}

impl Source {
    /// The source matching `kernel` (X.Y) and its headers for `arch`, downloaded and
    /// unpacked unless cached.
    pub fn fetch(cache: &assets::Cache, kernel: (u32, u32), arch: Arch) -> Result<Source> {
        let apt = cache.apt();
        let Some(series) = pick_series(&apt.names("linux-source-")?, kernel) else {
            bail!("Debian's archive has no linux-source-X.Y at or below {}.{}", kernel.0, kernel.1);
        };
        let pkg = format!("linux-source-{series}");
        let version = apt.offers(&pkg, "amd64")?.remove(0).version;
        let dir = cache.dir().join("selftests").join(format!("{pkg}_{}", version.replace(':', "%3a")));
        let root = dir.join("tree");
        if !root.join(mm_dir(&series)).is_dir() {
            let deb = apt.download(&pkg, "amd64", &version, &cache.dir().join("debs"))?;
            unpack_tree(&deb, &series, &root)?;
        }
        // amd64's first: arch:all from 6.12 on, with every arch's asm/ (and then the only
        // one the arm64 lists offer); up to 6.1 one package per arch, with its asm/ alone.
        let mut headers = dir.join("headers");
        for a in ["amd64", arch.deb()] {
            if a != "amd64" {
                headers = dir.join(format!("headers-{a}"));
            }
            if !headers.join("usr/include/linux/mman.h").is_file() {
                let hv = headers_version(&apt.offers("linux-libc-dev", a)?, &version, &series)?;
                let deb = apt.download("linux-libc-dev", a, &hv, &cache.dir().join("debs"))?;
                assets::unpack(&deb, "./usr/include/*", &headers)?;
            }
            if headers.join("usr/include").join(Target::Guest(arch).triplet()).join("asm").is_dir() {
                break;
            }
        }
        Ok(Source { series, version, root, headers })
    }

    pub fn mm(&self) -> PathBuf {
        self.root.join(mm_dir(&self.series))
    }

    /// Is `test` in this tree (`merge` is 6.16+)?
    pub fn has(&self, test: &str) -> bool {
        self.mm().join(format!("{test}.c")).is_file()
    }

    /// Builds `test` into `out` (skipped when the binary is newer than the source): gcc as
    /// the selftests' Makefile does, against this version's uapi headers, no liburing.
    pub fn build(&self, test: &str, out: &Path, target: Target) -> Result<PathBuf> {
        let mm = self.mm();
        let src = mm.join(format!("{test}.c"));
        let bin = out.join(test);
        let fresh = |b: &Path| Some(fs::metadata(b).ok()?.modified().ok()? >= fs::metadata(&src).ok()?.modified().ok()?);
        if fresh(&bin) == Some(true) {
            return Ok(bin);
        }
        fs::create_dir_all(out)?;
        // check_config.sh writes local_config.h (liburing or not): cow's io_uring cases skip.
        let cfg = out.join("cfg");
        fs::create_dir_all(&cfg)?;
        fs::write(cfg.join("local_config.h"), "")?;
        let inc = self.headers.join("usr/include");
        let asm = inc.join(target.triplet());
        ensure!(asm.join("asm").is_dir(), "linux-libc-dev of {} has no {}/asm", self.series, target.triplet());
        let mut cmd = Command::new(target.gcc());
        cmd.args(["-O2", "-w"]).arg("-I").arg(&self.root).arg("-I").arg(&cfg).arg("-isystem").arg(&inc).arg("-isystem").arg(&asm).arg(&src);
        for helper in ["vm_util.c", "thp_settings.c"] {
            if mm.join(helper).is_file() {
                cmd.arg(mm.join(helper));
            }
        }
        if let Target::Guest(_) = target {
            // The guest's initramfs has no libc, and it is gunzipped under TCG: small helps.
            cmd.args(["-static", "-s"]);
        }
        cmd.arg("-o").arg(&bin).args(["-lrt", "-lpthread", "-lm"]);
        let o = cmd.output().with_context(|| format!("cannot run {} (cargo xtask setup installs it)", target.gcc()))?;
        if !o.status.success() {
            let err = String::from_utf8_lossy(&o.stderr);
            let first = err.lines().find(|l| l.contains("error")).unwrap_or("").trim();
            bail!("building {test} from linux-source-{series} failed: {first}", series = self.series);
        }
        Ok(bin)
    }
}

/// Where a selftest binary runs: on this host (dynamic, the host's gcc), or in a guest of
/// that arch (static, built by the gcc for that arch: the host's for amd64, Debian's
/// `gcc-aarch64-linux-gnu` for arm64).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Host,
    Guest(Arch),
}

impl Target {
    fn gcc(self) -> &'static str {
        match self {
            Target::Guest(Arch::Aarch64) => "aarch64-linux-gnu-gcc",
            _ => "gcc",
        }
    }
    fn triplet(self) -> &'static str {
        match self {
            Target::Guest(Arch::Aarch64) => "aarch64-linux-gnu",
            _ => "x86_64-linux-gnu",
        }
    }
}

/// The linux-libc-dev matching the source: the same Debian version, else the same
/// upstream release, else the newest of the series.
fn headers_version(offers: &[debian::Offer], version: &str, series: &str) -> Result<String> {
    let upstream = |v: &str| v.split('-').next().unwrap_or(v).to_string();
    let same_series = |v: &str| v.starts_with(&format!("{series}."));
    offers
        .iter()
        .find(|o| o.version == version)
        .or_else(|| offers.iter().find(|o| upstream(&o.version) == upstream(version)))
        .or_else(|| offers.iter().find(|o| same_series(&o.version)))
        .map(|o| o.version.clone())
        .with_context(|| format!("Debian's archive has no linux-libc-dev of {series}"))
}

/// `usr/src/linux-source-X.Y.tar.xz` out of the .deb, then only [`MEMBERS`] out of it, into
/// a temporary sibling renamed into place (an interrupted run leaves nothing half-done).
fn unpack_tree(deb: &Path, series: &str, root: &Path) -> Result<()> {
    let tmp = root.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let tarball = format!("./usr/src/linux-source-{series}.tar.xz");
    debian::extract(deb, &tarball, &tmp)?;
    let xz = tmp.join(&tarball);
    let tree = tmp.join("tree");
    fs::create_dir_all(&tree)?;
    let members: Vec<String> = [format!("{}/*", mm_dir(series))].into_iter().chain(MEMBERS.map(String::from)).collect();
    eprintln!("selftests: unpacking {} from {}", members.join(" "), xz.display());
    let o = Command::new("tar")
        .arg("-xJf")
        .arg(&xz)
        .arg("-C")
        .arg(&tree)
        .args(["--strip-components=1", "--wildcards"])
        .args(members.iter().map(|m| format!("linux-source-{series}/{m}")))
        .output()
        .context("cannot run tar")?;
    if !o.status.success() {
        let _ = fs::remove_dir_all(&tmp);
    }
    ensure!(o.status.success(), "unpacking {}: {}", xz.display(), String::from_utf8_lossy(&o.stderr).trim());
    let _ = fs::remove_dir_all(root);
    fs::rename(&tree, root).with_context(|| format!("cannot move {} into place", tree.display()))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_closest_older_tree() {
        let names: Vec<String> = ["linux-source", "linux-source-5.10", "linux-source-6.1", "linux-source-6.12"].map(String::from).into();
        assert_eq!(pick_series(&names, (6, 18)).as_deref(), Some("6.12"));
        assert_eq!(pick_series(&names, (6, 12)).as_deref(), Some("6.12"));
        assert_eq!(pick_series(&names, (6, 11)).as_deref(), Some("6.1"));
        assert_eq!(pick_series(&names, (5, 4)), None);
        assert_eq!(major_minor("6.18.44-cloud"), Some((6, 18)));
        assert_eq!(mm_dir("6.1"), "tools/testing/selftests/vm");
        assert_eq!(mm_dir("6.12"), "tools/testing/selftests/mm");
    }
}
