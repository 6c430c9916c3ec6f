//! Chat prompts: rendering a GGUF's `tokenizer.chat_template` (a Jinja
//! template, as in Hugging Face's `apply_chat_template`) with MiniJinja, or
//! Phi-3's built-in format when the file has no template.
//!
//! Templates come from files and are untrusted: rendering runs with a fuel
//! budget (bounding both instructions and allocations), a recursion limit
//! and a maximum template size, so a hostile template fails with an error
//! instead of looping or exhausting memory.

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error, ErrorKind, Value};

use super::Tokenizer;

/// MiniJinja fuel for one rendering (about that many instructions, or
/// 64 bytes of allocation per unit).
pub const FUEL: u64 = 2_000_000;
/// Nesting limit for loops, conditionals and macro calls.
pub const RECURSION_LIMIT: usize = 64;
/// Largest accepted template source, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// "system", "user", "assistant", ...
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A chat template that could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("chat template is {0} bytes, more than the {MAX_TEMPLATE_BYTES} accepted")]
    TooLarge(usize),
    #[error("chat template: {0}")]
    Render(String),
}

impl From<Error> for ChatTemplateError {
    fn from(e: Error) -> Self {
        // The message may quote the template (raise_exception): one line,
        // no control characters.
        ChatTemplateError::Render(phi_gguf::printable_up_to(&e.to_string(), 512))
    }
}

/// Phi-3's prompt format: `<|role|>\ncontent<|end|>\n` per message, then
/// `<|assistant|>\n` when a reply is to be generated.
pub fn phi3_prompt(messages: &[ChatMessage], add_generation_prompt: bool) -> String {
    let mut s = String::new();
    for m in messages {
        s.push_str("<|");
        s.push_str(&m.role);
        s.push_str("|>\n");
        s.push_str(&m.content);
        s.push_str("<|end|>\n");
    }
    if add_generation_prompt {
        s.push_str("<|assistant|>\n");
    }
    s
}

/// Renders a Jinja chat template with the variables Hugging Face templates
/// expect: `messages` (list of `{role, content}`), `add_generation_prompt`,
/// `bos_token`, `eos_token`, and the `raise_exception(msg)` function.
/// Python string methods (`.strip()`, `.startswith()`, ...) are available;
/// blocks are trimmed (`trim_blocks` and `lstrip_blocks`, as in
/// `apply_chat_template`).
pub fn render_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String, ChatTemplateError> {
    if template.len() > MAX_TEMPLATE_BYTES {
        return Err(ChatTemplateError::TooLarge(template.len()));
    }
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            Value::from_pairs([
                ("role", Value::from(m.role.as_str())),
                ("content", Value::from(m.content.as_str())),
            ])
        })
        .collect();
    let ctx = minijinja::context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    };
    Ok(env.render_str(template, ctx)?)
}

impl Tokenizer {
    /// The prompt text for `messages`: the GGUF's chat template if it has
    /// one, else Phi-3's format ([`phi3_prompt`]).
    ///
    /// Tokenize the result with `encode(text, true, true)`. When the
    /// vocabulary adds BOS itself, a BOS text the template renders at the
    /// start is removed, so that the prompt does not get two BOS tokens.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let Some(template) = self.chat_template() else {
            return Ok(phi3_prompt(messages, add_generation_prompt));
        };
        let text_of = |id: Option<u32>| id.and_then(|i| self.token_text(i)).unwrap_or("");
        let bos = text_of(self.bos());
        let eos = text_of(self.eos());
        let mut text = render_template(template, messages, add_generation_prompt, bos, eos)?;
        if self.add_bos() && !bos.is_empty() && text.starts_with(bos) {
            text.drain(..bos.len());
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello!"),
            ChatMessage::new("user", "Bye"),
        ]
    }

    #[test]
    fn phi3_builtin_format() {
        assert_eq!(
            phi3_prompt(&conv(), true),
            "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n"
        );
        assert_eq!(phi3_prompt(&conv()[1..2], false), "<|user|>\nHi<|end|>\n");
    }

    #[test]
    fn renders_hf_style_templates() {
        let t = "{{ bos_token }}{% for m in messages %}\n{% if m['role'] == 'user' %}[U]{{ m['content'].strip() }}{% else %}[{{ m.role | upper }}]{{ m.content }}{% endif %}\n{% endfor %}{% if add_generation_prompt %}[A]{% endif %}";
        let out = render_template(t, &conv(), true, "<s>", "</s>").unwrap();
        assert_eq!(out, "<s>[SYSTEM]Be brief.[U]Hi[ASSISTANT]Hello![U]Bye[A]");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}";
        let e = render_template(t, &conv(), false, "", "").unwrap_err();
        assert!(e.to_string().contains("first must be user"), "{e}");
    }

    #[test]
    fn hostile_templates_are_bounded() {
        // Unbounded work: runs out of fuel.
        let t = "{% for a in range(5000) %}{% for b in range(5000) %}{% endfor %}{% endfor %}";
        let e = render_template(t, &[], false, "", "").unwrap_err();
        assert!(e.to_string().contains("fuel"), "{e}");
        // Unbounded recursion.
        let t = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        let e = render_template(t, &[], false, "", "").unwrap_err();
        assert!(e.to_string().contains("recursion"), "{e}");
        // Memory: doubling a string.
        let t = "{% set s = namespace(v='x') %}{% for i in range(64) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v | length }}";
        let e = render_template(t, &[], false, "", "").unwrap_err();
        assert!(e.to_string().contains("fuel"), "{e}");
        // Syntax errors and oversized templates.
        assert!(render_template("{% for %}", &[], false, "", "").is_err());
        let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(matches!(
            render_template(&big, &[], false, "", ""),
            Err(ChatTemplateError::TooLarge(_))
        ));
    }
}
