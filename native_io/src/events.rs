//! Owned handles to librdkafka's queues and events. The rdkafka crate's own poll loops hide
//! what churnstream needs (a per-partition consumer error's topic and partition, a poll that
//! returns at the first event), so both clients serve their queue here.

use std::time::Duration;

use rdkafka::bindings as rdsys;

/// A reference to one of the client's queues; dropped before the client (field order).
pub struct Queue(*mut rdsys::rd_kafka_queue_t);

// SAFETY: librdkafka's queues are thread-safe; the pointer is only used through its API.
unsafe impl Send for Queue {}
unsafe impl Sync for Queue {}

impl Queue {
    /// The consumer queue when the client is a group consumer (the crate forwards the main
    /// queue there), else the main queue.
    pub fn of(client: *mut rdsys::rd_kafka_t, consumer: bool) -> Option<Queue> {
        // SAFETY: the client is alive; each call returns a new reference or NULL.
        let ptr = unsafe {
            if consumer {
                rdsys::rd_kafka_queue_get_consumer(client)
            } else {
                rdsys::rd_kafka_queue_get_main(client)
            }
        };
        (!ptr.is_null()).then_some(Queue(ptr))
    }

    /// The next event, waiting up to `timeout` for it.
    pub fn poll(&self, timeout: Duration) -> Option<Event> {
        let ms = timeout_ms(timeout);
        // SAFETY: the queue is alive while self is.
        let ptr = unsafe { rdsys::rd_kafka_queue_poll(self.0, ms) };
        (!ptr.is_null()).then_some(Event(ptr))
    }
}

impl Queue {
    /// Wake a poll waiting on this queue (it returns no event).
    pub fn wake(&self) {
        // SAFETY: the queue is alive while self is.
        unsafe { rdsys::rd_kafka_queue_yield(self.0) }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: this handle's own reference, released once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.0) }
    }
}

/// One event taken from a queue; destroyed on drop (which also frees its messages).
pub struct Event(*mut rdsys::rd_kafka_event_t);

// SAFETY: an event is owned by whoever polled it; librdkafka does not touch it until destroyed.
unsafe impl Send for Event {}
unsafe impl Sync for Event {}

impl Event {
    pub fn ptr(&self) -> *mut rdsys::rd_kafka_event_t {
        self.0
    }

    pub fn kind(&self) -> i32 {
        // SAFETY: a live event.
        unsafe { rdsys::rd_kafka_event_type(self.0) }
    }

    pub fn error_code(&self) -> i32 {
        // SAFETY: a live event.
        unsafe { rdsys::rd_kafka_event_error(self.0) as i32 }
    }

    pub fn error_text(&self) -> String {
        // SAFETY: a live event; the string lives as long as it.
        crate::errors::text_of(unsafe { rdsys::rd_kafka_event_error_string(self.0) })
    }

    pub fn error_is_fatal(&self) -> bool {
        // SAFETY: a live event.
        unsafe { rdsys::rd_kafka_event_error_is_fatal(self.0) != 0 }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: polled by us, destroyed once.
        unsafe { rdsys::rd_kafka_event_destroy(self.0) }
    }
}

/// librdkafka's millisecond timeout, rounded up so that a wait of less than 1 ms still waits.
pub fn timeout_ms(timeout: Duration) -> i32 {
    let micros = timeout.as_micros();
    i32::try_from(micros.div_ceil(1000)).unwrap_or(i32::MAX)
}

/// A timeout in seconds from Python: negative means "no wait", not infinite.
pub fn seconds(timeout_s: f64) -> Duration {
    if timeout_s.is_finite() && timeout_s > 0.0 {
        Duration::from_secs_f64(timeout_s.min(1e9))
    } else if timeout_s.is_infinite() && timeout_s > 0.0 {
        Duration::from_secs(1_000_000_000)
    } else {
        Duration::ZERO
    }
}
