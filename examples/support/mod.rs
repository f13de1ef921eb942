//! What the examples share. Each example includes it with
//! `#[path = "support/mod.rs"] mod support;` and names the part it uses, e.g.
//! `support::cli::Cli`:
//!
//! - [`cli`]: argument parsing and `--help`, the `main` wrapper, printing percentages;
//! - [`data`]: the data options, loading and cutting a data set, a seeded shuffle;
//! - [`train`]: the per-epoch training loop of the CNN examples;
//! - [`chart`]: PNG line charts of the training curves.

// Each example uses a different part of this module.
#![allow(dead_code)]

pub mod chart;
pub mod cli;
pub mod data;
pub mod train;
