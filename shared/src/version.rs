//! The version being deployed, read from a container image reference.
//!
//! `registry/repo:tag`, `registry/repo@sha256:…` and `registry/repo:tag@sha256:…` (a registry
//! may carry a port: `host:5000/repo:tag`).

use crate::smoke::spec::VersionSource;

/// The tag and digest of an image reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImageVersion {
    pub image: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageVersion {
    pub fn parse(image: &str) -> Self {
        let (name, digest) = match image.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (image, None),
        };
        let last_segment = name.rsplit('/').next().unwrap_or(name);
        let tag = last_segment
            .split_once(':')
            .map(|(_, t)| t.to_string())
            .filter(|t| !t.is_empty());
        Self {
            image: image.to_string(),
            tag,
            digest: digest.filter(|d| !d.is_empty()),
        }
    }

    /// The value a version proof must find, or why there is none.
    pub fn expected(&self, source: VersionSource) -> Result<&str, String> {
        let pick = match source {
            VersionSource::Auto => self.tag.as_deref().or(self.digest.as_deref()),
            VersionSource::Tag => self.tag.as_deref(),
            VersionSource::Digest => self.digest.as_deref(),
        };
        pick.ok_or_else(|| {
            let want = match source {
                VersionSource::Auto => "a tag or digest",
                VersionSource::Tag => "a tag",
                VersionSource::Digest => "a digest",
            };
            format!("the deployed image {:?} has no {want} to prove", self.image)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_table() {
        let cases = [
            ("repo", None, None),
            ("repo:v2", Some("v2"), None),
            (
                "123.dkr.ecr.us-east-1.amazonaws.com/app:1.4.0",
                Some("1.4.0"),
                None,
            ),
            ("localhost:5000/app", None, None),
            ("localhost:5000/app:abc123", Some("abc123"), None),
            ("app@sha256:aa", None, Some("sha256:aa")),
            ("app:v3@sha256:bb", Some("v3"), Some("sha256:bb")),
        ];
        for (image, tag, digest) in cases {
            let v = ImageVersion::parse(image);
            assert_eq!(v.tag.as_deref(), tag, "{image}");
            assert_eq!(v.digest.as_deref(), digest, "{image}");
        }
    }

    #[test]
    fn expected_value_follows_the_source() {
        let v = ImageVersion::parse("app:v3@sha256:bb");
        assert_eq!(v.expected(VersionSource::Auto), Ok("v3"));
        assert_eq!(v.expected(VersionSource::Digest), Ok("sha256:bb"));
        let d = ImageVersion::parse("app@sha256:cc");
        assert_eq!(d.expected(VersionSource::Auto), Ok("sha256:cc"));
        assert!(d.expected(VersionSource::Tag).is_err());
    }
}
