//! Reads a `.safetensors` file only after its header has been checked against the file: the
//! 8-byte header length, and every tensor's `data_offsets` within the data and consistent with
//! its dtype and shape. A file whose header claims gigabytes it does not hold fails here, with
//! the tensor named, before candle sizes anything from it.

use std::{
    fs,
    io::{Read, Seek, SeekFrom},
    path::Path,
};

use serde::Deserialize;

use super::HfError;

/// Largest header accepted (the safetensors crate's own bound).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor entry of the header.
#[derive(Debug, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// Bytes per element of a safetensors dtype (sub-byte types are not supported).
fn element_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

/// Checks the header of the safetensors file at `path` against the file, then reads it whole.
pub(crate) fn read_checked(path: &Path) -> Result<Vec<u8>, HfError> {
    let io = |e: std::io::Error| HfError::Io { path: path.to_path_buf(), message: e.to_string() };
    let invalid = |message: String| HfError::Invalid { path: path.to_path_buf(), message };
    let mut file = fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(invalid("not a regular file".into()));
    }
    let file_len = meta.len();
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix)
        .map_err(|_| invalid(format!("not a safetensors file: {file_len} bytes, shorter than its 8-byte header length")))?;
    let header_len = u64::from_le_bytes(prefix);
    if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
        return Err(invalid(format!(
            "not a safetensors file: its header claims {header_len} bytes, the file has {} after the length (at most {MAX_HEADER_BYTES})",
            file_len - 8
        )));
    }
    let data_len = file_len - 8 - header_len;
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let entries: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| invalid(format!("the safetensors header is not a JSON object: {e}")))?;
    for (name, value) in entries {
        if name == "__metadata__" {
            continue;
        }
        let entry: Entry = serde_json::from_value(value).map_err(|e| invalid(format!("tensor '{name}': {e}")))?;
        let fail = |message: String| invalid(format!("tensor '{name}': {message}"));
        let size = element_size(&entry.dtype).ok_or_else(|| fail(format!("dtype {} is not supported", entry.dtype)))?;
        let [begin, end] = entry.data_offsets;
        if begin > end || end > data_len {
            return Err(fail(format!("data_offsets [{begin}, {end}] lie outside the {data_len} data bytes of the file")));
        }
        let needed = entry
            .shape
            .iter()
            .try_fold(size, |n, &d| n.checked_mul(d))
            .ok_or_else(|| fail(format!("shape {:?} claims more bytes than fit in memory", entry.shape)))?;
        if needed != end - begin {
            return Err(fail(format!(
                "shape {:?} of {} needs {needed} bytes, data_offsets cover {}",
                entry.shape,
                entry.dtype,
                end - begin
            )));
        }
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut data = Vec::with_capacity(usize::try_from(file_len).map_err(|_| invalid("the file does not fit in memory".into()))?);
    file.read_to_end(&mut data).map_err(io)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(tag: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("quiver-st-{tag}-{}.safetensors", std::process::id()));
        fs::write(&path, bytes).unwrap();
        path
    }

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.resize(bytes.len() + data, 0);
        bytes
    }

    fn error(tag: &str, bytes: &[u8]) -> String {
        let path = write(tag, bytes);
        let result = read_checked(&path);
        fs::remove_file(&path).unwrap();
        result.unwrap_err().to_string()
    }

    #[test]
    fn consistent_files_are_read() {
        let bytes = file(r#"{"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}"#, 16);
        let path = write("ok", &bytes);
        assert_eq!(read_checked(&path).unwrap(), bytes);
        fs::remove_file(&path).unwrap();
    }

    #[test]
    fn headers_that_claim_what_the_file_lacks_are_refused() {
        let mut huge = 100_000_000_000u64.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(error("hugeheader", &huge).contains("header claims 100000000000 bytes"));
        assert!(error("short", b"abc").contains("shorter than its 8-byte header length"));
        assert!(error("past", &file("{}", 0)[..5]).contains("shorter"));
        let cases = [
            (r#"{"w": {"dtype": "F32", "shape": [25000000000], "data_offsets": [0, 100000000000]}}"#, "outside the 16 data bytes"),
            (r#"{"w": {"dtype": "F32", "shape": [25000000000], "data_offsets": [0, 16]}}"#, "needs 100000000000 bytes"),
            (r#"{"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}}"#, "more bytes than fit"),
            (r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [16, 8]}}"#, "outside"),
            (r#"{"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}"#, "tensor 'w'"),
            (r#"{"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 1]}}"#, "dtype Q4"),
            (r#"{"w": {"dtype": "F32", "shape": [2]}}"#, "data_offsets"),
            (r#"[1, 2]"#, "not a JSON object"),
            (r#"{"w": "#, "not a JSON object"),
        ];
        for (i, (header, expected)) in cases.iter().enumerate() {
            let e = error(&format!("case{i}"), &file(header, 16));
            assert!(e.contains(expected), "case {i}: {e}");
        }
    }
}
