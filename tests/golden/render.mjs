// JSON rendering of values produced by @rivetkit/engine-envoy-protocol@2.3.19 (see README.md here).
//
//   bigint (i64 / u64)            -> decimal string            e.g. "15000"
//   ArrayBuffer / Uint8Array      -> lowercase hex string       e.g. "0a0b0c0d" ("" when empty)
//   Uint32Array (list<u32>)       -> array of numbers
//   Map (BARE map<str, T>)        -> JSON object, keys in wire order
//   union                         -> {"tag": "<TypeName>", "val": <value>} (val null for void)
//   enum                          -> its name as a string      e.g. "SleepIntent"
//   optional none / void          -> null
//   u8/u16/u32, bool, str         -> JSON number, boolean, string
//
// `render(value, {maxBytes})`: with maxBytes set, byte strings longer than that are abbreviated to
// "<N bytes> <first maxBytes bytes in hex>…" (used by the wiretap log only, never by the golden file).
// `revive(json, shape)` is not provided: gen.mjs builds values in JS directly.

export function hex(buf) {
	const u8 = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
	return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength).toString("hex");
}

export function render(v, opts = {}) {
	const { maxBytes } = opts;
	if (v === null || v === undefined) return null;
	if (typeof v === "bigint") return v.toString();
	if (typeof v === "number" || typeof v === "boolean" || typeof v === "string") return v;
	if (v instanceof Uint32Array || v instanceof Uint16Array || v instanceof Int32Array) return Array.from(v);
	if (v instanceof ArrayBuffer || v instanceof Uint8Array) {
		const len = v.byteLength;
		if (maxBytes !== undefined && len > maxBytes) {
			const u8 = v instanceof Uint8Array ? v : new Uint8Array(v);
			return `<${len} bytes> ${hex(u8.subarray(0, maxBytes))}…`;
		}
		return hex(v);
	}
	if (v instanceof Map) {
		const o = {};
		for (const [k, val] of v) o[k] = render(val, opts);
		return o;
	}
	if (Array.isArray(v)) return v.map((x) => render(x, opts));
	if (typeof v === "object") {
		const o = {};
		for (const k of Object.keys(v)) o[k] = render(v[k], opts);
		return o;
	}
	throw new Error(`cannot render ${typeof v}`);
}
