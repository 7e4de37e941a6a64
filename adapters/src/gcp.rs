//! Google Cloud Run's IAM-authenticated invocation: every request to a private service
//! carries `Authorization: Bearer {ID token}` whose audience is the service's URL.
//!
//! The token is minted by the metadata server of the machine the gateway runs on (Cloud
//! Run, GCE, GKE with workload identity), at `GCE_METADATA_HOST` (the variable Google's own
//! libraries read; default `metadata.google.internal`). Tokens are cached per audience and
//! refreshed five minutes before they expire (they live an hour), so an invocation almost
//! never waits for one. A token that cannot be minted fails the invocation with
//! `serverless.auth_failed`, naming what the metadata server said.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tokio::sync::Mutex;

use crate::{quote, AdapterError, ErrorKind};

/// Refresh this long before a token expires.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// ID tokens by audience.
pub struct IdTokens {
    client: reqwest::Client,
    host: String,
    cache: Mutex<HashMap<String, (String, SystemTime)>>,
}

impl IdTokens {
    /// The process's token source (the metadata server is per machine).
    pub fn shared() -> &'static IdTokens {
        static SHARED: OnceLock<IdTokens> = OnceLock::new();
        SHARED.get_or_init(|| {
            let host = std::env::var("GCE_METADATA_HOST")
                .unwrap_or_else(|_| "metadata.google.internal".to_owned());
            IdTokens::new(&host)
        })
    }

    /// A token source asking the metadata server at `host` (`host[:port]`).
    pub fn new(host: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            host: host.to_owned(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A valid ID token for `audience`, from the cache or freshly minted.
    pub async fn token(&self, audience: &str) -> Result<String, AdapterError> {
        let mut cache = self.cache.lock().await;
        if let Some((token, refresh_at)) = cache.get(audience) {
            if SystemTime::now() < *refresh_at {
                return Ok(token.clone());
            }
        }
        let url = format!(
            "http://{}/computeMetadata/v1/instance/service-accounts/default/identity",
            self.host
        );
        let fail = |detail: String| {
            AdapterError::new(
                ErrorKind::Auth,
                format!(
                    "no ID token for {audience} from the metadata server at {}: {detail}",
                    self.host
                ),
            )
        };
        let url =
            reqwest::Url::parse_with_params(&url, &[("audience", audience), ("format", "full")])
                .map_err(|e| fail(e.to_string()))?;
        let resp = self
            .client
            .get(url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("{status}: {}", quote(&body, 256))));
        }
        let token = body.trim().to_owned();
        let expires = expiry(&token).ok_or_else(|| fail("the answer is not a JWT".to_owned()))?;
        let refresh_at = expires
            .checked_sub(REFRESH_BEFORE)
            .unwrap_or(expires)
            .max(SystemTime::now());
        cache.insert(audience.to_owned(), (token.clone(), refresh_at));
        Ok(token)
    }
}

/// The `exp` claim of a JWT (not verified: the token is only passed on).
fn expiry(jwt: &str) -> Option<SystemTime> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_u64()?;
    Some(UNIX_EPOCH + Duration::from_secs(exp))
}

/// The audience Cloud Run expects: the service URL (scheme and host).
pub fn audience_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default()),
        Err(_) => url.to_owned(),
    }
}
