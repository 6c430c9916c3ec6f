//! phi: the Phi-3 / Llama inference runtime.

pub mod tokenizer;
