//! Experiment (not part of the product): which log-probability confidence measure best predicts
//! whether the small local model's answer is right, the question behind the cascade's default.
//!
//! Gemma 3 270M answers SQuAD questions from their passage (greedy, up to 16 tokens, stop at a
//! newline); an answer is right when its SQuAD F1 against a gold answer is at least 0.5. For each
//! measure we report the AUROC of confidence vs correctness and the accuracy of the answers kept at
//! several acceptance rates.
//! Usage: `cascade_confidence SQUAD.json [questions]`
use rightmodel_infer::llm::{Prompt, SamplingParams};
use rightmodel_infer::{Engine, EngineConfig, GenRequest};
use rightmodel_router::cascade::ConfidenceMeasure;

fn normalise(s: &str) -> Vec<String> {
    let lower: String =
        s.to_lowercase().chars().map(|c| if c.is_alphanumeric() || c.is_whitespace() { c } else { ' ' }).collect();
    lower.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).map(String::from).collect()
}

fn f1(pred: &str, gold: &str) -> f64 {
    let (p, g) = (normalise(pred), normalise(gold));
    if p.is_empty() || g.is_empty() {
        return f64::from(u8::from(p == g));
    }
    let mut common = 0usize;
    let mut gc = g.clone();
    for w in &p {
        if let Some(i) = gc.iter().position(|x| x == w) {
            gc.remove(i);
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let (pr, rc) = (common as f64 / p.len() as f64, common as f64 / g.len() as f64);
    2.0 * pr * rc / (pr + rc)
}

fn auroc(scores: &[f32], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        for k in i..=j {
            ranks[idx[k]] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    let n1 = labels.iter().filter(|l| **l).count() as f64;
    let n0 = labels.len() as f64 - n1;
    let s: f64 = ranks.iter().zip(labels).filter(|(_, l)| **l).map(|(r, _)| r).sum();
    (s - n1 * (n1 + 1.0) / 2.0) / (n1 * n0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(300);
    let squad: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[1])?)?;
    let mut items = Vec::new();
    for art in squad["data"].as_array().ok_or("no data")? {
        for p in art["paragraphs"].as_array().ok_or("no paragraphs")? {
            let ctx = p["context"].as_str().unwrap_or("");
            for q in p["qas"].as_array().ok_or("no qas")? {
                let golds: Vec<String> = q["answers"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x["text"].as_str().map(String::from)).collect())
                    .unwrap_or_default();
                items.push((ctx.to_string(), q["question"].as_str().unwrap_or("").to_string(), golds));
            }
        }
    }
    let step = (items.len() / n).max(1);
    let items: Vec<_> = items.into_iter().step_by(step).take(n).collect();
    let gguf =
        rightmodel_models::Store::new(&rightmodel_models::home::rightmodel_home()).resolve_gguf("gemma3-270m")?;
    let mut cfg = EngineConfig::new(gguf);
    cfg.slots = 1;
    let engine = Engine::start(cfg)?;
    let measures = [ConfidenceMeasure::GeoMean, ConfidenceMeasure::Mean, ConfidenceMeasure::Min];
    let mut conf: Vec<Vec<f32>> = vec![Vec::new(); measures.len()];
    let mut right = Vec::new();
    let t0 = std::time::Instant::now();
    for (k, (ctx, q, golds)) in items.iter().enumerate() {
        let prompt = format!("Passage: {ctx}\n\nQuestion: {q}\nShort answer:");
        let params =
            SamplingParams { max_tokens: 16, stop: vec!["\n".into()], logprobs: true, ..SamplingParams::default() };
        let c = engine.generate(GenRequest { prompt: Prompt::Text(prompt), params })?;
        let lps: Vec<f32> = c.tokens.iter().filter_map(|t| t.logprob).collect();
        let best = golds.iter().map(|g| f1(&c.text, g)).fold(0.0, f64::max);
        right.push(best >= 0.5);
        for (m, v) in measures.iter().zip(conf.iter_mut()) {
            v.push(m.confidence(&lps).unwrap_or(0.0));
        }
        if k % 10 == 0 || std::env::var("VERBOSE").is_ok() {
            eprintln!(
                "{k}/{} ({:.0}s) {:?} -> {:?} ({} tokens) f1 {best:.2}",
                items.len(),
                t0.elapsed().as_secs_f64(),
                q,
                c.text,
                c.tokens.len()
            );
        }
    }
    let acc = right.iter().filter(|r| **r).count() as f64 / right.len() as f64;
    println!("questions {}, small-model accuracy (F1>=0.5) {:.3}", right.len(), acc);
    println!("| measure | AUROC | kept-answer accuracy at 25% / 50% / 75% kept |\n|---|---|---|");
    for (m, v) in measures.iter().zip(&conf) {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|a, b| v[*b].total_cmp(&v[*a]));
        let at = |f: f64| {
            let k = ((idx.len() as f64 * f).round() as usize).max(1);
            idx[..k].iter().filter(|&&i| right[i]).count() as f64 / k as f64
        };
        println!("| {:?} | {:.3} | {:.3} / {:.3} / {:.3} |", m, auroc(v, &right), at(0.25), at(0.5), at(0.75));
    }
    Ok(())
}
