//! The runner the end-to-end tests use: the example actors plus `probe`, an actor made to be
//! observed — it sleeps after one idle second, fails on request (as a user error and as an
//! internal one), schedules actions, and lets a client opt out of hibernation, so tests can
//! see state survive a sleep, an alarm wake a sleeping actor, and sockets of both kinds
//! through a sleep. Run it like `rivulet-runner` (`serve`, `lambda`, `http`).

use std::process::ExitCode;
use std::time::Duration;

use rivulet_lambda_runner::actor::{ActorDef, ActorError, ActorOptions, UserError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Probe {
    count: i64,
    wakes: i64,
}

fn probe() -> ActorDef<Probe> {
    ActorDef::new()
        .state(Probe::default())
        // Clients that connect with `{"stay": true}` opt out of hibernation: they keep the
        // probe awake and are closed when it stops.
        .can_hibernate(|params: Option<&serde_json::Value>| {
            params.and_then(|p| p.get("stay")) != Some(&serde_json::Value::Bool(true))
        })
        .options(ActorOptions {
            sleep_timeout: Duration::from_secs(1),
            ..ActorOptions::default()
        })
        .on_wake(|c| async move {
            c.update(|s| s.wakes += 1);
            Ok(())
        })
        .action("increment", |c, (n,): (i64,)| async move {
            let count = c.update(|s| {
                s.count += n;
                s.count
            });
            c.broadcast("newCount", (count,));
            Ok(count)
        })
        .action("get", |c, ()| async move { Ok(c.state(|s| s.count)) })
        .action("wakes", |c, ()| async move { Ok(c.state(|s| s.wakes)) })
        .action("userError", |_c, ()| async move {
            Err::<(), ActorError>(
                UserError::new("the probe refused")
                    .with_code("probe_refused")
                    .with_metadata(&serde_json::json!({"reason": "asked to"}))
                    .into(),
            )
        })
        .action("internalError", |_c, ()| async move {
            Err::<(), ActorError>(ActorError::internal(
                "secret detail that must not reach clients",
            ))
        })
        .action(
            "scheduleIncrement",
            |c, (delay_ms, n): (u64, i64)| async move {
                c.schedule()
                    .after(Duration::from_millis(delay_ms), "increment", (n,))
                    .await?;
                Ok(())
            },
        )
}

fn main() -> ExitCode {
    let registry = rivulet_lambda_runner::examples::registry().register("probe", probe());
    rivulet_lambda_runner::cli::main(registry)
}
