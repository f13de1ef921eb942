//! `fit`'s progress bar on a terminal: indicatif with the `progress` feature, natively; no
//! bar without it or in a browser (where `verbose` keeps only the per-epoch line).

/// One epoch's bar.
pub(super) struct Bar {
    #[cfg(all(feature = "progress", not(target_arch = "wasm32")))]
    bar: indicatif::ProgressBar,
    /// Without indicatif no `Bar` is ever made.
    #[cfg(not(all(feature = "progress", not(target_arch = "wasm32"))))]
    never: std::convert::Infallible,
}

#[cfg(all(feature = "progress", not(target_arch = "wasm32")))]
impl Bar {
    /// A bar for epoch `epoch` of `epochs`, `steps` long, when `verbose`.
    pub(super) fn new(verbose: bool, epoch: usize, epochs: usize, steps: usize) -> Option<Bar> {
        if !verbose {
            return None;
        }
        let bar = indicatif::ProgressBar::new(steps as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "Epoch {prefix} {pos:>4}/{len} {wide_bar} {elapsed_precise} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        Some(Bar { bar })
    }

    pub(super) fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    pub(super) fn set_message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    pub(super) fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(not(all(feature = "progress", not(target_arch = "wasm32"))))]
impl Bar {
    /// No bar: indicatif is not built in.
    pub(super) fn new(_verbose: bool, _epoch: usize, _epochs: usize, _steps: usize) -> Option<Bar> {
        None
    }

    pub(super) fn inc(&self, _n: u64) {
        match self.never {}
    }

    pub(super) fn set_message(&self, _msg: String) {
        match self.never {}
    }

    pub(super) fn finish_and_clear(&self) {
        match self.never {}
    }
}
