//! GGUF and encoder metadata: a hand-written GGUF v3 parses with the right fields; truncated, corrupt or
//! garbage files give errors, never panics.

use rightmodel_models::gguf::{GgufError, GgufInfo};
use rightmodel_models::EncoderInfo;
use std::path::Path;

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

/// Metadata key/value pairs, already encoded as (type, value bytes).
fn kv(b: &mut Vec<u8>, key: &str, ty: u32, val: &[u8]) {
    put_str(b, key);
    b.extend(ty.to_le_bytes());
    b.extend(val);
}

/// (name, dims, ggml type, data bytes)
const TENSORS: &[(&str, &[u64], u32, usize)] = &[
    ("token_embd.weight", &[8, 4], 0, 128),      // F32: 32 elements
    ("blk.0.attn_q.weight", &[256, 2], 12, 288), // Q4_K: 2 blocks of 144 bytes
    ("blk.0.ffn_up.weight", &[32, 3], 8, 102),   // Q8_0: 3 blocks of 34 bytes
];

/// A small but complete GGUF v3 file with the tensors above.
fn tiny_gguf() -> Vec<u8> {
    let mut kvs = Vec::new();
    let mut n_kv = 0u64;
    let mut add = |key: &str, ty: u32, val: Vec<u8>| {
        kv(&mut kvs, key, ty, &val);
        n_kv += 1;
    };
    let s = |v: &str| {
        let mut b = Vec::new();
        put_str(&mut b, v);
        b
    };
    add("general.architecture", 8, s("llama"));
    add("general.name", 8, s("tiny"));
    add("general.file_type", 4, 15u32.to_le_bytes().to_vec());
    add("general.flag", 7, vec![1]);
    add("general.temp", 12, 0.5f64.to_le_bytes().to_vec());
    add("general.tiny", 1, vec![0xff]);
    add("llama.context_length", 4, 2048u32.to_le_bytes().to_vec());
    add("llama.embedding_length", 10, 64u64.to_le_bytes().to_vec());
    add("llama.block_count", 4, 2u32.to_le_bytes().to_vec());
    let mut tokens = 8u32.to_le_bytes().to_vec();
    tokens.extend(3u64.to_le_bytes());
    for t in ["a", "bb", "<s>"] {
        put_str(&mut tokens, t);
    }
    add("tokenizer.ggml.tokens", 9, tokens);
    let mut scores = 6u32.to_le_bytes().to_vec();
    scores.extend(3u64.to_le_bytes());
    for f in [0f32, 1.0, 2.0] {
        scores.extend(f.to_le_bytes());
    }
    add("tokenizer.ggml.scores", 9, scores);

    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((TENSORS.len() as u64).to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b.extend(kvs);
    let mut offset = 0u64;
    for (name, dims, ty, bytes) in TENSORS {
        put_str(&mut b, name);
        b.extend((dims.len() as u32).to_le_bytes());
        for d in *dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(ty.to_le_bytes());
        b.extend(offset.to_le_bytes());
        offset += (*bytes as u64).next_multiple_of(32);
    }
    b.resize(b.len().next_multiple_of(32), 0);
    for (i, (_, _, _, bytes)) in TENSORS.iter().enumerate() {
        b.extend(std::iter::repeat_n(i as u8 + 1, *bytes));
        if i + 1 < TENSORS.len() {
            b.resize(b.len().next_multiple_of(32), 0);
        }
    }
    b
}

fn read_bytes(dir: &Path, bytes: &[u8]) -> Result<GgufInfo, GgufError> {
    let p = dir.join("m.gguf");
    // A fresh file each time: truncating a file in place is slow on some filesystems.
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, bytes).unwrap();
    GgufInfo::read(&p)
}

#[test]
fn tiny_gguf_parses_with_the_right_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    let info = read_bytes(tmp.path(), &bytes).unwrap();
    assert_eq!(info.file_size, bytes.len() as u64);
    assert_eq!(info.version, 3);
    assert_eq!(info.architecture.as_deref(), Some("llama"));
    assert_eq!(info.name.as_deref(), Some("tiny"));
    assert_eq!(info.parameter_count, 32 + 512 + 96);
    assert_eq!(info.tensor_count, 3);
    assert_eq!(info.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!(info.main_tensor_type.as_deref(), Some("Q4_K"));
    assert_eq!(info.quant_label(), "Q4_K_M");
    assert_eq!(info.context_length, Some(2048));
    assert_eq!(info.embedding_length, Some(64));
    assert_eq!(info.layer_count, Some(2));
}

#[test]
fn every_truncation_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tiny_gguf();
    for n in 0..bytes.len() {
        match read_bytes(tmp.path(), &bytes[..n]) {
            Ok(_) => panic!("a file truncated to {n} of {} bytes was accepted", bytes.len()),
            Err(GgufError::NotGguf { .. }) => assert!(n < 4),
            Err(e) => assert!(matches!(e, GgufError::Truncated { .. }), "cut at {n}: {e}"),
        }
    }
    let err = read_bytes(tmp.path(), &bytes[..bytes.len() - 1]).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn bad_magic_and_versions_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = tiny_gguf();
    bytes[..4].copy_from_slice(b"GGML");
    assert!(matches!(read_bytes(tmp.path(), &bytes), Err(GgufError::NotGguf { .. })));
    let mut bytes = tiny_gguf();
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(read_bytes(tmp.path(), &bytes), Err(GgufError::Version { version: 1, .. })));
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    let err = read_bytes(tmp.path(), &bytes).unwrap_err();
    assert!(err.to_string().contains("big-endian"), "{err}");
    assert!(matches!(read_bytes(tmp.path(), b"hello, this is not a model"), Err(GgufError::NotGguf { .. })));
}

#[test]
fn huge_counts_and_lengths_fail_without_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(u64::MAX.to_le_bytes());
    b.extend(u64::MAX.to_le_bytes());
    b.extend([0u8; 64]);
    assert!(matches!(read_bytes(tmp.path(), &b), Err(GgufError::Truncated { .. })));

    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend((u64::MAX / 2).to_le_bytes()); // key length
    b.extend([b'k'; 32]);
    assert!(matches!(read_bytes(tmp.path(), &b), Err(GgufError::Truncated { .. })));
}

#[test]
fn tensor_data_past_the_end_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    put_str(&mut b, "big.weight");
    b.extend(1u32.to_le_bytes());
    b.extend((1u64 << 20).to_le_bytes());
    b.extend(0u32.to_le_bytes()); // F32: 4 MiB of data
    b.extend(0u64.to_le_bytes());
    b.resize(b.len().next_multiple_of(32) + 64, 7);
    let err = read_bytes(tmp.path(), &b).unwrap_err();
    assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
}

#[test]
fn corrupted_bytes_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tiny_gguf();
    for i in 0..good.len() {
        for v in [0x00u8, 0xff, 0x7f, 0x09] {
            let mut b = good.clone();
            b[i] = v;
            let _ = read_bytes(tmp.path(), &b);
        }
    }
    // Random garbage after a valid magic and version.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        let mut b = b"GGUF\x03\0\0\0".to_vec();
        for _ in 0..256 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b.push(if state.is_multiple_of(3) { 0 } else { state as u8 });
        }
        assert!(read_bytes(tmp.path(), &b).is_err());
    }
}

#[test]
fn a_directory_is_not_a_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(GgufInfo::read(tmp.path()).is_err());
    assert!(matches!(GgufInfo::read(&tmp.path().join("missing.gguf")), Err(GgufError::Io { .. })));
}

/// Writes a one-tensor safetensors file, optionally cut short.
fn write_safetensors(path: &Path, cut: usize) {
    let header = br#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend(header);
    b.extend([0u8; 24]);
    b.truncate(b.len() - cut);
    std::fs::write(path, b).unwrap();
}

#[test]
fn encoder_info_reads_config_and_safetensors_header() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(
        d.join("config.json"),
        r#"{"model_type":"bert","hidden_size":384,"num_hidden_layers":6,"vocab_size":30522,"max_position_embeddings":512}"#,
    )
    .unwrap();
    write_safetensors(&d.join("model.safetensors"), 0);
    let info = EncoderInfo::read(d).unwrap();
    assert_eq!(info.model_type.as_deref(), Some("bert"));
    assert_eq!((info.hidden_size, info.layers, info.vocab_size), (Some(384), Some(6), Some(30522)));
    assert_eq!(info.max_position_embeddings, Some(512));
    assert_eq!(info.parameter_count, Some(6));
    assert_eq!(info.dtype.as_deref(), Some("F32"));

    write_safetensors(&d.join("model.safetensors"), 1);
    let err = EncoderInfo::read(d).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// Reads the real default models if this machine has pulled them (the suite's setup does).
#[test]
fn real_default_models_if_present() {
    let store = rightmodel_models::Store::new(&rightmodel_models::home::rightmodel_home());
    match store.resolve_gguf(rightmodel_models::DEFAULT_CHAT_MODEL) {
        Ok(path) => {
            let info = GgufInfo::read(&path).unwrap();
            assert_eq!(info.architecture.as_deref(), Some("gemma3"));
            assert_eq!(info.quantization.as_deref(), Some("Q4_K_M"));
            assert!(info.parameter_count > 200_000_000 && info.parameter_count < 300_000_000, "{info:?}");
            assert!(info.context_length.unwrap_or(0) >= 8192, "{info:?}");
            eprintln!("{info:?}");
        }
        Err(e) => eprintln!("note: default GGUF not in the store, skipping ({e})"),
    }
    match store.resolve_encoder(rightmodel_models::DEFAULT_EMBED_MODEL) {
        Ok(dir) => {
            let info = EncoderInfo::read(&dir).unwrap();
            assert_eq!(info.hidden_size, Some(384));
            assert_eq!(info.layers, Some(6));
            eprintln!("{info:?}");
        }
        Err(e) => eprintln!("note: default encoder not in the store, skipping ({e})"),
    }
}
