// trace.mjs: print a wiretap JSONL log (wiretap.mjs) as a compact, readable trace.
//   node trace.mjs wire-app.jsonl [--full]      (--full: print whole HTTP bodies)
import fs from "node:fs";

const file = process.argv[2];
const full = process.argv.includes("--full");
const lines = fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const t0 = lines[0]?.t ?? 0;
const short = (id) => (typeof id === "string" && id.length > 12 ? `${id.slice(0, 6)}…` : id);
const ck = (c) => `${short(c.actorId)}/g${c.generation}/#${c.index}`;
const trunc = (s, n = 300) => (s.length > n && !full ? `${s.slice(0, n)}…` : s);

function ranges(nums) {
	const out = [];
	let start;
	let prev;
	for (const n of nums) {
		if (start === undefined) {
			start = prev = n;
		} else if (n === prev + 1) {
			prev = n;
		} else {
			out.push(start === prev ? `${start}` : `${start}-${prev}`);
			start = prev = n;
		}
	}
	if (start !== undefined) out.push(start === prev ? `${start}` : `${start}-${prev}`);
	return `[${out.join(",")}]`;
}

const byteLen = (s) => (typeof s === "string" ? (s.startsWith("<") ? Number(s.slice(1).split(" ")[0]) : s.length / 2) : 0);

function kvKeys(keys) {
	return keys.map((k) => (k.startsWith("<") ? k : k)).join(",");
}

function tunnelKind(k) {
	const v = k.val;
	switch (k.tag) {
		case "ToEnvoyRequestStart":
			return `RequestStart ${v.method} ${v.path} gen=${v.actorGeneration} body=${byteLen(v.body)}B stream=${v.stream} responseStream=${v.responseStream} headers=${Object.keys(v.headers).join(",")}`;
		case "ToRivetResponseStart":
			return `ResponseStart ${v.status} body=${byteLen(v.body)}B stream=${v.stream} headers=${JSON.stringify(v.headers)}`;
		case "ToEnvoyWebSocketOpen":
			return `WebSocketOpen ${v.path} gen=${v.actorGeneration} headers=${Object.keys(v.headers).join(",")}`;
		case "ToEnvoyWebSocketMessage":
		case "ToRivetWebSocketMessage":
			return `${k.tag.replace(/^To(Envoy|Rivet)/, "")} binary=${v.binary} ${byteLen(v.data)}B ${v.data.slice(0, 40)}`;
		default:
			return `${k.tag.replace(/^To(Envoy|Rivet)/, "")} ${JSON.stringify(v)}`;
	}
}

function envoyMsg(m) {
	const v = m.val;
	switch (m.tag) {
		case "ToEnvoyInit":
			return `Init ${JSON.stringify(v.metadata)}`;
		case "ToEnvoyPing":
		case "ToRivetPong":
			return `${m.tag} ts=${v.ts}`;
		case "ToRivetMetadata":
			return `Metadata ${JSON.stringify(v)}`;
		case "ToEnvoyCommands":
			return `Commands ${v
				.map((w) => {
					const i = w.inner;
					if (i.tag === "CommandStartActor") {
						const c = i.val.config;
						return `[${ck(w.checkpoint)} Start name=${c.name} key=${JSON.stringify(c.key)} createTs=${c.createTs} input=${c.input} hib=${JSON.stringify(i.val.hibernatingRequests)} preloadedKv=${JSON.stringify(i.val.preloadedKv)}]`;
					}
					return `[${ck(w.checkpoint)} Stop ${i.val.reason}]`;
				})
				.join(" ")}`;
		case "ToRivetEvents":
			return `Events ${v
				.map((w) => {
					const e = w.inner;
					let d;
					if (e.tag === "EventActorStateUpdate") d = e.val.state.tag === "ActorStateRunning" ? "Running" : `Stopped ${JSON.stringify(e.val.state.val)}`;
					else if (e.tag === "EventActorIntent") d = `Intent ${e.val.intent.tag}`;
					else d = `SetAlarm ${e.val.alarmTs}`;
					return `[${ck(w.checkpoint)} ${d}]`;
				})
				.join(" ")}`;
		case "ToRivetAckCommands":
			return `AckCommands ${v.lastCommandCheckpoints.map(ck).join(" ")}`;
		case "ToEnvoyAckEvents":
			return `AckEvents ${v.lastEventCheckpoints.map(ck).join(" ")}`;
		case "ToRivetKvRequest": {
			const d = v.data;
			let s = d.tag;
			if (d.val?.keys) s += ` keys=${kvKeys(d.val.keys)}`;
			if (d.val?.values) s += ` values=${d.val.values.map((x) => `${byteLen(x)}B`).join(",")}`;
			if (d.tag === "KvListRequest") s += ` query=${JSON.stringify(d.val.query)} reverse=${d.val.reverse} limit=${d.val.limit}`;
			if (d.tag === "KvDeleteRangeRequest") s += ` ${d.val.start}..${d.val.end}`;
			return `KvRequest actor=${short(v.actorId)} req=${v.requestId} ${s}`;
		}
		case "ToEnvoyKvResponse": {
			const d = v.data;
			let s = d.tag;
			if (d.val?.keys) s += ` keys=${kvKeys(d.val.keys)} values=${d.val.values.map((x) => `${byteLen(x)}B`).join(",")} meta=${JSON.stringify(d.val.metadata)}`;
			if (d.tag === "KvErrorResponse") s += ` ${d.val.message}`;
			return `KvResponse req=${v.requestId} ${s}`;
		}
		case "ToRivetSqliteGetPagesRequest":
			return `SqliteGetPages req=${v.requestId} actor=${short(v.data.actorId)} pgnos=${ranges(v.data.pgnos)} expGen=${v.data.expectedGeneration} expHead=${v.data.expectedHeadTxid}`;
		case "ToEnvoySqliteGetPagesResponse": {
			const d = v.data;
			if (d.tag !== "SqliteGetPagesOk") return `SqliteGetPagesResponse req=${v.requestId} ${JSON.stringify(d)}`;
			const present = d.val.pages.filter((p) => p.bytes !== null);
			return `SqliteGetPagesResponse req=${v.requestId} headTxid=${d.val.headTxid} pages=${d.val.pages.length} present=${ranges(present.map((p) => p.pgno))} sizes=${[...new Set(present.map((p) => byteLen(p.bytes)))].join(",")}`;
		}
		case "ToRivetSqliteCommitRequest": {
			const d = v.data;
			return `SqliteCommit req=${v.requestId} actor=${short(d.actorId)} dirty=${ranges(d.dirtyPages.map((p) => p.pgno))} (${d.dirtyPages.reduce((a, p) => a + byteLen(p.bytes), 0)}B) dbSizePages=${d.dbSizePages} nowMs=${d.nowMs} expGen=${d.expectedGeneration} expHead=${d.expectedHeadTxid}`;
		}
		case "ToEnvoySqliteCommitResponse":
			return `SqliteCommitResponse req=${v.requestId} ${JSON.stringify(v.data)}`;
		case "ToRivetTunnelMessage":
		case "ToEnvoyTunnelMessage": {
			const id = v.messageId;
			return `${m.tag.replace("Message", "")} gw=${id.gatewayId} req=${id.requestId} idx=${id.messageIndex} ${tunnelKind(v.messageKind)}`;
		}
		default:
			return `${m.tag} ${JSON.stringify(v)}`;
	}
}

for (const o of lines) {
	const dt = String(o.t - t0).padStart(7);
	let s;
	switch (o.kind) {
		case "mark":
			s = `======== ${o.label}`;
			break;
		case "http":
			s = `HTTP ${o.method} ${o.url} -> ${o.status} (${o.ms}ms) req=${trunc(JSON.stringify(o.reqBody))} res=${trunc(JSON.stringify(o.resBody), full ? 1e9 : 600)}`;
			break;
		case "ws-open":
			s = `WS-OPEN #${o.conn} ${o.url} protocols=${JSON.stringify(o.protocols)} accepted=${o.accepted}`;
			break;
		case "ws-close":
			s = `WS-CLOSE #${o.conn} by ${o.by} code=${o.code} reason=${JSON.stringify(o.reason)}`;
			break;
		case "ws-reject":
			s = `WS-REJECT #${o.conn} ${o.url} ${o.status} ${JSON.stringify(o.body)}`;
			break;
		case "ws-error":
			s = `WS-ERROR #${o.conn} ${o.error}`;
			break;
		case "ws-frame": {
			const arrow = o.dir === "up" ? "→" : "←";
			if (o.msg) s = `${arrow} #${o.conn} ${o.msg.decodeError ? `DECODE ERROR ${o.msg.decodeError} ${o.hex.slice(0, 80)}` : envoyMsg(o.msg)} (${o.len}B)`;
			else s = `${arrow} #${o.conn} ${o.opcode} ${o.len}B ${o.text ? JSON.stringify(o.text).slice(0, 200) : o.hex.slice(0, 120)}`;
			break;
		}
		default:
			s = `${o.kind} ${JSON.stringify(o).slice(0, 200)}`;
	}
	console.log(`${dt} ${s}`);
}
