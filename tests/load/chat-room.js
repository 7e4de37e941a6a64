// One chat room as k6 sees it, shared by ws-chat.js and idle-sockets.js: MEMBERS sockets on one
// chat actor, each subscribed to `message` (settled by an action answered after the
// subscription), then each posts POSTS numbered messages. Every member must receive every
// post exactly once, each sender's in order.
import { WebSocket } from "k6/experimental/websockets";
import { Counter, Trend } from "k6/metrics";
import { setTimeout, clearTimeout } from "k6/timers";
import { actionRequest, actor, connectUrl, parse, protocols, RUN, subscribe } from "./lib.js";

export const chatLost = new Counter("chat_lost");
export const chatDuplicated = new Counter("chat_duplicated");
export const chatOutOfOrder = new Counter("chat_out_of_order");
export const chatClosed = new Counter("chat_sockets_closed_early");
export const chatFanout = new Trend("chat_fanout_ms", true);

/** Runs one room to its end (every post seen everywhere, or ROOM_TIMEOUT_MS). */
export function chatRoom(members, posts, tag) {
	const room = actor("chat", `k6-${tag}-${RUN}-${__VU}-${__ITER}`);
	const expected = members * posts;
	const sentAt = {};
	const state = [];
	let ready = 0;
	let finished = 0;
	const timeout = setTimeout(() => {
		for (const s of state) if (!s.done) finish(s);
	}, Number(__ENV.ROOM_TIMEOUT_MS || 20000));

	function finish(s) {
		if (s.done) return;
		s.done = true;
		chatLost.add(expected - s.seen.size);
		s.ws.close();
		finished++;
		if (finished === members) clearTimeout(timeout);
	}

	function post(s, i) {
		const text = `${s.member}:${i}`;
		sentAt[text] = Date.now();
		s.ws.send(actionRequest(++s.call, "post", [text]));
	}

	for (let m = 0; m < members; m++) {
		const ws = new WebSocket(connectUrl(room), protocols({ user: `member-${m}` }));
		const s = { ws, member: m, call: 0, seen: new Set(), last: {}, subscribed: false, done: false };
		state.push(s);
		ws.onclose = () => {
			if (!s.done) {
				chatClosed.add(1);
				finish(s);
			}
		};
		ws.onerror = () => {};
		ws.onmessage = (e) => {
			const msg = parse(e.data);
			if (!msg) return;
			if (msg.tag === "Init") {
				ws.send(subscribe("message"));
				// Answered after the subscription is applied: from then on nothing is missed.
				ws.send(actionRequest(++s.call, "history", []));
			} else if (msg.tag === "ActionResponse" && !s.subscribed) {
				s.subscribed = true;
				ready++;
				if (ready === members) {
					// Everyone listens: now everyone posts.
					for (const r of state) for (let i = 0; i < posts; i++) post(r, i);
				}
			} else if (msg.tag === "Event" && msg.val.name === "message") {
				const text = msg.val.args[0].text;
				const [from, i] = text.split(":").map(Number);
				if (s.seen.has(text)) {
					chatDuplicated.add(1);
					return;
				}
				s.seen.add(text);
				if (s.last[from] !== undefined && i <= s.last[from]) chatOutOfOrder.add(1);
				s.last[from] = i;
				if (sentAt[text] !== undefined) chatFanout.add(Date.now() - sentAt[text]);
				if (s.seen.size === expected) finish(s);
			}
		};
	}
}
