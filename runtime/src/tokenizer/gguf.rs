//! Reading a [`VocabSpec`] out of GGUF metadata.

use phi_gguf::{Gguf, Value};

use super::{special_id, SpecialIds, TokenizerError, VocabSpec};

fn bad(key: &str, problem: impl Into<String>) -> TokenizerError {
    TokenizerError::BadValue {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// An optional string key.
fn opt_str(g: &Gguf, key: &str) -> Result<Option<String>, TokenizerError> {
    Ok(g.opt_str(key)?.map(str::to_owned))
}

/// An optional array whose every element passes `conv`.
fn opt_array<T>(
    g: &Gguf,
    key: &str,
    what: &str,
    conv: impl Fn(&Value) -> Option<T>,
) -> Result<Option<Vec<T>>, TokenizerError> {
    let Some(items) = g.opt_array(key)? else {
        return Ok(None);
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| conv(v).ok_or_else(|| bad(key, format!("element {i} is not {what}"))))
        .collect::<Result<Vec<T>, _>>()
        .map(Some)
}

/// An optional token id key, which must name one of the `n_vocab` tokens:
/// negative, too large and out-of-vocabulary ids are errors that name the
/// key (a file that lies about its vocabulary is refused).
fn opt_id(g: &Gguf, key: &str, n_vocab: usize) -> Result<Option<u32>, TokenizerError> {
    let Some(v) = g.get(key) else {
        return Ok(None);
    };
    match v.as_integer() {
        Some(id) => special_id(key, id, n_vocab).map(Some),
        // Not an integer: the typed accessor says what it is instead.
        None => Ok(g.opt_u32(key)?),
    }
}

const PREFIX: &str = "tokenizer.ggml.";

/// Collects the tokenizer keys of `g`.
pub(super) fn read_spec(g: &Gguf) -> Result<VocabSpec, TokenizerError> {
    let key = |k: &str| format!("{PREFIX}{k}");
    let model = g
        .opt_str(&key("model"))?
        .ok_or_else(|| TokenizerError::MissingKey(key("model")))?
        .to_owned();
    let none = matches!(model.as_str(), "none" | "no_vocab");

    let tokens = opt_array(g, &key("tokens"), "a string", |v| {
        v.as_str().map(str::to_owned)
    })?;
    let tokens = match tokens {
        Some(t) => t,
        None if none => Vec::new(),
        None => return Err(TokenizerError::MissingKey(key("tokens"))),
    };
    let scores = opt_array(g, &key("scores"), "a number", |v| match *v {
        Value::F32(x) => Some(x),
        Value::F64(x) => Some(x as f32),
        _ => v.as_i64().map(|i| i as f32),
    })?;
    let token_types = opt_array(g, &key("token_type"), "an i32", |v| {
        v.as_i64().and_then(|i| i32::try_from(i).ok())
    })?;
    let merges = opt_array(g, &key("merges"), "a string", |v| {
        v.as_str().map(str::to_owned)
    })?;

    // A tokenizer-less model ("none") ignores its ids, like llama.cpp.
    let id = |k: &str| {
        if none {
            Ok(None)
        } else {
            opt_id(g, &key(k), tokens.len())
        }
    };
    let special_ids = SpecialIds {
        bos: id("bos_token_id")?,
        eos: id("eos_token_id")?,
        eot: id("eot_token_id")?,
        eom: id("eom_token_id")?,
        unk: id("unknown_token_id")?,
        sep: id("seperator_token_id")?,
        pad: id("padding_token_id")?,
        mask: id("mask_token_id")?,
        fim_pre: id("fim_pre_token_id")?.or(id("prefix_token_id")?),
        fim_suf: id("fim_suf_token_id")?.or(id("suffix_token_id")?),
        fim_mid: id("fim_mid_token_id")?.or(id("middle_token_id")?),
        fim_pad: id("fim_pad_token_id")?,
        fim_rep: id("fim_rep_token_id")?,
        fim_sep: id("fim_sep_token_id")?,
    };

    Ok(VocabSpec {
        model,
        pre: opt_str(g, &key("pre"))?,
        tokens,
        scores,
        token_types,
        merges,
        special_ids,
        add_bos: g.opt_bool(&key("add_bos_token"))?,
        add_eos: g.opt_bool(&key("add_eos_token"))?,
        add_space_prefix: g.opt_bool(&key("add_space_prefix"))?,
        model_name: opt_str(g, "general.name")?,
        architecture: opt_str(g, "general.architecture")?,
        chat_template: opt_str(g, "tokenizer.chat_template")?,
    })
}
