//! A batch's messages as Python objects: `make(topic, partition, offset, key, value, headers)`
//! per message, with one string per topic and per header name reused within the batch.

use std::ffi::c_void;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use rdkafka::bindings as rdsys;

use crate::errors::{text_of, ErrorInfo, ERR_PARTITION_EOF};
use crate::events::Event;

/// The Python objects of one take(): one string per topic and per header name, reused.
pub struct Batch<'py, 'a> {
    py: Python<'py>,
    make: &'a Bound<'py, PyAny>,
    pub count: usize,
    topics: Vec<(*mut rdsys::rd_kafka_topic_t, Bound<'py, PyString>)>,
    header_names: Vec<(Vec<u8>, Bound<'py, PyString>)>,
}

impl<'py, 'a> Batch<'py, 'a> {
    pub fn new(py: Python<'py>, make: &'a Bound<'py, PyAny>) -> Self {
        Batch {
            py,
            make,
            count: 0,
            topics: Vec::new(),
            header_names: Vec::new(),
        }
    }

    fn topic(&mut self, rkt: *mut rdsys::rd_kafka_topic_t) -> Bound<'py, PyString> {
        if let Some((_, name)) = self.topics.iter().find(|(t, _)| *t == rkt) {
            return name.clone();
        }
        // SAFETY: the message's live topic handle.
        let name = PyString::new(
            self.py,
            &text_of(unsafe { rdsys::rd_kafka_topic_name(rkt) }),
        );
        self.topics.push((rkt, name.clone()));
        name
    }

    fn header_name(&mut self, raw: &[u8]) -> Bound<'py, PyString> {
        if let Some((_, name)) = self.header_names.iter().find(|(n, _)| n == raw) {
            return name.clone();
        }
        let name = PyString::new(self.py, &String::from_utf8_lossy(raw));
        self.header_names.push((raw.to_vec(), name.clone()));
        name
    }

    /// The fetch event's message as `make(...)`, or its error into `errors`.
    pub fn add(
        &mut self,
        event: &Event,
        records: &Bound<'py, PyList>,
        errors: &Bound<'py, PyList>,
    ) -> PyResult<()> {
        // SAFETY: a live fetch event holds one message, which lives as long as the event
        // (this also moves the client's position past it, as rd_kafka_consumer_poll does).
        let message = unsafe { rdsys::rd_kafka_event_message_next(event.ptr()) };
        if message.is_null() {
            return Ok(());
        }
        // SAFETY: see above.
        let m = unsafe { &*message };
        let topic = self.topic(m.rkt);
        let code = m.err as i32;
        if code != 0 {
            if code != ERR_PARTITION_EOF {
                let info = ErrorInfo::from_code(code, None, false);
                let entry = (info.code, info.name, info.text, false, topic, m.partition);
                errors.append(entry)?;
            }
            return Ok(());
        }
        let py = self.py;
        let key = bytes_at(py, m.key, m.key_len);
        let value = bytes_at(py, m.payload, m.len);
        let headers = self.headers(message)?;
        let record = self
            .make
            .call1((topic, m.partition, m.offset, key, value, headers))?;
        records.append(record)?;
        self.count += 1;
        Ok(())
    }

    /// The message's headers as [(name, bytes or None)], or None when it has none.
    fn headers(&mut self, message: *const rdsys::rd_kafka_message_t) -> PyResult<Py<PyAny>> {
        let py = self.py;
        let mut hdrs: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: a live message; the headers belong to it.
        let err = unsafe { rdsys::rd_kafka_message_headers(message, &mut hdrs) } as i32;
        // SAFETY: non-NULL headers of a live message.
        if err != 0 || hdrs.is_null() || unsafe { rdsys::rd_kafka_header_cnt(hdrs) } == 0 {
            return Ok(py.None());
        }
        let list = PyList::empty(py);
        let mut index = 0usize;
        loop {
            let mut name = std::ptr::null();
            let mut value: *const c_void = std::ptr::null();
            let mut size = 0usize;
            // SAFETY: as above; the out-pointers are valid for the call and what they point
            // to lives as long as the message.
            let err = unsafe {
                rdsys::rd_kafka_header_get_all(hdrs, index, &mut name, &mut value, &mut size)
            } as i32;
            if err != 0 {
                break;
            }
            // SAFETY: a NUL-terminated name owned by the headers.
            let raw = unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes();
            let pair = PyTuple::new(
                py,
                [
                    self.header_name(raw).into_any(),
                    bytes_at(py, value, size).into_bound(py),
                ],
            )?;
            list.append(pair)?;
            index += 1;
        }
        Ok(list.into_any().unbind())
    }
}

/// bytes copied from librdkafka's buffer, or None for NULL.
fn bytes_at(py: Python<'_>, ptr: *const c_void, len: usize) -> Py<PyAny> {
    if ptr.is_null() {
        return py.None();
    }
    // SAFETY: librdkafka's buffer of `len` bytes, alive while its message is.
    let slice = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    PyBytes::new(py, slice).into_any().unbind()
}
