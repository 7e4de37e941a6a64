// Three Rivulet gateway nodes on one DynamoDB table (a local moto server), each with its own
// stock RivetKit app as runner, while nodes are killed (SIGKILL) and restarted in turn and
// stock clients keep writing to a few actors through whichever nodes are up:
//   - every acknowledged write survives: each answer is one more than the last acknowledged
//     count (or, after a call that failed without an answer, at most one more per such call),
//     and the final counts hold every acknowledged increment;
//   - no generation of an actor is ever started by two nodes: the nodes' logs name, for every
//     start, the actor, its generation and the node.
//
// Env: RIVULET_BIN (default target/debug/rivulet), CHURN_LEASE_MS (default 2000),
// CHURN_ROUNDS (default 3), COMPAT_KEEP=1 keeps logs. Run with tests/compat/run-cluster.sh churn.test.mjs.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient } from "rivetkit/client";
import { App, Server, makeWorkDir, withTimeout } from "./harness.mjs";

process.env.COMPAT_STORE = "dynamodb";
const LEASE_MS = Number(process.env.CHURN_LEASE_MS || 2000);
const ROUNDS = Number(process.env.CHURN_ROUNDS || 3);
const RUN = Date.now().toString(36);
const NS = "default";
const KEYS = [0, 1, 2].map((i) => [`churn-${RUN}-${i}`]);
const CALLS_PER_ROUND = 4;

const workDir = makeWorkDir();
const names = ["node-a", "node-b", "node-c"];
const nodeArgs = (name) => ["--node-id", name, "--lease-ms", String(LEASE_MS)];
const nodes = [];
const apps = [];
const clients = [];
let failed = false;

/** An increment through node `n`; resolves to the new count, or null if it failed. */
async function increment(n, key) {
	try {
		return await withTimeout(clients[n].counter.getOrCreate(key).incrementDurable(1), 45_000, `increment via ${names[n]}`);
	} catch {
		return null;
	}
}

describe("three gateway nodes, killed and restarted while clients write", () => {
	before(async () => {
		nodes.push(new Server({ target: "rivulet", workDir, name: names[0], extraArgs: nodeArgs(names[0]) }));
		await nodes[0].init();
		for (const name of names.slice(1)) {
			const node = new Server({ target: "rivulet", workDir, name, shareStoreWith: nodes[0], extraArgs: nodeArgs(name) });
			await node.init();
			nodes.push(node);
		}
		for (const [i, node] of nodes.entries()) {
			await node.start();
			const app = new App({ workDir, endpoint: node.url, sleepTimeoutMs: 120_000, name: `app-${names[i]}` });
			await app.start();
			apps.push(app);
			clients.push(createClient({ endpoint: node.url, namespace: NS }));
		}
	});

	after(async () => {
		for (const c of clients) await withTimeout(Promise.resolve(c?.dispose?.()), 5000, "client.dispose").catch(() => {});
		for (const a of apps) await a?.stop();
		for (const n of nodes) await n.stop();
		await nodes[0]?.moto?.stop({ graceMs: 3000 });
		if (failed || process.env.COMPAT_KEEP === "1") console.log(`[churn] logs and data kept in ${workDir}`);
		else fs.rmSync(workDir, { recursive: true, force: true });
	});

	it("keeps every acknowledged write and never runs one generation on two nodes", async (t) => {
		try {
			const acked = KEYS.map(() => 0);
			const unanswered = KEYS.map(() => 0);
			const record = (k, got) => {
				if (got === null) {
					unanswered[k] += 1;
					return;
				}
				// A call without an answer may or may not have applied; none may be lost.
				assert.ok(got > acked[k] && got <= acked[k] + 1 + unanswered[k], `key ${k}: got ${got} after ${acked[k]} acknowledged (${unanswered[k]} unanswered since)`);
				acked[k] = got;
				unanswered[k] = 0;
			};
			// Every key written once through every node: owners spread over the nodes.
			for (const [k, key] of KEYS.entries()) {
				for (let n = 0; n < nodes.length; n++) record(k, await increment(n, key));
			}
			for (let round = 0; round < ROUNDS; round++) {
				const victim = round % nodes.length;
				const alive = [0, 1, 2].filter((n) => n !== victim);
				await nodes[victim].stop({ signal: "SIGKILL", graceMs: 100 });
				for (let c = 0; c < CALLS_PER_ROUND; c++) {
					for (const [k, key] of KEYS.entries()) record(k, await increment(alive[(c + k) % alive.length], key));
				}
				await nodes[victim].start();
				for (const [k, key] of KEYS.entries()) record(k, await increment(victim, key));
				t.diagnostic(`round ${round + 1}: ${names[victim]} killed and restarted; counts ${acked.join(", ")}`);
			}
			for (const [k, key] of KEYS.entries()) {
				const final = await withTimeout(clients[k % nodes.length].counter.getOrCreate(key).get(), 45_000, "final get");
				assert.ok(final >= acked[k] && final <= acked[k] + unanswered[k], `key ${k}: final ${final}, acknowledged ${acked[k]}`);
			}
			const ok = acked.reduce((a, b) => a + b, 0);
			assert.ok(ok >= KEYS.length * (nodes.length + ROUNDS * (CALLS_PER_ROUND + 1)) / 2, `too few writes were acknowledged: ${acked}`);

			// Every start a node logged: (actor, generation) -> nodes that started it.
			const starts = new Map();
			for (const name of names) {
				const log = fs.readFileSync(path.join(workDir, `${name}.log`), "utf8").replace(/\x1b\[[0-9;]*m/g, "");
				for (const line of log.split("\n")) {
					if (!line.includes("starting actor")) continue;
					const actor = /actor_id=(\w+)/.exec(line)?.[1];
					const generation = /generation=(\d+)/.exec(line)?.[1];
					if (!actor || !generation) continue;
					const id = `${actor}#${generation}`;
					if (!starts.has(id)) starts.set(id, new Set());
					starts.get(id).add(name);
				}
			}
			assert.ok(starts.size >= KEYS.length, `the nodes' logs name too few starts (${starts.size})`);
			for (const [id, by] of starts) assert.equal(by.size, 1, `generation ${id} was started by ${[...by].join(" and ")}`);
			t.diagnostic(`${starts.size} starts, each by one node`);
		} catch (e) {
			failed = true;
			for (const p of [...nodes, ...apps]) if (p?.child) t.diagnostic(`${p.child.name} log tail:\n${p.child.tail(10)}`);
			throw e;
		}
	});
});
