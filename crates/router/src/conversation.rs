//! The unit the router scores: a whole conversation, not just its last line.

use rightmodel_core::wire::ChatMessage;
use serde::{Deserialize, Serialize};

/// One message of a conversation, reduced to what the router reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The message text (tool-call arguments included when the caller has them as text).
    #[serde(default)]
    pub content: String,
}

/// A conversation as the scorer sees it: messages in order, the last user turn being the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Messages in order.
    pub messages: Vec<Message>,
}

impl Conversation {
    /// A single-turn conversation: one user message.
    pub fn from_prompt(prompt: &str) -> Self {
        Conversation { messages: vec![Message { role: "user".into(), content: prompt.to_string() }] }
    }

    /// The conversation of an OpenAI chat request (non-text parts are ignored).
    pub fn from_chat(messages: &[ChatMessage]) -> Self {
        Conversation {
            messages: messages.iter().map(|m| Message { role: m.role.clone(), content: m.text() }).collect(),
        }
    }

    /// Index of the last user message (the request being routed); the last message of any role when
    /// there is no user message.
    fn last_user_index(&self) -> Option<usize> {
        self.messages.iter().rposition(|m| m.role == "user").or_else(|| self.messages.len().checked_sub(1))
    }

    /// Text of the last user turn ("" for an empty conversation).
    pub fn last_user(&self) -> &str {
        self.last_user_index().map(|i| self.messages[i].content.as_str()).unwrap_or("")
    }

    /// Every message except the last user turn, in order: the context the request comes with.
    pub fn history(&self) -> impl Iterator<Item = &Message> {
        let last = self.last_user_index();
        self.messages.iter().enumerate().filter(move |(i, _)| Some(*i) != last).map(|(_, m)| m)
    }

    /// Total characters of the history.
    pub fn history_chars(&self) -> usize {
        self.history().map(|m| m.content.chars().count()).sum()
    }

    /// The whole conversation as one text (`role: content` lines), for logs and length estimates.
    pub fn joined(&self) -> String {
        let mut s = String::new();
        for m in &self.messages {
            s.push_str(&m.role);
            s.push_str(": ");
            s.push_str(&m.content);
            s.push('\n');
        }
        s
    }

    /// Parses a training/scoring cell: a JSON array of OpenAI chat messages becomes a conversation,
    /// anything else is a single user prompt.
    pub fn parse_cell(cell: &str) -> Self {
        let t = cell.trim_start();
        if t.starts_with('[') {
            if let Ok(messages) = serde_json::from_str::<Vec<ChatMessage>>(t) {
                if !messages.is_empty() {
                    return Conversation::from_chat(&messages);
                }
            }
        }
        Conversation::from_prompt(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_user_and_history() {
        let c = Conversation {
            messages: vec![
                Message { role: "system".into(), content: "be brief".into() },
                Message { role: "user".into(), content: "hi".into() },
                Message { role: "assistant".into(), content: "hello".into() },
                Message { role: "user".into(), content: "what is 2+2?".into() },
            ],
        };
        assert_eq!(c.last_user(), "what is 2+2?");
        assert_eq!(c.history().count(), 3);
        assert_eq!(c.history_chars(), "be brief".len() + 2 + 5);
    }

    #[test]
    fn parse_cell_accepts_messages_or_text() {
        let c = Conversation::parse_cell(r#"[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]"#);
        assert_eq!(c.messages.len(), 2);
        assert_eq!(c.last_user(), "a");
        let p = Conversation::parse_cell("[not json");
        assert_eq!(p.last_user(), "[not json");
        assert_eq!(Conversation::default().last_user(), "");
    }
}
