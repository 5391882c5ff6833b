//! A local HTTP app standing in for the service being deployed. A test picks its behaviour
//! and can change it while the app runs; the app records the requests it received.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// How the app answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// 200 on every path; `/version` answers `{"version": v}`; every answer carries
    /// `x-app-version: v`.
    Healthy(String),
    /// 500 everywhere.
    Error500,
    /// 503 for the first `n` requests, then healthy with `version`.
    FlakyThenHealthy { n: u32, version: String },
    /// Answers as `old` for the first `n` requests, then as `new` (the listener switching over).
    SwitchesAfter { n: u32, old: String, new: String },
    /// Waits this long before sending headers.
    Slow(Duration),
    /// 302 to the Lambda Runtime API on loopback.
    RedirectToLoopback,
    /// 200 with a body that never ends.
    EndlessBody,
    /// 200 with a body sent one byte every 300 ms.
    TrickleBody,
}

/// One request the app received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

struct State {
    behaviour: Behaviour,
    count: u32,
    seen: Vec<Seen>,
}

/// A running sample app.
#[derive(Clone)]
pub struct SampleApp {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl SampleApp {
    /// Starts the app on 127.0.0.1 and a free port, as a task of the current runtime.
    pub async fn start(behaviour: Behaviour) -> SampleApp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sample app");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(State {
            behaviour,
            count: 0,
            seen: vec![],
        }));
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
        SampleApp { port, state }
    }

    /// Changes the behaviour from now on.
    pub fn set(&self, behaviour: Behaviour) {
        let mut s = self.state.lock().expect("app state");
        s.behaviour = behaviour;
        s.count = 0;
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().expect("app state").seen.clone()
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: u16, version: Option<&str>, body: String) -> Response<Body> {
    let mut b = Response::builder().status(status).header(
        "content-type",
        if body.starts_with('{') {
            "application/json"
        } else {
            "text/plain"
        },
    );
    if let Some(v) = version {
        b = b.header("x-app-version", v);
    }
    b.body(Full::new(Bytes::from(body)).boxed())
        .expect("response")
}

fn healthy(path: &str, version: &str) -> Response<Body> {
    match path {
        "/version" => full(200, Some(version), format!(r#"{{"version":"{version}"}}"#)),
        "/health" => full(200, Some(version), r#"{"status":"ok"}"#.to_string()),
        _ => full(200, Some(version), format!("hello from {version}")),
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let (behaviour, count) = {
        let mut s = state.lock().expect("app state");
        s.count += 1;
        s.seen.push(Seen {
            method: req.method().to_string(),
            path: path.clone(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        });
        (s.behaviour.clone(), s.count)
    };
    let _ = req.into_body().collect().await;
    Ok(match behaviour {
        Behaviour::Healthy(v) => healthy(&path, &v),
        Behaviour::Error500 => full(500, None, "internal error".into()),
        Behaviour::FlakyThenHealthy { n, version } if count <= n => {
            let _ = version;
            full(503, None, "warming up".into())
        }
        Behaviour::FlakyThenHealthy { version, .. } => healthy(&path, &version),
        Behaviour::SwitchesAfter { n, old, .. } if count <= n => healthy(&path, &old),
        Behaviour::SwitchesAfter { new, .. } => healthy(&path, &new),
        Behaviour::Slow(d) => {
            tokio::time::sleep(d).await;
            healthy(&path, "slow")
        }
        Behaviour::RedirectToLoopback => Response::builder()
            .status(302)
            .header(
                "location",
                "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next",
            )
            .body(Full::new(Bytes::new()).boxed())
            .expect("response"),
        Behaviour::EndlessBody => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures::stream::repeat_with(move || {
                Ok::<_, Infallible>(Frame::data(chunk.clone()))
            });
            Response::builder()
                .status(200)
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .expect("response")
        }
        Behaviour::TrickleBody => {
            let stream = futures::stream::unfold(0u32, |i| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                (i < 1000).then(|| {
                    (
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"."))),
                        i + 1,
                    )
                })
            });
            Response::builder()
                .status(200)
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .expect("response")
        }
    })
}
