//! PNG encoding of pictures drawn in memory (the `png` feature).
//!
//! Report charts are drawn into an RGB buffer and encoded here, then written with
//! [`crate::fsutil::write_atomic`]: one encoder and one writer for every crate that draws, so a chart is
//! never seen half-written and no crate keeps temporary-file code of its own.

use image::ImageEncoder as _;

/// An RGB picture (3 bytes a pixel, rows top to bottom: what plotters' `BitMapBackend::with_buffer`
/// draws into) of `width` x `height` pixels, encoded as PNG.
pub fn rgb_to_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, image::ImageError> {
    // The encoder asserts the size (a panic); a wrong one is the caller's error to report.
    if rgb.len() as u64 != u64::from(width) * u64::from(height) * 3 {
        use image::error::{ParameterError, ParameterErrorKind};
        return Err(image::ImageError::Parameter(ParameterError::from_kind(ParameterErrorKind::DimensionMismatch)));
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png).write_image(rgb, width, height, image::ColorType::Rgb8)?;
    Ok(png)
}

/// A zeroed RGB buffer for a `width` x `height` picture.
pub fn rgb_buffer(width: u32, height: u32) -> Vec<u8> {
    vec![0u8; width as usize * height as usize * 3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_png() {
        let png = rgb_to_png(&rgb_buffer(3, 2), 3, 2).expect("encodes");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(rgb_to_png(&[0u8; 5], 3, 2).is_err(), "a buffer of the wrong size is an error");
    }
}
