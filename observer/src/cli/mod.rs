//! One file per subcommand: parse flags, call into load/, model, render.
pub mod doctor;
pub mod merge;
pub mod model;
pub mod model_sweep;
pub mod replay;
pub mod report;
pub mod serve;
pub mod snapshot;
pub mod trace;

pub use crate::exit::ExitCode;
use std::time::Duration;

/// A flag's duration: 10s, 500ms, 2m, 1h; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("`{s}`: a duration must be positive"));
    }
    // Bounded both ways: an Instant plus a year cannot overflow, and 1 ms is no busy loop.
    if !(0.001..=MAX_DURATION_SECS).contains(&secs) {
        return Err(format!("`{s}`: a duration must be from 1ms to 365 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

const MAX_DURATION_SECS: f64 = 365.0 * 86400.0;

/// A flag error as one line (`lazyvma: invalid value 'x' for '--top <N>': ...`), exit 2;
/// help and version print as clap prints them. clap echoes the user's argument, and its
/// rendering strips escape sequences from it (`$'\e]0;x\a'` shown as `''`): the message is
/// taken from the same parse of the arguments escaped, with plain styles, so what was typed
/// is shown as escapes, never sent. `cmd` is the parser `e` came from.
pub fn usage_error(e: clap::Error, cmd: clap::Command) -> ! {
    use clap::error::ErrorKind::*;
    if matches!(e.kind(), DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand) {
        e.exit()
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if e.kind() == InvalidUtf8 {
        // clap does not say which one.
        if let Some((i, a)) = args.iter().enumerate().skip(1).find(|(_, a)| a.to_str().is_none()) {
            eprintln!("lazyvma: argument {i} is not UTF-8: '{}'", crate::escape::os(a));
            std::process::exit(2)
        }
    }
    let escaped = args.iter().map(|a| crate::escape::os(a).into_owned());
    let plain = cmd.styles(clap::builder::Styles::plain()).try_get_matches_from(escaped).err();
    // Escaping changed nothing clap checks (it always should): clap's own words, escaped.
    let e = plain.filter(|p| p.kind() == e.kind()).unwrap_or(e);
    let text = e.render().ansi().to_string();
    let parts: Vec<&str> =
        text.lines().map(str::trim).take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information")).filter(|l| !l.is_empty()).collect();
    eprintln!("lazyvma: {}", crate::escape::ctl(parts.join(" ").trim_start_matches("error: ")));
    std::process::exit(2)
}

/// The message of an error that ends a command, for its one `lazyvma: ...` line: the cause
/// chain, every control character escaped (a path or a kernel string with a newline stays
/// on the line). A kernel refusal's verifier log (aya puts the whole log in the message) is
/// saved to a file the line names, as `lazyvma doctor` does.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut msg: Vec<String> = Vec::new();
    for c in e.chain() {
        let refused = match c.downcast_ref::<aya::programs::ProgramError>() {
            Some(aya::programs::ProgramError::LoadError { io_error, verifier_log }) => Some((io_error, verifier_log.to_string())),
            _ => match c.downcast_ref::<aya::BtfError>() {
                Some(aya::BtfError::LoadError { io_error, verifier_log }) => Some((io_error, verifier_log.to_string())),
                _ => None,
            },
        };
        if let Some((io_error, log)) = refused {
            msg.push(crate::load::refusal::describe(io_error, &log));
            break;
        }
        // An ExitCode context only chooses the status (its Display is empty); the message is what it wraps.
        let m = c.to_string();
        if !m.is_empty() {
            msg.push(m);
        }
    }
    crate::escape::ctl(&msg.join(": ")).into_owned()
}

/// Print to stdout; a reader that went away (`| head`) ends the output quietly. The
/// scenario's own lines are in it: no control character is sent.
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(crate::escape::lines(text).as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    /// aya's message for a refused program is the whole verifier log: the line keeps the
    /// errno and the log's last line, and names the file the log went to.
    #[test]
    fn a_verifier_log_in_the_error_goes_to_a_file_not_the_line() {
        let log = "0: (b7) r0 = 0\n1: (95) exit\nR0 \x1b[2Jbad\nprocessed 2 insns\n";
        let e = aya::programs::ProgramError::LoadError {
            io_error: std::io::Error::from_raw_os_error(libc::EACCES),
            verifier_log: aya_obj::VerifierLog::new(log.into()),
        };
        let line = super::error_line(&anyhow::Error::new(e).context("loading the BPF object"));
        assert!(line.starts_with("loading the BPF object: the kernel refused it (EACCES: verifier: processed 2 insns); verifier log saved to "), "{line}");
        assert!(!line.chars().any(char::is_control), "{line}");
        let path = line.rsplit("saved to ").next().unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), log);
        std::fs::remove_file(path).unwrap();
        let io = anyhow::Error::new(std::io::Error::other("a\nb\x1b")).context("reading /x\ny");
        assert_eq!(super::error_line(&io), "reading /x\\x0ay: a\\x0ab\\x1b");
    }
}
