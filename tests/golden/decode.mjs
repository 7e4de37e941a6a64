// decode.mjs: decode envoy protocol v8 messages with the reference codec
// (@rivetkit/engine-envoy-protocol@2.3.19), for checking a Rust encoder against it.
//
// stdin:  one message per line: `<direction> <hex>`, direction = to_rivet | to_envoy
//         (blank lines and lines starting with # are skipped)
// stdout: one JSON line per input line, the decoded value rendered as in README.md
//         (the same rendering as the `value` field of envoy-v8.json), or {"error": "..."}.
// Exit code 1 if any line failed to decode.
//
//   printf 'to_envoy 05f24ca307a2010000\n' | $NODE tests/golden/decode.mjs
//   -> {"tag":"ToEnvoyPing","val":{"ts":"1795424472306"}}
import readline from "node:readline";
import { decodeToEnvoy, decodeToRivet } from "@rivetkit/engine-envoy-protocol";
import { render } from "./render.mjs";

let failed = false;
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const raw of rl) {
	const line = raw.trim();
	if (!line || line.startsWith("#")) continue;
	const [direction, hexStr = ""] = line.split(/\s+/);
	try {
		if (!/^([0-9a-fA-F]{2})*$/.test(hexStr)) throw new Error("bad hex");
		const bytes = Uint8Array.from(Buffer.from(hexStr, "hex"));
		let v;
		if (direction === "to_rivet") v = decodeToRivet(bytes);
		else if (direction === "to_envoy") v = decodeToEnvoy(bytes);
		else throw new Error(`unknown direction ${JSON.stringify(direction)}`);
		process.stdout.write(`${JSON.stringify(render(v))}\n`);
	} catch (e) {
		failed = true;
		process.stdout.write(`${JSON.stringify({ error: String(e?.message ?? e) })}\n`);
	}
}
process.exitCode = failed ? 1 : 0;
