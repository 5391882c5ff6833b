//! S3 GetObject as one signed HTTPS GET (`signed.rs`), instead of the `aws-sdk-s3` crate.
//!
//! The functions only ever read one object from S3 (a smoke spec, a pipeline's input artifact).
//! The S3 crate brought its whole model, checksum algorithms and express-session machinery into
//! every binary that read one: the largest single part of the zips the size budget counts
//! (performance.md).

use aws_credential_types::Credentials;
use aws_types::SdkConfig;

use crate::config::AwsSettings;
use crate::signed::{CallError, Request, Signer};

/// Reads objects from S3. Cheap to clone (the HTTP client is shared).
#[derive(Clone, Debug)]
pub struct S3Reader {
    signer: Signer,
    path_style: bool,
}

impl S3Reader {
    /// A reader with the process's region, endpoint (`AWS_ENDPOINT_URL`) and credentials.
    pub fn new(sdk: &SdkConfig, settings: &AwsSettings) -> Self {
        Self {
            signer: Signer::new(sdk, settings),
            path_style: settings.s3_path_style,
        }
    }

    /// The same reader, signing with `credentials` (a CodePipeline job's artifact credentials).
    pub fn with_credentials(&self, credentials: Credentials) -> Self {
        Self {
            signer: self.signer.with_credentials(credentials),
            path_style: self.path_style,
        }
    }

    /// The object at `bucket`/`key`, at most `max_bytes` of it (a larger object is an error,
    /// found from its Content-Length or while reading).
    pub async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Vec<u8>, CallError> {
        let url = self.url(bucket, key);
        self.signer
            .send(&Request {
                service: "s3",
                method: "GET",
                url: &url,
                headers: &[],
                body: &[],
                max_bytes,
            })
            .await
    }

    /// Virtual-hosted style (`bucket.s3.region.amazonaws.com/key`) unless path style is asked
    /// for or the bucket name has a dot (it would not match the certificate's wildcard).
    fn url(&self, bucket: &str, key: &str) -> String {
        let base = match self.signer.endpoint_override() {
            Some(e) => e.to_string(),
            None => {
                let region = self.signer.region();
                let suffix = if region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                let fips = if self.signer.fips() { "-fips" } else { "" };
                let dual = if self.signer.dual_stack() {
                    ".dualstack"
                } else {
                    ""
                };
                format!("https://s3{fips}{dual}.{region}.{suffix}")
            }
        };
        let key = encode_key(key);
        if self.path_style || bucket.contains('.') {
            return format!("{base}/{bucket}/{key}");
        }
        match base.split_once("://") {
            Some((scheme, host)) => format!("{scheme}://{bucket}.{host}/{key}"),
            None => format!("{base}/{bucket}/{key}"),
        }
    }
}

/// The key, percent-encoded for a URL path (`/` kept: S3 keys use it as a separator).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(endpoint: Option<&str>, path_style: bool) -> S3Reader {
        let mut sdk = SdkConfig::builder().region(aws_types::region::Region::new("eu-west-1"));
        if let Some(e) = endpoint {
            sdk = sdk.endpoint_url(e);
        }
        let mut settings =
            AwsSettings::from_env(&crate::config::Env::from_pairs([])).expect("defaults");
        settings.s3_path_style = path_style;
        S3Reader::new(&sdk.build(), &settings)
    }

    #[test]
    fn urls_are_virtual_hosted_unless_asked_or_dotted() {
        let r = reader(None, false);
        assert_eq!(
            r.url("specs", "a/b c+d.json"),
            "https://specs.s3.eu-west-1.amazonaws.com/a/b%20c%2Bd.json"
        );
        assert_eq!(
            r.url("my.bucket", "k"),
            "https://s3.eu-west-1.amazonaws.com/my.bucket/k"
        );
        let local = reader(Some("http://127.0.0.1:4566/"), true);
        assert_eq!(local.url("b", "k/é"), "http://127.0.0.1:4566/b/k/%C3%A9");
    }
}
