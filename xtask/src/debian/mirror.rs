//! Which Debian mirror to fetch from: the one this machine's apt sources already name
//! (so the repository names no mirror host), or `LAZYVMA_DEBIAN_MIRROR` /
//! `LAZYVMA_DEBIAN_SECURITY_MIRROR` on machines whose apt points elsewhere.
use anyhow::{bail, Result};
use std::{fs, path::Path};

/// The archive and security URIs, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub archive: String,
    pub security: String,
}

const ARCHIVE_ENV: &str = "LAZYVMA_DEBIAN_MIRROR";
const SECURITY_ENV: &str = "LAZYVMA_DEBIAN_SECURITY_MIRROR";

pub fn resolve() -> Result<Mirror> {
    let from_env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty()).map(|v| v.trim_end_matches('/').to_string());
    let uris = host_uris(Path::new("/etc/apt"));
    let archive = from_env(ARCHIVE_ENV).or_else(|| pick(&uris, "/debian"));
    let security = from_env(SECURITY_ENV).or_else(|| pick(&uris, "/debian-security"));
    match (archive, security) {
        (Some(archive), Some(security)) => Ok(Mirror { archive, security }),
        (None, _) => bail!("no Debian archive in /etc/apt/sources.list{{,.d/*.sources}}: set {ARCHIVE_ENV} (e.g. http://<mirror>/debian)"),
        (_, None) => bail!("no Debian security archive in /etc/apt/sources.list{{,.d/*.sources}}: set {SECURITY_ENV} (e.g. http://<mirror>/debian-security)"),
    }
}

/// The first URI whose path ends in `suffix` (`/debian`, `/debian-security`).
fn pick(uris: &[String], suffix: &str) -> Option<String> {
    uris.iter().map(|u| u.trim_end_matches('/')).find(|u| u.ends_with(suffix)).map(str::to_string)
}

/// Every URI of the host's `deb` sources: one-line `sources.list` style and deb822 `.sources`.
fn host_uris(etc_apt: &Path) -> Vec<String> {
    let mut uris = Vec::new();
    let mut files = vec![etc_apt.join("sources.list")];
    if let Ok(dir) = fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut more: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else { continue };
        match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => uris.extend(deb822_uris(&text)),
            Some("list") => uris.extend(one_line_uris(&text)),
            _ => {}
        }
    }
    uris
}

fn one_line_uris(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("deb "))
        .filter_map(|l| {
            let rest = l["deb ".len()..].trim_start();
            // `deb [opts] uri suite ...`: skip the bracketed options.
            let rest = if rest.starts_with('[') { rest.split_once(']').map(|(_, r)| r.trim_start())? } else { rest };
            rest.split_whitespace().next().map(str::to_string)
        })
        .collect()
}

fn deb822_uris(text: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = field("Enabled").is_none_or(|e| !e.eq_ignore_ascii_case("no"));
        if is_deb && enabled {
            uris.extend(field("URIs").into_iter().flat_map(|u| u.split_whitespace().map(str::to_string).collect::<Vec<_>>()));
        }
    }
    uris
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_source_formats() {
        let d822 = "Types: deb\n# comment\nURIs: http://m.example/debian\nSuites: bookworm\n\n\
                    Types: deb\nURIs: http://m.example/debian-security/\nSuites: bookworm-security\n\n\
                    Types: deb-src\nURIs: http://src.example/debian\n";
        let uris = deb822_uris(d822);
        assert_eq!(uris, ["http://m.example/debian", "http://m.example/debian-security/"]);
        assert_eq!(pick(&uris, "/debian-security").as_deref(), Some("http://m.example/debian-security"));
        let list = "# x\ndeb [signed-by=/k.gpg arch=amd64] http://o.example/debian bookworm main\ndeb-src http://s/debian b main\n";
        assert_eq!(one_line_uris(list), ["http://o.example/debian"]);
    }
}
