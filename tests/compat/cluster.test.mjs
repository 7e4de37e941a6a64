// Two Rivulet gateway nodes on one DynamoDB table (a local moto server), each with its own
// stock RivetKit app as runner, and stock clients on both nodes:
//   1. clients on either node reach the same actor and see one consistent count, over HTTP
//      and over a WebSocket connection whose node forwards to the owner;
//   2. the owner node is killed (SIGKILL): no acknowledged write is lost, and the other node
//      serves the actor again once the dead node's lease runs out.
//
// Env: RIVULET_BIN (default target/debug/rivulet), CLUSTER_LEASE_MS (default 2000),
// COMPAT_KEEP=1 keeps logs. Run with tests/compat/run-cluster.sh.
import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, describe, it } from "node:test";
import { createClient } from "rivetkit/client";
import { App, Server, getJson, makeWorkDir, waitFor, withTimeout } from "./harness.mjs";

process.env.COMPAT_STORE = "dynamodb";
const LEASE_MS = Number(process.env.CLUSTER_LEASE_MS || 2000);
const RUN = Date.now().toString(36);
const NS = "default";

const workDir = makeWorkDir();
const nodeArgs = (name) => ["--node-id", name, "--lease-ms", String(LEASE_MS)];
const nodeA = new Server({ target: "rivulet", workDir, name: "node-a", extraArgs: nodeArgs("node-a") });
let nodeB;
let appA;
let appB;
let clientA;
let clientB;
let failed = false;

const call = (p, what, ms = 30_000) => withTimeout(p, ms, what);

describe("two gateway nodes on one DynamoDB table", () => {
	before(async () => {
		await nodeA.init();
		nodeB = new Server({ target: "rivulet", workDir, name: "node-b", shareStoreWith: nodeA, extraArgs: nodeArgs("node-b") });
		await nodeB.init();
		await nodeA.start();
		await nodeB.start();
		// Long sleep timeout: the actor stays awake on its node, so the failover below is a
		// takeover of a running actor, not a plain wake.
		appA = new App({ workDir, endpoint: nodeA.url, sleepTimeoutMs: 120_000, name: "app-a" });
		appB = new App({ workDir, endpoint: nodeB.url, sleepTimeoutMs: 120_000, name: "app-b" });
		await appA.start();
		await appB.start();
		clientA = createClient({ endpoint: nodeA.url, namespace: NS });
		clientB = createClient({ endpoint: nodeB.url, namespace: NS });
	});

	after(async () => {
		for (const c of [clientA, clientB]) {
			await withTimeout(Promise.resolve(c?.dispose?.()), 5000, "client.dispose").catch(() => {});
		}
		await appA?.stop();
		await appB?.stop();
		await nodeA.stop();
		await nodeB?.stop();
		await nodeA.moto?.stop({ graceMs: 3000 });
		if (failed || process.env.COMPAT_KEEP === "1") {
			console.log(`[cluster] logs and data kept in ${workDir}`);
		} else {
			fs.rmSync(workDir, { recursive: true, force: true });
		}
	});

	const check = (name, fn) =>
		it(name, async (t) => {
			try {
				await fn(t);
			} catch (e) {
				failed = true;
				for (const p of [nodeA, nodeB, appA, appB]) {
					if (p?.child) t.diagnostic(`${p.child.name} log tail:\n${p.child.tail(15)}`);
				}
				throw e;
			}
		});

	const key = [`shared-${RUN}`];
	let acked = 0;
	let actorId;

	check("clients on both nodes see one actor and one count", async () => {
		const hA = clientA.counter.getOrCreate(key);
		const hB = clientB.counter.getOrCreate(key);
		for (let i = 0; i < 10; i++) {
			const h = i % 2 === 0 ? hA : hB;
			const got = await call(h.incrementDurable(1), `increment ${i + 1} via node ${i % 2 === 0 ? "a" : "b"}`);
			acked += 1;
			assert.equal(got, acked, "every increment sees all earlier ones, whichever node it entered");
		}
		actorId = await call(hB.resolve(), "resolve via node b");
		assert.equal(await call(hA.resolve(), "resolve via node a"), actorId, "one actor for the key");
		const listed = await getJson(`${nodeB.url}/actors?actor_ids=${actorId}&namespace=${NS}`);
		assert.equal(listed.body.actors.length, 1);
	});

	check("a WebSocket on the other node is forwarded to the owner", async () => {
		// The first request entered node a, so node a owns the actor; this socket enters b.
		const conn = clientB.counter.getOrCreate(key).connect();
		const events = [];
		conn.on("newCount", (v) => events.push(v));
		try {
			acked += 1;
			assert.equal(await call(conn.incrementDurable(1), "increment over the socket"), acked);
			acked += 1;
			assert.equal(await call(clientA.counter.getOrCreate(key).incrementDurable(1), "increment via node a"), acked);
			await waitFor(() => events.includes(acked), { timeout: 10_000, what: `event ${acked} on the forwarded socket` });
		} finally {
			await withTimeout(conn.dispose(), 5000, "conn.dispose").catch(() => {});
		}
	});

	check("killing the owner loses no acknowledged write; the other node takes over", async (t) => {
		const owner = await nodeA.stop({ signal: "SIGKILL", graceMs: 100 });
		assert.equal(owner.signal, "SIGKILL");
		const t0 = Date.now();
		const hB = clientB.counter.getOrCreate(key);
		// Node b still sees node a's lease; it waits for the lease to run out, takes the actor
		// over and starts it on its own runner from the stored state.
		const got = await call(hB.get(), "get after the owner died", 60_000);
		const tookMs = Date.now() - t0;
		t.diagnostic(`served again by node b ${tookMs} ms after node a was killed (lease ${LEASE_MS} ms)`);
		assert.equal(got, acked, "every acknowledged increment survived");
		acked += 1;
		assert.equal(await call(hB.incrementDurable(1), "increment after takeover"), acked);
		// Behaviour, not speed: the takeover waited for the lease, not for some unrelated
		// timeout (the bound is the lease plus generous room for a cold actor start).
		assert.ok(tookMs < LEASE_MS + 20_000, `takeover took ${tookMs} ms`);
		const envoys = await getJson(`${nodeB.url}/envoys?namespace=${NS}`);
		assert.equal(envoys.status, 200);
	});
});
