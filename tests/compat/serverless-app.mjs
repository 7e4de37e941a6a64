// A stock RivetKit 2.3.19 app served the serverless way: `registry.handler` behind a plain
// Node HTTP server at /api/rivet (what Vercel, Cloud Run or any host runs), never
// `registry.start()`. The gateway invokes it with `POST /api/rivet/start` per actor and
// reads its `/api/rivet/metadata` when the pool is registered.
//
// Env: SERVERLESS_PORT (required), COUNTER_SLEEP_TIMEOUT_MS (default 30000).
import http from "node:http";
import { Readable } from "node:stream";
import { actor, setup } from "rivetkit";

process.env.RIVET_RUN_SERVICES ??= "0";
const port = Number(process.env.SERVERLESS_PORT);
if (!port) throw new Error("SERVERLESS_PORT is required");

const counter = actor({
	state: { count: 0 },
	actions: {
		increment: (c, n) => {
			c.state.count += Number(n ?? 1);
			c.broadcast("newCount", c.state.count);
			return c.state.count;
		},
		get: (c) => c.state.count,
	},
	options: { sleepTimeout: Number(process.env.COUNTER_SLEEP_TIMEOUT_MS ?? 30_000) },
});

export const registry = setup({ use: { counter } });

// Node's request and response as the fetch API's, which is what `registry.handler` takes.
const server = http.createServer(async (req, res) => {
	try {
		const url = `http://${req.headers.host ?? `127.0.0.1:${port}`}${req.url}`;
		const hasBody = req.method !== "GET" && req.method !== "HEAD";
		const request = new Request(url, {
			method: req.method,
			headers: Object.entries(req.headers).flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x]) : [[k, v]])),
			body: hasBody ? Readable.toWeb(req) : undefined,
			duplex: hasBody ? "half" : undefined,
		});
		const response = await registry.handler(request);
		res.writeHead(response.status, Object.fromEntries(response.headers));
		if (!response.body) return res.end();
		const body = Readable.fromWeb(response.body);
		res.on("close", () => body.destroy());
		body.pipe(res);
	} catch (e) {
		console.error("[serverless-app] handler failed", e);
		if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
		res.end(String(e));
	}
});
server.listen(port, "127.0.0.1", () => console.log(`[serverless-app] listening on ${port}`));
