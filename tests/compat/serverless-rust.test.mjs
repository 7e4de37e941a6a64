// A `process` pool of the Rust runner (`test_runner once`, one process per request), driven by
// the stock RivetKit client: every client keeps one WebSocket to its own actor while the actor
// moves to a fresh process every two seconds (lifespan 3 s, drain grace 1 s). The sockets are
// hibernatable, so the gateway holds them across each move and the next process takes the
// connections back: no socket closes, and every reply and event arrives once, in order.
//
// The same soak runs on a `lambda` pool: the gateway invokes the runner's Lambda entry under
// `cargo lambda watch` through aws-sdk-lambda (5 clients, 5 moves each).
//
// Env: RIVULET_BIN (gateway), RUST_RUNNER_BIN (default target/debug/examples/test_runner),
// SOAK_ACTORS (50), SOAK_MOVES (15), CARGO_LAMBDA (the emulator), SOAK_LAMBDA_ACTORS (5),
// SOAK_LAMBDA_MOVES (5), COMPAT_KEEP=1 keeps logs.
// Run with tests/compat/run-rust.sh serverless-rust.test.mjs.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient } from "rivetkit/client";
import { LambdaEmulator, REPO, Server, makeWorkDir, sleep, waitFor, withLogs, withTimeout } from "./harness.mjs";

const NS = "default";
const RUN = Date.now().toString(36);
const workDir = makeWorkDir();
const runnerBin = path.resolve(REPO, process.env.RUST_RUNNER_BIN || "target/debug/examples/test_runner");
let failed = false;

const call = (p, what, ms = 30_000) => withTimeout(p, ms, what);

/** A gateway whose supervisor logs each move ("moving the actor"), which the soak counts. */
function gateway(extraEnv = {}) {
	return new Server({
		target: "rivulet",
		workDir,
		name: `rivulet-${Object.keys(extraEnv).length ? "lambda" : "process"}`,
		extraArgs: ["--allow-process-pools"],
		extraEnv: { RIVET_LOG_LEVEL: process.env.SOAK_GATEWAY_LOG || "warn,rivulet_gateway::actor::supervisor=info", ...extraEnv },
	});
}

async function putPool(server, name, spec) {
	const res = await fetch(`${server.url}/runner-configs/${name}?namespace=${NS}`, {
		method: "PUT",
		headers: { "content-type": "application/json" },
		body: JSON.stringify({ datacenters: { default: spec } }),
	});
	assert.equal(res.status, 200, await res.text());
}

/**
 * ACTORS stock clients, each with one socket to its own counter on `pool`, increment until
 * their actor has moved MOVES times: every reply the next number, every event once and in
 * order, no socket closed, every acknowledged write stored.
 */
async function soak({ server, client, pool, ACTORS, MOVES }) {
	// Moves per actor, read from the gateway's log: the generations it moved away from (a
	// set, as a trimmed log buffer is read again).
	const moved = new Map();
	const moves = { get: (id) => moved.get(id)?.size };
	let scanned = 0;
	const scan = () => {
		const out = server.child.out;
		if (out.length < scanned) scanned = 0; // the harness trimmed its buffer
		const fresh = out.slice(scanned);
		const cut = fresh.lastIndexOf("\n") + 1;
		scanned += cut;
		for (const line of fresh.slice(0, cut).split("\n")) {
			if (!line.includes("moving the actor")) continue;
			const plain = line.replace(/\x1b\[[0-9;]*m/g, "");
			const id = plain.match(/actor_id=([0-9a-z]+)/);
			const generation = plain.match(/ generation=([0-9]+)/);
			if (!id || !generation) continue;
			if (!moved.has(id[1])) moved.set(id[1], new Set());
			moved.get(id[1]).add(generation[1]);
		}
	};
	const scanner = setInterval(scan, 250);
	try {
		const results = await Promise.all(
			Array.from({ length: ACTORS }, async (_, i) => {
				const handle = client.counter.getOrCreate([`soak-${pool}-${RUN}-${i}`], { poolName: pool });
				const conn = handle.connect();
				const events = [];
				let closed = false;
				let disposing = false;
				conn.on("newCount", (n) => events.push(n));
				conn.onClose(() => {
					if (!disposing) closed = true;
				});
				let acked = 0;
				let wrong = 0;
				const first = await call(conn.increment(1), `soak ${i} first increment`, 60_000);
				acked = 1;
				if (first !== 1) wrong += 1;
				const id = await call(handle.resolve(), `soak ${i} resolve`);
				const started = Date.now();
				// A count of moves, not a time: a slow machine runs longer instead of
				// checking less.
				while ((moves.get(id) ?? 0) < MOVES) {
					assert.ok(Date.now() - started < 300_000, `actor ${i} moved only ${moves.get(id) ?? 0} times in 300 s`);
					const value = await call(conn.increment(1), `soak ${i} increment ${acked + 1}`, 60_000);
					acked += 1;
					if (value !== acked) wrong += 1;
					await sleep(50);
				}
				await waitFor(() => events.length >= acked, { timeout: 15_000, what: `events of soak actor ${i}` });
				const eventsInOrder = events.length === acked && events.every((n, k) => n === k + 1);
				disposing = true;
				await conn.dispose();
				const stored = await call(handle.get(), `soak ${i} read back`);
				return { i, acked, wrong, closed, eventsInOrder, stored, moves: moves.get(id) ?? 0 };
			}),
		);
		for (const r of results) {
			assert.equal(r.wrong, 0, `actor ${r.i}: replies lost, duplicated or reordered`);
			assert.equal(r.closed, false, `actor ${r.i}: its client's socket closed`);
			assert.ok(r.eventsInOrder, `actor ${r.i}: events lost, duplicated or reordered`);
			assert.equal(r.stored, r.acked, `actor ${r.i}: every acknowledged write is stored`);
		}
		const total = results.reduce((n, r) => n + r.acked, 0);
		const total_moves = results.reduce((n, r) => n + r.moves, 0);
		console.log(`[serverless-rust] ${pool} soak: ${ACTORS} actors, ${total} acknowledged increments, ${total_moves} moves`);
	} finally {
		clearInterval(scanner);
	}
}

describe("a process pool of the Rust runner with the stock client", () => {
	const server = gateway();
	let client;
	before(async () => {
		await server.init();
		await server.start();
		await putPool(server, "rust", {
			process: { command: `${runnerBin} once`, request_lifespan: 3, drain_grace_period: 1, env: { RIVET_LOG_LEVEL: "warn" } },
		});
		client = createClient({ endpoint: server.url, namespace: NS, encoding: "bare" });
	});

	after(async () => {
		await withTimeout(Promise.resolve(client?.dispose?.()), 5000, "client.dispose").catch(() => {});
		await server.stop();
	});

	const check = withLogs(it, () => [["rivulet", server.child, 40]], () => {
		failed = true;
	});

	check("soak: 50 connected clients, each on its own actor, through 15 moves each (lifespan 3 s)", async () => {
		await soak({
			server,
			client,
			pool: "rust",
			ACTORS: Number(process.env.SOAK_ACTORS || 50),
			MOVES: Number(process.env.SOAK_MOVES || 15),
		});
	});
});

// The Lambda entry of the Rust runner (`rivulet-runner`) under the Lambda runtime emulator,
// invoked by the gateway through aws-sdk-lambda: fewer clients, as every invocation is a
// process of the emulator's. CARGO_LAMBDA names the emulator (scripts/test.sh installs it);
// without it this part is skipped, unless RIVULET_REQUIRE_LAMBDA=1.
const cargoLambda = process.env.CARGO_LAMBDA;
if (!cargoLambda && process.env.RIVULET_REQUIRE_LAMBDA === "1") {
	throw new Error("CARGO_LAMBDA is required (RIVULET_REQUIRE_LAMBDA=1); run infra/cargo-lambda.sh");
}
describe("a Lambda pool of the Rust runner (cargo lambda watch) with the stock client", { skip: !cargoLambda && "CARGO_LAMBDA is not set" }, () => {
	let server;
	let emulator;
	let client;
	before(async () => {
		emulator = new LambdaEmulator({ workDir, bin: cargoLambda });
		await emulator.start();
		server = gateway(emulator.awsEnv());
		await server.init();
		await server.start();
		await putPool(server, "lam", { lambda: { function: "rivulet-runner", request_lifespan: 3, drain_grace_period: 1 } });
		client = createClient({ endpoint: server.url, namespace: NS, encoding: "bare" });
	});

	after(async () => {
		await withTimeout(Promise.resolve(client?.dispose?.()), 5000, "client.dispose").catch(() => {});
		await server?.stop();
		await emulator?.stop();
	});

	const check = withLogs(
		it,
		() => [
			["rivulet", server?.child, 40],
			["cargo-lambda", emulator?.child, 40],
		],
		() => {
			failed = true;
		},
	);

	check("soak: 5 connected clients, each on its own actor, through 5 moves each (lifespan 3 s)", async () => {
		await soak({
			server,
			client,
			pool: "lam",
			ACTORS: Number(process.env.SOAK_LAMBDA_ACTORS || 5),
			MOVES: Number(process.env.SOAK_LAMBDA_MOVES || 5),
		});
	});
});

after(() => {
	if (failed || process.env.COMPAT_KEEP === "1") console.log(`[serverless-rust] logs kept in ${workDir}`);
	else fs.rmSync(workDir, { recursive: true, force: true });
});
