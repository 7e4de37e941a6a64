// Store cost benchmark: how many store requests the gateway makes per operation, and what an
// actor costs the gateway once it sleeps. The stock RivetKit app and client against Rivulet;
// the store requests are read from the gateway's own `/metrics`
// (rivulet_store_requests_total, every DynamoDB request attempt by operation). Prints one JSON
// object on stdout so runs can be compared.
//
// On DynamoDB (a local moto server):
//   - create + first action on a new key (BENCH_STORE_CREATES, default 20, sequential);
//   - an HTTP action and a WebSocket action on an awake actor (BENCH_STORE_ACTIONS, default 100);
//   - idle: BENCH_STORE_AWAKE actors (default 1000; the counter in Rust, RUST_RUNNER_BIN) kept
//     awake by one open connection each, then nothing happens for BENCH_STORE_IDLE_S seconds
//     (default 30); reported per minute.
// On the embedded store:
//   - gateway RSS per sleeping actor: BENCH_STORE_WARMUP actors (default 2000) are woken and
//     left to sleep first, so the store's page cache, the allocator's arenas and the runtime's
//     threads are at their working size; then BENCH_STORE_SLEEPING actors (default 20000) are
//     woken by one action each and left to sleep (sleep timeout 1 s). RSS is read when they
//     have all slept and BENCH_STORE_SETTLE_S (default 15) more seconds passed, and compared
//     with the RSS after the warm-up (the figure the "within 10 %" aim is about) and with the
//     cold start (which includes the store's bounded page cache filling up). A sample of RSS
//     every 10,000 actors shows whether it grows with the number of actors ever touched.
//
//   BENCH_STORE_CONCURRENCY  actors woken at once (default 4)
//   RIVULET_BIN   the gateway to measure (scripts/bench.sh passes a release build)
import fs from "node:fs";
import { createClient } from "rivetkit/client";
import { App, RustRunner, Server, makeWorkDir, sleep } from "./harness.mjs";

const CREATES = Number(process.env.BENCH_STORE_CREATES || 20);
const ACTIONS = Number(process.env.BENCH_STORE_ACTIONS || 100);
const AWAKE = Number(process.env.BENCH_STORE_AWAKE || 1000);
const IDLE_S = Number(process.env.BENCH_STORE_IDLE_S || 30);
const SLEEPING = Number(process.env.BENCH_STORE_SLEEPING || 20000);
const WARMUP = Number(process.env.BENCH_STORE_WARMUP || 2000);
const SETTLE_S = Number(process.env.BENCH_STORE_SETTLE_S || 15);
const WIDTH = Number(process.env.BENCH_STORE_CONCURRENCY || 4);
const QUIET_MS = 3000;
const round = (x, d = 2) => (x === null || x === undefined ? null : Math.round(x * 10 ** d) / 10 ** d);

async function metrics(url) {
	const text = await (await fetch(`${url}/metrics`)).text();
	const byOp = {};
	let total = 0;
	const gauges = {};
	for (const line of text.split("\n")) {
		let m = /^rivulet_store_requests_total\{operation="([^"]+)"\} (\d+)$/.exec(line);
		if (m) {
			byOp[m[1]] = Number(m[2]);
			total += Number(m[2]);
			continue;
		}
		m = /^(rivulet_[a-z_]+) (\d+)$/.exec(line);
		if (m) gauges[m[1]] = Number(m[2]);
	}
	return { total, byOp, gauges };
}

function delta(a, b) {
	const ops = {};
	for (const [k, v] of Object.entries(b.byOp)) {
		const d = v - (a.byOp[k] ?? 0);
		if (d) ops[k] = d;
	}
	return { total: b.total - a.total, ops };
}

function per(d, n) {
	const ops = {};
	for (const [k, v] of Object.entries(d.ops)) ops[k] = round(v / n);
	return { requests: round(d.total / n), by_operation: ops, samples: n };
}

const rssKiB = (pid) => {
	const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
	return m ? Number(m[1]) : null;
};

/** Runs `fn(i)` for i < n with at most `width` at once. */
async function pool(n, width, fn) {
	let next = 0;
	await Promise.all(
		Array.from({ length: Math.min(width, n) }, async () => {
			while (next < n) await fn(next++);
		}),
	);
}

/** A gateway on a fresh table of a local moto server. */
async function dynamoServer() {
	const saved = process.env.COMPAT_STORE;
	process.env.COMPAT_STORE = "dynamodb";
	const workDir = makeWorkDir();
	const server = new Server({ target: "rivulet", workDir });
	await server.init();
	process.env.COMPAT_STORE = saved;
	await server.start();
	return { workDir, server };
}

async function onDynamo(out) {
	const { workDir, server } = await dynamoServer();
	const app = new App({ workDir, endpoint: server.url, sleepTimeoutMs: 600_000 });
	await app.start();
	const client = createClient({ endpoint: server.url, disableMetadataLookup: true });
	const run = Date.now().toString(36);
	try {
		// The first actor also pays for one-time set-up (pool and name records); not counted.
		await client.counter.getOrCreate([`warm-${run}`]).increment(1);

		// Background traffic (alarm scans, lease renewals of the actors awake so far) runs
		// during every phase; each phase is measured raw and with the background rate of a
		// quiet window just before it subtracted.
		const phase = async (n, body) => {
			await sleep(1000);
			const q0 = await metrics(server.url);
			const tq = Date.now();
			await sleep(QUIET_MS);
			const q1 = await metrics(server.url);
			const bgPerMs = delta(q0, q1).total / (Date.now() - tq);
			const a = await metrics(server.url);
			const t0 = Date.now();
			await body();
			const b = await metrics(server.url);
			const d = delta(a, b);
			const background = bgPerMs * (Date.now() - t0);
			return {
				...per(d, n),
				background_per_s: round(bgPerMs * 1000),
				requests_less_background: round(Math.max(0, d.total - background) / n),
			};
		};
		out.create_first_action = await phase(CREATES, async () => {
			for (let i = 0; i < CREATES; i++) await client.counter.getOrCreate([`create-${run}-${i}`]).increment(1);
		});

		const h = client.counter.getOrCreate([`http-${run}`]);
		await h.increment(1);
		out.http_action = await phase(ACTIONS, async () => {
			for (let i = 0; i < ACTIONS; i++) await h.increment(1);
		});

		const conn = client.counter.getOrCreate([`ws-${run}`]).connect();
		await conn.increment(1);
		out.ws_action = await phase(ACTIONS, async () => {
			for (let i = 0; i < ACTIONS; i++) await conn.increment(1);
		});
		await conn.dispose();

	} finally {
		await client.dispose?.();
		await app.stop({ graceMs: 3000 });
		await server.stop({ graceMs: 5000 });
		await server.moto?.stop?.({ graceMs: 1000 });
	}
}


/** Idle store traffic with AWAKE actors kept awake by one open connection each. The actors are
 * the counter in Rust (rivulet-runner): the stock app's SQLite start-up costs ~70 requests
 * per actor, which moto (its queries scan the table) cannot serve fast enough to wake 1,000
 * actors in a bench; what is measured here is the gateway's own idle traffic. */
async function idleOnDynamo(out) {
	const { workDir, server } = await dynamoServer();
	const runner = new RustRunner({ workDir, endpoint: server.url, bin: process.env.RUST_RUNNER_BIN, extraEnv: { RIVET_LOG_LEVEL: "warn" } });
	await runner.start();
	const client = createClient({ endpoint: server.url, disableMetadataLookup: true });
	const run = Date.now().toString(36);
	let a;
	let b;
	try {
		console.error(`[bench-store] waking ${AWAKE} actors on DynamoDB (moto)`);
		const conns = [];
		const t0 = Date.now();
		let failed = 0;
		let firstError = null;
		await pool(AWAKE, WIDTH, async (i) => {
			if (failed >= 8) return; // it cannot keep up; measure what is awake
			const c = client.counter.getOrCreate([`awake-${run}-${i}`]).connect();
			conns.push(c);
			// A gateway that cannot keep this many actors awake is measured with those it has.
			await c.get().catch((e) => {
				failed++;
				firstError ??= String(e?.message ?? e).slice(0, 200);
			});
		});
		const wokeS = (Date.now() - t0) / 1000;
		await sleep(2000);
		a = await metrics(server.url);
		await sleep(IDLE_S * 1000);
		b = await metrics(server.url);
		const d = delta(a, b);
		const perMinute = {};
		for (const [k, v] of Object.entries(d.ops)) perMinute[k] = round((v * 60) / IDLE_S, 1);
		out.idle = {
			awake_actors: conns.length - failed,
			failed_to_wake: failed,
			first_wake_error: firstError,
			measured_s: IDLE_S,
			requests_per_minute: round((d.total * 60) / IDLE_S, 1),
			requests_per_s: round(d.total / IDLE_S),
			by_operation_per_minute: perMinute,
			seconds_to_wake_all: round(wokeS, 1),
		};
		await Promise.all(conns.map((c) => c.dispose().catch(() => {})));
	} finally {
		await client.dispose?.();
		await runner.stop({ graceMs: 3000 });
		await server.stop({ graceMs: 5000 });
		await server.moto?.stop?.({ graceMs: 1000 });
	}
}

async function sleepingActors(out) {
	const workDir = makeWorkDir();
	const server = new Server({ target: "rivulet", workDir });
	await server.init();
	await server.start();
	const app = new App({ workDir, endpoint: server.url, sleepTimeoutMs: 1000 });
	await app.start();
	const client = createClient({ endpoint: server.url, disableMetadataLookup: true });
	const run = Date.now().toString(36);
	const pid = server.child.pid;
	try {
		await client.counter.getOrCreate([`warm-${run}`]).increment(1);
		await sleep(3000);
		const cold = rssKiB(pid);
		const settle = async () => {
			// The runner reports no count of sleeping actors, so wait out the sleep timeout and the
			// supervisors' unloading, then the settle time.
			await sleep(3000 + SETTLE_S * 1000);
			return rssKiB(pid);
		};
		console.error(`[bench-store] warm-up: waking ${WARMUP} actors on the embedded store`);
		await pool(WARMUP, WIDTH, (i) => client.counter.getOrCreate([`warmup-${run}-${i}`]).increment(1));
		const before = await settle();
		console.error(`[bench-store] waking ${SLEEPING} actors, then letting them sleep`);
		const samples = [];
		let peak = before;
		const started = Date.now();
		await pool(SLEEPING, WIDTH, async (i) => {
			await client.counter.getOrCreate([`sleepy-${run}-${i}`]).increment(1);
			const rss = rssKiB(pid);
			peak = Math.max(peak, rss);
			if ((i + 1) % 10000 === 0) samples.push({ actors: i + 1, rss_kib: rss });
		});
		const wakeSeconds = (Date.now() - started) / 1000;
		const after = await settle();
		const m = await metrics(server.url);
		out.sleeping_actors = {
			warmup_actors: WARMUP,
			actors: SLEEPING,
			wakes_per_second: round(SLEEPING / wakeSeconds, 1),
			gateway_rss_cold_kib: cold,
			gateway_rss_before_kib: before,
			gateway_rss_peak_kib: peak,
			gateway_rss_after_kib: after,
			rss_samples_while_waking: samples,
			kib_per_sleeping_actor: round((after - before) / SLEEPING, 3),
			rss_after_vs_before: round(after / before, 3),
			rss_after_vs_cold: round(after / cold, 3),
			supervisors_loaded_after: m.gauges.rivulet_actors_loaded ?? null,
		};
	} finally {
		await client.dispose?.();
		await app.stop({ graceMs: 3000 });
		await server.stop({ graceMs: 5000 });
	}
}

const out = { bench: "store", node: process.version, date: new Date().toISOString() };
for (const [name, fn] of [
	["dynamodb", onDynamo],
	["idle", idleOnDynamo],
	["sleeping", sleepingActors],
]) {
	if ((process.env.BENCH_STORE_PARTS || "dynamodb,idle,sleeping").split(",").includes(name)) {
		await fn(out).catch((e) => {
			out[`${name}_error`] = String(e?.stack ?? e);
		});
	}
}
const report = JSON.stringify(out, null, 2);
if (process.env.BENCH_OUT) fs.writeFileSync(process.env.BENCH_OUT, report);
console.log(report);
process.exit(0);
