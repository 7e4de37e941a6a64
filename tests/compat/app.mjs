// A stock RivetKit 2.3.19 app (plain ESM, no build step) used by the compatibility tests.
//
// Env:
//   RIVET_ENDPOINT            engine (or Rivulet) URL, default http://127.0.0.1:6420
//   RIVET_RUN_SERVICES=0      set by the harness: no `rivet-services` sidecar
//   COUNTER_SLEEP_TIMEOUT_MS  idle time before `counter` sleeps (default 1500 ms)
//
// `registry.start()` is rivetkit's serverful entry point: it opens one envoy WebSocket to
// `${RIVET_ENDPOINT}/envoys/connect` (envoy protocol v8) and hosts the actors in this process.
// With an explicit RIVET_ENDPOINT whose GET /health answers {"runtime":"engine"} rivetkit reuses it;
// it must never spawn an engine of its own (the harness checks that nothing else binds the port).
import { actor, setup } from "rivetkit";

process.env.RIVET_ENDPOINT ??= "http://127.0.0.1:6420";
process.env.RIVET_RUN_SERVICES ??= "0";

const sleepTimeout = Number(process.env.COUNTER_SLEEP_TIMEOUT_MS ?? 1500);

const counter = actor({
	state: { count: 0 },
	actions: {
		increment: (c, n) => {
			c.state.count += Number(n ?? 1);
			c.broadcast("newCount", c.state.count);
			return c.state.count;
		},
		// The same, but answers only once the new count is durable in the gateway's store:
		// what the multi-node test counts as an acknowledged write.
		incrementDurable: async (c, n) => {
			c.state.count += Number(n ?? 1);
			await c.saveState({ immediate: true });
			c.broadcast("newCount", c.state.count);
			return c.state.count;
		},
		get: (c) => c.state.count,
	},
	options: { sleepTimeout },
});

const echo = actor({
	state: {},
	actions: {
		echo: (_c, x) => x,
	},
});

export const registry = setup({ use: { counter, echo } });

registry.start();
console.log(`[compat-app] started pid=${process.pid} endpoint=${process.env.RIVET_ENDPOINT}`);

// startAndWait() shares the lifecycle started above and resolves once the envoy has registered
// with the engine (rivetkit gives up after 30 s). The harness waits for this line.
registry.startAndWait().then(
	() => console.log("[compat-app] ready"),
	(err) => console.log(`[compat-app] not ready: ${err?.stack ?? err}`),
);
