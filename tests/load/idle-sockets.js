// Many idle sockets held while a few rooms chat. IDLE_VUS users each open SOCKETS sockets over
// ACTORS counter actors and then make those actors sleep: the gateway holds the sockets
// (hibernating) while the actors have no instance. Meanwhile ROOMS chat rooms run as in
// ws-chat.js. At the end every held socket asks its actor for its value: each must still be
// open and answered (the message wakes the actor). Run against `rivulet dev`:
//   k6 run tests/load/idle-sockets.js
// Knobs: IDLE_VUS (4), SOCKETS (250 per idle user), ACTORS (25 per idle user), HOLD (20s),
// ROOMS (2), MEMBERS (5), POSTS (10), RIVULET_URL, RIVULET_TOKEN.
import { WebSocket } from "k6/experimental/websockets";
import { Counter, Trend } from "k6/metrics";
import { setTimeout } from "k6/timers";
import { chatRoom } from "./chat-room.js";
import { actionRequest, actor, connectUrl, parse, protocols, RUN, sleepActor } from "./lib.js";

// p95 bounds default to what a release build meets; `P95_MS` overrides them all (the test
// command, on a debug build, checks behaviour with a loose bound).
const P95_MS = __ENV.P95_MS;

const SOCKETS = Number(__ENV.SOCKETS || 250);
const ACTORS = Number(__ENV.ACTORS || 25);
const HOLD = __ENV.HOLD || "20s";
const holdMs = Number(HOLD.replace(/s$/, "")) * 1000;

const idleOpened = new Counter("idle_sockets_opened");
const idleClosed = new Counter("idle_sockets_closed_early");
const idleUnanswered = new Counter("idle_sockets_unanswered");
const idleSleepRefused = new Counter("idle_sleep_refused");
const idleWake = new Trend("idle_wake_answer_ms", true);

export const options = {
	scenarios: {
		idle: {
			executor: "per-vu-iterations",
			vus: Number(__ENV.IDLE_VUS || 4),
			iterations: 1,
			maxDuration: `${holdMs / 1000 + 90}s`,
			exec: "idle",
		},
		chat: {
			executor: "constant-vus",
			vus: Number(__ENV.ROOMS || 2),
			duration: HOLD,
			exec: "chat",
		},
	},
	thresholds: {
		idle_sockets_closed_early: ["count==0"],
		idle_sockets_unanswered: ["count==0"],
		idle_sleep_refused: ["count==0"],
		idle_wake_answer_ms: [`p(95)<${P95_MS || 2000}`],
		chat_lost: ["count==0"],
		chat_duplicated: ["count==0"],
		chat_out_of_order: ["count==0"],
		chat_fanout_ms: [`p(95)<${P95_MS || 250}`],
	},
};

export function chat() {
	chatRoom(Number(__ENV.MEMBERS || 5), Number(__ENV.POSTS || 10), "busy");
}

export function idle() {
	const ids = [];
	for (let a = 0; a < ACTORS; a++) ids.push(actor("counter", `k6-idle-${RUN}-${__VU}-${a}`));
	const sockets = [];
	let open = 0;
	let answered = 0;
	const askAll = () => {
		for (const s of sockets) {
			if (s.done) continue;
			s.askedAt = Date.now();
			s.ws.send(actionRequest(1, "get", []));
		}
		// Whatever has not answered in 30 s counts as unanswered.
		setTimeout(() => {
			for (const s of sockets) if (!s.done) end(s, true);
		}, 30000);
	};
	const end = (s, unanswered) => {
		if (s.done) return;
		s.done = true;
		if (unanswered) idleUnanswered.add(1);
		s.ws.close();
	};
	// Sockets that never opened count as closed early, and the user stops waiting for them.
	setTimeout(() => {
		if (open < SOCKETS) {
			idleClosed.add(SOCKETS - open);
			for (const s of sockets) end(s, false);
		}
	}, 60000);
	for (let i = 0; i < SOCKETS; i++) {
		const ws = new WebSocket(connectUrl(ids[i % ids.length]), protocols());
		const s = { ws, done: false, askedAt: 0 };
		sockets.push(s);
		ws.onerror = () => {};
		ws.onclose = () => {
			if (!s.done) {
				idleClosed.add(1);
				s.done = true;
			}
		};
		ws.onmessage = (e) => {
			const msg = parse(e.data);
			if (!msg) return;
			if (msg.tag === "Init") {
				idleOpened.add(1);
				open++;
				if (open === SOCKETS) {
					// All open: the actors sleep, and the gateway holds every socket.
					for (const id of ids) if (sleepActor(id) !== 200) idleSleepRefused.add(1);
					setTimeout(askAll, holdMs);
				}
			} else if (msg.tag === "ActionResponse" && s.askedAt) {
				idleWake.add(Date.now() - s.askedAt);
				answered++;
				end(s, false);
			}
		};
	}
}
