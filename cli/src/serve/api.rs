//! OpenAI's request shapes and their validation: everything a client sends
//! is checked here, before it reaches the engine, and every refusal is an
//! [`ApiError`] in OpenAI's error format.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use phi::batch::SeqParams;
use phi::tokenizer::ChatMessage;
use phi::{ConstraintSpec, SamplerParams};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most stop strings per request, and most bytes in one.
pub const MAX_STOPS: usize = 16;
pub const MAX_STOP_LEN: usize = 256;
/// Most `top_logprobs` (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// `{"error": {"message", "type", "param", "code"}}` with an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn bad(message: impl Into<String>, param: Option<&'static str>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param,
            code: None,
        }
    }
    pub fn new(status: StatusCode, message: impl Into<String>, code: &'static str) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: Some(code),
        }
    }
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// A string or a list of strings (`stop`).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Message content: a string or an array of parts.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Option<Content>,
}

#[derive(Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields shared by both completion endpoints.
#[derive(Deserialize, Default)]
pub struct Sampling {
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<OneOrMany>,
    #[serde(default)]
    pub ignore_eos: bool,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u32>,
    /// OpenAI's structured output: `{"type": "text" | "json_object" |
    /// "json_schema", ...}`.
    pub response_format: Option<Value>,
    /// llama-server's extensions: a JSON Schema, or a grammar (llguidance Lark).
    pub json_schema: Option<Value>,
    pub grammar: Option<String>,
}

#[derive(Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

#[derive(Deserialize)]
pub struct CompletionRequest {
    pub prompt: OneOrMany,
    pub logprobs: Option<u32>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

/// Fields this server refuses (with 400) when present and not their neutral value.
const REFUSED: [&str; 9] = [
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logit_bias",
    "suffix",
    "echo",
    "best_of",
    "audio",
];

/// Parses a JSON body into `T`, refusing malformed JSON, wrong types and
/// the parameters this server does not implement.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the request body is not valid JSON: {e}"), None))?;
    let Some(obj) = value.as_object() else {
        return Err(ApiError::bad(
            "the request body must be a JSON object",
            None,
        ));
    };
    for name in REFUSED {
        match obj.get(name) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::Object(o)) if o.is_empty() => {}
            Some(Value::Number(n)) if name == "best_of" && n.as_u64() == Some(1) => {}
            Some(_) => {
                return Err(ApiError::bad(
                    format!("`{name}` is not supported by this server"),
                    Some(name),
                ))
            }
        }
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad(format!("invalid request: {e}"), None))
}

/// The validated settings of one completion.
pub struct Settings {
    pub seq: SeqParams,
    /// `None`: until the context is full.
    pub max_tokens: Option<usize>,
    pub stops: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// Structured output, and the request field it came from.
    pub constraint: Option<(ConstraintSpec, &'static str)>,
}

fn range(
    v: Option<f32>,
    default: f32,
    lo: f32,
    hi: f32,
    name: &'static str,
) -> Result<f32, ApiError> {
    let x = v.unwrap_or(default);
    if !x.is_finite() || x < lo || x > hi {
        return Err(ApiError::bad(
            format!("`{name}` must be between {lo} and {hi} (got {x})"),
            Some(name),
        ));
    }
    Ok(x)
}

impl Sampling {
    /// Checks every field; `top_logprobs` comes from the endpoint's own field.
    pub fn settings(&self, top_logprobs: Option<usize>) -> Result<Settings, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad("only `n: 1` is supported", Some("n")));
        }
        if top_logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
            return Err(ApiError::bad(
                format!("at most {MAX_TOP_LOGPROBS} top log-probabilities"),
                Some("top_logprobs"),
            ));
        }
        let constraint = self.constraint()?;
        let temperature = range(self.temperature, 0.8, 0.0, 2.0, "temperature")?;
        let top_p = range(self.top_p, 0.95, 0.0, 1.0, "top_p")?;
        let min_p = range(self.min_p, 0.05, 0.0, 1.0, "min_p")?;
        let repeat_penalty = range(self.repeat_penalty, 1.0, 0.0, 10.0, "repeat_penalty")?;
        if repeat_penalty == 0.0 {
            return Err(ApiError::bad(
                "`repeat_penalty` must be above 0",
                Some("repeat_penalty"),
            ));
        }
        let presence_penalty = range(self.presence_penalty, 0.0, -2.0, 2.0, "presence_penalty")?;
        let frequency_penalty = range(self.frequency_penalty, 0.0, -2.0, 2.0, "frequency_penalty")?;
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        if max_tokens == Some(0) {
            return Err(ApiError::bad(
                "`max_tokens` must be at least 1",
                Some("max_tokens"),
            ));
        }
        let stops = match &self.stop {
            None => Vec::new(),
            Some(OneOrMany::One(s)) => vec![s.clone()],
            Some(OneOrMany::Many(v)) => v.clone(),
        };
        if stops.len() > MAX_STOPS || stops.iter().any(|s| s.len() > MAX_STOP_LEN) {
            return Err(ApiError::bad(
                format!("at most {MAX_STOPS} stop strings of at most {MAX_STOP_LEN} bytes"),
                Some("stop"),
            ));
        }
        let stops: Vec<String> = stops.into_iter().filter(|s| !s.is_empty()).collect();
        if self.stream_options.is_some() && !self.stream {
            return Err(ApiError::bad(
                "`stream_options` is only allowed with `stream: true`",
                Some("stream_options"),
            ));
        }
        let seed = match self.seed {
            Some(s) => s as u64,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        };
        let sampler = SamplerParams {
            temperature,
            top_k: self.top_k.unwrap_or(40) as usize,
            top_p,
            min_p,
            repeat_penalty,
            repeat_last_n: 64,
            seed,
        };
        Ok(Settings {
            seq: SeqParams {
                sampler,
                max_tokens: 1,
                ignore_eos: self.ignore_eos,
                presence_penalty,
                frequency_penalty,
                top_logprobs,
            },
            max_tokens: max_tokens.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            stops,
            stream: self.stream,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            constraint,
        })
    }
}

impl Sampling {
    /// The structured-output constraint the request asks for (at most one of
    /// `response_format`, `json_schema`, `grammar`), with the name of the
    /// field it came from (for error messages).
    pub fn constraint(&self) -> Result<Option<(ConstraintSpec, &'static str)>, ApiError> {
        let mut found = Vec::new();
        if let Some(rf) = self.response_format.as_ref().filter(|v| !v.is_null()) {
            let bad = |m: &str| ApiError::bad(m, Some("response_format"));
            let schema_of = |v: Option<&Value>| match v {
                None | Some(Value::Null) => None,
                Some(s) => Some(ConstraintSpec::JsonSchema(s.clone())),
            };
            let spec = match rf.get("type").and_then(Value::as_str) {
                Some("text") => None,
                // llama-server also takes `{"type": "json_object", "schema": {...}}`.
                Some("json_object") => {
                    Some(schema_of(rf.get("schema")).unwrap_or(ConstraintSpec::JsonObject))
                }
                Some("json_schema") => {
                    let Some(js) = rf.get("json_schema").filter(|v| v.is_object()) else {
                        return Err(bad(
                            "`response_format` of type `json_schema` needs a `json_schema` object",
                        ));
                    };
                    // Without `schema`, any JSON value (as OpenAI treats it).
                    Some(
                        schema_of(js.get("schema"))
                            .unwrap_or(ConstraintSpec::JsonSchema(Value::Bool(true))),
                    )
                }
                _ => {
                    return Err(bad(
                        "`response_format.type` must be `text`, `json_object` or `json_schema`",
                    ))
                }
            };
            if let Some(spec) = spec {
                found.push((spec, "response_format"));
            }
        }
        if let Some(js) = self.json_schema.as_ref().filter(|v| !v.is_null()) {
            found.push((ConstraintSpec::JsonSchema(js.clone()), "json_schema"));
        }
        if let Some(g) = &self.grammar {
            found.push((ConstraintSpec::Lark(g.clone()), "grammar"));
        }
        if found.len() > 1 {
            return Err(ApiError::bad(
                "give at most one of `response_format` (JSON), `json_schema` and `grammar`",
                Some(found[1].1),
            ));
        }
        Ok(found.pop())
    }
}

/// The conversation as the runtime's chat messages.
pub fn chat_messages(messages: &[Message]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad("`messages` is empty", Some("messages")));
    }
    messages
        .iter()
        .map(|m| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => {
                    return Err(ApiError::bad(
                        format!(
                            "message role `{other}` is not supported (system, user, assistant)"
                        ),
                        Some("messages"),
                    ))
                }
            };
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut s = String::new();
                    for p in parts {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => s.push_str(t),
                            _ => {
                                return Err(ApiError::bad(
                                    format!(
                                        "content part of type `{}` is not supported (text only)",
                                        p.kind
                                    ),
                                    Some("messages"),
                                ))
                            }
                        }
                    }
                    s
                }
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

/// Generated text with stop strings applied: holds back what could be the
/// start of a stop string, cuts at the first one found.
#[derive(Default)]
pub struct StopScan {
    stops: Vec<String>,
    held: String,
    pub stopped: bool,
}

impl StopScan {
    pub fn new(stops: Vec<String>) -> StopScan {
        StopScan {
            stops,
            ..Default::default()
        }
    }

    /// Adds generated text; returns what can be sent now.
    pub fn push(&mut self, text: &str) -> String {
        if self.stopped {
            return String::new();
        }
        self.held.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first {
            self.stopped = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return out;
        }
        // Keep the longest tail that is a proper prefix of a stop string.
        let keep = self
            .stops
            .iter()
            .map(|s| {
                (1..s.len().min(self.held.len() + 1))
                    .rev()
                    .find(|&k| {
                        s.is_char_boundary(k)
                            && self.held.is_char_boundary(self.held.len() - k)
                            && self.held.ends_with(&s[..k])
                    })
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        out
    }

    /// The held-back text at the end of generation.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_across_pieces() {
        let mut s = StopScan::new(vec!["END".into(), "xyz".into()]);
        assert_eq!(s.push("hello E"), "hello ");
        assert_eq!(s.push("N"), "");
        assert_eq!(s.push("Dless"), "");
        assert!(s.stopped);
        let mut s = StopScan::new(vec!["END".into()]);
        assert_eq!(s.push("EN"), "");
        assert_eq!(s.push("x"), "ENx");
        assert_eq!(s.push("E"), "");
        assert_eq!(s.finish(), "E");
        let mut s = StopScan::new(vec!["é!".into()]);
        assert_eq!(s.push("café"), "caf");
        assert_eq!(s.push("?"), "é?");
    }

    #[test]
    fn validation_refuses_bad_fields() {
        let bad = [
            r#"{"messages": []}"#,
            r#"{"messages": [{"role": "user", "content": "hi"}], "n": 2}"#,
            r#"{"messages": [{"role": "user", "content": "hi"}], "temperature": -1}"#,
            r#"{"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 21, "logprobs": true}"#,
            r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}"#,
            r#"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}"#,
            r#"{"messages": [{"role": "tool", "content": "hi"}]}"#,
            r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#,
        ];
        for b in bad {
            let r = parse::<ChatRequest>(b.as_bytes()).and_then(|r| {
                let top = r.top_logprobs.map(|n| n as usize);
                r.sampling.settings(top)?;
                chat_messages(&r.messages)
            });
            assert_eq!(
                r.err().map(|e| e.status),
                Some(StatusCode::BAD_REQUEST),
                "{b}"
            );
        }
        for b in [
            "{",
            "[]",
            r#"{"messages": "hi"}"#,
            r#"{"messages": [], "max_tokens": "ten"}"#,
        ] {
            assert!(parse::<ChatRequest>(b.as_bytes()).is_err(), "{b}");
        }
        let ok: ChatRequest = parse(
            br#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}], "stop": "x", "seed": -3}"#,
        )
        .unwrap();
        let s = ok.sampling.settings(None).unwrap();
        assert_eq!(s.stops, vec!["x".to_string()]);
        assert_eq!(chat_messages(&ok.messages).unwrap()[0].content, "a");
    }

    #[test]
    fn structured_output_fields() {
        let spec = |b: &str| {
            parse::<ChatRequest>(b.as_bytes())
                .and_then(|r| r.sampling.constraint())
                .map(|c| c.map(|(s, p)| (s, p.to_string())))
        };
        let m = r#""messages": [{"role": "user", "content": "hi"}]"#;
        assert_eq!(spec(&format!("{{{m}}}")).unwrap(), None);
        assert_eq!(
            spec(&format!(
                r#"{{{m}, "response_format": {{"type": "text"}}}}"#
            ))
            .unwrap(),
            None
        );
        assert_eq!(
            spec(&format!(
                r#"{{{m}, "response_format": {{"type": "json_object"}}}}"#
            ))
            .unwrap(),
            Some((ConstraintSpec::JsonObject, "response_format".into()))
        );
        let s = spec(&format!(
            r#"{{{m}, "response_format": {{"type": "json_schema", "json_schema": {{"name": "x", "strict": true, "schema": {{"type": "integer"}}}}}}}}"#
        ))
        .unwrap();
        assert_eq!(
            s,
            Some((
                ConstraintSpec::JsonSchema(json!({"type": "integer"})),
                "response_format".into()
            ))
        );
        assert_eq!(
            spec(&format!(r#"{{{m}, "grammar": "start: \"a\""}}"#)).unwrap(),
            Some((
                ConstraintSpec::Lark("start: \"a\"".into()),
                "grammar".into()
            ))
        );
        for bad in [
            r#""response_format": {"type": "yaml"}"#,
            r#""response_format": {"type": "json_schema"}"#,
            r#""response_format": {"type": "json_object"}, "grammar": "start: \"a\"""#,
            r#""json_schema": {}, "grammar": "start: \"a\"""#,
        ] {
            let e = spec(&format!("{{{m}, {bad}}}")).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.param.is_some(), "{bad}");
        }
    }
}
