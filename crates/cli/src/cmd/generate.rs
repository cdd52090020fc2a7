//! `rightmodel generate` and `rightmodel chat`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use rightmodel_core::wire::ChatMessage;
use rightmodel_infer::llm::{GenEvent, GenRequest, Prompt, SamplingParams};
use rightmodel_infer::{Engine, EngineConfig};
use rightmodel_models::{home::rightmodel_home, Store};

/// Context window of `generate` and `chat` without `--ctx` (capped at the model's own).
const DEFAULT_CTX: u32 = 4096;

/// Model and sampling flags shared by `generate` and `chat`.
#[derive(Args, Clone)]
pub struct GenFlags {
    /// A pulled model name or a path to a GGUF file.
    #[arg(long, short, default_value = rightmodel_models::DEFAULT_CHAT_MODEL)]
    pub model: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: i32,
    /// Drop tokens below this fraction of the top probability (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Stop sequence (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// CPU threads (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=256))]
    pub threads: Option<i32>,
    /// Context window in tokens, prompt and answer together (default: 4096, or less when the model
    /// was trained with less; at most what it was trained with; larger windows take more memory).
    #[arg(long, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub ctx: Option<u32>,
}

impl GenFlags {
    fn params(&self) -> SamplingParams {
        SamplingParams {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            stop: self.stop.clone(),
            ..SamplingParams::default()
        }
    }

    /// The context window to run the model at `path` with: `--ctx`, refused above what the model was
    /// trained with, else [`DEFAULT_CTX`] capped at that.
    fn context_window(&self, path: &std::path::Path) -> anyhow::Result<u32> {
        let trained = rightmodel_models::gguf::GgufInfo::read(path).ok().and_then(|info| info.context_length);
        let trained = trained.map(|t| u32::try_from(t).unwrap_or(u32::MAX).max(64));
        match (self.ctx, trained) {
            (Some(ctx), Some(t)) if ctx > t => {
                anyhow::bail!("--ctx {ctx}: the model was trained with a context of {t} tokens; use at most that")
            }
            (Some(ctx), _) => Ok(ctx),
            (None, t) => Ok(t.map_or(DEFAULT_CTX, |t| t.min(DEFAULT_CTX))),
        }
    }

    /// The engine, and the context window it runs with.
    fn engine(&self) -> anyhow::Result<(Engine, u32)> {
        let store = Store::new(&rightmodel_home()).with_auto_pull(true).with_progress(true);
        let path: PathBuf = super::resolve_gguf(&store, &self.model)?;
        let ctx = self.context_window(&path)?;
        let mut cfg = EngineConfig::new(path);
        cfg.slots = 1;
        cfg.ctx_per_slot = ctx;
        if let Some(t) = self.threads {
            cfg.threads = t.max(1);
        }
        Ok((Engine::start(cfg)?, ctx))
    }
}

/// `generate` arguments.
#[derive(Args)]
#[command(
    after_help = concat!(
        "Examples:\n",
        "  rightmodel generate \"The capital of France is\"\n",
        "  rightmodel generate --max-tokens 64 --temperature 0.8 --seed 7 \\\n",
        "      \"Once upon a time\"\n",
        "  echo \"def fibonacci(n):\" | rightmodel generate -",
    )
)]
pub struct GenerateArgs {
    #[command(flatten)]
    flags: GenFlags,
    /// The prompt (`-` reads it from stdin). Used as raw text: the base model continues it.
    prompt: String,
}

fn stream_to_stdout(engine: &Engine, req: GenRequest, ctx: u32) -> anyhow::Result<String> {
    let max_tokens = req.params.max_tokens;
    let mut rx = engine.submit(req)?;
    let mut out = std::io::stdout().lock();
    let mut all = String::new();
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            GenEvent::Token(t) => {
                out.write_all(t.text.as_bytes())?;
                out.flush()?;
                all.push_str(&t.text);
            }
            GenEvent::Done(f) => {
                out.write_all(f.tail.as_bytes())?;
                out.flush()?;
                all.push_str(&f.tail);
                tracing::info!(prompt_tokens = f.prompt_tokens, completion_tokens = f.completion_tokens, "done");
                // Stopped by length before `max_tokens`: the context window is full.
                if f.reason == rightmodel_infer::llm::FinishReason::Length && f.completion_tokens < max_tokens {
                    eprintln!(
                        "\n[stopped: the context window of {ctx} tokens is full after {} prompt and {} answer tokens; see --ctx]",
                        f.prompt_tokens, f.completion_tokens
                    );
                }
                return Ok(all);
            }
            GenEvent::Error(e) => return Err(e.into()),
            GenEvent::Started { .. } => {}
        }
    }
    anyhow::bail!("the engine stopped")
}

/// Runs `generate`: only the completion goes to stdout.
pub fn generate(a: GenerateArgs) -> anyhow::Result<()> {
    let prompt = if a.prompt == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("cannot read the prompt from stdin")?;
        s.trim_end_matches('\n').to_string()
    } else {
        a.prompt
    };
    if prompt.is_empty() {
        anyhow::bail!("the prompt is empty");
    }
    let (engine, ctx) = a.flags.engine()?;
    stream_to_stdout(&engine, GenRequest { prompt: Prompt::Text(prompt), params: a.flags.params() }, ctx)?;
    println!();
    Ok(())
}

/// `chat` arguments.
#[derive(Args)]
#[command(
    after_help = "Example:\n  rightmodel chat --system \"You answer in one sentence.\"\n\nType a message and press Enter; /reset clears the conversation, /exit (or Ctrl-D) quits.\nNote: the default model is a small base model; it continues text more than it follows instructions."
)]
pub struct ChatArgs {
    #[command(flatten)]
    flags: GenFlags,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
}

/// Runs `chat`: an interactive terminal conversation formatted with the model's chat template.
pub fn chat(a: ChatArgs) -> anyhow::Result<()> {
    let (engine, ctx) = a.flags.engine()?;
    let mut history: Vec<ChatMessage> = a.system.iter().map(|s| ChatMessage::new("system", s.clone())).collect();
    let stdin = std::io::stdin();
    eprintln!("chatting with {} (template: {}); /reset clears, /exit quits", a.flags.model, engine.template_source());
    loop {
        eprint!("> ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                history.retain(|m| m.role == "system");
                continue;
            }
            // A lone `/word` is a mistyped command, not a message (a path or a sentence still goes).
            cmd if cmd.len() > 1 && cmd.starts_with('/') && cmd[1..].chars().all(|c| c.is_ascii_alphabetic()) => {
                eprintln!("unknown command `{cmd}`: /reset clears the conversation, /exit quits");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::new("user", line));
        let answer = stream_to_stdout(
            &engine,
            GenRequest { prompt: Prompt::Chat(history.clone()), params: a.flags.params() },
            ctx,
        )?;
        println!();
        history.push(ChatMessage::new("assistant", answer.trim()));
    }
}
