//! `eventuall-bench interviews`: streamed AI replies in interview rooms,
//! against the real service.
//!
//! The service runs in a child process, as for `rooms`: this binary
//! re-executed as the hidden `interviews-server` subcommand, which builds
//! `Application` as `eventuall serve` does and answers `stats` (its VmRSS and
//! `interviews.live_interviews()`) and `stop` on stdin. Its AI provider
//! (`--ai-url`) is an OpenAI-compatible SSE server in *this* process on
//! 127.0.0.1: `POST /v1/chat/completions` with `stream:true` answers
//! `data: {chat.completion.chunk}` events and `data: [DONE]`; without
//! `stream` it answers a JSON completion (the skills extraction, which these
//! runs do not need as they give skills). Each chunk's `delta.content` is
//! `[t=MICROS] wN `, MICROS being when the provider sent it on the bench's
//! clock; the clients (tokio-tungstenite sockets in this process) read the
//! same clock when an `INTERVIEW_MESSAGE` frame carrying that chunk arrives,
//! so chunk → tab latency needs no clock sync.
//!
//! One run, on a fresh server and database: a warm-up interview; then N
//! users each create one interview over HTTP (its first question streams
//! with no socket open) and open one socket to it once it is idle; then all
//! N answer at once (`USER_MESSAGE`) and each receives a streamed reply of
//! `--chunks` chunks, sent back to back ("burst") or `pace` apart. Measured:
//! chunk → tab latency over every chunk, answer → first chunk, replies
//! started (at the provider) vs completed (on the tab), server CPU per
//! chunk (utime + stime of the child), server RSS per live interview, wall
//! time; and, after a graceful stop, the AI messages in the log.
//!
//! Every loop is bounded by a count and a time limit. Results are printed as
//! Markdown for `docs/BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use clap::Args;
use eventuall::config::ServeConfig;
use eventuall::store::{EventStore, StoreOptions};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::rooms::{self, CONNECT_CONCURRENCY, CpuWindow, STEP_LIMIT, Server, Socket, mib};

/// Chunks of the setup replies (the first question of each interview and
/// the warm-up): short, they are not measured.
const SETUP_CHUNKS: usize = 5;
/// Longest the setup (creating N interviews, their first questions,
/// opening their sockets) may take.
const SETUP_LIMIT: Duration = Duration::from_secs(180);
const ANSWER: &str = r#"{"type":"USER_MESSAGE","content":"I would keep an append-only event log and project it."}"#;

#[derive(Args)]
pub struct InterviewsArgs {
    /// Runs, each on a fresh server and database: `INTERVIEWSxPACE`, the
    /// pause between two chunks of a reply (`0ms`: burst).
    #[arg(long, value_delimiter = ',', default_value = "200x0ms,200x20ms,50x0ms,50x20ms,5x0ms,5x20ms")]
    runs: Vec<RunSpec>,
    /// Chunks of each measured reply.
    #[arg(long, default_value_t = 50)]
    chunks: usize,
    /// Measured replies per interview and run, one after another (every
    /// interview answers again once its previous reply is complete).
    #[arg(long, default_value_t = 1)]
    replies: usize,
    /// `postgres://…` server (a fresh database is made per run); SQLite in a
    /// temporary directory without it.
    #[arg(long, alias = "database-url")]
    postgres_url: Option<String>,
    /// Longest the measured replies of one run may take, all together.
    #[arg(long, default_value = "120s")]
    time_limit: humantime::Duration,
}

/// `200x20ms`: 200 interviews, chunks 20 ms apart.
#[derive(Clone, Copy, Debug)]
struct RunSpec {
    interviews: usize,
    pace: Duration,
}

impl FromStr for RunSpec {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let (n, pace) = raw.split_once('x').ok_or("a run is written INTERVIEWSxPACE, e.g. 200x20ms")?;
        let interviews: usize = n.trim().parse().map_err(|_| format!("{n:?} is not a count of interviews"))?;
        let pace = humantime::parse_duration(pace.trim()).map_err(|e| format!("{pace:?}: {e}"))?;
        if interviews == 0 || interviews > 5_000 {
            return Err("between 1 and 5,000 interviews per run".into());
        }
        Ok(Self { interviews, pace })
    }
}

// ----------------------------------------------------------------- clock --

static CLOCK: OnceLock<Instant> = OnceLock::new();

/// Microseconds on the clock shared by the provider and the clients.
fn now_us() -> u64 {
    CLOCK.get_or_init(Instant::now).elapsed().as_micros() as u64
}

// -------------------------------------------------------------- provider --

/// The in-bench AI provider: what the next replies look like, and counts.
#[derive(Default)]
struct Provider {
    chunks: AtomicUsize,
    pace_us: AtomicU64,
    streams_started: AtomicU64,
    streams_finished: AtomicU64,
    json_calls: AtomicU64,
}

impl Provider {
    fn shape(&self, chunks: usize, pace: Duration) {
        self.chunks.store(chunks, Ordering::SeqCst);
        self.pace_us.store(pace.as_micros() as u64, Ordering::SeqCst);
    }

    fn started(&self) -> u64 {
        self.streams_started.load(Ordering::SeqCst)
    }

    fn finished(&self) -> u64 {
        self.streams_finished.load(Ordering::SeqCst)
    }
}

/// Serves the provider on 127.0.0.1:0; answers its `/v1` base URL. The
/// server task ends with the bench.
async fn spawn_provider(provider: Arc<Provider>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    // Each chunk leaves when it is written: without TCP_NODELAY a burst's
    // second small write waits for the first one's (delayed) ACK.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    let app = Router::new().route("/v1/chat/completions", post(completions)).with_state(provider);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("AI provider stopped: {error}");
        }
    });
    Ok(format!("http://{addr}/v1"))
}

fn chunk(model: &str, delta: Value, finish_reason: Option<&str>) -> String {
    json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    })
    .to_string()
}

async fn completions(State(provider): State<Arc<Provider>>, Json(body): Json<Value>) -> Response {
    let model = body["model"].as_str().unwrap_or("bench-model").to_owned();
    if body["stream"].as_bool() != Some(true) {
        provider.json_calls.fetch_add(1, Ordering::SeqCst);
        let content = json!({"skills": ["Rust", "SQL", "Distributed systems"]}).to_string();
        return Json(json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62},
        }))
        .into_response();
    }
    provider.streams_started.fetch_add(1, Ordering::SeqCst);
    let chunks = provider.chunks.load(Ordering::SeqCst);
    let pace = Duration::from_micros(provider.pace_us.load(Ordering::SeqCst));
    // Events 0..chunks carry text, then the finish, the usage and [DONE].
    let events = futures::stream::unfold(0usize, move |i| {
        let model = model.clone();
        let provider = provider.clone();
        async move {
            let data = if i < chunks {
                if i > 0 && !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
                // Stamped when the server asks for the chunk, i.e. sends it.
                chunk(&model, json!({"content": format!("[t={}] w{i} ", now_us())}), None)
            } else if i == chunks {
                chunk(&model, json!({}), Some("stop"))
            } else if i == chunks + 1 {
                let usage = json!({"prompt_tokens": 100, "completion_tokens": chunks, "total_tokens": 100 + chunks});
                json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage})
                    .to_string()
            } else if i == chunks + 2 {
                provider.streams_finished.fetch_add(1, Ordering::SeqCst);
                "[DONE]".to_owned()
            } else {
                return None;
            };
            Some((Ok::<_, Infallible>(Bytes::from(format!("data: {data}\n\n"))), i + 1))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(events))
        .unwrap_or_else(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

// ---------------------------------------------------------------- server --

/// The hidden `interviews-server` subcommand: the service, driven over
/// stdin; `stats` counts live interviews.
#[derive(Args)]
pub struct ServerArgs {
    #[command(flatten)]
    config: ServeConfig,
}

pub async fn serve_child(args: ServerArgs) -> anyhow::Result<()> {
    rooms::serve_driven(args.config, |state| state.interviews.live_interviews()).await
}

// --------------------------------------------------------------- clients --

/// Creates an interview for `user` (skills given, so its first question is
/// asked at once); answers its id.
async fn create(addr: SocketAddr, user: &str) -> anyhow::Result<String> {
    let body = json!({"title": format!("Backend engineer ({user})"), "skills": ["Rust", "SQL"]}).to_string();
    let (code, text) = rooms::http_post_body(addr, "/api/interviews", &rooms::token(user), &body).await?;
    anyhow::ensure!(code == 201, "creating an interview answered {code}: {text}");
    let value: Value = serde_json::from_str(&text).with_context(|| format!("create answered {text:?}"))?;
    Ok(value["interview"]["id"].as_str().context("no interview id")?.to_owned())
}

/// Opens the interview's socket; returns it once the interview is idle (the
/// first frame says so unless its first question is still streaming).
async fn connect(addr: SocketAddr, user: &str, interview_id: &str) -> anyhow::Result<Socket> {
    let url = format!("ws://{addr}/parties/interview/{interview_id}?token={}", rooms::token(user));
    let (mut socket, _) = tokio::time::timeout(STEP_LIMIT, tokio_tungstenite::connect_async(url))
        .await
        .context("connect timed out")??;
    let limit = tokio::time::Instant::now() + STEP_LIMIT * 3;
    for _ in 0..10_000 {
        let frame = tokio::time::timeout_at(limit, socket.next())
            .await
            .context("the interview did not become idle")?
            .context("closed before the interview was idle")??;
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text)?;
            if value["type"] == "INTERVIEW_STATE" && value["state"] == "idle" {
                return Ok(socket);
            }
        }
    }
    bail!("no idle state in 10,000 frames")
}

/// The `[t=MICROS]` stamps of a reply's text, in order.
fn stamps(content: &str) -> Vec<u64> {
    content
        .match_indices("[t=")
        .filter_map(|(i, _)| {
            let rest = &content[i + 3..];
            rest[..rest.find(']')?].parse().ok()
        })
        .collect()
}

/// One streamed reply as the tab saw it.
#[derive(Default)]
struct Reply {
    /// Chunk → tab, one per chunk seen, in µs.
    latencies_us: Vec<u64>,
    /// Answer sent → first chunk on the tab, µs.
    first_chunk_us: Option<u64>,
    /// Answer sent → the provider sent the first chunk, µs: what the server
    /// does before the AI answers (quota, appends, timer, the HTTP call).
    to_provider_us: Option<u64>,
    chunks: usize,
    completed: bool,
    failed: bool,
    /// An `error` or `RATELIMIT` frame instead of a reply.
    refused: Option<String>,
    /// The socket closed or the time ran out before the reply ended.
    cut: bool,
}

/// Answers once and reads the reply until the interview is idle again.
async fn reply(socket: &mut Socket, chunks: usize, deadline: tokio::time::Instant) -> Reply {
    let mut r = Reply::default();
    let sent = now_us();
    if socket.send(Message::text(ANSWER)).await.is_err() {
        r.cut = true;
        return r;
    }
    // Bounded: a reply is `chunks` message frames plus a few state frames.
    for _ in 0..chunks * 4 + 100 {
        let frame = match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(_)) | None) | Err(_) => break,
        };
        let at = now_us();
        let text = match frame {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
        match value["type"].as_str() {
            Some("INTERVIEW_MESSAGE") if value["role"] == "ai" => {
                let seen = stamps(value["content"].as_str().unwrap_or_default());
                if r.chunks == 0 && !seen.is_empty() {
                    r.first_chunk_us = Some(at.saturating_sub(sent));
                    r.to_provider_us = Some(seen[0].saturating_sub(sent));
                }
                r.latencies_us.extend(seen.iter().skip(r.chunks).map(|t| at.saturating_sub(*t)));
                r.chunks = r.chunks.max(seen.len());
                match value["status"].as_str() {
                    Some("complete") => r.completed = true,
                    Some("failed") => r.failed = true,
                    _ => {}
                }
            }
            Some("INTERVIEW_STATE") if value["state"] == "idle" && (r.completed || r.failed) => return r,
            Some("error" | "RATELIMIT") => {
                r.refused = Some(text.to_string());
                return r;
            }
            _ => {}
        }
    }
    r.cut = true;
    r
}

// ------------------------------------------------------------------- run --

struct RunResult {
    spec: RunSpec,
    replies: Vec<Reply>,
    answers: usize,
    streams_started: u64,
    streams_finished: u64,
    wall: Duration,
    setup: Duration,
    server_cpu: Duration,
    cpu_report: String,
    rss_base: u64,
    rss_created: u64,
    rss_loaded: u64,
    rss_after: u64,
    live_interviews: usize,
    log: BTreeMap<String, u64>,
}

async fn run_one(
    args: &InterviewsArgs,
    provider: &Arc<Provider>,
    url: &str,
    spec: RunSpec,
) -> anyhow::Result<RunResult> {
    let n = spec.interviews;
    provider.shape(SETUP_CHUNKS, Duration::ZERO);
    let extra = [
        "--ai-url",
        url,
        "--ai-rate-limit",
        "1000000/24h",
        // No hint may start during a run; no interview may leave memory.
        "--hint-after",
        "6h",
        "--evict-after",
        "1h",
    ];
    let mut server = Server::spawn("interviews-server", args.postgres_url.as_deref(), &extra).await?;
    let addr = server.addr;

    // Warm-up: one interview, one reply, closed.
    let warm_id = create(addr, "warmup").await?;
    let mut warm = connect(addr, "warmup", &warm_id).await?;
    let warm_reply = reply(&mut warm, SETUP_CHUNKS, tokio::time::Instant::now() + STEP_LIMIT).await;
    anyhow::ensure!(warm_reply.completed, "the warm-up reply did not complete");
    rooms::leave(warm).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = server.stats().await?;

    // N interviews over HTTP; their first questions stream with no socket.
    let setup_started = Instant::now();
    let finished_before = provider.finished();
    let users: Vec<String> = (0..n).map(|i| format!("candidate-{i:04}")).collect();
    let created: Vec<anyhow::Result<String>> = futures::stream::iter(users.iter().map(|user| create(addr, user)))
        .buffered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let ids = created.into_iter().collect::<anyhow::Result<Vec<String>>>()?;
    let limit = Instant::now() + SETUP_LIMIT;
    while provider.finished() < finished_before + n as u64 {
        if Instant::now() > limit {
            bail!("{} of {n} first questions streamed in {SETUP_LIMIT:?}", provider.finished() - finished_before);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the actors store the questions before reading the RSS.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_interviews = server.stats().await?;
    let opened: Vec<anyhow::Result<Socket>> =
        futures::stream::iter(users.iter().zip(&ids).map(|(user, id)| connect(addr, user, id)))
            .buffered(CONNECT_CONCURRENCY)
            .collect()
            .await;
    let sockets = opened.into_iter().collect::<anyhow::Result<Vec<Socket>>>()?;
    let setup = setup_started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = server.stats().await?;

    // All N answer at once.
    provider.shape(args.chunks, spec.pace);
    let started_before = provider.started();
    let finished_before = provider.finished();
    let (go_tx, go_rx) = watch::channel(false);
    let replies_each = args.replies.max(1);
    let chunks = args.chunks;
    let time_limit: Duration = args.time_limit.into();
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let mut go = go_rx.clone();
            tokio::spawn(async move {
                let _ = go.wait_for(|go| *go).await;
                let deadline = tokio::time::Instant::now() + time_limit;
                let mut replies = Vec::with_capacity(replies_each);
                for _ in 0..replies_each {
                    let r = reply(&mut socket, chunks, deadline).await;
                    let over = r.cut || r.refused.is_some();
                    replies.push(r);
                    if over {
                        break;
                    }
                }
                (socket, replies)
            })
        })
        .collect();
    drop(go_rx);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu = CpuWindow::start(&[&server]);
    let cpu_before = server.cpu();
    let go_at = Instant::now();
    let _ = go_tx.send(true);
    let mut replies = Vec::new();
    let mut open = Vec::new();
    for task in tasks {
        let (socket, mut each) = task.await?;
        replies.append(&mut each);
        open.push(socket);
    }
    let wall = go_at.elapsed();
    let server_cpu = server.cpu().saturating_sub(cpu_before);
    let cpu_report = cpu.report();
    let after = server.stats().await?;
    let streams_started = provider.started() - started_before;
    let streams_finished = provider.finished() - finished_before;
    futures::future::join_all(open.into_iter().map(rooms::leave)).await;
    server.stop().await?;

    // What the log holds for the measured interviews.
    let store = EventStore::open(&server.database_url, StoreOptions::default()).await?;
    let mut log: BTreeMap<String, u64> = BTreeMap::new();
    for id in &ids {
        let stream = eventuall::interviews::interview_stream(id);
        let mut from = 1;
        // Bounded: an interview holds a few dozen events here.
        for _ in 0..100 {
            let page = store.read_stream(&stream, from, 1_000).await?;
            let Some(last) = page.last() else { break };
            from = last.stream_version + 1;
            for event in &page {
                *log.entry(event.event_type.clone()).or_default() += 1;
            }
        }
    }
    store.shutdown().await;
    server.cleanup().await;
    Ok(RunResult {
        spec,
        replies,
        answers: n * replies_each,
        streams_started,
        streams_finished,
        wall,
        setup,
        server_cpu,
        cpu_report,
        rss_base: base.rss,
        rss_created: with_interviews.rss,
        rss_loaded: loaded.rss,
        rss_after: after.rss,
        live_interviews: loaded.live_rooms,
        log,
    })
}

/// The `p` quantile of µs samples, in ms.
fn quantile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1e3
}

fn pace_name(pace: Duration) -> String {
    if pace.is_zero() { "burst".to_owned() } else { format!("{} ms apart", pace.as_millis()) }
}

pub async fn run(args: InterviewsArgs) -> anyhow::Result<()> {
    let _ = now_us();
    let (soft, hard) = rooms::fd_limits();
    println!("open-file limit: soft {soft}, hard {hard} (each interview costs two fds here and two in the server)");
    let provider = Arc::new(Provider::default());
    let url = spawn_provider(provider.clone()).await?;
    let mut results = Vec::new();
    for spec in &args.runs {
        eprintln!("run: {} interviews, {} chunks {}", spec.interviews, args.chunks, pace_name(spec.pace));
        results.push(run_one(&args, &provider, &url, *spec).await?);
    }
    let chunks = args.chunks;
    println!("\n### Streamed replies ({chunks} chunks each, {} per interview)\n", args.replies.max(1));
    println!(
        "| interviews | pacing | chunks on tabs | chunk → tab p50 ms | p99 ms | max ms | answer → first chunk p50 ms | p99 ms \
         | of which before the AI call p50 ms | p99 ms | replies started / completed | failed, refused, cut | wall s | server CPU per chunk |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        let mut latencies: Vec<u64> = r.replies.iter().flat_map(|x| x.latencies_us.iter().copied()).collect();
        latencies.sort_unstable();
        let mut first: Vec<u64> = r.replies.iter().filter_map(|x| x.first_chunk_us).collect();
        first.sort_unstable();
        let mut to_provider: Vec<u64> = r.replies.iter().filter_map(|x| x.to_provider_us).collect();
        to_provider.sort_unstable();
        let completed = r.replies.iter().filter(|x| x.completed && x.chunks == chunks).count();
        let failed = r.replies.iter().filter(|x| x.failed).count();
        let refused = r.replies.iter().filter(|x| x.refused.is_some()).count();
        let cut = r.replies.iter().filter(|x| x.cut).count();
        let on_tabs: usize = r.replies.iter().map(|x| x.chunks).sum();
        println!(
            "| {} | {} | {on_tabs} of {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {} / {completed} (of {} answers) | {failed}, {refused}, {cut} | {:.2} | {:.0} µs |",
            r.spec.interviews,
            pace_name(r.spec.pace),
            r.answers * chunks,
            quantile_ms(&latencies, 0.50),
            quantile_ms(&latencies, 0.99),
            quantile_ms(&latencies, 1.0),
            quantile_ms(&first, 0.50),
            quantile_ms(&first, 0.99),
            quantile_ms(&to_provider, 0.50),
            quantile_ms(&to_provider, 0.99),
            r.streams_started,
            r.answers,
            r.wall.as_secs_f64(),
            r.server_cpu.as_secs_f64() * 1e6 / on_tabs.max(1) as f64,
        );
    }
    println!();
    for r in &results {
        let log: Vec<String> = r.log.iter().map(|(t, n)| format!("{t} {n}")).collect();
        println!(
            "- {} interviews, {}: setup (create + first questions + sockets) {:.1} s; provider streams finished {} of {} \
             started; CPU {}; log of the {} interviews after a graceful stop: {}",
            r.spec.interviews,
            pace_name(r.spec.pace),
            r.setup.as_secs_f64(),
            r.streams_finished,
            r.streams_started,
            r.cpu_report,
            r.spec.interviews,
            log.join(", ")
        );
        for refusal in r.replies.iter().filter_map(|x| x.refused.as_deref()).take(3) {
            println!("  - refused: {refusal}");
        }
    }
    println!("\n### Memory (server RSS)\n");
    println!(
        "| interviews | baseline | + N interviews, idle, no socket | + one socket each | live interviews | per interview | per socket | per interview with its socket | after the replies |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        let n = r.spec.interviews as f64;
        let kib = |a: u64, b: u64| (a as f64 - b as f64) / n / 1024.0;
        println!(
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} | {:.1} KiB | {:.1} KiB | **{:.1} KiB** | {:.1} MiB |",
            r.spec.interviews,
            mib(r.rss_base),
            mib(r.rss_created),
            mib(r.rss_loaded),
            r.live_interviews,
            kib(r.rss_created, r.rss_base),
            kib(r.rss_loaded, r.rss_created),
            kib(r.rss_loaded, r.rss_base),
            mib(r.rss_after),
        );
    }
    let json_calls = provider.json_calls.load(Ordering::SeqCst);
    if json_calls > 0 {
        println!("\n({json_calls} JSON-mode completions were asked of the provider)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_read_in_order_and_cut_ones_skipped() {
        assert_eq!(stamps("[t=12] w0 [t=345] w1 "), vec![12, 345]);
        assert_eq!(stamps("[t=12] w0 [t=34"), vec![12]);
        assert!(stamps("no stamps").is_empty());
    }

    #[test]
    fn runs_read_like_the_flag() {
        let spec: RunSpec = "200x20ms".parse().unwrap();
        assert_eq!((spec.interviews, spec.pace), (200, Duration::from_millis(20)));
        assert!("200x0ms".parse::<RunSpec>().unwrap().pace.is_zero());
        assert!("200".parse::<RunSpec>().is_err());
        assert!("0x1ms".parse::<RunSpec>().is_err());
    }
}
