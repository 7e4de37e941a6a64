// Compatibility test: a stock RivetKit 2.3.19 app + the stock client against a target server.
//
//   COMPAT_TARGET=rivulet (default)  runs  $RIVULET_BIN serve --port P --data-dir <tmp>
//   COMPAT_TARGET=engine             runs  the real rivet-engine from @rivetkit/engine-cli
//
// The test spawns the server and the app itself, on free loopback ports, so it can restart the server.
// Other env:
//   RIVULET_BIN                   default target/debug/rivulet (relative to the repo root)
//   COMPAT_ALLOW_MISSING_BIN=1    skip (instead of fail) when the Rivulet binary does not exist
//   COMPAT_SLEEP_TIMEOUT_MS       counter's sleepTimeout (default 1500)
//   COMPAT_KEEP=1                 keep the temp dir (logs, data) even when everything passed
//   COMPAT_WIRETAP=1              put wiretap.mjs proxies between app/engine and client/engine
//                                 (logs in <tmp>/wire-app.jsonl and <tmp>/wire-client.jsonl)
//
// Run with the cached Node 22: tests/compat/run.sh (or `$NODE --test tests/compat/compat.test.mjs`).
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient } from "rivetkit/client";
import { App, Server, Tap, getJson, makeWorkDir, waitFor, withTimeout } from "./harness.mjs";

const TARGET = process.env.COMPAT_TARGET || "rivulet";
const SLEEP_MS = Number(process.env.COMPAT_SLEEP_TIMEOUT_MS || 1500);
const NS = "default";
const RUN = Date.now().toString(36); // keys unique per run (the data dir is fresh anyway)

const workDir = makeWorkDir();
const server = new Server({ target: TARGET, workDir });
await server.init();

let skipReason;
if (TARGET === "rivulet" && !server.binaryExists()) {
	const msg = `Rivulet binary not found at ${server.bin} (set RIVULET_BIN or build it)`;
	if (process.env.COMPAT_ALLOW_MISSING_BIN === "1") skipReason = msg;
	else throw new Error(msg);
}

const timings = {};
let app;
let client;
let appTap;
let clientTap;
let failed = false;

/** Engine API call against the server directly (never through a tap). */
async function api(method, pathAndQuery, body) {
	return await getJson(`${server.url}${pathAndQuery}`, {
		method,
		headers: body ? { "content-type": "application/json" } : {},
		body: body ? JSON.stringify(body) : undefined,
	});
}

async function getActor(actorId) {
	const { status, body } = await api("GET", `/actors?actor_ids=${encodeURIComponent(actorId)}&namespace=${NS}`);
	assert.equal(status, 200, `GET /actors status ${status}: ${JSON.stringify(body)}`);
	return body.actors[0];
}

/** One call through the client with a deadline (the client retries internally). */
const call = (p, what, ms = 30_000) => withTimeout(p, ms, what);

function timed(name, t0) {
	timings[name] = Date.now() - t0;
	return timings[name];
}

describe(`rivetkit 2.3.19 compat against ${TARGET}`, { skip: skipReason }, () => {
	before(async () => {
		timings.serverStartMs = await server.start();
		let appEndpoint = server.url;
		let clientEndpoint = server.url;
		if (process.env.COMPAT_WIRETAP === "1") {
			appTap = await new Tap({ workDir, name: "app", target: server.url, logFile: path.join(workDir, "wire-app.jsonl") }).start();
			clientTap = await new Tap({ workDir, name: "client", target: server.url, logFile: path.join(workDir, "wire-client.jsonl") }).start();
			appEndpoint = appTap.url;
			clientEndpoint = clientTap.url;
		}
		app = new App({ workDir, endpoint: appEndpoint, sleepTimeoutMs: SLEEP_MS });
		timings.appReadyMs = await app.start();
		client = createClient({ endpoint: clientEndpoint, namespace: NS });
	});

	after(async () => {
		await withTimeout(Promise.resolve(client?.dispose?.()), 5000, "client.dispose").catch(() => {});
		await app?.stop();
		await server.stop();
		// The DynamoDB stand-in outlives server restarts; it goes last, or this process waits
		// for it forever.
		await server.moto?.stop({ graceMs: 3000 });
		await appTap?.stop();
		await clientTap?.stop();
		console.log(`[compat] target=${TARGET} timings=${JSON.stringify(timings)}`);
		if (failed || process.env.COMPAT_KEEP === "1" || process.env.COMPAT_WIRETAP === "1") {
			console.log(`[compat] logs and data kept in ${workDir}`);
		} else {
			fs.rmSync(workDir, { recursive: true, force: true });
		}
	});

	const check = (name, fn) =>
		it(name, async (t) => {
			const t0 = Date.now();
			try {
				await fn(t);
			} catch (e) {
				failed = true;
				if (app?.child) t.diagnostic(`app log tail:\n${app.child.tail(20)}`);
				if (server.child) t.diagnostic(`${TARGET} log tail:\n${server.child.tail(20)}`);
				throw e;
			} finally {
				timed(name, t0);
			}
		});

	const keyA = `a-${RUN}`;
	let actorIdA;

	check("health and metadata", async () => {
		const h = await api("GET", "/health");
		assert.equal(h.status, 200);
		assert.equal(h.body.status, "ok");
		assert.equal(h.body.runtime, "engine");
		const m = await api("GET", "/metadata");
		assert.equal(m.status, 200);
		assert.equal(typeof m.body, "object");
		const envoys = await api("GET", `/envoys?namespace=${NS}`);
		assert.equal(envoys.status, 200);
		assert.ok(envoys.body.envoys.length >= 1, "the app's envoy is listed");
	});

	check("get-or-create by key + action over HTTP", async (t) => {
		const h = client.counter.getOrCreate([keyA]);
		const t0 = Date.now();
		assert.equal(await call(h.increment(1), "first increment"), 1);
		t.diagnostic(`cold getOrCreate + increment: ${Date.now() - t0} ms`);
		const t1 = Date.now();
		assert.equal(await call(h.increment(2), "second increment"), 3);
		t.diagnostic(`warm increment: ${Date.now() - t1} ms`);
		assert.equal(await call(h.get(), "get"), 3);
		actorIdA = await call(h.resolve(), "resolve");
		assert.equal(typeof actorIdA, "string");
		// Same key resolves to the same actor.
		assert.equal(await call(client.counter.getOrCreate([keyA]).resolve(), "resolve again"), actorIdA);
		assert.equal(await call(client.counter.get([keyA]).get(), "get() by key"), 3);
		const a = await getActor(actorIdA);
		assert.equal(a.actor_id, actorIdA);
		assert.equal(a.name, "counter");
		assert.equal(a.key, keyA);
		assert.equal(a.destroy_ts, null);
		assert.ok(a.connectable_ts, "connectable_ts set while running");
	});

	check("echo actor round-trips structured values", async () => {
		const e = client.echo.getOrCreate([`e-${RUN}`]);
		const v = { a: [1, "two", null, true], b: { nested: 3.5 }, s: "ünïcødé" };
		assert.deepEqual(await call(e.echo(v), "echo"), v);
		assert.equal(await call(e.echo("plain"), "echo string"), "plain");
	});

	check("WebSocket connection: actions and broadcast events", async (t) => {
		const h = client.counter.getOrCreate([keyA]);
		const conn = h.connect();
		const events = [];
		conn.on("newCount", (v) => events.push(v));
		try {
			const t0 = Date.now();
			assert.equal(await call(conn.increment(5), "conn.increment"), 8);
			t.diagnostic(`connect + first WS action: ${Date.now() - t0} ms`);
			await waitFor(() => events.includes(8), { timeout: 10_000, what: "newCount=8 event over WS" });
			// A broadcast triggered by an HTTP action on another handle reaches the connection too.
			assert.equal(await call(client.counter.getOrCreate([keyA]).increment(1), "http increment"), 9);
			await waitFor(() => events.includes(9), { timeout: 10_000, what: "newCount=9 event over WS" });
			assert.equal(await call(conn.get(), "conn.get"), 9);
		} finally {
			await withTimeout(conn.dispose(), 5000, "conn.dispose").catch(() => {});
		}
	});

	check("two actors with different keys are isolated", async () => {
		const x = client.counter.getOrCreate([`iso-x-${RUN}`]);
		const y = client.counter.getOrCreate([`iso-y-${RUN}`]);
		assert.equal(await call(x.increment(10), "x.increment"), 10);
		assert.equal(await call(y.increment(1), "y.increment"), 1);
		assert.equal(await call(x.increment(10), "x.increment"), 20);
		assert.equal(await call(y.get(), "y.get"), 1);
		assert.notEqual(await call(x.resolve(), "x.resolve"), await call(y.resolve(), "y.resolve"));
		assert.equal(await call(client.counter.getOrCreate([keyA]).get(), "a.get"), 9);
	});

	check("state survives sleep and wake", async (t) => {
		const t0 = Date.now();
		const slept = await waitFor(
			async () => {
				const a = await getActor(actorIdA);
				return a.sleep_ts ? a : false;
			},
			{ timeout: 60_000, interval: 200, what: "sleep_ts to be set" },
		);
		t.diagnostic(`sleep observed ${Date.now() - t0} ms after last check (sleepTimeout ${SLEEP_MS} ms)`);
		assert.equal(slept.connectable_ts, null, "not connectable while asleep");
		const t1 = Date.now();
		assert.equal(await call(client.counter.getOrCreate([keyA]).get(), "get after sleep"), 9);
		t.diagnostic(`wake + get: ${Date.now() - t1} ms`);
		const woke = await getActor(actorIdA);
		assert.equal(woke.sleep_ts, null, "sleep_ts cleared after wake");
		assert.ok(woke.connectable_ts, "connectable again");
		assert.equal(await call(client.counter.getOrCreate([keyA]).increment(1), "increment after wake"), 10);
	});

	check("state survives a full server restart (app reconnects by itself)", async (t) => {
		const appPid = app.child.pid;
		const t0 = Date.now();
		const exit = await server.stop({ signal: "SIGTERM", graceMs: 15_000 });
		t.diagnostic(`server stopped in ${Date.now() - t0} ms (${JSON.stringify(exit)})`);
		const t1 = Date.now();
		timings.serverRestartMs = await server.start();
		t.diagnostic(`server healthy again in ${Date.now() - t1} ms`);
		const t2 = Date.now();
		const v = await waitFor(
			async () => {
				if (!app.child.alive) throw Object.assign(new Error("app died during server restart"), { fatal: true });
				return await withTimeout(client.counter.getOrCreate([keyA]).get(), 10_000, "get during recovery");
			},
			{ timeout: 90_000, interval: 500, what: "counter reachable after restart" },
		);
		t.diagnostic(`first successful action after restart: ${Date.now() - t2} ms`);
		timings.recoveryAfterRestartMs = Date.now() - t2;
		assert.equal(v, 10);
		assert.equal(app.child.pid, appPid, "app was not restarted");
		assert.equal(app.starts, 1);
		assert.ok(app.child.alive, "app still running");
		// The same actor, not a new one.
		assert.equal(await call(client.counter.getOrCreate([keyA]).resolve(), "resolve after restart"), actorIdA);
		assert.equal(await call(client.counter.getOrCreate([keyA]).increment(1), "increment after restart"), 11);
		// WebSocket still works after the restart.
		const conn = client.counter.getOrCreate([keyA]).connect();
		try {
			assert.equal(await call(conn.increment(1), "conn.increment after restart"), 12);
		} finally {
			await withTimeout(conn.dispose(), 5000, "conn.dispose").catch(() => {});
		}
	});

	check("destroy: the key no longer resolves, and a new actor can take it", async () => {
		const del = await api("DELETE", `/actors/${encodeURIComponent(actorIdA)}?namespace=${NS}`);
		assert.equal(del.status, 200, `DELETE status ${del.status}: ${JSON.stringify(del.body)}`);
		await waitFor(async () => (await getActor(actorIdA))?.destroy_ts, { timeout: 30_000, what: "destroy_ts set" });
		const byKey = await api("GET", `/actors?name=counter&key=${encodeURIComponent(keyA)}&namespace=${NS}`);
		assert.equal(byKey.status, 200);
		assert.equal(byKey.body.actors.length, 0, "destroyed actor not listed by key");
		await assert.rejects(
			call(client.counter.get([keyA]).get(), "get() of destroyed key", 30_000),
			(e) => {
				assert.equal(e.group, "actor", `error group: ${e.group}/${e.code}: ${e.message}`);
				assert.equal(e.code, "not_found");
				return true;
			},
		);
		const fresh = client.counter.getOrCreate([keyA]);
		assert.equal(await call(fresh.get(), "get on re-created"), 0);
		assert.notEqual(await call(fresh.resolve(), "resolve re-created"), actorIdA);
	});

	const keyB = `b-${RUN}`;

	check("a runner that shuts down hands its actors over: state survives an app restart", async (t) => {
		const h = client.counter.getOrCreate([keyB]);
		assert.equal(await call(h.increment(7), "increment before app stop"), 7);
		const id = await call(h.resolve(), "resolve");
		// SIGTERM: the app announces it is stopping; the server stops its actors (GoingAway),
		// which save their state, and with no other runner they sleep.
		await app.stop({ signal: "SIGTERM", graceMs: 20_000 });
		const asleep = await waitFor(
			async () => {
				const a = await getActor(id);
				return a && a.sleep_ts && a.connectable_ts === null ? a : false;
			},
			{ timeout: 30_000, interval: 200, what: "actor asleep after its runner left" },
		);
		t.diagnostic(`error after runner left: ${JSON.stringify(asleep.error ?? null)}`);
		await app.start();
		assert.equal(await call(h.get(), "get on the new runner"), 7);
		assert.equal(await call(h.resolve(), "resolve on the new runner"), id, "same actor");
	});

	check("a crashed runner (SIGKILL) is detected as lost and its actors recover on a new runner", async (t) => {
		const h = client.counter.getOrCreate([keyB]);
		assert.equal(await call(h.increment(1), "increment before crash"), 8);
		// Let the throttled state save reach the server before the crash.
		await new Promise((r) => setTimeout(r, 1500));
		await app.stop({ signal: "SIGKILL", graceMs: 5_000 });
		const t0 = Date.now();
		await app.start();
		// The server notices the lost runner after its lost threshold (15 s on both servers),
		// then starts the actor on the new runner.
		const v = await call(h.get(), "get after the runner crashed", 60_000);
		t.diagnostic(`recovered on the new runner after ${Date.now() - t0} ms`);
		assert.equal(v, 8);
	});
});
