//! Two loopback relays between the functions and the test bed.
//!
//! - [`Tap`]: a plain TCP relay that notes when the test bed answers a watched operation (the
//!   first response bytes after a request naming it). The test bed records a call before it
//!   answers, so that instant is "the call is recorded", seen from outside both processes.
//! - [`Replay`]: an HTTP proxy that forwards each distinct request once and answers repeats from
//!   memory, so that a warm invocation's AWS calls cost microseconds and what is left to measure
//!   is the smoke engine.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Operations whose answers the tap timestamps.
pub const WATCHED: &[&str] = &[
    "PutLifecycleEventHookExecutionStatus",
    "StopDeployment",
    "PutJobSuccessResult",
];

type Events = Arc<Mutex<Vec<(&'static str, Instant)>>>;
/// Every exchange: first request bytes in, first answer bytes back.
type Exchanges = Arc<Mutex<Vec<(Instant, Instant)>>>;

/// A TCP relay to the test bed that timestamps the answers to [`WATCHED`] operations, and
/// every exchange.
pub struct Tap {
    pub port: u16,
    events: Events,
    exchanges: Exchanges,
}

/// The watched operation a request's head names: `X-Amz-Target: Service_Version.Op` (awsJson)
/// or `POST /service/Service_Version/operation/Op` (rpc-v2-cbor, what boto3 sends today).
fn watched_in(head: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    WATCHED.iter().copied().find(|op| {
        let op = op.to_ascii_lowercase();
        text.contains(&format!(".{op}\r")) || text.contains(&format!("/operation/{op} "))
    })
}

impl Tap {
    pub async fn start(upstream: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the tap");
        let port = listener.local_addr().expect("tap addr").port();
        let events: Events = Arc::default();
        let recorded = events.clone();
        let exchanges: Exchanges = Arc::default();
        let all = exchanges.clone();
        // One upstream connection is kept ready: the test bed closes every connection after
        // its answer, so each call would otherwise wait for a second handshake.
        let spare: Arc<Mutex<Option<TcpStream>>> = Arc::default();
        let refill = move |spare: Arc<Mutex<Option<TcpStream>>>| async move {
            if let Ok(s) = TcpStream::connect(upstream).await {
                *spare.lock().expect("spare") = Some(s);
            }
        };
        refill(spare.clone()).await;
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let events = recorded.clone();
                let exchanges = all.clone();
                let ready = spare.lock().expect("spare").take();
                tokio::spawn(refill(spare.clone()));
                tokio::spawn(async move {
                    let outbound = match ready {
                        Some(s) => s,
                        None => match TcpStream::connect(upstream).await {
                            Ok(s) => s,
                            Err(_) => return,
                        },
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_server, mut to_server) = outbound.into_split();
                    let pending: Arc<Mutex<Option<&'static str>>> = Arc::default();
                    let asked = pending.clone();
                    // When the request being answered started arriving.
                    let since: Arc<Mutex<Option<Instant>>> = Arc::default();
                    let started = since.clone();
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        // The head of the request being read (a request's head may span reads).
                        let mut head: Vec<u8> = Vec::new();
                        let mut in_head = true;
                        loop {
                            let n = match from_client.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let chunk = &buf[..n];
                            started
                                .lock()
                                .expect("since")
                                .get_or_insert_with(Instant::now);
                            if in_head || chunk.starts_with(b"POST ") || chunk.starts_with(b"GET ")
                            {
                                if !in_head {
                                    head.clear();
                                }
                                head.extend_from_slice(chunk);
                                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                                    if let Some(op) = watched_in(&head[..end + 2]) {
                                        *asked.lock().expect("pending") = Some(op);
                                    }
                                    in_head = false;
                                    head.clear();
                                } else {
                                    in_head = true;
                                }
                            }
                            if to_server.write_all(chunk).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_server.shutdown().await;
                    };
                    let down = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from_server.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let now = Instant::now();
                            if let Some(op) = pending.lock().expect("pending").take() {
                                events.lock().expect("events").push((op, now));
                            }
                            if let Some(asked) = since.lock().expect("since").take() {
                                exchanges.lock().expect("exchanges").push((asked, now));
                            }
                            if to_client.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Tap {
            port,
            events,
            exchanges,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forgets what was seen.
    pub fn clear(&self) {
        self.events.lock().expect("events").clear();
        self.exchanges.lock().expect("exchanges").clear();
    }

    /// How long, between `from` and `to`, at least one call was waiting for the test bed's
    /// answer (the union of the exchanges' intervals, clipped to the window).
    pub fn waiting(&self, from: Instant, to: Instant) -> Duration {
        let mut spans: Vec<(Instant, Instant)> = self
            .exchanges
            .lock()
            .expect("exchanges")
            .iter()
            .map(|(a, b)| ((*a).max(from), (*b).min(to)))
            .filter(|(a, b)| a < b)
            .collect();
        spans.sort();
        let mut total = Duration::ZERO;
        let mut open: Option<(Instant, Instant)> = None;
        for (a, b) in spans {
            open = match open {
                Some((oa, ob)) if a <= ob => Some((oa, ob.max(b))),
                Some((oa, ob)) => {
                    total += ob - oa;
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((oa, ob)) = open {
            total += ob - oa;
        }
        total
    }

    /// When the first answer to `op` arrived since the last [`Tap::clear`].
    pub fn first(&self, op: &str) -> Option<Instant> {
        self.events
            .lock()
            .expect("events")
            .iter()
            .find(|(o, _)| *o == op)
            .map(|(_, at)| *at)
    }
}

#[derive(Clone)]
struct Cached {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Bytes,
}

struct ReplayState {
    upstream: String,
    client: reqwest::Client,
    cache: Mutex<HashMap<Vec<u8>, Cached>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// An HTTP proxy to the test bed that answers a repeated request from memory.
pub struct Replay {
    pub port: u16,
    state: Arc<ReplayState>,
}

impl Replay {
    pub async fn start(upstream: String) -> Replay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the replay proxy");
        let port = listener.local_addr().expect("replay addr").port();
        let state = Arc::new(ReplayState {
            upstream,
            client: plain_http_client(),
            cache: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Replay { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `(answered from memory, forwarded)` so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.state.hits.load(Ordering::SeqCst),
            self.state.misses.load(Ordering::SeqCst),
        )
    }
}

/// A reqwest client for plain HTTP on loopback (the workspace's reqwest has no built-in
/// crypto provider, so it is given one it never uses).
fn plain_http_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .expect("client")
}

const HOP: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "keep-alive",
];

async fn answer(
    state: Arc<ReplayState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let target = headers
        .get("x-amz-target")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let mut key = format!("{method} {path}\n").into_bytes();
    key.extend_from_slice(&target);
    key.push(b'\n');
    key.extend_from_slice(&body);
    let cached = state.cache.lock().expect("cache").get(&key).cloned();
    let found = match cached {
        Some(c) => {
            state.hits.fetch_add(1, Ordering::SeqCst);
            c
        }
        None => {
            state.misses.fetch_add(1, Ordering::SeqCst);
            let mut out = state
                .client
                .request(method, format!("{}{path}", state.upstream))
                .body(body);
            for (k, v) in headers.iter() {
                if !HOP.contains(&k.as_str()) {
                    out = out.header(k, v);
                }
            }
            let c = match out.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp
                        .headers()
                        .iter()
                        .filter(|(k, _)| !HOP.contains(&k.as_str()) && k.as_str() != "date")
                        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                        .collect();
                    let body = resp.bytes().await.unwrap_or_default();
                    Cached {
                        status,
                        headers,
                        body,
                    }
                }
                Err(e) => Cached {
                    status: 502,
                    headers: vec![],
                    body: Bytes::from(format!("replay proxy: {e}")),
                },
            };
            if c.status < 500 {
                state.cache.lock().expect("cache").insert(key, c.clone());
            }
            c
        }
    };
    let mut b = Response::builder().status(found.status);
    for (k, v) in &found.headers {
        b = b.header(k.as_str(), v.as_slice());
    }
    Ok(b.body(Full::new(found.body)).expect("response"))
}
