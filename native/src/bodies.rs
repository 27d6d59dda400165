//! The prediction bodies of a batch, written as `churnstream.scoring.encode` writes them.
//!
//! The body is a fixed text with four per-row fields between its pieces (customerID,
//! probability, label, event_ts). Probabilities are written by `zmij`, the crate orjson
//! writes floats with, so the text is orjson's byte for byte. Strings are copied as they
//! are: a string JSON would escape (or one that is not valid UTF-8) makes the whole batch
//! answer `None`, and the Python path, which escapes, writes it instead.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

/// Body pieces around the four fields: before customerID, probability, label, event_ts,
/// and after event_ts (the batch-wide fields and the closing brace).
const PIECES: usize = 5;

/// Each row's body as bytes, or `None` when a customerID or event_ts needs escaping.
///
/// `probabilities` are the little-endian float64 values, finite (the caller checks they are
/// within [0, 1]); `labels_yes` one byte per row, non-zero for `labels.0`.
#[pyfunction]
pub fn prediction_bodies<'py>(
    py: Python<'py>,
    pieces: Vec<String>,
    customer_ids: &Bound<'py, PyList>,
    event_ts: &Bound<'py, PyList>,
    probabilities: &[u8],
    labels_yes: &[u8],
    labels: (String, String),
) -> PyResult<Option<Bound<'py, PyList>>> {
    let n = customer_ids.len();
    if pieces.len() != PIECES
        || event_ts.len() != n
        || labels_yes.len() != n
        || probabilities.len() != 8 * n
    {
        return Err(PyValueError::new_err(
            "expected 5 pieces and one id, timestamp, probability and label per row",
        ));
    }
    // Borrow every string first: the slices live as long as the lists hold the strings.
    let mut ids: Vec<Bound<'py, PyString>> = Vec::with_capacity(n);
    let mut stamps: Vec<Bound<'py, PyString>> = Vec::with_capacity(n);
    for (id, stamp) in customer_ids.iter().zip(event_ts.iter()) {
        match (id.cast_into::<PyString>(), stamp.cast_into::<PyString>()) {
            (Ok(id), Ok(stamp)) => {
                ids.push(id);
                stamps.push(stamp);
            }
            _ => return Ok(None),
        }
    }
    let fixed: usize = pieces.iter().map(String::len).sum();
    let mut numbers = zmij::Buffer::new();
    let mut body: Vec<u8> = Vec::with_capacity(fixed + 64);
    let bodies = PyList::empty(py);
    for row in 0..n {
        let (Some(id), Some(stamp)) = (plain(&ids[row]), plain(&stamps[row])) else {
            return Ok(None);
        };
        let bits: [u8; 8] = probabilities[8 * row..8 * row + 8].try_into().unwrap();
        let probability = f64::from_le_bytes(bits);
        if !probability.is_finite() {
            return Ok(None);
        }
        let label = if labels_yes[row] != 0 {
            &labels.0
        } else {
            &labels.1
        };
        body.clear();
        body.extend_from_slice(pieces[0].as_bytes());
        body.extend_from_slice(id);
        body.extend_from_slice(pieces[1].as_bytes());
        body.extend_from_slice(numbers.format_finite(probability).as_bytes());
        body.extend_from_slice(pieces[2].as_bytes());
        body.extend_from_slice(label.as_bytes());
        body.extend_from_slice(pieces[3].as_bytes());
        body.extend_from_slice(stamp);
        body.extend_from_slice(pieces[4].as_bytes());
        bodies.append(PyBytes::new(py, &body))?;
    }
    Ok(Some(bodies))
}

/// The string's UTF-8 bytes if JSON writes them as they are (no quote, backslash or control
/// character); `None` otherwise, or if it is not valid UTF-8 (a lone surrogate).
fn plain<'a>(text: &'a Bound<'_, PyString>) -> Option<&'a [u8]> {
    let bytes = text.to_str().ok()?.as_bytes();
    if bytes.iter().any(|&c| c == b'"' || c == b'\\' || c < 0x20) {
        return None;
    }
    Some(bytes)
}
