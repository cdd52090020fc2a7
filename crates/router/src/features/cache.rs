//! An optional on-disk cache of conversation vectors for repeated `train`/`eval` runs on the same
//! data: embedding 10k prompts takes minutes on two cores, the rest of a run takes seconds.
//!
//! Format: `RMEC` magic, version u32, row count u64, dimension u32, FNV-1a hash u64 of every
//! embedding input (and the recipe), then `rows x dim` little-endian f32. A cache whose header does not
//! match the current inputs is ignored and rewritten.
//!
//! Only a cache is ever replaced: an existing file that does not start with the magic (a mistyped or
//! swapped argument such as `--embed-cache data.csv`) is refused before any work, never overwritten.

use std::io::{Read, Write};
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

/// Whether the file at `path` may be used as the cache: it does not exist yet, is empty, or starts with
/// [`MAGIC`] (a current or stale cache). Anything else is someone's data and is refused, naming the
/// file, as is a folder. Reads only the first bytes, so a large wrong file costs nothing.
pub fn check_replaceable(path: &Path) -> Result<(), RouterError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RouterError::data(path.display(), e)),
    };
    if meta.is_dir() {
        return Err(RouterError::data(path.display(), "is a folder; give a file name for the embedding cache"));
    }
    if meta.len() == 0 {
        return Ok(());
    }
    let mut head = Vec::with_capacity(MAGIC.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(MAGIC.len() as u64).read_to_end(&mut head))
        .map_err(|e| RouterError::data(path.display(), e))?;
    if head.as_slice() != MAGIC {
        return Err(RouterError::data(
            path.display(),
            "exists and is not an embedding cache (it does not start with `RMEC`); refusing to overwrite it, give a new file name",
        ));
    }
    Ok(())
}

/// Refuses a cache path that is one of the run's input files (`inputs`, e.g. the `--data` file), compared
/// by their canonical paths (so `./a.csv`, `a.csv` and links to it are the same file), then checks that the
/// cache may be replaced ([`check_replaceable`]). Call it before reading or embedding anything.
pub fn check_cache_path(cache: &Path, inputs: &[&Path]) -> Result<(), RouterError> {
    if let Ok(c) = std::fs::canonicalize(cache) {
        if inputs.iter().any(|i| std::fs::canonicalize(i).is_ok_and(|i| i == c)) {
            return Err(RouterError::data(
                cache.display(),
                "is the data file itself; give the embedding cache a file name of its own",
            ));
        }
    }
    check_replaceable(cache)
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
/// chunks (calling `progress(done, total)`) and written to `cache`. A `cache` file that is not a cache
/// is refused before embedding (see [`check_replaceable`]).
pub fn embed_all(
    embedder: &dyn Embedder,
    convs: &[Conversation],
    spec: &EmbedSpec,
    cache: Option<&Path>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<Vec<f32>>, RouterError> {
    if let Some(path) = cache {
        check_replaceable(path)?;
    }
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

    /// A fake encoder of 2-d vectors: (length, 1).
    struct Fake;
    impl Embedder for Fake {
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, rightmodel_core::EmbedError> {
            Ok(texts.iter().map(|t| vec![t.len() as f32, 1.0]).collect())
        }
        fn dim(&self) -> usize {
            2
        }
        fn model_id(&self) -> &str {
            "fake"
        }
    }

    #[test]
    fn a_file_that_is_not_a_cache_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let convs = vec![Conversation::from_prompt("a"), Conversation::from_prompt("bb")];
        let spec = EmbedSpec::default();
        let notes = dir.path().join("precious.txt");
        std::fs::write(&notes, "my thesis notes").unwrap();
        let e = embed_all(&Fake, &convs, &spec, Some(&notes), |_, _| {}).unwrap_err().to_string();
        assert!(e.contains("precious.txt") && e.contains("not an embedding cache"), "{e}");
        assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my thesis notes");
        let e = embed_all(&Fake, &convs, &spec, Some(dir.path()), |_, _| {}).unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");

        // A new file, an empty one and a stale cache are (re)written; a current one is read back.
        let cache = dir.path().join("c.bin");
        let v = embed_all(&Fake, &convs, &spec, Some(&cache), |_, _| {}).unwrap();
        assert!(std::fs::read(&cache).unwrap().starts_with(MAGIC));
        let other = vec![Conversation::from_prompt("ccc")];
        embed_all(&Fake, &other, &spec, Some(&cache), |_, _| {}).unwrap();
        assert_eq!(read(&cache, 1, fingerprint(&other, &spec, "fake")).map(|r| r.len()), Some(1));
        let empty = dir.path().join("empty.bin");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(embed_all(&Fake, &convs, &spec, Some(&empty), |_, _| {}).unwrap(), v);
        assert_eq!(embed_all(&Fake, &convs, &spec, Some(&empty), |_, _| {}).unwrap(), v);
    }

    #[test]
    fn the_data_file_is_refused_as_a_cache() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("ok.csv");
        std::fs::write(&data, "prompt,weak_correct,strong_correct\n").unwrap();
        let same = dir.path().join(".").join("ok.csv");
        let e = check_cache_path(&same, &[&data]).unwrap_err().to_string();
        assert!(e.contains("is the data file itself"), "{e}");
        assert!(check_cache_path(&dir.path().join("new.bin"), &[&data]).is_ok());
        assert_eq!(std::fs::read_to_string(&data).unwrap(), "prompt,weak_correct,strong_correct\n");
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
