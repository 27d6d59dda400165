//! A record to produce, borrowed from the Python objects that hold it: no copy before
//! librdkafka's own.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use rdkafka::message::{Header, OwnedHeaders};

/// One record's fields, borrowed from the Python objects that hold them.
pub struct Fields<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
}

/// (key, value, headers) of any tuple-like item of three.
pub fn triple<'py>(
    item: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if let Ok(tuple) = item.cast::<PyTuple>() {
        if tuple.len() == 3 {
            return Ok((tuple.get_item(0)?, tuple.get_item(1)?, tuple.get_item(2)?));
        }
    } else if item.len().ok() == Some(3) {
        return Ok((item.get_item(0)?, item.get_item(1)?, item.get_item(2)?));
    }
    Err(PyTypeError::new_err(
        "each message must be a (key, value, headers) triple",
    ))
}

/// The bytes of `obj` borrowed (None for None).
pub fn optional_bytes<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Option<&'a [u8]>> {
    if obj.is_none() {
        return Ok(None);
    }
    match obj.cast::<PyBytes>() {
        Ok(bytes) => Ok(Some(bytes.as_bytes())),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be bytes or None"
        ))),
    }
}

/// A list of (name, bytes or None) as librdkafka headers; an empty list is no headers.
pub fn owned_headers(headers: &Bound<'_, PyAny>) -> PyResult<Option<OwnedHeaders>> {
    let n = headers.len()?;
    if n == 0 {
        return Ok(None);
    }
    let mut owned = OwnedHeaders::new_with_capacity(n);
    for item in headers.try_iter()? {
        let item = item?;
        let (name, value) = match item.cast::<PyTuple>() {
            Ok(pair) if pair.len() == 2 => (pair.get_item(0)?, pair.get_item(1)?),
            _ => {
                return Err(PyTypeError::new_err(
                    "a header must be a (name, value) pair",
                ))
            }
        };
        let name = name
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("a header name must be str"))?;
        owned = owned.insert(Header {
            key: name.to_str()?,
            value: optional_bytes(&value, "a header value")?,
        });
    }
    Ok(Some(owned))
}
