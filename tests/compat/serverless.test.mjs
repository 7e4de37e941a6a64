// Serverless pools with the stock RivetKit 2.3.19 app served by `registry.handler`
// (serverless-app.mjs, no `registry.start()`) and the stock client: the gateway checks the
// app's /metadata when the pool is registered, invokes `POST /api/rivet/start` once per actor,
// and moves each actor to a fresh request before the request's lifespan ends.
//
// Env: RIVULET_BIN (gateway), COMPAT_KEEP=1 keeps logs.
// Run with tests/compat/run-rust.sh serverless.test.mjs.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient } from "rivetkit/client";
import { Child, HERE, Server, freePort, makeWorkDir, nodeBin, sleep, waitFor, withLogs, withTimeout } from "./harness.mjs";

const NS = "default";
const RUN = Date.now().toString(36);
const LIFESPAN_S = 6;
const GRACE_S = 2;
const workDir = makeWorkDir();
const server = new Server({ target: "rivulet", workDir });
let app;
let soakApp;
let appUrl;
let client;
let failed = false;

const call = (p, what, ms = 30_000) => withTimeout(p, ms, what);

async function putPool(name, spec) {
	const res = await fetch(`${server.url}/runner-configs/${name}?namespace=${NS}`, {
		method: "PUT",
		headers: { "content-type": "application/json" },
		body: JSON.stringify({ datacenters: { default: { serverless: spec } } }),
	});
	return { status: res.status, body: await res.json() };
}

describe("serverless pools: stock RivetKit app behind registry.handler", () => {
	before(async () => {
		await server.init();
		await server.start();
		const port = await freePort();
		appUrl = `http://127.0.0.1:${port}/api/rivet`;
		app = new Child("serverless-app", nodeBin(), [path.join(HERE, "serverless-app.mjs")], {
			env: { ...process.env, SERVERLESS_PORT: String(port), RIVET_LOG_LEVEL: process.env.SERVERLESS_APP_LOG_LEVEL ?? "warn" },
			cwd: HERE,
			logFile: path.join(workDir, "serverless-app.log"),
		});
		await waitFor(() => app.out.includes("[serverless-app] listening"), { timeout: 30_000, what: "serverless app" });
		const pool = await putPool("default", { url: appUrl, request_lifespan: LIFESPAN_S, drain_grace_period: GRACE_S });
		assert.equal(pool.status, 200, JSON.stringify(pool.body));
		client = createClient({ endpoint: server.url, namespace: NS, encoding: "bare" });
	});

	after(async () => {
		await withTimeout(Promise.resolve(client?.dispose?.()), 5000, "client.dispose").catch(() => {});
		await app?.stop({ graceMs: 3000 }).catch(() => {});
		await soakApp?.stop({ graceMs: 3000 }).catch(() => {});
		await server.stop();
		if (failed || process.env.COMPAT_KEEP === "1") console.log(`[serverless] logs kept in ${workDir}`);
		else fs.rmSync(workDir, { recursive: true, force: true });
	});

	const check = withLogs(
		it,
		() => [
			["serverless-app", app, 30],
			["rivulet", server.child, 40],
		],
		() => {
			failed = true;
		},
	);

	check("the pool is accepted after its /metadata is checked; a wrong URL is refused", async () => {
		const ok = await putPool("default", { url: appUrl, request_lifespan: LIFESPAN_S, drain_grace_period: GRACE_S });
		assert.equal(ok.status, 200, JSON.stringify(ok.body));
		assert.equal(ok.body.endpoint_config_changed, false, "the same body again changes nothing");
		const names = await (await fetch(`${server.url}/actors/names?namespace=${NS}`)).json();
		assert.ok(names.names.counter, JSON.stringify(names));
		const wrong = await putPool("wrong", { url: appUrl.replace("/api/rivet", "/nope"), request_lifespan: 30 });
		assert.equal(wrong.status, 400);
		assert.equal(wrong.body.code, "endpoint_error", JSON.stringify(wrong.body));
	});

	check("actions reach an actor invoked through POST /start", async () => {
		const counter = client.counter.getOrCreate([`http-${RUN}`]);
		assert.equal(await call(counter.increment(2), "first increment"), 2);
		assert.equal(await call(counter.increment(3), "second increment"), 5);
	});

	check("an actor moves to fresh requests before each lifespan ends, keeping every write", async () => {
		const counter = client.counter.getOrCreate([`moving-${RUN}`]);
		let expected = 0;
		const t0 = Date.now();
		const pauses = [];
		while (Date.now() - t0 < (LIFESPAN_S - GRACE_S) * 2500) {
			const sent = Date.now();
			const value = await call(counter.increment(1), `increment ${expected + 1}`);
			pauses.push(Date.now() - sent);
			expected += 1;
			assert.equal(value, expected, "acknowledged writes in order, none lost or repeated");
			await sleep(50);
		}
		const id = await call(counter.resolve(), "resolve");
		const invocations = server.child.out
			.split("\n")
			.filter((l) => l.includes(id) && l.includes("invoking a serverless request")).length;
		assert.ok(invocations >= 3, `the actor should have moved at least twice; ${invocations} requests`);
		assert.equal(await call(counter.get(), "read back"), expected);
		pauses.sort((a, b) => a - b);
		console.log(
			`[serverless] ${expected} increments; longest waits (ms): ${pauses.slice(-3).join(", ")}`,
		);
	});
	check("a connected client's socket stays open across moves; every event and reply arrives in order", async () => {
		const handle = client.counter.getOrCreate([`socket-${RUN}`]);
		const conn = handle.connect();
		const events = [];
		let closed = false;
		conn.on("newCount", (n) => events.push(n));
		conn.onClose?.(() => {
			closed = true;
		});
		let expected = 0;
		const t0 = Date.now();
		const pauses = [];
		while (Date.now() - t0 < (LIFESPAN_S - GRACE_S) * 2500) {
			const sent = Date.now();
			const value = await call(conn.increment(1), `socket increment ${expected + 1}`);
			pauses.push(Date.now() - sent);
			expected += 1;
			assert.equal(value, expected, "replies in order, none lost or repeated");
			await sleep(50);
		}
		await waitFor(() => events.length >= expected, { timeout: 10_000, what: "every event" });
		assert.deepEqual(
			events,
			Array.from({ length: expected }, (_, i) => i + 1),
			"events in order, none lost or repeated",
		);
		assert.equal(closed, false, "the client's socket was never closed");
		const id = await call(handle.resolve(), "resolve");
		const invocations = server.child.out
			.split("\n")
			.filter((l) => l.includes(id) && l.includes("invoking a serverless request")).length;
		assert.ok(invocations >= 3, `the actor should have moved at least twice; ${invocations} requests`);
		pauses.sort((a, b) => a - b);
		console.log(`[serverless] socket: ${expected} increments; longest waits (ms): ${pauses.slice(-3).join(", ")}`);
		await conn.dispose();
	});
	check("soak: 50 connected clients, each on its own actor, through 15 moves each (lifespan 3 s)", async () => {
		const ACTORS = Number(process.env.SOAK_ACTORS || 50);
		const MOVES = Number(process.env.SOAK_MOVES || 15);
		// A RivetKit process serves one pool (it refuses starts for another while its envoy is
		// up: "serverless start headers do not match active envoy"), so the soak pool gets an
		// app of its own.
		const port = await freePort();
		soakApp = new Child("serverless-app-soak", nodeBin(), [path.join(HERE, "serverless-app.mjs")], {
			env: { ...process.env, SERVERLESS_PORT: String(port), RIVET_LOG_LEVEL: process.env.SERVERLESS_APP_LOG_LEVEL ?? "warn" },
			cwd: HERE,
			logFile: path.join(workDir, "serverless-app-soak.log"),
		});
		await waitFor(() => soakApp.out.includes("[serverless-app] listening"), { timeout: 30_000, what: "soak app" });
		const pool = await putPool("soak", { url: `http://127.0.0.1:${port}/api/rivet`, request_lifespan: 3, drain_grace_period: 1 });
		assert.equal(pool.status, 200, JSON.stringify(pool.body));
		// Requests started per actor, read from the gateway's log; the first is its start.
		const invoked = new Map();
		const requests = { get: (id) => invoked.get(id)?.size };
		let scanned = 0;
		const scan = () => {
			const out = server.child.out;
			if (out.length < scanned) scanned = 0; // the harness trimmed its buffer
			const fresh = out.slice(scanned);
			const cut = fresh.lastIndexOf("\n") + 1;
			scanned += cut;
			for (const line of fresh.slice(0, cut).split("\n")) {
				if (!line.includes("invoking a serverless request")) continue;
				// Distinct generations: a trimmed log buffer is read again.
				const plain = line.replace(/\x1b\[[0-9;]*m/g, "");
				const id = plain.match(/actor_id=([0-9a-z]+)/);
				const generation = plain.match(/ generation=([0-9]+)/);
				if (!id || !generation) continue;
				if (!invoked.has(id[1])) invoked.set(id[1], new Set());
				invoked.get(id[1]).add(generation[1]);
			}
		};
		const scanner = setInterval(scan, 250);
		try {
			const results = await Promise.all(
				Array.from({ length: ACTORS }, async (_, i) => {
					const handle = client.counter.getOrCreate([`soak-${RUN}-${i}`], { poolName: "soak" });
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
					// Until the actor has moved MOVES times: a count of moves, not a time, so a
					// slow machine runs longer instead of checking less.
					while ((requests.get(id) ?? 0) - 1 < MOVES) {
						assert.ok(Date.now() - started < 300_000, `actor ${i} moved only ${(requests.get(id) ?? 1) - 1} times in 300 s`);
						const value = await call(conn.increment(1), `soak ${i} increment ${acked + 1}`, 60_000);
						acked += 1;
						if (value !== acked) wrong += 1;
						await sleep(50);
					}
					await waitFor(() => events.length >= acked, { timeout: 15_000, what: `events of soak actor ${i}` });
					const eventsInOrder = events.every((n, k) => n === k + 1);
					disposing = true;
					await conn.dispose();
					const stored = await call(handle.get(), `soak ${i} read back`);
					return { i, acked, wrong, closed, eventsInOrder, stored, moves: (requests.get(id) ?? 1) - 1 };
				}),
			);
			for (const r of results) {
				assert.equal(r.wrong, 0, `actor ${r.i}: replies lost, duplicated or reordered`);
				assert.equal(r.closed, false, `actor ${r.i}: its client's socket closed`);
				assert.ok(r.eventsInOrder, `actor ${r.i}: events lost, duplicated or reordered`);
				assert.equal(r.stored, r.acked, `actor ${r.i}: every acknowledged write is stored`);
			}
			const total = results.reduce((n, r) => n + r.acked, 0);
			const moves = results.reduce((n, r) => n + r.moves, 0);
			console.log(`[serverless] soak: ${ACTORS} actors, ${total} acknowledged increments, ${moves} moves`);
		} finally {
			clearInterval(scanner);
		}
	});
});
