// Serverless benchmark: what a client sees while actors move between requests, and what
// the moves cost. N actors (BENCH_SL_ACTORS, default 10), each with one connected stock
// RivetKit client calling `increment` back to back (a 20 ms pause between calls) for
// BENCH_SL_SECONDS (default 30), on a pool whose requests live BENCH_SL_LIFESPAN_S (default 4)
// with a BENCH_SL_GRACE_S (default 1) drain grace, so each actor moves every 3 s.
//
// BENCH_SL_ADAPTER:
//   http     the stock RivetKit 2.3.19 app behind registry.handler (serverless-app.mjs)
//   process  the Rust runner, `rivulet-runner once` per request (RIVULET_RUNNER_BIN, default
//            target/debug/rivulet-runner)
//   lambda   the Rust runner's Lambda entry under `cargo lambda watch` (CARGO_LAMBDA), invoked
//            by the gateway through aws-sdk-lambda
//
// Prints one JSON object: call latency p50/p99/max (the p99 and max are the moves: a call
// that waits for one), the longest wait per move, the first call on each new actor (a cold
// wake including its request), moves and requests per actor-hour, and a check that every
// reply was the next number (nothing lost, duplicated or reordered) with no socket closed.
import fs from "node:fs";
import path from "node:path";
import { createClient } from "rivetkit/client";
import { Child, HERE, LambdaEmulator, REPO, Server, freePort, makeWorkDir, nodeBin, sleep, waitFor } from "./harness.mjs";

const ADAPTER = process.env.BENCH_SL_ADAPTER || "http";
const ACTORS = Number(process.env.BENCH_SL_ACTORS || 10);
const SECONDS = Number(process.env.BENCH_SL_SECONDS || 30);
const LIFESPAN_S = Number(process.env.BENCH_SL_LIFESPAN_S || 4);
const GRACE_S = Number(process.env.BENCH_SL_GRACE_S || 1);
// Pause between one client's calls (ms). With 0 every move is met by a call in flight.
const GAP_MS = Number(process.env.BENCH_SL_GAP_MS ?? 20);
// How clients call: over one connected socket each (default), or as separate HTTP actions.
const CLIENT = process.env.BENCH_SL_CLIENT || "socket";

const workDir = makeWorkDir();
let emulator;
if (ADAPTER === "lambda") {
	// Built with --release unless BENCH_SL_LAMBDA_DEBUG=1.
	emulator = new LambdaEmulator({ workDir, release: process.env.BENCH_SL_LAMBDA_DEBUG !== "1", concurrency: 4 * ACTORS });
	await emulator.start();
}
// The gateway logs each move (read back below to find the moves' windows).
const server = new Server({
	target: "rivulet",
	workDir,
	extraArgs: ["--allow-process-pools"],
	extraEnv: { RIVET_LOG_LEVEL: "warn,rivulet_gateway::actor::supervisor=info", ...(emulator?.awsEnv() ?? {}) },
});
await server.init();
await server.start();
let app;
let pool;
if (ADAPTER === "http") {
	const port = await freePort();
	app = new Child("serverless-app", nodeBin(), [path.join(HERE, "serverless-app.mjs")], {
		env: { ...process.env, SERVERLESS_PORT: String(port), RIVET_LOG_LEVEL: "warn" },
		cwd: HERE,
		logFile: path.join(workDir, "serverless-app.log"),
	});
	await waitFor(() => app.out.includes("[serverless-app] listening"), { timeout: 30_000, what: "serverless app" });
	pool = { serverless: { url: `http://127.0.0.1:${port}/api/rivet`, request_lifespan: LIFESPAN_S, drain_grace_period: GRACE_S } };
} else if (ADAPTER === "lambda") {
	pool = { lambda: { function: "rivulet-runner", request_lifespan: LIFESPAN_S, drain_grace_period: GRACE_S } };
} else {
	const bin = path.resolve(REPO, process.env.RIVULET_RUNNER_BIN || "target/debug/rivulet-runner");
	pool = { process: { command: `${bin} once`, request_lifespan: LIFESPAN_S, drain_grace_period: GRACE_S, env: { RIVET_LOG_LEVEL: "warn" } } };
}
const put = await fetch(`${server.url}/runner-configs/default?namespace=default`, {
	method: "PUT",
	headers: { "content-type": "application/json" },
	body: JSON.stringify({ datacenters: { default: pool } }),
});
if (put.status !== 200) throw new Error(`pool refused: ${await put.text()}`);

const client = createClient({ endpoint: server.url, namespace: "default", encoding: "bare" });
const run = Date.now().toString(36);
const latencies = [];
// Every call after the first, per actor: [sent, received] on the wall clock (ms).
const spans = Array.from({ length: ACTORS }, () => []);
const first = [];
let wrong = 0;
let closed = 0;
let calls = 0;
const t0 = Date.now();
await Promise.all(
	Array.from({ length: ACTORS }, async (_, i) => {
		const handle = client.counter.getOrCreate([`bench-${run}-${i}`]);
		const conn = CLIENT === "socket" ? handle.connect() : handle;
		let disposing = false;
		// A handle's every property is an action: only a connection has onClose/dispose.
		if (CLIENT === "socket") {
			conn.onClose(() => {
				if (!disposing) closed++;
			});
		}
		let expected = 0;
		while (Date.now() - t0 < SECONDS * 1000) {
			const sent = performance.now();
			const value = await conn.increment(1);
			const took = performance.now() - sent;
			if (expected > 0) spans[i].push([performance.timeOrigin + sent, performance.timeOrigin + sent + took]);
			expected += 1;
			calls += 1;
			if (value !== expected) wrong++;
			if (expected === 1) first.push(took);
			else latencies.push(took);
			if (GAP_MS > 0) await sleep(GAP_MS);
		}
		disposing = true;
		if (CLIENT === "socket") await conn.dispose();
	}),
);
const elapsedS = (Date.now() - t0) / 1000;
const listed = await (await fetch(`${server.url}/runner-configs?namespace=default`)).json();
const status = listed.runner_configs?.default?.status ?? {};
const invocations = status.invocations ?? 0;
const requestSeconds = status.request_seconds ?? 0;
const q = (xs, p) => {
	const s = [...xs].sort((a, b) => a - b);
	return s.length ? Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))] * 100) / 100 : null;
};
// Each move, from the gateway's log: from "moving the actor" to the next "actor running" of
// the same actor. Its client-visible pause is the longest call that overlapped it (a call
// sent during the move waits for it; one in flight when it began is answered or resent).
const movePauses = (() => {
	const log = fs.readFileSync(path.join(workDir, "rivulet.log"), "utf8").replace(/\x1b\[[0-9;]*m/g, "");
	const windows = Array.from({ length: ACTORS }, () => []);
	const open = new Map();
	for (const line of log.split("\n")) {
		const key = /key="bench-[^"]*-(\d+)"/.exec(line);
		if (!key) continue;
		const i = Number(key[1]);
		const at = Date.parse(line.slice(0, line.indexOf(" ")));
		if (line.includes("moving the actor")) open.set(i, at);
		else if (line.includes("actor running") && open.has(i)) {
			windows[i].push([open.get(i), at]);
			open.delete(i);
		}
	}
	const pauses = [];
	const gateway = [];
	for (let i = 0; i < ACTORS; i++) {
		for (const [from, to] of windows[i]) {
			gateway.push(to - from);
			const hit = spans[i].filter(([s, r]) => s <= to && r >= from).map(([s, r]) => r - s);
			if (hit.length) pauses.push(Math.max(...hit));
		}
	}
	return { pauses, gateway, windows: windows.reduce((n, w) => n + w.length, 0) };
})();
const result = {
	bench: "serverless",
	adapter: ADAPTER,
	client: CLIENT,
	actors: ACTORS,
	seconds: Math.round(elapsedS),
	lifespan_s: LIFESPAN_S,
	drain_grace_s: GRACE_S,
	calls,
	call_latency_ms: { p50: q(latencies, 0.5), p99: q(latencies, 0.99), max: q(latencies, 1) },
	// Per move met by a call: the longest call overlapping it (see movePauses).
	move_pause_ms: {
		p50: q(movePauses.pauses, 0.5),
		p99: q(movePauses.pauses, 0.99),
		max: q(movePauses.pauses, 1),
		moves_met_by_a_call: movePauses.pauses.length,
	},
	// The same moves inside the gateway: stop sent to the old instance until the new one runs.
	move_gateway_ms: { p50: q(movePauses.gateway, 0.5), p99: q(movePauses.gateway, 0.99), max: q(movePauses.gateway, 1) },
	cold_wake_ms: { p50: q(first, 0.5), max: q(first, 1) },
	moves: movePauses.windows,
	// Requests started, standbys included.
	invocations,
	invocations_per_actor_hour: Math.round((invocations / ACTORS) * (3600 / elapsedS)),
	// Time requests were open, as the gateway saw them, over the run (requests still open
	// at the end are not counted yet, so this reads low by at most one lifespan per actor).
	request_seconds_per_actor_hour: Math.round((requestSeconds / ACTORS) * (3600 / elapsedS)),
	lost_duplicated_or_reordered: wrong,
	sockets_closed: closed,
};
console.log(JSON.stringify(result));
await client.dispose?.();
await app?.stop({ graceMs: 3000 });
await server.stop();
await emulator?.stop();
if (process.env.BENCH_KEEP === "1") console.error(`[bench-serverless] logs kept in ${workDir}`);
else fs.rmSync(workDir, { recursive: true, force: true });
process.exit(0);
