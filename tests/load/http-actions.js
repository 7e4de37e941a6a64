// HTTP actions across many actors: each virtual user owns a few counter actors and increments
// them in turn; every answer must be the previous value plus one (nothing lost or applied
// twice). Run against `rivulet dev`:
//   k6 run tests/load/http-actions.js
// Knobs: VUS (20), DURATION (30s), ACTORS_PER_VU (5), RIVULET_URL, RIVULET_TOKEN.
import { check } from "k6";
import { Counter } from "k6/metrics";
import { action, actor, RUN } from "./lib.js";

// p95 bounds default to what a release build meets; `P95_MS` overrides them all (the test
// command, on a debug build, checks behaviour with a loose bound).
const P95_MS = __ENV.P95_MS;

const ACTORS_PER_VU = Number(__ENV.ACTORS_PER_VU || 5);
const wrongAnswers = new Counter("wrong_answers");

export const options = {
	vus: Number(__ENV.VUS || 20),
	duration: __ENV.DURATION || "30s",
	thresholds: {
		http_req_failed: ["rate==0"],
		wrong_answers: ["count==0"],
		"http_req_duration{name:action increment}": [`p(95)<${P95_MS || 250}`],
	},
};

// Per virtual user: its actors and the value each should hold.
const mine = [];

export default function () {
	if (mine.length === 0) {
		for (let i = 0; i < ACTORS_PER_VU; i++) {
			const id = actor("counter", `k6-http-${RUN}-${__VU}-${i}`);
			const now = action(id, "get", []);
			mine.push({ id, value: now.status === 200 ? now.json().output : 0 });
		}
	}
	for (const a of mine) {
		const res = action(a.id, "increment", [1]);
		const ok = check(res, {
			"status 200": (r) => r.status === 200,
			"previous value plus one": (r) => r.status === 200 && r.json().output === a.value + 1,
		});
		if (res.status === 200) {
			if (res.json().output !== a.value + 1) wrongAnswers.add(1);
			a.value = res.json().output;
		} else if (!ok) {
			wrongAnswers.add(1);
		}
	}
}
