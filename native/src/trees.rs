//! The gradient-boosted trees of a compiled model, evaluated row by row.
//!
//! The oracle is `churnstream.model.arrays.TreeTables.raw`: each tree's leaf is found from
//! integer codes (a one-hot group's level code, or how many of a column's sorted thresholds
//! lie below the value) through packed lookup tables, and the raw score is the baseline plus
//! each tree's leaf, added one tree after the other in scikit-learn's order. Integer lookups
//! are exact and the additions run in the same order, so the result is the same float, bit
//! for bit; the tables come from Python at construction, so the model stays defined there.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

enum CodeSpec {
    /// A one-hot group: the row's level code in this column of `groups`.
    Group(usize),
    /// A numeric bin: how many of these sorted thresholds are below the design column's value.
    Numeric(usize, Vec<f64>),
}

struct Pack {
    members: Vec<usize>,
    radices: Vec<i64>,
    domain: i64,
    /// (domain, trees), row-major: each tree's leaf-index contribution per packed value.
    table: Vec<i64>,
}

/// A compiled model's trees (`TreeTables`), for `raw(design, groups)`.
#[pyclass(frozen)]
pub struct Trees {
    baseline: f64,
    codes: Vec<CodeSpec>,
    leaves: Vec<f64>,
    offsets: Vec<i64>,
    packs: Vec<Pack>,
}

#[pymethods]
impl Trees {
    /// `codes`: (is_group, source column, thresholds) per code; `offsets`: each tree's table
    /// start (used when there are no codes); `packs`: (members, radices, domain, table as a
    /// flat domain x trees list).
    #[new]
    fn new(
        baseline: f64,
        codes: Vec<(bool, usize, Vec<f64>)>,
        leaves: Vec<f64>,
        offsets: Vec<i64>,
        packs: Vec<(Vec<usize>, Vec<i64>, i64, Vec<i64>)>,
    ) -> PyResult<Self> {
        let n_trees = offsets.len();
        let codes: Vec<CodeSpec> = codes
            .into_iter()
            .map(|(group, source, thresholds)| {
                if group {
                    CodeSpec::Group(source)
                } else {
                    CodeSpec::Numeric(source, thresholds)
                }
            })
            .collect();
        let mut out = Vec::with_capacity(packs.len());
        for (members, radices, domain, table) in packs {
            let fits = members.len() == radices.len()
                && members.iter().all(|&m| m < codes.len())
                && domain > 0
                && table.len() == domain as usize * n_trees;
            if !fits {
                return Err(PyValueError::new_err("inconsistent tree pack"));
            }
            out.push(Pack {
                members,
                radices,
                domain,
                table,
            });
        }
        if !codes.is_empty() && out.is_empty() {
            return Err(PyValueError::new_err("codes without packs"));
        }
        Ok(Trees {
            baseline,
            codes,
            leaves,
            offsets,
            packs: out,
        })
    }

    /// The raw score of every row, as n little-endian float64s: `design` is the (n, width)
    /// float64 design matrix and `groups` the (n, groups) intp level codes, both C-contiguous.
    /// Raises ValueError for a code outside its table (Python would index another entry).
    fn raw<'py>(
        &self,
        py: Python<'py>,
        design: &Bound<'py, PyAny>,
        groups: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let design = PyBuffer::<f64>::get(design)?;
        let groups = PyBuffer::<i64>::get(groups)?;
        let (n, width) = matrix_shape(design.shape())?;
        let (n_groups_rows, n_groups) = matrix_shape(groups.shape())?;
        if n_groups_rows != n {
            return Err(PyValueError::new_err("design and groups differ in rows"));
        }
        let design = design
            .as_slice(py)
            .filter(|_| design.is_c_contiguous())
            .ok_or_else(|| PyValueError::new_err("design must be C-contiguous"))?;
        let groups = groups
            .as_slice(py)
            .filter(|_| groups.is_c_contiguous())
            .ok_or_else(|| PyValueError::new_err("groups must be C-contiguous"))?;
        for code in &self.codes {
            let fits = match code {
                CodeSpec::Group(source) => *source < n_groups,
                CodeSpec::Numeric(source, _) => *source < width,
            };
            if !fits {
                return Err(PyValueError::new_err(
                    "a code reads a column the input lacks",
                ));
            }
        }
        let n_trees = self.offsets.len();
        let mut scores = vec![0f64; n];
        let mut codes = vec![0i64; self.codes.len()];
        let mut index = vec![0i64; n_trees];
        for (row, score) in scores.iter_mut().enumerate() {
            let values = &design[row * width..(row + 1) * width];
            let levels = &groups[row * n_groups..(row + 1) * n_groups];
            for (slot, code) in codes.iter_mut().zip(&self.codes) {
                *slot = match code {
                    CodeSpec::Group(source) => levels[*source].get(),
                    // numpy's searchsorted(side="left"): thresholds strictly below the value.
                    CodeSpec::Numeric(source, thresholds) => {
                        let value = values[*source].get();
                        thresholds.partition_point(|&t| t < value) as i64
                    }
                };
            }
            if self.packs.is_empty() {
                index.copy_from_slice(&self.offsets);
            } else {
                index.iter_mut().for_each(|i| *i = 0);
                for pack in &self.packs {
                    let mut packed = 0i64;
                    for (&member, &radix) in pack.members.iter().zip(&pack.radices) {
                        packed += codes[member] * radix;
                    }
                    if !(0..pack.domain).contains(&packed) {
                        return Err(PyValueError::new_err("a code outside its table"));
                    }
                    let start = packed as usize * n_trees;
                    for (i, part) in index.iter_mut().zip(&pack.table[start..start + n_trees]) {
                        *i += part;
                    }
                }
            }
            // ((baseline + leaf 1) + leaf 2) + ...: scikit-learn's order, one tree at a time.
            let mut total = self.baseline;
            for &i in &index {
                let leaf = usize::try_from(i)
                    .ok()
                    .and_then(|i| self.leaves.get(i))
                    .ok_or_else(|| PyValueError::new_err("a leaf index outside the leaves"))?;
                total += leaf;
            }
            *score = total;
        }
        PyByteArray::new_with(py, n * 8, |bytes| {
            for (chunk, score) in bytes.chunks_exact_mut(8).zip(&scores) {
                chunk.copy_from_slice(&score.to_le_bytes());
            }
            Ok(())
        })
    }
}

fn matrix_shape(shape: &[usize]) -> PyResult<(usize, usize)> {
    match shape {
        [rows, columns] => Ok((*rows, *columns)),
        _ => Err(PyValueError::new_err("expected a 2-d array")),
    }
}
