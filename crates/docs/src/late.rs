//! Late interaction: every word piece of a question matched against its closest word piece of a
//! sentence (ColBERT's MaxSim) over the sentence encoder's own token states.
//!
//! A sentence vector averages its tokens away; matching token by token keeps which question words
//! found a counterpart ("viewership peaked" for "viewing at its highest", "MVP" for "Most Valuable
//! Player"). On the SQuAD dev half it disagreed with the linear ranker's first passage for half the
//! questions where the ranker's second passage was right, and for 5% of those where its first was.
//!
//! Written here because no crate stores and scores quantised token matrices for a few thousand
//! sentences (ColBERT ports are full search engines with their own trained models). Token vectors are
//! stored as i8 with one scale per token (384 bytes per word piece for MiniLM, a quarter of f32);
//! scores from them match f32 to about 0.01.

use std::ops::Range;
use std::sync::Arc;

/// Token vectors of every sentence of a collection, in sentence row order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenStore {
    dim: usize,
    /// Quantised rows, `dim` values each.
    values: Values,
    /// Per row: the factor that turns `values` back into the unit vector.
    scales: Vec<f32>,
    /// Sentence `s` owns rows `offsets[s]..offsets[s + 1]`.
    offsets: Vec<u32>,
}

/// Where the quantised values live: built in memory (while indexing), or mapped from the stored
/// vectors file of a loaded collection. They are most of a collection's size (384 bytes per word
/// piece), so a served collection leaves them in the page cache, shared and reclaimable, instead of
/// holding a private copy.
#[derive(Clone)]
enum Values {
    Owned(Vec<i8>),
    Mapped { map: Arc<memmap2::Mmap>, range: Range<usize> },
}

impl Values {
    fn as_slice(&self) -> &[i8] {
        match self {
            Values::Owned(v) => v,
            Values::Mapped { map, range } => {
                let bytes = &map[range.clone()];
                // SAFETY: i8 and u8 have the same size, alignment and validity (every bit pattern).
                unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<i8>(), bytes.len()) }
            }
        }
    }

    /// The values as an owned vector (copied when mapped).
    fn into_vec(self) -> Vec<i8> {
        match self {
            Values::Owned(v) => v,
            mapped => mapped.as_slice().to_vec(),
        }
    }

    /// The values as a growable vector (a mapped store is copied first: only stores being built grow).
    fn to_mut(&mut self) -> &mut Vec<i8> {
        if let Values::Mapped { .. } = self {
            *self = Values::Owned(self.as_slice().to_vec());
        }
        match self {
            Values::Owned(v) => v,
            Values::Mapped { .. } => unreachable!("mapped values were just copied"),
        }
    }
}

impl Default for Values {
    fn default() -> Self {
        Values::Owned(Vec::new())
    }
}

impl PartialEq for Values {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if matches!(self, Values::Owned(_)) { "owned" } else { "mapped" };
        write!(f, "{} {kind} values", self.as_slice().len())
    }
}

impl TokenStore {
    /// An empty store of `dim`-wide token vectors.
    pub fn new(dim: usize) -> Self {
        TokenStore { dim, values: Values::default(), scales: Vec::new(), offsets: vec![0] }
    }

    /// Rebuilds a store from its stored parts; `None` when they do not fit together.
    pub fn from_parts(dim: usize, values: Vec<i8>, scales: Vec<f32>, offsets: Vec<u32>) -> Option<Self> {
        Self::checked(dim, Values::Owned(values), scales, offsets)
    }

    /// Rebuilds a store whose values are the bytes `range` of `map` (a stored vectors file, mapped);
    /// `None` when the parts do not fit together or `range` is outside the map.
    ///
    /// The file must not change while mapped: collections write every file of a generation once, under
    /// a new name, and never modify it (a removed generation's mapping stays valid until dropped).
    pub fn from_mapped(
        dim: usize,
        map: Arc<memmap2::Mmap>,
        range: Range<usize>,
        scales: Vec<f32>,
        offsets: Vec<u32>,
    ) -> Option<Self> {
        if range.start > range.end || range.end > map.len() {
            return None;
        }
        Self::checked(dim, Values::Mapped { map, range }, scales, offsets)
    }

    fn checked(dim: usize, values: Values, scales: Vec<f32>, offsets: Vec<u32>) -> Option<Self> {
        let rows = scales.len();
        let fits = dim > 0
            && values.as_slice().len() == rows * dim
            && offsets.first() == Some(&0)
            && offsets.last().is_some_and(|&l| l as usize == rows)
            && offsets.windows(2).all(|w| w[0] <= w[1]);
        fits.then_some(TokenStore { dim, values, scales, offsets })
    }

    /// Whether the values are mapped from a file rather than held in memory.
    pub fn is_mapped(&self) -> bool {
        matches!(self.values, Values::Mapped { .. })
    }

    /// Width of a token vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of sentences.
    pub fn sentences(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Token rows in all.
    pub fn rows(&self) -> usize {
        self.scales.len()
    }

    /// The stored parts: quantised values, per-row scales, per-sentence row offsets.
    pub fn parts(&self) -> (&[i8], &[f32], &[u32]) {
        (self.values.as_slice(), &self.scales, &self.offsets)
    }

    /// Appends one sentence's token vectors (`dim`-wide rows, concatenated).
    pub fn push_f32(&mut self, rows: &[f32]) {
        for row in rows.chunks_exact(self.dim) {
            let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 0.0 };
            self.scales.push(scale);
            self.values.to_mut().extend(row.iter().map(|x| if scale > 0.0 { (x / scale).round() as i8 } else { 0 }));
        }
        self.offsets.push(self.scales.len() as u32);
    }

    /// Appends sentence `s` of `other` (an earlier generation's store).
    pub fn push_from(&mut self, other: &TokenStore, s: usize) {
        let (a, b) = (other.offsets[s] as usize, other.offsets[s + 1] as usize);
        self.values.to_mut().extend_from_slice(&other.values.as_slice()[a * self.dim..b * self.dim]);
        self.scales.extend_from_slice(&other.scales[a..b]);
        self.offsets.push(self.scales.len() as u32);
    }

    /// Sentence `s`'s token vectors back as f32 rows (quantised, then scaled back).
    pub fn sentence_f32(&self, s: usize) -> Vec<f32> {
        let (a, b) = (self.offsets[s] as usize, self.offsets[s + 1] as usize);
        let values = self.values.as_slice();
        (a..b)
            .flat_map(|r| values[r * self.dim..(r + 1) * self.dim].iter().map(move |&v| f32::from(v) * self.scales[r]))
            .collect()
    }

    /// For each question token (`q`, quantised by [`QuantisedQuery::new`]), raises `best[i]` to its
    /// largest cosine with a token of sentence `s`.
    pub fn raise_best(&self, q: &QuantisedQuery, s: usize, best: &mut [f32]) {
        let (a, b) = (self.offsets[s] as usize, self.offsets[s + 1] as usize);
        let values = self.values.as_slice();
        for (qi, qrow) in q.values.chunks_exact(self.dim).enumerate() {
            let mut m = best[qi];
            for r in a..b {
                let dot = dot_i8(qrow, &values[r * self.dim..(r + 1) * self.dim]);
                m = m.max(dot as f32 * self.scales[r] * q.scales[qi]);
            }
            best[qi] = m;
        }
    }
}

/// A question's token vectors quantised like the stored ones, so that a match is an integer dot
/// product (vectorised by the compiler; the f32 version took ~2/3 of a question's time).
#[derive(Debug, Clone, Default)]
pub struct QuantisedQuery {
    values: Vec<i8>,
    scales: Vec<f32>,
}

impl QuantisedQuery {
    /// Quantises `rows` (unit rows of `dim`, concatenated).
    pub fn new(rows: &[f32], dim: usize) -> Self {
        let mut store = TokenStore::new(dim.max(1));
        store.push_f32(rows);
        QuantisedQuery { values: store.values.into_vec(), scales: store.scales }
    }

    /// Number of question tokens.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Whether the question has no tokens.
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }
}

fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum()
}

/// The mean of per-question-token best cosines (MaxSim divided by the question's length); 0 for a
/// question without tokens.
pub fn mean_best(best: &[f32]) -> f32 {
    if best.is_empty() {
        0.0
    } else {
        best.iter().map(|&b| b.max(0.0)).sum::<f32>() / best.len() as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn quantised_scores_match_exact_ones() {
        let mut st = TokenStore::new(3);
        let s0: Vec<f32> = [unit(&[1.0, 0.0, 0.0]), unit(&[0.3, 0.9, 0.1])].concat();
        let s1: Vec<f32> = unit(&[0.0, 0.0, 1.0]);
        st.push_f32(&s0);
        st.push_f32(&s1);
        assert_eq!((st.sentences(), st.rows()), (2, 3));
        let q: Vec<f32> = [unit(&[0.9, 0.1, 0.0]), unit(&[0.0, 1.0, 0.0])].concat();
        let q = QuantisedQuery::new(&q, 3);
        assert_eq!(q.len(), 2);
        let mut best = vec![f32::MIN; 2];
        st.raise_best(&q, 0, &mut best);
        let exact0 = unit(&[0.9, 0.1, 0.0]).iter().zip(unit(&[1.0, 0.0, 0.0])).map(|(a, b)| a * b).sum::<f32>();
        let exact1 = unit(&[0.3, 0.9, 0.1])[1];
        assert!((best[0] - exact0).abs() < 0.01 && (best[1] - exact1).abs() < 0.01, "{best:?}");
        // The other sentence raises nothing it does not match better.
        let before = best.clone();
        st.raise_best(&q, 1, &mut best);
        assert_eq!(best, before);
        assert!((mean_best(&best) - (exact0 + exact1) / 2.0).abs() < 0.01);
    }

    #[test]
    fn parts_round_trip_and_bad_parts_are_refused() {
        let mut st = TokenStore::new(2);
        st.push_f32(&[0.6, 0.8, 1.0, 0.0]);
        st.push_f32(&[]);
        let mut copy = TokenStore::new(2);
        copy.push_from(&st, 0);
        copy.push_from(&st, 1);
        assert_eq!(copy, st);
        let (v, s, o) = st.parts();
        assert_eq!(TokenStore::from_parts(2, v.to_vec(), s.to_vec(), o.to_vec()), Some(st.clone()));
        assert_eq!(TokenStore::from_parts(2, v.to_vec(), s.to_vec(), vec![0, 3]), None);
        assert_eq!(TokenStore::from_parts(3, v.to_vec(), s.to_vec(), o.to_vec()), None);
        assert_eq!(mean_best(&[]), 0.0);
    }
}
