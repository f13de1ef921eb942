//! The command line: a small argument parser, the `main` wrapper that turns an error into
//! exit status 1, and how results are printed.

use std::error::Error;
use std::fmt::Display;
use std::process::ExitCode;
use std::str::FromStr;

/// The error type of every example's `run`.
pub type AnyResult<T = ()> = Result<T, Box<dyn Error>>;

/// Runs `run`, printing its error as `name: message` on stderr and exiting with status 1.
pub fn main_with(name: &str, run: impl FnOnce() -> AnyResult) -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A small command-line parser: `--flag`, `--name VALUE` or `--name=VALUE`; what is left
/// when [`Cli::finish`] runs is an error naming it.
pub struct Cli {
    usage: String,
    args: Vec<String>,
}

impl Cli {
    /// Reads the process arguments; prints `usage` and exits 0 on `-h` or `--help`.
    pub fn new(usage: impl Into<String>) -> Cli {
        let usage = usage.into();
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "-h" || a == "--help") {
            println!("{usage}");
            std::process::exit(0);
        }
        Cli { usage, args }
    }

    /// Whether `--name` was given (removes it).
    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.args.len();
        self.args.retain(|a| a != name);
        self.args.len() != before
    }

    /// The value of `--name VALUE` or `--name=VALUE` (the last one given), parsed.
    pub fn value<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: Display,
    {
        let mut found = None;
        let mut i = 0;
        while i < self.args.len() {
            let a = &self.args[i];
            let raw = if a == name {
                let v = self
                    .args
                    .get(i + 1)
                    .filter(|v| !v.starts_with("--"))
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value\n{}", self.usage))?;
                self.args.drain(i..i + 2);
                v
            } else if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                let v = v.to_string();
                self.args.remove(i);
                v
            } else {
                i += 1;
                continue;
            };
            let parsed = raw
                .parse::<T>()
                .map_err(|e| format!("{name} {raw:?}: {e}"))?;
            found = Some(parsed);
        }
        Ok(found)
    }

    /// A comma-separated list, e.g. `--rates 0,0.2,0.5`.
    pub fn list<T: FromStr>(&mut self, name: &str) -> Result<Option<Vec<T>>, String>
    where
        T::Err: Display,
    {
        let Some(raw) = self.value::<String>(name)? else {
            return Ok(None);
        };
        raw.split(',')
            .map(|s| {
                s.trim()
                    .parse::<T>()
                    .map_err(|e| format!("{name} item {s:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// `Err` naming the first argument nobody asked for.
    pub fn finish(self) -> Result<(), String> {
        match self.args.first() {
            None => Ok(()),
            Some(a) => Err(format!("unknown argument {a:?}\n{}", self.usage)),
        }
    }
}

/// `0.8123` as `81.23%`.
pub fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}
