// Migrations under load: run against a gateway whose `default` pool is a short-lived process
// pool (`rivulet dev --serverless 4`: each actor lives in a process for 4 s and moves to a
// fresh one before it ends). Each virtual user keeps one socket on its own counter actor and
// increments it as fast as answers come; every answer must be the previous value plus one and
// the socket must stay open through every move.
//   rivulet dev --serverless 4 &  k6 run tests/load/migrations.js
// Knobs: VUS (10), DURATION (30s), RIVULET_URL, RIVULET_TOKEN.
import { WebSocket } from "k6/experimental/websockets";
import { Counter, Trend } from "k6/metrics";
import { setTimeout } from "k6/timers";
import { action, actionRequest, actor, connectUrl, parse, protocols, RUN } from "./lib.js";

// p95 bounds default to what a release build meets; `P95_MS` overrides them all (the test
// command, on a debug build, checks behaviour with a loose bound).
const P95_MS = __ENV.P95_MS;

const durationMs = Number((__ENV.DURATION || "30s").replace(/s$/, "")) * 1000;
const wrong = new Counter("migration_wrong_answers");
const closed = new Counter("migration_sockets_closed_early");
const errors = new Counter("migration_action_errors");
const done = new Counter("migration_actions");
const roundTrip = new Trend("migration_action_ms", true);

export const options = {
	scenarios: {
		moving: {
			executor: "per-vu-iterations",
			vus: Number(__ENV.VUS || 10),
			iterations: 1,
			maxDuration: `${durationMs / 1000 + 60}s`,
		},
	},
	thresholds: {
		migration_wrong_answers: ["count==0"],
		migration_sockets_closed_early: ["count==0"],
		migration_action_errors: ["count==0"],
		migration_actions: ["count>0"],
		migration_action_ms: [`p(95)<${P95_MS || 500}`],
	},
};

export default function () {
	const id = actor("counter", `k6-move-${RUN}-${__VU}`);
	const first = action(id, "get", []);
	let value = first.status === 200 ? first.json().output : 0;
	const ws = new WebSocket(connectUrl(id), protocols());
	let call = 0;
	let sentAt = 0;
	let finished = false;
	const send = () => {
		sentAt = Date.now();
		ws.send(actionRequest(++call, "increment", [1]));
	};
	ws.onerror = () => {};
	ws.onclose = () => {
		if (!finished) closed.add(1);
		finished = true;
	};
	ws.onmessage = (e) => {
		const msg = parse(e.data);
		if (!msg) return;
		if (msg.tag === "Init") {
			setTimeout(() => {
				finished = true;
				ws.close();
			}, durationMs);
			send();
		} else if (msg.tag === "ActionResponse") {
			roundTrip.add(Date.now() - sentAt);
			done.add(1);
			if (msg.val.output !== value + 1) wrong.add(1);
			value = msg.val.output;
			if (!finished) send();
		} else if (msg.tag === "Error") {
			errors.add(1);
			if (!finished) send();
		}
	};
}
