// observe.mjs: run a scripted RivetKit scenario against the real engine (or Rivulet) with two
// wiretap proxies in between (app <-> engine and client <-> engine), marking each phase in the logs.
// Output: a work dir with wire-app.jsonl / wire-client.jsonl (+ engine/app logs); its path is printed.
// Then `node trace.mjs <dir>/wire-app.jsonl` prints a readable trace.
//
//   $NODE tests/compat/observe.mjs            (COMPAT_TARGET=engine by default here)
import path from "node:path";
import fs from "node:fs";
import { createClient } from "rivetkit/client";
import { WebSocket } from "ws";
import { App, Server, Tap, getJson, makeWorkDir, waitFor, withTimeout } from "./harness.mjs";

const TARGET = process.env.COMPAT_TARGET || "engine";
const NS = "default";
const workDir = makeWorkDir();
console.log(`[observe] work dir ${workDir}`);
const server = await new Server({ target: TARGET, workDir }).init();
const appLog = path.join(workDir, "wire-app.jsonl");
const clientLog = path.join(workDir, "wire-client.jsonl");

let app;
let appTap;
let clientTap;
let client;
const results = {};

async function mark(label) {
	for (const tap of [appTap, clientTap]) if (tap) await fetch(`${tap.url}/__wiretap/mark?label=${encodeURIComponent(label)}`);
	console.log(`[observe] == ${label}`);
}

/** Raw API call through the client tap (so it is logged). */
async function tapApi(method, p, body, headers = {}) {
	const r = await getJson(`${clientTap.url}${p}`, {
		method,
		headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...headers },
		body: body !== undefined ? (typeof body === "string" ? body : JSON.stringify(body)) : undefined,
	});
	let k = `${method} ${p}`;
	for (let i = 2; k in results; i++) k = `${method} ${p} #${i}`;
	results[k] = { status: r.status, body: r.body };
	return r;
}

const directActor = async (id) => (await getJson(`${server.url}/actors?actor_ids=${id}&namespace=${NS}`)).body.actors[0];

function countInLog(file, pred) {
	if (!fs.existsSync(file)) return 0;
	return fs
		.readFileSync(file, "utf8")
		.split("\n")
		.filter(Boolean)
		.map((l) => JSON.parse(l))
		.filter(pred).length;
}

try {
	await server.start();
	appTap = await new Tap({ workDir, name: "app", target: server.url, logFile: appLog }).start();
	clientTap = await new Tap({ workDir, name: "client", target: server.url, logFile: clientLog }).start();

	await mark("probes-before-app");
	for (const p of [
		"/health",
		"/metadata",
		`/metadata?namespace=${NS}`,
		`/namespaces`,
		`/datacenters`,
		`/envoys?namespace=${NS}`,
		`/runner-configs?namespace=${NS}`,
		`/actors/names?namespace=${NS}`,
		`/actors?namespace=${NS}`,
	])
		await tapApi("GET", p);

	await mark("app-start");
	app = new App({ workDir, endpoint: appTap.url, sleepTimeoutMs: 1500 });
	await app.start();
	await mark("app-ready");
	// Observe a few pings (interval ~3 s).
	await waitFor(() => countInLog(appLog, (o) => o.msg?.tag === "ToEnvoyPing") >= 3, { timeout: 20_000, what: "3 pings" });

	await mark("probes-after-app");
	for (const p of [`/envoys?namespace=${NS}`, `/envoys?namespace=${NS}&name=default`, `/runner-configs?namespace=${NS}`, `/actors/names?namespace=${NS}`])
		await tapApi("GET", p);

	client = createClient({ endpoint: clientTap.url, namespace: NS });
	const h = client.counter.getOrCreate(["obs"]);

	await mark("first-http-action");
	results.first = await withTimeout(h.increment(1), 30_000, "first increment");
	await mark("second-http-action");
	results.second = await withTimeout(h.increment(2), 30_000, "second increment");
	await mark("resolve");
	const id = await h.resolve();
	results.actorId = id;

	await mark("api-actor-json");
	await tapApi("GET", `/actors?actor_ids=${id}&namespace=${NS}`);
	await tapApi("GET", `/actors?actor_id=${id}&namespace=${NS}`);
	await tapApi("GET", `/actors?name=counter&key=obs&namespace=${NS}`);
	await tapApi("GET", `/actors?name=counter&namespace=${NS}`);
	await tapApi("PUT", `/actors?namespace=${NS}`, { name: "counter", key: "obs", runner_name_selector: "default", crash_policy: "sleep" });
	await tapApi("POST", `/actors?namespace=${NS}`, { name: "echo", key: "created-by-post", runner_name_selector: "default", crash_policy: "sleep" });
	await tapApi("POST", `/actors?namespace=${NS}`, { name: "echo", key: "created-by-post", runner_name_selector: "default", crash_policy: "sleep" });

	await mark("ws-connect");
	const conn = h.connect();
	const events = [];
	conn.on("newCount", (v) => events.push(v));
	results.wsIncrement = await withTimeout(conn.increment(3), 30_000, "ws increment");
	await waitFor(() => events.includes(6), { timeout: 10_000, what: "event 6" });
	await mark("ws-broadcast-from-http");
	await withTimeout(client.counter.getOrCreate(["obs"]).increment(1), 30_000, "http increment");
	await waitFor(() => events.includes(7), { timeout: 10_000, what: "event 7" });
	await mark("ws-dispose");
	await conn.dispose();

	await mark("sleep-wait");
	await waitFor(async () => (await directActor(id)).sleep_ts, { timeout: 30_000, interval: 200, what: "sleep" });
	await mark("api-actor-json-asleep");
	await tapApi("GET", `/actors?actor_ids=${id}&namespace=${NS}`);
	await mark("wake-http-action");
	results.afterWake = await withTimeout(h.get(), 30_000, "get after sleep");

	await mark("hibernate-ws-open");
	const h2 = client.counter.getOrCreate(["obs-hib"]);
	const conn2 = h2.connect();
	const ev2 = [];
	conn2.on("newCount", (v) => ev2.push(v));
	results.hib1 = await withTimeout(conn2.increment(1), 30_000, "hib increment");
	const id2 = await h2.resolve();
	await mark("hibernate-wait-sleep");
	const slept = await waitFor(async () => (await directActor(id2)).sleep_ts, { timeout: 15_000, interval: 200, what: "sleep with open ws" }).catch(
		(e) => {
			console.log(`[observe] actor with an open WS did not sleep: ${e.message}`);
			return null;
		},
	);
	results.hibSlept = Boolean(slept);
	await mark("hibernate-ws-action");
	results.hib2 = await withTimeout(conn2.increment(1), 30_000, "hib increment after sleep");
	await mark("hibernate-ws-dispose");
	await conn2.dispose();

	await mark("errors");
	// A well-formed id that does not exist: change one base36 digit in the middle of a real id.
	const ghost = `${id.slice(0, 10)}${id[10] === "a" ? "b" : "a"}${id.slice(11)}`;
	results.ghostId = ghost;
	await tapApi("GET", `/actors?actor_ids=${ghost}&namespace=${NS}`);
	await tapApi("GET", `/actors?actor_id=${ghost}&namespace=${NS}`);
	await tapApi("GET", `/actors?actor_ids=${ghost},${id}&namespace=${NS}`);
	await tapApi("DELETE", `/actors/${ghost}?namespace=${NS}`);
	await tapApi("POST", `/gateway/${ghost}/action/get`, { args: [] }, { "x-rivet-encoding": "json" });
	await tapApi("GET", `/actors/${id}?namespace=${NS}`);
	await tapApi("GET", `/actors?actor_ids=0000000000000000000000000000000&namespace=${NS}`);
	await tapApi("GET", `/actors?actor_ids=${id.slice(0, -4)}zzzz&namespace=${NS}`);
	await tapApi("GET", `/actors?actor_ids=not-an-id&namespace=${NS}`);
	await tapApi("GET", `/actors?actor_ids=${id}&namespace=nope`);
	await tapApi("GET", `/actors?name=counter&key=x&namespace=nope`);
	await tapApi("GET", `/actors?key=x&namespace=${NS}`);
	await tapApi("GET", `/actors?actor_ids=${id}`);
	await tapApi("GET", `/actors?actor_ids=${id}&namespace=${NS}&bogus=1`);
	await tapApi("GET", `/actors/names?namespace=nope`);
	await tapApi("PUT", `/actors?namespace=${NS}`, { name: "counter", runner_name_selector: "default", crash_policy: "sleep" });
	await tapApi("PUT", `/actors?namespace=${NS}`, "{not json");
	await tapApi("PUT", `/actors?namespace=nope`, { name: "counter", key: "k", runner_name_selector: "default", crash_policy: "sleep" });
	await tapApi("POST", `/actors?namespace=${NS}`, { name: "counter", key: "x".repeat(2000), runner_name_selector: "default", crash_policy: "sleep" });
	await tapApi("DELETE", `/actors/not-an-id?namespace=${NS}`);
	await tapApi("DELETE", `/actors/${id.slice(0, -4)}zzzz?namespace=${NS}`);
	await tapApi("POST", `/gateway/${id.slice(0, -4)}zzzz/action/get`, { args: [] }, { "x-rivet-encoding": "json" });
	await tapApi("POST", `/gateway/not-an-id/action/get`, { args: [] }, { "x-rivet-encoding": "json" });
	await tapApi("POST", `/gateway/counter/action/get?rvt-namespace=${NS}&rvt-method=get&rvt-key=does-not-exist`, { args: [] }, { "x-rivet-encoding": "json" });
	await tapApi("POST", `/gateway/${id}/action/nope`, { args: [] }, { "x-rivet-encoding": "json" });
	await tapApi("GET", `/gateway/${id}/health`);
	await tapApi("GET", `/gateway/${id}/metadata`);
	await tapApi("GET", `/no-such-route`);
	await tapApi("GET", `/runner-configs?namespace=nope`);
	// An actor whose name is not registered in the app.
	await tapApi("PUT", `/actors?namespace=${NS}`, { name: "unregistered", key: "u", runner_name_selector: "default", crash_policy: "sleep" });
	await waitFor(() => countInLog(appLog, (o) => JSON.stringify(o.msg ?? "").includes("not_registered")), { timeout: 15_000, what: "not_registered stop" }).catch(() => null);
	await mark("errors-unregistered-state");
	await tapApi("GET", `/actors?name=unregistered&key=u&namespace=${NS}`);

	await mark("destroy");
	await tapApi("DELETE", `/actors/${id}?namespace=${NS}`);
	await waitFor(async () => (await directActor(id))?.destroy_ts, { timeout: 30_000, what: "destroyed" });
	await mark("after-destroy");
	await tapApi("GET", `/actors?actor_ids=${id}&namespace=${NS}`);
	await tapApi("GET", `/actors?name=counter&key=obs&namespace=${NS}`);
	await tapApi("GET", `/actors?name=counter&key=obs&namespace=${NS}&include_destroyed=true`);
	await tapApi("DELETE", `/actors/${id}?namespace=${NS}`);
	await tapApi("POST", `/gateway/${id}/action/get`, { args: [] }, { "x-rivet-encoding": "json" });

	await mark("envoy-connect-errors");
	const probeWs = (query, protocols = ["rivet", "rivet_token.dev"]) =>
		new Promise((resolve) => {
			const ws = new WebSocket(`ws://127.0.0.1:${clientTap.port}/envoys/connect?${query}`, protocols);
			const out = { query, protocols, frames: [] };
			const timer = setTimeout(() => {
				out.timeout = true;
				ws.terminate();
				resolve(out);
			}, 4000);
			ws.on("unexpected-response", (_req, res) => {
				out.httpStatus = res.statusCode;
				let body = "";
				res.on("data", (d) => (body += d));
				res.on("end", () => {
					out.body = body;
					clearTimeout(timer);
					resolve(out);
				});
			});
			ws.on("open", () => (out.opened = true));
			ws.on("message", (d) => out.frames.push(Buffer.from(d).toString("hex")));
			ws.on("close", (code, reason) => {
				out.close = { code, reason: reason.toString() };
				clearTimeout(timer);
				resolve(out);
			});
			ws.on("error", (e) => (out.error = e.message));
		});
	const base = `protocol_version=8&namespace=${NS}&envoy_key=probe-envoy-1&version=1&pool_name=default`;
	results.envoyProbes = [];
	for (const [q, p] of [
		[base.replace("namespace=default", "namespace=nope"), undefined],
		[base.replace("protocol_version=8", "protocol_version=9"), undefined],
		[base.replace("protocol_version=8", "protocol_version=1"), undefined],
		[base.replace("pool_name=default", "pool_name=nopool"), undefined],
		[base.replace("&envoy_key=probe-envoy-1", ""), undefined],
		[base.replace("protocol_version=8&", ""), undefined],
		[base, ["rivet"]],
	])
		results.envoyProbes.push(await probeWs(q, p));

	await mark("engine-restart");
	const restartCounter = client.counter.getOrCreate(["obs-restart"]);
	results.beforeRestart = await withTimeout(restartCounter.increment(5), 30_000, "before restart");
	const conn3 = restartCounter.connect();
	const ev3 = [];
	conn3.on("newCount", (v) => ev3.push(v));
	conn3.onStatusChange?.((st) => console.log(`[observe] conn3 status ${st}`));
	results.conn3Before = await withTimeout(conn3.increment(1), 30_000, "conn3 before restart");
	await server.stop({ signal: "SIGTERM" });
	await mark("engine-down");
	await server.start();
	await mark("engine-up");
	await waitFor(() => countInLog(appLog, (o) => o.msg?.tag === "ToEnvoyInit") >= 2, { timeout: 60_000, what: "envoy reconnect" });
	await mark("after-restart-action");
	results.afterRestart = await waitFor(() => withTimeout(restartCounter.get(), 10_000, "get after restart"), { timeout: 60_000, interval: 500, what: "get after restart" });
	await mark("after-restart-ws-action");
	results.conn3After = await withTimeout(conn3.increment(1), 30_000, "conn3 after restart").catch((e) => `error: ${e.message}`);
	await mark("after-restart-ws-dispose");
	await withTimeout(conn3.dispose(), 5000, "conn3.dispose").catch((e) => console.log(`[observe] ${e.message}`));
	await mark("envoys-before-app-stop");
	await tapApi("GET", `/envoys?namespace=${NS}`);

	await mark("app-stop");
	await withTimeout(client.dispose(), 5000, "client.dispose").catch((e) => console.log(`[observe] ${e.message}`));
	client = undefined;
	await app.stop({ signal: "SIGTERM", graceMs: 20_000 });
	app = undefined;
	await mark("envoys-after-app-stop");
	await tapApi("GET", `/envoys?namespace=${NS}`);
	await tapApi("GET", `/actors?name=counter&key=obs-restart&namespace=${NS}`);
	await mark("end");
} finally {
	await withTimeout(Promise.resolve(client?.dispose()), 5000, "client.dispose").catch(() => {});
	await app?.stop();
	await server.stop();
	await appTap?.stop();
	await clientTap?.stop();
	fs.writeFileSync(path.join(workDir, "results.json"), JSON.stringify(results, null, 1));
	console.log(`[observe] done; logs in ${workDir}`);
}
