//! What the examples share. Each example includes it with
//! `#[path = "support/mod.rs"] mod support;` and names the part it uses, e.g.
//! `support::cli::Cli`:
//!
//! - [`cli`]: argument parsing and `--help`, the `main` wrapper, printing percentages;
//! - [`data`]: the data options, loading and cutting a data set, a seeded shuffle;
//! - [`chart`]: PNG line charts of the training curves.
//!
//! There is no training loop here: the examples train with `Sequential::fit`.

// Each example uses a different part of this module.
#![allow(dead_code)]

pub mod chart;
pub mod cli;
pub mod data;
