//! The native Rust runner and actor SDK for Rivulet (envoy client, actor API, Lambda and HTTP
//! serverless entry points). It arrives with the lambda-runner issue; wire types are already
//! shared through `rivulet-wire`.
