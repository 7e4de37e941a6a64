// Rust actors behind Rivulet, called by the stock RivetKit 2.3.19 client: the runner is
// lambda-runner's `test_runner` example (the example actors `counter` and `chat`, plus
// `probe`, which sleeps after one idle second and fails on request).
//
// Env: RIVULET_BIN (gateway), RUST_RUNNER_BIN (default target/debug/examples/test_runner),
// COMPAT_KEEP=1 keeps logs. Run with tests/compat/run-rust.sh.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient } from "rivetkit/client";
import { REPO, RustRunner, Server, getJson, makeWorkDir, waitFor, withLogs, withTimeout } from "./harness.mjs";

const NS = "default";
const RUN = Date.now().toString(36);
const workDir = makeWorkDir();
const server = new Server({ target: "rivulet", workDir });
const runnerBin = path.resolve(REPO, process.env.RUST_RUNNER_BIN || "target/debug/examples/test_runner");
let runner;
let failed = false;
const clients = {};

const call = (p, what, ms = 30_000) => withTimeout(p, ms, what);

async function actorRecord(actorId) {
	const { status, body } = await getJson(`${server.url}/actors?actor_ids=${actorId}&namespace=${NS}`);
	assert.equal(status, 200);
	return body.actors[0];
}

/** Waits until the actor sleeps (its runner stopped it), without waking it. */
async function untilAsleep(actorId) {
	await waitFor(async () => {
		const a = await actorRecord(actorId);
		return a.sleep_ts !== null && a.connectable_ts === null;
	}, { timeout: 20_000, what: "actor asleep" });
}

describe("Rust actors with the stock RivetKit client", () => {
	before(async () => {
		await server.init();
		await server.start();
		runner = new RustRunner({ workDir, endpoint: server.url, bin: runnerBin });
		await runner.start();
		for (const encoding of ["bare", "cbor", "json"]) {
			clients[encoding] = createClient({ endpoint: server.url, namespace: NS, encoding });
		}
	});

	after(async () => {
		for (const c of Object.values(clients)) {
			await withTimeout(Promise.resolve(c.dispose?.()), 5000, "client.dispose").catch(() => {});
		}
		await runner?.stop();
		await server.stop();
		if (failed || process.env.COMPAT_KEEP === "1") console.log(`[rust-actors] logs kept in ${workDir}`);
		else fs.rmSync(workDir, { recursive: true, force: true });
	});

	const check = withLogs(
		it,
		() => [
			["runner", runner?.child, 20],
			["rivulet", server.child, 20],
		],
		() => {
			failed = true;
		},
	);

	for (const encoding of ["bare", "cbor", "json"]) {
		check(`counter over HTTP and WebSocket, events (${encoding})`, async () => {
			const h = clients[encoding].counter.getOrCreate([`c-${encoding}-${RUN}`]);
			assert.equal(await call(h.increment(2), "http increment"), 2);
			assert.equal(await call(h.get(), "http get"), 2);
			const conn = h.connect();
			const events = [];
			conn.on("newCount", (v) => events.push(v));
			try {
				assert.equal(await call(conn.increment(3), "ws increment"), 5);
				// An HTTP action by someone else reaches the connection as an event.
				assert.equal(await call(h.increment(1), "http increment"), 6);
				await waitFor(() => events.includes(6), { timeout: 10_000, what: "newCount 6" });
				assert.ok(events.includes(5), `events: ${JSON.stringify(events)}`);
			} finally {
				await withTimeout(conn.dispose(), 5000, "dispose").catch(() => {});
			}
		});
	}

	check("chat: connection params, broadcasts, history; a missing user is rejected", async () => {
		const room = [`room-${RUN}`];
		const ann = clients.bare.chat.getOrCreate(room, { params: { user: "ann" } }).connect();
		const bob = clients.json.chat.getOrCreate(room, { params: { user: "bob" } }).connect();
		const seenByBob = [];
		bob.on("message", (m) => seenByBob.push(m));
		try {
			// Bob's subscription goes out when his socket opens, ahead of his first action:
			// once that action answers, the broadcast below reaches him.
			assert.deepEqual(await call(bob.history(), "history before"), []);
			const posted = await call(ann.post("hello"), "post");
			assert.equal(posted.user, "ann");
			assert.equal(posted.text, "hello");
			await waitFor(() => seenByBob.some((m) => m.text === "hello" && m.user === "ann"), { timeout: 10_000, what: "bob sees ann's message" });
			const history = await call(bob.history(), "history");
			assert.deepEqual(history.map((m) => [m.user, m.text]), [["ann", "hello"]]);
			const nobody = clients.bare.chat.getOrCreate(room).connect();
			try {
				await assert.rejects(call(nobody.post("x"), "post without a user"), (e) => {
					assert.equal(e.group, "user");
					assert.equal(e.code, "missing_user");
					return true;
				});
			} finally {
				await withTimeout(nobody.dispose(), 5000, "dispose").catch(() => {});
			}
		} finally {
			await withTimeout(ann.dispose(), 5000, "dispose").catch(() => {});
			await withTimeout(bob.dispose(), 5000, "dispose").catch(() => {});
		}
	});

	check("user errors reach the client whole; internal errors are masked", async () => {
		for (const encoding of ["bare", "json"]) {
			const h = clients[encoding].probe.getOrCreate([`errors-${encoding}-${RUN}`]);
			await assert.rejects(call(h.userError(), "userError"), (e) => {
				assert.equal(e.group, "user");
				assert.equal(e.code, "probe_refused");
				assert.equal(e.message, "the probe refused");
				assert.deepEqual(e.metadata, { reason: "asked to" });
				return true;
			});
			await assert.rejects(call(h.internalError(), "internalError"), (e) => {
				assert.equal(e.group, "core");
				assert.equal(e.code, "internal_error");
				assert.ok(!String(e.message).includes("secret"), `leaked: ${e.message}`);
				return true;
			});
		}
	});

	check("state survives sleep and wake", async () => {
		const h = clients.bare.probe.getOrCreate([`sleepy-${RUN}`]);
		assert.equal(await call(h.increment(7), "increment"), 7);
		const id = await call(h.resolve(), "resolve");
		await untilAsleep(id);
		assert.equal(await call(h.get(), "get after sleep"), 7);
		assert.equal(await call(h.wakes(), "wakes"), 2, "woke a second time");
	});

	check("100 connected clients do not keep a Rust actor awake; the next message from any wakes it, events reach all", async () => {
		// 100 clients on one probe (it sleeps after one idle second), in all three encodings.
		// Their sockets are hibernatable: the actor sleeps with them open, the gateway holds
		// them, and the next message from any client wakes it; its event reaches the other 99.
		const N = 100;
		const key = [`hibernate-${RUN}`];
		const encodings = ["bare", "cbor", "json"];
		const conns = Array.from({ length: N }, (_, i) => clients[encodings[i % 3]].probe.getOrCreate(key).connect());
		const events = conns.map(() => []);
		const errors = conns.map(() => 0);
		conns.forEach((c, i) => {
			c.on("newCount", (v) => events[i].push(v));
			c.onError?.(() => errors[i]++);
		});
		try {
			// Each connection's subscription goes out ahead of its first action.
			await Promise.all(conns.map((c, i) => call(c.get(), `get ${i}`)));
			assert.equal(await call(conns[0].increment(1), "first increment"), 1);
			const id = await call(clients.bare.probe.getOrCreate(key).resolve(), "resolve");
			for (let round = 0; round < 2; round++) {
				await untilAsleep(id);
				const who = conns[17 + round * 40];
				const value = await call(who.increment(1), `increment after sleep ${round}`);
				assert.equal(value, round + 2);
				await waitFor(() => events.every((e) => e.includes(value)), { timeout: 15_000, what: `newCount ${value} at all ${N}` });
			}
			const wakes = await call(conns[99].wakes(), "wakes");
			assert.ok(wakes >= 3, `woke at least three times: ${wakes}`);
			for (const e of events) assert.deepEqual(e, [1, 2, 3], "events in order, once each");
			assert.deepEqual(errors, conns.map(() => 0));
		} finally {
			await Promise.all(conns.map((c) => withTimeout(c.dispose(), 5000, "dispose").catch(() => {})));
		}
	});

	check("a scheduled action fires after the actor slept", async () => {
		const h = clients.bare.probe.getOrCreate([`alarm-${RUN}`]);
		assert.equal(await call(h.increment(1), "increment"), 1);
		const id = await call(h.resolve(), "resolve");
		await call(h.scheduleIncrement(2500, 10), "schedule");
		await untilAsleep(id);
		const sleptAt = (await actorRecord(id)).sleep_ts;
		// Nobody calls the actor: only the gateway's alarm can wake it.
		await waitFor(async () => {
			const a = await actorRecord(id);
			return a.sleep_ts === null || a.sleep_ts > sleptAt || a.connectable_ts !== null;
		}, { timeout: 20_000, what: "the alarm wakes the actor" });
		await waitFor(async () => (await call(h.get(), "get")) === 11, { timeout: 10_000, what: "count 11" });
	});
});
