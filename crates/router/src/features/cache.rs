//! An optional on-disk cache of conversation vectors for repeated `train`/`eval` runs on the same
//! data: embedding 10k prompts takes minutes on two cores, the rest of a run takes seconds.
//!
//! Format: `RMEC` magic, version u32, row count u64, dimension u32, FNV-1a hash u64 of every
//! embedding input (and the recipe), then `rows x dim` little-endian f32. A file whose header does not
//! match the current inputs is ignored and rewritten.

use std::io::Write;
use std::path::Path;

use rightmodel_core::Embedder;

use super::{embed_conversations, EmbedSpec};
use crate::conversation::Conversation;
use crate::error::RouterError;

const MAGIC: &[u8; 4] = b"RMEC";
const VERSION: u32 = 1;
const HEADER: usize = 4 + 4 + 8 + 4 + 8;

/// FNV-1a over bytes; stable across Rust versions, unlike `DefaultHasher`.
fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

/// Fingerprint of the embedding inputs of `convs` under `spec` and encoder `model_id`.
pub fn fingerprint(convs: &[Conversation], spec: &EmbedSpec, model_id: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    fnv1a(&mut h, model_id.as_bytes());
    fnv1a(&mut h, &serde_json::to_vec(spec).unwrap_or_default());
    for c in convs {
        let (last, hist) = super::embedding_inputs(c, spec);
        fnv1a(&mut h, last.as_bytes());
        fnv1a(&mut h, &[0xff]);
        if let Some(hh) = hist {
            fnv1a(&mut h, hh.as_bytes());
        }
        fnv1a(&mut h, &[0xfe]);
    }
    h
}

fn read(path: &Path, rows: usize, hash: u64) -> Option<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| bytes.get(i..i + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let u64_at = |i: usize| bytes.get(i..i + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    if u32_at(4)? != VERSION || u64_at(8)? != rows as u64 || u64_at(20)? != hash {
        return None;
    }
    let dim = u32_at(16)? as usize;
    let body = &bytes[HEADER..];
    if body.len() != rows * dim * 4 {
        return None;
    }
    let floats: Vec<f32> = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Some(floats.chunks(dim.max(1)).map(<[f32]>::to_vec).collect())
}

fn write(path: &Path, vecs: &[Vec<f32>], hash: u64) -> Result<(), RouterError> {
    let dim = vecs.first().map_or(0, Vec::len);
    let mut buf = Vec::with_capacity(HEADER + vecs.len() * dim * 4);
    buf.write_all(MAGIC).ok();
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&(vecs.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(dim as u32).to_le_bytes());
    buf.extend_from_slice(&hash.to_le_bytes());
    for v in vecs {
        for x in v {
            buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    crate::report::write_atomic(path, &buf)
}

/// Conversation vectors of `convs`: from `cache` when it holds exactly these inputs, else embedded in
/// chunks (calling `progress(done, total)`) and written to `cache`.
pub fn embed_all(
    embedder: &dyn Embedder,
    convs: &[Conversation],
    spec: &EmbedSpec,
    cache: Option<&Path>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<Vec<f32>>, RouterError> {
    let hash = cache.map(|_| fingerprint(convs, spec, embedder.model_id()));
    if let (Some(path), Some(h)) = (cache, hash) {
        if let Some(v) = read(path, convs.len(), h) {
            if v.first().is_none_or(|e| e.len() == embedder.dim()) {
                progress(convs.len(), convs.len());
                return Ok(v);
            }
        }
    }
    const CHUNK: usize = 256;
    let mut out = Vec::with_capacity(convs.len());
    for chunk in convs.chunks(CHUNK) {
        out.extend(embed_conversations(embedder, chunk, spec)?);
        progress(out.len(), convs.len());
    }
    if let (Some(path), Some(h)) = (cache, hash) {
        write(path, &out, h)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_invalidation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.bin");
        let v = vec![vec![1.0, 2.0], vec![3.0, -4.5]];
        write(&p, &v, 42).unwrap();
        assert_eq!(read(&p, 2, 42), Some(v));
        assert_eq!(read(&p, 2, 43), None);
        assert_eq!(read(&p, 3, 42), None);
        std::fs::write(&p, b"garbage").unwrap();
        assert_eq!(read(&p, 2, 42), None);
    }

    #[test]
    fn fingerprint_depends_on_inputs() {
        let a = vec![Conversation::from_prompt("a")];
        let b = vec![Conversation::from_prompt("b")];
        let s = EmbedSpec::default();
        assert_ne!(fingerprint(&a, &s, "m"), fingerprint(&b, &s, "m"));
        assert_ne!(fingerprint(&a, &s, "m"), fingerprint(&a, &s, "n"));
        assert_eq!(fingerprint(&a, &s, "m"), fingerprint(&a, &s, "m"));
    }
}
