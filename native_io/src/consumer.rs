//! `Consumer`: a librdkafka consumer whose batches cross into Python as one list per call.
//! `take` serves the consumer queue itself (rebalances, errors, messages), so a per-partition
//! error keeps its topic and partition and the wait returns at the first message.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyList;
use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

use crate::errors::{
    create_client, kafka_err, report_callback_error, text_of, ErrorInfo, ERR_PARTITION_EOF,
    ERR_STATE,
};
use crate::events::{seconds, Event, Queue};
use crate::records::Batch;

/// One stream error as take() returns it: (code, name, text, fatal, topic, partition).
type StreamError = (i32, String, String, bool, String, i32);

/// The client and its queue, shared by the calls in flight; closing drops the last reference.
struct Inner {
    // Dropped before the consumer: a queue reference must not outlive its client.
    queue: Queue,
    consumer: BaseConsumer,
    /// Set by close(): a take() waiting on another thread returns what it has.
    closed: AtomicBool,
}

impl Inner {
    fn client(&self) -> *mut rdsys::rd_kafka_t {
        self.consumer.client().native_ptr()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

#[pyclass(frozen, module = "churnstream_native_io")]
pub struct Consumer {
    inner: Mutex<Option<Arc<Inner>>>,
    error_cb: Option<Py<PyAny>>,
    on_assign: Mutex<Option<Py<PyAny>>>,
}

#[pymethods]
impl Consumer {
    #[new]
    #[pyo3(signature = (config, error_cb=None))]
    fn new(
        py: Python<'_>,
        config: HashMap<String, String>,
        error_cb: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let consumer: BaseConsumer = create_client(py, &config)?;
        let grouped = config.contains_key("group.id");
        let queue = Queue::of(consumer.client().native_ptr(), grouped)
            .ok_or_else(|| closed_err("the consumer has no queue"))?;
        Ok(Consumer {
            inner: Mutex::new(Some(Arc::new(Inner {
                queue,
                consumer,
                closed: AtomicBool::new(false),
            }))),
            error_cb,
            on_assign: Mutex::new(None),
        })
    }

    /// Subscribe to `topics`; `on_assign([(topic, partition), ...])` is called from within
    /// take() after each new assignment has been applied.
    #[pyo3(signature = (topics, on_assign=None))]
    fn subscribe(&self, topics: Vec<String>, on_assign: Option<Py<PyAny>>) -> PyResult<()> {
        let inner = self.get()?;
        *lock(&self.on_assign) = on_assign;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        inner.consumer.subscribe(&names).map_err(|e| kafka_err(&e))
    }

    /// Up to `max_records` messages as `make(topic, partition, offset, key, value, headers)`:
    /// waits up to `wait_s` (GIL released) for the first, then takes only what is already
    /// queued. Also the stream's non-fatal errors, as (code, name, text, fatal, topic,
    /// partition); a fatal one raises KafkaError.
    fn take<'py>(
        &self,
        py: Python<'py>,
        max_records: usize,
        wait_s: f64,
        make: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let inner = self.get()?;
        let records = PyList::empty(py);
        let errors = PyList::empty(py);
        let mut batch = Batch::new(py, make);
        let deadline = Instant::now() + seconds(wait_s);
        while batch.count < max_records {
            let next = if batch.count == 0 {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    inner.queue.poll(Duration::ZERO)
                } else {
                    py.detach(|| inner.queue.poll(remaining))
                }
            } else {
                inner.queue.poll(Duration::ZERO)
            };
            let Some(event) = next else {
                if batch.count > 0 || Instant::now() >= deadline || inner.is_closed() {
                    break;
                }
                continue;
            };
            match event.kind() {
                rdsys::RD_KAFKA_EVENT_FETCH => batch.add(&event, &records, &errors)?,
                rdsys::RD_KAFKA_EVENT_ERROR => self.error(py, &inner, &event, &errors)?,
                rdsys::RD_KAFKA_EVENT_REBALANCE => self.rebalance(py, &inner, &event),
                // Logs, statistics, commit results: churnstream reads none of them here.
                _ => {}
            }
        }
        release(py, inner);
        Ok((records, errors))
    }

    /// Commit these next offsets synchronously (GIL released).
    fn commit(&self, py: Python<'_>, offsets: Vec<(String, i32, i64)>) -> PyResult<()> {
        let inner = self.get()?;
        if offsets.is_empty() {
            return Ok(());
        }
        let tpl = partition_list(&offsets)?;
        let done = py.detach(|| inner.consumer.commit(&tpl, CommitMode::Sync));
        release(py, inner);
        done.map_err(|e| kafka_err(&e))
    }

    /// Fetch `partition` of `topic` from `offset` next (GIL released).
    fn seek(
        &self,
        py: Python<'_>,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout_s: f64,
    ) -> PyResult<()> {
        let inner = self.get()?;
        let timeout = seconds(timeout_s);
        let done = py.detach(|| {
            inner
                .consumer
                .seek(topic, partition, Offset::from_raw(offset), timeout)
        });
        release(py, inner);
        done.map_err(|e| kafka_err(&e))
    }

    /// The group's committed offsets of these partitions (-1001 where it has none).
    fn committed(
        &self,
        py: Python<'_>,
        partitions: Vec<(String, i32)>,
        timeout_s: f64,
    ) -> PyResult<Vec<(String, i32, i64)>> {
        let inner = self.get()?;
        let tpl = partition_list(&with_invalid(partitions))?;
        let timeout = seconds(timeout_s);
        let done = py.detach(|| inner.consumer.committed_offsets(tpl, timeout));
        release(py, inner);
        Ok(triples(&done.map_err(|e| kafka_err(&e))?))
    }

    /// The next offset the consumer would fetch on each partition (-1001 if none yet).
    fn position(&self, partitions: Vec<(String, i32)>) -> PyResult<Vec<(String, i32, i64)>> {
        let inner = self.get()?;
        let tpl = partition_list(&with_invalid(partitions))?;
        // SAFETY: a live client and list; rd_kafka_position only reads local state.
        let err = unsafe { rdsys::rd_kafka_position(inner.client(), tpl.ptr()) } as i32;
        if err != 0 {
            return Err(ErrorInfo::from_code(err, None, false).into_py());
        }
        Ok(triples(&tpl))
    }

    /// The partitions currently assigned.
    fn assignment(&self) -> PyResult<Vec<(String, i32)>> {
        let inner = self.get()?;
        let tpl = inner.consumer.assignment().map_err(|e| kafka_err(&e))?;
        Ok(tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect())
    }

    /// Consume exactly these partitions, each from its offset (-1001: the committed one).
    fn assign(&self, py: Python<'_>, partitions: Vec<(String, i32, i64)>) -> PyResult<()> {
        let inner = self.get()?;
        let tpl = partition_list(&partitions)?;
        let done = py.detach(|| inner.consumer.assign(&tpl));
        release(py, inner);
        done.map_err(|e| kafka_err(&e))
    }

    /// (low, high) watermarks: `cached` reads the client's last known ones without a request.
    fn get_watermark_offsets(
        &self,
        py: Python<'_>,
        topic: &str,
        partition: i32,
        timeout_s: f64,
        cached: bool,
    ) -> PyResult<(i64, i64)> {
        let inner = self.get()?;
        if cached {
            let name = CString::new(topic)?;
            let (mut low, mut high) = (0i64, 0i64);
            // SAFETY: a live client; the out-pointers are valid for the call.
            let err = unsafe {
                rdsys::rd_kafka_get_watermark_offsets(
                    inner.client(),
                    name.as_ptr(),
                    partition,
                    &mut low,
                    &mut high,
                )
            } as i32;
            if err != 0 {
                return Err(ErrorInfo::from_code(err, None, false).into_py());
            }
            return Ok((low, high));
        }
        let timeout = seconds(timeout_s);
        let done = py.detach(|| inner.consumer.fetch_watermarks(topic, partition, timeout));
        release(py, inner);
        done.map_err(|e| kafka_err(&e))
    }

    /// Leave the group and close the client (GIL released); later calls raise KafkaError
    /// `_STATE`. Closing twice is fine.
    fn close(&self, py: Python<'_>) {
        let taken = lock(&self.inner).take();
        if let Some(inner) = taken {
            inner.closed.store(true, Ordering::Relaxed);
            inner.queue.wake();
            // The last reference closes the consumer (the crate's drop leaves the group and
            // serves the queue until it is closed); a take() still running drops it last.
            py.detach(move || drop(inner));
        }
    }
}

impl Consumer {
    fn get(&self) -> PyResult<Arc<Inner>> {
        lock(&self.inner)
            .clone()
            .ok_or_else(|| closed_err("the consumer is closed"))
    }

    /// A client-level error goes to error_cb; one of a partition's stream is returned; a
    /// fatal one is raised.
    fn error(
        &self,
        py: Python<'_>,
        inner: &Inner,
        event: &Event,
        errors: &Bound<'_, PyList>,
    ) -> PyResult<()> {
        let code = event.error_code();
        if code == 0 || code == ERR_PARTITION_EOF {
            return Ok(());
        }
        if event.error_is_fatal() {
            let fatal = ErrorInfo::fatal_of(inner.client())
                .unwrap_or_else(|| ErrorInfo::from_code(code, Some(event.error_text()), true));
            return Err(fatal.into_py());
        }
        let info = ErrorInfo::from_code(code, Some(event.error_text()), false);
        // SAFETY: a live error event; the returned copy is ours to destroy.
        let at = unsafe { rdsys::rd_kafka_event_topic_partition(event.ptr()) };
        if at.is_null() {
            if let Some(callback) = &self.error_cb {
                if let Err(err) = callback.call1(py, info.callback_args()) {
                    report_callback_error(py, err, callback);
                }
            }
            return Ok(());
        }
        // SAFETY: non-NULL, from librdkafka, destroyed once after reading.
        let (topic, partition) = unsafe {
            let tp = &*at;
            let read = (text_of(tp.topic), tp.partition);
            rdsys::rd_kafka_topic_partition_destroy(at);
            read
        };
        let entry: StreamError = (info.code, info.name, info.text, false, topic, partition);
        errors.append(entry)
    }

    /// Apply a rebalance as the crate's default handling does (GIL released), then tell
    /// on_assign about a new assignment.
    fn rebalance(&self, py: Python<'_>, inner: &Inner, event: &Event) {
        let code = event.error_code();
        let client = inner.client();
        // SAFETY: a live rebalance event; the list belongs to it.
        let tpl = unsafe { rdsys::rd_kafka_event_topic_partition_list(event.ptr()) };
        let assign =
            code == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS as i32;
        let revoke =
            code == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS as i32;
        if !assign && !revoke {
            return;
        }
        let (client_addr, tpl_addr) = (client as usize, tpl as usize);
        py.detach(move || {
            let client = client_addr as *mut rdsys::rd_kafka_t;
            let tpl = tpl_addr as *mut rdsys::rd_kafka_topic_partition_list_t;
            // SAFETY: both stay alive for the call (the event and the client are held by the
            // caller); the result is reported through the assignment itself.
            unsafe {
                let protocol = text_of(rdsys::rd_kafka_rebalance_protocol(client));
                let cooperative = protocol == "COOPERATIVE";
                // As the crate's default handling, a failure is left to librdkafka (it logs
                // it, and the group rebalances again).
                let error = match (assign, cooperative) {
                    (true, true) => rdsys::rd_kafka_incremental_assign(client, tpl),
                    (false, true) => rdsys::rd_kafka_incremental_unassign(client, tpl),
                    (true, false) => {
                        rdsys::rd_kafka_assign(client, tpl);
                        std::ptr::null_mut()
                    }
                    (false, false) => {
                        rdsys::rd_kafka_assign(client, std::ptr::null());
                        std::ptr::null_mut()
                    }
                };
                if !error.is_null() {
                    rdsys::rd_kafka_error_destroy(error);
                }
            }
        });
        if !assign {
            return;
        }
        let callback = lock(&self.on_assign).as_ref().map(|c| c.clone_ref(py));
        let Some(callback) = callback else {
            return;
        };
        let mut assigned: Vec<(String, i32)> = Vec::new();
        if !tpl.is_null() {
            // SAFETY: the event's list, `cnt` elements long.
            unsafe {
                let list = &*tpl;
                for i in 0..usize::try_from(list.cnt).unwrap_or(0) {
                    let elem = &*list.elems.add(i);
                    assigned.push((text_of(elem.topic), elem.partition));
                }
            }
        }
        if let Err(err) = callback.call1(py, (assigned,)) {
            report_callback_error(py, err, &callback);
        }
    }
}

fn partition_list(offsets: &[(String, i32, i64)]) -> PyResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (topic, partition, offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::from_raw(*offset))
            .map_err(|e| kafka_err(&e))?;
    }
    Ok(tpl)
}

fn with_invalid(partitions: Vec<(String, i32)>) -> Vec<(String, i32, i64)> {
    let invalid = i64::from(rdsys::RD_KAFKA_OFFSET_INVALID);
    partitions
        .into_iter()
        .map(|(t, p)| (t, p, invalid))
        .collect()
}

fn triples(tpl: &TopicPartitionList) -> Vec<(String, i32, i64)> {
    let invalid = i64::from(rdsys::RD_KAFKA_OFFSET_INVALID);
    tpl.elements()
        .iter()
        .map(|e| {
            let offset = e.offset().to_raw().unwrap_or(invalid);
            (e.topic().to_string(), e.partition(), offset)
        })
        .collect()
}

fn closed_err(text: &str) -> PyErr {
    ErrorInfo::from_code(ERR_STATE, Some(text.to_string()), false).into_py()
}

/// Drop a reference to the client without the GIL: if close() ran meanwhile, this one is the
/// last and destroys the client, which waits for librdkafka's threads.
fn release(py: Python<'_>, inner: Arc<Inner>) {
    if Arc::strong_count(&inner) == 1 {
        py.detach(move || drop(inner));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
