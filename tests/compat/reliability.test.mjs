// Reliability and security defects, each reproduced against real processes: the gateway
// (`rivulet serve`, embedded store), the Rust runner's test_runner example and the stock
// RivetKit 2.3.19 client. Each test names the defect it covers.
//
// The gateway runs with a lost threshold of 120 s, far longer than any wait below, so a test
// that passes shows the gateway acted on what it knew, not that a timer ran out; with 40 MiB
// for all buffered request bodies together; and waits 5 s for an actor to be ready.
//
// Env: RIVULET_BIN (gateway), RUST_RUNNER_BIN (default target/debug/examples/test_runner),
// COMPAT_KEEP=1 keeps logs. Run with tests/compat/run-rust.sh reliability.test.mjs.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient } from "rivetkit/client";
import { REPO, RustRunner, Server, getJson, makeWorkDir, sleep, waitFor, withLogs, withTimeout } from "./harness.mjs";

const NS = "default";
const RUN = Date.now().toString(36);
const LOST_THRESHOLD_MS = 120_000;
const workDir = makeWorkDir();
const configPath = path.join(workDir, "rivulet.toml");
const BODY_BUDGET = 40 * 1024 * 1024;
fs.writeFileSync(
	configPath,
	`[envoy]\nlost_threshold_ms = ${LOST_THRESHOLD_MS}\n\n` +
		`[gateway]\nmax_buffered_body_bytes = ${BODY_BUDGET}\nactor_ready_timeout_ms = 5000\n`,
);
const server = new Server({ target: "rivulet", workDir, extraArgs: ["--config", configPath] });
const runnerBin = path.resolve(REPO, process.env.RUST_RUNNER_BIN || "target/debug/examples/test_runner");
const runners = [];
let client;
let failed = false;

const call = (p, what, ms = 30_000) => withTimeout(p, ms, what);

function runner(opts = {}) {
	const r = new RustRunner({ workDir, endpoint: server.url, bin: runnerBin, name: `runner-${runners.length}`, ...opts });
	runners.push(r);
	return r;
}

/** SIGKILL of the runner's whole process group: a crash, nothing flushed. */
async function crash(r) {
	try {
		process.kill(-r.child.pid, "SIGKILL");
	} catch {}
	await r.child.exited;
}

async function envoys() {
	const { status, body } = await getJson(`${server.url}/envoys?namespace=${NS}`);
	assert.equal(status, 200);
	return body.envoys;
}

describe("reliability defects (real gateway, Rust runner, stock client)", () => {
	before(async () => {
		await server.init();
		await server.start();
		client = createClient({ endpoint: server.url, namespace: NS, encoding: "bare" });
	});

	after(async () => {
		await withTimeout(Promise.resolve(client?.dispose?.()), 5000, "client.dispose").catch(() => {});
		for (const r of runners) await r.stop({ graceMs: 3000 }).catch(() => {});
		await server.stop();
		if (failed || process.env.COMPAT_KEEP === "1") console.log(`[reliability] logs kept in ${workDir}`);
		else fs.rmSync(workDir, { recursive: true, force: true });
	});

	const check = withLogs(
		it,
		() => [...runners.map((r) => [r.name, r.child, 15]), ["rivulet", server.child, 25]],
		() => {
			failed = true;
		},
	);

	check("defect 1: a runner killed and restarted under its own key gets its actors back at once", async () => {
		const key = `fixed-${RUN}`;
		const first = runner({ envoyKey: key });
		await first.start();
		const counter = client.counter.getOrCreate([`restart-${RUN}`]);
		assert.equal(await call(counter.increment(5), "increment before the crash"), 5);
		const actorId = await call(counter.resolve(), "resolve");
		// The runner saves state at most once a second; let it save before the crash.
		await sleep(2000);
		await crash(first);
		const second = runner({ envoyKey: key });
		await second.start();
		// The new process runs none of the old one's actors: the gateway must not wait for
		// them (the lost threshold is 120 s), and the next call must be served.
		const value = await call(counter.increment(1), "increment after the restart", 30_000);
		assert.equal(value, 6, "state saved before the crash survives");
		// Asking it to sleep is answered, not left waiting on an instance that is gone.
		const res = await call(
			fetch(`${server.url}/actors/${actorId}/sleep?namespace=${NS}`, { method: "POST" }),
			"sleep request",
			20_000,
		);
		assert.ok(res.status < 300, `sleep answered ${res.status}: ${await res.text()}`);
		assert.equal(await call(counter.increment(1), "increment after sleeping"), 7);
		await second.stop();
	});

	check("defect 2: a large body or socket message never costs the runner its connection", async () => {
		const r = runner();
		await r.start();
		const connectedTs = async () => (await envoys()).find((e) => e.envoy_key === r.envoyKey)?.last_connected_ts;
		const since = await connectedTs();
		assert.ok(since, "runner listed");
		// A bystander: another actor with an open connection, which must keep working.
		const other = client.counter.getOrCreate([`bystander-${RUN}`]);
		const conn = other.connect();
		const seen = [];
		conn.on("newCount", (v) => seen.push(v));
		assert.equal(await call(conn.increment(1), "bystander increment"), 1);
		const big = client.counter.getOrCreate([`big-${RUN}`]);
		assert.equal(await call(big.increment(1), "wake the target"), 1);
		const bigId = await call(big.resolve(), "resolve");
		const MiB = 1024 * 1024;

		// 17 MiB body: over tungstenite's default frame limit, under the gateway's 20 MiB.
		// The actor answers it (here: not an action it knows), and the runner stays.
		const res17 = await call(
			fetch(`${server.url}/gateway/${bigId}/action/nothing`, { method: "POST", body: new Uint8Array(17 * MiB) }),
			"17 MiB body answered",
		);
		await res17.arrayBuffer();
		assert.notEqual(res17.status, 503, "not refused for lack of a runner");
		// 21 MiB body: refused at the edge with the named error, before it reaches a runner.
		const res21 = await call(
			fetch(`${server.url}/gateway/${bigId}/action/nothing`, { method: "POST", body: new Uint8Array(21 * MiB) }),
			"21 MiB body answered",
		);
		assert.equal(res21.status, 413);
		assert.equal((await res21.json()).code, "incoming_too_long");

		// Socket messages: 17 MiB reaches the actor (which closes that socket as it cannot
		// decode it); 33 MiB is over the gateway's limit and closes that socket with 1009.
		const wsUrl = `${server.url.replace("http", "ws")}/gateway/${bigId}/connect`;
		const closeOf = (size) =>
			new Promise((resolve, reject) => {
				const ws = new WebSocket(wsUrl, ["rivet", "rivet_encoding.json"]);
				ws.binaryType = "arraybuffer";
				ws.onopen = () => ws.send(new Uint8Array(size));
				ws.onclose = (e) => resolve({ code: e.code, reason: e.reason });
				ws.onerror = () => {};
				setTimeout(() => reject(new Error(`socket with a ${size}-byte message not closed`)), 30_000);
			});
		const closed17 = await closeOf(17 * MiB);
		assert.notEqual(closed17.code, 1006, `17 MiB: closed with a code (${JSON.stringify(closed17)})`);
		const closed33 = await closeOf(33 * MiB);
		assert.equal(closed33.code, 1009, `33 MiB: ${JSON.stringify(closed33)}`);
		assert.match(closed33.reason, /^message\.incoming_too_long#/);

		// None of that touched the runner's connection or the bystander.
		assert.equal(await connectedTs(), since, "the runner never reconnected");
		assert.equal(await call(conn.increment(1), "bystander after the big inputs"), 2);
		await waitFor(() => seen.includes(2), { timeout: 10_000, what: "bystander event" });
		await conn.dispose();
		await r.stop();
	});

	check("defect 5: forcing an actor with 2,000 open sockets to sleep: the held ones stay open, the others close with a code", async () => {
		const r = runner();
		await r.start();
		const probe = client.probe.getOrCreate([`crowd-${RUN}`]);
		assert.equal(await call(probe.increment(1), "wake"), 1);
		const id = await call(probe.resolve(), "resolve");
		const url = `${server.url.replace("http", "ws")}/gateway/${id}/connect`;
		const N = 2000;
		const closes = [];
		// Half the clients opt out of hibernation (`{"stay": true}`): they keep the probe awake
		// and must be closed, with a code, when it is made to sleep. The other half hibernate:
		// the gateway holds them through the sleep.
		const openOne = (stay) =>
			new Promise((resolve, reject) => {
				const protocols = ["rivet", "rivet_encoding.json"];
				if (stay) protocols.push(`rivet_conn_params.${encodeURIComponent(JSON.stringify({ stay: true }))}`);
				const ws = new WebSocket(url, protocols);
				let ready = false;
				ws.stay = stay;
				ws.answers = [];
				ws.onerror = () => {};
				ws.onclose = (e) => {
					closes.push({ code: e.code, stay });
					if (!ready) reject(new Error(`a socket closed before its init: ${e.code} ${e.reason}`));
				};
				ws.onmessage = (m) => {
					if (ready) ws.answers.push(String(m.data));
					ready = true; // the first message is the connection's init: the actor has it
					resolve(ws);
				};
			});
		// Opened in batches, as clients arriving over a few seconds would: the point here is
		// what a sleep does to 2,000 open sockets, not how a runner takes 2,000 opens at once.
		const open = [];
		for (let i = 0; i < N; i += 200) {
			const batch = Array.from({ length: Math.min(200, N - i) }, (_, k) => openOne((i + k) % 2 === 0));
			open.push(...(await withTimeout(Promise.all(batch), 60_000, `sockets ${i}..${i + batch.length} initialised`)));
		}
		assert.equal(open.length, N);
		const res = await fetch(`${server.url}/actors/${id}/sleep?namespace=${NS}`, { method: "POST" });
		assert.ok(res.status < 300, `sleep answered ${res.status}`);
		// Every socket that kept it awake ends with a close the client sees; none is left open
		// with nothing behind.
		await waitFor(() => closes.length === N / 2, {
			timeout: 60_000,
			interval: 200,
			what: `the ${N / 2} sockets that opted out closed (closed so far: ${closes.length})`,
		});
		await waitFor(async () => (await (await fetch(`${server.url}/actors?actor_ids=${id}&namespace=${NS}`)).json()).actors[0].sleep_ts !== null, {
			timeout: 30_000,
			what: "the probe asleep",
		});
		assert.ok(closes.every((c) => c.stay), "only sockets that opted out closed");
		assert.equal(closes.filter((c) => c.code === 1006).length, 0, "closed with a code, not dropped");
		const held = open.filter((ws) => !ws.stay);
		assert.ok(held.every((ws) => ws.readyState === WebSocket.OPEN), "the held sockets stay open");
		// A message on a held socket wakes the probe and is answered there.
		held[0].send(JSON.stringify({ body: { tag: "ActionRequest", val: { id: ["$BigInt", "1"], name: "increment", args: [1] } } }));
		await waitFor(() => held[0].answers.some((a) => a.includes("ActionResponse")), { timeout: 30_000, what: "the answer on a held socket" });
		const answer = JSON.parse(held[0].answers.find((a) => a.includes("ActionResponse"))).body.val;
		assert.equal(answer.output, 2, JSON.stringify(answer));
		for (const ws of held) ws.close();
		await r.stop();
	});

	check("defect 6: request bodies buffered at once have a gateway-wide cap", async () => {
		// An actor of a pool no runner serves: requests to it wait (5 s) holding their bodies.
		const created = await fetch(`${server.url}/actors?namespace=${NS}`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ name: "counter", key: `stuck-${RUN}`, runner_name_selector: `nobody-${RUN}` }),
		});
		assert.equal(created.status, 200, await created.clone().text());
		const stuckId = (await created.json()).actor.actor_id;
		const MiB = 1024 * 1024;
		const upload = () =>
			fetch(`${server.url}/gateway/${stuckId}/action/x`, { method: "POST", body: new Uint8Array(15 * MiB) }).then(
				async (r) => ({ status: r.status, retryAfter: r.headers.get("retry-after"), body: await r.json() }),
			);
		// Two 15 MiB bodies fit in 40 MiB; the third does not, and is refused at once while
		// the first two are still waiting.
		const first = [upload(), upload()];
		await sleep(1000);
		const third = await call(upload(), "third upload answered", 4000);
		assert.equal(third.status, 503, JSON.stringify(third));
		assert.equal(third.body.code, "overloaded");
		assert.equal(third.retryAfter, "1");
		for (const r of await Promise.all(first)) {
			assert.equal(r.status, 503, "no runner for the pool: a ready timeout, not a crash");
			assert.equal(r.body.code, "actor_ready_timeout");
		}
		// Once they ended, their bytes are free again.
		const after = await call(upload(), "upload after the others ended", 10_000);
		assert.equal(after.body.code, "actor_ready_timeout");
	});

	check("defect 3: every acknowledged action survives a host crash (gateway and runner killed together)", async () => {
		// A fixed key, as a host's service manager would restart it with: after the crash the
		// restarted gateway must not take the new runner process for the old one.
		const key = `host-${RUN}`;
		const r = runner({ envoyKey: key });
		await r.start();
		// Several actors written at once, and both processes killed in the same tick as the
		// 50th acknowledgement of one of them: a runner that answers before it saves has no
		// time left to save.
		const counters = [0, 1, 2, 3].map((i) => client.counter.getOrCreate([`crash-${RUN}-${i}`]));
		const acked = counters.map(() => 0);
		let killed = false;
		const killBoth = () => {
			if (killed) return;
			killed = true;
			for (const pid of [r.child.pid, server.child.pid]) {
				try {
					process.kill(-pid, "SIGKILL");
				} catch {}
			}
		};
		const writers = counters.map(async (counter, i) => {
			while (!killed) {
				let value;
				try {
					value = await counter.increment(1);
				} catch {
					return; // the crash: this call was never acknowledged
				}
				acked[i] = value;
				if (value >= 50) killBoth();
			}
		});
		await withTimeout(Promise.all(writers), 60_000, "writers until the crash");
		await r.child.exited;
		await server.child.exited;
		await server.start();
		const again = runner({ envoyKey: key });
		await again.start();
		for (const [i, counter] of counters.entries()) {
			const value = await call(counter.get(), `read ${i} after the crash`, 30_000);
			// The call in flight at the kill may or may not have applied; none acknowledged is lost.
			assert.ok(
				value === acked[i] || value === acked[i] + 1,
				`counter ${i}: acknowledged ${acked[i]}, stored ${value}`,
			);
		}
		await again.stop();
	});

	check("defect 3: a change too large to save fails its action with a named error and is undone", async () => {
		const r = runner();
		await r.start();
		const room = client.chat.getOrCreate([`big-room-${RUN}`], { params: { user: "me" } });
		const post = (i) => room.post(`${i}:${"x".repeat(60_000)}`);
		let accepted = 0;
		let refusal;
		for (let i = 0; i < 20 && !refusal; i++) {
			try {
				await call(post(i), `post ${i}`);
				accepted++;
			} catch (e) {
				refusal = e;
			}
		}
		assert.ok(refusal, "a post that makes the state too large is refused");
		assert.equal(refusal.group, "state");
		assert.equal(refusal.code, "too_large");
		// Everything acknowledged is still there after a sleep and wake.
		const id = await call(room.resolve(), "resolve");
		const res = await fetch(`${server.url}/actors/${id}/sleep?namespace=${NS}`, { method: "POST" });
		assert.ok(res.status < 300, `sleep answered ${res.status}`);
		await sleep(500);
		const history = await call(room.history(), "history after wake");
		assert.equal(history.length, accepted, `accepted ${accepted}, kept ${history.length}`);
		await r.stop();
	});

	check("defect 4: a runner evicted by another process with its key exits with a named reason", async () => {
		const key = `evict-${RUN}`;
		const first = runner({ envoyKey: key });
		await first.start();
		const counter = client.counter.getOrCreate([`evict-${RUN}`]);
		assert.equal(await call(counter.increment(2), "increment on the first runner"), 2);
		await sleep(2000);
		const second = runner({ envoyKey: key });
		await second.start();
		const exit = await withTimeout(first.child.exited, 20_000, "evicted runner exits");
		assert.notEqual(exit.code, 0, "an evicted runner exits with a failure code");
		assert.match(first.child.out, /evicted \(ws\.eviction\)/, "the reason is named");
		// The actors of the evicted process are lost, not handed to the newcomer as if it
		// ran them: the next call starts the actor afresh from its saved state.
		assert.equal(await call(counter.increment(1), "increment after the eviction"), 3);
		assert.equal((await envoys()).filter((e) => e.envoy_key === key).length, 1);
		await second.stop();
	});
});
