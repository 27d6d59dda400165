//! churnstream's optional native Kafka client: a librdkafka consumer and producer (the
//! rdkafka crate, librdkafka built from its bundled sources) whose batches cross into Python
//! as one list per `take` and go out in one `produce_all` call, so that the scorer's loop
//! pays the Python<->client boundary once per batch rather than once per message.
//!
//! Both classes may be used from two Python threads at once (the scorer commits on a worker
//! thread while its main thread waits in `take`): every call that can block releases the GIL,
//! and callbacks into Python run with it, from within the call that served the event.

use pyo3::prelude::*;

mod consumer;
mod errors;
mod events;
mod outgoing;
mod producer;
mod records;

#[pymodule]
fn churnstream_native_io(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("KafkaError", m.py().get_type::<errors::KafkaError>())?;
    m.add_class::<consumer::Consumer>()?;
    m.add_class::<producer::Producer>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let (_, version) = rdkafka::util::get_rdkafka_version();
    m.add("librdkafka_version", version)?;
    Ok(())
}
