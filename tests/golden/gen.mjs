// gen.mjs: golden fixtures for the envoy protocol v8 codec.
//
// Encodes representative ToRivet / ToEnvoy messages with the reference codec
// @rivetkit/engine-envoy-protocol@2.3.19 and writes tests/golden/envoy-v8.json:
//   [{"name", "direction": "to_rivet"|"to_envoy", "hex", "value"}, ...]
// `value` is the JSON rendering described in README.md (render.mjs). Every entry is checked to
// decode back to the same rendering before the file is written. Deterministic (no clocks, no RNG).
//
//   NODE=$(tests/compat/setup.sh | tail -n1); "$NODE" tests/golden/gen.mjs
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as P from "@rivetkit/engine-envoy-protocol";
import { hex, render } from "./render.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.join(HERE, "envoy-v8.json");

if (P.VERSION !== 8) throw new Error(`expected envoy protocol VERSION 8, got ${P.VERSION}`);

/** bytes from hex or utf8 text, as the ArrayBuffer the codec expects */
const b = (h) => Uint8Array.from(Buffer.from(h, "hex")).buffer;
const t = (s) => Uint8Array.from(Buffer.from(s, "utf8")).buffer;

const ACTOR = "xocvkiazk7kfugfm4ckftihhg4cl00"; // a real engine actor id (30 chars, base36)
const ACTOR2 = "dx19mu60jay32vk4hf1pzquv0cbl00";
const NSID = "9yjgjss6md7tbi5c0ra0h16hq3cl00";
const GW = b("735813ac");
const REQ = b("ae2e9c44");
const WSREQ = b("f764d3b6");
const ck = (actorId, generation, index) => ({ actorId, generation, index: BigInt(index) });
const mid = (requestId, messageIndex) => ({ gatewayId: GW, requestId, messageIndex });
const meta = (version, ts) => ({ version: b(version), updateTs: BigInt(ts) });
const page = (pgno, fill) => ({ pgno, bytes: b(fill.repeat(8)) }); // 8-byte stand-in for a 4 KiB page
const sqlErr = { tag: "SqliteErrorResponse", val: { group: "depot", code: "database_not_found", message: "transaction failed: sqlite database was not found in this bucket branch" } };

const toRivet = [
	// ---- top level
	["metadata", { tag: "ToRivetMetadata", val: { prepopulateActorNames: new Map([["echo", { metadata: "{}" }], ["counter", { metadata: "{}" }]]), metadata: '{"rivetkit":{"version":"2.3.19"}}' } }],
	["metadata_empty", { tag: "ToRivetMetadata", val: { prepopulateActorNames: null, metadata: null } }],
	["events_running", { tag: "ToRivetEvents", val: [{ checkpoint: ck(ACTOR, 1, 0), inner: { tag: "EventActorStateUpdate", val: { state: { tag: "ActorStateRunning", val: null } } } }] }],
	[
		"events_intents_alarms_stopped",
		{
			tag: "ToRivetEvents",
			val: [
				{ checkpoint: ck(ACTOR, 1, 1), inner: { tag: "EventActorSetAlarm", val: { alarmTs: null } } },
				{ checkpoint: ck(ACTOR, 1, 2), inner: { tag: "EventActorSetAlarm", val: { alarmTs: 1795424481957n } } },
				{ checkpoint: ck(ACTOR, 1, 3), inner: { tag: "EventActorIntent", val: { intent: { tag: "ActorIntentSleep", val: null } } } },
				{ checkpoint: ck(ACTOR, 1, 4), inner: { tag: "EventActorIntent", val: { intent: { tag: "ActorIntentStop", val: null } } } },
				{ checkpoint: ck(ACTOR, 1, 5), inner: { tag: "EventActorStateUpdate", val: { state: { tag: "ActorStateStopped", val: { code: P.StopCode.Ok, message: null } } } } },
			],
		},
	],
	["events_stopped_error", { tag: "ToRivetEvents", val: [{ checkpoint: ck(ACTOR2, 1, 0), inner: { tag: "EventActorStateUpdate", val: { state: { tag: "ActorStateStopped", val: { code: P.StopCode.Error, message: "not_registered: Actor factory 'unregistered' is not registered." } } } } }] }],
	["events_empty", { tag: "ToRivetEvents", val: [] }],
	["ack_commands", { tag: "ToRivetAckCommands", val: { lastCommandCheckpoints: [ck(ACTOR, 1, 1), ck(ACTOR, 2, 2), ck(ACTOR2, 1, 1)] } }],
	["stopping", { tag: "ToRivetStopping", val: null }],
	["pong", { tag: "ToRivetPong", val: { ts: 1795424472306n } }],

	// ---- KV requests
	["kv_get", { tag: "ToRivetKvRequest", val: { actorId: ACTOR, requestId: 0, data: { tag: "KvGetRequest", val: { keys: [b("01"), b("06"), b("03"), b("050101")] } } } }],
	["kv_list_all", { tag: "ToRivetKvRequest", val: { actorId: ACTOR, requestId: 1, data: { tag: "KvListRequest", val: { query: { tag: "KvListAllQuery", val: null }, reverse: null, limit: null } } } }],
	["kv_list_range", { tag: "ToRivetKvRequest", val: { actorId: ACTOR, requestId: 2, data: { tag: "KvListRequest", val: { query: { tag: "KvListRangeQuery", val: { start: b("0400"), end: b("04ff"), exclusive: true } }, reverse: true, limit: 10n } } } }],
	["kv_list_prefix", { tag: "ToRivetKvRequest", val: { actorId: ACTOR, requestId: 3, data: { tag: "KvListRequest", val: { query: { tag: "KvListPrefixQuery", val: { key: b("02") } }, reverse: false, limit: 1n } } } }],
	["kv_put", { tag: "ToRivetKvRequest", val: { actorId: ACTOR, requestId: 4, data: { tag: "KvPutRequest", val: { keys: [b("03"), b("0401")], values: [t("inspector-token"), b("")] } } } }],
	["kv_delete", { tag: "ToRivetKvRequest", val: { actorId: ACTOR, requestId: 5, data: { tag: "KvDeleteRequest", val: { keys: [b("0401")] } } } }],
	["kv_delete_range", { tag: "ToRivetKvRequest", val: { actorId: ACTOR, requestId: 6, data: { tag: "KvDeleteRangeRequest", val: { start: b("04"), end: b("05") } } } }],
	["kv_drop", { tag: "ToRivetKvRequest", val: { actorId: ACTOR, requestId: 4294967295, data: { tag: "KvDropRequest", val: null } } }],

	// ---- tunnel, actor -> gateway
	["tunnel_response_start", { tag: "ToRivetTunnelMessage", val: { messageId: mid(REQ, 0), messageKind: { tag: "ToRivetResponseStart", val: { status: 200, headers: new Map([["content-type", "application/octet-stream"], ["x-rivet-actor-key", "obs"], ["x-rivet-actor-generation", "1"], ["x-rivet-actor", ACTOR], ["content-length", "4"]]), body: b("04000101"), stream: false } } } }],
	["tunnel_response_start_stream", { tag: "ToRivetTunnelMessage", val: { messageId: mid(REQ, 0), messageKind: { tag: "ToRivetResponseStart", val: { status: 404, headers: new Map(), body: null, stream: true } } } }],
	["tunnel_response_chunk", { tag: "ToRivetTunnelMessage", val: { messageId: mid(REQ, 1), messageKind: { tag: "ToRivetResponseChunk", val: { body: t("chunk"), finish: true } } } }],
	["tunnel_response_abort", { tag: "ToRivetTunnelMessage", val: { messageId: mid(REQ, 2), messageKind: { tag: "ToRivetResponseAbort", val: { reason: { kind: P.HttpStreamAbortReasonKind.HandlerError, detail: "boom" } } } } }],
	["tunnel_request_body_window_update", { tag: "ToRivetTunnelMessage", val: { messageId: mid(REQ, 3), messageKind: { tag: "ToRivetRequestBodyWindowUpdate", val: { consumedBytes: 65536n } } } }],
	["tunnel_request_body_cancel", { tag: "ToRivetTunnelMessage", val: { messageId: mid(REQ, 4), messageKind: { tag: "ToRivetRequestBodyCancel", val: null } } }],
	["tunnel_ws_open", { tag: "ToRivetTunnelMessage", val: { messageId: mid(WSREQ, 0), messageKind: { tag: "ToRivetWebSocketOpen", val: { canHibernate: true } } } }],
	["tunnel_ws_message_binary", { tag: "ToRivetTunnelMessage", val: { messageId: mid(WSREQ, 1), messageKind: { tag: "ToRivetWebSocketMessage", val: { data: b("040003086e6577436f756e74028106"), binary: true } } } }],
	["tunnel_ws_message_text", { tag: "ToRivetTunnelMessage", val: { messageId: mid(WSREQ, 65535), messageKind: { tag: "ToRivetWebSocketMessage", val: { data: t('{"body":{"tag":"Init"}}'), binary: false } } } }],
	["tunnel_ws_message_ack", { tag: "ToRivetTunnelMessage", val: { messageId: mid(WSREQ, 1), messageKind: { tag: "ToRivetWebSocketMessageAck", val: { index: 1 } } } }],
	["tunnel_ws_close", { tag: "ToRivetTunnelMessage", val: { messageId: mid(WSREQ, 0), messageKind: { tag: "ToRivetWebSocketClose", val: { code: 1000, reason: "Disposed", hibernate: false } } } }],
	["tunnel_ws_close_hibernate", { tag: "ToRivetTunnelMessage", val: { messageId: mid(WSREQ, 0), messageKind: { tag: "ToRivetWebSocketClose", val: { code: null, reason: null, hibernate: true } } } }],

	// ---- SQLite page store
	["sqlite_get_pages", { tag: "ToRivetSqliteGetPagesRequest", val: { requestId: 0, data: { actorId: ACTOR, pgnos: [1, 2, 3, 128], expectedGeneration: 1n, expectedHeadTxid: null } } }],
	["sqlite_get_pages_no_fence", { tag: "ToRivetSqliteGetPagesRequest", val: { requestId: 1, data: { actorId: ACTOR, pgnos: [], expectedGeneration: null, expectedHeadTxid: 9n } } }],
	["sqlite_commit", { tag: "ToRivetSqliteCommitRequest", val: { requestId: 2, data: { actorId: ACTOR, dirtyPages: [page(1, "53"), page(18, "00")], dbSizePages: 18, nowMs: 1795424481976n, expectedGeneration: 2n, expectedHeadTxid: 9n } } }],
	["sqlite_commit_first", { tag: "ToRivetSqliteCommitRequest", val: { requestId: 3, data: { actorId: ACTOR, dirtyPages: [page(1, "aa")], dbSizePages: 2, nowMs: 1795424478916n, expectedGeneration: 1n, expectedHeadTxid: 0n } } }],
	["sqlite_stage_begin", { tag: "ToRivetSqliteCommitStageBeginRequest", val: { requestId: 4, data: { actorId: ACTOR, expectedGeneration: 1n, expectedHeadTxid: 7n } } }],
	["sqlite_stage_segment", { tag: "ToRivetSqliteCommitStageSegmentRequest", val: { requestId: 5, data: { actorId: ACTOR, expectedGeneration: 1n, txid: 8n, firstPgno: 1, dirtyPages: [page(1, "01"), page(2, "02")] } } }],
	["sqlite_finalize", { tag: "ToRivetSqliteCommitFinalizeRequest", val: { requestId: 6, data: { actorId: ACTOR, expectedGeneration: 1n, txid: 8n, newDbSizePages: 400, nowMs: 1795424499243n, segmentFirstPgnos: Uint32Array.from([1, 257]) } } }],
	["sqlite_exec", { tag: "ToRivetSqliteExecRequest", val: { requestId: 7, data: { namespaceId: NSID, actorId: ACTOR, generation: 1n, sql: "SELECT 1" } } }],
	[
		"sqlite_execute_params",
		{
			tag: "ToRivetSqliteExecuteRequest",
			val: {
				requestId: 8,
				data: {
					namespaceId: NSID,
					actorId: ACTOR,
					generation: 1n,
					sql: "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
					params: [
						{ tag: "SqliteValueNull", val: null },
						{ tag: "SqliteValueInteger", val: { value: -42n } },
						{ tag: "SqliteValueFloat", val: { value: b("000000000000f83f") } },
						{ tag: "SqliteValueText", val: { value: "héllo" } },
						{ tag: "SqliteValueBlob", val: { value: b("deadbeef") } },
					],
				},
			},
		},
	],
	["sqlite_execute_batch", { tag: "ToRivetSqliteExecuteBatchRequest", val: { requestId: 9, data: { namespaceId: NSID, actorId: ACTOR, generation: 1n, statements: [{ sql: "BEGIN", params: null }, { sql: "DELETE FROM t WHERE id = ?", params: [{ tag: "SqliteValueInteger", val: { value: 1n } }] }] } } }],
];

const toEnvoy = [
	["init", { tag: "ToEnvoyInit", val: { metadata: { envoyLostThreshold: 15000n, actorStopThreshold: 1800000n, maxResponsePayloadSize: 20971520n } } }],
	["commands_start_minimal", { tag: "ToEnvoyCommands", val: [{ checkpoint: ck(ACTOR, 1, 1), inner: { tag: "CommandStartActor", val: { config: { name: "counter", key: "obs", createTs: 1795424478874n, input: null }, hibernatingRequests: [], preloadedKv: null } } }] }],
	[
		"commands_start_full",
		{
			tag: "ToEnvoyCommands",
			val: [
				{
					checkpoint: ck(ACTOR, 3, 1),
					inner: {
						tag: "CommandStartActor",
						val: {
							config: { name: "counter", key: "a/b\\/c", createTs: 1795424497995n, input: b("a1616101") },
							hibernatingRequests: [{ gatewayId: GW, requestId: WSREQ }, { gatewayId: b("00000001"), requestId: b("ffffffff") }],
							preloadedKv: { entries: [{ key: b("01"), value: t("state"), metadata: meta("0102", 1795424478874) }], requestedGetKeys: [b("01"), b("03")], requestedPrefixes: [b("02")] },
						},
					},
				},
			],
		},
	],
	["commands_start_no_key", { tag: "ToEnvoyCommands", val: [{ checkpoint: ck(ACTOR2, 1, 1), inner: { tag: "CommandStartActor", val: { config: { name: "echo", key: null, createTs: 0n, input: b("") }, hibernatingRequests: [], preloadedKv: { entries: [], requestedGetKeys: [], requestedPrefixes: [] } } } }] }],
	[
		"commands_stop_all_reasons",
		{
			tag: "ToEnvoyCommands",
			val: [P.StopActorReason.SleepIntent, P.StopActorReason.StopIntent, P.StopActorReason.Destroy, P.StopActorReason.GoingAway, P.StopActorReason.Lost].map((reason, i) => ({ checkpoint: ck(ACTOR, 1, 2 + i), inner: { tag: "CommandStopActor", val: { reason } } })),
		},
	],
	["commands_empty", { tag: "ToEnvoyCommands", val: [] }],
	["ack_events", { tag: "ToEnvoyAckEvents", val: { lastEventCheckpoints: [ck(ACTOR, 1, 249), ck(ACTOR2, 4, 1000000)] } }],
	["ping", { tag: "ToEnvoyPing", val: { ts: 1795424472306n } }],

	// ---- KV responses
	["kv_error", { tag: "ToEnvoyKvResponse", val: { requestId: 0, data: { tag: "KvErrorResponse", val: { message: "value too large" } } } }],
	["kv_get_response", { tag: "ToEnvoyKvResponse", val: { requestId: 1, data: { tag: "KvGetResponse", val: { keys: [b("03")], values: [t("token")], metadata: [meta("0001", 1795424479016)] } } } }],
	["kv_get_response_empty", { tag: "ToEnvoyKvResponse", val: { requestId: 2, data: { tag: "KvGetResponse", val: { keys: [], values: [], metadata: [] } } } }],
	["kv_list_response", { tag: "ToEnvoyKvResponse", val: { requestId: 3, data: { tag: "KvListResponse", val: { keys: [b("0401"), b("0402")], values: [b("01"), b("")], metadata: [meta("", 1), meta("ff", -1)] } } } }],
	["kv_put_response", { tag: "ToEnvoyKvResponse", val: { requestId: 4, data: { tag: "KvPutResponse", val: null } } }],
	["kv_delete_response", { tag: "ToEnvoyKvResponse", val: { requestId: 5, data: { tag: "KvDeleteResponse", val: null } } }],
	["kv_drop_response", { tag: "ToEnvoyKvResponse", val: { requestId: 6, data: { tag: "KvDropResponse", val: null } } }],

	// ---- tunnel, gateway -> actor
	[
		"tunnel_request_start",
		{
			tag: "ToEnvoyTunnelMessage",
			val: {
				messageId: mid(REQ, 0),
				messageKind: {
					tag: "ToEnvoyRequestStart",
					val: {
						actorId: ACTOR,
						actorGeneration: null,
						method: "POST",
						path: "/action/increment",
						headers: new Map([["x-rivet-encoding", "bare"], ["content-type", "application/octet-stream"], ["x-rivet-ray-id", "xcv5i00knj494nhvqrgano2cs6cl00"], ["host", "127.0.0.1:6420"]]),
						body: b("0400028101"),
						stream: false,
						responseStream: false,
					},
				},
			},
		},
	],
	["tunnel_request_start_streaming", { tag: "ToEnvoyTunnelMessage", val: { messageId: mid(REQ, 0), messageKind: { tag: "ToEnvoyRequestStart", val: { actorId: ACTOR, actorGeneration: 3, method: "GET", path: "/request/x?y=1", headers: new Map(), body: null, stream: true, responseStream: true } } } }],
	["tunnel_request_chunk", { tag: "ToEnvoyTunnelMessage", val: { messageId: mid(REQ, 1), messageKind: { tag: "ToEnvoyRequestChunk", val: { body: t("part"), finish: false } } } }],
	["tunnel_request_abort", { tag: "ToEnvoyTunnelMessage", val: { messageId: mid(REQ, 2), messageKind: { tag: "ToEnvoyRequestAbort", val: { actorId: ACTOR, actorGeneration: 3, reason: { kind: P.HttpStreamAbortReasonKind.Cancelled, detail: null } } } } }],
	["tunnel_request_abort_bare", { tag: "ToEnvoyTunnelMessage", val: { messageId: mid(REQ, 2), messageKind: { tag: "ToEnvoyRequestAbort", val: { actorId: null, actorGeneration: null, reason: { kind: P.HttpStreamAbortReasonKind.InternalError, detail: "x" } } } } }],
	["tunnel_request_body_cancel", { tag: "ToEnvoyTunnelMessage", val: { messageId: mid(REQ, 3), messageKind: { tag: "ToEnvoyRequestBodyCancel", val: null } } }],
	["tunnel_response_body_window_update", { tag: "ToEnvoyTunnelMessage", val: { messageId: mid(REQ, 4), messageKind: { tag: "ToEnvoyResponseBodyWindowUpdate", val: { consumedBytes: 18446744073709551615n } } } }],
	["tunnel_ws_open", { tag: "ToEnvoyTunnelMessage", val: { messageId: mid(WSREQ, 0), messageKind: { tag: "ToEnvoyWebSocketOpen", val: { actorId: ACTOR, actorGeneration: null, path: "/connect", headers: new Map([["sec-websocket-protocol", "rivet,rivet_encoding.bare"], ["upgrade", "websocket"]]) } } } }],
	["tunnel_ws_message_binary", { tag: "ToEnvoyTunnelMessage", val: { messageId: mid(WSREQ, 1), messageKind: { tag: "ToEnvoyWebSocketMessage", val: { data: b("0400000009696e6372656d656e74028103"), binary: true } } } }],
	["tunnel_ws_message_text", { tag: "ToEnvoyTunnelMessage", val: { messageId: mid(WSREQ, 2), messageKind: { tag: "ToEnvoyWebSocketMessage", val: { data: t("héllo"), binary: false } } } }],
	["tunnel_ws_close", { tag: "ToEnvoyTunnelMessage", val: { messageId: mid(WSREQ, 3), messageKind: { tag: "ToEnvoyWebSocketClose", val: { code: 1000, reason: "Disposed" } } } }],
	["tunnel_ws_close_empty", { tag: "ToEnvoyTunnelMessage", val: { messageId: mid(WSREQ, 4), messageKind: { tag: "ToEnvoyWebSocketClose", val: { code: null, reason: null } } } }],

	// ---- SQLite responses
	["sqlite_get_pages_ok", { tag: "ToEnvoySqliteGetPagesResponse", val: { requestId: 0, data: { tag: "SqliteGetPagesOk", val: { pages: [page(1, "53"), { pgno: 2, bytes: null }], headTxid: 9n } } } }],
	["sqlite_get_pages_ok_empty", { tag: "ToEnvoySqliteGetPagesResponse", val: { requestId: 1, data: { tag: "SqliteGetPagesOk", val: { pages: [], headTxid: null } } } }],
	["sqlite_get_pages_error", { tag: "ToEnvoySqliteGetPagesResponse", val: { requestId: 2, data: sqlErr } }],
	["sqlite_commit_ok", { tag: "ToEnvoySqliteCommitResponse", val: { requestId: 3, data: { tag: "SqliteCommitOk", val: { headTxid: 1n } } } }],
	["sqlite_commit_error", { tag: "ToEnvoySqliteCommitResponse", val: { requestId: 4, data: { tag: "SqliteErrorResponse", val: { group: "depot", code: "commit_too_large", message: "commit too large" } } } }],
	["sqlite_stage_begin_ok", { tag: "ToEnvoySqliteCommitStageBeginResponse", val: { requestId: 5, data: { tag: "SqliteCommitStageBeginOk", val: { txid: 8n } } } }],
	["sqlite_stage_begin_error", { tag: "ToEnvoySqliteCommitStageBeginResponse", val: { requestId: 6, data: sqlErr } }],
	["sqlite_stage_segment_ok", { tag: "ToEnvoySqliteCommitStageSegmentResponse", val: { requestId: 7, data: { tag: "SqliteCommitStageSegmentOk", val: { stagedBytes: 8192n } } } }],
	["sqlite_stage_segment_error", { tag: "ToEnvoySqliteCommitStageSegmentResponse", val: { requestId: 8, data: sqlErr } }],
	["sqlite_finalize_ok", { tag: "ToEnvoySqliteCommitFinalizeResponse", val: { requestId: 9, data: { tag: "SqliteCommitFinalizeOk", val: { headTxid: 8n } } } }],
	["sqlite_finalize_error", { tag: "ToEnvoySqliteCommitFinalizeResponse", val: { requestId: 10, data: sqlErr } }],
	["sqlite_exec_ok", { tag: "ToEnvoySqliteExecResponse", val: { requestId: 11, data: { tag: "SqliteExecOk", val: { result: { columns: ["1"], rows: [[{ tag: "SqliteValueInteger", val: { value: 1n } }]] } } } } }],
	["sqlite_exec_error", { tag: "ToEnvoySqliteExecResponse", val: { requestId: 12, data: { tag: "SqliteErrorResponse", val: { group: "sqlite", code: "error", message: "no such table: t" } } } }],
	[
		"sqlite_execute_ok",
		{
			tag: "ToEnvoySqliteExecuteResponse",
			val: {
				requestId: 13,
				data: {
					tag: "SqliteExecuteOk",
					val: { result: { columns: ["a", "b", "c", "d", "e"], rows: [[{ tag: "SqliteValueNull", val: null }, { tag: "SqliteValueInteger", val: { value: -9223372036854775808n } }, { tag: "SqliteValueFloat", val: { value: b("182d4454fb210940") } }, { tag: "SqliteValueText", val: { value: "" } }, { tag: "SqliteValueBlob", val: { value: b("00") } }]], changes: 1n, lastInsertRowId: 7n } },
				},
			},
		},
	],
	["sqlite_execute_batch_ok", { tag: "ToEnvoySqliteExecuteBatchResponse", val: { requestId: 14, data: { tag: "SqliteExecuteBatchOk", val: { results: [{ columns: [], rows: [], changes: 0n, lastInsertRowId: null }] } } } }],
	["sqlite_execute_batch_error", { tag: "ToEnvoySqliteExecuteBatchResponse", val: { requestId: 15, data: sqlErr } }],
];

const entries = [];
const seenTags = { to_rivet: new Set(), to_envoy: new Set() };
for (const [direction, list, enc, dec] of [
	["to_rivet", toRivet, P.encodeToRivet, P.decodeToRivet],
	["to_envoy", toEnvoy, P.encodeToEnvoy, P.decodeToEnvoy],
]) {
	for (const [name, msg] of list) {
		const bytes = enc(msg);
		const value = render(msg);
		const back = render(dec(bytes));
		if (JSON.stringify(back) !== JSON.stringify(value)) {
			throw new Error(`${direction}/${name}: decode(encode(x)) differs\n  in:  ${JSON.stringify(value)}\n  out: ${JSON.stringify(back)}`);
		}
		seenTags[direction].add(msg.tag);
		entries.push({ name, direction, hex: hex(bytes), value });
	}
}

// Every top-level variant must be covered.
const allRivet = ["ToRivetMetadata", "ToRivetEvents", "ToRivetAckCommands", "ToRivetStopping", "ToRivetPong", "ToRivetKvRequest", "ToRivetTunnelMessage", "ToRivetSqliteGetPagesRequest", "ToRivetSqliteCommitRequest", "ToRivetSqliteCommitStageBeginRequest", "ToRivetSqliteCommitStageSegmentRequest", "ToRivetSqliteCommitFinalizeRequest", "ToRivetSqliteExecRequest", "ToRivetSqliteExecuteRequest", "ToRivetSqliteExecuteBatchRequest"];
const allEnvoy = ["ToEnvoyInit", "ToEnvoyCommands", "ToEnvoyAckEvents", "ToEnvoyKvResponse", "ToEnvoyTunnelMessage", "ToEnvoyPing", "ToEnvoySqliteGetPagesResponse", "ToEnvoySqliteCommitResponse", "ToEnvoySqliteCommitStageBeginResponse", "ToEnvoySqliteCommitStageSegmentResponse", "ToEnvoySqliteCommitFinalizeResponse", "ToEnvoySqliteExecResponse", "ToEnvoySqliteExecuteResponse", "ToEnvoySqliteExecuteBatchResponse"];
for (const tag of allRivet) if (!seenTags.to_rivet.has(tag)) throw new Error(`no fixture for ${tag}`);
for (const tag of allEnvoy) if (!seenTags.to_envoy.has(tag)) throw new Error(`no fixture for ${tag}`);

// One entry per line keeps diffs readable.
fs.writeFileSync(OUT, `[\n${entries.map((e) => JSON.stringify(e)).join(",\n")}\n]\n`);
console.log(`wrote ${entries.length} fixtures to ${path.relative(process.cwd(), OUT)}`);
