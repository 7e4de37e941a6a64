//! Typed arguments: how an action's CBOR argument array becomes a Rust tuple ([`FromArgs`]),
//! and how a tuple becomes the argument array of an event or a scheduled action
//! ([`IntoArgs`]).
//!
//! A client calls `increment(5)` with the array `[5]`; the action takes `(n,): (i64,)`. Like a
//! JavaScript function, a missing trailing argument reads as null (so `Option<T>` works for
//! optional arguments) and extra arguments are ignored. [`RawArgs`] takes the array as is.

use ciborium::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes an action's argument array into a Rust value, usually a tuple.
pub trait FromArgs: Sized + Send + 'static {
    /// Decodes, or says what did not fit.
    fn from_args(args: Vec<Value>) -> Result<Self, String>;
}

/// Encodes a Rust value, usually a tuple, as an argument array.
pub trait IntoArgs {
    /// Encodes, or says what could not be serialized.
    fn into_args(self) -> Result<Vec<Value>, String>;
}

/// The argument array as it came, for actions that take any number of arguments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawArgs(pub Vec<Value>);

impl FromArgs for RawArgs {
    fn from_args(args: Vec<Value>) -> Result<Self, String> {
        Ok(Self(args))
    }
}

impl IntoArgs for RawArgs {
    fn into_args(self) -> Result<Vec<Value>, String> {
        Ok(self.0)
    }
}

impl FromArgs for () {
    fn from_args(_args: Vec<Value>) -> Result<Self, String> {
        Ok(())
    }
}

impl IntoArgs for () {
    fn into_args(self) -> Result<Vec<Value>, String> {
        Ok(Vec::new())
    }
}

fn decode_arg<T: DeserializeOwned>(index: usize, value: Option<Value>) -> Result<T, String> {
    value
        .unwrap_or(Value::Null)
        .deserialized()
        .map_err(|error| format!("argument {index}: {error}"))
}

fn encode_arg<T: Serialize>(index: usize, value: &T) -> Result<Value, String> {
    Value::serialized(value).map_err(|error| format!("argument {index}: {error}"))
}

macro_rules! tuple_args {
    ($($name:ident $index:tt),+) => {
        impl<$($name),+> FromArgs for ($($name,)+)
        where
            $($name: DeserializeOwned + Send + 'static),+
        {
            fn from_args(args: Vec<Value>) -> Result<Self, String> {
                let mut args = args.into_iter();
                Ok(($(decode_arg::<$name>($index, args.next())?,)+))
            }
        }

        impl<$($name),+> IntoArgs for ($($name,)+)
        where
            $($name: Serialize),+
        {
            fn into_args(self) -> Result<Vec<Value>, String> {
                Ok(vec![$(encode_arg($index, &self.$index)?),+])
            }
        }
    };
}

tuple_args!(A 0);
tuple_args!(A 0, B 1);
tuple_args!(A 0, B 1, C 2);
tuple_args!(A 0, B 1, C 2, D 3);
tuple_args!(A 0, B 1, C 2, D 3, E 4);
tuple_args!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_args!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_args!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
