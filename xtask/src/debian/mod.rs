//! Download-only access to Debian's archive through a private apt configuration, so the
//! host's sources, lists and dpkg architectures stay untouched: everything apt reads or
//! writes lives under one cache folder.
use anyhow::{bail, ensure, Context, Result};
pub mod mirror;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, SystemTime},
};

const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The releases whose kernels and packages are fetched: Debian 11, 12 and 13.
const RELEASES: [&str; 3] = ["bullseye", "bookworm", "trixie"];
/// Lists older than this are refreshed, so kernel security updates reach the cache.
const LISTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct Apt {
    dir: PathBuf,
}

/// One version of a package as the archive offers it.
pub struct Offer {
    pub version: String,
    pub suite: String,
}

impl Apt {
    /// Lays out `dir` (config, lists, state); cheap and idempotent.
    pub fn open(dir: &Path) -> Result<Apt> {
        ensure!(Path::new(KEYRING).is_file(), "{KEYRING} is missing: run `cargo xtask setup` (package debian-archive-keyring)");
        for sub in ["lists/partial", "cache/archives/partial", "etc/apt.conf.d", "etc/sources.list.d", "etc/preferences.d"] {
            fs::create_dir_all(dir.join(sub)).with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
        let m = mirror::resolve()?;
        let sources: String = RELEASES
            .iter()
            .flat_map(|r| [(&m.archive, r.to_string()), (&m.security, format!("{r}-security"))])
            .map(|(uri, suite)| format!("deb [signed-by={KEYRING}] {uri} {suite} main\n"))
            .collect();
        if write_if_changed(&dir.join("etc/sources.list"), &sources)? {
            let _ = fs::remove_file(dir.join("updated")); // new sources: the lists are not theirs
        }
        let status = dir.join("status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        let d = dir.display();
        let conf = format!(
            "Dir::Etc::SourceList \"{d}/etc/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/etc/sources.list.d\";\n\
             Dir::Etc::Parts \"{d}/etc/apt.conf.d\";\n\
             Dir::Etc::Preferences \"{d}/etc/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/etc/preferences.d\";\n\
             Dir::State \"{d}\";\n\
             Dir::State::Lists \"{d}/lists\";\n\
             Dir::State::status \"{d}/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; \"arm64\"; }};\n\
             Acquire::Languages \"none\";\n\
             Acquire::GzipIndexes \"true\";\n\
             Acquire::CompressionTypes::Order:: \"gz\";\n\
             Dir::Cache::srcpkgcache \"\";\n\
             Acquire::IndexTargets::deb::DEP-11::DefaultEnabled \"false\";\n\
             APT::Sandbox::User \"root\";\n"
        );
        write_if_changed(&dir.join("apt.conf"), &conf)?;
        Ok(Apt { dir: dir.to_path_buf() })
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut cmd = Command::new(prog);
        cmd.env("APT_CONFIG", self.dir.join("apt.conf")).env("LC_ALL", "C").stdin(Stdio::null());
        cmd
    }

    /// Fetches the package lists when missing, stale, or asked to.
    pub fn ensure_lists(&self, refresh: bool) -> Result<()> {
        match age(&self.dir.join("updated")) {
            Some(age) if !refresh && age <= LISTS_MAX_AGE => Ok(()),
            // Stale lists still name the kernels already in the cache: say so and go on.
            Some(_) if !refresh => self.update().or_else(|e| {
                eprintln!("vm: warning: keeping stale package lists: {e:#}");
                Ok(())
            }),
            _ => self.update(),
        }
    }

    pub fn update(&self) -> Result<()> {
        eprintln!("vm: apt-get update (private lists in {})", self.dir.display());
        // Without --error-on=any a failed fetch still exits 0, and the empty lists that follow
        // would be blamed on Debian.
        output(self.cmd("apt-get").args(["-q", "update", "--error-on=any"]), "apt-get update")?;
        // apt keeps an unchanged InRelease's old mtime, so the lists' age is kept here.
        fs::write(self.dir.join("updated"), "")?;
        Ok(())
    }

    /// Versions of `name` for `arch`, newest first.
    pub fn offers(&self, name: &str, arch: &str) -> Result<Vec<Offer>> {
        let out = output(self.cmd("apt-cache").args(["madison", &format!("{name}:{arch}")]), "apt-cache madison")?;
        // `pkg | version | URI suite/component arch Packages`
        let offers: Vec<Offer> = out
            .lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split('|').map(str::trim).collect();
                let suite = cols.get(2)?.split_whitespace().nth(1)?.split('/').next()?;
                Some(Offer { version: cols.get(1)?.to_string(), suite: suite.to_string() })
            })
            .collect();
        ensure!(!offers.is_empty(), "Debian's archive offers no {name} for {arch} (try `--refresh`)");
        Ok(offers)
    }

    /// Names of the packages `name=version` depends on (alternatives flattened).
    pub fn depends(&self, name: &str, arch: &str, version: &str) -> Result<Vec<String>> {
        let out = output(self.cmd("apt-cache").args(["show", &format!("{name}:{arch}={version}")]), "apt-cache show")?;
        let line = out.lines().find_map(|l| l.strip_prefix("Depends:")).unwrap_or("");
        Ok(line.split([',', '|']).filter_map(|d| d.split_whitespace().next()).map(|d| d.split(':').next().unwrap_or(d).to_string()).collect())
    }

    /// Names of the packages the lists know that start with `prefix` (`linux-source-`).
    pub fn names(&self, prefix: &str) -> Result<Vec<String>> {
        let out = output(self.cmd("apt-cache").args(["pkgnames", prefix]), "apt-cache pkgnames")?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// The .deb of `name=version` in `dir`, downloaded unless it is already there. An
    /// `Architecture: all` package (linux-source-*) is named `_all.deb` whatever `arch` asked.
    pub fn download(&self, name: &str, arch: &str, version: &str, dir: &Path) -> Result<PathBuf> {
        let deb = |a: &str| dir.join(format!("{name}_{}_{a}.deb", version.replace(':', "%3a")));
        let found = || [deb(arch), deb("all")].into_iter().find(|d| d.is_file());
        if let Some(d) = found() {
            return Ok(d);
        }
        fs::create_dir_all(dir)?;
        eprintln!("vm: downloading {name}:{arch} {version}");
        output(self.cmd("apt-get").current_dir(dir).args(["-q", "download", &format!("{name}:{arch}={version}")]), "apt-get download")?;
        found().with_context(|| format!("apt-get download left no {}", deb(arch).display()))
    }
}

/// Unpacks the members of `deb` matching `pattern` (e.g. `./boot/*`) into `dest`.
pub fn extract(deb: &Path, pattern: &str, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    let mut dpkg = Command::new("dpkg-deb").arg("--fsys-tarfile").arg(deb).stdout(Stdio::piped()).spawn().context("cannot run dpkg-deb")?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .args(["--wildcards", pattern])
        .stdin(dpkg.stdout.take().unwrap())
        .output()
        .context("cannot run tar")?;
    let status = dpkg.wait()?;
    ensure!(status.success(), "dpkg-deb --fsys-tarfile {} failed: {status}", deb.display());
    if !tar.status.success() {
        bail!("unpacking {pattern} from {} failed: {}", deb.display(), String::from_utf8_lossy(&tar.stderr).trim());
    }
    Ok(())
}

/// Time since `stamp` was written; None when it never was.
fn age(stamp: &Path) -> Option<Duration> {
    let modified = fs::metadata(stamp).ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(modified).unwrap_or_default())
}

/// True when it had to write.
fn write_if_changed(path: &Path, text: &str) -> Result<bool> {
    if fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(false);
    }
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

/// Runs a command, returns stdout; on failure the error carries its stderr.
fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first_error = err.lines().find(|l| l.starts_with("E: "));
        let why = first_error.or_else(|| err.lines().rev().find(|l| !l.trim().is_empty())).unwrap_or("").trim();
        bail!("{what} failed ({}): {why}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
