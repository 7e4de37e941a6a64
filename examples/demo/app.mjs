// The demo actors written with RivetKit: a stock RivetKit 2.3.19 app, unchanged from what it
// would be on the Rivet engine. `rivulet dev` runs the same actors written in Rust
// (lambda-runner's examples) by default; `rivulet dev --runner examples/demo/run.sh` runs
// these instead. It connects to RIVET_ENDPOINT (set by `rivulet dev`).
//
//   counter  increment(n) -> new count (broadcasts "newCount"), get() -> count
//   chat     post(text) -> {user, text, ts} (broadcasts "message"), history() -> last 100
//            messages; connect with params {user} to post under that name
import { UserError, actor, setup } from "rivetkit";

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
	onBeforeConnect: (_c, params) => {
		if (!params?.user) throw new UserError("a user name is required to join the chat", { code: "missing_user" });
	},
	createConnState: (_c, params) => ({ user: String(params.user).slice(0, 32) }),
	actions: {
		post: (c, text) => {
			const message = { user: c.conn?.state?.user ?? "http", text: String(text).slice(0, 1000), ts: Date.now() };
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
