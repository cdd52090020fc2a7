//! What `rightmodel models` shows about a sentence-encoder directory (config.json + model.safetensors).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Files a sentence-encoder directory must contain.
pub const ENCODER_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Summary of an encoder directory, from its config.json and the safetensors header.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EncoderInfo {
    /// `model_type` (e.g. `bert`).
    pub model_type: Option<String>,
    /// `hidden_size`: the embedding width.
    pub hidden_size: Option<u64>,
    /// `num_hidden_layers`.
    #[serde(rename = "num_hidden_layers")]
    pub layers: Option<u64>,
    /// `vocab_size`.
    pub vocab_size: Option<u64>,
    /// `max_position_embeddings`: the longest input in tokens.
    pub max_position_embeddings: Option<u64>,
    /// Number of parameters, from the safetensors header.
    #[serde(default)]
    pub parameter_count: Option<u64>,
    /// The tensor dtype holding the most parameters (e.g. `F32`).
    #[serde(default)]
    pub dtype: Option<String>,
}

/// Why an encoder directory could not be described.
#[derive(Debug, thiserror::Error)]
pub enum EncoderInfoError {
    /// A file cannot be read.
    #[error("cannot read {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        cause: io::Error,
    },
    /// A file is not what it should be.
    #[error("{path} is invalid: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// One entry of a safetensors header.
#[derive(Deserialize)]
struct TensorEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

impl EncoderInfo {
    /// Reads `dir/config.json` and the header of `dir/model.safetensors`.
    pub fn read(dir: &Path) -> Result<EncoderInfo, EncoderInfoError> {
        let cfg = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg).map_err(|cause| EncoderInfoError::Io { path: cfg.clone(), cause })?;
        let mut info: EncoderInfo = serde_json::from_str(&text)
            .map_err(|e| EncoderInfoError::Invalid { path: cfg.clone(), what: e.to_string() })?;
        let st = dir.join("model.safetensors");
        let (params, dtype) = safetensors_summary(&st)?;
        info.parameter_count = Some(params);
        info.dtype = dtype;
        Ok(info)
    }
}

/// Parameter count and main dtype of a safetensors file, checking that its data lies inside the file.
pub fn safetensors_summary(path: &Path) -> Result<(u64, Option<String>), EncoderInfoError> {
    let io_err = |cause| EncoderInfoError::Io { path: path.to_path_buf(), cause };
    let invalid = |what: String| EncoderInfoError::Invalid { path: path.to_path_buf(), what };
    let mut f = File::open(path).map_err(io_err)?;
    let len = f.metadata().map_err(io_err)?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| invalid("shorter than a safetensors header".into()))?;
    let n = u64::from_le_bytes(n);
    if n > 100 << 20 || n > len - 8 {
        return Err(invalid(format!(
            "header length {n} does not fit in the file ({len} bytes): truncated or not safetensors"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(io_err)?;
    let map: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| invalid(format!("bad header: {e}")))?;
    let mut params = 0u64;
    let mut end = 0u64;
    let mut by_dtype: HashMap<String, u64> = HashMap::new();
    for (name, v) in map {
        if name == "__metadata__" {
            continue;
        }
        let t: TensorEntry = serde_json::from_value(v).map_err(|e| invalid(format!("tensor `{name}`: {e}")))?;
        let elems = t
            .shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| invalid(format!("tensor `{name}` too large")))?;
        params = params.saturating_add(elems);
        let by = by_dtype.entry(t.dtype).or_default();
        *by = by.saturating_add(elems);
        end = end.max(t.data_offsets[1]);
    }
    if end > len - 8 - n {
        return Err(invalid(format!(
            "tensor data ends at {end} but only {} bytes follow the header: the file is truncated",
            len - 8 - n
        )));
    }
    let dtype = by_dtype.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))).map(|(d, _)| d);
    Ok((params, dtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_parameter_counts_saturate_instead_of_overflowing() {
        let header = br#"{"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,0]}}"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        std::fs::write(&path, bytes).unwrap();
        let (params, dtype) = safetensors_summary(&path).unwrap();
        assert_eq!(params, u64::MAX);
        assert_eq!(dtype.as_deref(), Some("F32"));
    }
}
