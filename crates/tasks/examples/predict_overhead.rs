//! Developer tool: how much of `Classifier::predict` is the encoder and how much is the classifier.
//! Usage: predict_overhead MODEL_DIR DATA TEXT_COL LABEL_COL
use std::path::Path;
use std::time::Instant;

use rightmodel_core::Embedder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    rightmodel_infer::threads::configure_candle_threads(rightmodel_infer::threads::available_cores());
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        return Err("usage: predict_overhead MODEL_DIR DATA TEXT_COL LABEL_COL".into());
    }
    let clf = rightmodel_tasks::Classifier::load(Path::new(&a[1]))?;
    let ds = rightmodel_tasks::data::load_labelled(Path::new(&a[2]), &a[3], &a[4])?;
    let home = rightmodel_models::home::rightmodel_home();
    let enc = rightmodel_infer::MiniLm::load(&rightmodel_models::Store::new(&home).resolve_encoder("minilm-l6")?)?;
    let texts: Vec<&str> = ds.texts.iter().map(|t| t.as_str()).collect();
    for round in 0..2 {
        let t0 = Instant::now();
        for c in texts.chunks(64) {
            enc.embed(c)?;
        }
        let embed = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for c in texts.chunks(64) {
            clf.predict(&enc, c, false)?;
        }
        let predict = t1.elapsed().as_secs_f64();
        let n = texts.len() as f64;
        println!(
            "round {round}: encoder only {:.1} texts/s, predict {:.1} texts/s, classifier overhead {:.2} ms/text",
            n / embed,
            n / predict,
            (predict - embed) * 1000.0 / n
        );
    }
    Ok(())
}
