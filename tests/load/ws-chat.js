// WebSocket chat fan-out: ROOMS rooms at a time, each with MEMBERS stock-protocol clients
// (JSON encoding) on one chat actor; every member posts POSTS messages and must receive every
// member's posts exactly once, in each sender's order. Run against `rivulet dev`:
//   k6 run tests/load/ws-chat.js
// Knobs: ROOMS (5), MEMBERS (10), POSTS (10), DURATION (30s), RIVULET_URL, RIVULET_TOKEN.
import { chatRoom } from "./chat-room.js";

// p95 bounds default to what a release build meets; `P95_MS` overrides them all (the test
// command, on a debug build, checks behaviour with a loose bound).
const P95_MS = __ENV.P95_MS;

export const options = {
	vus: Number(__ENV.ROOMS || 5),
	duration: __ENV.DURATION || "30s",
	thresholds: {
		chat_lost: ["count==0"],
		chat_duplicated: ["count==0"],
		chat_out_of_order: ["count==0"],
		chat_sockets_closed_early: ["count==0"],
		chat_fanout_ms: [`p(95)<${P95_MS || 250}`],
		http_req_failed: ["rate==0"],
	},
};

export default function () {
	chatRoom(Number(__ENV.MEMBERS || 10), Number(__ENV.POSTS || 10), "chat");
}
