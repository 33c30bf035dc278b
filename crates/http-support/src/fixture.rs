//! A scripted HTTP server on 127.0.0.1 for adapter tests: it answers each request with what a
//! handler returns (status, headers, a body sent in separate chunks with pauses between them, or a
//! body that never ends) and records every request, so a test can check what the client sent.
//!
//! Chunks are written separately (`TCP_NODELAY`), so a client sees JSON objects and lines split
//! across reads, the way real servers deliver them.

pub mod hub;

use std::any::Any;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the server answers; built with [`FixtureResponse::status`] and the chained methods.
#[derive(Debug, Clone)]
pub struct FixtureResponse {
    status: u16,
    headers: Vec<(String, String)>,
    parts: Vec<Part>,
    hang: bool,
    abort: bool,
    held: Held,
    /// After the parts: these bytes again and again, a pause before each, until the client goes.
    forever: Option<Box<(Vec<u8>, Duration)>>,
    /// How long the status line and headers are held back.
    headers_after: Option<Duration>,
}

/// A value kept alive while a body is written (see [`FixtureResponse::hold`]).
#[derive(Clone, Default)]
struct Held(Option<Arc<dyn Any + Send + Sync>>);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Held(..)"
        } else {
            "Held(None)"
        })
    }
}

#[derive(Debug, Clone)]
enum Part {
    Bytes(Vec<u8>),
    /// A shared buffer (large bodies: no copy per response).
    Shared(Bytes),
    Pause(Duration),
    /// Wait for a permit of the semaphore and keep it until the body ends or is abandoned.
    Acquire(Arc<tokio::sync::Semaphore>),
}

impl FixtureResponse {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            parts: Vec::new(),
            hang: false,
            abort: false,
            held: Held::default(),
            forever: None,
            headers_after: None,
        }
    }

    pub fn ok() -> Self {
        Self::status(200)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// One chunk of the body, written on its own.
    pub fn chunk(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.parts.push(Part::Bytes(bytes.into()));
        self
    }

    /// One chunk of the body from a shared buffer (a slice of a large file costs no copy).
    pub fn shared(mut self, bytes: Bytes) -> Self {
        self.parts.push(Part::Shared(bytes));
        self
    }

    /// After the last chunk, drop the connection instead of ending the body: a server that dies
    /// mid-transfer (the client sees a body shorter than its `Content-Length`).
    pub fn abort(mut self) -> Self {
        self.abort = true;
        self
    }

    /// A pause before the next chunk (or before the end of the body).
    pub fn pause(mut self, pause: Duration) -> Self {
        self.parts.push(Part::Pause(pause));
        self
    }

    /// Before the parts that follow, wait for a permit of `slots` and keep it until the body has
    /// been written to its end or the client abandoned it: a handler that models a backend
    /// serving a fixed number of requests at once shares one semaphore between its responses, so
    /// a response queues exactly as long as the one before it really holds the slot.
    pub fn acquire(mut self, slots: Arc<tokio::sync::Semaphore>) -> Self {
        self.parts.push(Part::Acquire(slots));
        self
    }

    /// A whole JSON body, with its content type.
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .chunk(value.to_string())
    }

    /// Hold the status line and headers back for `delay` (a server that accepted the connection
    /// and read the request, then stalls before answering at all).
    pub fn headers_after(mut self, delay: Duration) -> Self {
        self.headers_after = Some(delay);
        self
    }

    /// After the last chunk, keep the response open without sending anything more.
    pub fn hang(mut self) -> Self {
        self.hang = true;
        self
    }

    /// After the last chunk, send `bytes` every `every`, forever: a server that keeps the
    /// connection busy with keep-alives, or (with a piece of a valid stream) one that trickles
    /// a real answer that never ends.
    pub fn forever(mut self, bytes: impl Into<Vec<u8>>, every: Duration) -> Self {
        self.forever = Some(Box::new((bytes.into(), every)));
        self
    }

    /// Keeps `value` alive until the body has been written to its end or the client abandoned
    /// it, then drops it: a handler that models a backend with limited capacity puts a guard
    /// here whose `Drop` frees the capacity, so a client that does not abort on drop keeps it
    /// taken.
    pub fn hold(mut self, value: impl Any + Send + Sync) -> Self {
        self.held = Held(Some(Arc::new(value)));
        self
    }
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, e.g. `/api/chat` or `/v1/models?limit=2`.
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Value::Null` for an empty or non-JSON body).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

type Handler = dyn Fn(&RecordedRequest) -> FixtureResponse + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    requests: Mutex<Vec<RecordedRequest>>,
    bodies_abandoned: AtomicUsize,
    bodies_completed: AtomicUsize,
}

/// A running fixture server; it stops when dropped.
pub struct FixtureServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FixtureServer {
    /// Starts a server on an ephemeral port of 127.0.0.1 answering every request with `handler`.
    pub async fn start(
        handler: impl Fn(&RecordedRequest) -> FixtureResponse + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
            bodies_abandoned: AtomicUsize::new(0),
            bodies_completed: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            // Each chunk its own write: no Nagle coalescing of small chunks.
            let listener = listener.tap_io(|tcp| {
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::warn!(%err, "fixture server: cannot set TCP_NODELAY");
                }
            });
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "fixture server stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Response bodies the client stopped reading before their end (the connection was closed
    /// under a body still being written). A client that aborts on drop shows up here.
    pub fn bodies_abandoned(&self) -> usize {
        self.shared.bodies_abandoned.load(Ordering::SeqCst)
    }

    /// Response bodies written to their end.
    pub fn bodies_completed(&self) -> usize {
        self.shared.bodies_completed.load(Ordering::SeqCst)
    }

    /// A URL on 127.0.0.1 where nothing listens (a port just released), for connection-refused tests.
    pub async fn refused_url() -> std::io::Result<String> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        drop(listener);
        Ok(format!("http://{addr}"))
    }
}

impl Drop for FixtureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let reply = (shared.handler)(&recorded);
    shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(recorded);
    if let Some(delay) = reply.headers_after {
        tokio::time::sleep(delay).await;
    }

    let guard = BodyGuard {
        shared: Arc::clone(&shared),
        done: false,
        _held: reply.held,
        permits: Vec::new(),
    };
    let forever = reply.forever;
    let state = (VecDeque::from(reply.parts), reply.hang, reply.abort, guard);
    let stream = futures::stream::unfold(state, move |(mut parts, hang, abort, mut guard)| {
        let forever = forever.clone();
        async move {
            loop {
                match parts.pop_front() {
                    Some(Part::Pause(pause)) => tokio::time::sleep(pause).await,
                    Some(Part::Acquire(slots)) => {
                        // A closed semaphore has no slot to give: the body ends here.
                        let Ok(permit) = slots.acquire_owned().await else {
                            return None;
                        };
                        guard.permits.push(permit);
                    }
                    Some(Part::Bytes(bytes)) => {
                        return Some((Ok(Bytes::from(bytes)), (parts, hang, abort, guard)));
                    }
                    Some(Part::Shared(bytes)) => {
                        return Some((Ok(bytes), (parts, hang, abort, guard)));
                    }
                    None if forever.is_some() => {
                        if let Some(repeat) = forever {
                            let (bytes, every) = *repeat;
                            tokio::time::sleep(every).await;
                            return Some((Ok(Bytes::from(bytes)), (parts, hang, abort, guard)));
                        }
                    }
                    None if hang => futures::future::pending::<()>().await,
                    None if abort => {
                        // An error item makes hyper drop the connection mid-body; the next poll
                        // (there is none) would end the stream.
                        let error = std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            "fixture: connection dropped mid-body",
                        );
                        return Some((Err(error), (parts, true, false, guard)));
                    }
                    None => {
                        guard.mark_done();
                        return None;
                    }
                }
            }
        }
    });

    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

struct BodyGuard {
    shared: Arc<Shared>,
    done: bool,
    _held: Held,
    /// Slots taken by [`FixtureResponse::acquire`], given back when the body is dropped.
    permits: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl BodyGuard {
    fn mark_done(&mut self) {
        self.done = true;
    }
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        let counter = if self.done {
            &self.shared.bodies_completed
        } else {
            &self.shared.bodies_abandoned
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}
