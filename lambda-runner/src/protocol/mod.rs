//! The client-facing actor protocol: what the stock RivetKit client sends to an actor and
//! expects back, over HTTP (`POST /action/{name}`) and over the `/connect` WebSocket
//! (client-protocol v4), in the three encodings the client can choose (BARE is its default).
//!
//! Values (action arguments, outputs, event arguments, error metadata) are kept as
//! `ciborium::Value`: BARE and CBOR carry them as CBOR, and JSON maps onto the same values
//! through RivetKit's tagged forms (`["$BigInt", "1"]`, `["$Uint8Array", base64]`, ...).

mod types;

pub use types::*;
