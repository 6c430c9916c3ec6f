//! Structured output: sampling constrained by a JSON Schema, a regex or a
//! Lark grammar, with [llguidance] as the grammar engine.
//!
//! Three pieces:
//! - [`ConstraintSpec`]: what the output must match (any JSON object, a JSON
//!   Schema, a regex, a Lark grammar);
//! - [`ConstraintVocab`]: the model's vocabulary as llguidance's token trie
//!   (the bytes of every token) plus its compiled-grammar factory. Building it
//!   walks the whole vocabulary, so it is made once per model
//!   ([`ConstraintVocab::for_model`] caches it) and shared, read-only, by every
//!   constraint and thread;
//! - [`Constraint`]: one sequence's parser state. Per decoding step:
//!   [`compute_mask`](Constraint::compute_mask) (the expensive part; may run on
//!   another thread while the forward pass runs), [`apply`](Constraint::apply)
//!   to the logits (disallowed tokens → −∞), sample, then
//!   [`commit`](Constraint::commit) the sampled token (cheap).
//!   [`is_finished`](Constraint::is_finished) says that nothing but an
//!   end-of-generation token can follow; end-of-generation tokens are allowed
//!   only when [`is_accepting`](Constraint::is_accepting).
//!
//! Token bytes come from phi's own tokenizer ([`Tokenizer::token_to_piece`]):
//! SentencePiece `▁` is a space, byte-fallback tokens (`<0x41>`) and GPT-2
//! byte characters are their raw bytes. CONTROL / UNKNOWN tokens and every
//! end-of-generation token are not text: they are llguidance "special" tokens
//! (`\xff` + their name), which no JSON / regex constraint admits (a Lark
//! grammar may name them, e.g. `<|end|>`). UNUSED tokens and ids past the
//! tokenizer's vocabulary are never allowed.
//!
//! JSON output is compact with a space after `:` and `,` (`{"a": 1, "b": [2, 3]}`)
//! unless the schema says otherwise with llguidance's `"x-guidance"` key (e.g.
//! `{"whitespace_flexible": true}`): free whitespace lets a weak model emit
//! blanks until it runs out of tokens.
//!
//! ```
//! use std::sync::Arc;
//! use phi::constraint::{Constraint, ConstraintSpec, ConstraintVocab};
//! use phi::Model;
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/models/phi3-tiny-q4_0.gguf");
//! let model = Arc::new(Model::load(path)?);
//! let vocab = ConstraintVocab::for_model(&model)?; // built once, then cached
//! let mut c = Constraint::new(&vocab, &ConstraintSpec::Regex("[0-9]{3}".into()))?;
//! let mut logits = vec![0.0f32; model.config().n_vocab];
//! c.apply(&mut logits)?; // only tokens spelling digits survive
//! let t = phi::sampler::argmax(&logits);
//! c.commit(t)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::{PhiError, Result};
use crate::model::Model;
use crate::tokenizer::{TokenAttr, Tokenizer};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What constrained output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstraintSpec {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// JSON valid against this JSON Schema (draft 2020-12 subset that
    /// llguidance supports; anything else is an error, not ignored).
    JsonSchema(Value),
    /// Text matching this regex (Rust `regex` syntax) as a whole.
    Regex(String),
    /// A grammar in llguidance's Lark syntax (may embed `%json {...}`).
    Lark(String),
}

impl ConstraintSpec {
    /// A JSON Schema given as text.
    pub fn json_schema(text: &str) -> Result<ConstraintSpec> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| PhiError::Constraint(format!("the JSON Schema is not valid JSON: {e}")))?;
        Ok(ConstraintSpec::JsonSchema(v))
    }

    fn grammar(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            ConstraintSpec::JsonObject => TopLevelGrammar::from_json_schema(json_defaults(
                serde_json::json!({"type": "object"}),
            )),
            ConstraintSpec::JsonSchema(schema) => {
                if !(schema.is_object() || schema.is_boolean()) {
                    return Err(PhiError::Constraint(
                        "a JSON Schema must be an object or a boolean".into(),
                    ));
                }
                TopLevelGrammar::from_json_schema(json_defaults(schema.clone()))
            }
            ConstraintSpec::Regex(rx) => TopLevelGrammar::from_regex(rx),
            ConstraintSpec::Lark(g) => {
                if g.trim().is_empty() {
                    return Err(PhiError::Constraint("the grammar is empty".into()));
                }
                TopLevelGrammar::from_lark(g.clone())
            }
        })
    }
}

/// Our JSON formatting defaults (see the module docs), unless the schema
/// sets its own `x-guidance` options.
fn json_defaults(mut schema: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            })
        });
    }
    schema
}

/// The tokenizer as llguidance sees it: the token trie, and phi's own
/// tokenizer for the bytes a grammar forces.
struct PhiTokEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl PhiTokEnv {
    /// Whether the tokens spell exactly `text`.
    fn spells(&self, ids: &[TokenId], text: &[u8]) -> bool {
        let mut rest = text;
        for &id in ids {
            match rest.strip_prefix(self.trie.token(id)) {
                Some(r) if !self.trie.token(id).is_empty() => rest = r,
                _ => return false,
            }
        }
        rest.is_empty()
    }
}

impl TokenizerEnv for PhiTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            let ids = self.tokenizer.encode_continuation(text);
            if self.spells(&ids, text.as_bytes()) {
                ids
            } else {
                // The vocabulary cannot spell it the tokenizer's way (a
                // literal `▁`, bytes without a token): spell it from the trie.
                self.trie.greedy_tokenize(text.as_bytes())
            }
        })
    }
}

/// The bytes llguidance matches for one token (see the module docs).
fn token_bytes(tok: &Tokenizer, id: u32) -> Vec<u8> {
    let attr = tok.token_attr(id);
    let text = tok.token_text(id).unwrap_or("");
    if tok.is_eog(id) || attr.intersects(TokenAttr(TokenAttr::CONTROL.0 | TokenAttr::UNKNOWN.0)) {
        if text.is_empty() {
            return Vec::new();
        }
        let mut b = Vec::with_capacity(1 + text.len());
        b.push(TokTrie::SPECIAL_TOKEN_MARKER);
        b.extend_from_slice(text.as_bytes());
        return b;
    }
    if attr.intersects(TokenAttr::UNUSED) {
        return Vec::new();
    }
    tok.token_to_piece(id, false)
}

/// A model's vocabulary compiled for llguidance, shared by all constraints
/// on that model (see the module docs).
pub struct ConstraintVocab {
    factory: ParserFactory,
    n_vocab: usize,
}

impl std::fmt::Debug for ConstraintVocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintVocab")
            .field("n_vocab", &self.n_vocab)
            .finish_non_exhaustive()
    }
}

/// Vocabularies already built, by model (the `Weak` keeps the address from
/// being reused while the entry exists; dead entries are dropped on lookup).
type VocabCache = Vec<(Weak<Model>, Arc<ConstraintVocab>)>;
static CACHE: Mutex<VocabCache> = Mutex::new(Vec::new());

impl ConstraintVocab {
    /// Builds the trie of `tokenizer`'s vocabulary for logit rows of
    /// `n_vocab` entries (ids the tokenizer does not know are never allowed).
    pub fn new(tokenizer: &Tokenizer, n_vocab: usize) -> Result<ConstraintVocab> {
        if n_vocab < tokenizer.n_vocab() || n_vocab == 0 || u32::try_from(n_vocab).is_err() {
            return Err(PhiError::InvalidArgument(format!(
                "a constraint vocabulary of {n_vocab} logits for a tokenizer of {} tokens",
                tokenizer.n_vocab()
            )));
        }
        let eog: Vec<u32> = tokenizer
            .eog_ids()
            .filter(|&t| (t as usize) < tokenizer.n_vocab())
            .collect();
        let Some(&first_eog) = eog.first() else {
            return Err(PhiError::Constraint(
                "the vocabulary has no end-of-generation token".into(),
            ));
        };
        let words: Vec<Vec<u8>> = (0..n_vocab as u32)
            .map(|id| {
                if (id as usize) < tokenizer.n_vocab() {
                    token_bytes(tokenizer, id)
                } else {
                    Vec::new()
                }
            })
            .collect();
        let info = TokRxInfo {
            vocab_size: n_vocab as u32,
            tok_eos: first_eog,
            tok_bos: tokenizer.bos(),
            tok_pad: tokenizer.pad(),
            tok_unk: tokenizer.unk(),
            tok_end_of_turn: tokenizer.eot(),
        };
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog);
        let env: TokEnv = Arc::new(PhiTokEnv {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env).map_err(llg_err)?;
        factory.quiet();
        Ok(ConstraintVocab { factory, n_vocab })
    }

    /// The vocabulary of `model`, built on first use and cached while the
    /// model lives.
    pub fn for_model(model: &Arc<Model>) -> Result<Arc<ConstraintVocab>> {
        let key = Arc::downgrade(model);
        {
            let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
            cache.retain(|(m, _)| m.strong_count() > 0);
            if let Some((_, v)) = cache.iter().find(|(m, _)| m.ptr_eq(&key)) {
                return Ok(Arc::clone(v));
            }
        }
        // Built outside the lock: it takes a while, and another model's
        // lookup need not wait. Two threads may build the same one; the
        // first stored wins.
        let built = Arc::new(ConstraintVocab::new(
            model.tokenizer(),
            model.config.n_vocab,
        )?);
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, v)) = cache.iter().find(|(m, _)| m.ptr_eq(&key)) {
            return Ok(Arc::clone(v));
        }
        cache.push((key, Arc::clone(&built)));
        Ok(built)
    }

    /// Length of the logit rows this vocabulary masks.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// The bytes a token stands for in constraints (special tokens start
    /// with `0xff`; empty = never allowed).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let trie = self.factory.tok_env().tok_trie();
        if (id as usize) < trie.vocab_size() {
            trie.token(id)
        } else {
            &[]
        }
    }
}

fn llg_err(e: impl std::fmt::Display) -> PhiError {
    PhiError::Constraint(e.to_string())
}

/// One sequence's constraint state (see the module docs). `Send`: a server
/// may keep it with its sequence and move it between threads.
pub struct Constraint {
    matcher: Matcher,
    vocab: Arc<ConstraintVocab>,
    /// The mask for the next token, once computed.
    mask: Option<SimpleVob>,
    mask_time: Duration,
    masks: usize,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("vocab", &self.vocab)
            .field("stopped", &self.matcher.is_stopped())
            .field("masks", &self.masks)
            .finish_non_exhaustive()
    }
}

impl Constraint {
    /// Compiles `spec` for `vocab` and computes the first mask, so a schema or
    /// grammar the engine cannot handle (or one no token can start) fails
    /// here, before any token is generated, with llguidance's reason.
    pub fn new(vocab: &Arc<ConstraintVocab>, spec: &ConstraintSpec) -> Result<Constraint> {
        let grammar = spec.grammar()?;
        let parser = vocab
            .factory
            .create_parser(grammar)
            .map_err(|e| PhiError::Constraint(format!("{e:#}")))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(PhiError::Constraint(e));
        }
        let mut c = Constraint {
            matcher,
            vocab: Arc::clone(vocab),
            mask: None,
            mask_time: Duration::ZERO,
            masks: 0,
        };
        c.compute_mask()?;
        Ok(c)
    }

    /// Computes the set of tokens allowed next, unless it is already known.
    /// This is the costly step (tens to hundreds of µs on a 32k vocabulary);
    /// call it early (e.g. while the forward pass runs) to hide it.
    pub fn compute_mask(&mut self) -> Result<()> {
        if self.mask.is_some() {
            return Ok(());
        }
        let t = Instant::now();
        // Once the grammar is complete, only end-of-generation tokens remain.
        let m = self.matcher.compute_mask_or_eos().map_err(|e| {
            PhiError::Constraint(format!("no token can continue the output: {e:#}"))
        })?;
        self.mask_time += t.elapsed();
        self.masks += 1;
        self.mask = Some(m);
        Ok(())
    }

    /// Sets the logits of disallowed tokens to −∞ (computing the mask first if
    /// needed). `logits` is one row of the model's vocabulary.
    pub fn apply(&mut self, logits: &mut [f32]) -> Result<()> {
        self.compute_mask()?;
        let Some(mask) = &self.mask else {
            return Ok(());
        };
        // One bit per token, 32 to a word; most words of a mask are all 0.
        let words = mask.as_slice().iter().copied().chain(std::iter::repeat(0));
        for (chunk, bits) in logits.chunks_mut(32).zip(words) {
            match bits {
                u32::MAX => {}
                0 => chunk.fill(f32::NEG_INFINITY),
                _ => {
                    for (j, l) in chunk.iter_mut().enumerate() {
                        if bits >> j & 1 == 0 {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the current mask allows `token` (computing it if needed).
    pub fn allows(&mut self, token: u32) -> Result<bool> {
        self.compute_mask()?;
        Ok(self
            .mask
            .as_ref()
            .is_some_and(|m| (token as usize) < m.len() && m.is_allowed(token)))
    }

    /// Advances the constraint by the sampled token. A token the mask did not
    /// allow is an error (the constraint is unchanged).
    pub fn commit(&mut self, token: u32) -> Result<()> {
        if !self.allows(token)? {
            return Err(PhiError::Constraint(format!(
                "token {token} ({:?}) is not allowed by the constraint here",
                String::from_utf8_lossy(self.vocab.token_bytes(token))
            )));
        }
        self.mask = None;
        if self.matcher.is_stopped() {
            // Complete: the mask allowed only an end-of-generation token.
            return Ok(());
        }
        self.matcher
            .consume_token(token)
            .map_err(|e| PhiError::Constraint(format!("{e:#}")))
    }

    /// Whether the output so far is a complete match (an end-of-generation
    /// token is allowed now).
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_stopped() && !self.matcher.is_error()
            || self.matcher.is_accepting().unwrap_or(false)
    }

    /// Whether the output is complete and nothing but an end-of-generation
    /// token can follow.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped() && !self.matcher.is_error()
    }

    /// Time spent computing masks, and how many were computed.
    pub fn mask_stats(&self) -> (Duration, usize) {
        (self.mask_time, self.masks)
    }

    /// The shared vocabulary.
    pub fn vocab(&self) -> &Arc<ConstraintVocab> {
        &self.vocab
    }
}

/// A constraint shared between a sequence and the [`MaskThread`] that
/// computes its next mask (neither holds the lock while the other works).
pub(crate) type SharedConstraint = Arc<Mutex<Constraint>>;

/// `PHI_MASK_OVERLAP=0|1`: forces masks to be computed in line (0) or on a
/// thread of their own during the forward pass (1), for A/B measurements;
/// None when unset (or set to anything else).
pub(crate) fn overlap_from_env() -> Option<bool> {
    match std::env::var("PHI_MASK_OVERLAP").as_deref() {
        Ok("0") => Some(false),
        Ok("1") => Some(true),
        _ => None,
    }
}

/// Locks a shared constraint. A poisoned lock still holds a consistent
/// state: llguidance catches its own panics and turns them into errors.
pub(crate) fn lock(c: &SharedConstraint) -> std::sync::MutexGuard<'_, Constraint> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Computes the next masks of several constraints on a thread of its own
/// while the caller runs something else (a batch's forward pass):
/// [`start`](Self::start) hands it the constraints, [`wait`](Self::wait)
/// takes them back once their masks are computed. The thread is spawned on
/// first use and lives as long as this value; the job list travels back and
/// forth by value, so steady state allocates nothing.
pub(crate) struct MaskThread {
    /// Off: [`start`](Self::start) does nothing (masks are computed in line).
    enabled: bool,
    /// Time spent on masks after the forward pass: waiting for this thread,
    /// plus what the caller reports with [`add_critical`](Self::add_critical).
    critical: Duration,
    go: Option<SyncSender<Vec<SharedConstraint>>>,
    done: Option<Receiver<Vec<SharedConstraint>>>,
    handle: Option<JoinHandle<()>>,
    /// The job list, when it is not on the thread.
    jobs: Option<Vec<SharedConstraint>>,
    in_flight: bool,
    /// Whether spawning was tried (it is tried once).
    spawned: bool,
}

impl MaskThread {
    /// No thread yet; `enabled` says whether [`start`](Self::start) uses
    /// one, unless `PHI_MASK_OVERLAP` overrides it ([`overlap_from_env`]).
    pub(crate) fn new(enabled: bool) -> MaskThread {
        MaskThread {
            enabled: overlap_from_env().unwrap_or(enabled),
            critical: Duration::ZERO,
            go: None,
            done: None,
            handle: None,
            jobs: Some(Vec::new()),
            in_flight: false,
            spawned: false,
        }
    }

    /// Starts computing the masks of `constraints` (those whose mask is
    /// already known cost nothing). Without a thread (it could not be
    /// spawned, or it died) nothing happens and the masks are computed when
    /// they are applied, on the caller's thread: same masks, later.
    pub(crate) fn start<'a>(&mut self, constraints: impl Iterator<Item = &'a SharedConstraint>) {
        if self.in_flight {
            self.wait();
        }
        if !self.enabled {
            return;
        }
        let Some(mut jobs) = self.jobs.take() else {
            return;
        };
        jobs.clear();
        jobs.extend(constraints.cloned());
        if jobs.is_empty() {
            self.jobs = Some(jobs);
            return;
        }
        if !self.spawned {
            self.spawn();
        }
        match &self.go {
            Some(go) => match go.send(jobs) {
                Ok(()) => self.in_flight = true,
                Err(back) => {
                    // The thread is gone: compute in line from now on.
                    self.go = None;
                    self.jobs = Some(back.0);
                }
            },
            None => self.jobs = Some(jobs),
        }
    }

    /// Waits until the masks [`start`](Self::start) asked for are computed.
    pub(crate) fn wait(&mut self) {
        if !std::mem::take(&mut self.in_flight) {
            return;
        }
        let t = Instant::now();
        let back = self.done.as_ref().map(Receiver::recv);
        self.critical += t.elapsed();
        match back {
            Some(Ok(mut jobs)) => {
                jobs.clear();
                self.jobs = Some(jobs);
            }
            // The thread is gone (and the list with it): compute in line
            // from now on, with a fresh list.
            _ => {
                self.go = None;
                self.jobs = Some(Vec::new());
            }
        }
    }

    pub(crate) fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Adds mask time the caller spent on the critical path.
    pub(crate) fn add_critical(&mut self, d: Duration) {
        self.critical += d;
    }

    /// Mask time on the critical path so far (see the field).
    pub(crate) fn critical(&self) -> Duration {
        self.critical
    }

    fn spawn(&mut self) {
        self.spawned = true;
        let (go, go_rx) = sync_channel::<Vec<SharedConstraint>>(1);
        let (done_tx, done) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("phi-mask".into())
            .spawn(move || {
                // Ends when the caller's side is dropped.
                for jobs in go_rx {
                    for c in &jobs {
                        // An error stays in the constraint's matcher and is
                        // reported again where the mask is applied.
                        let _ = lock(c).compute_mask();
                    }
                    if done_tx.send(jobs).is_err() {
                        break;
                    }
                }
            });
        if let Ok(handle) = thread {
            self.go = Some(go);
            self.done = Some(done);
            self.handle = Some(handle);
        }
    }
}

impl Drop for MaskThread {
    fn drop(&mut self) {
        self.wait();
        self.go = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Arc<ConstraintVocab> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/models/phi3-tiny-q4_0.gguf"
        );
        let model = Model::load(path).unwrap();
        Arc::new(ConstraintVocab::new(model.tokenizer(), model.config.n_vocab).unwrap())
    }

    /// Constraints that just committed a token: their next mask is unknown.
    fn committed(v: &Arc<ConstraintVocab>, n: usize) -> Vec<SharedConstraint> {
        (0..n)
            .map(|_| {
                let mut c =
                    Constraint::new(v, &ConstraintSpec::Regex("[0-9]{2,8}".into())).unwrap();
                let digit = (0..v.n_vocab() as u32)
                    .find(|&t| v.token_bytes(t) == b"7")
                    .unwrap();
                c.commit(digit).unwrap();
                assert!(c.mask.is_none());
                Arc::new(Mutex::new(c))
            })
            .collect()
    }

    #[test]
    fn the_mask_thread_computes_the_masks_it_is_given() {
        let v = vocab();
        let cs = committed(&v, 3);
        let mut t = MaskThread::new(true);
        // Twice: the job list comes back and is reused.
        for _ in 0..2 {
            t.start(cs[..2].iter());
            t.wait();
            for c in &cs[..2] {
                assert!(lock(c).mask.is_some(), "not computed on the thread");
            }
            assert!(lock(&cs[2]).mask.is_none(), "not asked for");
        }
        assert_eq!(
            lock(&cs[0]).masks,
            2,
            "the first mask, then one on the thread"
        );
        // Off: nothing is computed ahead; the masks come when applied.
        let cs = committed(&v, 1);
        let mut off = MaskThread::new(false);
        off.start(cs.iter());
        off.wait();
        assert!(lock(&cs[0]).mask.is_none());
        assert!(!off.enabled());
    }
}
