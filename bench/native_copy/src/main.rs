//! The bench's native copy loop: `bench/ceiling.py`'s loop, in Rust with the rdkafka crate.
//!
//! Join a consumer group, read the input in bounded batches, produce every record to the
//! output topic with its key, value and headers, flush, check that every delivery succeeded,
//! then commit the batch's next offsets synchronously; stop after `--idle-stop-s` without a
//! message. No decoding and no scoring: what this reaches is the I/O ceiling of a native
//! consume-score-produce loop on the machine it runs on.
//!
//! The client properties are churnstream's defaults, as `Settings().kafka.producer_config()`
//! and `consumer_config()` give them with `config/churnstream.yaml` (the Python copy loop uses
//! those), so the two loops differ in the language around librdkafka and in its version (the
//! crate bundles 2.12.1; confluent-kafka 2.16.1 ships 2.16.0).

use std::collections::{BTreeMap, VecDeque};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// The scorer's micro-batch bound (`consumer.max_batch_records`), the default of `--batch-records`.
const MAX_BATCH_RECORDS: usize = 2_000;
/// Batches in flight at most with `--depth`: one delivery counter each.
const MAX_DEPTH: usize = 8;
/// How long one batch waits for its records, as the Python loop's `consume(n, 0.1)`.
const BATCH_WAIT: Duration = Duration::from_millis(100);
/// After a full send queue, poll this long for deliveries before trying again.
const QUEUE_FULL_POLL: Duration = Duration::from_millis(100);
/// How long one poll waits for the delivery reports of the batch being settled.
const ACK_POLL: Duration = Duration::from_millis(1);

/// churnstream's scorer producer properties (`KafkaSettings.producer_config` of
/// `ProducerSettings.for_scorer()`, defaults: the scorer's own linger).
const PRODUCER_PROPERTIES: &[(&str, &str)] = &[
    ("client.id", "churnstream"),
    ("security.protocol", "PLAINTEXT"),
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
    ("batch.num.messages", "10000"),
    ("batch.size", "1000000"),
    ("compression.type", "gzip"),
    ("compression.level", "1"),
    ("message.timeout.ms", "30000"),
    ("queue.buffering.max.messages", "100000"),
];

/// churnstream's consumer properties (`KafkaSettings.consumer_config`, defaults).
const CONSUMER_PROPERTIES: &[(&str, &str)] = &[
    ("client.id", "churnstream"),
    ("security.protocol", "PLAINTEXT"),
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "2000"),
    ("max.poll.interval.ms", "60000"),
    ("auto.offset.reset", "earliest"),
    // Offsets are committed by hand, only after the batch's copies are acknowledged.
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("enable.partition.eof", "false"),
    ("isolation.level", "read_committed"),
    ("fetch.min.bytes", "1"),
    ("fetch.wait.max.ms", "100"),
    ("max.partition.fetch.bytes", "65536"),
    ("queued.max.messages.kbytes", "2048"),
    ("fetch.queue.backoff.ms", "10"),
];

/// Copy a topic with the scorer's loop (consume, produce, flush, commit), natively.
#[derive(Parser)]
#[command(name = "native-copy")]
struct Args {
    #[arg(long)]
    broker: String,
    #[arg(long)]
    input_topic: String,
    #[arg(long)]
    output_topic: String,
    #[arg(long)]
    group: String,
    #[arg(long, default_value_t = 5.0)]
    idle_stop_s: f64,
    /// A librdkafka producer property over churnstream's (repeatable; for lever experiments,
    /// e.g. compression.type=none). The bench passes none.
    #[arg(long = "producer-property", value_name = "KEY=VALUE", value_parser = property)]
    producer_properties: Vec<(String, String)>,
    /// Produce batch N+1 before waiting for batch N's acknowledgements, then commit N (the
    /// scorer's pipelining lever). The bench's row runs without it: the Python loop's order.
    #[arg(long)]
    pipeline: bool,
    /// Keep up to this many produced batches in flight before settling the oldest (1: the
    /// stop-and-wait order; `--pipeline` is 2). Offsets are still committed in order, each
    /// after its own batch's acknowledgements.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=MAX_DEPTH as i64))]
    depth: Option<u8>,
    /// Records per batch at most.
    #[arg(long, default_value_t = MAX_BATCH_RECORDS)]
    batch_records: usize,
}

fn property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Counts the producer's delivery reports per batch; librdkafka calls it from `poll` and
/// `flush`. At most `MAX_DEPTH` batches are in flight, so a batch's count lives in slot
/// `seq % MAX_DEPTH`, reset when the batch starts.
#[derive(Default)]
struct Deliveries {
    reported: [AtomicU64; MAX_DEPTH],
    failed: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// The batch's sequence number.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        if let Err((err, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| err.clone());
        }
        self.reported[seq % MAX_DEPTH].fetch_add(1, Ordering::Relaxed);
    }
}

/// A batch whose copies are produced: what settling it (acknowledged, then committed) needs.
struct Produced {
    seq: usize,
    records: u64,
    /// Per partition, the offset after the batch's last record: what the commit stores.
    next: BTreeMap<i32, i64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match copy(&args) {
        Ok(copied) => {
            println!("copied {copied}");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("native-copy: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn config(broker: &str, properties: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", broker);
    for (name, value) in properties {
        config.set(*name, *value);
    }
    config
}

/// Copy until nothing came for `--idle-stop-s`; the number of records copied.
fn copy(args: &Args) -> Result<u64, String> {
    let mut consumer_config = config(&args.broker, CONSUMER_PROPERTIES);
    consumer_config.set("group.id", &args.group);
    let consumer: BaseConsumer = consumer_config
        .create()
        .map_err(|e| format!("cannot create the consumer: {e}"))?;
    let mut producer_config = config(&args.broker, PRODUCER_PROPERTIES);
    for (key, value) in &args.producer_properties {
        producer_config.set(key, value);
    }
    let producer: BaseProducer<Deliveries> = producer_config
        .create_with_context(Deliveries::default())
        .map_err(|e| format!("cannot create the producer: {e}"))?;
    consumer
        .subscribe(&[&args.input_topic])
        .map_err(|e| format!("cannot subscribe to {}: {e}", args.input_topic))?;

    let idle_stop = Duration::from_secs_f64(args.idle_stop_s.max(0.0));
    let mut copied: u64 = 0;
    let mut phases = Phases::default();
    let depth = match (args.depth, args.pipeline) {
        (Some(depth), _) => usize::from(depth),
        (None, true) => 2,
        (None, false) => 1,
    };
    let mut pending: VecDeque<Produced> = VecDeque::with_capacity(depth);
    let mut idle_since = Instant::now();
    while idle_since.elapsed() < idle_stop {
        let started = Instant::now();
        let batch = consume(&consumer, args.batch_records, BATCH_WAIT);
        if batch.is_empty() {
            while let Some(done) = pending.pop_front() {
                copied += settle(args, &consumer, &producer, done, &mut phases)?;
            }
            continue;
        }
        idle_since = Instant::now();
        phases.batches += 1;
        phases.consume += idle_since - started;
        let seq = phases.batches as usize;
        producer.context().reported[seq % MAX_DEPTH].store(0, Ordering::Relaxed);
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for msg in &batch {
            send(&producer, &args.output_topic, msg, seq)?;
            producer.poll(Duration::ZERO);
            next.insert(msg.partition(), msg.offset() + 1);
        }
        phases.produce += idle_since.elapsed();
        let produced = Produced {
            seq,
            records: batch.len() as u64,
            next,
        };
        if depth == 1 {
            copied += settle(args, &consumer, &producer, produced, &mut phases)?;
            continue;
        }
        pending.push_back(produced);
        if pending.len() == depth {
            // Settle the oldest batch now that newer copies are queued behind it.
            if let Some(done) = pending.pop_front() {
                copied += settle(args, &consumer, &producer, done, &mut phases)?;
            }
        }
    }
    while let Some(done) = pending.pop_front() {
        copied += settle(args, &consumer, &producer, done, &mut phases)?;
    }
    eprintln!("native-copy: {copied} records; {}", phases.summary());
    Ok(copied)
}

/// Wait until every copy of `batch` is acknowledged (polling until its own reports are in,
/// which leaves newer batches' copies in flight), check that none failed, then commit its
/// offsets synchronously; the number of records it settled.
///
/// Not `flush()`: the crate's flush (rdkafka 0.39) polls in steps of up to 100 ms between
/// looks at librdkafka's queue, which cost a stop-and-wait loop about 100 ms per batch here.
fn settle(
    args: &Args,
    consumer: &BaseConsumer,
    producer: &BaseProducer<Deliveries>,
    batch: Produced,
    phases: &mut Phases,
) -> Result<u64, String> {
    let started = Instant::now();
    let context = producer.context();
    let reported = &context.reported[batch.seq % MAX_DEPTH];
    while reported.load(Ordering::Relaxed) < batch.records {
        producer.poll(ACK_POLL);
    }
    let acknowledged = Instant::now();
    phases.acks += acknowledged - started;
    let failed = context.failed.load(Ordering::Relaxed);
    let reports = reported.load(Ordering::Relaxed);
    if failed > 0 || reports != batch.records {
        let first = context
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        return Err(format!(
            "{failed} deliveries failed; batch {}: {reports} reports for {} records \
             (first error: {})",
            batch.seq,
            batch.records,
            first.as_ref().map_or("none".to_string(), |e| e.to_string()),
        ));
    }
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in batch.next {
        offsets
            .add_partition_offset(&args.input_topic, partition, Offset::Offset(offset))
            .map_err(|e| format!("bad offset {offset} for partition {partition}: {e}"))?;
    }
    consumer
        .commit(&offsets, CommitMode::Sync)
        .map_err(|e| format!("commit failed: {e}"))?;
    phases.commit += acknowledged.elapsed();
    Ok(batch.records)
}

/// Wall time of each step of the loop, over the batches that had records: where a batch's
/// time goes (the waits for the broker's acknowledgements and commit are in acks and commit).
#[derive(Default)]
struct Phases {
    batches: u64,
    consume: Duration,
    produce: Duration,
    acks: Duration,
    commit: Duration,
}

impl Phases {
    fn summary(&self) -> String {
        format!(
            "{} batches; wall s in consume {:.3}, produce {:.3}, acks {:.3}, commit {:.3}",
            self.batches,
            self.consume.as_secs_f64(),
            self.produce.as_secs_f64(),
            self.acks.as_secs_f64(),
            self.commit.as_secs_f64(),
        )
    }
}

/// Up to `max` records, waiting at most `wait` for them, as librdkafka's batch consume does
/// for the Python loop. Consumer errors are skipped, as that loop skips them.
fn consume(consumer: &BaseConsumer, max: usize, wait: Duration) -> Vec<BorrowedMessage<'_>> {
    let deadline = Instant::now() + wait;
    let mut batch = Vec::with_capacity(max);
    while batch.len() < max {
        match consumer.poll(deadline.saturating_duration_since(Instant::now())) {
            None => break,
            Some(Ok(msg)) => batch.push(msg),
            Some(Err(_)) => continue,
        }
    }
    batch
}

/// Produce one copy of `msg` (key, value, headers); on a full queue, serve deliveries and
/// retry, as the scorer does on BufferError.
fn send(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    msg: &BorrowedMessage<'_>,
    seq: usize,
) -> Result<(), String> {
    let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, seq);
    if let Some(key) = msg.key() {
        record = record.key(key);
    }
    if let Some(value) = msg.payload() {
        record = record.payload(value);
    }
    if let Some(headers) = msg.headers() {
        if headers.count() > 0 {
            record = record.headers(headers.detach());
        }
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                producer.poll(QUEUE_FULL_POLL);
            }
            Err((err, _)) => return Err(format!("produce failed: {err}")),
        }
    }
}
