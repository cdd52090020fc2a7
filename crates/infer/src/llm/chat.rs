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
    /// `<start_of_turn>` turns for `gemma*`, ChatML otherwise).
    pub fn for_model(model: &LlamaModel) -> Result<Self, InferError> {
        if let Ok(t) = model.chat_template(None) {
            return Ok(ChatTemplate { template: t, source: "gguf".into() });
        }
        let arch = model.meta_val_str("general.architecture").unwrap_or_default();
        let name = if arch.starts_with("gemma") {
            "gemma"
        } else if arch.starts_with("llama") {
            "llama3"
        } else if arch.starts_with("phi3") {
            "phi3"
        } else {
            "chatml"
        };
        let template = LlamaChatTemplate::new(name).map_err(|e| InferError::Engine(e.to_string()))?;
        Ok(ChatTemplate { template, source: name.to_string() })
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
            let text: String = m.text().chars().filter(|&c| c != SENTINEL_OPEN && c != SENTINEL_CLOSE).collect();
            contents.push(text);
        }
        let mut rendered = self.apply(model, &roles)?;
        // Templates without a system role (Gemma's) fold a system message into the user turn after it
        // and drop one that no user turn follows; such a message becomes a user turn of its own.
        let dropped: Vec<usize> =
            (0..roles.len()).filter(|&i| !rendered.contains(&format!("{SENTINEL_OPEN}{i}{SENTINEL_CLOSE}"))).collect();
        if !dropped.is_empty() {
            for &i in &dropped {
                roles[i] = "user".into();
            }
            rendered = self.apply(model, &roles)?;
            if (0..roles.len()).any(|i| !rendered.contains(&format!("{SENTINEL_OPEN}{i}{SENTINEL_CLOSE}"))) {
                return Err(InferError::Invalid("the chat template drops a message of this conversation".into()));
            }
        }

        let vocab = model.vocab();
        let bos_text = vocab.text(vocab.bos()).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
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
                LlamaChatMessage::new(role.clone(), format!("{SENTINEL_OPEN}{i}{SENTINEL_CLOSE}"))
                    .map_err(|e| InferError::Invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        model
            .apply_chat_template(&self.template, &placeholders, true)
            .map_err(|e| InferError::Engine(format!("chat template failed: {e}")))
    }
}
