// The demo actors `rivulet dev` runs: a stock RivetKit 2.3.19 app, unchanged from what it
// would be on the Rivet engine. It connects to RIVET_ENDPOINT (set by `rivulet dev`).
//
//   counter  increment(n) -> new count (broadcasts "newCount"), get() -> count
//   chat     post(text) -> message (broadcasts "message"), history() -> last 100 messages;
//            connect with params {name} to post under that name
import { actor, setup } from "rivetkit";

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
});

const chat = actor({
	state: { messages: [] },
	createConnState: (_c, params) => ({ name: String(params?.name ?? "anonymous").slice(0, 32) }),
	actions: {
		post: (c, text) => {
			const message = { from: c.conn?.state?.name ?? "http", text: String(text).slice(0, 1000), at: Date.now() };
			c.state.messages.push(message);
			if (c.state.messages.length > 100) c.state.messages.shift();
			c.broadcast("message", message);
			return message;
		},
		history: (c) => c.state.messages,
	},
});

export const registry = setup({ use: { counter, chat } });
registry.start();
console.log(`[demo] runner started, endpoint ${process.env.RIVET_ENDPOINT}`);
