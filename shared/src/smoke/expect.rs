//! Judging one response against its expectations: pure, no I/O.

use std::time::Duration;

use super::spec::{Expect, HeaderMatch, VersionField};
use crate::text::quote;

/// What came back from one request.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub latency: Duration,
}

impl Observed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("body is not JSON ({e})"))
    }
}

/// Every expectation the response misses, as readable reasons (empty when it passes).
pub fn evaluate(expect: &Expect, seen: &Observed) -> Vec<String> {
    let mut fails = Vec::new();
    if !expect
        .status
        .iter()
        .any(|(lo, hi)| (*lo..=*hi).contains(&seen.status))
    {
        let want: Vec<String> = expect
            .status
            .iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        let mut msg = format!("status {} (expected {})", seen.status, want.join(" or "));
        if (300..400).contains(&seen.status) {
            let to = seen.header("location").unwrap_or("nowhere");
            msg.push_str(&format!(
                ", a redirect to {} that is not followed",
                quote(to, 120)
            ));
        }
        fails.push(msg);
    }
    for (name, m) in &expect.headers {
        let got = seen.header(name);
        match (m, got) {
            (HeaderMatch::Present(true), None) => fails.push(format!("header {name} missing")),
            (HeaderMatch::Present(false), Some(v)) => fails.push(format!(
                "header {name} present ({}) but expected absent",
                quote(v, 80)
            )),
            (HeaderMatch::Present(_), _) => {}
            (HeaderMatch::Equals(want), Some(v)) if v == want => {}
            (HeaderMatch::Equals(want), v) => fails.push(format!(
                "header {name} is {} (expected {})",
                v.map(|v| quote(v, 80)).unwrap_or_else(|| "missing".into()),
                quote(want, 80)
            )),
            (HeaderMatch::Matches(re), Some(v)) if re.is_match(v) => {}
            (HeaderMatch::Matches(re), v) => fails.push(format!(
                "header {name} is {} (expected to match {})",
                v.map(|v| quote(v, 80)).unwrap_or_else(|| "missing".into()),
                quote(re.as_str(), 80)
            )),
        }
    }
    if !expect.body_contains.is_empty() || expect.body_matches.is_some() {
        let text = String::from_utf8_lossy(&seen.body);
        for needle in &expect.body_contains {
            if !text.contains(needle.as_str()) {
                fails.push(format!("body does not contain {}", quote(needle, 80)));
            }
        }
        if let Some(re) = &expect.body_matches {
            if !re.is_match(&text) {
                fails.push(format!("body does not match {}", quote(re.as_str(), 80)));
            }
        }
    }
    if !expect.json.is_empty() {
        match seen.json() {
            Err(e) => fails.push(e),
            Ok(doc) => {
                for (pointer, want) in &expect.json {
                    match doc.pointer(pointer) {
                        Some(v) if v == want => {}
                        Some(v) => fails.push(format!(
                            "JSON {pointer} is {} (expected {})",
                            quote(&v.to_string(), 80),
                            quote(&want.to_string(), 80)
                        )),
                        None => fails.push(format!("JSON {pointer} missing")),
                    }
                }
            }
        }
    }
    if let Some(max) = expect.max_latency {
        if seen.latency > max {
            fails.push(format!(
                "latency {} ms above the maximum of {} ms",
                seen.latency.as_millis(),
                max.as_millis()
            ));
        }
    }
    fails
}

/// Whether the response proves that `expected` answered; the reason when it does not.
pub fn prove_version(field: &VersionField, expected: &str, seen: &Observed) -> Result<(), String> {
    let found = match field {
        VersionField::Header(h) => match seen.header(h) {
            Some(v) => v.trim().to_string(),
            None => {
                return Err(format!(
                    "version header {h} missing (status {})",
                    seen.status
                ))
            }
        },
        VersionField::JsonPointer(p) => match seen.json()?.pointer(p) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return Err(format!("version field {p} missing from the JSON body")),
        },
    };
    if found == expected {
        Ok(())
    } else {
        Err(format!(
            "version {} answered, expected {} (the old tasks may still be serving)",
            quote(&found, 80),
            quote(expected, 80)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smoke::spec::Spec;

    fn observed(status: u16, headers: &[(&str, &str)], body: &str, ms: u64) -> Observed {
        Observed {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            latency: Duration::from_millis(ms),
        }
    }

    fn expect_of(json: &str) -> Expect {
        let doc = format!(r#"{{"checks": [{{"path": "/", "expect": {json}}}]}}"#);
        Spec::parse(&doc).expect("valid").checks.remove(0).expect
    }

    /// (expectation, response, words each failure reason must hold; empty = pass)
    #[test]
    fn evaluation_table() {
        let ok = observed(
            200,
            &[("content-type", "application/json"), ("x-v", "2")],
            r#"{"status":"ok","n":3}"#,
            20,
        );
        let cases: Vec<(&str, Observed, Vec<&str>)> = vec![
            ("{}", ok.clone(), vec![]),
            (
                "{}",
                observed(500, &[], "", 5),
                vec!["status 500 (expected 200-299)"],
            ),
            (
                "{}",
                observed(302, &[("location", "http://127.0.0.1/x")], "", 5),
                vec!["302", "redirect", "127.0.0.1"],
            ),
            (
                r#"{"status": [200, 204]}"#,
                observed(204, &[], "", 5),
                vec![],
            ),
            (
                r#"{"status": {"min": 300, "max": 399}}"#,
                observed(301, &[], "", 5),
                vec![],
            ),
            (
                r#"{"headers": {"x-v": {"equals": "2"}}}"#,
                ok.clone(),
                vec![],
            ),
            (
                r#"{"headers": {"x-v": {"equals": "3"}}}"#,
                ok.clone(),
                vec!["header x-v is \"2\" (expected \"3\")"],
            ),
            (
                r#"{"headers": {"X-Missing": {"present": true}}}"#,
                ok.clone(),
                vec!["header x-missing missing"],
            ),
            (
                r#"{"headers": {"content-type": {"matches": "json$"}}}"#,
                ok.clone(),
                vec![],
            ),
            (
                r#"{"body_contains": ["ok", "nope"]}"#,
                ok.clone(),
                vec!["does not contain \"nope\""],
            ),
            (r#"{"body_matches": "\"n\":\\d"}"#, ok.clone(), vec![]),
            (
                r#"{"json": {"/status": "ok", "/n": 3}}"#,
                ok.clone(),
                vec![],
            ),
            (
                r#"{"json": {"/n": 4}}"#,
                ok.clone(),
                vec!["JSON /n is \"3\" (expected \"4\")"],
            ),
            (
                r#"{"json": {"/x": 4}}"#,
                observed(200, &[], "<html>", 5),
                vec!["not JSON"],
            ),
            (
                r#"{"max_latency_ms": 10}"#,
                ok.clone(),
                vec!["latency 20 ms above the maximum of 10 ms"],
            ),
        ];
        for (expect, seen, words) in cases {
            let fails = evaluate(&expect_of(expect), &seen);
            if words.is_empty() {
                assert!(fails.is_empty(), "{expect} should pass: {fails:?}");
            } else {
                let all = fails.join(" | ");
                for w in words {
                    assert!(all.contains(w), "{expect}: {all:?} should contain {w:?}");
                }
            }
        }
    }

    #[test]
    fn version_proof_by_header_and_json() {
        let seen = observed(200, &[("x-app-version", "v2")], r#"{"version":"v1"}"#, 1);
        assert!(prove_version(&VersionField::Header("x-app-version".into()), "v2", &seen).is_ok());
        let e = prove_version(&VersionField::JsonPointer("/version".into()), "v2", &seen)
            .expect_err("old");
        assert!(e.contains("\"v1\" answered, expected \"v2\""), "{e}");
        let e = prove_version(&VersionField::Header("x-nope".into()), "v2", &seen)
            .expect_err("missing");
        assert!(e.contains("missing"), "{e}");
    }
}
