//! `rightmodel bench`: local inference speed, as medians of repeated runs, optionally side by side
//! with llama.cpp's own `llama-bench` on the same model and threads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use rightmodel_core::wire::ChatMessage;
use rightmodel_core::Embedder;
use rightmodel_infer::llm::{GenRequest, Prompt, SamplingParams};
use rightmodel_infer::{Engine, EngineConfig, MiniLm};
use rightmodel_models::{home::rightmodel_home, Store};
use serde_json::json;

/// `bench` arguments.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
#[command(
    after_help = concat!(
        "Examples:\n",
        "  rightmodel bench\n",
        "  rightmodel bench --json | tail -1 | jq .tg128_tok_s\n",
        "  # adds llama.cpp's numbers and the ratios\n",
        "  rightmodel bench --llama-bench ./llama-bench\n",
        "  rightmodel bench gateway --rates 500,1000,2000",
    )
)]
pub struct BenchArgs {
    #[command(subcommand)]
    cmd: Option<BenchCmd>,
    /// Chat model (pulled name or GGUF path).
    #[arg(long, default_value = rightmodel_models::DEFAULT_CHAT_MODEL)]
    model: String,
    /// Encoder (pulled name or safetensors directory).
    #[arg(long, default_value = rightmodel_models::DEFAULT_EMBED_MODEL)]
    embed_model: String,
    /// CPU threads for generation (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=256))]
    threads: Option<i32>,
    /// Repetitions per measurement, at least 1 (the median is reported).
    #[arg(long, default_value_t = 5, value_parser = super::router::in_range::<1, 10_000>)]
    runs: usize,
    /// Path to llama.cpp's `llama-bench`, run on the same model and threads as a baseline.
    #[arg(long)]
    llama_bench: Option<PathBuf>,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Other benchmarks.
#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// Latency the gateway adds under load: the same open-loop rate straight to a fast local upstream
    /// and through the gateway, in one run.
    #[command(after_help = "Example:\n  rightmodel bench gateway --rates 500,1000,2000 --seconds 5 --json")]
    Gateway(GatewayArgs),
}

/// `bench gateway` arguments.
#[derive(Args)]
pub struct GatewayArgs {
    /// Offered request rates (requests per second), whole numbers from 1 to 10000 (more than one
    /// machine's loopback can carry; a higher rate would only measure the load generator).
    #[arg(long, value_delimiter = ',', default_values_t = vec![500u32, 1000, 2000], value_parser = gateway_rate,
          allow_negative_numbers = true)]
    rates: Vec<u32>,
    /// Seconds per rate and target.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Also step the rate up (doubling, up to 10000 req/s) until errors appear, to find the highest
    /// rate held with none.
    #[arg(long)]
    find_max: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

/// Longest `--seconds` per rate and target: a day.
const MAX_GATEWAY_SECONDS: f64 = 86_400.0;

/// Highest rate `bench gateway` offers, in requests per second. Each request is a fresh local HTTP
/// call timed on its own; well past this the load generator and the loopback are what is measured, and
/// an open loop at a mistyped rate (`1000000000`) would queue requests until memory runs out.
const MAX_GATEWAY_RATE: u32 = 10_000;

/// What `--rates` accepts, for its error messages.
fn rates_rule() -> String {
    format!("--rates must be whole numbers of requests per second, each from 1 to {MAX_GATEWAY_RATE}")
}

/// Parses one `--rates` value: a whole number from 1 to [`MAX_GATEWAY_RATE`].
fn gateway_rate(s: &str) -> Result<u32, String> {
    let rule = rates_rule();
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number; {rule}"))?;
    if v.fract() != 0.0 || !(1.0..=f64::from(MAX_GATEWAY_RATE)).contains(&v) {
        return Err(format!("`{s}` is out of range; {rule}"));
    }
    Ok(v as u32)
}

/// Checks `bench gateway`'s flags, each with a message that states exactly the values it accepts.
fn check_gateway_args(a: &GatewayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !a.rates.is_empty() && a.rates.iter().all(|r| (1..=MAX_GATEWAY_RATE).contains(r)),
        "{}",
        rates_rule()
    );
    anyhow::ensure!(
        a.seconds > 0.0 && a.seconds <= MAX_GATEWAY_SECONDS,
        "--seconds must be greater than 0 and at most {MAX_GATEWAY_SECONDS} (got {})",
        a.seconds
    );
    Ok(())
}

fn gateway(a: GatewayArgs) -> anyhow::Result<()> {
    check_gateway_args(&a)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let pb = super::progress::bar((a.rates.len() * 2) as u64, "gateway");
    let duration = std::time::Duration::from_secs_f64(a.seconds);
    let bench = rt.block_on(rightmodel_server::loadbench::LoadBench::start()).map_err(|e| anyhow::anyhow!(e))?;
    let mut results = Vec::new();
    for &rate in &a.rates {
        results.push(rt.block_on(bench.compare(rate, duration, |m| {
            pb.set_message(m.to_string());
            pb.inc(1);
        })));
    }
    let mut max_clean = results.iter().filter(|c| c.gateway.errors == 0).map(|c| c.rate).max();
    if a.find_max {
        let mut rate = a.rates.iter().copied().max().unwrap_or(1000);
        while rate < MAX_GATEWAY_RATE {
            rate = rate.saturating_mul(2).min(MAX_GATEWAY_RATE);
            pb.set_message(format!("probing {rate} req/s"));
            let c = rt.block_on(bench.compare(rate, duration, |_| {}));
            let clean = c.gateway.errors == 0 && c.gateway.achieved_rps >= 0.95 * f64::from(rate);
            results.push(c);
            if !clean {
                break;
            }
            max_clean = Some(rate);
        }
    }
    pb.finish_and_clear();
    println!("| rate (req/s) | direct p50 / p99 (ms) | gateway p50 / p99 (ms) | overhead p50 / p99 (ms) | gateway errors | achieved (req/s) |");
    println!("|---|---|---|---|---|---|");
    for c in &results {
        println!(
            "| {} | {:.3} / {:.3} | {:.3} / {:.3} | {:.3} / {:.3} | {} | {:.0} |",
            c.rate,
            c.direct.p50_ms,
            c.direct.p99_ms,
            c.gateway.p50_ms,
            c.gateway.p99_ms,
            c.overhead_p50_ms,
            c.overhead_p99_ms,
            c.gateway.errors,
            c.gateway.achieved_rps
        );
    }
    println!("\n{}", max_rate_line(max_clean, &a.rates, a.find_max));
    if a.json {
        println!("{}", json!({"results": results, "max_rate_no_errors": max_clean}));
    }
    Ok(())
}

/// The summary line of `bench gateway`, saying no more than was measured: without `--find-max` only
/// the given rates were tried, so a clean run at the highest of them is a lower bound, not a limit.
fn max_rate_line(max_clean: Option<u32>, rates: &[u32], find_max: bool) -> String {
    let highest_tried = rates.iter().copied().max().unwrap_or(0);
    match max_clean {
        None => "no rate tested ran without gateway errors".into(),
        Some(r) if find_max && r >= MAX_GATEWAY_RATE => {
            format!("no gateway errors up to {r} req/s, the highest rate bench gateway offers (--find-max stops there)")
        }
        Some(r) if find_max => format!("highest rate held with no errors: {r} req/s (found by --find-max)"),
        Some(r) if r == highest_tried => format!(
            "no gateway errors up to {r} req/s, the highest rate tested (--find-max steps higher to find the limit)"
        ),
        Some(r) => format!("highest tested rate with no gateway errors: {r} req/s"),
    }
}

/// Runs `bench`.
pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    if let Some(BenchCmd::Gateway(g)) = a.cmd {
        return gateway(g);
    }
    if let Some(p) = &a.llama_bench {
        check_executable("--llama-bench", p)?;
    }
    let cores = rightmodel_infer::threads::available_cores();
    rightmodel_infer::threads::configure_candle_threads(cores);
    let threads = a.threads.unwrap_or(cores as i32);
    let runs = a.runs;
    let store = Store::new(&rightmodel_home()).with_auto_pull(true).with_progress(true);
    let gguf = super::resolve_gguf(&store, &a.model)?;
    let mut cfg = EngineConfig::new(&gguf);
    cfg.slots = 1;
    cfg.ctx_per_slot = 1024;
    cfg.threads = threads;
    let engine = Engine::start(cfg)?;
    let encoder = MiniLm::load(&super::resolve_encoder(&store, &a.embed_model)?)?;

    let total = (runs * 3 + runs * 2) as u64;
    let pb = super::progress::bar(total, "bench");

    // Prompt processing: 512 prompt tokens, one generated token. Each run starts with a different word
    // so the prefix cache cannot help.
    pb.set_message("prompt 512");
    let filler = "the quick brown fox jumps over the lazy dog and ".repeat(80);
    let mut pp = Vec::new();
    for r in 0..runs {
        let ids = engine.tokenize(&format!("run{r} {filler}"), true, false);
        let text: String = ids[1..512].iter().map(|&t| engine.token_text(t)).collect();
        let req =
            GenRequest { prompt: Prompt::Text(text), params: SamplingParams { max_tokens: 1, ..Default::default() } };
        let out = engine.generate(req)?;
        pp.push(out.finished.prompt_tokens as f64 / out.ttft.as_secs_f64());
        pb.inc(1);
    }
    // Generation: 128 tokens after a short prompt, timed from the first token to the last.
    pb.set_message("generate 128");
    let mut tg = Vec::new();
    for r in 0..runs {
        let params = SamplingParams { max_tokens: 129, ignore_eos: true, ..Default::default() };
        let out =
            engine.generate(GenRequest { prompt: Prompt::Text(format!("Story {r}: once upon a time")), params })?;
        let gen_time = (out.total - out.ttft).as_secs_f64();
        tg.push((out.finished.completion_tokens.saturating_sub(1)) as f64 / gen_time);
        pb.inc(1);
    }
    // Time to first token of a short chat request.
    pb.set_message("ttft");
    let mut ttft = Vec::new();
    for r in 0..runs {
        let msgs = vec![ChatMessage::new("user", format!("Question {r}: what is the capital of France?"))];
        let out = engine.generate(GenRequest {
            prompt: Prompt::Chat(msgs),
            params: SamplingParams { max_tokens: 1, ..Default::default() },
        })?;
        ttft.push(out.ttft.as_secs_f64() * 1e3);
        pb.inc(1);
    }
    // Embeddings: batches of 32 short sentences, and single sentences.
    pb.set_message("embeddings");
    let sentences: Vec<String> =
        (0..32).map(|i| format!("Sentence {i} says something short about topic {}.", i % 5)).collect();
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    encoder.embed(&refs)?;
    let mut eb = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        encoder.embed(&refs)?;
        eb.push(32.0 / t.elapsed().as_secs_f64());
        pb.inc(1);
    }
    let mut es = Vec::new();
    for i in 0..runs * 4 {
        let t = Instant::now();
        encoder.embed(&[refs[i % 32]])?;
        es.push(t.elapsed().as_secs_f64() * 1e3);
    }
    pb.inc(runs as u64);
    pb.finish_and_clear();

    let result = json!({
        "pp512_tok_s": round(median(pp)),
        "tg128_tok_s": round(median(tg)),
        "ttft_ms": round(median(ttft)),
        "embed_batch32_per_s": round(median(eb)),
        "embed_single_ms": round(median(es)),
        "peak_rss_mb": round(peak_rss_mb()),
        "threads": threads,
    });
    // Baseline measured in the same run: llama.cpp's own numbers when `llama-bench` is given, else
    // llama.cpp driven by a minimal decode loop on the same model and threads.
    let (base_name, baseline) = match &a.llama_bench {
        Some(p) => ("llama-bench", llama_bench(p, &gguf, threads)?),
        None => {
            let mut bpp = Vec::new();
            let mut btg = Vec::new();
            for _ in 0..runs {
                let (p, t) = rightmodel_infer::llm::raw_llama_speed(&gguf, threads, 512, 128)?;
                bpp.push(p);
                btg.push(t);
            }
            ("llama.cpp raw loop", (median(bpp), median(btg)))
        }
    };
    println!("| measure | rightmodel | {base_name} | ratio |");
    println!("|---|---|---|---|");
    for (key, label, b) in
        [("pp512_tok_s", "prompt 512 (tok/s)", baseline.0), ("tg128_tok_s", "generate 128 (tok/s)", baseline.1)]
    {
        let ours = result[key].as_f64().unwrap_or(f64::NAN);
        println!("| {label} | {ours:.1} | {b:.1} | {:.2}x |", ours / b);
    }
    println!("| chat TTFT (ms) | {:.1} | | |", result["ttft_ms"].as_f64().unwrap_or(f64::NAN));
    println!(
        "| embeddings, batch 32 (sent/s) | {:.1} | | |",
        result["embed_batch32_per_s"].as_f64().unwrap_or(f64::NAN)
    );
    println!("| embedding, one sentence (ms) | {:.1} | | |", result["embed_single_ms"].as_f64().unwrap_or(f64::NAN));
    println!("| peak RSS, both models (MB) | {:.0} | | |", result["peak_rss_mb"].as_f64().unwrap_or(f64::NAN));
    if a.json {
        let mut r = result;
        r["baseline"] = json!(base_name);
        r["baseline_pp512_tok_s"] = json!(round(baseline.0));
        r["baseline_tg128_tok_s"] = json!(round(baseline.1));
        println!("{r}");
    }
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Fails before any benchmarking (minutes) when `path`, given with `flag`, is not a program that can be
/// run: missing, a folder, or a file without execute permission. A bare name (no `/`) is looked up
/// on PATH, as running it would.
fn check_executable(flag: &str, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let is_program = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !path.as_os_str().to_string_lossy().contains('/') {
        let on_path = std::env::var_os("PATH")
            .is_some_and(|dirs| std::env::split_paths(&dirs).any(|d| is_program(&d.join(path))));
        anyhow::ensure!(
            on_path,
            "{flag} {}: no such program on PATH; give the path to llama.cpp's llama-bench",
            path.display()
        );
        return Ok(());
    }
    let meta = std::fs::metadata(path).with_context(|| format!("{flag} {}", path.display()))?;
    anyhow::ensure!(
        meta.is_file(),
        "{flag} {}: is not a file; give the path to llama.cpp's llama-bench",
        path.display()
    );
    anyhow::ensure!(
        is_program(path),
        "{flag} {}: is not executable (chmod +x it, or give the right file)",
        path.display()
    );
    Ok(())
}

/// Runs llama.cpp's `llama-bench -p 512 -n 128` and returns (pp512, tg128) tokens/s.
fn llama_bench(bin: &PathBuf, model: &PathBuf, threads: i32) -> anyhow::Result<(f64, f64)> {
    let out = std::process::Command::new(bin)
        .args(["-m"])
        .arg(model)
        .args(["-p", "512", "-n", "128", "-t", &threads.to_string(), "-o", "json", "-r", "5"])
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        anyhow::bail!("llama-bench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("llama-bench printed no JSON")?;
    let mut pp = f64::NAN;
    let mut tg = f64::NAN;
    for row in v.as_array().into_iter().flatten() {
        let ts = row["avg_ts"].as_f64().unwrap_or(f64::NAN);
        if row["n_prompt"].as_u64() == Some(512) && row["n_gen"].as_u64() == Some(0) {
            pp = ts;
        }
        if row["n_gen"].as_u64() == Some(128) && row["n_prompt"].as_u64() == Some(0) {
            tg = ts;
        }
    }
    Ok((pp, tg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_range_messages_match_what_is_accepted() {
        let args =
            |rates: &[u32], seconds: f64| GatewayArgs { rates: rates.to_vec(), seconds, find_max: false, json: false };
        for ok in [1e-3, 5.0, MAX_GATEWAY_SECONDS] {
            check_gateway_args(&args(&[1], ok)).unwrap();
        }
        for bad in [0.0, -1.0, MAX_GATEWAY_SECONDS + 0.5, f64::NAN] {
            let e = check_gateway_args(&args(&[1], bad)).unwrap_err().to_string();
            assert!(e.starts_with("--seconds must be greater than 0 and at most 86400"), "{e}");
        }
        for bad in [&[][..], &[500, 0][..], &[MAX_GATEWAY_RATE + 1][..]] {
            let e = check_gateway_args(&args(bad, 5.0)).unwrap_err().to_string();
            assert!(e.contains("--rates") && e.contains("from 1 to 10000"), "{e}");
        }
        check_gateway_args(&args(&[1, MAX_GATEWAY_RATE], 5.0)).unwrap();
    }

    #[test]
    fn rates_out_of_bounds_are_refused_with_the_rule() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: GatewayArgs,
        }
        let parse = |rates: &str| <Cli as clap::Parser>::try_parse_from(["x", "--rates", rates]).map(|c| c.a.rates);
        assert_eq!(parse("1,10000").unwrap(), vec![1, 10_000]);
        assert_eq!(parse("500").unwrap(), vec![500]);
        for bad in ["1e9", "1000000000", "10001", "0", "-5", "2.5", "fast", "99999999999999999999"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("from 1 to 10000"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_bad_llama_bench_path_is_found_before_benchmarking() {
        let dir = std::env::temp_dir().join(format!("rightmodel-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = format!("{:#}", check_executable("--llama-bench", &dir.join("missing")).unwrap_err());
        assert!(e.contains("--llama-bench") && e.contains("missing") && e.contains("No such file"), "{e}");
        assert!(check_executable("--llama-bench", &dir).unwrap_err().to_string().contains("not a file"));
        let script = dir.join("llama-bench");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert!(check_executable("--llama-bench", &script).unwrap_err().to_string().contains("not executable"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_executable("--llama-bench", &script).unwrap();
        check_executable("--llama-bench", Path::new("sh")).unwrap();
        assert!(check_executable("--llama-bench", Path::new("no-such-llama-bench-x"))
            .unwrap_err()
            .to_string()
            .contains("PATH"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_rate_line_claims_only_what_was_measured() {
        let line = max_rate_line(Some(100), &[50, 100], false);
        assert!(line.contains("highest rate tested") && line.contains("--find-max"), "{line}");
        assert!(!line.starts_with("highest rate held"), "{line}");
        assert_eq!(max_rate_line(Some(50), &[50, 100], false), "highest tested rate with no gateway errors: 50 req/s");
        assert!(max_rate_line(Some(400), &[50, 100], true).starts_with("highest rate held with no errors: 400"));
        assert!(max_rate_line(None, &[50], false).starts_with("no rate"));
        let capped = max_rate_line(Some(MAX_GATEWAY_RATE), &[5000], true);
        assert!(capped.starts_with("no gateway errors up to 10000") && capped.contains("highest rate"), "{capped}");
    }
}
