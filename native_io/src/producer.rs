//! `Producer`: a librdkafka producer whose delivery reports are handled in Rust. Successes are
//! only counted; each failure calls `on_failure` with the GIL, from within poll, flush or
//! produce_all. A whole batch goes out in one `produce_all` call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use rdkafka::bindings as rdsys;
use rdkafka::error::KafkaError as RdError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::errors::{create_client, report_callback_error, text_of, ErrorInfo, ERR_FATAL};
use crate::events::{seconds, timeout_ms, Event, Queue};
use crate::outgoing::{optional_bytes, owned_headers, triple, Fields};

/// After a full local queue, serve deliveries this long before trying the same message again.
const QUEUE_FULL_POLL: Duration = Duration::from_millis(100);
/// The longest single wait of flush between looks at the out-queue.
const FLUSH_STEP: Duration = Duration::from_millis(100);

#[pyclass(frozen, module = "churnstream_native_io")]
pub struct Producer {
    // Dropped before the producer: a queue reference must not outlive its client.
    queue: Queue,
    producer: BaseProducer,
    on_failure: Option<Py<PyAny>>,
    error_cb: Option<Py<PyAny>>,
    delivered: AtomicU64,
    failed: AtomicU64,
}

#[pymethods]
impl Producer {
    #[new]
    #[pyo3(signature = (config, on_failure=None, error_cb=None))]
    fn new(
        py: Python<'_>,
        config: HashMap<String, String>,
        on_failure: Option<Py<PyAny>>,
        error_cb: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let producer: BaseProducer = create_client(py, &config)?;
        let queue = Queue::of(producer.client().native_ptr(), false)
            .ok_or_else(|| ErrorInfo::from_code(crate::errors::ERR_FAIL, None, false).into_py())?;
        Ok(Producer {
            queue,
            producer,
            on_failure,
            error_cb,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// Queue one record. A full local queue raises BufferError (serve deliveries, then retry).
    #[pyo3(signature = (topic, value, key=None, headers=None))]
    fn produce(
        &self,
        topic: &str,
        value: Option<&[u8]>,
        key: Option<&[u8]>,
        headers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let fields = Fields {
            key,
            value,
            headers: match headers {
                Some(h) => owned_headers(h)?,
                None => None,
            },
        };
        self.send(topic, fields).map_err(|(info, _)| info)
    }

    /// Queue each (key, value, headers) in order; on a full local queue, serve deliveries for
    /// up to 0.1 s and retry the same record; then serve what is ready.
    fn produce_all(
        &self,
        py: Python<'_>,
        topic: &str,
        messages: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let produce_one = |item: Bound<'_, PyAny>| -> PyResult<()> {
            let (key, value, headers) = triple(&item)?;
            let mut fields = Fields {
                key: optional_bytes(&key, "key")?,
                value: optional_bytes(&value, "value")?,
                headers: if headers.is_none() {
                    None
                } else {
                    owned_headers(&headers)?
                },
            };
            loop {
                match self.send(topic, fields) {
                    Ok(()) => return Ok(()),
                    Err((_, Some(returned))) => {
                        fields = returned;
                        self.serve(py, QUEUE_FULL_POLL);
                    }
                    Err((err, None)) => return Err(err),
                }
            }
        };
        if let Ok(list) = messages.cast::<PyList>() {
            for item in list.iter() {
                produce_one(item)?;
            }
        } else {
            for item in messages.try_iter()? {
                produce_one(item?)?;
            }
        }
        self.serve(py, Duration::ZERO);
        Ok(())
    }

    /// Serve delivery reports and client errors, waiting up to `timeout_s` (GIL released) for
    /// the first; the number of reports and errors served.
    fn poll(&self, py: Python<'_>, timeout_s: f64) -> usize {
        self.serve(py, seconds(timeout_s))
    }

    /// Serve events until every queued record is delivered or failed, or `timeout_s` passed;
    /// the number of records still in the out-queue (0: all delivered or failed).
    ///
    /// librdkafka's flush runs on a helper thread meanwhile: while it runs, the broker threads
    /// send at once what linger.ms would hold back. It cannot serve the delivery reports (the
    /// crate asks for them as events, and in that mode flush only waits), so this thread does,
    /// returning as soon as the out-queue is empty.
    fn flush(&self, py: Python<'_>, timeout_s: f64) -> i32 {
        if self.out_queue() == 0 {
            self.serve(py, Duration::ZERO);
            return self.out_queue();
        }
        let timeout = seconds(timeout_s);
        let client = ClientPtr(self.producer.client().native_ptr());
        let wait_ms = timeout_ms(timeout);
        // All of it without the GIL: a thread that wants the GIL back while another one runs
        // Python waits for the switch interval (5 ms) each time; callbacks come after.
        let (left, callbacks) = py.detach(move || {
            let deadline = Instant::now() + timeout;
            let mut callbacks = Callbacks::default();
            std::thread::scope(|scope| {
                let queue = &self.queue;
                scope.spawn(move || {
                    // SAFETY: the producer outlives the scope; librdkafka's flush is
                    // thread-safe.
                    unsafe { rdsys::rd_kafka_flush(client.get(), wait_ms) };
                    // Its return may bring no event (with delivery.report.only.error, a
                    // success has none): wake the wait below to look at the out-queue.
                    queue.wake();
                });
                loop {
                    let left = self.out_queue();
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if left == 0 || remaining.is_zero() {
                        return (left, callbacks);
                    }
                    self.drain(remaining.min(FLUSH_STEP), &mut callbacks);
                }
            })
        });
        self.call_back(py, callbacks);
        left
    }

    /// Drop queued (`in_queue`) and in-flight (`in_flight`) records; each one's failure
    /// (`_PURGE_QUEUE`, `_PURGE_INFLIGHT`) is reported by the next poll or flush.
    #[pyo3(signature = (in_queue=true, in_flight=true))]
    fn purge(&self, py: Python<'_>, in_queue: bool, in_flight: bool) -> PyResult<()> {
        let mut flags = 0;
        if in_queue {
            flags |= rdsys::RD_KAFKA_PURGE_F_QUEUE;
        }
        if in_flight {
            flags |= rdsys::RD_KAFKA_PURGE_F_INFLIGHT;
        }
        let client = ClientPtr(self.producer.client().native_ptr());
        // SAFETY: the producer outlives the call; librdkafka's purge is thread-safe.
        let err = py.detach(move || unsafe { rdsys::rd_kafka_purge(client.get(), flags) }) as i32;
        if err != 0 {
            return Err(ErrorInfo::from_code(err, None, false).into_py());
        }
        Ok(())
    }

    fn __len__(&self) -> usize {
        usize::try_from(self.out_queue()).unwrap_or(0)
    }

    /// Successful deliveries so far.
    #[getter]
    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Failed deliveries so far.
    #[getter]
    fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// (code, name, text) of the producer's fatal error, if it is fatally broken.
    fn fatal_error(&self) -> Option<(i32, String, String)> {
        ErrorInfo::fatal_of(self.producer.client().native_ptr()).map(|e| (e.code, e.name, e.text))
    }
}

/// The client pointer, to hand to a closure that runs without the GIL.
#[derive(Clone, Copy)]
struct ClientPtr(*mut rdsys::rd_kafka_t);
// SAFETY: librdkafka's client API is thread-safe; the owner keeps the client alive.
unsafe impl Send for ClientPtr {}
impl ClientPtr {
    fn get(self) -> *mut rdsys::rd_kafka_t {
        self.0
    }
}

impl Producer {
    fn out_queue(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Queue one record. On a full queue the fields come back to retry with; on any other
    /// refusal, the exception to raise.
    #[allow(clippy::result_large_err)]
    fn send<'a>(
        &self,
        topic: &'a str,
        fields: Fields<'a>,
    ) -> Result<(), (PyErr, Option<Fields<'a>>)> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        record.key = fields.key;
        record.payload = fields.value;
        record.headers = fields.headers;
        match self.producer.send(record) {
            Ok(()) => Ok(()),
            Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => Err((
                PyBufferError::new_err("Local: Queue full"),
                Some(Fields {
                    key: returned.key,
                    value: returned.payload,
                    headers: returned.headers,
                }),
            )),
            Err((err, _)) => {
                let mut info = ErrorInfo::from_rdkafka(&err);
                if info.code == ERR_FATAL {
                    if let Some(fatal) = ErrorInfo::fatal_of(self.producer.client().native_ptr()) {
                        info = fatal;
                    }
                    info.fatal = true;
                }
                Err((info.into_py(), None))
            }
        }
    }

    /// Serve the main queue: wait up to `timeout` for the first event, then take everything
    /// already there, all without the GIL; then make the callbacks. Their exceptions are
    /// reported, never raised: every report must be counted, and produce_all must not stop
    /// half-way.
    fn serve(&self, py: Python<'_>, timeout: Duration) -> usize {
        let mut callbacks = Callbacks::default();
        let served = if timeout.is_zero() {
            self.drain(timeout, &mut callbacks)
        } else {
            py.detach(|| self.drain(timeout, &mut callbacks))
        };
        self.call_back(py, callbacks);
        served
    }

    /// Handle the events there are (waiting up to `timeout` for the first): count the
    /// deliveries, keep what the callbacks need; the number of reports and errors handled.
    fn drain(&self, timeout: Duration, callbacks: &mut Callbacks) -> usize {
        let mut next = self.queue.poll(timeout);
        let mut served = 0;
        while let Some(event) = next {
            served += self.handle(&event, callbacks);
            drop(event);
            next = self.queue.poll(Duration::ZERO);
        }
        served
    }

    fn handle(&self, event: &Event, callbacks: &mut Callbacks) -> usize {
        match event.kind() {
            rdsys::RD_KAFKA_EVENT_DR => self.deliveries(event, callbacks),
            rdsys::RD_KAFKA_EVENT_ERROR => {
                if self.error_cb.is_some() {
                    callbacks.errors.push(ErrorInfo::from_code(
                        event.error_code(),
                        Some(event.error_text()),
                        event.error_is_fatal(),
                    ));
                }
                1
            }
            // Logs and statistics: churnstream reads neither from this client.
            _ => 0,
        }
    }

    fn deliveries(&self, event: &Event, callbacks: &mut Callbacks) -> usize {
        // SAFETY: a live DR event; the array is filled with at most `count` messages that
        // live as long as the event.
        let messages = unsafe {
            let count = rdsys::rd_kafka_event_message_count(event.ptr());
            let mut messages: Vec<*const rdsys::rd_kafka_message_t> = vec![std::ptr::null(); count];
            let n = rdsys::rd_kafka_event_message_array(event.ptr(), messages.as_mut_ptr(), count);
            messages.truncate(n);
            messages
        };
        let mut failed = 0u64;
        for &message in &messages {
            // SAFETY: see above.
            let m = unsafe { &*message };
            let code = m.err as i32;
            if code == 0 {
                continue;
            }
            failed += 1;
            if self.on_failure.is_none() {
                continue;
            }
            // SAFETY: the message and its topic handle live as long as the event.
            let (text, topic) = unsafe {
                (
                    text_of(rdsys::rd_kafka_message_produce_errstr(message)),
                    text_of(rdsys::rd_kafka_topic_name(m.rkt)),
                )
            };
            callbacks.failures.push(Failure {
                error: ErrorInfo::from_code(code, Some(text), code == ERR_FATAL),
                topic,
                partition: m.partition,
                offset: (m.offset >= 0).then_some(m.offset),
            });
        }
        self.failed.fetch_add(failed, Ordering::Relaxed);
        self.delivered
            .fetch_add(messages.len() as u64 - failed, Ordering::Relaxed);
        messages.len()
    }

    /// on_failure for each failed delivery, then error_cb for each client error, in order.
    fn call_back(&self, py: Python<'_>, callbacks: Callbacks) {
        if let Some(callback) = &self.on_failure {
            for f in callbacks.failures {
                let e = f.error;
                let args = (
                    e.code,
                    e.name,
                    e.text,
                    e.fatal,
                    f.topic,
                    f.partition,
                    f.offset,
                );
                if let Err(err) = callback.call1(py, args) {
                    report_callback_error(py, err, callback);
                }
            }
        }
        if let Some(callback) = &self.error_cb {
            for info in callbacks.errors {
                if let Err(err) = callback.call1(py, info.callback_args()) {
                    report_callback_error(py, err, callback);
                }
            }
        }
    }
}

/// A failed delivery, kept for on_failure until the GIL is held again.
struct Failure {
    error: ErrorInfo,
    topic: String,
    partition: i32,
    offset: Option<i64>,
}

/// What the callbacks are to be told once the events are handled.
#[derive(Default)]
struct Callbacks {
    failures: Vec<Failure>,
    errors: Vec<ErrorInfo>,
}
