//! GGUF metadata, read without loading tensors.
//!
//! The reader is our own rather than a library's so that it knows every ggml tensor type llama.cpp
//! knows, and so that a corrupt or truncated file is refused with a clear error before llama.cpp sees
//! it: every length is checked against the bytes left in the file before anything is allocated, and the
//! tensor data section is checked to lie inside the file.

mod reader;
mod types;

use reader::{Reader, Val, MAX_DIMS, MAX_TENSOR_NAME};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use types::{file_type_name, ggml_type};

/// What `rightmodel models` shows about a GGUF file, and proof that the file is complete.
#[derive(Debug, Clone, Serialize)]
pub struct GgufInfo {
    /// File size in bytes.
    pub file_size: u64,
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// `general.name`.
    pub name: Option<String>,
    /// `general.architecture` (e.g. `gemma3`, `llama`).
    pub architecture: Option<String>,
    /// Number of parameters (sum of tensor element counts).
    pub parameter_count: u64,
    /// Number of tensors.
    pub tensor_count: u64,
    /// Quantization named after `general.file_type` (e.g. `Q4_K_M`).
    pub quantization: Option<String>,
    /// The tensor type holding the most parameters (e.g. `Q4_K`).
    pub main_tensor_type: Option<String>,
    /// `<arch>.context_length`: the context the model was trained for.
    pub context_length: Option<u64>,
    /// `<arch>.embedding_length`: the hidden size.
    pub embedding_length: Option<u64>,
    /// `<arch>.block_count`: the number of layers.
    pub layer_count: Option<u64>,
}

/// Why a file is not a usable GGUF.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        cause: io::Error,
    },
    /// The file does not start with the GGUF magic.
    #[error("{path} is not a GGUF file (it does not start with `GGUF`): pass a .gguf model file")]
    NotGguf {
        /// The file.
        path: PathBuf,
    },
    /// A GGUF version this reader (and llama.cpp) does not support.
    #[error("{path}: unsupported GGUF version {version}{hint}: convert the model with a current llama.cpp")]
    Version {
        /// The file.
        path: PathBuf,
        /// Version found.
        version: u32,
        /// Extra explanation.
        hint: &'static str,
    },
    /// The file ends before the header or the tensor data does.
    #[error("{path} is truncated ({what}): the download or copy is incomplete; fetch it again (`rightmodel pull` for the default models)")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: String,
    },
    /// The header is inconsistent.
    #[error("{path} is not a valid GGUF file: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// One tensor's header entry.
struct Tensor {
    name: String,
    type_name: &'static str,
    elements: u64,
    bytes: u64,
    offset: u64,
}

impl GgufInfo {
    /// Reads the header of the GGUF file at `path` and checks that all tensor data lies inside it.
    pub fn read(path: &Path) -> Result<GgufInfo, GgufError> {
        let io_err = |cause| GgufError::Io { path: path.to_path_buf(), cause };
        let file = File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(GgufError::Invalid { path: path.to_path_buf(), what: "not a regular file".into() });
        }
        let mut r = Reader::new(file, meta.len(), path);
        if r.len < 4 || r.bytes::<4>("magic")? != *b"GGUF" {
            return Err(GgufError::NotGguf { path: path.to_path_buf() });
        }
        let version = r.u32("version")?;
        if version != 2 && version != 3 {
            let hint = if version & 0xFFFF == 0 {
                " (the file looks big-endian)"
            } else if version == 1 {
                " (GGUF v1 is obsolete)"
            } else {
                ""
            };
            return Err(GgufError::Version { path: path.to_path_buf(), version, hint });
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // Minimum sizes: a kv is key length + type + 1 byte; a tensor is name length + dims + type + offset.
        r.need(n_kv.saturating_mul(13).saturating_add(n_tensors.saturating_mul(24)), "header entries")?;

        let mut kv: HashMap<String, Val> = HashMap::new();
        for _ in 0..n_kv {
            let key = r.string(1 << 16, "metadata key")?.ok_or_else(|| r.invalid("metadata key longer than 64 KiB"))?;
            if key.is_empty() || kv.contains_key(&key) {
                return Err(r.invalid(format!("empty or duplicate metadata key `{key}`")));
            }
            let ty = r.u32(&key)?;
            let val = r.value(ty, &key)?;
            kv.insert(key, val);
        }
        let alignment = match kv.get("general.alignment") {
            None => 32,
            Some(Val::Uint(a)) if a.is_power_of_two() => *a,
            Some(_) => return Err(r.invalid("general.alignment is not a power of two")),
        };

        let mut tensors = Vec::new();
        let mut names = HashSet::new();
        for i in 0..n_tensors {
            let t = read_tensor(&mut r, i)?;
            if !names.insert(t.name.clone()) {
                return Err(r.invalid(format!("duplicate tensor name `{}`", t.name)));
            }
            tensors.push(t);
        }
        check_data(&r, &tensors, alignment)?;
        Ok(summarize(&kv, &tensors, version, r.len))
    }

    /// A short quantization label: the file type, else the main tensor type, else `?`.
    pub fn quant_label(&self) -> &str {
        self.quantization.as_deref().or(self.main_tensor_type.as_deref()).unwrap_or("?")
    }
}

/// Reads tensor info number `i`.
fn read_tensor(r: &mut Reader, i: u64) -> Result<Tensor, GgufError> {
    let what = format!("tensor {i}");
    let name = r.string(MAX_TENSOR_NAME - 1, &what)?.ok_or_else(|| r.invalid(format!("{what}: name too long")))?;
    let n_dims = r.u32(&name)?;
    if n_dims > MAX_DIMS {
        return Err(r.invalid(format!("tensor `{name}` has {n_dims} dimensions (max {MAX_DIMS})")));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(r.u64(&name)?);
    }
    let ty = r.u32(&name)?;
    let offset = r.u64(&name)?;
    let (type_name, block, block_bytes) =
        ggml_type(ty).ok_or_else(|| r.invalid(format!("tensor `{name}` has unknown type {ty}")))?;
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| if d > i64::MAX as u64 { None } else { acc.checked_mul(d) })
        .filter(|&e| e <= i64::MAX as u64)
        .ok_or_else(|| r.invalid(format!("tensor `{name}` has an impossible shape {dims:?}")))?;
    if dims.first().is_some_and(|d| d % block != 0) {
        return Err(r.invalid(format!("tensor `{name}` of type {type_name} has rows not a multiple of {block}")));
    }
    let bytes = (elements / block)
        .checked_mul(block_bytes)
        .ok_or_else(|| r.invalid(format!("tensor `{name}` is too large")))?;
    Ok(Tensor { name, type_name, elements, bytes, offset })
}

/// Checks that the tensors are laid out back to back from the aligned data offset and end inside the file.
fn check_data(r: &Reader, tensors: &[Tensor], alignment: u64) -> Result<(), GgufError> {
    let data_start = r.pos.div_ceil(alignment).saturating_mul(alignment);
    let mut expected = 0u64;
    for t in tensors {
        if t.offset != expected {
            return Err(r.invalid(format!("tensor `{}` has offset {}, expected {expected}", t.name, t.offset)));
        }
        let end = data_start.checked_add(t.offset).and_then(|s| s.checked_add(t.bytes));
        match end {
            Some(end) if end <= r.len => {}
            _ => {
                return Err(r.truncated(format!(
                    "tensor `{}` needs {} bytes at offset {}, the file has {} bytes",
                    t.name,
                    t.bytes,
                    data_start.saturating_add(t.offset),
                    r.len
                )))
            }
        }
        expected = t
            .bytes
            .checked_next_multiple_of(alignment)
            .and_then(|b| expected.checked_add(b))
            .ok_or_else(|| r.invalid("tensor data size overflows"))?;
    }
    Ok(())
}

/// Builds the info from the metadata and tensor list.
fn summarize(kv: &HashMap<String, Val>, tensors: &[Tensor], version: u32, file_size: u64) -> GgufInfo {
    let architecture = kv.get("general.architecture").and_then(Val::as_str).map(str::to_string);
    let arch_u64 = |suffix: &str| {
        let arch = architecture.as_deref()?;
        kv.get(&format!("{arch}.{suffix}")).and_then(Val::as_u64)
    };
    let mut by_type: HashMap<&str, u64> = HashMap::new();
    for t in tensors {
        let n = by_type.entry(t.type_name).or_default();
        *n = n.saturating_add(t.elements);
    }
    let main_tensor_type =
        by_type.into_iter().max_by_key(|&(n, e)| (e, std::cmp::Reverse(n))).map(|(n, _)| n.to_string());
    let quantization = kv
        .get("general.file_type")
        .and_then(Val::as_u64)
        .map(|ft| file_type_name(ft).map_or_else(|| format!("file_type {ft}"), str::to_string));
    GgufInfo {
        file_size,
        version,
        name: kv.get("general.name").and_then(Val::as_str).map(str::to_string),
        architecture: architecture.clone(),
        parameter_count: tensors.iter().fold(0u64, |a, t| a.saturating_add(t.elements)),
        tensor_count: tensors.len() as u64,
        quantization,
        main_tensor_type,
        context_length: arch_u64("context_length"),
        embedding_length: arch_u64("embedding_length"),
        layer_count: arch_u64("block_count"),
    }
}
