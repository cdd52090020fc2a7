//! Writing tensors as a safetensors file, the way every other file of a classifier is written.
//!
//! candle's own `safetensors::save` goes through a temporary file that keeps tempfile's owner-only mode
//! (0600), so heads and neighbour stores came out unreadable to other users while the rest of the
//! classifier folder was readable (0644 under the usual umask). Here the tensors are serialised in
//! memory and written by [`rightmodel_core::fsutil::write_atomic`], which gives the normal mode.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use crate::TaskError;

/// Writes `tensors` to `path` as a safetensors file, atomically and with normal file permissions.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), TaskError> {
    let bytes = safetensors::serialize(tensors, None).map_err(candle_core::Error::from)?;
    rightmodel_core::fsutil::write_atomic(path, &bytes).map_err(|e| TaskError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn tensors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("head.safetensors");
        let mut map = HashMap::new();
        map.insert("w".to_string(), Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0], (2, 2), &Device::Cpu).unwrap());
        map.insert("b".to_string(), Tensor::from_vec(vec![0.5f32, -0.5], 2, &Device::Cpu).unwrap());
        save_tensors(&map, &path).unwrap();
        let back = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert_eq!(back["w"].to_vec2::<f32>().unwrap(), vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        assert_eq!(back["b"].to_vec1::<f32>().unwrap(), vec![0.5, -0.5]);
        let err = save_tensors(&map, &dir.path().join("missing").join("h.safetensors")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_readable_like_any_other() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.json");
        std::fs::write(&plain, "{}").unwrap();
        let path = dir.path().join("head.safetensors");
        let map = HashMap::from([("b".to_string(), Tensor::new(&[1f32], &Device::Cpu).unwrap())]);
        save_tensors(&map, &path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain), "{:o}", mode(&path));
    }
}
