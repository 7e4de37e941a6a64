// Action benchmark: the same stock RivetKit app and client against one or more targets
// (rivulet, engine), in one run. Prints one JSON object on stdout so runs can be compared.
//
//   BENCH_TARGETS=rivulet,engine   which servers (default: rivulet)
//   BENCH_RUNNERS=node,rust        which runners serve the actors on Rivulet (default: node):
//                                  node = the stock RivetKit app (tests/compat/app.mjs), rust =
//                                  lambda-runner's rivulet-runner with the same counter in Rust
//   RUST_RUNNER_BIN                the Rust runner binary (scripts/bench.sh passes a release build)
//   RIVULET_BIN                    the binary to measure (scripts/bench.sh passes a release build)
//   BENCH_N=300                    sequential actions per latency series
//   BENCH_CONNS=50                 connections for the throughput run
//   BENCH_SECONDS=5                length of the throughput run
//   BENCH_IDLE_SOCKETS=500         idle connections opened to measure server memory per socket
//
// Figures: cold create + first action, HTTP and WebSocket action round trip (p50/p99, ms),
// actions/s with BENCH_CONNS connections, and server RSS growth per connection (KiB) 1 s after
// they opened and again 8 s after, once idle (`kib_per_idle_socket`).
import fs from "node:fs";
import { createClient } from "rivetkit/client";
import { App, RustRunner, Server, makeWorkDir, sleep, withTimeout } from "./harness.mjs";

const TARGETS = (process.env.BENCH_TARGETS || "rivulet").split(",").filter(Boolean);
const RUNNERS = (process.env.BENCH_RUNNERS || "node").split(",").filter(Boolean);
const N = Number(process.env.BENCH_N || 300);
const CONNS = Number(process.env.BENCH_CONNS || 50);
const SECONDS = Number(process.env.BENCH_SECONDS || 5);
const IDLE = Number(process.env.BENCH_IDLE_SOCKETS || 500);

const pct = (xs, p) => {
	const s = [...xs].sort((a, b) => a - b);
	return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : null;
};
const round = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const rssKiB = (pid) => {
	try {
		const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
		return m ? Number(m[1]) : null;
	} catch {
		return null;
	}
};

async function series(n, fn) {
	const xs = [];
	for (let i = 0; i < n; i++) {
		const t = now();
		await fn(i);
		xs.push(now() - t);
	}
	return { p50_ms: round(pct(xs, 50)), p99_ms: round(pct(xs, 99)), n };
}

async function benchTarget(target, runner, out) {
	const workDir = makeWorkDir();
	const server = new Server({ target, workDir });
	await server.init();
	await server.start();
	// A long sleep timeout keeps actors awake: this measures actions, not wake-ups.
	const app =
		runner === "rust"
			? new RustRunner({ workDir, endpoint: server.url, bin: process.env.RUST_RUNNER_BIN, extraEnv: { RIVET_LOG_LEVEL: "warn" } })
			: new App({ workDir, endpoint: server.url, sleepTimeoutMs: 600_000 });
	await app.start();
	const client = createClient({ endpoint: server.url, disableMetadataLookup: true });
	try {
		const run = Date.now().toString(36);
		out.cold_create_first_action = await series(10, (i) => client.counter.getOrCreate([`cold-${run}-${i}`]).increment(1));
		const h = client.counter.getOrCreate([`http-${run}`]);
		await h.increment(1);
		out.http_action = await series(N, () => h.increment(1));
		const conn = client.counter.getOrCreate([`ws-${run}`]).connect();
		await conn.increment(1);
		out.ws_action = await series(N, () => conn.increment(1));
		await conn.dispose();

		const conns = [];
		for (let i = 0; i < CONNS; i++) conns.push(client.counter.getOrCreate([`tput-${run}-${i % 10}`]).connect());
		await Promise.all(conns.map((c) => c.increment(0)));
		let count = 0;
		const deadline = now() + SECONDS * 1000;
		await Promise.all(
			conns.map(async (c) => {
				while (now() < deadline) {
					await c.increment(1);
					count++;
				}
			}),
		);
		out.throughput = { actions_per_s: Math.round(count / SECONDS), connections: CONNS, seconds: SECONDS };
		await Promise.all(conns.map((c) => c.dispose()));

		const pid = server.child.pid;
		await sleep(500);
		const before = rssKiB(pid);
		const idle = [];
		for (let i = 0; i < IDLE; i++) idle.push(client.counter.getOrCreate([`idle-${run}-${i % 20}`]).connect());
		await Promise.all(idle.map((c) => c.get()));
		await sleep(1000);
		const after = rssKiB(pid);
		// Past gateway.client_park_after_ms (5 s) and the allocator's return of freed pages
		// (1 s): what the sockets cost once idle, their actors still awake.
		await sleep(7000);
		const settled = rssKiB(pid);
		out.idle_sockets = {
			sockets: IDLE,
			server_rss_before_kib: before,
			server_rss_after_kib: after,
			kib_per_socket: before && after ? round((after - before) / IDLE) : null,
			server_rss_idle_kib: settled,
			kib_per_idle_socket: before && settled ? round((settled - before) / IDLE) : null,
		};
		await Promise.all(idle.map((c) => c.dispose()));
	} finally {
		await client.dispose?.();
		await app.stop({ graceMs: 3000 });
		await server.stop({ graceMs: 5000 });
	}
	return out;
}

const runs = [];
for (const target of TARGETS) {
	// Only Rivulet hosts the Rust runner; the engine is measured with the stock app.
	for (const runner of target === "rivulet" ? RUNNERS : ["node"]) runs.push([target, runner]);
}
const results = [];
for (const [target, runner] of runs) {
	console.error(`[bench] ${target} with the ${runner} runner`);
	// A server that cannot keep up is reported, not waited for forever.
	const out = { target, runner };
	results.push(
		await withTimeout(benchTarget(target, runner, out), Number(process.env.BENCH_TARGET_TIMEOUT_MS || 300_000), `bench ${target}/${runner}`).catch(
			// Keep what was measured before the server fell behind.
			(e) => ({ ...out, error: String(e?.message ?? e) }),
		),
	);
}
const report = JSON.stringify({ bench: "actions", node: process.version, date: new Date().toISOString(), results }, null, 2);
if (process.env.BENCH_OUT) fs.writeFileSync(process.env.BENCH_OUT, report);
console.log(report);
process.exit(0);
