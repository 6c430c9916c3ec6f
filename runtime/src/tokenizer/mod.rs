//! Tokenizers built from GGUF `tokenizer.ggml.*` metadata, reproducing
//! llama.cpp's `llama_tokenize` / `llama_token_to_piece` /
//! `llama_detokenize` exactly.
//!
//! Two tokenizer models are supported:
//!
//! * `llama`: SentencePiece BPE with byte fallback (Phi-3, Llama 2). Spaces
//!   become `▁`, a `▁` is prepended to every text fragment that starts the
//!   input or follows a special token, and adjacent pieces are merged by
//!   vocabulary score (module `spm`).
//! * `gpt2`: byte-level BPE with a merge table and the pre-tokenizer named by
//!   `tokenizer.ggml.pre` (modules `bpe`, `pretok`).
//!
//! Special tokens (CONTROL, USER_DEFINED and UNKNOWN types) are cut out of
//! the text before tokenization, longest first, the way llama.cpp's
//! `tokenizer_st_partition` does: CONTROL/UNKNOWN ones only when
//! `parse_special` is set, USER_DEFINED ones always.
//!
//! The core ([`Tokenizer::from_spec`]) takes plain data ([`VocabSpec`]);
//! [`Tokenizer::from_gguf`] reads that data from a GGUF file.
//!
//! Verified against llama.cpp 0c1e57098 (tests/tokenizer.rs): the Phi-3 and
//! GPT-2 reference corpora in all four `add_special` × `parse_special`
//! modes (ids, pieces, both detokenizations) and llama.cpp's own
//! `ggml-vocab-*.gguf.inp/.out` strings for phi-3, llama-spm, gpt-2,
//! llama-bpe, mpt, falcon, starcoder, refact, command-r and qwen2.
//!
//! Supported `tokenizer.ggml.pre` values: the default, and the llama3,
//! gpt-2, starcoder/smollm/command-r, falcon, qwen2 and gpt-4o/llama4
//! (Phi-4-mini) families (see `pretok::PreConfig::from_name`). Not supported
//! (typed error): the deepseek, tekken, qwen35, chameleon, bloom-style
//! pre-tokenizers and the bert/t5/rwkv/gemma4 tokenizer models.
//!
//! Deliberate differences from llama.cpp (which iterates a hash map or
//! aborts where this code must be deterministic and must not panic):
//! * when several end-of-turn texts exist, [`Tokenizer::eot`] is the first
//!   of the list order (`<|eot_id|>`, `<|im_end|>`, `<|end|>`, ...), e.g.
//!   `<|end|>` for Phi-3; the end-of-generation set is the same;
//! * `scores`/`token_type` arrays longer than the vocabulary are an error
//!   (llama.cpp ignores the excess);
//! * a byte with no byte-fallback token becomes UNK instead of an abort;
//! * a special-token id key (`tokenizer.ggml.*_token_id`) naming a token
//!   outside the vocabulary is an error ([`TokenizerError::SpecialIdOutOfRange`];
//!   llama.cpp warns and keeps its default). No published vocabulary the
//!   project has seen needs that leniency (SECURITY.md).

mod bpe;
pub mod chat;
mod gguf;
mod pretok;
mod spm;
mod stream;

use std::collections::{BTreeSet, HashMap};

pub use chat::{ChatMessage, ChatTemplateError};
pub use stream::{TextStream, Utf8Stream};

/// Errors from building a tokenizer out of (possibly hostile) metadata.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A required key is absent.
    #[error("tokenizer metadata key `{0}` is missing")]
    MissingKey(String),
    /// A key has an unusable type or value.
    #[error("tokenizer metadata key `{key}`: {problem}")]
    BadValue { key: String, problem: String },
    /// An array that must have one entry per token has another length.
    #[error("`{key}` has {found} entries but the vocabulary has {expected} tokens")]
    LengthMismatch {
        key: &'static str,
        expected: usize,
        found: usize,
    },
    /// `tokenizer.ggml.model` names a model this crate does not implement.
    #[error("unsupported tokenizer model `{0}` (supported: \"llama\", \"gpt2\", \"none\")")]
    UnknownModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error("unsupported BPE pre-tokenizer `{0}`")]
    UnknownPreTokenizer(String),
    /// A `tokenizer.ggml.merges` entry is not "left right".
    #[error("malformed BPE merge #{index}: `{merge}` (expected \"left right\")")]
    MalformedMerge { index: usize, merge: String },
    /// The vocabulary has no tokens.
    #[error("the vocabulary is empty")]
    EmptyVocab,
    /// Two tokens have the same text.
    #[error("duplicate token `{text}` (ids {first} and {second})")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },
    /// A special-token id key names a token the vocabulary does not have.
    #[error(
        "tokenizer metadata key `{key}` is {id}, outside the vocabulary of {n_vocab} tokens \
         (valid ids: 0..{n_vocab})"
    )]
    SpecialIdOutOfRange {
        key: String,
        id: i128,
        n_vocab: usize,
    },
    /// A count does not fit the id type.
    #[error("`{what}` is too large")]
    TooLarge { what: &'static str },
    /// The GGUF file itself could not be read.
    #[error(transparent)]
    Gguf(#[from] phi_gguf::GgufError),
}

/// Token attributes (llama.cpp's `llama_token_attr` bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TokenAttr(pub u32);

impl TokenAttr {
    pub const UNDEFINED: TokenAttr = TokenAttr(0);
    pub const UNKNOWN: TokenAttr = TokenAttr(1 << 0);
    pub const UNUSED: TokenAttr = TokenAttr(1 << 1);
    pub const NORMAL: TokenAttr = TokenAttr(1 << 2);
    pub const CONTROL: TokenAttr = TokenAttr(1 << 3);
    pub const USER_DEFINED: TokenAttr = TokenAttr(1 << 4);
    pub const BYTE: TokenAttr = TokenAttr(1 << 5);
    pub const NORMALIZED: TokenAttr = TokenAttr(1 << 6);
    pub const LSTRIP: TokenAttr = TokenAttr(1 << 7);
    pub const RSTRIP: TokenAttr = TokenAttr(1 << 8);
    pub const SINGLE_WORD: TokenAttr = TokenAttr(1 << 9);

    /// The attribute of a GGUF `tokenizer.ggml.token_type` value.
    pub fn from_token_type(t: i32) -> TokenAttr {
        match t {
            1 => Self::NORMAL,
            2 => Self::UNKNOWN,
            3 => Self::CONTROL,
            4 => Self::USER_DEFINED,
            5 => Self::UNUSED,
            6 => Self::BYTE,
            _ => Self::UNDEFINED,
        }
    }

    /// Whether any bit of `other` is set.
    pub fn intersects(self, other: TokenAttr) -> bool {
        self.0 & other.0 != 0
    }

    fn with(self, other: TokenAttr, on: bool) -> TokenAttr {
        if on {
            TokenAttr(self.0 | other.0)
        } else {
            TokenAttr(self.0 & !other.0)
        }
    }
}

/// The tokenizer algorithm (`tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// "none" / "no_vocab": no vocabulary; encodes to nothing.
    None,
    /// "llama": SentencePiece BPE with byte fallback.
    Spm,
    /// "gpt2": byte-level BPE.
    Bpe,
}

/// Everything a tokenizer is built from, as plain data (the
/// `tokenizer.ggml.*` keys and the few general keys llama.cpp consults).
#[derive(Debug, Clone, Default)]
pub struct VocabSpec {
    /// `tokenizer.ggml.model`.
    pub model: String,
    /// `tokenizer.ggml.pre`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (all 0 when absent).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type` (all NORMAL when absent).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges` (required for "gpt2").
    pub merges: Option<Vec<String>>,
    /// Special token ids from the `tokenizer.ggml.*_token_id` keys.
    pub special_ids: SpecialIds,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`.
    pub add_space_prefix: Option<bool>,
    /// `general.name` (llama.cpp keys the Phi-3 special-token whitespace
    /// stripping on it).
    pub model_name: Option<String>,
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

/// Raw special-token ids from the metadata (unchecked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

impl SpecialIds {
    /// Each id with the metadata key it comes from (the `fim_*` ids may also
    /// come from the older `prefix`/`suffix`/`middle_token_id` keys).
    pub fn by_key(&self) -> [(&'static str, Option<u32>); 14] {
        [
            ("tokenizer.ggml.bos_token_id", self.bos),
            ("tokenizer.ggml.eos_token_id", self.eos),
            ("tokenizer.ggml.eot_token_id", self.eot),
            ("tokenizer.ggml.eom_token_id", self.eom),
            ("tokenizer.ggml.unknown_token_id", self.unk),
            ("tokenizer.ggml.seperator_token_id", self.sep),
            ("tokenizer.ggml.padding_token_id", self.pad),
            ("tokenizer.ggml.mask_token_id", self.mask),
            ("tokenizer.ggml.fim_pre_token_id", self.fim_pre),
            ("tokenizer.ggml.fim_suf_token_id", self.fim_suf),
            ("tokenizer.ggml.fim_mid_token_id", self.fim_mid),
            ("tokenizer.ggml.fim_pad_token_id", self.fim_pad),
            ("tokenizer.ggml.fim_rep_token_id", self.fim_rep),
            ("tokenizer.ggml.fim_sep_token_id", self.fim_sep),
        ]
    }
}

/// `id` (the value of `key`) as a token id of a vocabulary of `n_vocab`
/// tokens, or the error that names the key and the vocabulary size.
pub(crate) fn special_id(key: &str, id: i128, n_vocab: usize) -> Result<u32, TokenizerError> {
    u32::try_from(id)
        .ok()
        .filter(|&i| (i as usize) < n_vocab)
        .ok_or_else(|| TokenizerError::SpecialIdOutOfRange {
            key: key.to_owned(),
            id,
            n_vocab,
        })
}

#[derive(Debug, Clone)]
struct TokenData {
    text: String,
    score: f32,
    attr: TokenAttr,
}

/// A piece of the input after special tokens are cut out.
#[derive(Debug, Clone, Copy)]
enum Fragment {
    /// A byte range of the input text.
    Text(usize, usize),
    Token(u32),
}

/// A tokenizer: vocabulary, merge rules and llama.cpp's special-token logic.
#[derive(Clone)]
pub struct Tokenizer {
    kind: TokenizerKind,
    tokens: Vec<TokenData>,
    token_to_id: HashMap<String, u32>,
    /// CONTROL, USER_DEFINED and UNKNOWN tokens, longest text first.
    special_cache: Vec<u32>,
    ids: SpecialIds,
    eog: BTreeSet<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    ignore_merges: bool,
    pre: Option<pretok::PreTokenizer>,
    merges: bpe::Merges,
    chat_template: Option<String>,
    model_name: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    /// A summary (the vocabulary itself is too large to print).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("n_vocab", &self.tokens.len())
            .field("n_merges", &self.merges.len())
            .field("bos", &self.ids.bos)
            .field("eos", &self.ids.eos)
            .field("eot", &self.ids.eot)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .field("eog", &self.eog)
            .finish_non_exhaustive()
    }
}

/// Accessor of one field of [`SpecialIds`].
type IdSlot = fn(&mut SpecialIds) -> &mut Option<u32>;

/// Texts that mark a token as end-of-turn (first one found, in this order).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Texts of the tokens that end generation.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// C `isspace` on a byte (the "C" locale): space, \t, \n, \v, \f, \r.
fn is_c_space(b: u8) -> bool {
    b == b' ' || (b'\t'..=b'\r').contains(&b)
}

impl Tokenizer {
    /// Reads the tokenizer of a GGUF file (only metadata is touched, so a
    /// vocab-only file works).
    pub fn from_gguf(g: &phi_gguf::Gguf) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_spec(gguf::read_spec(g)?)
    }

    /// Builds a tokenizer from plain vocabulary data, with llama.cpp's
    /// defaults for absent keys.
    pub fn from_spec(spec: VocabSpec) -> Result<Tokenizer, TokenizerError> {
        let kind = match spec.model.as_str() {
            "llama" => TokenizerKind::Spm,
            "gpt2" => TokenizerKind::Bpe,
            "none" | "no_vocab" => TokenizerKind::None,
            other => return Err(TokenizerError::UnknownModel(phi_gguf::printable(other))),
        };
        if kind == TokenizerKind::None {
            return Ok(Tokenizer::empty(spec));
        }

        // Per-model defaults.
        let mut add_bos;
        let mut add_eos = false;
        let mut add_space_prefix;
        let clean_spaces;
        let mut ignore_merges = false;
        let mut pre = None;
        let mut merges = bpe::Merges::default();
        let mut ids = SpecialIds::default();
        match kind {
            TokenizerKind::Spm => {
                add_bos = true;
                add_space_prefix = true;
                clean_spaces = false;
                ids.bos = Some(1);
                ids.eos = Some(2);
                ids.unk = Some(0);
            }
            TokenizerKind::Bpe => {
                let merge_list = spec
                    .merges
                    .as_deref()
                    .ok_or_else(|| TokenizerError::MissingKey("tokenizer.ggml.merges".into()))?;
                merges = bpe::Merges::parse(merge_list)?;
                let cfg = pretok::PreConfig::from_name(spec.pre.as_deref()).ok_or_else(|| {
                    TokenizerError::UnknownPreTokenizer(phi_gguf::printable(
                        spec.pre.as_deref().unwrap_or(""),
                    ))
                })?;
                add_bos = cfg.add_bos;
                add_space_prefix = false;
                clean_spaces = cfg.clean_spaces;
                ignore_merges = cfg.ignore_merges;
                pre = Some(cfg.pre);
                ids.bos = Some(11);
                ids.eos = Some(11);
            }
            TokenizerKind::None => unreachable!("handled above"),
        }
        if let Some(v) = spec.add_space_prefix {
            add_space_prefix = v;
        }

        // The vocabulary.
        let n = spec.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        u32::try_from(n).map_err(|_| TokenizerError::TooLarge {
            what: "tokenizer.ggml.tokens",
        })?;
        if let Some(s) = &spec.scores {
            if s.len() != n {
                return Err(TokenizerError::LengthMismatch {
                    key: "tokenizer.ggml.scores",
                    expected: n,
                    found: s.len(),
                });
            }
        }
        if let Some(t) = &spec.token_types {
            if t.len() != n {
                return Err(TokenizerError::LengthMismatch {
                    key: "tokenizer.ggml.token_type",
                    expected: n,
                    found: t.len(),
                });
            }
        }
        let mut tokens = Vec::with_capacity(n);
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, text) in spec.tokens.iter().enumerate() {
            let id = i as u32;
            let text = if text.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                text.clone()
            };
            if let Some(&first) = token_to_id.get(&text) {
                return Err(TokenizerError::DuplicateToken {
                    text: phi_gguf::printable(&text),
                    first,
                    second: id,
                });
            }
            token_to_id.insert(text.clone(), id);
            let score = spec.scores.as_ref().map_or(0.0, |s| s[i]);
            // NaN would break the merge queue's ordering.
            let score = if score.is_nan() {
                f32::NEG_INFINITY
            } else {
                score
            };
            let attr = spec
                .token_types
                .as_ref()
                .map_or(TokenAttr::NORMAL, |t| TokenAttr::from_token_type(t[i]));
            tokens.push(TokenData { text, score, attr });
        }

        // Special ids: a key outside the vocabulary is an error (a file that
        // lies about its vocabulary); a default outside it is disabled.
        let k = spec.special_ids;
        for (key, id) in k.by_key() {
            if let Some(id) = id {
                special_id(key, id.into(), n)?;
            }
        }
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let key_or = |key: Option<u32>, default: Option<u32>| key.or(in_range(default));
        ids = SpecialIds {
            bos: key_or(k.bos, ids.bos),
            eos: key_or(k.eos, ids.eos),
            eot: key_or(k.eot, None),
            eom: key_or(k.eom, None),
            unk: key_or(k.unk, ids.unk),
            sep: key_or(k.sep, None),
            pad: key_or(k.pad, None),
            mask: key_or(k.mask, None),
            fim_pre: key_or(k.fim_pre, None),
            fim_suf: key_or(k.fim_suf, None),
            fim_mid: key_or(k.fim_mid, None),
            fim_pad: key_or(k.fim_pad, None),
            fim_rep: key_or(k.fim_rep, None),
            fim_sep: key_or(k.fim_sep, None),
        };
        if let Some(v) = spec.add_bos {
            add_bos = v;
        }
        if let Some(v) = spec.add_eos {
            add_eos = v;
        }
        if add_bos && ids.bos.is_none() {
            add_bos = false;
        }
        if add_eos && ids.eos.is_none() {
            add_eos = false;
        }

        let mut tok = Tokenizer {
            kind,
            tokens,
            token_to_id,
            special_cache: Vec::new(),
            ids,
            eog: BTreeSet::new(),
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
            ignore_merges,
            pre,
            merges,
            chat_template: spec.chat_template.clone(),
            model_name: spec.model_name.clone(),
        };
        tok.detect_special_tokens();
        tok.build_special_cache();
        tok.apply_name_quirks(&spec);
        Ok(tok)
    }

    fn empty(spec: VocabSpec) -> Tokenizer {
        Tokenizer {
            kind: TokenizerKind::None,
            tokens: Vec::new(),
            token_to_id: HashMap::new(),
            special_cache: Vec::new(),
            ids: SpecialIds::default(),
            eog: BTreeSet::new(),
            add_bos: false,
            add_eos: false,
            add_space_prefix: false,
            clean_spaces: false,
            ignore_merges: false,
            pre: None,
            merges: bpe::Merges::default(),
            chat_template: spec.chat_template,
            model_name: spec.model_name,
        }
    }

    fn force_control(&mut self, id: u32) {
        let t = &mut self.tokens[id as usize];
        t.attr = t.attr.with(TokenAttr::CONTROL, true);
    }

    /// llama.cpp's detection of EOT/EOM/FIM tokens by their text (marking
    /// them CONTROL), and of the end-of-generation set.
    fn detect_special_tokens(&mut self) {
        let find = |tok: &Tokenizer, texts: &[&str]| texts.iter().find_map(|t| tok.token_id(t));
        let slots: [(IdSlot, &[&str]); 8] = [
            (|s| &mut s.eot, EOT_TEXTS),
            (|s| &mut s.eom, EOM_TEXTS),
            (|s| &mut s.fim_pre, FIM_PRE_TEXTS),
            (|s| &mut s.fim_suf, FIM_SUF_TEXTS),
            (|s| &mut s.fim_mid, FIM_MID_TEXTS),
            (|s| &mut s.fim_pad, FIM_PAD_TEXTS),
            (|s| &mut s.fim_rep, FIM_REP_TEXTS),
            (|s| &mut s.fim_sep, FIM_SEP_TEXTS),
        ];
        for (slot, texts) in slots {
            if slot(&mut self.ids).is_none() {
                if let Some(id) = find(self, texts) {
                    *slot(&mut self.ids) = Some(id);
                    self.force_control(id);
                }
            }
        }

        let mut eog = BTreeSet::new();
        eog.extend(self.ids.fim_pad);
        eog.extend(self.ids.fim_rep);
        eog.extend(self.ids.fim_sep);
        for text in EOG_TEXTS {
            if let Some(id) = self.token_id(text) {
                eog.insert(id);
                self.force_control(id);
            }
        }
        // gpt-oss: these are always rendered.
        for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = self.token_id(text) {
                self.tokens[id as usize].attr = TokenAttr::USER_DEFINED;
            }
        }
        eog.extend(self.ids.eos);
        eog.extend(self.ids.eot);
        eog.extend(self.ids.eom);
        let in_eog = |tok: &Tokenizer, eog: &BTreeSet<u32>, t: &str| {
            tok.token_id(t).is_some_and(|id| eog.contains(&id))
        };
        // gpt-oss / solar-open: `<|end|>` is not the end there.
        let call = in_eog(self, &eog, "<|call|>") || in_eog(self, &eog, "<|calls|>");
        if call && (in_eog(self, &eog, "<|return|>") || in_eog(self, &eog, "<|flush|>")) {
            if let Some(end) = self.token_id("<|end|>") {
                if eog.remove(&end) {
                    self.tokens[end as usize].attr = TokenAttr::USER_DEFINED;
                }
            }
        }
        // gemma4 / plamo: `</s>` is a normal token there.
        if in_eog(self, &eog, "<|tool_response>") || in_eog(self, &eog, "<|plamo:eos|>") {
            if let Some(s) = self.token_id("</s>") {
                if eog.remove(&s) {
                    self.tokens[s as usize].attr = TokenAttr::NORMAL;
                }
            }
        }
        self.eog = eog;
    }

    fn build_special_cache(&mut self) {
        let special =
            TokenAttr(TokenAttr::CONTROL.0 | TokenAttr::USER_DEFINED.0 | TokenAttr::UNKNOWN.0);
        let mut cache: Vec<u32> = (0..self.tokens.len() as u32)
            .filter(|&id| self.tokens[id as usize].attr.intersects(special))
            .collect();
        // Longest first; equal lengths by id (stable sort).
        cache.sort_by(|&a, &b| {
            self.tokens[b as usize]
                .text
                .len()
                .cmp(&self.tokens[a as usize].text.len())
        });
        self.special_cache = cache;
    }

    /// Per-model attribute quirks llama.cpp applies by name.
    fn apply_name_quirks(&mut self, spec: &VocabSpec) {
        let pre = spec.pre.as_deref().unwrap_or("");
        let arch = spec.architecture.as_deref().unwrap_or("");
        let name = spec
            .model_name
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase();
        let set = |tok: &mut Tokenizer, text: &str, attr: TokenAttr, on: bool| {
            if let Some(id) = tok.token_id(text) {
                let t = &mut tok.tokens[id as usize];
                t.attr = t.attr.with(attr, on);
            }
        };
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
            .iter()
            .any(|p| pre.contains(p))
            || ["nomic-bert-moe", "jina-bert-v3"]
                .iter()
                .any(|a| arch.contains(a))
        {
            set(self, "<mask>", TokenAttr::LSTRIP, true);
        } else if name.contains("phi-3") || name.contains("phi3") {
            for i in 0..self.special_cache.len() {
                let id = self.special_cache[i] as usize;
                self.tokens[id].attr = self.tokens[id].attr.with(TokenAttr::RSTRIP, true);
            }
            set(self, "</s>", TokenAttr::RSTRIP, true);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                set(self, t, TokenAttr::RSTRIP, false);
            }
        }
    }

    // ----------------------------------------------------------------------
    // Accessors

    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }
    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }
    /// The vocabulary text of a token (with `▁` / GPT-2 byte characters).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(|t| t.text.as_str())
    }
    /// The id of the token whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }
    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.tokens.get(id as usize).map(|t| t.score)
    }
    pub fn token_attr(&self, id: u32) -> TokenAttr {
        self.tokens
            .get(id as usize)
            .map_or(TokenAttr::UNDEFINED, |t| t.attr)
    }
    /// Whether the token is CONTROL (rendered only with `special`).
    pub fn is_control(&self, id: u32) -> bool {
        self.token_attr(id).intersects(TokenAttr::CONTROL)
    }
    pub fn bos(&self) -> Option<u32> {
        self.ids.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.ids.eos
    }
    /// The end-of-turn token (key, or the first of `<|eot_id|>`,
    /// `<|im_end|>`, `<|end|>`, ... present in the vocabulary).
    pub fn eot(&self) -> Option<u32> {
        self.ids.eot
    }
    pub fn eom(&self) -> Option<u32> {
        self.ids.eom
    }
    pub fn unk(&self) -> Option<u32> {
        self.ids.unk
    }
    pub fn pad(&self) -> Option<u32> {
        self.ids.pad
    }
    /// All special ids after defaults and detection.
    pub fn special_ids(&self) -> SpecialIds {
        self.ids
    }
    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    /// Whether generation should stop at this token.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }
    /// The end-of-generation set, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }
    /// `tokenizer.chat_template`, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }
    /// `general.name`, if any.
    pub fn model_name(&self) -> Option<&str> {
        self.model_name.as_deref()
    }
    /// Number of BPE merges (0 for SPM).
    pub fn n_merges(&self) -> usize {
        self.merges.len()
    }

    // ----------------------------------------------------------------------
    // Encoding

    /// Tokenizes `text` like `llama_tokenize(vocab, text, add_special,
    /// parse_special)`.
    ///
    /// `add_special`: add BOS/EOS as the vocabulary asks
    /// (`add_bos_token`/`add_eos_token`). `parse_special`: recognize
    /// CONTROL tokens such as `<|user|>` in the text (USER_DEFINED tokens are
    /// always recognized).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if self.kind == TokenizerKind::None {
            return out;
        }
        let fragments = if text.is_empty() {
            Vec::new()
        } else {
            self.partition(text, parse_special)
        };
        match self.kind {
            TokenizerKind::Spm => {
                let mut prev_special = true;
                if add_special && self.add_bos {
                    out.extend(self.ids.bos);
                }
                for frag in fragments {
                    match frag {
                        Fragment::Text(start, len) => {
                            let mut piece = String::with_capacity(len + 3);
                            if self.add_space_prefix && prev_special {
                                piece.push(' ');
                            }
                            piece.push_str(&text[start..start + len]);
                            let escaped = piece.replace(' ', "▁");
                            self.spm_tokenize(&escaped, &mut out);
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
                if add_special && self.add_eos {
                    out.extend(self.ids.eos);
                }
            }
            TokenizerKind::Bpe => {
                if add_special && self.add_bos {
                    out.extend(self.ids.bos);
                }
                for frag in fragments {
                    match frag {
                        Fragment::Text(start, len) => {
                            self.bpe_tokenize(&text[start..start + len], &mut out)
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
                if add_special && self.add_eos {
                    out.extend(self.ids.eos);
                }
            }
            TokenizerKind::None => {}
        }
        out
    }

    /// Tokenizes text that continues a sequence: no BOS/EOS, no SentencePiece
    /// space prefix, CONTROL tokens not parsed. The pieces of the result
    /// concatenate to `text` wherever the vocabulary can spell it (structured
    /// output uses this to turn forced bytes into tokens).
    pub fn encode_continuation(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        if text.is_empty() {
            return out;
        }
        match self.kind {
            TokenizerKind::Spm => {
                for frag in self.partition(text, false) {
                    match frag {
                        Fragment::Text(start, len) => {
                            let escaped = text[start..start + len].replace(' ', "▁");
                            self.spm_tokenize(&escaped, &mut out);
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
            TokenizerKind::Bpe => out = self.encode(text, false, false),
            TokenizerKind::None => {}
        }
        out
    }

    /// Cuts special tokens out of `text` (llama.cpp's
    /// `tokenizer_st_partition`).
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let bytes = text.as_bytes();
        let mut frags = vec![Fragment::Text(0, text.len())];
        let skip_unparsed = TokenAttr(TokenAttr::CONTROL.0 | TokenAttr::UNKNOWN.0);
        for &id in &self.special_cache {
            let data = &self.tokens[id as usize];
            if !parse_special && data.attr.intersects(skip_unparsed) {
                continue;
            }
            let needle = data.text.as_bytes();
            // Never empty (empty tokens were renamed at load), but be sure.
            if needle.is_empty() || !frags.iter().any(|f| matches!(f, Fragment::Text(..))) {
                continue;
            }
            let lstrip = data.attr.intersects(TokenAttr::LSTRIP);
            let rstrip = data.attr.intersects(TokenAttr::RSTRIP);
            let mut next = Vec::with_capacity(frags.len());
            for frag in frags {
                let Fragment::Text(mut off, mut len) = frag else {
                    next.push(frag);
                    continue;
                };
                loop {
                    let hay = &bytes[off..off + len];
                    let Some(rel) = find_bytes(hay, needle) else {
                        if len > 0 {
                            next.push(Fragment::Text(off, len));
                        }
                        break;
                    };
                    let m = off + rel;
                    let mut left_len = rel;
                    if lstrip {
                        while left_len > 0 && is_c_space(bytes[off + left_len - 1]) {
                            left_len -= 1;
                        }
                    }
                    if left_len > 0 {
                        next.push(Fragment::Text(off, left_len));
                    }
                    next.push(Fragment::Token(id));
                    let end = off + len;
                    let mut r_off = m + needle.len();
                    if r_off >= end {
                        break;
                    }
                    if rstrip {
                        while r_off < end && is_c_space(bytes[r_off]) {
                            r_off += 1;
                        }
                    }
                    off = r_off;
                    len = end - r_off;
                }
            }
            frags = next;
        }
        frags
    }

    fn spm_tokenize(&self, text: &str, out: &mut Vec<u32>) {
        let lookup = |s: &str| {
            self.token_to_id
                .get(s)
                .map(|&id| (id, self.tokens[id as usize].score))
        };
        spm::tokenize(text, lookup, |b| self.byte_to_token(b), out);
    }

    /// The byte-fallback token of a byte: `<0xXX>`, else the one-byte text,
    /// else UNK.
    fn byte_to_token(&self, b: u8) -> Option<u32> {
        let hex = format!("<0x{b:02X}>");
        self.token_id(&hex)
            .or_else(|| {
                std::str::from_utf8(&[b])
                    .ok()
                    .and_then(|s| self.token_id(s))
            })
            .or(self.ids.unk)
    }

    fn bpe_tokenize(&self, text: &str, out: &mut Vec<u32>) {
        let Some(pre) = &self.pre else { return };
        for word in pre.split(text) {
            let encoded = bpe::byte_encode(word);
            let whole = self.ignore_merges && self.token_to_id.contains_key(&encoded);
            for (start, len) in bpe::merge_word(&self.merges, &encoded, whole) {
                let sym = &encoded[start..start + len];
                match self.token_id(sym) {
                    Some(id) => out.push(id),
                    None => {
                        // llama.cpp looks each byte up as a one-byte token
                        // and drops the ones that are not in the vocabulary.
                        for b in sym.bytes() {
                            if let Some(id) = std::str::from_utf8(&[b])
                                .ok()
                                .and_then(|s| self.token_id(s))
                            {
                                out.push(id);
                            }
                        }
                    }
                }
            }
        }
    }

    // ----------------------------------------------------------------------
    // Decoding

    /// The bytes of one token like `llama_token_to_piece(id, lstrip = 0,
    /// special)`: `▁` → space (SPM), byte tokens → the raw byte, GPT-2 byte
    /// characters → bytes; CONTROL/UNKNOWN tokens are empty unless
    /// `special`. Unknown ids give nothing.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Vec<u8> {
        let Some(t) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        let attr = t.attr;
        let special_attr = TokenAttr(TokenAttr::UNKNOWN.0 | TokenAttr::CONTROL.0);
        if !special && attr.intersects(special_attr) {
            return Vec::new();
        }
        if attr.intersects(TokenAttr(special_attr.0 | TokenAttr::USER_DEFINED.0)) {
            return t.text.as_bytes().to_vec();
        }
        match self.kind {
            TokenizerKind::Spm => {
                if attr.intersects(TokenAttr::NORMAL) {
                    t.text.replace('▁', " ").into_bytes()
                } else if attr.intersects(TokenAttr::BYTE) {
                    vec![byte_token_value(&t.text)]
                } else {
                    Vec::new()
                }
            }
            TokenizerKind::Bpe => {
                if attr.intersects(TokenAttr::NORMAL) {
                    decode_gpt2_text(&t.text)
                } else if attr.intersects(TokenAttr::BYTE) {
                    vec![byte_token_value(&t.text)]
                } else {
                    Vec::new()
                }
            }
            TokenizerKind::None => Vec::new(),
        }
    }

    /// The text of `ids` like `llama_detokenize(ids, remove_special,
    /// unparse_special)`, as raw bytes.
    pub fn detokenize_bytes(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Vec<u8> {
        if self.kind == TokenizerKind::None {
            return Vec::new();
        }
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special && self.add_bos {
            if let (Some(&first), Some(bos)) = (ids.first(), self.ids.bos) {
                if first == bos {
                    remove_space = false;
                    ids = &ids[1..];
                }
            }
        }
        if remove_special && self.add_eos {
            if let (Some(&last), Some(eos)) = (ids.last(), self.ids.eos) {
                if last == eos {
                    ids = &ids[..ids.len() - 1];
                }
            }
        }
        let mut text = Vec::new();
        for &id in ids {
            let piece = self.token_to_piece(id, unparse_special);
            let skip = usize::from(remove_space && piece.first() == Some(&b' '));
            text.extend_from_slice(&piece[skip..]);
            remove_space = false;
        }
        if self.clean_spaces {
            clean_up_spaces(&mut text);
        }
        text
    }

    /// [`Tokenizer::detokenize_bytes`] decoded as UTF-8 (invalid sequences
    /// become U+FFFD).
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> String {
        String::from_utf8_lossy(&self.detokenize_bytes(ids, remove_special, unparse_special))
            .into_owned()
    }
}

/// First occurrence of `needle` in `hay`.
fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// The byte of a `<0xXX>` token (like llama.cpp: the hex digits at
/// positions 3..5; anything unparsable reads as 0).
fn byte_token_value(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..).unwrap_or(&[]);
    let mut v: u32 = 0;
    for &d in digits.iter().take(2) {
        match (d as char).to_digit(16) {
            Some(x) => v = v * 16 + x,
            None => break,
        }
    }
    v as u8
}

/// GPT-2 byte characters → bytes; a character outside the mapping is
/// rendered as llama.cpp does (`[UNK_BYTE_0x..<text>]`).
fn decode_gpt2_text(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match bpe::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// llama.cpp's `clean_spaces` passes over the detokenized bytes: drop the
/// space before `?!.,`, around a lone `'`, and before `'s 'm 're 've`.
fn clean_up_spaces(t: &mut Vec<u8>) {
    // Pass 1: " ?", " !", " .", " ,".
    let n = t.len();
    let mut w = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            w -= 1;
        }
        t[w] = x;
        w += 1;
    }
    t.truncate(w);

    // Pass 2: " ' " → "'" (the byte after the quote is overwritten with
    // NUL and skipped, as in llama.cpp).
    let n = t.len();
    let mut w = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = t[i];
        if x == b'\'' && i + 1 < n && t[i - 1] == b' ' && t[i + 1] == b' ' {
            w -= 1;
            i += 1;
            t[i] = 0;
        }
        t[w] = x;
        w += 1;
        i += 1;
    }
    t.truncate(w);

    // Pass 3: " 's", " 'm", " 're", " 've".
    let n = t.len();
    let mut w = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = t[i + 1];
            if x1 == b's' || x1 == b'm' {
                w -= 1;
            } else if x1 != b't' && x1 != b'd' && i + 2 < n {
                let x2 = t[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    w -= 1;
                }
            }
        }
        t[w] = x;
        w += 1;
    }
    t.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_spaces_passes() {
        let f = |s: &str| {
            let mut v = s.as_bytes().to_vec();
            clean_up_spaces(&mut v);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(f("Hello , world !"), "Hello, world!");
        assert_eq!(f("a ' b"), "a'b");
        assert_eq!(
            f("it 's we 're I 'm they 've don 't I 'd we 'll"),
            "it's we're I'm they've don 't I 'd we 'll"
        );
        assert_eq!(f(""), "");
        assert_eq!(f(" ."), ".");
    }

    #[test]
    fn byte_token_values() {
        assert_eq!(byte_token_value("<0x0A>"), 10);
        assert_eq!(byte_token_value("<0xFF>"), 255);
        assert_eq!(byte_token_value("<0x"), 0);
        assert_eq!(byte_token_value("x"), 0);
        assert_eq!(byte_token_value("<0xZ1>"), 0);
    }

    #[test]
    fn find_bytes_works() {
        assert_eq!(find_bytes(b"abcabd", b"abd"), Some(3));
        assert_eq!(find_bytes(b"ab", b"abc"), None);
        assert_eq!(find_bytes(b"aaa", b"a"), Some(0));
        assert_eq!(find_bytes(b"xyz", b"z"), Some(2));
    }
}
