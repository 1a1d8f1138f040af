//! Reader of NumPy `.npy` files (format versions 1, 2 and 3, read by the `npyz` crate) for
//! prompt feature files: floats, integers or booleans in C order, converted to f32, with
//! the size limits and the sentences of the configuration errors.

use std::path::Path;

use npyz::{DType, NpyFile, NpyHeader, Order, TypeChar};

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

/// Parses the bytes of a `.npy` file (header and element reading by `npyz`; the checks and
/// sentences are ours).
pub fn parse(bytes: &[u8]) -> Result<NpyArray, String> {
    if !bytes.starts_with(b"\x93NUMPY") {
        return Err("it is not a NumPy .npy file (no \\x93NUMPY magic); write it with numpy.save".into());
    }
    let mut data = bytes;
    let header =
        NpyHeader::from_reader(&mut data).map_err(|e| format!("the .npy header cannot be read ({e})"))?;
    if header.order() == Order::Fortran {
        return Err("Fortran-ordered arrays are not supported: save a C-ordered array".into());
    }
    let shape = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<_>>>()
        .ok_or("the .npy shape is too large")?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("the .npy shape is too large")?;
    let dtype = header.dtype();
    let unsupported = |descr: &str| {
        format!(
            "element type '{descr}' is not supported (use float32: numpy.save(path, a.astype('float32')))"
        )
    };
    let DType::Plain(ty) = &dtype else {
        return Err(unsupported(&dtype.descr()));
    };
    let descr = ty.to_string();
    type Read = fn(NpyFile<&[u8]>) -> std::io::Result<Vec<f32>>;
    let (size, read): (usize, Read) = match (ty.type_char(), ty.num_bytes()) {
        (TypeChar::Float, Some(4)) => (4, |f| f.into_vec::<f32>()),
        (TypeChar::Float, Some(8)) => (8, |f| widened(f, |v: f64| v as f32)),
        (TypeChar::Float, Some(2)) => (2, |f| widened(f, |v: half::f16| v.to_f32())),
        (TypeChar::Bool, Some(1)) => (1, |f| widened(f, |v: bool| u8::from(v) as f32)),
        (TypeChar::Uint, Some(1)) => (1, |f| widened(f, |v: u8| v as f32)),
        (TypeChar::Int, Some(1)) => (1, |f| widened(f, |v: i8| v as f32)),
        (TypeChar::Int, Some(4)) => (4, |f| widened(f, |v: i32| v as f32)),
        (TypeChar::Int, Some(8)) => (8, |f| widened(f, |v: i64| v as f32)),
        _ => return Err(unsupported(&descr)),
    };
    let need = count.checked_mul(size).ok_or("the .npy shape is too large")?;
    if data.len() != need {
        return Err(format!(
            "the .npy data holds {} bytes, its shape {shape:?} of '{descr}' needs {need}",
            data.len()
        ));
    }
    let values = read(NpyFile::with_header(header, data))
        .map_err(|e| format!("the .npy data cannot be read ({e})"))?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err("it holds NaN or infinite values".into());
    }
    Ok(NpyArray { shape, values })
}

/// The elements of `file` read as `T` and converted with `f`.
fn widened<T: npyz::Deserialize>(file: NpyFile<&[u8]>, f: impl Fn(T) -> f32) -> std::io::Result<Vec<f32>> {
    Ok(file.into_vec::<T>()?.into_iter().map(f).collect())
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
        // Big-endian floats (numpy's '>f4') read to the same values.
        let mut big = encode_f32(&[2], &[1.5, -2.0]);
        let at = big.windows(3).position(|w| w == b"<f4").unwrap();
        big[at] = b'>';
        let data = big.len() - 8;
        for v in big[data..].chunks_exact_mut(4) {
            v.reverse();
        }
        assert_eq!(parse(&big).unwrap().values, vec![1.5, -2.0]);
        let mut nan = encode_f32(&[1], &[f32::NAN]);
        assert!(parse(&nan).unwrap_err().contains("NaN"));
        nan[6] = 9;
        assert!(parse(&nan).unwrap_err().contains("header"), "{:?}", parse(&nan));
    }
}
