//! librdkafka's errors as Python sees them: `KafkaError(code, name, text, fatal, retriable)`,
//! `ValueError` for a refused configuration, `BufferError` for a full local queue.

use std::collections::HashMap;
use std::ffi::{c_char, CStr};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use rdkafka::bindings as rdsys;
use rdkafka::config::{ClientConfig, FromClientConfig};
use rdkafka::error::KafkaError as RdError;

create_exception!(
    churnstream_native_io,
    KafkaError,
    PyException,
    "A librdkafka error: args = (code, name, text, fatal, retriable)."
);

/// librdkafka's generic failure, for the crate's errors that carry no error code.
pub const ERR_FAIL: i32 = rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__FAIL as i32;
/// The code a closed consumer answers with, as librdkafka does for a call in the wrong state.
pub const ERR_STATE: i32 = rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__STATE as i32;
pub const ERR_FATAL: i32 = rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__FATAL as i32;
pub const ERR_PARTITION_EOF: i32 =
    rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF as i32;

/// One error, in the shape both `KafkaError.args` and the callbacks use.
#[derive(Clone, Debug)]
pub struct ErrorInfo {
    pub code: i32,
    pub name: String,
    pub text: String,
    pub fatal: bool,
    pub retriable: bool,
}

/// A C string owned by librdkafka, as Rust text (empty for NULL).
pub fn text_of(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: librdkafka hands out NUL-terminated strings that live at least as long as the
    // object they came from; this copies before that ends.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// rd_kafka_err2name: "_TRANSPORT", "UNKNOWN_TOPIC_OR_PART", ...
pub fn err_name(code: i32) -> String {
    match rdsys::rd_kafka_resp_err_t::try_from(code) {
        // SAFETY: returns a static string for any code.
        Ok(err) => text_of(unsafe { rdsys::rd_kafka_err2name(err) }),
        Err(_) => format!("ERR_{code}"),
    }
}

/// rd_kafka_err2str: the code's description.
pub fn err_text(code: i32) -> String {
    match rdsys::rd_kafka_resp_err_t::try_from(code) {
        // SAFETY: returns a static string for any code.
        Ok(err) => text_of(unsafe { rdsys::rd_kafka_err2str(err) }),
        Err(_) => format!("Unknown error {code}"),
    }
}

impl ErrorInfo {
    /// An error from its code; `text` when librdkafka gave a more precise one.
    pub fn from_code(code: i32, text: Option<String>, fatal: bool) -> Self {
        ErrorInfo {
            code,
            name: err_name(code),
            text: text
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| err_text(code)),
            fatal,
            retriable: false,
        }
    }

    /// An error of the rdkafka crate; one without a librdkafka code becomes `_FAIL` with the
    /// crate's own message.
    pub fn from_rdkafka(err: &RdError) -> Self {
        match err.rdkafka_error_code() {
            Some(code) => {
                let mut info = ErrorInfo::from_code(code as i32, None, false);
                info.fatal = matches!(err, RdError::MessageConsumptionFatal(_));
                if let RdError::Transaction(e) = err {
                    info.fatal = e.is_fatal();
                    info.retriable = e.is_retriable();
                    info.text = e.to_string();
                }
                info
            }
            None => ErrorInfo::from_code(ERR_FAIL, Some(one_line(&err.to_string())), false),
        }
    }

    /// The client's fatal error, if it has one (rd_kafka_fatal_error).
    pub fn fatal_of(client: *mut rdsys::rd_kafka_t) -> Option<Self> {
        let mut buf = [0 as c_char; 512];
        // SAFETY: the client is alive (the caller holds it) and the buffer is as long as said.
        let err = unsafe { rdsys::rd_kafka_fatal_error(client, buf.as_mut_ptr(), buf.len()) };
        let code = err as i32;
        (code != 0).then(|| ErrorInfo::from_code(code, Some(text_of(buf.as_ptr())), true))
    }

    /// The Python exception: `KafkaError(code, name, text, fatal, retriable)`.
    pub fn into_py(self) -> PyErr {
        KafkaError::new_err((self.code, self.name, self.text, self.fatal, self.retriable))
    }

    /// The arguments of `error_cb(code, name, text, fatal)`.
    pub fn callback_args(&self) -> (i32, &str, &str, bool) {
        (self.code, &self.name, &self.text, self.fatal)
    }
}

/// A crate error as the Python exception.
pub fn kafka_err(err: &RdError) -> PyErr {
    ErrorInfo::from_rdkafka(err).into_py()
}

/// A client of either kind from these properties, created without the GIL; a property
/// librdkafka refuses is a ValueError with its message.
pub fn create_client<C: FromClientConfig + Send>(
    py: Python<'_>,
    config: &HashMap<String, String>,
) -> PyResult<C> {
    let mut client_config = ClientConfig::new();
    for (key, value) in config {
        client_config.set(key, value);
    }
    py.detach(|| client_config.create())
        .map_err(|e| config_err(&e))
}

/// The error of a refused client configuration: librdkafka's message, on one line.
fn config_err(err: &RdError) -> PyErr {
    let message = match err {
        RdError::ClientConfig(_, description, _, _) => description.clone(),
        RdError::ClientCreation(message) => message.clone(),
        other => other.to_string(),
    };
    PyValueError::new_err(one_line(&message))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Report an exception raised by a Python callback the way Python reports an exception it
/// cannot raise (sys.unraisablehook), and go on: librdkafka's events must all be served.
pub fn report_callback_error(py: Python<'_>, err: PyErr, callback: &Py<PyAny>) {
    err.write_unraisable(py, Some(callback.bind(py)));
}
