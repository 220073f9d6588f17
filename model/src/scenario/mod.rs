//! Scenario files: a small text format for processes, VMAs and what happens to them, with
//! `expect` lines carrying the exact counts (format: docs/scenarios.md).

mod parse;
mod run;

pub use parse::{parse, Expect, Item, Kind, Line, ParseError, Scenario, Scope, Side, Want};
pub use run::{run, verify, Check, Report, RunError, StepReport};
