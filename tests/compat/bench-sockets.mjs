// Idle client sockets: what each costs the gateway. Opens BENCH_SOCKETS_STEPS (default
// 1000,10000,100000) WebSockets in turn to one Rust actor (`counter`, served by
// rivulet-runner), each waiting for its connection's Init, then lets them sit. Per step it
// prints the gateway's RSS growth per socket, its CPU while the sockets sit idle, and the time
// the step took to open. The actor sleeps after its idle timeout with the sockets held
// (hibernatable), so what is measured is what the gateway holds for them.
//
// Sockets come from several loopback source addresses (127.0.0.1, .2, ...), 20,000 each, so
// the ephemeral port range is no limit. A step needs one file descriptor per socket in both
// the gateway and this process: a step past the soft limit (`ulimit -n`) is skipped and
// says so.
//
// Env: RIVULET_BIN, RUST_RUNNER_BIN (release builds; scripts/bench.sh sets them),
// BENCH_SOCKETS_STEPS, BENCH_SOCKETS_IDLE_S (CPU sample, default 10).
import { spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import { RustRunner, Server, makeWorkDir, sleep } from "./harness.mjs";

const STEPS = (process.env.BENCH_SOCKETS_STEPS || "1000,10000,100000").split(",").map(Number);
const IDLE_S = Number(process.env.BENCH_SOCKETS_IDLE_S || 10);
const PER_ADDRESS = 20_000;
const BATCH = 500;

const fdLimit = Number(spawnSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).stdout.trim()) || 0;
const workDir = makeWorkDir();
const server = new Server({ target: "rivulet", workDir, extraEnv: { RIVET_LOG_LEVEL: "error" } });
await server.init();
await server.start();
const runner = new RustRunner({ workDir, endpoint: server.url, bin: process.env.RUST_RUNNER_BIN, extraEnv: { RIVET_LOG_LEVEL: "error" } });
await runner.start();
const { hostname, port } = new URL(server.url);

const proc = (pid) => {
	const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
	const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
	const ticks = Number(stat[11]) + Number(stat[12]); // utime + stime
	return { rssKiB: Number(status.match(/VmRSS:\s+(\d+)/)[1]), cpuS: ticks / 100 };
};

const created = await (
	await fetch(`${server.url}/actors?namespace=default`, {
		method: "PUT",
		headers: { "content-type": "application/json" },
		body: JSON.stringify({ name: "counter", key: "idle-sockets", runner_name_selector: "default", crash_policy: "sleep" }),
	})
).json();
const path = `/gateway/${created.actor.actor_id}/connect`;

/** One WebSocket over a raw TCP connection from `localAddress`; resolves at the first frame. */
function openSocket(localAddress) {
	return new Promise((resolve, reject) => {
		const sock = net.connect({ host: hostname, port: Number(port), localAddress });
		let head = Buffer.alloc(0);
		// "head": reading the 101; "frame": waiting for the Init frame; "done": idle.
		let state = "head";
		sock.setNoDelay(true);
		sock.once("error", reject);
		sock.on("data", (chunk) => {
			if (state === "done") return;
			if (state === "frame") {
				state = "done";
				resolve(sock);
				return;
			}
			head = Buffer.concat([head, chunk]);
			const end = head.indexOf("\r\n\r\n");
			if (end < 0) return;
			if (!head.toString("latin1", 0, 12).startsWith("HTTP/1.1 101")) {
				reject(new Error(`upgrade refused: ${head.toString("latin1", 0, end)}`));
				sock.destroy();
				return;
			}
			if (head.length > end + 4) {
				state = "done";
				resolve(sock);
			} else {
				state = "frame";
			}
		});
		sock.write(
			`GET ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
				`Sec-WebSocket-Key: ${crypto.randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n` +
				`Sec-WebSocket-Protocol: rivet, rivet_encoding.json\r\n\r\n`,
		);
	});
}

const open = [];
const baseline = proc(server.child.pid);
const results = [];
for (const target of STEPS) {
	// Each socket takes a descriptor here and in the gateway; keep some for everything else.
	if (target + 200 > fdLimit) {
		results.push({ sockets: target, skipped: `needs ${target} file descriptors per process; ulimit -n is ${fdLimit}` });
		continue;
	}
	const started = performance.now();
	while (open.length < target) {
		const n = Math.min(BATCH, target - open.length);
		const batch = Array.from({ length: n }, (_, k) => openSocket(`127.0.0.${1 + Math.floor((open.length + k) / PER_ADDRESS)}`));
		open.push(...(await Promise.all(batch)));
	}
	const openS = (performance.now() - started) / 1000;
	await sleep(5000);
	const before = proc(server.child.pid);
	await sleep(IDLE_S * 1000);
	const after = proc(server.child.pid);
	results.push({
		sockets: target,
		open_seconds: Math.round(openS * 10) / 10,
		gateway_rss_kib: after.rssKiB,
		kib_per_socket: Math.round(((after.rssKiB - baseline.rssKiB) / target) * 100) / 100,
		idle_cpu_percent: Math.round(((after.cpuS - before.cpuS) / IDLE_S) * 1000) / 10,
	});
}
console.log(JSON.stringify({ bench: "idle_sockets", fd_limit: fdLimit, baseline_rss_kib: baseline.rssKiB, steps: results }));
for (const s of open) s.destroy();
await runner.stop();
await server.stop();
fs.rmSync(workDir, { recursive: true, force: true });
process.exit(0);
