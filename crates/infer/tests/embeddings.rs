//! all-MiniLM-L6-v2 embeddings against sentence-transformers' values.

mod common;

use rightmodel_core::{embed::cosine, Embedder};

#[test]
fn cosines_match_sentence_transformers() {
    let m = common::minilm();
    let v =
        m.embed(&["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."]).unwrap();
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

#[test]
fn token_counts_come_with_the_vectors() {
    let m = common::minilm();
    let long = "word ".repeat(700);
    let texts = ["Hi", "A man is eating a piece of bread.", long.as_str(), "héllo wörld, ünïcode"];
    let (vectors, counts) = m.embed_counted(&texts).unwrap();
    let again = m.embed(&texts).unwrap();
    assert!(vectors.iter().zip(&again).all(|(a, b)| cosine(a, b) > 0.99999));
    let separate: Vec<usize> = texts.iter().map(|t| m.count_tokens(t)).collect();
    assert_eq!(counts, separate);
    assert_eq!(counts[0], 3, "[CLS] hi [SEP]");
    assert!(counts[2] <= 512, "long inputs are counted after truncation: {}", counts[2]);
}

#[test]
fn token_vectors_come_from_the_same_pass() {
    let m = common::minilm();
    assert!(m.has_token_vectors());
    let texts = ["Hi", "Who was the Most Valuable Player?", "The MVP was Von Miller."];
    let (vectors, tokens) = m.embed_with_tokens(&texts).unwrap();
    let tokens = tokens.expect("MiniLM gives token vectors");
    let again = m.embed(&texts).unwrap();
    assert!(vectors.iter().zip(&again).all(|(a, b)| cosine(a, b) > 0.99999));
    for (t, rows) in texts.iter().zip(&tokens) {
        // [CLS] and [SEP] are left out; every row is a unit vector.
        assert_eq!(rows.len(), (m.count_tokens(t) - 2) * m.dim(), "{t}");
        for row in rows.chunks(m.dim()) {
            let n: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-4, "{n}");
        }
    }
    // Some token of the answer sentence matches each question token better than chance.
    let best = |q: &[f32], s: &[f32]| -> f32 {
        let d = m.dim();
        let per: Vec<f32> = q
            .chunks(d)
            .map(|a| s.chunks(d).map(|b| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()).fold(f32::MIN, f32::max))
            .collect();
        per.iter().sum::<f32>() / per.len() as f32
    };
    assert!(best(&tokens[1], &tokens[2]) > best(&tokens[1], &tokens[0]), "late interaction prefers the answer");
}

/// Our encoder forward pass (vectorised GELU, fused QKV) against candle-transformers' BERT on the same
/// weights: token states agree on every real (unpadded) token.
#[test]
fn encoder_matches_candle_transformers_bert() {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;
    use candle_transformers::models::bert::{BertModel, Config};

    let dir = common::encoder_dir();
    let config: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let weights = dir.join("model.safetensors");
    // SAFETY: read-only map of a store file that is never rewritten in place.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu) }.unwrap();
    let theirs = BertModel::load(vb, &config).unwrap();
    let texts =
        ["A man is eating food.", "Short.", "A much longer sentence that needs more word pieces than the others do."];
    let (ids, mask, len) = common::minilm().tokenize(&texts).unwrap();
    let ids_t = Tensor::from_vec(ids, (texts.len(), len), &Device::Cpu).unwrap();
    let mask_t = Tensor::from_vec(mask.clone(), (texts.len(), len), &Device::Cpu).unwrap();
    let want = theirs.forward(&ids_t, &ids_t.zeros_like().unwrap(), Some(&mask_t)).unwrap().to_vec3::<f32>().unwrap();
    let (got, _) = common::minilm().hidden_states(&texts).unwrap();
    let got = got.to_vec3::<f32>().unwrap();
    let mut worst = 0f32;
    for (b, (g, w)) in got.iter().zip(&want).enumerate() {
        for t in 0..len {
            if mask[b * len + t] == 1 {
                for (x, y) in g[t].iter().zip(&w[t]) {
                    worst = worst.max((x - y).abs());
                }
            }
        }
    }
    assert!(worst < 1e-4, "token states differ by up to {worst}");
    eprintln!("largest token-state difference: {worst}");
}

#[test]
fn damaged_weights_are_an_error_not_a_vector_of_nans() {
    // A copy of the encoder whose embedding LayerNorm weights (every token passes them) are NaN bytes.
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(common::encoder_dir().join(f), dir.path().join(f)).unwrap();
    }
    let path = dir.path().join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let (_, info) = header
        .as_object()
        .unwrap()
        .iter()
        .find(|(name, _)| name.ends_with("embeddings.LayerNorm.weight"))
        .expect("the tensor is there");
    let offsets = &info["data_offsets"];
    let (start, end) = (offsets[0].as_u64().unwrap() as usize, offsets[1].as_u64().unwrap() as usize);
    bytes[8 + header_len + start..8 + header_len + end].fill(0xff);
    std::fs::write(&path, bytes).unwrap();
    let m = rightmodel_infer::MiniLm::load(dir.path()).unwrap();
    let err = m.embed(&["hello world"]).expect_err("NaN weights");
    assert!(err.to_string().contains("non-finite") && err.to_string().contains("--verify"), "{err}");
}
