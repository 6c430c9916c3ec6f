//! Loading a model with a progress spinner on stderr (drawn only when stderr
//! is a terminal, so scripts and tests see nothing).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use phi::{Model, ModelOptions};
use std::path::Path;
use std::time::Duration;

/// `Model::load_with` with a spinner naming the file while it maps, validates
/// and repacks the weights.
pub fn load_model(path: &Path, options: &ModelOptions) -> phi::Result<Model> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} loading {msg} ({elapsed})") {
        bar.set_style(style);
    }
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    bar.set_message(name);
    bar.enable_steady_tick(Duration::from_millis(100));
    let model = Model::load_with(path, options);
    bar.finish_and_clear();
    model
}
