//! `rightmodel embed`.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use rightmodel_core::Embedder;
use rightmodel_infer::MiniLm;
use rightmodel_models::{home::rightmodel_home, Store};

/// `embed` arguments.
#[derive(Args)]
#[command(
    after_help = concat!(
        "Examples:\n",
        "  rightmodel embed \"A man is eating food.\" \"A man is riding a horse.\"\n",
        "  rightmodel embed --input sentences.txt > vectors.jsonl\n",
        "  # JSON lines with a \"text\" field work too\n",
        "  cat texts.jsonl | rightmodel embed --input -",
    )
)]
pub struct EmbedArgs {
    /// A pulled encoder name or a directory with config.json, tokenizer.json and model.safetensors.
    #[arg(long, short, default_value = rightmodel_models::DEFAULT_EMBED_MODEL)]
    model: String,
    /// File with one text per line (or JSON lines with a `text` field); `-` for stdin.
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// Texts given on the command line.
    texts: Vec<String>,
}

/// Reads texts from a file or stdin: plain lines, or JSON lines with a `text` field, decided once for
/// the whole input as `classify` decides it (a byte-order mark is dropped, a plain-text line may start
/// with `{`, and errors name the file and line).
pub fn read_texts(input: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut bytes = Vec::new();
    let source = if input.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).context("cannot read standard input")?;
        "<stdin>".to_string()
    } else {
        bytes = super::read_input_file("--input", input)?;
        input.display().to_string()
    };
    let inputs = rightmodel_tasks::data::read_inputs(&source, &bytes)?;
    Ok(inputs.into_iter().map(|t| t.text).collect())
}

/// Runs `embed`: one `{"index", "text", "embedding"}` JSON line per text, in order.
pub fn run(a: EmbedArgs) -> anyhow::Result<()> {
    rightmodel_infer::threads::configure_candle_threads(rightmodel_infer::threads::available_cores());
    let mut texts = a.texts;
    if let Some(p) = &a.input {
        texts.extend(read_texts(p)?);
    }
    if texts.is_empty() {
        anyhow::bail!("no texts: pass them as arguments or with --input FILE|-");
    }
    let store = Store::new(&rightmodel_home()).with_auto_pull(true).with_progress(true);
    let dir = super::resolve_encoder(&store, &a.model)?;
    let model = MiniLm::load(&dir)?;
    let mut out = std::io::stdout().lock();
    for (ci, chunk) in texts.chunks(256).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let vecs = model.embed(&refs)?;
        for (j, (t, v)) in chunk.iter().zip(vecs).enumerate() {
            let line = serde_json::json!({"index": ci * 256 + j, "text": t, "embedding": v});
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}
