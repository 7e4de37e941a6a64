// wiretap.mjs: a logging HTTP + WebSocket proxy for observing Rivet engine traffic.
//
//   node wiretap.mjs --listen PORT --target http://127.0.0.1:ENGINE --name app --out wire.jsonl
//
// Every HTTP exchange and every WebSocket frame is written to --out as one JSON object per line.
// Envoy WebSocket frames (path /envoys/connect) are decoded with @rivetkit/engine-envoy-protocol@2.3.19
// (decodeToRivet for envoy->engine, decodeToEnvoy for engine->envoy) and rendered per
// tests/golden/render.mjs (bigints as strings, bytes as hex, long byte strings abbreviated).
//
// Special path (not forwarded): GET /__wiretap/mark?label=... writes a {"kind":"mark"} line.
//
// Line shapes (all have t = epoch ms, tap = name):
//   {"kind":"http","id","method","url","reqHeaders","reqBody","status","resHeaders","resBody","ms"}
//   {"kind":"ws-open","conn","url","protocols","reqHeaders","accepted","resHeaders"}
//   {"kind":"ws-reject","conn","url","status","resHeaders","body"} | {"kind":"ws-error","conn","error"}
//   {"kind":"ws-frame","conn","dir":"up"|"down","opcode":"binary"|"text"|"ping"|"pong","len","hex","text"?,"msg"?}
//        dir "up" = client/app -> engine, "down" = engine -> client/app; msg = decoded envoy message
//   {"kind":"ws-close","conn","by":"client"|"server","code","reason"}
import fs from "node:fs";
import http from "node:http";
import { decodeToEnvoy, decodeToRivet } from "@rivetkit/engine-envoy-protocol";
import { WebSocket, WebSocketServer } from "ws";
import { hex, render } from "../golden/render.mjs";

const args = Object.fromEntries(
	process.argv.slice(2).reduce((acc, a, i, arr) => (a.startsWith("--") ? [...acc, [a.slice(2), arr[i + 1]]] : acc), []),
);
const LISTEN = Number(args.listen);
const TARGET = new URL(args.target);
const NAME = args.name ?? "tap";
const OUT = fs.openSync(args.out ?? `wire-${NAME}.jsonl`, "a");
const MAX_HEX = Number(args["max-hex"] ?? 1024); // bytes of a frame kept as hex
const MAX_BODY = Number(args["max-body"] ?? 16384);

function log(obj) {
	fs.writeSync(OUT, `${JSON.stringify({ t: Date.now(), tap: NAME, ...obj })}\n`);
}

function bodyRepr(buf, contentType = "") {
	if (!buf || buf.length === 0) return null;
	const ct = String(contentType);
	if (ct.includes("json") || ct.startsWith("text/")) {
		const s = buf.toString("utf8");
		if (ct.includes("json")) {
			try {
				return { json: JSON.parse(s) };
			} catch {}
		}
		return { text: s.length > MAX_BODY ? `${s.slice(0, MAX_BODY)}…` : s };
	}
	// Looks like UTF-8 JSON anyway?
	const s = buf.toString("utf8");
	if (/^[\s]*[{[]/.test(s)) {
		try {
			return { json: JSON.parse(s) };
		} catch {}
	}
	return { len: buf.length, hex: hex(buf.subarray(0, MAX_HEX)) + (buf.length > MAX_HEX ? "…" : "") };
}

let nextId = 1;

const server = http.createServer((req, res) => {
	const id = nextId++;
	if (req.url.startsWith("/__wiretap/mark")) {
		const label = new URL(req.url, "http://x").searchParams.get("label");
		log({ kind: "mark", label });
		res.writeHead(204).end();
		return;
	}
	const chunks = [];
	req.on("data", (c) => chunks.push(c));
	req.on("end", () => {
		const reqBody = Buffer.concat(chunks);
		const t0 = Date.now();
		const headers = { ...req.headers, host: TARGET.host };
		const up = http.request(
			{ host: TARGET.hostname, port: TARGET.port, method: req.method, path: req.url, headers },
			(upRes) => {
				res.writeHead(upRes.statusCode, upRes.statusMessage, upRes.rawHeaders);
				const resChunks = [];
				upRes.on("data", (c) => {
					resChunks.push(c);
					res.write(c);
				});
				upRes.on("end", () => {
					res.end();
					const resBody = Buffer.concat(resChunks);
					log({
						kind: "http",
						id,
						method: req.method,
						url: req.url,
						reqHeaders: req.headers,
						reqBody: bodyRepr(reqBody, req.headers["content-type"]),
						status: upRes.statusCode,
						resHeaders: upRes.headers,
						resBody: bodyRepr(resBody, upRes.headers["content-type"]),
						ms: Date.now() - t0,
					});
				});
			},
		);
		up.on("error", (e) => {
			log({ kind: "http", id, method: req.method, url: req.url, reqHeaders: req.headers, error: String(e.message), status: 502 });
			if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
			res.end(`wiretap upstream error: ${e.message}`);
		});
		up.end(reqBody);
	});
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, autoPong: false, maxPayload: 256 * 1024 * 1024 });

function decodeEnvoy(dir, data) {
	try {
		const m = dir === "up" ? decodeToRivet(new Uint8Array(data)) : decodeToEnvoy(new Uint8Array(data));
		return render(m, { maxBytes: 48 });
	} catch (e) {
		return { decodeError: String(e.message) };
	}
}

server.on("upgrade", (req, socket, head) => {
	const conn = nextId++;
	const isEnvoy = req.url.startsWith("/envoys/connect");
	const protocols = (req.headers["sec-websocket-protocol"] ?? "")
		.split(",")
		.map((s) => s.trim())
		.filter(Boolean);
	const fwdHeaders = {};
	for (const [k, v] of Object.entries(req.headers)) {
		if (/^(host|connection|upgrade|sec-websocket-(key|version|extensions|protocol))$/i.test(k)) continue;
		fwdHeaders[k] = v;
	}
	const upUrl = `ws://${TARGET.host}${req.url}`;
	const upstream = new WebSocket(upUrl, protocols, {
		headers: fwdHeaders,
		perMessageDeflate: false,
		autoPong: false,
		maxPayload: 256 * 1024 * 1024,
	});
	let client;
	const pending = [];
	let upResHeaders;
	upstream.on("upgrade", (res) => {
		upResHeaders = res.headers;
	});

	const frame = (dir, data, isBinary, opcode) => {
		const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
		const entry = { kind: "ws-frame", conn, dir, opcode: opcode ?? (isBinary ? "binary" : "text"), len: buf.length };
		entry.hex = hex(buf.subarray(0, MAX_HEX)) + (buf.length > MAX_HEX ? "…" : "");
		if (!isBinary && opcode === undefined) entry.text = buf.toString("utf8");
		if (isEnvoy && isBinary && opcode === undefined) entry.msg = decodeEnvoy(dir, buf);
		log(entry);
	};

	upstream.on("unexpected-response", (_r, res) => {
		const chunks = [];
		res.on("data", (c) => chunks.push(c));
		res.on("end", () => {
			const body = Buffer.concat(chunks);
			log({ kind: "ws-reject", conn, url: req.url, protocols, status: res.statusCode, resHeaders: res.headers, body: bodyRepr(body, res.headers["content-type"]) });
			const lines = [`HTTP/1.1 ${res.statusCode} ${res.statusMessage}`];
			for (const [k, v] of Object.entries(res.headers)) {
				if (/^(connection|transfer-encoding|content-length)$/i.test(k)) continue;
				lines.push(`${k}: ${v}`);
			}
			lines.push(`content-length: ${body.length}`, "connection: close", "", "");
			socket.end(Buffer.concat([Buffer.from(lines.join("\r\n")), body]));
		});
	});
	upstream.on("error", (e) => {
		log({ kind: "ws-error", conn, url: req.url, error: String(e.message) });
		if (!client) {
			socket.end("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
		} else if (client.readyState === WebSocket.OPEN) {
			client.terminate();
		}
	});
	upstream.on("message", (data, isBinary) => {
		frame("down", data, isBinary);
		if (client) client.send(data, { binary: isBinary });
		else pending.push([data, isBinary]);
	});
	upstream.on("ping", (d) => {
		frame("down", d, true, "ping");
		client?.ping(d);
	});
	upstream.on("pong", (d) => {
		frame("down", d, true, "pong");
		client?.pong(d);
	});
	upstream.on("close", (code, reason) => {
		log({ kind: "ws-close", conn, by: "server", code, reason: reason.toString() });
		if (client && client.readyState === WebSocket.OPEN) {
			if (code === 1005 || code === 1006) client.terminate();
			else client.close(code, reason);
		}
	});
	upstream.on("open", () => {
		// handleUpgrade() calls handleProtocols synchronously, so this per-connection choice is safe.
		const chosen = upstream.protocol;
		wss.options.handleProtocols = () => chosen || false;
		wss.handleUpgrade(req, socket, head, (ws) => {
			client = ws;
			log({ kind: "ws-open", conn, url: req.url, protocols, reqHeaders: req.headers, accepted: upstream.protocol, resHeaders: upResHeaders });
			for (const [d, b] of pending.splice(0)) ws.send(d, { binary: b });
			ws.on("message", (data, isBinary) => {
				frame("up", data, isBinary);
				if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary: isBinary });
			});
			ws.on("ping", (d) => {
				frame("up", d, true, "ping");
				if (upstream.readyState === WebSocket.OPEN) upstream.ping(d);
			});
			ws.on("pong", (d) => {
				frame("up", d, true, "pong");
				if (upstream.readyState === WebSocket.OPEN) upstream.pong(d);
			});
			ws.on("close", (code, reason) => {
				log({ kind: "ws-close", conn, by: "client", code, reason: reason.toString() });
				if (upstream.readyState === WebSocket.OPEN) {
					if (code === 1005 || code === 1006) upstream.terminate();
					else upstream.close(code, reason);
				}
			});
			ws.on("error", (e) => log({ kind: "ws-error", conn, side: "client", error: String(e.message) }));
		});
	});
});

server.listen(LISTEN, "127.0.0.1", () => {
	console.log(`[wiretap] listening 127.0.0.1:${LISTEN} -> ${TARGET.origin} (${NAME})`);
	log({ kind: "tap-start", listen: LISTEN, target: TARGET.origin });
});

for (const sig of ["SIGTERM", "SIGINT"]) {
	process.on(sig, () => {
		log({ kind: "tap-stop" });
		process.exit(0);
	});
}
