// A terminal chat client for the demo `chat` actor, using the stock RivetKit client:
//   node examples/demo/chat.mjs <room> <your name>
// Type a line to post it; messages from everyone in the room appear as they arrive.
import { createClient } from "rivetkit/client";
import readline from "node:readline";

const [room = "lobby", name = "guest"] = process.argv.slice(2);
const client = createClient(process.env.RIVET_ENDPOINT ?? "http://127.0.0.1:6420");
const conn = client.chat.getOrCreate([room], { params: { user: name } }).connect();
conn.on("message", (m) => console.log(`[${m.user}] ${m.text}`));
for (const m of await conn.history()) console.log(`[${m.user}] ${m.text}`);
console.log(`joined ${room} as ${name}; type to post, Ctrl-D to leave`);
const rl = readline.createInterface({ input: process.stdin });
const pending = new Set();
rl.on("line", (line) => {
	if (!line.trim()) return;
	const p = conn.post(line).catch((e) => console.error(e.message));
	pending.add(p);
	p.finally(() => pending.delete(p));
});
rl.on("close", async () => {
	await Promise.all(pending);
	await conn.dispose();
	process.exit(0);
});
