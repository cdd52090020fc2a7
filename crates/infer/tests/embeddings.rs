//! all-MiniLM-L6-v2 embeddings against sentence-transformers' values.

mod common;

use rightmodel_core::{embed::cosine, Embedder};

#[test]
fn cosines_match_sentence_transformers() {
    let m = common::minilm();
    let v = m.embed(&["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."]).unwrap();
    let near = cosine(&v[0], &v[1]);
    let far = cosine(&v[0], &v[2]);
    assert!((near - 0.755).abs() < 0.01, "near {near}");
    assert!((far - 0.247).abs() < 0.01, "far {far}");
    let n: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((n - 1.0).abs() < 1e-4);
}

#[test]
fn batching_and_order_do_not_change_vectors() {
    let m = common::minilm();
    let texts: Vec<String> = (0..40).map(|i| format!("sentence number {i} {}", "word ".repeat(i % 7))).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let all = m.embed(&refs).unwrap();
    let one = m.embed(&[refs[17]]).unwrap();
    assert_eq!(all.len(), 40);
    assert!(cosine(&all[17], &one[0]) > 0.9999);
}
