//! Structured-output flags (`--json`, `--json-schema`, `--regex`, `--grammar`)
//! and their translation into a [`phi::ConstraintSpec`].

use phi::{Constraint, ConstraintSpec, ConstraintVocab, Model};
use std::path::PathBuf;
use std::sync::Arc;

/// Constrain the output (at most one of these).
#[derive(clap::Args, Clone, Debug, Default)]
#[group(multiple = false)]
pub struct ConstraintArgs {
    /// Output any JSON object.
    #[arg(long)]
    pub json: bool,
    /// Output JSON valid against this JSON Schema: a file, or the schema itself
    /// (text starting with `{`).
    #[arg(long, value_name = "FILE|JSON")]
    pub json_schema: Option<String>,
    /// Output text matching this regex as a whole (Rust regex syntax).
    #[arg(long, value_name = "RE")]
    pub regex: Option<String>,
    /// Output text matching this grammar (llguidance's Lark syntax).
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<PathBuf>,
}

impl ConstraintArgs {
    /// The constraint the flags ask for, if any.
    pub fn spec(&self) -> Result<Option<ConstraintSpec>, String> {
        if self.json {
            return Ok(Some(ConstraintSpec::JsonObject));
        }
        if let Some(s) = &self.json_schema {
            let text = if s.trim_start().starts_with('{') {
                s.clone()
            } else {
                std::fs::read_to_string(s)
                    .map_err(|e| format!("cannot read the JSON Schema file {s}: {e}"))?
            };
            return ConstraintSpec::json_schema(&text)
                .map(Some)
                .map_err(|e| e.to_string());
        }
        if let Some(rx) = &self.regex {
            return Ok(Some(ConstraintSpec::Regex(rx.clone())));
        }
        if let Some(f) = &self.grammar {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("cannot read the grammar file {}: {e}", f.display()))?;
            return Ok(Some(ConstraintSpec::Lark(text)));
        }
        Ok(None)
    }

    /// The compiled constraint for `model` (errors before any token is made).
    pub fn build(&self, model: &Arc<Model>) -> Result<Option<Constraint>, String> {
        let Some(spec) = self.spec()? else {
            return Ok(None);
        };
        let vocab = ConstraintVocab::for_model(model).map_err(|e| e.to_string())?;
        Constraint::new(&vocab, &spec)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}
