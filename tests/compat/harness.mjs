// Process management for the compatibility tests: free loopback ports, the target server
// (Rivulet or the real rivet-engine), the stock RivetKit app, optional wiretap proxies,
// and bounded polling. No fixed sleeps: everything waits on a condition with a deadline.
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "..", "..");
const require = createRequire(import.meta.url);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A free TCP port on 127.0.0.1 (bind :0, read it, close). */
export async function freePort() {
	const srv = net.createServer();
	srv.listen(0, "127.0.0.1");
	await once(srv, "listening");
	const { port } = srv.address();
	await new Promise((r) => srv.close(r));
	return port;
}

/** Is something accepting TCP connections on 127.0.0.1:port? */
export function portInUse(port) {
	return new Promise((resolve) => {
		const s = net.connect({ host: "127.0.0.1", port });
		s.once("connect", () => {
			s.destroy();
			resolve(true);
		});
		s.once("error", () => resolve(false));
	});
}

/**
 * Poll `fn` until it returns a truthy value (returned) or the deadline passes (throws with the
 * last error / value). `fn` may throw; that counts as "not yet".
 */
export async function waitFor(fn, { timeout = 30_000, interval = 100, what = "condition" } = {}) {
	const deadline = Date.now() + timeout;
	let last;
	for (;;) {
		try {
			const v = await fn();
			if (v) return v;
			last = v;
		} catch (e) {
			if (e && e.fatal) throw e;
			last = e;
		}
		if (Date.now() >= deadline) {
			const detail = last instanceof Error ? last.message : JSON.stringify(last);
			throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${detail})`);
		}
		await sleep(interval);
	}
}

/** Reject if `p` does not settle within `ms`. */
export function withTimeout(p, ms, what = "operation") {
	let t;
	return Promise.race([
		p,
		new Promise((_, rej) => {
			t = setTimeout(() => rej(new Error(`${what} did not finish within ${ms} ms`)), ms);
		}),
	]).finally(() => clearTimeout(t));
}

export async function getJson(url, init) {
	const res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) });
	const text = await res.text();
	let body;
	try {
		body = text ? JSON.parse(text) : null;
	} catch {
		body = text;
	}
	return { status: res.status, body, headers: res.headers };
}

// Every child we spawn, so that an abrupt exit of this process (signal, uncaught error) does not
// leave orphaned engines/apps/taps behind. Only our own process groups are signalled.
const liveChildren = new Set();
function killAllChildren() {
	for (const c of liveChildren) {
		try {
			process.kill(-c.pid, "SIGKILL");
		} catch {}
	}
}
process.on("exit", killAllChildren);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
	process.once(sig, () => {
		killAllChildren();
		process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGTERM" ? 15 : 1));
	});
}

/** A child process in its own process group, output appended to a log file. */
export class Child {
	constructor(name, cmd, args, { env, cwd, logFile }) {
		this.name = name;
		this.logFile = logFile;
		this.out = "";
		const log = fs.openSync(logFile, "a");
		fs.writeSync(log, `\n===== ${new Date().toISOString()} spawn ${cmd} ${args.join(" ")}\n`);
		this.proc = spawn(cmd, args, {
			env,
			cwd,
			detached: true, // own process group, so we can kill it and whatever it spawned
			stdio: ["ignore", "pipe", "pipe"],
		});
		this.pid = this.proc.pid;
		if (this.pid) liveChildren.add(this);
		// Output can still arrive after the exit (a grandchild holding the pipes, or data
		// buffered in them), when the log is already closed: it then only goes to `out`.
		let logOpen = true;
		const onData = (d) => {
			if (logOpen) {
				try {
					fs.writeSync(log, d);
				} catch {}
			}
			this.out += d.toString();
			if (this.out.length > 1_000_000) this.out = this.out.slice(-500_000);
		};
		this.proc.stdout.on("data", onData);
		this.proc.stderr.on("data", onData);
		this.exited = new Promise((resolve) => {
			this.proc.once("exit", (code, signal) => {
				this.exitInfo = { code, signal };
				liveChildren.delete(this);
				logOpen = false;
				try {
					fs.writeSync(log, `\n===== exit code=${code} signal=${signal}\n`);
					fs.closeSync(log);
				} catch {}
				resolve(this.exitInfo);
			});
		});
		this.proc.once("error", (e) => {
			this.spawnError = e;
		});
	}

	get alive() {
		return this.exitInfo === undefined && !this.spawnError;
	}

	/** Send `signal` to the process group; escalate to SIGKILL after `graceMs`. */
	async stop({ signal = "SIGTERM", graceMs = 10_000 } = {}) {
		if (!this.alive) return this.exitInfo;
		try {
			process.kill(-this.pid, signal);
		} catch {}
		const done = await Promise.race([this.exited, sleep(graceMs).then(() => null)]);
		if (done) return done;
		try {
			process.kill(-this.pid, "SIGKILL");
		} catch {}
		return await this.exited;
	}

	tail(n = 40) {
		return this.out.split("\n").slice(-n).join("\n");
	}
}

export function nodeBin() {
	return process.env.NODE || process.execPath;
}

export function engineBinary() {
	// @rivetkit/engine-cli honours RIVET_ENGINE_BINARY, else its platform package.
	return require("@rivetkit/engine-cli").getEnginePath();
}

export function rivuletBinary() {
	const bin = process.env.RIVULET_BIN || "target/debug/rivulet";
	return path.isAbsolute(bin) ? bin : path.resolve(REPO, bin);
}

/**
 * The server under test. `target` is "rivulet" or "engine". Keeps its port(s) and data dir across
 * restart().
 */
export class Server {
	/**
	 * `name` tells logs apart when several servers run; `shareStoreWith` (a started Server on
	 * DynamoDB) makes this one a second gateway node on the same table; `extraArgs` go to
	 * `rivulet serve` and `extraEnv` to its environment.
	 */
	constructor({ target, workDir, name, shareStoreWith, extraArgs = [], extraEnv = {} }) {
		this.target = target;
		this.workDir = workDir;
		this.name = name ?? target;
		this.shareStoreWith = shareStoreWith;
		this.extraArgs = extraArgs;
		this.extraEnv = extraEnv;
		this.dataDir = path.join(workDir, name ? `data-${name}` : "data");
		fs.mkdirSync(this.dataDir, { recursive: true });
		this.child = undefined;
		this.starts = 0;
	}

	async init() {
		this.port = await freePort();
		if (this.target === "engine") {
			this.peerPort = await freePort();
			this.metricsPort = await freePort();
			this.configPath = path.join(this.workDir, "engine-config.json");
			fs.writeFileSync(
				this.configPath,
				JSON.stringify({
					topology: {
						datacenter_label: 1,
						datacenters: {
							default: {
								datacenter_label: 1,
								is_leader: true,
								public_url: `http://127.0.0.1:${this.port}`,
								peer_url: `http://127.0.0.1:${this.peerPort}`,
							},
						},
					},
				}),
			);
			this.bin = engineBinary();
		} else if (this.target === "rivulet") {
			this.bin = rivuletBinary();
			if (this.shareStoreWith) {
				this.table = this.shareStoreWith.table;
				this.awsEnv = this.shareStoreWith.awsEnv;
				if (!this.awsEnv) throw new Error("shareStoreWith needs a server on DynamoDB");
				return this;
			}
			// COMPAT_STORE=dynamodb: Rivulet on DynamoDB, here a local moto server that lives as
			// long as this test (it outlives Rivulet restarts, as a real table would).
			if ((process.env.COMPAT_STORE || "embedded") === "dynamodb") {
				this.table = `compat-${Date.now().toString(36)}`;
				this.moto = new Child("moto", "bash", [path.join(REPO, "infra", "dynamodb-local.sh")], {
					env: process.env,
					cwd: this.workDir,
					logFile: path.join(this.workDir, "moto.log"),
				});
				await waitFor(() => {
					if (!this.moto.alive) throw Object.assign(new Error(`moto exited: ${this.moto.tail()}`), { fatal: true });
					return /endpoint=(\S+)/.exec(this.moto.out)?.[1];
				}, { timeout: 300_000, interval: 200, what: "moto endpoint" });
				this.awsEnv = {
					AWS_ENDPOINT_URL_DYNAMODB: /endpoint=(\S+)/.exec(this.moto.out)[1],
					AWS_REGION: "us-east-1",
					AWS_ACCESS_KEY_ID: "test",
					AWS_SECRET_ACCESS_KEY: "test",
				};
				const schema = spawnSync(this.bin, ["schema", "--apply", "--table", this.table], {
					env: { ...process.env, ...this.awsEnv },
					encoding: "utf8",
				});
				if (schema.status !== 0) throw new Error(`rivulet schema --apply failed: ${schema.stderr}`);
			}
		} else {
			throw new Error(`unknown COMPAT_TARGET ${this.target}`);
		}
		return this;
	}

	get url() {
		return `http://127.0.0.1:${this.port}`;
	}

	binaryExists() {
		return fs.existsSync(this.bin);
	}

	async start({ timeout = 90_000 } = {}) {
		if (await portInUse(this.port)) {
			throw new Error(`port ${this.port} is already in use before starting ${this.target}`);
		}
		const logFile = path.join(this.workDir, `${this.name}.log`);
		let cmd;
		let args;
		const env = { ...process.env, ...this.extraEnv };
		if (this.target === "engine") {
			cmd = this.bin;
			args = ["start", "--config", this.configPath];
			Object.assign(env, {
				RIVET__GUARD__HOST: "127.0.0.1",
				RIVET__GUARD__PORT: String(this.port),
				RIVET__API_PEER__HOST: "127.0.0.1",
				RIVET__API_PEER__PORT: String(this.peerPort),
				RIVET__METRICS__HOST: "127.0.0.1",
				RIVET__METRICS__PORT: String(this.metricsPort),
				RIVET__FILE_SYSTEM__PATH: path.join(this.dataDir, "db"),
			});
		} else {
			cmd = this.bin;
			args = ["serve", "--port", String(this.port), "--data-dir", this.dataDir];
			if (this.awsEnv) {
				args.push("--store", "dynamodb", "--table", this.table);
				Object.assign(env, this.awsEnv);
			}
			args.push(...this.extraArgs);
		}
		this.child = new Child(this.target, cmd, args, { env, cwd: this.workDir, logFile });
		this.starts++;
		const t0 = Date.now();
		await waitFor(
			async () => {
				if (!this.child.alive) {
					throw Object.assign(new Error(`${this.target} exited early: ${JSON.stringify(this.child.exitInfo ?? this.child.spawnError?.message)}\n${this.child.tail()}`), { fatal: true });
				}
				const { status, body } = await getJson(`${this.url}/health`);
				return status === 200 && body && body.runtime === "engine";
			},
			{ timeout, interval: 100, what: `${this.target} GET /health` },
		).catch((e) => {
			throw new Error(`${e.message}\n--- ${this.target} log tail ---\n${this.child.tail()}`);
		});
		return Date.now() - t0;
	}

	async stop(opts) {
		if (this.child) return await this.child.stop(opts);
	}
}

/** The stock RivetKit app (tests/compat/app.mjs). */
export class App {
	constructor({ workDir, endpoint, sleepTimeoutMs = 1500, extraEnv = {}, name = "app" }) {
		this.name = name;
		this.workDir = workDir;
		this.endpoint = endpoint;
		this.sleepTimeoutMs = sleepTimeoutMs;
		this.extraEnv = extraEnv;
		this.starts = 0;
	}

	async start({ timeout = 45_000 } = {}) {
		const env = {
			...process.env,
			RIVET_ENDPOINT: this.endpoint,
			RIVET_RUN_SERVICES: "0",
			// Read by rivetkit's native engine-process helper; "never" forbids spawning a local engine.
			RIVETKIT_ENGINE_SPAWN: "never",
			COUNTER_SLEEP_TIMEOUT_MS: String(this.sleepTimeoutMs),
			RIVET_LOG_LEVEL: process.env.RIVET_LOG_LEVEL ?? "warn",
			...this.extraEnv,
		};
		this.child = new Child(this.name, nodeBin(), [path.join(HERE, "app.mjs")], {
			env,
			cwd: HERE,
			logFile: path.join(this.workDir, `${this.name}.log`),
		});
		this.starts++;
		const t0 = Date.now();
		const before = this.child.out.length;
		await waitFor(
			() => {
				if (!this.child.alive) throw Object.assign(new Error(`app exited: ${JSON.stringify(this.child.exitInfo)}`), { fatal: true });
				const out = this.child.out.slice(before);
				if (out.includes("[compat-app] not ready")) throw Object.assign(new Error("app reported not ready"), { fatal: true });
				return out.includes("[compat-app] ready");
			},
			{ timeout, interval: 100, what: "app envoy registration" },
		).catch((e) => {
			throw new Error(`${e.message}\n--- app log tail ---\n${this.child.tail()}`);
		});
		return Date.now() - t0;
	}

	async stop(opts) {
		if (this.child) return await this.child.stop(opts);
	}
}

/** Optional logging proxy (wiretap.mjs) in front of `target`. */
export class Tap {
	constructor({ workDir, name, target, logFile }) {
		this.workDir = workDir;
		this.name = name;
		this.target = target;
		this.logFile = logFile;
	}

	async start() {
		this.port = await freePort();
		this.child = new Child(
			`tap-${this.name}`,
			nodeBin(),
			[path.join(HERE, "wiretap.mjs"), "--listen", String(this.port), "--target", this.target, "--name", this.name, "--out", this.logFile],
			{ env: process.env, cwd: HERE, logFile: path.join(this.workDir, `tap-${this.name}.stderr.log`) },
		);
		await waitFor(() => this.child.out.includes("[wiretap] listening"), { timeout: 15_000, what: `wiretap ${this.name}` });
		return this;
	}

	get url() {
		return `http://127.0.0.1:${this.port}`;
	}

	async stop() {
		if (this.child) return await this.child.stop({ graceMs: 3000 });
	}
}

export function makeWorkDir() {
	return fs.mkdtempSync(path.join(os.tmpdir(), "rivulet-compat-"));
}

/** The Rust runner (`rivulet-runner` or the `test_runner` example) in long-lived mode. */
export class RustRunner {
	/** `envoyKey` fixes the runner's key (as `--envoy-key` does); default: a new one per start. */
	constructor({ workDir, endpoint, bin, name = "rust-runner", extraEnv = {}, envoyKey }) {
		this.workDir = workDir;
		this.endpoint = endpoint;
		this.bin = bin;
		this.name = name;
		this.extraEnv = extraEnv;
		this.fixedKey = envoyKey;
	}

	async start({ timeout = 30_000 } = {}) {
		this.envoyKey = this.fixedKey ?? `${this.name}-${Date.now().toString(36)}`;
		const env = {
			...process.env,
			RIVET_ENDPOINT: this.endpoint,
			RIVET_ENVOY_KEY: this.envoyKey,
			RIVET_LOG_LEVEL: process.env.RIVET_LOG_LEVEL ?? "info",
			...this.extraEnv,
		};
		this.child = new Child(this.name, this.bin, ["serve"], {
			env,
			cwd: this.workDir,
			logFile: path.join(this.workDir, `${this.name}.log`),
		});
		// Ready once the gateway lists its envoy (whatever the log level).
		await waitFor(
			async () => {
				if (!this.child.alive) throw Object.assign(new Error(`${this.name} exited: ${this.child.tail()}`), { fatal: true });
				const { status, body } = await getJson(`${this.endpoint}/envoys?namespace=default&envoy_key=${this.envoyKey}`);
				return status === 200 && body?.envoys?.length > 0;
			},
			{ timeout, interval: 100, what: `${this.name} connected` },
		);
	}

	async stop(opts) {
		if (this.child) return await this.child.stop(opts);
	}
}

/**
 * A test that, when it fails, calls `onFail` and prints the tails of the logs of `children()`
 * (a list of [name, Child, lines]), so a failure shows what the processes were doing.
 */
export function withLogs(it, children, onFail = () => {}) {
	return (name, fn) =>
		it(name, async (t) => {
			try {
				await fn(t);
			} catch (e) {
				onFail();
				for (const [label, child, lines] of children()) {
					if (child) t.diagnostic(`${label} log tail:\n${child.tail(lines)}`);
				}
				throw e;
			}
		});
}

/**
 * The Rust runner's Lambda entry (`rivulet-runner`) under cargo-lambda's Lambda runtime
 * emulator (`cargo lambda watch`; `bin` defaults to CARGO_LAMBDA). `start()` returns once the
 * emulator has built the function and answers invocations; `awsEnv()` is what a gateway
 * needs to invoke it through aws-sdk-lambda. Each concurrent invocation gets its own
 * environment (`concurrency`), as on Lambda.
 */
export class LambdaEmulator {
	constructor({ workDir, bin = process.env.CARGO_LAMBDA, release = false, concurrency = 24 }) {
		this.workDir = workDir;
		this.bin = bin;
		this.release = release;
		this.concurrency = concurrency;
	}

	async start() {
		if (!this.bin) throw new Error("CARGO_LAMBDA is not set (infra/cargo-lambda.sh installs the emulator)");
		this.port = await freePort();
		const args = [
			"lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", String(this.port),
			"--bin", "rivulet-runner", "--package", "rivulet-lambda-runner", "--ignore-changes",
			"--concurrency", String(this.concurrency), "--timeout", "120",
		];
		if (this.release) args.push("--release");
		this.child = new Child("cargo-lambda", this.bin, args, {
			env: { ...process.env, RIVET_LOG_LEVEL: "warn" },
			cwd: REPO,
			logFile: path.join(this.workDir, "cargo-lambda.log"),
		});
		await waitFor(() => portInUse(this.port), { timeout: 120_000, what: "the Lambda emulator listening" });
		// The emulator builds the function on its first invocation, answering 408 meanwhile:
		// a bad event pays for the build before anything waits on the function.
		const url = `http://127.0.0.1:${this.port}/2015-03-31/functions/rivulet-runner/invocations`;
		const deadline = Date.now() + 1_200_000;
		for (;;) {
			const res = await fetch(url, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ endpoint: "http://127.0.0.1:1", namespace: "default", poolName: "x", payload: "" }),
			});
			const text = await res.text();
			if (res.status !== 408) {
				if (!text.includes("InvalidStart")) throw new Error(`the emulator's function answered ${res.status}: ${text}`);
				return;
			}
			if (Date.now() > deadline) throw new Error("the emulator did not build the function in 20 minutes");
		}
	}

	/** The environment a gateway needs to invoke the function through aws-sdk-lambda. */
	awsEnv() {
		return {
			AWS_ENDPOINT_URL_LAMBDA: `http://127.0.0.1:${this.port}`,
			AWS_REGION: "us-east-1",
			AWS_ACCESS_KEY_ID: "test",
			AWS_SECRET_ACCESS_KEY: "test",
			AWS_EC2_METADATA_DISABLED: "true",
		};
	}

	async stop() {
		await this.child?.stop({ graceMs: 3000 });
	}
}
