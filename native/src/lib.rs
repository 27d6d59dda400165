//! churnstream's native hot path: the fast check of a batch of customer events, the
//! compiled model's trees (`trees.rs`) and the prediction bodies (`bodies.rs`).
//!
//! The contract is the one of `churnstream.scoring.validate.check_batch`: a row this check
//! accepts is a valid event and gives exactly the values the Python check gives; every other
//! row goes to the reference decoder, which accepts it or says why not. So the check may be
//! stricter than the Python one (it is: no escapes in strings, no exponents, no minus signs,
//! at most six fraction digits in a timestamp), never looser.
//!
//! The tables (field names, levels, bounds) come from Python at construction, so the wire
//! contract stays defined in one place (`churnstream.schemas`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDateTime, PyList, PyString, PyTuple};

mod bodies;
mod parse;
mod trees;
use parse::{ascii, customer_id, timestamp, Parser};

/// More than this many fields in a body: not a valid event (21 required + Churn).
const MAX_FIELDS: usize = 32;

#[derive(Clone, Copy)]
enum Kind {
    Id,
    Timestamp,
    Target,
    Categorical(usize),
    Integer {
        slot: usize,
        low: i64,
        high: i64,
    },
    Number {
        slot: usize,
        low: f64,
        high: Option<f64>,
        strings: bool,
    },
}

struct Field {
    name: Vec<u8>,
    kind: Kind,
}

/// One accepted row, before it becomes Python objects.
struct Row<'a> {
    position: usize,
    customer_id: &'a [u8],
    event_ts: &'a [u8],
    moment: (i32, u8, u8, u8, u8, u8, u32),
    integers: [i64; 2],
    numbers: [f64; 2],
}

/// The fast check, configured once with the contract's tables.
#[pyclass(frozen)]
struct Checker {
    fields: Vec<Field>,
    required: u64,
    n_categorical: usize,
    levels: Vec<Vec<Vec<u8>>>,
    target_values: Vec<Vec<u8>>,
    max_body_bytes: usize,
    max_number_chars: usize,
}

#[pymethods]
impl Checker {
    /// `categorical`: (name, levels) in code-column order; `integers`: (name, low, high) for
    /// the two integer columns; `numbers`: (name, low, high or None, strings allowed) for the
    /// two float columns, in FeatureBatch order.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        id_field: &str,
        timestamp_field: &str,
        target_field: &str,
        target_values: Vec<String>,
        categorical: Vec<(String, Vec<String>)>,
        integers: Vec<(String, i64, i64)>,
        numbers: Vec<(String, f64, Option<f64>, bool)>,
        max_body_bytes: usize,
        max_number_chars: usize,
    ) -> PyResult<Self> {
        if integers.len() != 2 || numbers.len() != 2 {
            return Err(PyValueError::new_err(
                "expected two integer and two number columns",
            ));
        }
        let mut fields = vec![
            Field {
                name: id_field.into(),
                kind: Kind::Id,
            },
            Field {
                name: timestamp_field.into(),
                kind: Kind::Timestamp,
            },
        ];
        let mut levels = Vec::new();
        for (i, (name, values)) in categorical.iter().enumerate() {
            fields.push(Field {
                name: name.as_bytes().to_vec(),
                kind: Kind::Categorical(i),
            });
            levels.push(values.iter().map(|v| v.as_bytes().to_vec()).collect());
        }
        for (slot, (name, low, high)) in integers.into_iter().enumerate() {
            fields.push(Field {
                name: name.into_bytes(),
                kind: Kind::Integer { slot, low, high },
            });
        }
        for (slot, (name, low, high, strings)) in numbers.into_iter().enumerate() {
            fields.push(Field {
                name: name.into_bytes(),
                kind: Kind::Number {
                    slot,
                    low,
                    high,
                    strings,
                },
            });
        }
        let required = (1u64 << fields.len()) - 1;
        fields.push(Field {
            name: target_field.into(),
            kind: Kind::Target,
        });
        if fields.len() > MAX_FIELDS {
            return Err(PyValueError::new_err("too many fields"));
        }
        Ok(Checker {
            fields,
            required,
            n_categorical: categorical.len(),
            levels,
            target_values: target_values.into_iter().map(String::into_bytes).collect(),
            max_body_bytes,
            max_number_chars,
        })
    }

    /// (positions, customer_ids, event_ts, event_dt, codes, integers, numbers, slow): the
    /// accepted rows column-wise (codes as n x n_categorical int8 bytes, the two integer
    /// columns as 2 x n little-endian int64 bytes, the two number columns likewise float64),
    /// and the positions the reference decoder must decide.
    fn check<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyList>,
        keys: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let n = values.len();
        if keys.len() != n {
            return Err(PyValueError::new_err("values and keys differ in length"));
        }
        // Borrow every body first: the slices live as long as the list holds the bytes.
        let mut bodies: Vec<Option<Bound<'py, PyBytes>>> = Vec::with_capacity(n);
        for value in values.iter() {
            bodies.push(value.cast_into::<PyBytes>().ok());
        }
        let mut key_bytes: Vec<Option<Option<Bound<'py, PyBytes>>>> = Vec::with_capacity(n);
        for key in keys.iter() {
            key_bytes.push(if key.is_none() {
                Some(None)
            } else {
                key.cast_into::<PyBytes>().ok().map(Some)
            });
        }
        let mut rows: Vec<Row> = Vec::with_capacity(n);
        let mut codes: Vec<u8> = Vec::with_capacity(n * self.n_categorical);
        let mut slow: Vec<usize> = Vec::new();
        let mut row_codes = vec![0u8; self.n_categorical];
        for position in 0..n {
            let accepted = match (&bodies[position], &key_bytes[position]) {
                (Some(body), Some(key)) => {
                    let key = key.as_ref().map(|k| k.as_bytes());
                    self.check_one(body.as_bytes(), key, position, &mut row_codes)
                }
                _ => None,
            };
            match accepted {
                Some(row) => {
                    rows.push(row);
                    codes.extend_from_slice(&row_codes);
                }
                None => slow.push(position),
            }
        }

        let m = rows.len();
        let mut integers: Vec<u8> = Vec::with_capacity(16 * m);
        let mut numbers: Vec<u8> = Vec::with_capacity(16 * m);
        for slot in 0..2 {
            for row in &rows {
                integers.extend_from_slice(&row.integers[slot].to_le_bytes());
                numbers.extend_from_slice(&row.numbers[slot].to_le_bytes());
            }
        }
        let positions = PyList::empty(py);
        let ids = PyList::empty(py);
        let stamps = PyList::empty(py);
        let moments = PyList::empty(py);
        for row in &rows {
            positions.append(row.position)?;
            // Checked ASCII, so valid UTF-8.
            ids.append(PyString::new(py, ascii(row.customer_id)))?;
            stamps.append(PyString::new(py, ascii(row.event_ts)))?;
            let (year, month, day, hour, minute, second, micro) = row.moment;
            moments.append(PyDateTime::new(
                py, year, month, day, hour, minute, second, micro, None,
            )?)?;
        }
        PyTuple::new(
            py,
            [
                positions.into_any(),
                ids.into_any(),
                stamps.into_any(),
                moments.into_any(),
                PyByteArray::new(py, &codes).into_any(),
                PyByteArray::new(py, &integers).into_any(),
                PyByteArray::new(py, &numbers).into_any(),
                PyList::new(py, slow)?.into_any(),
            ],
        )
    }
}

impl Checker {
    /// The row if the body is certainly a valid event (and the key, if any, its customerID).
    fn check_one<'a>(
        &self,
        body: &'a [u8],
        key: Option<&[u8]>,
        position: usize,
        codes: &mut [u8],
    ) -> Option<Row<'a>> {
        if body.is_empty() || body.len() > self.max_body_bytes {
            return None;
        }
        let mut p = Parser { s: body, i: 0 };
        let mut seen: u64 = 0;
        let mut row = Row {
            position,
            customer_id: &[],
            event_ts: &[],
            moment: (0, 0, 0, 0, 0, 0, 0),
            integers: [0; 2],
            numbers: [0.0; 2],
        };
        p.ws();
        p.expect(b'{')?;
        let mut guess = 0usize;
        loop {
            p.ws();
            let name = p.string()?;
            let index = self.find(name, guess)?;
            if seen & (1 << index) != 0 {
                return None; // a duplicate key: the reference says so
            }
            seen |= 1 << index;
            guess = index + 1;
            p.ws();
            p.expect(b':')?;
            p.ws();
            match self.fields[index].kind {
                Kind::Id => {
                    let id = p.string()?;
                    if !customer_id(id) {
                        return None;
                    }
                    row.customer_id = id;
                }
                Kind::Timestamp => {
                    let text = p.string()?;
                    row.moment = timestamp(text)?;
                    row.event_ts = text;
                }
                Kind::Target => {
                    if p.peek() == Some(b'n') {
                        p.literal(b"null")?;
                    } else {
                        let text = p.string()?;
                        if !self.target_values.iter().any(|v| v == text) {
                            return None;
                        }
                    }
                }
                Kind::Categorical(column) => {
                    let text = p.string()?;
                    let code = self.levels[column].iter().position(|v| v == text)?;
                    codes[column] = code as u8;
                }
                Kind::Integer { slot, low, high } => {
                    let value = p.integer()?;
                    if value < low || value > high {
                        return None;
                    }
                    row.integers[slot] = value;
                }
                Kind::Number {
                    slot,
                    low,
                    high,
                    strings,
                } => {
                    let value = if p.peek() == Some(b'"') {
                        if !strings {
                            return None;
                        }
                        self.number_string(p.string()?)?
                    } else {
                        let value = p.number()?;
                        if !(value >= low && high.is_none_or(|h| value <= h)) {
                            return None;
                        }
                        value
                    };
                    row.numbers[slot] = value;
                }
            }
            p.ws();
            match p.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
        p.ws();
        if p.i != body.len() || seen & self.required != self.required {
            return None;
        }
        if let Some(key) = key {
            if key != row.customer_id {
                return None;
            }
        }
        Some(row)
    }

    fn find(&self, name: &[u8], guess: usize) -> Option<usize> {
        // Producers write the fields in one order, mostly this one: try the next field first.
        if guess < self.fields.len() && self.fields[guess].name == name {
            return Some(guess);
        }
        self.fields.iter().position(|f| f.name == name)
    }

    /// TotalCharges as a string: plain digits (with one optional fraction), or blanks (0.0).
    fn number_string(&self, text: &[u8]) -> Option<f64> {
        if text.iter().all(|&c| c == b' ') {
            return Some(0.0);
        }
        if text.len() > self.max_number_chars {
            return None;
        }
        let dot = text.iter().position(|&c| c == b'.');
        let (whole, fraction) = match dot {
            Some(d) => (&text[..d], Some(&text[d + 1..])),
            None => (text, None),
        };
        if whole.is_empty() || !whole.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if let Some(f) = fraction {
            if f.is_empty() || !f.iter().all(u8::is_ascii_digit) {
                return None;
            }
        }
        ascii(text).parse::<f64>().ok().filter(|v| v.is_finite())
    }
}

#[pymodule]
fn churnstream_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Checker>()?;
    m.add_class::<trees::Trees>()?;
    m.add_function(wrap_pyfunction!(bodies::prediction_bodies, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
