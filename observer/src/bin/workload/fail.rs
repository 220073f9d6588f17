//! Two kinds of failure, told apart by exit code: the environment lacks something the
//! scenario needs (3, so tests can skip), or the scenario itself broke (1).
use std::fmt;

pub const EXIT_UNAVAILABLE: i32 = 3;
pub const EXIT_BROKEN: i32 = 1;

pub enum Fail {
    Unavailable(String),
    Broken(String),
}

pub type Res<T> = Result<T, Fail>;

impl Fail {
    pub fn code(&self) -> i32 {
        match self {
            Fail::Unavailable(_) => EXIT_UNAVAILABLE,
            Fail::Broken(_) => EXIT_BROKEN,
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Fail::Unavailable(m) => write!(f, "not available: {m}"),
            Fail::Broken(m) => f.write_str(m),
        }
    }
}

pub fn unavailable(msg: impl Into<String>) -> Fail {
    Fail::Unavailable(msg.into())
}

pub fn broken(msg: impl Into<String>) -> Fail {
    Fail::Broken(msg.into())
}

/// `what` failed with the current errno.
pub fn os(what: impl fmt::Display) -> Fail {
    Fail::Broken(format!("{what}: {}", std::io::Error::last_os_error()))
}
