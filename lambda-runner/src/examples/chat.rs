//! A chat room: clients connect with params `{"user": "..."}`; `post(text)` stores
//! `{user, text, ts}` and broadcasts it as `message`; `history()` returns every message.

use serde::{Deserialize, Serialize};

use crate::actor::{ActorDef, UserError};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who posted it (from the connection's params, never from the action's arguments).
    pub user: String,
    /// What they wrote.
    pub text: String,
    /// When, in ms since the epoch.
    pub ts: i64,
}

/// The room's persistent state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatState {
    /// Every message, oldest first.
    pub messages: Vec<Message>,
}

/// What a client passes when it connects.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatParams {
    /// The user's name.
    pub user: Option<String>,
}

/// Per-connection state: who is on the other end (saved with the connection, so it is still
/// known after the room slept or moved under a connected client).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatConn {
    /// The user's name.
    pub user: String,
}

fn user_of(params: Option<ChatParams>) -> Option<String> {
    params
        .and_then(|params| params.user)
        .filter(|user| !user.trim().is_empty())
}

/// The chat actor type.
pub fn chat() -> ActorDef<ChatState, ChatParams, ChatConn> {
    ActorDef::new()
        .state(ChatState::default())
        .on_before_connect(|_c, params| async move {
            match user_of(params) {
                Some(_) => Ok(()),
                None => Err(UserError::new("a user name is required to join the chat")
                    .with_code("missing_user")
                    .into()),
            }
        })
        .conn_state(|_c, params| async move {
            Ok(ChatConn {
                user: user_of(params).unwrap_or_default(),
            })
        })
        .action("post", |c, (text,): (String,)| async move {
            let user = c
                .conn()
                .map(|conn| conn.state(|s| s.user.clone()))
                .unwrap_or_default();
            let message = Message {
                user,
                text,
                ts: c.now_ms(),
            };
            c.update(|s| s.messages.push(message.clone()));
            c.broadcast("message", (message.clone(),));
            Ok(message)
        })
        .action("history", |c, ()| async move {
            Ok(c.state(|s| s.messages.clone()))
        })
}
