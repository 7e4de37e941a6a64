//! One actor per serverless request: what the gateway sends to start it, and how long the
//! request may serve it.
//!
//! The gateway (or the Rivet engine) starts an actor on a serverless platform by sending one
//! start command for it, encoded as a versioned envoy frame (`u16le` protocol version, then
//! `ToEnvoy::ToEnvoyCommands` holding exactly one `CommandStartActor`), together with where to
//! connect back: the gateway endpoint, namespace, pool and token. Over HTTP these travel as
//! the body and `x-rivet-*` headers of `POST {url}/start`, as RivetKit's serverless handler
//! takes them; to AWS Lambda they travel as the JSON event [`LambdaStart`].

use std::time::Duration;

use base64::Engine as _;
use rivulet_wire::envoy::{Command, CommandWrapper, ToEnvoy};
use serde::{Deserialize, Serialize};

/// Largest start payload accepted (a start command carries the actor's input and preloaded
/// KV).
pub const MAX_START_PAYLOAD: usize = 16 * 1024 * 1024;

/// Time kept back before a platform deadline by default: enough to stop the actor, flush its
/// state and leave before the platform kills the request.
pub const DEFAULT_DRAIN_MARGIN: Duration = Duration::from_secs(10);

/// Why a start request was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The payload is not a versioned envoy frame of our protocol version.
    #[error("start payload is not a valid envoy frame: {0}")]
    Codec(#[from] rivulet_wire::codec::CodecError),
    /// It decoded, but is not exactly one start command.
    #[error("start payload must hold exactly one start command: {0}")]
    Shape(String),
    /// Too large.
    #[error("start payload of {0} bytes exceeds the {MAX_START_PAYLOAD}-byte limit")]
    TooLarge(usize),
    /// A required header or field is missing or malformed.
    #[error("missing or invalid {0}")]
    Missing(&'static str),
}

/// What a request serves.
#[derive(Debug, Clone)]
pub enum Start {
    /// This start command, exactly as the gateway numbered it.
    Command(Box<CommandWrapper>),
    /// A standby request: connect under this envoy key with no actor and wait for the
    /// gateway to send the start over the connection. The gateway starts one shortly before
    /// an actor moves, so the cold start is paid while the old instance still serves.
    Standby(String),
}

/// Where to connect back to and what to start.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Gateway URL (`http(s)://host:port`).
    pub endpoint: String,
    /// Namespace name.
    pub namespace: String,
    /// Pool (runner config) name.
    pub pool_name: String,
    /// Token to present, if the gateway requires one.
    pub token: Option<String>,
    /// The start command, or a standby key.
    pub start: Start,
}

impl StartRequest {
    /// The actor and generation this request serves, if its start came with it.
    pub fn actor(&self) -> Option<(&str, u32)> {
        match &self.start {
            Start::Command(c) => Some((&c.checkpoint.actor_id, c.checkpoint.generation)),
            Start::Standby(_) => None,
        }
    }
}

/// Decodes a start payload into its one start command.
pub fn parse_start_payload(payload: &[u8]) -> Result<CommandWrapper, StartError> {
    if payload.len() > MAX_START_PAYLOAD {
        return Err(StartError::TooLarge(payload.len()));
    }
    let msg = rivulet_wire::codec::decode_to_envoy_versioned(payload)?;
    let ToEnvoy::ToEnvoyCommands(mut commands) = msg else {
        return Err(StartError::Shape("not a commands message".into()));
    };
    if commands.len() != 1 {
        return Err(StartError::Shape(format!("{} commands", commands.len())));
    }
    let command = commands.remove(0);
    if !matches!(command.inner, Command::CommandStartActor(_)) {
        return Err(StartError::Shape("the command is not a start".into()));
    }
    Ok(command)
}

/// Encodes one start command as a start payload (what the gateway sends).
pub fn encode_start_payload(command: CommandWrapper) -> Vec<u8> {
    rivulet_wire::codec::encode_to_envoy_versioned(&ToEnvoy::ToEnvoyCommands(vec![command]))
}

/// The event an AWS Lambda invocation carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LambdaStart {
    /// Gateway URL.
    pub endpoint: String,
    /// Namespace name.
    pub namespace: String,
    /// Pool name.
    pub pool_name: String,
    /// Token, if the gateway requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The start payload, base64; empty for a standby request.
    #[serde(default)]
    pub payload: String,
    /// A standby request's envoy key (see [`Start::Standby`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_key: Option<String>,
}

impl LambdaStart {
    /// Validates the event into a start request.
    pub fn into_request(self) -> Result<StartRequest, StartError> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(StartError::Missing("endpoint (an http(s) URL)"));
        }
        if self.namespace.is_empty() {
            return Err(StartError::Missing("namespace"));
        }
        if self.pool_name.is_empty() {
            return Err(StartError::Missing("poolName"));
        }
        let start = match self.standby_key.filter(|k| !k.is_empty()) {
            Some(key) => Start::Standby(key),
            None => {
                let payload = base64::engine::general_purpose::STANDARD
                    .decode(self.payload.as_bytes())
                    .map_err(|_| StartError::Missing("payload (base64)"))?;
                Start::Command(Box::new(parse_start_payload(&payload)?))
            }
        };
        Ok(StartRequest {
            endpoint: self.endpoint,
            namespace: self.namespace,
            pool_name: self.pool_name,
            token: self.token.filter(|t| !t.is_empty()),
            start,
        })
    }
}

/// How a serverless request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The actor stopped (slept, was destroyed or moved) and the request is done.
    ActorStopped,
    /// The platform deadline came near: the actor was handed back to the gateway to move.
    Deadline,
    /// The connection to the gateway could not be made or was lost for good.
    GatewayLost,
    /// A standby request was sent no start before its deadline (the actor moved elsewhere,
    /// slept, or the gateway chose another request).
    Unused,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivulet_wire::envoy::{ActorCheckpoint, ActorConfig, CommandStartActor, CommandStopActor};

    fn start(actor: &str, generation: u32) -> CommandWrapper {
        CommandWrapper {
            checkpoint: ActorCheckpoint {
                actor_id: actor.to_string().into(),
                generation,
                index: 1,
            },
            inner: Command::CommandStartActor(CommandStartActor {
                config: ActorConfig {
                    name: "counter".into(),
                    key: Some("k".into()),
                    create_ts: 1,
                    input: None,
                },
                hibernating_requests: vec![],
                preloaded_kv: None,
            }),
        }
    }

    #[test]
    fn a_start_payload_round_trips() {
        let cmd = start("a1", 3);
        let bytes = encode_start_payload(cmd.clone());
        assert_eq!(parse_start_payload(&bytes).ok(), Some(cmd));
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let two = rivulet_wire::codec::encode_to_envoy_versioned(&ToEnvoy::ToEnvoyCommands(vec![
            start("a", 1),
            start("b", 1),
        ]));
        assert!(matches!(
            parse_start_payload(&two),
            Err(StartError::Shape(_))
        ));
        let stop = encode_start_payload(CommandWrapper {
            inner: Command::CommandStopActor(CommandStopActor {
                reason: rivulet_wire::envoy::StopActorReason::SleepIntent,
            }),
            ..start("a", 1)
        });
        assert!(matches!(
            parse_start_payload(&stop),
            Err(StartError::Shape(_))
        ));
        let mut wrong_version = encode_start_payload(start("a", 1));
        wrong_version[0] ^= 0xff;
        assert!(matches!(
            parse_start_payload(&wrong_version),
            Err(StartError::Codec(_))
        ));
        assert!(matches!(
            parse_start_payload(&[8]),
            Err(StartError::Codec(_))
        ));
    }

    #[test]
    fn lambda_events_are_validated() {
        let payload =
            base64::engine::general_purpose::STANDARD.encode(encode_start_payload(start("a", 2)));
        let event = LambdaStart {
            endpoint: "http://127.0.0.1:6420".into(),
            namespace: "default".into(),
            pool_name: "lambda".into(),
            token: Some(String::new()),
            payload: payload.clone(),
            standby_key: None,
        };
        let req = event.clone().into_request().expect("valid");
        assert_eq!((req.actor(), req.token.clone()), (Some(("a", 2)), None));
        let standby = LambdaStart {
            payload: String::new(),
            standby_key: Some("standby-a-3".into()),
            ..event.clone()
        }
        .into_request()
        .expect("a standby event");
        assert!(matches!(standby.start, Start::Standby(ref k) if k == "standby-a-3"));
        let bad_endpoint = LambdaStart {
            endpoint: "127.0.0.1:6420".into(),
            ..event.clone()
        };
        assert!(matches!(
            bad_endpoint.into_request(),
            Err(StartError::Missing(_))
        ));
        let bad_payload = LambdaStart {
            payload: "%%%".into(),
            ..event
        };
        assert!(matches!(
            bad_payload.into_request(),
            Err(StartError::Missing(_))
        ));
        let json: LambdaStart = serde_json::from_str(&format!(
            r#"{{"endpoint":"http://x:1","namespace":"n","poolName":"p","payload":"{payload}"}}"#
        ))
        .expect("camelCase event");
        assert_eq!(json.pool_name, "p");
    }
}
