//! Task classifiers trained on user data.
//!
//! Two modes share one directory layout and one prediction API ([`Classifier`]):
//! - `fast`: frozen sentence embeddings from the local encoder, joined by word n-gram TF-IDF, and a
//!   multinomial logistic-regression head (L2 strength picked on the validation split; when that split
//!   is held out from the training file, training rows overlapping it are left out while picking, see
//!   [`purge`], and the head is then refit on all rows). Training is dominated by embedding the data.
//! - `finetune`: the whole encoder fine-tuned with a linear head on mean-pooled token states, its
//!   probabilities mixed with a `fast` head's at a weight chosen on validation (see [`blend`]).
//!
//! Every prediction carries `in_domain` in [0, 1]: the mean similarity of the text's frozen embedding to
//! its nearest stored training embeddings, calibrated on the validation split (see [`domain`]); the
//! router uses it to keep a task model on the requests it knows.
//!
//! A classifier directory (`$RIGHTMODEL_HOME/classifiers/NAME/`, or any path) holds:
//! - `classifier.json` ([`manifest::Manifest`]): labels, mode, encoder, settings, data hashes,
//!   validation metrics, domain calibration;
//! - `head.safetensors` (+ `ngrams.json` in `fast` mode), or `encoder/` + `head.safetensors` in
//!   `finetune` mode (plus `blend/` with a `fast` head when the mix gives it weight);
//! - `neighbours.safetensors` + `neighbours.json`: a capped sample of training embeddings (f16), labels
//!   and texts for explanations and domain fit;
//! - `metrics.md`: the training report.
//!
//! Directories are written to a temporary sibling and renamed into place, so a failed run leaves nothing.

pub mod bert_train;
pub mod blend;
pub mod classifier;
pub mod data;
pub mod domain;
pub mod embed;
pub mod error;
pub mod eval;
pub mod explain;
pub mod fast;
pub mod finetune;
pub mod lbfgs;
pub mod logreg;
pub mod manifest;
pub mod metrics;
pub mod ngrams;
pub mod plot;
pub mod progress;
pub mod purge;
pub mod registry;
pub mod tensor_file;
pub mod train;

pub use classifier::{Classifier, Prediction};
pub use error::TaskError;
pub use explain::{Explanation, Neighbour};
pub use manifest::Mode;
pub use progress::{NoProgress, Progress};
