//! The training loop the CNN examples share: a Keras-like line per epoch on stdout.

use wgnn::data::Dataset;

/// Trains `model` for `epochs` passes over `train` (`batch` samples per step), evaluating
/// `test` after each epoch with batches of 256 (faster than the training batch on lavapipe),
/// and prints a Keras-like line per epoch. What `Sequential::fit` does with a validation
/// set, with a larger evaluation batch.
pub fn train_epochs(
    model: &mut wgnn::nn::Sequential,
    train: &Dataset,
    test: &Dataset,
    epochs: usize,
    batch: usize,
) -> wgnn::Result<wgnn::nn::History> {
    use std::io::Write;
    let mut history = wgnn::nn::History::default();
    for epoch in 1..=epochs {
        print!("Epoch {epoch}/{epochs}: ");
        let _ = std::io::stdout().flush();
        let started = std::time::Instant::now();
        let mut t = model.trainer(train, batch)?;
        let steps = t.steps_per_epoch();
        t.begin_epoch();
        for _ in 0..steps {
            t.step()?;
        }
        let (loss, accuracy) = t.end_epoch(epoch)?;
        let skipped_steps = t.skipped_steps();
        let seconds = started.elapsed().as_secs_f64();
        let eval_started = std::time::Instant::now();
        let v = model.evaluate(test, 256)?;
        println!(
            "{steps}/{steps} - {seconds:.1}s {:.0}ms/step - accuracy: {accuracy:.4} - loss: {loss:.4} \
             - val_accuracy: {:.4} - val_loss: {:.4} (evaluated in {:.1}s)",
            1000.0 * seconds / steps as f64,
            v.accuracy,
            v.loss,
            eval_started.elapsed().as_secs_f64()
        );
        history.epochs.push(wgnn::nn::EpochLog {
            epoch,
            loss,
            accuracy,
            validation: Some(v),
            seconds,
            skipped_steps,
        });
    }
    Ok(history)
}
