//! Finding training rows that overlap validation texts, so that a validation split held out from the
//! training file can be used to choose the `fast` head's regularisation honestly.
//!
//! Some training files hold many texts that are pieces of each other: SST-2 has every phrase of every
//! parse tree as its own row, so a random validation split leaves each validation phrase's parent
//! sentence and its sub-phrases in the training part. A head fitted on that part is scored on text it
//! has mostly seen, validation accuracy overstates accuracy on new text (0.93 against 0.85 on SST-2),
//! and the C chosen on it regularises too little. Leaving out, while choosing C, every training row that
//! contains a validation text or is contained in one removes that leak.
//!
//! Texts are compared as sequences of lower-cased alphanumeric words (punctuation and whitespace only
//! separate words), one is "contained" in another when it is a contiguous run of its words, and an
//! exact duplicate counts both ways. Word sequences are compared through 64-bit hashes, never as strings:
//! every validation text's runs of up to [`Limits::max_len`] words go into one hash set, and every
//! training text is probed with its own runs of the lengths that validation texts have, so the work is
//! about (words in the data) x (distinct lengths), well under a second for SST-2's 67k phrases. Texts
//! longer than the cap are still matched as exact duplicates. The cap shrinks on data of long texts so
//! that the work and the memory stay bounded (see [`Limits`]).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Longest word run hashed when looking for containment (texts longer than this are only checked for
/// exact duplicates, and only their runs up to this length are matched).
pub const MAX_RUN_LEN: usize = 64;
/// The purge is skipped when it would leave fewer than this share of the training rows.
pub const MIN_KEPT_SHARE: f64 = 0.1;
/// Share of rows inside other rows from which a file counts as phrase-level data for
/// [`whole_text_split`]. SST-2 has 89% of its rows inside others; TREC's questions 0.2% and Banking77's
/// requests 3.5% (a short request that reappears inside a longer one), where holding out only whole
/// texts would skew validation towards long texts for little gain.
pub const PHRASE_DATA_SHARE: f64 = 0.1;

/// Bounds on the containment search; the run-length cap is lowered (never below 1) until both hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest word run considered (at most; see [`MAX_RUN_LEN`]).
    pub max_len: usize,
    /// Most word runs of validation texts stored in the hash set (memory: ~16 bytes each).
    pub max_stored: u64,
    /// Most hash look-ups made for the training texts (time: a few ns each).
    pub max_probes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_len: MAX_RUN_LEN, max_stored: 4_000_000, max_probes: 100_000_000 }
    }
}

/// Which training rows overlap a validation text, as found by [`find_overlaps`].
#[derive(Debug, Clone, PartialEq)]
pub struct Overlaps {
    /// One flag per training text: it contains a validation text, is contained in one, or duplicates one.
    pub overlapping: Vec<bool>,
    /// The run-length cap actually used (below [`Limits::max_len`] when the limits forced it down).
    pub max_len: usize,
}

impl Overlaps {
    /// Number of overlapping training rows.
    pub fn count(&self) -> usize {
        self.overlapping.iter().filter(|&&o| o).count()
    }
}

/// Whether the training rows overlapping validation are left out while choosing C, decided by [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Choose C on these training rows (indices into the training part, ascending); `left_out` were set aside.
    Purge {
        /// The training rows that do not overlap validation.
        kept: Vec<usize>,
        /// How many rows were set aside.
        left_out: usize,
    },
    /// Nothing overlaps: choose C on the whole training part.
    Nothing,
    /// The purge would leave too little to fit on; choose C on the whole training part, and say why.
    Skip(String),
}

/// Passes already-mixed 64-bit keys through unchanged (the keys are hashes, hashing them again is waste).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type KeySet = HashSet<u64, BuildHasherDefault<KeyHasher>>;

/// The splitmix64 finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Multiplier of the polynomial rolling hash over word hashes (odd, so powers never vanish mod 2^64).
const BASE: u64 = 0x9e37_79b9_7f4a_7c15;

/// The hashes of `text`'s lower-cased alphanumeric words (anything else separates words).
fn word_hashes(text: &str) -> Vec<u64> {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = Vec::new();
    let mut h = FNV_OFFSET;
    let mut in_word = false;
    for ch in text.chars() {
        if ch.is_alphanumeric() {
            for lc in ch.to_lowercase() {
                h = (h ^ lc as u64).wrapping_mul(0x100_0000_01b3);
            }
            in_word = true;
        } else if in_word {
            out.push(mix(h));
            h = FNV_OFFSET;
            in_word = false;
        }
    }
    if in_word {
        out.push(mix(h));
    }
    out
}

/// Prefix hashes of a word sequence, so that any run's hash costs O(1).
struct Runs {
    prefix: Vec<u64>,
}

impl Runs {
    fn new(words: &[u64]) -> Self {
        let mut prefix = Vec::with_capacity(words.len() + 1);
        prefix.push(0u64);
        let mut h = 0u64;
        for &w in words {
            h = h.wrapping_mul(BASE).wrapping_add(w);
            prefix.push(h);
        }
        Runs { prefix }
    }

    fn len(&self) -> usize {
        self.prefix.len() - 1
    }

    /// The key of the run of `len` words starting at word `start` (`pow` = BASE^len).
    fn key(&self, start: usize, len: usize, pow: u64) -> u64 {
        let h = self.prefix[start + len].wrapping_sub(self.prefix[start].wrapping_mul(pow));
        mix(h ^ (len as u64).wrapping_mul(0xd6e8_feb8_6659_fd93))
    }
}

/// Powers of [`BASE`], `0..=n`.
fn powers(n: usize) -> Vec<u64> {
    let mut p = Vec::with_capacity(n + 1);
    let mut x = 1u64;
    for _ in 0..=n {
        p.push(x);
        x = x.wrapping_mul(BASE);
    }
    p
}

/// Runs of length `l` in a text of `n` words.
fn runs_of(n: usize, l: usize) -> u64 {
    (n + 1).saturating_sub(l) as u64
}

/// The largest run-length cap within `limits`, from the word counts of both sides (`valid_lens` sorted).
fn choose_cap(train_lens: &[usize], valid_lens: &[usize], limits: &Limits) -> usize {
    // `valid_lens` is sorted.
    let valid_has_len = |l: usize| valid_lens.binary_search(&l).is_ok();
    let (mut stored, mut probes) = (0u64, 0u64);
    let mut cap = 0;
    for l in 1..=limits.max_len.min(MAX_RUN_LEN) {
        stored += valid_lens.iter().map(|&n| runs_of(n, l)).sum::<u64>();
        if valid_has_len(l) {
            probes += train_lens.iter().map(|&n| runs_of(n, l)).sum::<u64>();
        }
        if stored > limits.max_stored || probes > limits.max_probes {
            break;
        }
        cap = l;
    }
    cap.max(1)
}

/// Flags every training text that contains a validation text, is contained in one, or duplicates one
/// (as word sequences, see the module documentation), within the default [`Limits`].
pub fn find_overlaps(train: &[&str], valid: &[&str]) -> Overlaps {
    find_overlaps_within(train, valid, &Limits::default())
}

/// [`find_overlaps`] with explicit limits (tests, and callers with unusual data).
pub fn find_overlaps_within(train: &[&str], valid: &[&str], limits: &Limits) -> Overlaps {
    let train_runs: Vec<Runs> = train.iter().map(|t| Runs::new(&word_hashes(t))).collect();
    let valid_runs: Vec<Runs> = valid.iter().map(|t| Runs::new(&word_hashes(t))).collect();
    let train_lens: Vec<usize> = train_runs.iter().map(Runs::len).collect();
    let mut valid_lens: Vec<usize> = valid_runs.iter().map(Runs::len).collect();
    valid_lens.sort_unstable();
    let cap = choose_cap(&train_lens, &valid_lens, limits);
    let longest = train_lens.iter().chain(&valid_lens).copied().max().unwrap_or(0);
    let pow = powers(longest);

    // Whole validation texts (any length; an empty one only duplicates an empty training text).
    let mut whole = KeySet::default();
    let mut valid_has_empty = false;
    // Every run of up to `cap` words of every validation text.
    let mut runs = KeySet::default();
    for r in &valid_runs {
        let n = r.len();
        if n == 0 {
            valid_has_empty = true;
            continue;
        }
        whole.insert(r.key(0, n, pow[n]));
        for (l, &p) in pow.iter().enumerate().take(cap.min(n) + 1).skip(1) {
            runs.extend((0..=n - l).map(|s| r.key(s, l, p)));
        }
    }
    // Lengths of the validation texts a training text is searched for (empty texts are in everything).
    let mut search_lens: Vec<usize> = valid_lens.iter().copied().filter(|&l| l >= 1 && l <= cap).collect();
    search_lens.dedup();

    let overlapping = train_runs
        .iter()
        .map(|r| {
            let n = r.len();
            if n == 0 {
                return valid_has_empty;
            }
            let key = r.key(0, n, pow[n]);
            if whole.contains(&key) || (n <= cap && runs.contains(&key)) {
                return true;
            }
            search_lens
                .iter()
                .take_while(|&&l| l <= n)
                .any(|&l| (0..=n - l).any(|s| whole.contains(&r.key(s, l, pow[l]))))
        })
        .collect();
    Overlaps { overlapping, max_len: cap }
}

/// Flags every text that is a proper run of another text's words (a sub-phrase of it, as word sequences:
/// see the module documentation). Exact duplicates are not flagged: neither is a proper run of the other.
/// Runs longer than the cap [`Limits`] allows are not searched, so a very long text inside a longer one
/// may go unflagged.
pub fn find_contained(texts: &[&str]) -> Vec<bool> {
    find_contained_within(texts, &Limits::default())
}

/// [`find_contained`] with explicit limits.
pub fn find_contained_within(texts: &[&str], limits: &Limits) -> Vec<bool> {
    let runs: Vec<Runs> = texts.iter().map(|t| Runs::new(&word_hashes(t))).collect();
    let lens: Vec<usize> = runs.iter().map(Runs::len).collect();
    let longest = lens.iter().copied().max().unwrap_or(0);
    let pow = powers(longest);
    let whole: KeySet = runs.iter().filter(|r| r.len() > 0).map(|r| r.key(0, r.len(), pow[r.len()])).collect();
    let mut distinct: Vec<usize> = lens.iter().copied().filter(|&l| l > 0).collect();
    distinct.sort_unstable();
    distinct.dedup();
    // Search only the lengths that texts have, shortest first, while the probes stay within the limits.
    let mut search = Vec::new();
    let mut probes = 0u64;
    for &l in distinct.iter().take_while(|&&l| l <= limits.max_len.min(MAX_RUN_LEN)) {
        probes += lens.iter().filter(|&&n| n > l).map(|&n| runs_of(n, l)).sum::<u64>();
        if probes > limits.max_probes {
            break;
        }
        search.push(l);
    }
    let mut contained = KeySet::default();
    for r in &runs {
        let n = r.len();
        for &l in search.iter().take_while(|&&l| l < n) {
            contained.extend((0..=n - l).map(|s| r.key(s, l, pow[l])).filter(|k| whole.contains(k)));
        }
    }
    runs.iter().map(|r| r.len() > 0 && contained.contains(&r.key(0, r.len(), pow[r.len()]))).collect()
}

/// A validation split made of whole texts, from [`whole_text_split`].
#[derive(Debug, Clone, PartialEq)]
pub struct WholeTextSplit {
    /// Training rows (ascending): neither inside a validation text nor a duplicate of one.
    pub train: Vec<usize>,
    /// Validation rows (ascending): texts that no other row contains, one row per distinct text.
    pub valid: Vec<usize>,
    /// Rows in neither part: sub-phrases and duplicates of validation texts.
    pub left_out: usize,
}

/// Splits a training file whose rows contain each other (phrase-level data such as SST-2, where every
/// phrase of every parse tree is a row) into a validation part of *whole* texts (rows no other row
/// contains), about `fraction` of them per class, and a training part without the rows inside them.
///
/// A random split of such a file scores a model on phrases whose parent sentence and sub-phrases it was
/// trained on (SST-2: 63% of the training rows overlap the validation phrases), so early stopping and
/// any weight chosen on validation are chosen on memorised text; and validation phrases average 9 words
/// where the texts a model will be asked about are whole sentences (SST-2's maximal rows average 19.4
/// words, its dev sentences 19.5). Here validation is whole sentences no training row contains, at the
/// cost of their sub-phrases (SST-2 at 10%: 686 sentences held out and 7,143 rows inside them left out,
/// so training keeps 59,520 of 67,349 rows, against 60,614 with a random split).
///
/// Returns `None` when fewer than [`PHRASE_DATA_SHARE`] of the rows are inside another row (ordinary
/// data, where a plain stratified split keeps validation like the data), or when the split would leave
/// fewer than [`MIN_KEPT_SHARE`] of the rows for training or a class with no training row.
pub fn whole_text_split(texts: &[&str], labels: &[String], fraction: f64, seed: u64) -> Option<WholeTextSplit> {
    let contained = find_contained(texts);
    let inside = contained.iter().filter(|&&c| c).count();
    if inside == 0 || (inside as f64) < texts.len() as f64 * PHRASE_DATA_SHARE {
        return None;
    }
    // One candidate per distinct whole text (duplicates would otherwise straddle the split).
    let mut seen = std::collections::HashSet::new();
    let candidates: Vec<usize> =
        (0..texts.len()).filter(|&i| !contained[i]).filter(|&i| seen.insert(word_hashes(texts[i]))).collect();
    let cand_labels: Vec<String> = candidates.iter().map(|&i| labels[i].clone()).collect();
    let (_, v) = crate::data::stratified_split(&cand_labels, fraction, seed);
    let valid: Vec<usize> = v.iter().map(|&j| candidates[j]).collect();
    let is_valid = {
        let mut f = vec![false; texts.len()];
        valid.iter().for_each(|&i| f[i] = true);
        f
    };
    let rest: Vec<usize> = (0..texts.len()).filter(|&i| !is_valid[i]).collect();
    let rest_texts: Vec<&str> = rest.iter().map(|&i| texts[i]).collect();
    let valid_texts: Vec<&str> = valid.iter().map(|&i| texts[i]).collect();
    let overlaps = find_overlaps(&rest_texts, &valid_texts);
    let train: Vec<usize> = rest.iter().zip(&overlaps.overlapping).filter(|(_, &o)| !o).map(|(&i, _)| i).collect();
    let min_kept = (texts.len() as f64 * MIN_KEPT_SHARE).ceil() as usize;
    let classes_before: HashSet<&str> = labels.iter().map(String::as_str).collect();
    let classes_after: HashSet<&str> = train.iter().map(|&i| labels[i].as_str()).collect();
    if valid.is_empty() || train.len() < min_kept.max(1) || classes_after.len() < classes_before.len() {
        return None;
    }
    let left_out = texts.len() - train.len() - valid.len();
    Some(WholeTextSplit { train, valid, left_out })
}

/// Decides whether to leave the overlapping rows out while choosing C. They are, unless that would leave
/// fewer than [`MIN_KEPT_SHARE`] of the training rows or empty a class that has training rows: a head
/// chosen on such a remnant says little about the head refit on everything. A heavy purge is expected on
/// phrase-level data (SST-2 loses about 60% of its training part) and is not in itself a reason to skip.
pub fn decide(overlaps: &Overlaps, train_y: &[u32], classes: usize) -> Decision {
    let left_out = overlaps.count();
    if left_out == 0 {
        return Decision::Nothing;
    }
    let n = overlaps.overlapping.len().min(train_y.len());
    let kept: Vec<usize> = (0..n).filter(|&i| !overlaps.overlapping[i]).collect();
    let min_kept = (n as f64 * MIN_KEPT_SHARE).ceil() as usize;
    if kept.len() < min_kept.max(1) {
        return Decision::Skip(format!(
            "{left_out} of {n} training rows overlap validation texts; leaving them out would leave fewer \
             than {:.0}% of the rows, so C is chosen on all of them",
            MIN_KEPT_SHARE * 100.0
        ));
    }
    let (mut before, mut after) = (vec![0usize; classes], vec![0usize; classes]);
    for &y in &train_y[..n] {
        if let Some(c) = before.get_mut(y as usize) {
            *c += 1;
        }
    }
    for &i in &kept {
        if let Some(c) = after.get_mut(train_y[i] as usize) {
            *c += 1;
        }
    }
    let emptied = (0..classes).filter(|&c| before[c] > 0 && after[c] == 0).count();
    if emptied > 0 {
        return Decision::Skip(format!(
            "{left_out} of {n} training rows overlap validation texts; leaving them out would leave {emptied} \
             class(es) without training rows, so C is chosen on all of them"
        ));
    }
    Decision::Purge { kept, left_out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(train: &[&str], valid: &[&str]) -> Vec<bool> {
        find_overlaps(train, valid).overlapping
    }

    #[test]
    fn sub_phrases_parents_and_duplicates_are_found() {
        let valid = ["a gorgeous , witty film", "the acting is flat"];
        let train = [
            "gorgeous , witty",                         // sub-phrase of a validation text
            "it is a gorgeous , witty film about love", // parent sentence of a validation text
            "a gorgeous , witty film",                  // exact duplicate
            "the plot is flat",                         // shares words, but not a contiguous run of either
            "an unrelated sentence entirely",           // nothing in common
            "witty film about",                         // overlaps only partly
        ];
        assert_eq!(flags(&train, &valid), vec![true, true, true, false, false, false]);
    }

    #[test]
    fn case_punctuation_and_spacing_do_not_matter() {
        let valid = ["It's a GREAT film!"];
        let train = [
            "it 's a great film",                   // PTB-style split apostrophe, no punctuation, lower case
            "  IT'S   a great -- film  ",           // extra spaces and dashes
            "Honestly, it's a great film, really.", // contains it, with punctuation around
            "it's a great",                         // contained
            "its a great film",                     // a different word
        ];
        assert_eq!(flags(&train, &valid), vec![true, true, true, true, false]);
    }

    #[test]
    fn sub_phrases_are_contained_duplicates_and_strangers_are_not() {
        let texts = [
            "a gorgeous , witty film", // contains the next two
            "gorgeous , witty",
            "Witty film",
            "the acting is flat", // a duplicate of the next, inside nothing
            "the acting is flat",
            "flat",            // inside the two above
            "film about love", // shares a word only
        ];
        assert_eq!(find_contained(&texts), vec![false, true, true, false, false, true, false]);
    }

    #[test]
    fn whole_text_split_holds_out_sentences_and_drops_their_pieces() {
        // Ten "parse trees": a sentence and two of its phrases each, labels by tree.
        let mut texts = Vec::new();
        let mut labels = Vec::new();
        for i in 0..10 {
            let label = if i % 2 == 0 { "pos" } else { "neg" };
            texts.push(format!("sentence {i} is long and {label} indeed"));
            texts.push(format!("sentence {i} is long"));
            texts.push(format!("{label} indeed"));
            labels.extend([label.to_string(), label.to_string(), label.to_string()]);
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let split = whole_text_split(&refs, &labels, 0.2, 7).expect("rows contain each other");
        assert_eq!(split.valid.len(), 2, "20% of the 10 sentences, one per class");
        for &v in &split.valid {
            assert_eq!(v % 3, 0, "only whole sentences are held out: {}", texts[v]);
        }
        // The held-out sentences' own phrases are gone; "pos indeed" / "neg indeed" are inside them too.
        for &t in &split.train {
            for &v in &split.valid {
                assert!(!texts[v].contains(texts[t].as_str()), "{} is inside {}", texts[t], texts[v]);
            }
        }
        assert_eq!(split.train.len() + split.valid.len() + split.left_out, texts.len());
        assert_eq!(split.left_out, 2 * 2 + 10 - 2, "two phrases per held-out tree, and every 'x indeed' row");
    }

    #[test]
    fn whole_text_split_declines_plain_data() {
        let texts = ["what is a cat", "where is paris", "who wrote hamlet", "how far is the moon"];
        let labels: Vec<String> = ["a", "b", "a", "b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(whole_text_split(&texts, &labels, 0.5, 1), None);
        // One question of twenty inside another is ordinary data, not phrase-level data.
        let mut texts: Vec<String> = (0..19).map(|i| format!("question number {i} here")).collect();
        texts.push("number 3 here".into());
        let labels: Vec<String> = (0..20).map(|i| if i % 2 == 0 { "a" } else { "b" }.to_string()).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        assert_eq!(find_contained(&refs).iter().filter(|&&c| c).count(), 1);
        assert_eq!(whole_text_split(&refs, &labels, 0.2, 1), None);
    }

    #[test]
    fn whole_words_only() {
        // "cat" is a run of characters of "concatenate" but not a word of it.
        assert_eq!(flags(&["concatenate them", "the cat sat"], &["cat"]), vec![false, true]);
    }

    #[test]
    fn texts_without_words_only_match_each_other() {
        // A validation text of punctuation alone must not count as contained in every training text.
        assert_eq!(flags(&["good film", ",", "..."], &[","]), vec![false, true, true]);
        assert_eq!(flags(&["good film", ","], &["good"]), vec![true, false]);
    }

    #[test]
    fn long_texts_are_still_matched_as_duplicates() {
        let long: String = (0..200).map(|i| format!("w{i} ")).collect();
        let limits = Limits { max_len: 8, ..Limits::default() };
        let sub: String = (10..20).map(|i| format!("w{i} ")).collect();
        let short: String = (10..15).map(|i| format!("w{i} ")).collect();
        let out = find_overlaps_within(&[&long, &sub, &short, "w3 w4"], &[&long], &limits);
        assert_eq!(out.max_len, 8);
        // The duplicate is found; a 10-word piece is beyond the cap; shorter pieces are found.
        assert_eq!(out.overlapping, vec![true, false, true, true]);
    }

    #[test]
    fn the_cap_shrinks_to_fit_the_limits() {
        let long: String = (0..100).map(|i| format!("w{i} ")).collect();
        let limits = Limits { max_len: 64, max_stored: 250, max_probes: u64::MAX };
        // 100 + 99 runs of lengths 1 and 2 fit in 250; adding length 3 (98 more) does not.
        let out = find_overlaps_within(&["w5 w6", "w5 w6 w7"], &[&long], &limits);
        assert_eq!(out.max_len, 2);
        assert_eq!(out.overlapping, vec![true, false]);
    }

    #[test]
    fn purge_keeps_the_rest() {
        let o = Overlaps { overlapping: vec![true, false, true, false, false], max_len: 64 };
        assert_eq!(decide(&o, &[0, 0, 1, 1, 0], 2), Decision::Purge { kept: vec![1, 3, 4], left_out: 2 });
        let none = Overlaps { overlapping: vec![false; 3], max_len: 64 };
        assert_eq!(decide(&none, &[0, 1, 0], 2), Decision::Nothing);
    }

    #[test]
    fn heavy_purges_go_ahead_but_not_below_the_floor() {
        // 62% left out (SST-2): still purged.
        let mut overlapping = vec![true; 62];
        overlapping.extend(vec![false; 38]);
        let y: Vec<u32> = (0..100).map(|i| (i % 2) as u32).collect();
        let o = Overlaps { overlapping, max_len: 64 };
        assert!(matches!(decide(&o, &y, 2), Decision::Purge { left_out: 62, .. }));
        // 95% left out: skipped, and the reason says so.
        let mut overlapping = vec![true; 95];
        overlapping.extend(vec![false; 5]);
        let o = Overlaps { overlapping, max_len: 64 };
        match decide(&o, &y, 2) {
            Decision::Skip(why) => assert!(why.contains("95 of 100") && why.contains("10%"), "{why}"),
            other => panic!("expected a skip, got {other:?}"),
        }
    }

    #[test]
    fn a_class_emptied_by_the_purge_skips_it() {
        // Class 2 has two training rows, both overlapping.
        let o = Overlaps { overlapping: vec![false, false, false, false, true, true], max_len: 64 };
        match decide(&o, &[0, 1, 0, 1, 2, 2], 3) {
            Decision::Skip(why) => assert!(why.contains("1 class(es)"), "{why}"),
            other => panic!("expected a skip, got {other:?}"),
        }
        // A class absent from the training part is no reason to skip.
        assert!(matches!(decide(&o, &[0, 1, 0, 1, 0, 1], 3), Decision::Purge { left_out: 2, .. }));
    }

    /// The definition, the slow way: word lists compared as strings.
    fn naive(train: &[&str], valid: &[&str]) -> Vec<bool> {
        let words = |t: &str| -> Vec<String> {
            t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
        };
        let contains = |hay: &[String], needle: &[String]| -> bool {
            if needle.is_empty() {
                return hay.is_empty();
            }
            hay.windows(needle.len()).any(|w| w == needle)
        };
        let valid: Vec<Vec<String>> = valid.iter().map(|t| words(t)).collect();
        train
            .iter()
            .map(|t| {
                let t = words(t);
                valid.iter().any(|v| contains(&t, v) || contains(v, &t))
            })
            .collect()
    }

    /// `n` random texts of `lens` words from a vocabulary of `vocab` words (small, so that overlaps are
    /// common), from a fixed-seed LCG.
    fn random_texts(n: usize, seed: u64, vocab: u64, lens: std::ops::Range<u64>) -> Vec<String> {
        let mut x = seed;
        let mut next = move |m: u64| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % m
        };
        (0..n)
            .map(|_| {
                let len = (lens.start + next(lens.end - lens.start)) as usize;
                let mut t: Vec<String> = (0..len).map(|_| format!("w{}", next(vocab))).collect();
                if next(4) == 0 {
                    t.push("!".into()); // punctuation only separates words
                }
                if next(5) == 0 {
                    t.iter_mut().for_each(|w| *w = w.to_uppercase());
                }
                t.join(" , ")
            })
            .collect()
    }

    #[test]
    fn agrees_with_the_definition() {
        let mut train = random_texts(3000, 1, 20, 0..10);
        let mut valid = random_texts(300, 2, 20, 2..6);
        // Texts without words on both sides.
        train.extend(["".to_string(), "?!".to_string()]);
        valid.push("...".into());
        let train: Vec<&str> = train.iter().map(String::as_str).collect();
        let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
        let fast = find_overlaps(&train, &valid);
        let slow = naive(&train, &valid);
        assert_eq!(fast.overlapping, slow);
        // Neither everything nor nothing: the comparison is not trivial.
        let n = fast.count();
        assert!(n > 100 && n < 2900, "{n}");
    }

    #[test]
    fn tens_of_thousands_of_phrases_are_quick() {
        // SST-2-like data: 10,000 sentences of 30 words, each with six of its sub-phrases.
        let mut texts = Vec::new();
        for k in 0..10_000 {
            let s: Vec<String> = (0..30).map(|j| format!("s{k}w{j}")).collect();
            for (a, b) in [(0, 30), (0, 15), (15, 30), (3, 9), (20, 22), (5, 6), (10, 25)] {
                texts.push(s[a..b].join(" "));
            }
        }
        let (valid, train): (Vec<_>, Vec<_>) = texts.iter().enumerate().partition(|(i, _)| i % 10 == 0);
        let valid: Vec<&str> = valid.into_iter().map(|(_, t)| t.as_str()).collect();
        let train: Vec<&str> = train.into_iter().map(|(_, t)| t.as_str()).collect();
        let t0 = std::time::Instant::now();
        let out = find_overlaps(&train, &valid);
        let took = t0.elapsed();
        assert_eq!(out.max_len, MAX_RUN_LEN);
        assert!(out.count() > 0 && out.count() < train.len(), "{}", out.count());
        assert!(took.as_secs_f64() < 10.0, "took {took:?}");
    }
}
