//! A tiny deterministic embedder for tests: hashed bag of lower-cased words (crude suffix stripping),
//! L2-normalised. Texts sharing words get high cosines, unrelated texts near zero.

use rightmodel_core::{EmbedError, Embedder};

pub struct HashEmbedder {
    pub dim: usize,
    pub id: String,
}

impl Default for HashEmbedder {
    fn default() -> Self {
        HashEmbedder { dim: 256, id: "hash-test".into() }
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

impl Embedder for HashEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0f32; self.dim];
                for w in t.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2) {
                    let w = w.to_lowercase();
                    let w = w.strip_suffix('s').unwrap_or(&w);
                    v[(fnv(w) % self.dim as u64) as usize] += 1.0;
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if n > 0.0 {
                    v.iter_mut().for_each(|x| *x /= n);
                }
                v
            })
            .collect())
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn model_id(&self) -> &str {
        &self.id
    }
}

/// Copies the fixture documents into a fresh temporary folder (tests modify them).
pub fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/docs");
    copy_dir(&src, &dir.path().join("docs"));
    dir
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixtures") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}
