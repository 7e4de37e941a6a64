//! Google Cloud Run's IAM-authenticated invocation: every request to a private service
//! carries `Authorization: Bearer {ID token}` whose audience is the service's URL.
//!
//! Where the token comes from, as Google's own libraries decide:
//! - `GOOGLE_APPLICATION_CREDENTIALS` names a service-account key file (a gateway outside
//!   Google Cloud): a JWT signed with the key (RS256, `target_audience` = the service URL) is
//!   exchanged at the key's `token_uri` for an ID token;
//! - otherwise the metadata server of the machine the gateway runs on (Cloud Run, GCE, GKE
//!   with workload identity), at `GCE_METADATA_HOST` (default `metadata.google.internal`).
//!
//! Tokens are cached per audience and refreshed five minutes before they expire (they live
//! an hour), so an invocation almost never waits for one. A token that cannot be minted (an
//! unreadable key file included) fails the invocation with `serverless.auth_failed`, naming
//! what went wrong.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tokio::sync::Mutex;

use crate::{quote, AdapterError, ErrorKind};

/// Refresh this long before a token expires.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The OAuth endpoint a key without `token_uri` uses.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// A service account's key, as in the JSON file the console downloads.
#[derive(Clone, serde::Deserialize)]
pub struct ServiceAccountKey {
    /// `service_account` for a key of this kind.
    #[serde(rename = "type")]
    pub kind: String,
    /// The account, which issues the JWT.
    pub client_email: String,
    /// PEM (PKCS#8) RSA private key.
    pub private_key: String,
    /// Where the signed JWT is exchanged.
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Reads a key file's JSON; only `service_account` keys can mint ID tokens.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let key: Self = serde_json::from_str(text).map_err(|e| format!("not a key file: {e}"))?;
        if key.kind != "service_account" {
            return Err(format!(
                "a key of type {:?} cannot mint ID tokens; a service-account key is needed",
                key.kind
            ));
        }
        jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes())
            .map_err(|e| format!("private_key is not a PEM RSA key: {e}"))?;
        Ok(key)
    }
}

/// Where tokens come from.
#[derive(Debug)]
enum Source {
    Metadata {
        host: String,
    },
    ServiceAccount(Box<ServiceAccountKey>),
    /// Credentials were named but are unusable: every token request says why.
    Broken(String),
}

/// ID tokens by audience.
pub struct IdTokens {
    client: reqwest::Client,
    source: Source,
    cache: Mutex<HashMap<String, (String, SystemTime)>>,
}

impl IdTokens {
    /// The process's token source (the metadata server is per machine).
    pub fn shared() -> &'static IdTokens {
        static SHARED: OnceLock<IdTokens> = OnceLock::new();
        SHARED.get_or_init(|| {
            if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
                let path = std::path::PathBuf::from(path);
                let source = std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| ServiceAccountKey::from_json(&text));
                return match source {
                    Ok(key) => IdTokens::from_service_account(key),
                    Err(why) => IdTokens::with_source(Source::Broken(format!(
                        "GOOGLE_APPLICATION_CREDENTIALS ({}): {why}",
                        path.display()
                    ))),
                };
            }
            let host = std::env::var("GCE_METADATA_HOST")
                .unwrap_or_else(|_| "metadata.google.internal".to_owned());
            IdTokens::new(&host)
        })
    }

    /// A token source asking the metadata server at `host` (`host[:port]`).
    pub fn new(host: &str) -> Self {
        Self::with_source(Source::Metadata {
            host: host.to_owned(),
        })
    }

    /// A token source that signs with a service account's key.
    pub fn from_service_account(key: ServiceAccountKey) -> Self {
        Self::with_source(Source::ServiceAccount(Box::new(key)))
    }

    fn with_source(source: Source) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            source,
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
        let token = match &self.source {
            Source::Metadata { host } => self.mint_from_metadata(host, audience).await?,
            Source::ServiceAccount(key) => self.mint_from_key(key, audience).await?,
            Source::Broken(why) => {
                return Err(AdapterError::new(
                    ErrorKind::Auth,
                    format!("no ID token for {audience}: {why}"),
                ))
            }
        };
        let fail = |detail: &str| {
            AdapterError::new(
                ErrorKind::Auth,
                format!("no ID token for {audience}: {detail}"),
            )
        };
        let expires = expiry(&token).ok_or_else(|| fail("the answer is not a JWT"))?;
        let refresh_at = expires
            .checked_sub(REFRESH_BEFORE)
            .unwrap_or(expires)
            .max(SystemTime::now());
        cache.insert(audience.to_owned(), (token.clone(), refresh_at));
        Ok(token)
    }
}

impl IdTokens {
    async fn mint_from_metadata(&self, host: &str, audience: &str) -> Result<String, AdapterError> {
        let fail = |detail: String| {
            AdapterError::new(
                ErrorKind::Auth,
                format!("no ID token for {audience} from the metadata server at {host}: {detail}"),
            )
        };
        let url =
            format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/identity");
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
        Ok(body.trim().to_owned())
    }

    /// Google's JWT-bearer grant: an assertion signed with the key, `target_audience` the
    /// service, exchanged for an ID token.
    async fn mint_from_key(
        &self,
        key: &ServiceAccountKey,
        audience: &str,
    ) -> Result<String, AdapterError> {
        let token_uri = key.token_uri.as_deref().unwrap_or(GOOGLE_TOKEN_URI);
        let fail = |detail: String| {
            AdapterError::new(
                ErrorKind::Auth,
                format!(
                    "no ID token for {audience} for {} from {token_uri}: {detail}",
                    key.client_email
                ),
            )
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = serde_json::json!({
            "iss": key.client_email,
            "sub": key.client_email,
            "aud": token_uri,
            "iat": now,
            "exp": now + 3600,
            "target_audience": audience,
        });
        let signing = jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key.as_bytes())
            .map_err(|e| fail(format!("private_key: {e}")))?;
        let assertion = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &signing,
        )
        .map_err(|e| fail(format!("signing: {e}")))?;
        let form = reqwest::Url::parse_with_params(
            "http://form.invalid/",
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ],
        )
        .map_err(|e| fail(e.to_string()))?;
        let resp = self
            .client
            .post(token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.query().unwrap_or_default().to_owned())
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("{status}: {}", quote(&body, 256))));
        }
        let answer: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| fail(format!("not JSON: {e}")))?;
        answer
            .get("id_token")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| fail(format!("no id_token in {}", quote(&body, 256))))
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
