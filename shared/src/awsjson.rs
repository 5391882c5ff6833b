//! The two reads the smoke hook makes of SSM and Secrets Manager, as signed JSON calls
//! (`signed.rs`) instead of `aws-sdk-ssm` and `aws-sdk-secretsmanager`: each crate was linked
//! for one operation and brought its whole model into the hook's zip (about 0.34 MB of code,
//! bench/analysis.md), and its own SDK client into every cold start.
//!
//! Both services speak the AWS JSON 1.1 protocol: a POST to `/` with
//! `X-Amz-Target: <prefix>.<Operation>` and a JSON body.

use aws_types::SdkConfig;
use serde_json::{json, Value};

use crate::config::AwsSettings;
use crate::secret::Secret;
use crate::signed::{CallError, Request, Signer};

/// The largest answer read (a SecureString is at most 8 KB, a secret 64 KB).
const MAX_ANSWER: u64 = 1024 * 1024;

/// SSM and Secrets Manager reads. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ParamsAndSecrets {
    signer: Signer,
}

impl ParamsAndSecrets {
    pub fn new(sdk: &SdkConfig, settings: &AwsSettings) -> Self {
        Self {
            signer: Signer::new(sdk, settings),
        }
    }

    /// SSM GetParameter with decryption: the value, or `None` when there is no such parameter.
    pub async fn parameter(&self, name: &str) -> Result<Option<Secret<String>>, CallError> {
        let answer = self
            .call(
                "ssm",
                "AmazonSSM.GetParameter",
                &json!({ "Name": name, "WithDecryption": true }),
            )
            .await;
        match answer {
            Ok(doc) => match doc.pointer("/Parameter/Value") {
                Some(Value::String(v)) => Ok(Some(Secret::new(v.clone()))),
                _ => Err(malformed("GetParameter", "Parameter.Value")),
            },
            Err(e) if e.code() == Some("ParameterNotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Secrets Manager GetSecretValue: the secret's string (`None` when it only has a binary
    /// value).
    pub async fn secret_string(&self, id: &str) -> Result<Option<Secret<String>>, CallError> {
        let doc = self
            .call(
                "secretsmanager",
                "secretsmanager.GetSecretValue",
                &json!({ "SecretId": id }),
            )
            .await?;
        Ok(match doc.get("SecretString") {
            Some(Value::String(v)) => Some(Secret::new(v.clone())),
            _ => None,
        })
    }

    async fn call(&self, service: &str, target: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("{}/", self.signer.regional_endpoint(service));
        let body = body.to_string();
        let bytes = self
            .signer
            .send(&Request {
                service,
                method: "POST",
                url: &url,
                headers: &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", target),
                ],
                body: body.as_bytes(),
                max_bytes: MAX_ANSWER,
            })
            .await?;
        // The answer may hold a secret: a parse error says where, never what.
        serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Transport(format!(
                "{target}: the answer is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }
}

fn malformed(op: &str, field: &str) -> CallError {
    CallError::Transport(format!("{op}: the answer has no {field}"))
}
