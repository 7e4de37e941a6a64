// gen-client-v4.mjs: golden vectors for the client-protocol v4 codec (lambda-runner/src/protocol),
// produced and checked with the codec of the installed npm package rivetkit@2.3.19.
//
//   NODE=$(tests/compat/setup.sh | tail -n1)
//   "$NODE" lambda-runner/tests/golden/gen-client-v4.mjs               # rewrite client-v4.json
//   "$NODE" lambda-runner/tests/golden/gen-client-v4.mjs --verify F   # decode F's entries
//
// The package does not export its protocol codec, so a module-load hook appends exports for the
// bundle-internal names we need (CLIENT_PROTOCOL_TO_SERVER, ToClientSchema, ...) to the dist
// chunks that define them; everything then runs the package's own code. Where the encode side
// lives in rivetkit-core (Rust, server to client), the vectors mirror what it sends: values as
// the actor's compat CBOR (`encodeCborCompat`), embedded in BARE `data` or in the CBOR message.
// Every `value` is what the client-side decoder of the package returns, rendered as below.
//
// Entry: {name, kind, encoding, hex | text, value, canonical}
//   kind: to_client | to_server | http_request | http_response | http_error | connect
//   hex: binary frame / body; text: JSON text frame / body
//   canonical: true when the codec's rules re-encode `value` to exactly these bytes (false when
//     the JS value carries something the Rust value model drops: a bigint within the safe
//     integer range, `undefined`, or the client's raw CBOR of bytes / bigints / sets)
//   connect entries: {protocols, conn_params_header, value: {encoding, params}}
// Value rendering: null, booleans, strings and arrays as themselves; numbers that are safe
// integers and bigints as {"int": "decimal"}; other numbers {"float": n}; bytes {"bytes": hex};
// sets {"set": [...]}; objects and Maps {"map": [[key, value], ...]}; undefined as null.
//
// --verify F: F is a JSON array of {name, kind, encoding, hex | text, expect}. Each is decoded
// with the package's decoder for its kind and the rendering compared with `expect`; one JSON line
// per entry ({name, ok, got} or {name, ok: false, error}) goes to stdout; exit 1 on any mismatch.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { register } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.join(HERE, "client-v4.json");
const RIVETKIT =
	process.env.RIVETKIT_DIR ??
	path.join(
		process.env.RIVULET_CACHE ?? path.join(os.homedir(), ".cache/rivulet"),
		"compat/node_modules/rivetkit",
	);

const pkg = JSON.parse(fs.readFileSync(path.join(RIVETKIT, "package.json"), "utf8"));
if (pkg.version !== "2.3.19") throw new Error(`expected rivetkit 2.3.19, found ${pkg.version}`);

const R = await loadInternals(RIVETKIT, [
	"CLIENT_PROTOCOL_TO_CLIENT",
	"CLIENT_PROTOCOL_TO_SERVER",
	"HTTP_ACTION_REQUEST_VERSIONED",
	"HTTP_ACTION_RESPONSE_VERSIONED",
	"HTTP_RESPONSE_ERROR_VERSIONED",
	"ToClientSchema",
	"ToServerSchema",
	"HttpActionRequestSchema",
	"HttpActionResponseSchema",
	"HttpResponseErrorSchema",
	"CURRENT_VERSION",
	"serializeWithEncoding",
	"deserializeWithEncoding",
	"encodeCborCompat",
	"decodeCborCompat",
	"encodeJsonCompatValue",
	"buildWebSocketProtocols",
	"HEADER_CONN_PARAMS",
]);
if (R.CURRENT_VERSION !== 4) throw new Error(`expected client protocol 4, got ${R.CURRENT_VERSION}`);

/** Imports `names` from the dist chunks that define them, by appending exports at load time. */
async function loadInternals(root, names) {
	const dir = path.join(root, "dist/tsup");
	const plan = {};
	for (const f of fs.readdirSync(dir).filter((f) => /^chunk-.*\.js$/.test(f))) {
		const src = fs.readFileSync(path.join(dir, f), "utf8");
		for (const n of names) {
			if (new RegExp(`^(var|function|const|let|class) ${n}\\b`, "m").test(src)) {
				(plan[pathToFileURL(path.join(dir, f)).href] ??= []).push(n);
			}
		}
	}
	const found = Object.values(plan).flat();
	const missing = names.filter((n) => !found.includes(n));
	if (missing.length) throw new Error(`not found in rivetkit dist: ${missing.join(", ")}`);
	const hook = `const plan = ${JSON.stringify(plan)};
export async function load(url, context, next) {
	const r = await next(url, context);
	const names = plan[url];
	if (!names) return r;
	const extra = "\\nexport { " + names.map((n) => n + " as __golden_" + n).join(", ") + " };\\n";
	return { ...r, source: String(r.source) + extra, shortCircuit: true };
}`;
	register(`data:text/javascript,${encodeURIComponent(hook)}`);
	const out = {};
	for (const [url, ns] of Object.entries(plan)) {
		const m = await import(url);
		for (const n of ns) out[n] = m[`__golden_${n}`];
	}
	return out;
}

// ---------------------------------------------------------------- rendering

const hex = (u) => Buffer.from(u).toString("hex");
const ab = (u8) => u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength);

function render(v) {
	if (v === undefined || v === null) return null;
	if (typeof v === "boolean" || typeof v === "string") return v;
	if (typeof v === "number") return Number.isSafeInteger(v) ? { int: String(v) } : { float: v };
	if (typeof v === "bigint") return { int: v.toString() };
	if (v instanceof Uint8Array) return { bytes: hex(v) };
	if (v instanceof ArrayBuffer) return { bytes: hex(new Uint8Array(v)) };
	if (Array.isArray(v)) return v.map(render);
	if (v instanceof Set) return { set: [...v].map(render) };
	if (v instanceof Map) return { map: [...v].map(([k, x]) => [render(k), render(x)]) };
	if (Object.getPrototypeOf(v) === Object.prototype) {
		return { map: Object.entries(v).map(([k, x]) => [k, render(x)]) };
	}
	throw new Error(`cannot render ${v?.constructor?.name}`);
}

const str = (n) => (n === null || n === undefined ? null : String(n));
const renderActor = (a) =>
	a ? { actorId: a.actorId, generation: String(a.generation), key: a.key ?? null } : null;

function renderToClient(m) {
	const { tag, val } = m.body;
	switch (tag) {
		case "Init":
			return { tag, val: { actorId: val.actorId, connectionId: val.connectionId } };
		case "Error":
			return {
				tag,
				val: {
					group: val.group,
					code: val.code,
					message: val.message,
					metadata: render(val.metadata),
					actionId: str(val.actionId),
					actor: renderActor(val.actor),
				},
			};
		case "ActionResponse":
			return { tag, val: { id: String(val.id), output: render(val.output) } };
		case "Event":
			return { tag, val: { name: val.name, args: render(val.args) } };
	}
	throw new Error(`unknown ToClient tag ${tag}`);
}

function renderToServer(m) {
	const { tag, val } = m.body;
	if (tag === "ActionRequest") {
		return { tag, val: { id: String(val.id), name: val.name, args: render(val.args) } };
	}
	return { tag, val: { eventName: val.eventName, subscribe: val.subscribe } };
}

const renderHttpError = (e) => ({
	group: e.group,
	code: e.code,
	message: e.message,
	metadata: render(e.metadata),
	actor: renderActor(e.actor),
});

/** Action arguments as rivetkit-core takes them (`normalize_json_args`). */
const normalizeArgs = (a) => (Array.isArray(a) ? a : a === null || a === undefined ? [] : [a]);

// ---------------------------------------------------------------- reference codec, per kind

const V = R.CURRENT_VERSION;
const id = (x) => x;
const cborOf = (v) => ab(R.encodeCborCompat(v));
const dataOf = (buf) => R.decodeCborCompat(new Uint8Array(buf));
/** Values as rivetkit-core puts them inside a CBOR message: the actor's compat form. */
const compat = (v) => (v === undefined ? undefined : R.encodeJsonCompatValue(v));

function mapVal(msg, f) {
	const val = { ...msg.body.val };
	for (const k of ["output", "args", "metadata"]) if (k in val) val[k] = f(val[k]);
	return { body: { tag: msg.body.tag, val } };
}

const KINDS = {
	to_client: {
		// Server side: the message as rivetkit-core lays it out.
		encode(enc, msg) {
			const m = enc === "cbor" ? mapVal(msg, compat) : msg;
			return R.serializeWithEncoding(enc, m, R.CLIENT_PROTOCOL_TO_CLIENT, V, R.ToClientSchema, id, (x) => {
				const val = { ...x.body.val };
				if (x.body.tag === "Error") {
					val.metadata = val.metadata === undefined ? null : cborOf(val.metadata);
					val.actionId ??= null;
					val.actor = val.actor
						? { actorId: val.actor.actorId, generation: BigInt(val.actor.generation), key: val.actor.key ?? null }
						: null;
				}
				if ("output" in val) val.output = cborOf(val.output);
				if (x.body.tag === "Event") val.args = cborOf(val.args);
				return { body: { tag: x.body.tag, val } };
			});
		},
		// Client side: ActorConnRaw#parseMessage.
		decode(enc, bytes) {
			const m = R.deserializeWithEncoding(enc, bytes, R.CLIENT_PROTOCOL_TO_CLIENT, R.ToClientSchema, id, (msg) => {
				const { tag, val } = msg.body;
				if (tag === "Error") {
					return {
						body: {
							tag,
							val: {
								...val,
								metadata: val.metadata ? dataOf(val.metadata) : null,
								actor: val.actor ? { ...val.actor, generation: Number(val.actor.generation), key: val.actor.key ?? undefined } : undefined,
							},
						},
					};
				}
				if (tag === "ActionResponse") return { body: { tag, val: { id: val.id, output: dataOf(val.output) } } };
				if (tag === "Event") return { body: { tag, val: { name: val.name, args: dataOf(val.args) } } };
				return msg;
			});
			return renderToClient(m);
		},
		// What our rules write for this message: the server-side layout itself.
		ours(enc, msg) {
			return this.encode(enc, msg);
		},
	},
	to_server: {
		// Client side: ActorConnRaw#sendMessage.
		encode(enc, msg) {
			return R.serializeWithEncoding(enc, msg, R.CLIENT_PROTOCOL_TO_SERVER, V, R.ToServerSchema, id, (x) =>
				x.body.tag === "ActionRequest"
					? { body: { tag: "ActionRequest", val: { id: x.body.val.id, name: x.body.val.name, args: cborOf(x.body.val.args) } } }
					: x,
			);
		},
		// Server side in the package's terms: the symmetric decoder.
		decode(enc, bytes) {
			const m = R.deserializeWithEncoding(enc, bytes, R.CLIENT_PROTOCOL_TO_SERVER, R.ToServerSchema, id, (x) =>
				x.body.tag === "ActionRequest"
					? { body: { tag: "ActionRequest", val: { ...x.body.val, args: dataOf(x.body.val.args) } } }
					: x,
			);
			return renderToServer(m);
		},
		// Ours writes values in compat form in CBOR too (the client writes them raw).
		ours(enc, msg) {
			return this.encode(enc, enc === "cbor" ? mapVal(msg, compat) : msg);
		},
	},
	http_request: {
		// Client side: ActorHandleRaw#action (`body` is the args value).
		encode(enc, args) {
			return R.serializeWithEncoding(
				enc,
				args,
				R.HTTP_ACTION_REQUEST_VERSIONED,
				V,
				R.HttpActionRequestSchema,
				(a) => ({ args: a }),
				(a) => ({ args: cborOf(a) }),
			);
		},
		decode(enc, bytes) {
			const args = R.deserializeWithEncoding(enc, bytes, R.HTTP_ACTION_REQUEST_VERSIONED, R.HttpActionRequestSchema, (j) => j.args, (b) => dataOf(b.args));
			return { args: normalizeArgs(args).map(render) };
		},
		// Ours re-encodes the argument list the server normalised.
		ours(enc, args) {
			const list = normalizeArgs(args);
			return this.encode(enc, enc === "cbor" ? compat(list) : list);
		},
	},
	http_response: {
		// Server side: rivetkit-core encode_http_action_response.
		encode(enc, output) {
			return R.serializeWithEncoding(
				enc,
				enc === "cbor" ? compat(output) : output,
				R.HTTP_ACTION_RESPONSE_VERSIONED,
				V,
				R.HttpActionResponseSchema,
				(o) => ({ output: o }),
				(o) => ({ output: cborOf(o) }),
			);
		},
		// Client side: the responseFrom* of ActorHandleRaw#action.
		decode(enc, bytes) {
			return { output: render(R.deserializeWithEncoding(enc, bytes, R.HTTP_ACTION_RESPONSE_VERSIONED, R.HttpActionResponseSchema, (j) => j.output, (b) => dataOf(b.output))) };
		},
		ours(enc, output) {
			return this.encode(enc, output);
		},
	},
	http_error: {
		// Server side: rivetkit-core serialize_http_response_error.
		encode(enc, e) {
			const json = { group: e.group, code: e.code, message: e.message };
			if (e.metadata !== undefined) json.metadata = enc === "cbor" ? compat(e.metadata) : e.metadata;
			if (e.actor) json.actor = e.actor;
			return R.serializeWithEncoding(enc, json, R.HTTP_RESPONSE_ERROR_VERSIONED, V, R.HttpResponseErrorSchema, id, (x) => ({
				group: x.group,
				code: x.code,
				message: x.message,
				metadata: x.metadata === undefined ? null : cborOf(x.metadata),
				actor: x.actor ? { actorId: x.actor.actorId, generation: BigInt(x.actor.generation), key: x.actor.key ?? null } : null,
			}));
		},
		// Client side: sendHttpRequest's error path.
		decode(enc, bytes) {
			const e = R.deserializeWithEncoding(
				enc,
				bytes,
				R.HTTP_RESPONSE_ERROR_VERSIONED,
				R.HttpResponseErrorSchema,
				(j) => ({ ...j, actor: j.actor ? { ...j.actor, generation: Number(j.actor.generation) } : undefined }),
				(b) => ({
					group: b.group,
					code: b.code,
					message: b.message,
					metadata: b.metadata ? dataOf(b.metadata) : undefined,
					actor: b.actor ? { actorId: b.actor.actorId, generation: Number(b.actor.generation), key: b.actor.key ?? undefined } : undefined,
				}),
			);
			return renderHttpError(e);
		},
		ours(enc, e) {
			return this.encode(enc, e);
		},
	},
};

/** The JS value as the Rust value model keeps it (what our encoders get to work from). */
function modelize(v) {
	if (v === undefined) return null;
	if (typeof v === "bigint") {
		return v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
	}
	if (Array.isArray(v)) return v.map(modelize);
	if (v instanceof Set) return new Set([...v].map(modelize));
	if (v instanceof Map) {
		// A Map with only string keys is a plain object to the value model.
		const entries = [...v].map(([k, x]) => [modelize(k), modelize(x)]);
		return entries.every(([k]) => typeof k === "string") ? Object.fromEntries(entries) : new Map(entries);
	}
	if (v && Object.getPrototypeOf(v) === Object.prototype) {
		return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, modelize(x)]));
	}
	return v;
}

/** Messages keep their ids as bigints: only values are modelized. */
function modelizeMessage(kind, msg) {
	if (kind === "to_client" || kind === "to_server") {
		const val = { ...msg.body.val };
		for (const k of ["output", "args", "metadata"]) if (k in val) val[k] = modelize(val[k]);
		return { body: { tag: msg.body.tag, val } };
	}
	if (kind === "http_error") return { ...msg, metadata: msg.metadata === undefined ? undefined : modelize(msg.metadata) };
	return modelize(msg);
}

const wire = (enc, out) => (enc === "json" ? { text: out } : { hex: hex(out) });
const sameWire = (a, b) => (typeof a === "string" ? a === b : typeof b !== "string" && hex(a) === hex(b));

// ---------------------------------------------------------------- --verify

if (process.argv[2] === "--verify") {
	const entries = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
	let failed = false;
	for (const e of entries) {
		try {
			const input = e.text !== undefined ? e.text : Uint8Array.from(Buffer.from(e.hex, "hex"));
			const got = KINDS[e.kind].decode(e.encoding, input);
			const ok = stable(got) === stable(e.expect);
			failed ||= !ok;
			process.stdout.write(`${JSON.stringify({ name: e.name, ok, got })}\n`);
		} catch (err) {
			failed = true;
			process.stdout.write(`${JSON.stringify({ name: e.name, ok: false, error: String(err?.message ?? err) })}\n`);
		}
	}
	process.exit(failed ? 1 : 0);
}

function stable(v) {
	if (Array.isArray(v)) return `[${v.map(stable).join(",")}]`;
	if (v && typeof v === "object") {
		return `{${Object.keys(v)
			.sort()
			.map((k) => `${JSON.stringify(k)}:${stable(v[k])}`)
			.join(",")}}`;
	}
	return JSON.stringify(v);
}

// ---------------------------------------------------------------- cases

const ENCODINGS = ["bare", "cbor", "json"];
const u8 = (...b) => new Uint8Array(b);

/** Values in every encoding. */
const VALUES = {
	null: null,
	true: true,
	ints: [0, 1, -1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, -(2 ** 32), -(2 ** 32) - 1, 2 ** 40, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER],
	floats: [1.5, -0.25, 0.1, 1e21, 1e-7, 2 ** 53 + 2, -1e300],
	strings: ["", "hello", "é ü 😀", "a".repeat(30), "b".repeat(300), '"\\\n\t\u0001/<>'],
	bytes: u8(0, 1, 2, 255),
	empty_bytes: u8(),
	bigints: [2n ** 60n, -(2n ** 60n), 2n ** 64n - 1n, 2n ** 70n, -(2n ** 70n)],
	dollar_arrays: [["$foo", 1], ["$$bar", "x"], ["$BigInt", "5"], ["$", null]],
	object: { a: 1, b: [true, false, null], c: { d: "e", f: [] }, g: {} },
	wide_object: Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`k${i}`, i])),
	long_array: Array.from({ length: 30 }, (_, i) => i * 1000),
	nested_bytes: { file: u8(9, 8, 7), list: [u8(1)] },
	bigint_in_safe_range: 5n,
	undefined_in_object: { u: undefined, x: 1 },
};
/** Values JSON cannot carry through the client's stringifier (it writes sets and Maps as {}). */
const BINARY_ONLY_VALUES = {
	set: new Set([1, "a", 2n ** 64n]),
	int_keyed_map: new Map([[1, "one"], [2, "two"]]),
};
/** The client writes CBOR values raw (no compat): a literal `$` array then fails to decode. */
const NOT_FROM_CBOR_CLIENT = new Set(["dollar_array"]);

const ACTOR_ID = "xocvkiazk7kfugfm4ckftihhg4cl00";
const CONN_ID = "6b1f3c2e-0d4a-4f7e-9a51-3c8d2e7f1a90";

function toClientCases() {
	const cases = [
		["init", { body: { tag: "Init", val: { actorId: ACTOR_ID, connectionId: CONN_ID } } }],
		["error_full", { body: { tag: "Error", val: { group: "user", code: "insufficient_funds", message: "Balance too low", metadata: { balance: 5, needed: 2n ** 64n - 1n, tags: ["a", "b"] }, actionId: 7n, actor: { actorId: ACTOR_ID, generation: 3, key: "wallet/alice" } } } }],
		["error_minimal", { body: { tag: "Error", val: { group: "actor", code: "internal_error", message: "An internal error occurred", actionId: null } } }],
		["error_actor_no_key", { body: { tag: "Error", val: { group: "actor", code: "action_not_found", message: "Action `nope` was not found.", actionId: 2n ** 64n - 1n, actor: { actorId: ACTOR_ID, generation: 0 } } } }],
		["error_metadata_only", { body: { tag: "Error", val: { group: "auth", code: "forbidden", message: "Forbidden", metadata: null, actionId: null } } }],
	];
	for (const [i, n] of [0n, 1n, 127n, 128n, 2n ** 53n + 1n, 2n ** 64n - 1n].entries()) {
		cases.push([`action_response_id_${i}`, { body: { tag: "ActionResponse", val: { id: n, output: "ok" } } }]);
	}
	for (const [name, v] of Object.entries(VALUES)) {
		cases.push([`action_response_${name}`, { body: { tag: "ActionResponse", val: { id: 42n, output: v } } }]);
	}
	cases.push(["event", { body: { tag: "Event", val: { name: "balanceChanged", args: [{ balance: 10 }, "alice"] } } }]);
	cases.push(["event_no_args", { body: { tag: "Event", val: { name: "tick", args: [] } } }]);
	return cases;
}

function toServerCases() {
	const cases = [
		["subscribe", { body: { tag: "SubscriptionRequest", val: { eventName: "balanceChanged", subscribe: true } } }],
		["unsubscribe", { body: { tag: "SubscriptionRequest", val: { eventName: "é", subscribe: false } } }],
		["action_no_args", { body: { tag: "ActionRequest", val: { id: 0n, name: "increment", args: [] } } }],
		["action_big_id", { body: { tag: "ActionRequest", val: { id: 2n ** 64n - 1n, name: "x", args: [1] } } }],
	];
	for (const [name, v] of Object.entries(VALUES)) {
		cases.push([`action_${name}`, { body: { tag: "ActionRequest", val: { id: 9n, name: "echo", args: [v] } } }]);
	}
	return cases;
}

function binaryOnly(kind) {
	if (kind === "http_error") return [];
	return Object.entries(BINARY_ONLY_VALUES).map(([name, v]) =>
		kind === "to_client"
			? [`action_response_${name}`, { body: { tag: "ActionResponse", val: { id: 42n, output: v } } }]
			: kind === "to_server"
				? [`action_${name}`, { body: { tag: "ActionRequest", val: { id: 9n, name: "echo", args: [v] } } }]
				: kind === "http_request"
					? [`args_${name}`, [v]]
					: [`output_${name}`, v],
	);
}

const httpRequestCases = () => [
	["args_empty", []],
	["args_list", [1, "two", { three: 3 }]],
	["args_bytes", [u8(1, 2, 3)]],
	["args_bigint", [2n ** 64n - 1n]],
	["args_dollar_array", [["$foo", 1]]],
	["args_not_array", 5],
	["args_object", { a: 1 }],
	["args_null", null],
];
const httpResponseCases = () => Object.entries(VALUES).map(([name, v]) => [`output_${name}`, v]);
const httpErrorCases = () => [
	["error_full", { group: "user", code: "insufficient_funds", message: "Balance too low", metadata: { balance: 5, raw: u8(1, 2) }, actor: { actorId: ACTOR_ID, generation: 3, key: "wallet/alice" } }],
	["error_minimal", { group: "actor", code: "invalid_request", message: "Invalid request" }],
	["error_actor_no_key", { group: "message", code: "incoming_too_long", message: "Incoming message too long", actor: { actorId: ACTOR_ID, generation: 12 } }],
];

const CASES = {
	to_client: toClientCases,
	to_server: toServerCases,
	http_request: httpRequestCases,
	http_response: httpResponseCases,
	http_error: httpErrorCases,
};

function skip(kind, enc, name) {
	if (enc === "cbor" && (kind === "to_server" || kind === "http_request")) {
		if ([...NOT_FROM_CBOR_CLIENT].some((n) => name.includes(n))) return true;
	}
	return false;
}

const entries = [];
for (const [kind, make] of Object.entries(CASES)) {
	for (const enc of ENCODINGS) {
		const cases = enc === "json" ? make() : [...make(), ...binaryOnly(kind)];
		for (const [name, msg] of cases) {
			if (skip(kind, enc, name)) continue;
			const out = KINDS[kind].encode(enc, msg);
			const input = enc === "json" ? out : Uint8Array.from(out);
			const value = KINDS[kind].decode(enc, input);
			const canonical = sameWire(KINDS[kind].ours(enc, modelizeMessage(kind, msg)), out);
			entries.push({ name: `${kind}/${enc}/${name}`, kind, encoding: enc, ...wire(enc, out), value, canonical });
		}
	}
}

// Subprotocols and the conn-params header, as the client builds them.
for (const enc of ENCODINGS) {
	for (const [name, params] of [
		["no_params", undefined],
		["params", { token: "a b/é%&=+", n: 1, nested: { list: [1, 2] } }],
	]) {
		entries.push({
			name: `connect/${enc}/${name}`,
			kind: "connect",
			encoding: enc,
			protocols: R.buildWebSocketProtocols({}, enc, params).join(", "),
			conn_params_header: params === undefined ? null : JSON.stringify(params),
			value: { encoding: enc, params: params ?? null },
		});
	}
}

const names = new Set();
for (const e of entries) {
	if (names.has(e.name)) throw new Error(`duplicate entry ${e.name}`);
	names.add(e.name);
}
const body = entries.map((e) => JSON.stringify(e)).join(",\n");
fs.writeFileSync(OUT, `{"reference": "rivetkit@${pkg.version}", "entries": [\n${body}\n]}\n`);
console.log(`wrote ${entries.length} entries (${entries.filter((e) => e.canonical === false).length} not canonical) to ${path.relative(process.cwd(), OUT)}`);
