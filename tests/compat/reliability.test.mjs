// Reliability and security defects, each reproduced against real processes: the gateway
// (`rivulet serve`, embedded store), the Rust runner's test_runner example and the stock
// RivetKit 2.3.19 client. Each test names the defect it covers.
//
// The gateway runs with a lost threshold of 120 s, far longer than any wait below, so a test
// that passes shows the gateway acted on what it knew, not that a timer ran out.
//
// Env: RIVULET_BIN (gateway), RUST_RUNNER_BIN (default target/debug/examples/test_runner),
// COMPAT_KEEP=1 keeps logs. Run with tests/compat/run-rust.sh reliability.test.mjs.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient } from "rivetkit/client";
import { REPO, RustRunner, Server, getJson, makeWorkDir, sleep, waitFor, withTimeout } from "./harness.mjs";

const NS = "default";
const RUN = Date.now().toString(36);
const LOST_THRESHOLD_MS = 120_000;
const workDir = makeWorkDir();
const configPath = path.join(workDir, "rivulet.toml");
fs.writeFileSync(configPath, `[envoy]\nlost_threshold_ms = ${LOST_THRESHOLD_MS}\n`);
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

	const check = (name, fn) =>
		it(name, async (t) => {
			try {
				await fn(t);
			} catch (e) {
				failed = true;
				for (const r of runners) if (r.child) t.diagnostic(`${r.name} log tail:\n${r.child.tail(15)}`);
				if (server.child) t.diagnostic(`rivulet log tail:\n${server.child.tail(25)}`);
				throw e;
			}
		});

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
