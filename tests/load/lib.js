// Shared by the k6 scripts in this folder: the gateway's address, actor creation through the
// API, and the JSON client protocol RivetKit clients speak on `/gateway/{id}/connect`.
import http from "k6/http";

/** The gateway under test (`rivulet dev` listens on 6420). */
export const BASE = (__ENV.RIVULET_URL || "http://127.0.0.1:6420").replace(/\/$/, "");
export const WS_BASE = BASE.replace(/^http/, "ws");
/** Runner pool the actors are created in (`rivulet dev` serves `default`). */
export const POOL = __ENV.RIVULET_POOL || "default";
/** Admin token, when the gateway has one. */
const TOKEN = __ENV.RIVULET_TOKEN || "";
/** Tells apart the actors of two runs against the same gateway. */
export const RUN = __ENV.RUN_ID || `${Date.now()}`;

function headers(extra) {
	const h = Object.assign({ "content-type": "application/json" }, extra || {});
	if (TOKEN) h.authorization = `Bearer ${TOKEN}`;
	return h;
}

/** Gets or creates the actor `name` with `key`; returns its id (throws with the answer). */
export function actor(name, key) {
	const res = http.put(
		`${BASE}/actors?namespace=default`,
		JSON.stringify({ name, key, runner_name_selector: POOL, crash_policy: "sleep" }),
		{ headers: headers(), tags: { name: "get_or_create" } },
	);
	if (res.status !== 200) throw new Error(`get-or-create ${name}/${key}: ${res.status} ${res.body}`);
	return res.json().actor.actor_id;
}

/** Asks the actor to sleep (`POST /actors/{id}/sleep`); returns the status. */
export function sleepActor(id) {
	return http.post(`${BASE}/actors/${id}/sleep?namespace=default`, "{}", {
		headers: headers(),
		tags: { name: "sleep" },
	}).status;
}

/** Calls action `name` over HTTP; returns the response. */
export function action(id, name, args) {
	return http.post(`${BASE}/gateway/${id}/action/${name}`, JSON.stringify({ args }), {
		headers: headers({ "x-rivet-encoding": "json" }),
		tags: { name: `action ${name}` },
	});
}

/** The sub-protocols a JSON RivetKit client offers, with its connection params. */
export function protocols(params) {
	const p = ["rivet", "rivet_encoding.json"];
	if (params) p.push(`rivet_conn_params.${encodeURIComponent(JSON.stringify(params))}`);
	return p;
}

/** `/connect` URL of an actor. */
export function connectUrl(id) {
	return `${WS_BASE}/gateway/${id}/connect`;
}

/** A client-protocol action request. */
export function actionRequest(callId, name, args) {
	return JSON.stringify({ body: { tag: "ActionRequest", val: { id: ["$BigInt", `${callId}`], name, args } } });
}

/** A client-protocol event subscription. */
export function subscribe(eventName) {
	return JSON.stringify({ body: { tag: "SubscriptionRequest", val: { eventName, subscribe: true } } });
}

/** Parses a client-protocol message: `{tag, val}` (null for what is not JSON). */
export function parse(data) {
	try {
		return JSON.parse(data).body;
	} catch (_) {
		return null;
	}
}
