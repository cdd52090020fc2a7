//! A bounds-checked reader of GGUF's little-endian primitives: every length is checked against the
//! bytes left in the file before anything is allocated or skipped.

use super::GgufError;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// A metadata value worth keeping (scalars and short strings; arrays are skipped).
#[derive(Debug)]
pub(super) enum Val {
    Uint(u64),
    Int(i64),
    Str(String),
    Other,
}

impl Val {
    pub(super) fn as_u64(&self) -> Option<u64> {
        match *self {
            Val::Uint(v) => Some(v),
            Val::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Strings longer than this are skipped rather than kept (chat templates can be large).
const KEEP_STRING: u64 = 1 << 20;
/// GGML_MAX_NAME: llama.cpp refuses longer tensor names.
pub(super) const MAX_TENSOR_NAME: u64 = 64;
/// GGML_MAX_DIMS.
pub(super) const MAX_DIMS: u32 = 4;

/// A bounds-checked little-endian reader that knows how many bytes are left in the file.
pub(super) struct Reader<'p> {
    r: BufReader<File>,
    /// Bytes read so far.
    pub(super) pos: u64,
    /// File length.
    pub(super) len: u64,
    path: &'p Path,
}

impl<'p> Reader<'p> {
    /// A reader at the start of `file`, which is `len` bytes long.
    pub(super) fn new(file: File, len: u64, path: &'p Path) -> Self {
        Reader { r: BufReader::with_capacity(1 << 16, file), pos: 0, len, path }
    }
    pub(super) fn truncated(&self, what: impl Into<String>) -> GgufError {
        GgufError::Truncated { path: self.path.to_path_buf(), what: what.into() }
    }
    pub(super) fn invalid(&self, what: impl Into<String>) -> GgufError {
        GgufError::Invalid { path: self.path.to_path_buf(), what: what.into() }
    }
    /// Fails unless `n` more bytes are in the file.
    pub(super) fn need(&self, n: u64, what: &str) -> Result<(), GgufError> {
        if n > self.len - self.pos {
            return Err(
                self.truncated(format!("{what} needs {n} bytes at offset {}, the file has {}", self.pos, self.len))
            );
        }
        Ok(())
    }
    pub(super) fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        self.need(N as u64, what)?;
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| self.io(e, what))?;
        self.pos += N as u64;
        Ok(b)
    }
    fn io(&self, e: io::Error, what: &str) -> GgufError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.truncated(format!("{what}: file shrank while reading"))
        } else {
            GgufError::Io { path: self.path.to_path_buf(), cause: e }
        }
    }
    pub(super) fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }
    pub(super) fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }
    pub(super) fn skip(&mut self, n: u64, what: &str) -> Result<(), GgufError> {
        self.need(n, what)?;
        // n <= bytes left in the file, which fits in i64.
        let off = i64::try_from(n).map_err(|_| self.invalid(format!("{what}: size {n} too large")))?;
        self.r.seek_relative(off).map_err(|e| self.io(e, what))?;
        self.pos += n;
        Ok(())
    }
    /// A string, or None (skipped) when longer than `keep`.
    pub(super) fn string(&mut self, keep: u64, what: &str) -> Result<Option<String>, GgufError> {
        let n = self.u64(what)?;
        self.need(n, what)?;
        if n > keep {
            self.skip(n, what)?;
            return Ok(None);
        }
        let mut b = vec![0u8; n as usize];
        self.r.read_exact(&mut b).map_err(|e| self.io(e, what))?;
        self.pos += n;
        Ok(Some(String::from_utf8_lossy(&b).trim_end_matches('\0').to_string()))
    }
    /// One metadata value of GGUF type `ty`.
    pub(super) fn value(&mut self, ty: u32, key: &str) -> Result<Val, GgufError> {
        Ok(match ty {
            0 => Val::Uint(u64::from(self.bytes::<1>(key)?[0])),
            1 => Val::Int(i64::from(i8::from_le_bytes(self.bytes(key)?))),
            2 => Val::Uint(u64::from(u16::from_le_bytes(self.bytes(key)?))),
            3 => Val::Int(i64::from(i16::from_le_bytes(self.bytes(key)?))),
            4 => Val::Uint(u64::from(self.u32(key)?)),
            5 => Val::Int(i64::from(i32::from_le_bytes(self.bytes(key)?))),
            6 => {
                self.skip(4, key)?;
                Val::Other
            }
            7 => match self.bytes::<1>(key)?[0] {
                0 | 1 => Val::Other,
                b => return Err(self.invalid(format!("key `{key}`: bad bool {b}"))),
            },
            8 => self.string(KEEP_STRING, key)?.map_or(Val::Other, Val::Str),
            9 => {
                self.array(key)?;
                Val::Other
            }
            10 => Val::Uint(self.u64(key)?),
            11 => Val::Int(i64::from_le_bytes(self.bytes(key)?)),
            12 => {
                self.skip(8, key)?;
                Val::Other
            }
            t => return Err(self.invalid(format!("key `{key}` has unknown value type {t}"))),
        })
    }
    /// Skips an array value.
    fn array(&mut self, key: &str) -> Result<(), GgufError> {
        let ty = self.u32(key)?;
        let n = self.u64(key)?;
        let fixed = match ty {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            8 => None,
            9 => return Err(self.invalid(format!("key `{key}`: nested arrays are not supported"))),
            t => return Err(self.invalid(format!("key `{key}`: unknown array element type {t}"))),
        };
        match fixed {
            Some(size) => {
                let total = n.checked_mul(size).ok_or_else(|| self.invalid(format!("key `{key}`: array too long")))?;
                self.skip(total, key)
            }
            None => {
                // Each string needs at least its 8-byte length: refuse impossible counts up front.
                self.need(n.saturating_mul(8), key)?;
                for _ in 0..n {
                    self.string(0, key)?;
                }
                Ok(())
            }
        }
    }
}
