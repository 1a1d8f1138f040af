//! Reader of NumPy `.npy` files (format versions 1, 2 and 3), enough for prompt feature
//! files: little-endian or byte-sized numbers, C order, converted to f32.

use std::path::Path;

/// A numeric array read from a `.npy` file, as f32 values in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Largest accepted `.npy` file (bytes).
pub const MAX_NPY_BYTES: u64 = 256 * 1024 * 1024;

/// Reads `path`; the error is a sentence without the path (the caller names the file).
pub fn read(path: &Path) -> Result<NpyArray, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.len() > MAX_NPY_BYTES {
        return Err(format!("it is larger than {MAX_NPY_BYTES} bytes"));
    }
    parse(&std::fs::read(path).map_err(|e| e.to_string())?)
}

/// Parses the bytes of a `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<NpyArray, String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("it is not a NumPy .npy file (no \\x93NUMPY magic); write it with numpy.save".into());
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .ok_or("the .npy header is truncated")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let descr = dict_value(header, "descr").ok_or("the .npy header has no 'descr'")?;
    let quote = descr.chars().next().filter(|c| *c == '\'' || *c == '"');
    let descr = quote
        .and_then(|q| descr[1..].split(q).next())
        .ok_or("the .npy 'descr' is not a string")?;
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported: save a C-ordered array".into());
    }
    let shape_text = dict_value(header, "shape").ok_or("the .npy header has no 'shape'")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("the .npy shape is not a tuple")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad .npy dimension '{s}'"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("the .npy shape is too large")?;
    let data = &bytes[start + header_len..];
    let (size, convert): (usize, fn(&[u8]) -> f32) = match descr {
        "<f4" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "<f8" => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        "<f2" => (2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        "|b1" | "|u1" => (1, |b| b[0] as f32),
        "|i1" => (1, |b| b[0] as i8 as f32),
        "<i4" => (4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
        "<i8" => (8, |b| {
            i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        other => {
            return Err(format!(
                "element type '{other}' is not supported (use float32: numpy.save(path, a.astype('float32')))"
            ))
        }
    };
    let need = count.checked_mul(size).ok_or("the .npy shape is too large")?;
    if data.len() != need {
        return Err(format!(
            "the .npy data holds {} bytes, its shape {:?} of '{descr}' needs {need}",
            data.len(),
            shape
        ));
    }
    let values: Vec<f32> = data.chunks_exact(size).map(convert).collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err("it holds NaN or infinite values".into());
    }
    Ok(NpyArray { shape, values })
}

/// Text after `'key':` in a Python dict literal, up to the end of the header.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[pos + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// Bytes of a version 1 `.npy` file holding `values` as little-endian f32 (tests, tools).
pub fn encode_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let bytes = encode_f32(&[1, 2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
        let a = parse(&bytes).unwrap();
        assert_eq!(a.shape, vec![1, 2, 3]);
        assert_eq!(a.values[5], 6.5);
        assert!(parse(&bytes[..bytes.len() - 4]).unwrap_err().contains("needs 24"));
        assert!(parse(b"not numpy at all").unwrap_err().contains("magic"));
        let mut bad = bytes.clone();
        let at = bad.windows(3).position(|w| w == b"<f4").unwrap();
        bad[at..at + 3].copy_from_slice(b"<c8");
        assert!(parse(&bad).unwrap_err().contains("not supported"));
        let one = parse(&encode_f32(&[3], &[0.0, 1.0, 1.0])).unwrap();
        assert_eq!(one.shape, vec![3]);
    }
}
