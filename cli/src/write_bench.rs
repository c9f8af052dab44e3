//! `make bench`, the writes part: could a create or update be admitted and written in one
//! DynamoDB round trip instead of two? Today a write waits for admission: the company's
//! rate-counter `UpdateItem` (`platform::ratelimit`), then the item's `PutItem`, in sequence.
//! The alternative writes both in one `TransactWriteItems` (the counter update, with the
//! limits as its conditions, and the put) and falls back to today's two calls when the
//! transaction is cancelled for a `TransactionConflict`.
//!
//! Both paths write for ONE company, the round-trip bench's (`crate::delay_bench::Rig`, limits
//! of 1,000,000 requests a second and 1,000,000,000 a day: no write here is refused by the
//! limiter), from 1, 4 and 16 concurrent tasks, each standing for a Lambda instance (its own
//! rate limiter, so its own guess of the second the counter item counts). Every call goes
//! through the round-trip bench's delaying proxy at 20 and 4 ms, which also asks each call
//! for its consumed capacity (`ReturnConsumedCapacity: TOTAL`), and every latency is a ratio of
//! one `GetItem` through the same delay. With 16 writers, 4 more tasks then make a read's
//! counter update (a lone `UpdateItem` of the same item, as admission makes it for every
//! read) throughout, to see whether those fail against the transactions. The figures go
//! under `writes` in `target/bench/results.json`.

use crate::bench_support::{self, percentile};
use crate::delay_bench::{Counts, Rig};
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    Put, ReturnConsumedCapacity, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use chrono::Utc;
use platform::ratelimit::{Limits, RateLimiter};
use platform::store::{item_size, keys, n, number, Item, Key, Store};
use platform::time::NewYorkDay;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writes each task makes, one after another, per configuration.
const WRITES_PER_TASK: usize = 40;
/// Tasks writing for the company at once.
const TASKS: [usize; 3] = [1, 4, 16];
/// The delay every DynamoDB call pays, in ms.
const DELAYS_MS: [u64; 2] = [20, 4];
/// Tasks making reads' counter updates alongside 16 writers.
const READERS: usize = 4;
/// The bench company's limits (`bench_support::company`).
const LIMITS: Limits = Limits {
    per_second: bench_support::PER_SECOND_LIMIT,
    daily: bench_support::DAILY_LIMIT,
};

#[derive(Clone, Copy, PartialEq)]
enum Path {
    /// The counter's `UpdateItem`, then the item's `PutItem` (today).
    Today,
    /// One `TransactWriteItems` of both, today's path after a `TransactionConflict`.
    OneTransaction,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::Today => "A",
            Path::OneTransaction => "B",
        }
    }
}

/// What every writing task shares: the store through the proxy (today's path is the
/// platform's own calls), a DynamoDB client through the same proxy and with the store's
/// interceptors (for the transaction, which the store has no public call for), the company
/// and its admin (the dashboards' author).
struct Writer {
    store: Store,
    db: aws_sdk_dynamodb::Client,
    company: String,
    user: String,
}

impl Writer {
    async fn new(rig: &Rig) -> Writer {
        let sdk = platform::store::sdk_config().await;
        let db = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(&rig.db_base)
                .interceptor(platform::metrics::CountCalls)
                .interceptor(platform::audit::Stamp)
                .build(),
        );
        Writer {
            store: rig.state.store.clone(),
            db,
            company: rig.made.company_id.clone(),
            user: rig.made.user_id.clone(),
        }
    }

    /// The company's day counter item now, and its `ttl`, as `RateLimiter::count` makes them.
    fn counter_key(&self) -> (Key, i64, i64) {
        let now = Utc::now();
        let day = NewYorkDay::containing(now);
        let key = keys::rate_day(&self.company, &day.date.to_string());
        (key, now.timestamp(), day.end.timestamp() + 3 * 86_400)
    }
}

/// A new dashboard of the company with four Klips, as the API stores it: just under 1 KB (one
/// write unit) with the audit stamps both paths' clients add (`platform::audit::Stamp`).
/// With six Klips it would be 1.2 KB, two units.
fn dashboard_item(company: &str, user: &str) -> Result<Item, String> {
    use domain::records::{Dashboard, KlipInstance, Layout};
    let id = domain::ids::new_id();
    let now = Utc::now();
    let klip_instances = (0..4)
        .map(|i| KlipInstance {
            id: domain::ids::new_id(),
            klip_id: domain::ids::new_id(),
            region: if i < 2 { "top" } else { "main" }.into(),
            position: i,
        })
        .collect();
    let dashboard = Dashboard {
        meta: domain::asset::Meta {
            id: id.clone(),
            company_id: company.to_owned(),
            name: format!("Sales overview {}", &id[..6]),
            description: Some("Revenue and orders by region".into()),
            slug: format!("sales-overview-{}", &id[..6]),
            version: 1,
            created_by: user.to_owned(),
            date_created: now,
            last_updated: now,
            share_rights: Vec::new(),
        },
        layout: Layout {
            kind: "grid".into(),
            state: json!({"columns": 12, "row_height": 80, "regions": ["top", "main"]}),
        },
        klip_instances,
        favorites: Vec::new(),
        published_links: Vec::new(),
    };
    let key = keys::asset(domain::asset::Kind::Dashboard, company, &id);
    platform::store::to_item(&key, &dashboard).map_err(|e| e.to_string())
}

/// The second a counter update counts in, guessed as `RateLimiter::count` guesses it.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Guess {
    second: i64,
    /// The item already counts `second` (add to it), or an older one (start `second`).
    same: bool,
}

impl Guess {
    /// The second this instance last counted in is still the item's, if it is now's.
    fn first(last: Option<i64>, now: i64) -> Guess {
        Guess {
            second: now,
            same: last == Some(now),
        }
    }

    /// After the counter step was refused with the item counting `counted`, as
    /// `RateLimiter::count` corrects its guess; an error when the guess was right, i.e. a
    /// limit refused it.
    fn after_refusal(self, now: i64, counted: Option<i64>) -> Result<Guess, String> {
        let next = match counted {
            Some(s) if s >= now => Guess {
                second: s,
                same: true,
            },
            Some(_) => Guess {
                second: now,
                same: false,
            },
            // No old item came back: try the other case.
            None => Guess {
                second: now,
                same: !self.same,
            },
        };
        if next == self {
            return Err("the counter step was refused by a limit".into());
        }
        Ok(next)
    }
}

/// The counter update of one request, as `RateCounters::add` (shared/platform/src/store/
/// counters.rs) writes it without an API key's use: mirrored here, because the store makes
/// it only as a lone `UpdateItem` (its transactions' update steps are private to its
/// repositories). A transaction returns no values to compare with the limits (as
/// `ratelimit::decide` does with the counts an `UpdateItem` returns), so with `limits` they
/// become conditions of the step: the second's count and the day's below them before it.
fn counter_update(
    table: &str,
    key: &Key,
    guess: Guess,
    ttl: i64,
    limits: Option<Limits>,
) -> Result<Update, String> {
    let (expression, mut condition) = if guess.same {
        ("ADD n :one, c :one SET #ttl = :ttl", "s = :s".to_owned())
    } else {
        (
            "SET s = :s, c = :one, #ttl = :ttl ADD n :one",
            "(attribute_not_exists(s) OR s < :s)".to_owned(),
        )
    };
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(key.to_item()))
        .expression_attribute_names("#ttl", "ttl")
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":s", n(guess.second))
        .expression_attribute_values(":ttl", n(ttl))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    if let Some(limits) = limits {
        // A second that starts over counts this request alone.
        if guess.same {
            condition.push_str(" AND c < :second_limit");
            update = update.expression_attribute_values(":second_limit", n(limits.per_second));
        }
        condition.push_str(" AND (attribute_not_exists(n) OR n < :daily_limit)");
        update = update.expression_attribute_values(":daily_limit", n(limits.daily));
    }
    update
        .update_expression(expression)
        .condition_expression(condition)
        .build()
        .map_err(|e| e.to_string())
}

/// Today's write: the request counted and admitted (the platform's own counter update and
/// admission rule), then the item created (the store's conditional `PutItem`).
async fn write_today(w: &Writer, limiter: &RateLimiter, item: Item) -> Result<(), String> {
    let now = Utc::now();
    let counted = limiter
        .count(&w.store, &w.company, now, None)
        .await
        .map_err(|e| format!("the counter update: {e}"))?;
    limiter
        .settle(&w.store, &w.company, &counted, LIMITS, now, None)
        .await
        .map_err(|(e, _)| format!("refused by the limiter: {e}"))?;
    w.store
        .create_item(item, "the dashboard exists")
        .await
        .map_err(|e| format!("the put: {e}"))
}

/// Why a transaction was cancelled.
enum Cancelled {
    /// Another request was writing one of its items (`TransactionConflict`).
    Conflict,
    /// The counter step's condition failed, with the second the item counts (when it came
    /// back).
    Counter(Option<i64>),
    Failed(String),
}

/// The cancellation reasons' codes in step order: from the reasons, or (a server that leaves
/// them out) from the message, which ends with them: "... [ConditionalCheckFailed, None]".
fn reason_codes(
    cancelled: &aws_sdk_dynamodb::types::error::TransactionCanceledException,
) -> Vec<String> {
    let reasons = cancelled.cancellation_reasons();
    if !reasons.is_empty() {
        return reasons
            .iter()
            .map(|r| r.code().unwrap_or("None").to_owned())
            .collect();
    }
    cancelled
        .message()
        .and_then(|m| m.rsplit_once('['))
        .map(|(_, list)| {
            list.trim_end_matches(']')
                .split(", ")
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn cancelled<R: std::fmt::Debug>(e: &SdkError<TransactWriteItemsError, R>) -> Cancelled {
    let Some(TransactWriteItemsError::TransactionCanceledException(c)) = e.as_service_error()
    else {
        return Cancelled::Failed(DisplayErrorContext(e).to_string());
    };
    let codes = reason_codes(c);
    if codes.iter().any(|code| code == "TransactionConflict") {
        Cancelled::Conflict
    } else if codes
        .first()
        .is_some_and(|code| code == "ConditionalCheckFailed")
    {
        let old = c.cancellation_reasons().first().and_then(|r| r.item());
        Cancelled::Counter(old.and_then(|item| number(item, "s")))
    } else {
        Cancelled::Failed(format!("the transaction was cancelled: {codes:?}"))
    }
}

/// The counter step and the item's create (the store's condition) in one transaction.
async fn transact(w: &Writer, counter: Update, item: Item) -> Result<(), Cancelled> {
    let put = Put::builder()
        .table_name(w.store.table())
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| Cancelled::Failed(e.to_string()))?;
    w.db.transact_write_items()
        .transact_items(TransactWriteItem::builder().update(counter).build())
        .transact_items(TransactWriteItem::builder().put(put).build())
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| cancelled(&e))
}

/// One task, as one Lambda instance: its rate limiter (today's path), and the second it
/// last counted in (the transaction's guess).
#[derive(Default)]
struct Instance {
    limiter: RateLimiter,
    last_second: Option<i64>,
}

/// What a configuration's writes did.
#[derive(Default)]
struct Outcome {
    times: Vec<Duration>,
    transactions: u64,
    conflicts: u64,
    fallbacks: u64,
    /// Transactions cancelled because the counted second was guessed wrong (then made again).
    reguesses: u64,
}

impl Outcome {
    fn add(&mut self, other: Outcome) {
        self.times.extend(other.times);
        self.transactions += other.transactions;
        self.conflicts += other.conflicts;
        self.fallbacks += other.fallbacks;
        self.reguesses += other.reguesses;
    }
}

/// The write in one round trip: the counter step and the put in one transaction, made again
/// (at most three times in all) with the second corrected as `RateLimiter::count` does; a
/// `TransactionConflict` falls back to today's write.
async fn write_in_one(
    w: &Writer,
    instance: &mut Instance,
    item: Item,
    out: &mut Outcome,
) -> Result<(), String> {
    let (key, now, ttl) = w.counter_key();
    let mut guess = Guess::first(instance.last_second, now);
    for _ in 0..3 {
        let counter = counter_update(w.store.table(), &key, guess, ttl, Some(LIMITS))?;
        out.transactions += 1;
        match transact(w, counter, item.clone()).await {
            Ok(()) => {
                instance.last_second = Some(guess.second);
                return Ok(());
            }
            Err(Cancelled::Conflict) => {
                out.conflicts += 1;
                out.fallbacks += 1;
                return write_today(w, &instance.limiter, item).await;
            }
            Err(Cancelled::Counter(counted)) => {
                out.reguesses += 1;
                guess = guess.after_refusal(now, counted)?;
            }
            Err(Cancelled::Failed(e)) => return Err(e),
        }
    }
    Err("the counter stayed contended through three transactions".into())
}

/// A read's counter update as admission makes it (`RateCounters::add`: a lone `UpdateItem`,
/// the limits compared afterwards); answers whether it failed with a
/// `TransactionConflictException`.
async fn count_a_read(w: &Writer, last: &mut Option<i64>) -> Result<bool, String> {
    let (key, now, ttl) = w.counter_key();
    let mut guess = Guess::first(*last, now);
    for _ in 0..3 {
        let u = counter_update(w.store.table(), &key, guess, ttl, None)?;
        let sent = w
            .db
            .update_item()
            .table_name(u.table_name)
            .set_key(Some(u.key))
            .update_expression(u.update_expression)
            .set_condition_expression(u.condition_expression)
            .set_expression_attribute_names(u.expression_attribute_names)
            .set_expression_attribute_values(u.expression_attribute_values)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        let e = match sent {
            Ok(_) => {
                *last = Some(guess.second);
                return Ok(false);
            }
            Err(e) => e,
        };
        match e.as_service_error() {
            Some(UpdateItemError::TransactionConflictException(_)) => return Ok(true),
            Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                let counted = failed.item().and_then(|item| number(item, "s"));
                guess = guess.after_refusal(now, counted)?;
            }
            _ => return Err(DisplayErrorContext(&e).to_string()),
        }
    }
    Err("a read's counter update stayed contended".into())
}

/// Reads' counter updates from `READERS` tasks, each one after another, until `stop`:
/// answers how many were made and how many failed with a conflict.
async fn readers(w: Arc<Writer>, stop: Arc<AtomicBool>) -> Result<(u64, u64), String> {
    let tasks: Vec<_> = (0..READERS)
        .map(|_| {
            let (w, stop) = (w.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut last, mut made, mut conflicts) = (None, 0u64, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    conflicts += u64::from(count_a_read(&w, &mut last).await?);
                    made += 1;
                }
                Ok::<_, String>((made, conflicts))
            })
        })
        .collect();
    let mut total = (0, 0);
    for task in tasks {
        let (made, conflicts) = task.await.map_err(|e| e.to_string())??;
        total = (total.0 + made, total.1 + conflicts);
    }
    Ok(total)
}

/// One task's `writes` writes by `path`, one after another, each timed.
async fn task(w: Arc<Writer>, path: Path, writes: usize) -> Result<Outcome, String> {
    let mut instance = Instance::default();
    let mut out = Outcome::default();
    for _ in 0..writes {
        let item = dashboard_item(&w.company, &w.user)?;
        let t = Instant::now();
        match path {
            Path::Today => write_today(&w, &instance.limiter, item).await?,
            Path::OneTransaction => write_in_one(&w, &mut instance, item, &mut out).await?,
        }
        out.times.push(t.elapsed());
    }
    Ok(out)
}

/// One configuration's figures.
struct Row {
    path: Path,
    tasks: usize,
    outcome: Outcome,
    elapsed: Duration,
    /// Calls and units per write (the readers' included when there were readers).
    used: Counts,
    /// With readers: their counter updates, and how many failed with a conflict.
    reads: Option<(u64, u64)>,
}

/// `tasks` tasks writing by `path` at once (with reads' counter updates alongside when
/// `with_readers`).
async fn measure(
    rig: &Rig,
    w: &Arc<Writer>,
    path: Path,
    tasks: usize,
    with_readers: bool,
) -> Result<Row, String> {
    let proxies = rig.proxies();
    let before = Counts::of(&proxies);
    let stop = Arc::new(AtomicBool::new(false));
    let reading = with_readers.then(|| tokio::spawn(readers(w.clone(), stop.clone())));
    let started = Instant::now();
    let writing: Vec<_> = (0..tasks)
        .map(|_| tokio::spawn(task(w.clone(), path, WRITES_PER_TASK)))
        .collect();
    let mut outcome = Outcome::default();
    for writer in writing {
        outcome.add(writer.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let reads = match reading {
        Some(r) => Some(r.await.map_err(|e| e.to_string())??),
        None => None,
    };
    let used = Counts::of(&proxies).per(before, outcome.times.len().max(1) as f64);
    Ok(Row {
        path,
        tasks,
        outcome,
        elapsed,
        used,
        reads,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Row {
    /// Prints the row against the `GetItem` p50 `base`; answers it for results.json.
    /// `sizes`: a dashboard's and the counter item's, in bytes.
    fn report(mut self, delay_ms: u64, base: Duration, sizes: (usize, usize)) -> Value {
        let billed = self.billed(sizes);
        let o = &mut self.outcome;
        let writes = o.times.len();
        let (p50, p99) = (
            percentile(&mut o.times, 0.5),
            percentile(&mut o.times, 0.99),
        );
        let x = |d: Duration| ms(d) / ms(base).max(f64::EPSILON);
        let rate = o.conflicts as f64 / (o.transactions.max(1)) as f64;
        let per_second = writes as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON);
        let units = match billed {
            Some(billed) => format!("{:4.2} WRU ({billed:4.2} billed)", self.used.write_units),
            None => "   — WRU (  —  billed)".into(),
        };
        let mut line = format!(
            "    {} x{:<2} p50 {:6.1} ms {:4.2}x  p99 {:6.1} ms {:4.2}x  {:4.0} writes/s  {:4.2} calls {units} per write",
            self.path.label(), self.tasks, ms(p50), x(p50), ms(p99), x(p99), per_second, self.used.calls,
        );
        if self.path == Path::OneTransaction {
            line.push_str(&format!(
                "  conflicts {}/{} ({:.1}%), {} fallbacks, {} second re-guesses",
                o.conflicts,
                o.transactions,
                100.0 * rate,
                o.fallbacks,
                o.reguesses
            ));
        }
        if let Some((made, conflicts)) = self.reads {
            line.push_str(&format!(
                "; {READERS} readers alongside: {made} counter updates, {conflicts} failed with TransactionConflictException"
            ));
        }
        println!("{line}");
        json!({"delay_ms": delay_ms, "path": self.path.label(), "tasks": self.tasks,
            "readers": self.reads.map(|_| READERS), "writes": writes, "p50_ms": ms(p50), "p99_ms": ms(p99),
            "p50_ratio": x(p50), "p99_ratio": x(p99), "writes_per_second": per_second,
            "calls_per_write": self.used.calls,
            "write_units_per_write": self.reads.is_none().then_some(self.used.write_units),
            "billed_write_units_per_write": billed,
            "transactions": o.transactions, "conflicts": o.conflicts, "conflict_rate": rate,
            "fallbacks": o.fallbacks, "second_reguesses": o.reguesses,
            "read_counter_updates": self.reads.map(|r| r.0), "read_counter_conflicts": self.reads.map(|r| r.1)})
    }
}

/// Write units of a lone write of an item of `bytes` (1 per KB, rounded up).
fn units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

impl Row {
    /// The write units per write DynamoDB would bill, from the items' `sizes` (`None` with
    /// readers, whose calls are mixed in): path A's counter updates (a refused one too) and
    /// put at 1 per KB; path B's transactions at 2 per KB per item (a cancelled one too, as
    /// the proxy counts it) and its fallbacks' two writes.
    fn billed(&self, sizes: (usize, usize)) -> Option<f64> {
        if self.reads.is_some() {
            return None;
        }
        let (item, counter) = (units(sizes.0), units(sizes.1));
        let o = &self.outcome;
        Some(match self.path {
            Path::Today => (self.used.calls - 1.0) * counter + item,
            Path::OneTransaction => {
                let units = o.transactions as f64 * 2.0 * (counter + item)
                    + o.fallbacks as f64 * (counter + item);
                units / o.times.len().max(1) as f64
            }
        })
    }
}

/// The p50 of 20 `GetItem`s of the company's item through the proxy (after 5 not counted).
async fn get_item_p50(rig: &Rig) -> Result<Duration, String> {
    let item = keys::company(&rig.made.company_id);
    let mut times = Vec::new();
    for _ in 0..25 {
        let t = Instant::now();
        rig.state
            .store
            .get::<Value>(&item)
            .await
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed());
    }
    Ok(percentile(&mut times[5..], 0.5))
}

/// A few writes by each path, not timed; answers the size of a dashboard item as stored and
/// of the counter item.
async fn warm_up(w: &Arc<Writer>) -> Result<(usize, usize), String> {
    task(w.clone(), Path::Today, 3).await?;
    task(w.clone(), Path::OneTransaction, 3).await?;
    let item = dashboard_item(&w.company, &w.user)?;
    let key = Key::new(
        platform::store::string(&item, "pk"),
        platform::store::string(&item, "sk"),
    );
    write_today(w, &RateLimiter::default(), item).await?;
    Ok((
        stored_size(w, &key).await?,
        stored_size(w, &w.counter_key().0).await?,
    ))
}

/// The size of the item `key` as stored, all attributes (the store reads only its records).
async fn stored_size(w: &Writer, key: &Key) -> Result<usize, String> {
    let out =
        w.db.get_item()
            .table_name(w.store.table())
            .set_key(Some(key.to_item()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| DisplayErrorContext(&e).to_string())?;
    Ok(out.item.as_ref().map_or(0, item_size))
}

/// What is measured at each delay: both paths at each concurrency, then both with readers.
fn configurations() -> Vec<(Path, usize, bool)> {
    let mut all = Vec::new();
    for tasks in TASKS {
        all.push((Path::Today, tasks, false));
        all.push((Path::OneTransaction, tasks, false));
    }
    all.push((Path::Today, 16, true));
    all.push((Path::OneTransaction, 16, true));
    all
}

/// Prints what the figures mean (with the items' sizes) and what DynamoDB would bill.
fn notes(item_bytes: usize, counter_bytes: usize) -> Value {
    let billed_a = units(counter_bytes) + units(item_bytes);
    println!(
        "  items: a dashboard {item_bytes} bytes as stored, the counter item {counter_bytes} bytes"
    );
    println!(
        "  WRU: the ConsumedCapacity DynamoDB Local reports, summed over every call, per write (— with readers: theirs are mixed in). \
         DynamoDB bills a transaction 2 WRU per KB per item, and DynamoDB Local reports less for small items (2 for a counter update \
         and a put of 1 KB or less in one transaction, where DynamoDB bills 4): billed is what DynamoDB would bill, {} a write for \
         path B against {billed_a} for path A, more with cancelled transactions (counted at 2 per item) and fallbacks",
        2.0 * billed_a
    );
    println!("  conflicts: transactions cancelled with a TransactionConflict reason / transactions attempted; each falls back to path A");
    println!("  second re-guesses: transactions whose counter step was refused for a wrong guess of the counted second, made again (path A's show as calls over 2)");
    json!({"item_bytes": item_bytes, "counter_item_bytes": counter_bytes,
        "billed_write_units_per_write": {"A": billed_a, "B": 2.0 * billed_a}})
}

/// Runs the writes part at 20 and 4 ms per call.
pub async fn run() -> Result<(), String> {
    let rig = Rig::start().await?;
    let writer = Arc::new(Writer::new(&rig).await);
    println!();
    println!(
        "writes: A = counter UpdateItem, then PutItem (today); B = one TransactWriteItems [counter update with the limits as conditions, put], A after a TransactionConflict"
    );
    println!(
        "  one company (limits {}/s, {}/day: never refused here), {WRITES_PER_TASK} writes per task, each task one Lambda instance; ratios to one GetItem through the same delay",
        LIMITS.per_second, LIMITS.daily
    );
    let mut rows = Vec::new();
    let mut sizes = (0, 0);
    for delay_ms in DELAYS_MS {
        rig.set_delay(delay_ms);
        sizes = warm_up(&writer).await?;
        let base = get_item_p50(&rig).await?;
        println!(
            "  at {delay_ms:>2} ms per call: GetItem p50 {:.2} ms",
            ms(base)
        );
        for (path, tasks, with_readers) in configurations() {
            let row = measure(&rig, &writer, path, tasks, with_readers).await?;
            rows.push(row.report(delay_ms, base, sizes));
        }
    }
    rig.set_delay(0);
    let notes = notes(sizes.0, sizes.1);
    bench_support::record_results("writes", json!({"rows": rows, "notes": notes}))?;
    println!("  written to target/bench/results.json (writes)");
    Ok(())
}
