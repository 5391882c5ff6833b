//! A Lambda Runtime API emulator (the 2018-06-01 API), and the real function binary run
//! against it as Lambda would: one process, invocations handed out by `GET …/next`, answers
//! taken from `POST …/response` and `…/error`, the deadline in `Lambda-Runtime-Deadline-Ms`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// What an invocation ended with.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The function's return value (`…/response`).
    pub response: Option<Value>,
    /// The function's error (`…/error`).
    pub error: Option<Value>,
    /// Spawn or enqueue → answer.
    pub elapsed: Duration,
}

struct Pending {
    id: String,
    event: Value,
    deadline_ms: u64,
}

/// `(response, error)` of one invocation.
type Answer = (Option<Value>, Option<Value>);

struct Shared {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<String>>,
}

/// A function binary running against its own emulator.
pub struct Function {
    child: tokio::process::Child,
    sender: mpsc::UnboundedSender<Pending>,
    shared: Arc<Shared>,
    logs: Arc<Mutex<Vec<String>>>,
    counter: Mutex<u64>,
    pub spawned: Instant,
}

impl Function {
    /// Starts the emulator and spawns `binary` with `env` (and nothing else from this
    /// process's environment).
    pub async fn start(binary: &Path, env: &[(String, String)]) -> Function {
        assert!(
            binary.exists(),
            "{} not found: build the functions first (`cargo build --workspace --bins`; scripts/test.sh does)",
            binary.display()
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the runtime API");
        let addr = listener.local_addr().expect("addr");
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
        });
        let serve = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = serve.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| route(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        let name = binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("function")
            .to_string();
        let mut cmd = tokio::process::Command::new(binary);
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        Function {
            child,
            sender,
            shared,
            logs,
            counter: Mutex::new(0),
            spawned,
        }
    }

    /// Invokes with a deadline `budget` from now; waits for the answer (at most the budget
    /// plus 15 s, then panics with the function's logs).
    pub async fn invoke(&self, event: Value, budget: Duration) -> Invocation {
        let deadline = SystemTime::now() + budget;
        let ms = deadline
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        self.invoke_at(event, ms, budget + Duration::from_secs(15))
            .await
    }

    /// Invokes with an absolute deadline (Unix ms), waiting at most `wait` for the answer.
    pub async fn invoke_at(&self, event: Value, deadline_ms: u64, wait: Duration) -> Invocation {
        let id = {
            let mut c = self.counter.lock().expect("counter");
            *c += 1;
            format!("req-{}-{}", std::process::id(), *c)
        };
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiting
            .lock()
            .expect("waiting")
            .insert(id.clone(), tx);
        let started = Instant::now();
        self.sender
            .send(Pending {
                id,
                event,
                deadline_ms,
            })
            .expect("emulator queue");
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok((response, error))) => {
                let elapsed = started.elapsed();
                self.settle_logs().await;
                Invocation {
                    response,
                    error,
                    elapsed,
                }
            }
            _ => panic!(
                "no answer within {wait:?}; init error: {:?}; logs:\n{}",
                self.shared.init_error.lock().expect("init").clone(),
                self.logs().join("\n")
            ),
        }
    }

    /// The function writes its outcome line before it answers, but the line reaches `logs`
    /// through a reader task: wait until the pipe has gone quiet (no new line for 30 ms, at
    /// most 1 s), so that callers see every line written before the answer.
    async fn settle_logs(&self) {
        let until = Instant::now() + Duration::from_secs(1);
        let mut seen = self.logs.lock().expect("logs").len();
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let now = self.logs.lock().expect("logs").len();
            if now == seen {
                return;
            }
            seen = now;
        }
    }

    /// Every line the function wrote (stdout and stderr).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    /// The outcome lines (`"target": "outcome"`) written so far, parsed.
    pub fn outcomes(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "outcome")
            .collect()
    }

    /// The process's peak resident set so far (`VmHWM`, KiB), read from /proc.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Stops the process.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

type Body = Full<Bytes>;

fn reply(status: u16, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parse = |b: &Bytes| {
        serde_json::from_slice::<Value>(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
    };
    const BASE: &str = "/2018-06-01/runtime";
    if method == hyper::Method::GET && path == format!("{BASE}/invocation/next") {
        let next = shared.queue.lock().await.recv().await;
        return Ok(match next {
            None => reply(500, "emulator closed"),
            Some(p) => Response::builder()
                .status(200)
                .header("lambda-runtime-aws-request-id", &p.id)
                .header("lambda-runtime-deadline-ms", p.deadline_ms.to_string())
                .header(
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:local",
                )
                .header(
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000",
                )
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(p.event.to_string())))
                .expect("response"),
        });
    }
    if method == hyper::Method::POST && path == format!("{BASE}/init/error") {
        *shared.init_error.lock().expect("init") =
            Some(String::from_utf8_lossy(&body).into_owned());
        return Ok(reply(202, "{}"));
    }
    if let Some(rest) = path.strip_prefix(&format!("{BASE}/invocation/")) {
        if let Some((id, kind)) = rest.split_once('/') {
            let outcome = match kind {
                "response" => Some((Some(parse(&body)), None)),
                "error" => Some((None, Some(parse(&body)))),
                _ => None,
            };
            if let Some(outcome) = outcome {
                if let Some(tx) = shared.waiting.lock().expect("waiting").remove(id) {
                    let _ = tx.send(outcome);
                    return Ok(reply(202, "{}"));
                }
                return Ok(reply(400, "unknown or already answered request id"));
            }
        }
    }
    Ok(reply(404, "not a runtime API route"))
}

impl Function {
    /// The process id, while the process runs (for reading its `/proc` entries).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
