//! Chat formatting: the GGUF's own template, else the architecture's known one, applied so that
//! untrusted message text can never become control tokens.
//!
//! llama.cpp renders a template to one string. To keep user text from injecting `<start_of_turn>` and
//! friends, each message's content is replaced by a private-use sentinel before rendering; the rendered
//! scaffolding is then tokenised with special-token parsing on, and the real contents with it off.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use rightmodel_core::wire::ChatMessage;

use crate::InferError;

const SENTINEL_OPEN: char = '\u{F8F0}';
const SENTINEL_CLOSE: char = '\u{F8F1}';

/// A chat template: the model's own, or a llama.cpp built-in chosen by architecture.
#[derive(Debug)]
pub struct ChatTemplate {
    template: LlamaChatTemplate,
    /// Where the template came from (`gguf` or the built-in's name), for `models` and logs.
    pub source: String,
}

/// A prompt ready for decoding.
#[derive(Debug, Clone)]
pub struct RenderedPrompt {
    /// Token ids, BOS included.
    pub tokens: Vec<LlamaToken>,
    /// The rendered text, for logs and debugging.
    pub text: String,
}

impl ChatTemplate {
    /// The model's template, falling back to the built-in one for its architecture (Gemma's
    /// `<start_of_turn>` turns for `gemma*`, ChatML otherwise) when the GGUF has none or has one
    /// llama.cpp cannot apply (it recognises templates by their text; an unknown one would fail every
    /// chat request). A built-in that cannot render a short conversation either is an error, so that
    /// a model that could never chat is refused at load rather than per request.
    pub fn for_model(model: &LlamaModel) -> Result<Self, InferError> {
        if let Ok(t) = model.chat_template(None) {
            let own = ChatTemplate { template: t, source: "gguf".into() };
            match own.probe(model) {
                Ok(()) => return Ok(own),
                Err(e) => tracing::warn!(
                    "the model's chat template cannot be applied ({e}); using the built-in `{}` template",
                    builtin_name(model)
                ),
            }
        }
        let name = builtin_name(model);
        let template = LlamaChatTemplate::new(name).map_err(|e| InferError::Engine(e.to_string()))?;
        let builtin = ChatTemplate { template, source: name.to_string() };
        builtin.probe(model).map_err(|e| {
            InferError::Engine(format!("neither the model's chat template nor the built-in `{name}` one works: {e}"))
        })?;
        Ok(builtin)
    }

    /// Applies the template once to a short system / user / assistant / user conversation, and
    /// checks that every turn but the system one (which some templates fold into the next) shows.
    fn probe(&self, model: &LlamaModel) -> Result<(), InferError> {
        let roles: Vec<String> = ["system", "user", "assistant", "user"].iter().map(|r| r.to_string()).collect();
        let rendered = self.apply(model, &roles)?;
        match (1..roles.len()).find(|i| !rendered.contains(&placeholder(*i))) {
            Some(i) => Err(InferError::Engine(format!("the chat template drops the {} turn", roles[i]))),
            None => Ok(()),
        }
    }

    /// Renders `messages` and tokenises them safely (see the module docs).
    pub fn render(&self, model: &LlamaModel, messages: &[ChatMessage]) -> Result<RenderedPrompt, InferError> {
        if messages.is_empty() {
            return Err(InferError::Invalid("messages must not be empty".into()));
        }
        let mut contents = Vec::with_capacity(messages.len());
        let mut roles = Vec::with_capacity(messages.len());
        for m in messages {
            let role = match m.role.as_str() {
                "developer" => "system",
                "tool" => "user",
                r => r,
            };
            roles.push(role.to_string());
            // Sentinel characters inside user text would confuse the split below; drop them.
            let text: String = m.text().chars().filter(|&c| !is_sentinel(c)).collect();
            contents.push(text);
        }
        let mut rendered = self.apply(model, &roles)?;
        // Templates without a system role (Gemma's) fold a system message into the user turn after it
        // and drop one that no user turn follows; such a message becomes a user turn of its own.
        let dropped: Vec<usize> = (0..roles.len()).filter(|&i| !rendered.contains(&placeholder(i))).collect();
        if !dropped.is_empty() {
            for &i in &dropped {
                roles[i] = "user".into();
            }
            rendered = self.apply(model, &roles)?;
            if (0..roles.len()).any(|i| !rendered.contains(&placeholder(i))) {
                return Err(InferError::Invalid("the chat template drops a message of this conversation".into()));
            }
        }

        let vocab = model.vocab();
        let bos_text = token_text(model, vocab.bos());
        let mut tokens = Vec::new();
        let mut text = String::new();
        let mut first = true;
        let mut rest = rendered.as_str();
        loop {
            let (scaffold, after) = match rest.find(SENTINEL_OPEN) {
                Some(p) => (&rest[..p], Some(&rest[p + SENTINEL_OPEN.len_utf8()..])),
                None => (rest, None),
            };
            if !scaffold.is_empty() || first {
                // The template may already start with the BOS text; never add a second one.
                let scaffold_has_bos = !bos_text.is_empty() && scaffold.starts_with(&bos_text);
                let add_bos = first && vocab.should_add_bos() && !scaffold_has_bos;
                tokens.extend(vocab.tokenize(scaffold.as_bytes(), add_bos, true));
                text.push_str(scaffold);
            }
            first = false;
            let Some(after) = after else { break };
            let end = after
                .find(SENTINEL_CLOSE)
                .ok_or_else(|| InferError::Engine("chat template mangled a message".into()))?;
            let idx: usize =
                after[..end].parse().map_err(|_| InferError::Engine("chat template mangled a message".into()))?;
            let content = contents.get(idx).ok_or_else(|| InferError::Engine("bad message index".into()))?;
            tokens.extend(vocab.tokenize(content.as_bytes(), false, false));
            text.push_str(content);
            rest = &after[end + SENTINEL_CLOSE.len_utf8()..];
        }
        Ok(RenderedPrompt { tokens, text })
    }

    /// The template applied to placeholder messages (`SENTINEL_OPEN i SENTINEL_CLOSE`) with `roles`.
    fn apply(&self, model: &LlamaModel, roles: &[String]) -> Result<String, InferError> {
        let placeholders = roles
            .iter()
            .enumerate()
            .map(|(i, role)| {
                LlamaChatMessage::new(role.clone(), placeholder(i)).map_err(|e| InferError::Invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        model
            .apply_chat_template(&self.template, &placeholders, true)
            .map_err(|e| InferError::Engine(format!("chat template failed: {e}")))
    }
}

/// The stand-in for message `i`'s content while the template renders.
fn placeholder(i: usize) -> String {
    format!("{SENTINEL_OPEN}{i}{SENTINEL_CLOSE}")
}

fn is_sentinel(c: char) -> bool {
    c == SENTINEL_OPEN || c == SENTINEL_CLOSE
}

/// The built-in template llama.cpp knows for the model's architecture.
fn builtin_name(model: &LlamaModel) -> &'static str {
    let arch = model.meta_val_str("general.architecture").unwrap_or_default();
    if arch.starts_with("gemma") {
        "gemma"
    } else if arch.starts_with("llama") {
        "llama3"
    } else if arch.starts_with("phi3") {
        "phi3"
    } else {
        "chatml"
    }
}

/// The vocabulary text of `token`, empty for an id the model lacks (a model without BOS says -1):
/// llama.cpp throws a C++ exception for such an id, which would abort the process.
fn token_text(model: &LlamaModel, token: LlamaToken) -> String {
    let vocab = model.vocab();
    if token.0 < 0 || token.0 >= vocab.n_tokens() {
        return String::new();
    }
    vocab.text(token).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Bytes of message text [`ChatTemplate::render`] tokenises as plain text (sentinel characters are
/// dropped there): a lower bound on the prompt's size that costs no rendering.
pub(crate) fn content_bytes(messages: &[ChatMessage]) -> usize {
    messages.iter().map(|m| m.text().chars().filter(|&c| !is_sentinel(c)).map(char::len_utf8).sum::<usize>()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_cpp_2::model::params::LlamaModelParams;
    use rightmodel_models::{home::rightmodel_home, Store};

    /// The default model (the test script pulls it first), loaded once.
    fn model() -> &'static LlamaModel {
        static M: std::sync::OnceLock<LlamaModel> = std::sync::OnceLock::new();
        M.get_or_init(|| {
            let path = Store::new(&rightmodel_home()).resolve_gguf("gemma3-270m").expect("default GGUF pulled");
            let backend = crate::llm::engine::backend().expect("backend");
            LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).expect("model loads")
        })
    }

    #[test]
    fn a_template_llama_cpp_does_not_know_fails_the_probe() {
        let unknown = LlamaChatTemplate::new("{{ a template no heuristic recognises }}").expect("template text");
        let t = ChatTemplate { template: unknown, source: "gguf".into() };
        assert!(t.probe(model()).is_err());
        // This GGUF carries no template: the built-in one for its architecture passes the probe.
        let chosen = ChatTemplate::for_model(model()).expect("a template");
        assert_eq!(chosen.source, "gemma");
        assert!(chosen.probe(model()).is_ok());
    }

    #[test]
    fn content_bytes_leave_out_the_sentinels() {
        let m = vec![ChatMessage::new("user", format!("ab{SENTINEL_OPEN}c")), ChatMessage::new("system", "é")];
        assert_eq!(content_bytes(&m), 3 + 2);
    }
}
