//! `summary`: a Keras-like table of the layers.

use crate::Result;
use crate::nn::lower::{ParamInfo, lower};
use crate::nn::model::Sequential;

impl Sequential {
    /// A Keras-like table of layers, output shapes and parameter counts.
    ///
    /// # Errors
    /// When the model's shapes do not check.
    pub fn summary(&self) -> Result<String> {
        let lw = lower("summary", &self.input, &self.layers)?;
        let mut rows = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let prefix = format!("{}/", lw.names[i]);
            let count: usize = lw
                .params
                .iter()
                .filter(|p| p.name.starts_with(&prefix))
                .map(|p| p.shape.iter().product::<usize>())
                .sum();
            rows.push((
                format!("{} ({})", lw.names[i], layer.kind()),
                format!("(None, {})", join(&lw.shapes[i])),
                count,
            ));
        }
        let size = |p: &ParamInfo| p.shape.iter().product::<usize>();
        let total: usize = lw.params.iter().map(size).sum();
        let trainable: usize = lw
            .params
            .iter()
            .filter(|p| p.trainable && p.is_weight)
            .map(size)
            .sum();
        let thin = "─".repeat(72);
        let thick = "═".repeat(72);
        let mut s = format!(
            "Model: \"sequential\"\n{thin}\n{:<34}{:<26}{:>12}\n{thick}\n",
            "Layer (type)", "Output Shape", "Param #"
        );
        for (name, shape, count) in rows {
            s.push_str(&format!("{name:<34}{shape:<26}{:>12}\n", thousands(count)));
        }
        s.push_str(&format!(
            "{thick}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: {}\n{thin}\n",
            thousands(total),
            thousands(trainable),
            thousands(total - trainable)
        ));
        Ok(s)
    }
}

fn join(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
