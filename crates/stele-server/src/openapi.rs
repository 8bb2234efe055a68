//! `/openapi.json`: an OpenAPI 3.1 description of exactly the routes the
//! server serves (built from [`crate::app::routes`], the table the router is built from).

use serde_json::{Map, Value, json};

use crate::app::routes;

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message", "request_id"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
                "details": {"type": "object"}
            }
        }}
    })
}

/// An object with exactly these fields: `required` always, `optional`
/// when they apply; any other field is a departure from the document.
fn object(required: &[(&str, Value)], optional: &[(&str, Value)]) -> Value {
    let properties: Map<String, Value> = required
        .iter()
        .chain(optional)
        .map(|(name, schema)| ((*name).to_owned(), schema.clone()))
        .collect();
    json!({
        "type": "object",
        "required": required.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        "properties": properties,
        "additionalProperties": false,
    })
}

fn hash() -> Value {
    json!({"$ref": "#/components/schemas/Hash"})
}

fn count() -> Value {
    json!({"type": "integer", "minimum": 0})
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn parameters(path: &str) -> Vec<Value> {
    let mut params = Vec::new();
    if path.contains("{chain}") {
        params.push(json!({"name": "chain", "in": "path", "required": true, "example": "default", "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"}}));
    }
    if path.contains("{seq}") {
        params.push(json!({"name": "seq", "in": "path", "required": true, "example": 0, "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX}}));
    }
    params
}

fn query(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema})
}

fn operation(method: &str, path: &str) -> Value {
    let mut params = parameters(path);
    let ok_json = |description: &str, schema: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let mut responses = Map::new();
    let mut body = None;
    let public = matches!(path, "/healthz" | "/readyz" | "/openapi.json");
    match (method, path) {
        ("POST", "/v1/verification/run") => {
            responses.insert(
                "202".into(),
                ok_json(
                    "a verification run was started; GET /v1/verification shows its result",
                    "Started",
                ),
            );
            responses.insert(
                "404".into(),
                error_response("this gateway runs no scheduled verification"),
            );
        }
        ("GET", "/v1/verification") => {
            responses.insert(
                "200".into(),
                ok_json(
                    "the newest verification result and run counts",
                    "Verification",
                ),
            );
            responses.insert(
                "404".into(),
                error_response("this gateway runs no scheduled verification"),
            );
        }
        ("POST", _) => {
            params.push(query("proof", json!({"type": "boolean"})));
            params.push(query(
                "wait",
                json!({"type": "string", "enum": ["anchored"]}),
            ));
            params.push(query("timeout", json!({"type": "integer", "minimum": 0})));
            params.push(json!({"name": "Idempotency-Key", "in": "header", "required": false, "description": "the key of a single event; each event of a batch gets <key>#<index> (keep it under 120 characters)", "schema": {"type": "string", "maxLength": 128}}));
            body = Some(json!({"required": true, "content": {
                "application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/EventInput"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/EventInput"}}
                ]}},
                "application/x-ndjson": {"schema": {"type": "string"}}
            }}));
            responses.insert(
                "201".into(),
                ok_json("appended; one receipt per event", "Appended"),
            );
            responses.insert(
                "200".into(),
                ok_json(
                    "every event was a repeat of an idempotency key: the original receipts",
                    "Appended",
                ),
            );
            responses.insert(
                "504".into(),
                error_response(
                    "the commit was not confirmed in time: the events may be written; retry with the same Idempotency-Key",
                ),
            );
            responses.insert(
                "409".into(),
                error_response("an idempotency key was used for a different event"),
            );
            responses.insert("413".into(), error_response("body or batch too large"));
            responses.insert("415".into(), error_response("unsupported content type"));
            responses.insert(
                "422".into(),
                error_response("invalid events, each named by index; nothing appended"),
            );
            responses.insert(
                "429".into(),
                error_response(
                    "too many appends, or too many body bytes, in progress; nothing appended",
                ),
            );
        }
        (_, "/metrics") => {
            responses.insert("200".into(), json!({"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}));
        }
        (_, p) if p.ends_with("/events") => {
            params.push(query("from", json!({"type": "integer", "minimum": 0})));
            params.push(query("limit", json!({"type": "integer", "minimum": 0})));
            responses.insert("200".into(), ok_json("a page of events", "EventPage"));
        }
        (_, p) if p.ends_with("/events/{seq}") => {
            params.push(query("proof", json!({"type": "boolean"})));
            responses.insert("200".into(), ok_json("the event", "EventRead"));
        }
        (_, p) if p.contains("/proofs/inclusion/") => {
            params.push(query("tree_size", json!({"type": "integer", "minimum": 0})));
            params.push(query(
                "format",
                json!({"type": "string", "enum": ["json", "tlog-proof"]}),
            ));
            responses.insert(
                "200".into(),
                json!({"description": "the proof", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/InclusionProof"}},
                    "text/plain": {"schema": {"type": "string"}}
                }}),
            );
        }
        (_, p) if p.ends_with("/proofs/consistency") => {
            params.push(json!({"name": "from", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 0}}));
            params.push(query("to", json!({"type": "integer", "minimum": 0})));
            responses.insert("200".into(), ok_json("the proof", "ConsistencyProof"));
        }
        (_, p) if p.ends_with("/checkpoint") => {
            params.push(query("tree_size", json!({"type": "integer", "minimum": 0})));
            responses.insert(
                "200".into(),
                ok_json("a C2SP checkpoint of a checked tree, signed", "Checkpoint"),
            );
        }
        (_, "/v1/anchors") => {
            params.push(query("chain", json!({"type": "string"})));
            params.push(query(
                "status",
                json!({"type": "string", "enum": ["pending", "uploaded", "verified"]}),
            ));
            responses.insert(
                "200".into(),
                ok_json("anchors and the outbox backlog", "Anchors"),
            );
        }
        (_, "/healthz") => {
            responses.insert("200".into(), ok_json("the process is alive", "Alive"));
        }
        (_, "/readyz") => {
            responses.insert("200".into(), ok_json("ready to take appends", "Ready"));
        }
        (_, "/v1/chains") => {
            responses.insert("200".into(), ok_json("every chain's head", "Chains"));
        }
        (_, "/v1/chains/{chain}") => {
            responses.insert("200".into(), ok_json("the chain's head", "ChainHead"));
        }
        _ => {
            responses.insert(
                "200".into(),
                json!({"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}),
            );
        }
    }
    responses.insert("400".into(), error_response("malformed request"));
    if !public {
        responses.insert(
            "500".into(),
            error_response(
                "storage or signing failed, or the ledger does not check (ledger_check_failed: nothing was signed)",
            ),
        );
    }
    if path.contains("{chain}") || path.contains("{seq}") {
        responses.insert(
            "404".into(),
            error_response("unknown chain or seq out of range"),
        );
    }
    if !public {
        responses.insert("401".into(), error_response("no valid bearer token"));
        responses.insert(
            "403".into(),
            error_response("the token lacks the scope or the chain"),
        );
    }
    responses.insert(
        "503".into(),
        error_response("busy, shutting down, or storage unavailable"),
    );
    let mut op = json!({"operationId": operation_id(method, path), "parameters": params, "responses": responses});
    if let (Some(body), Some(map)) = (body, op.as_object_mut()) {
        map.insert("requestBody".into(), body);
    }
    if !public && let Some(map) = op.as_object_mut() {
        map.insert("security".into(), json!([{"bearer": []}]));
    }
    op
}

fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "v1")
        .map(|s| s.trim_matches(|c| c == '{' || c == '}'))
        .collect();
    format!(
        "{}_{}",
        method.to_ascii_lowercase(),
        words.join("_").replace(['.', '-'], "_")
    )
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path) in routes() {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        if let Some(map) = entry.as_object_mut() {
            map.insert(method.to_ascii_lowercase(), operation(method, path));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "stele gateway", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Append audit events, read them back with proofs, watch anchoring."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": error_schema(),
                "Hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "Receipt": object(
                    &[
                        ("chain_id", json!({"type": "string"})),
                        ("seq", count()),
                        ("ts", json!({"type": "string"})),
                        ("leaf_hash", hash()),
                        ("event_hash", hash()),
                        ("key_id", json!({"type": "string"})),
                        ("duplicate", json!({"type": "boolean"})),
                    ],
                    &[
                        ("tree_size", count()),
                        ("tlog_proof", json!({"type": "string"})),
                        ("proof_error", json!({"type": "string"})),
                    ],
                ),
                "Appended": object(
                    &[
                        ("chain_id", json!({"type": "string"})),
                        ("appended", count()),
                        ("duplicates", count()),
                        ("receipts", json!({"type": "array", "items": {"$ref": "#/components/schemas/Receipt"}})),
                    ],
                    &[
                        ("anchored", json!({"type": "boolean"})),
                        ("anchor", json!({"type": ["object", "null"]})),
                        ("anchor_error", json!({"type": "string"})),
                    ],
                ),
                "Event": object(
                    &[
                        ("chain_id", json!({"type": "string"})),
                        ("seq", count()),
                        ("ts", json!({"type": "string"})),
                        ("type", json!({"type": "string"})),
                        ("actor", json!({"type": ["string", "null"]})),
                        ("payload", json!({})),
                        ("idempotency_key", json!({"type": ["string", "null"]})),
                        ("key_id", json!({"type": "string"})),
                        ("leaf_hash", hash()),
                        ("event_hash", hash()),
                    ],
                    &[],
                ),
                "EventRead": object(
                    &[("event", json!({"$ref": "#/components/schemas/Event"}))],
                    &[("tree_size", count()), ("tlog_proof", json!({"type": "string"}))],
                ),
                "EventPage": object(
                    &[
                        ("chain_id", json!({"type": "string"})),
                        ("events", json!({"type": "array", "items": {"$ref": "#/components/schemas/Event"}})),
                        ("next_from", json!({"type": ["integer", "null"], "minimum": 0})),
                    ],
                    &[],
                ),
                "ChainHead": object(
                    &[
                        ("chain_id", json!({"type": "string"})),
                        ("size", count()),
                        ("head_hash", hash()),
                        ("last_ts", json!({"type": ["string", "null"]})),
                    ],
                    &[],
                ),
                "Chains": object(
                    &[("chains", json!({"type": "array", "items": {"$ref": "#/components/schemas/ChainHead"}}))],
                    &[],
                ),
                "Checkpoint": object(
                    &[
                        ("chain_id", json!({"type": "string"})),
                        ("tree_size", count()),
                        ("root_hash", hash()),
                        ("checkpoint", json!({"type": "string"})),
                    ],
                    &[],
                ),
                "InclusionProof": object(
                    &[
                        ("chain_id", json!({"type": "string"})),
                        ("seq", count()),
                        ("tree_size", count()),
                        ("root_hash", hash()),
                        ("leaf_hash", hash()),
                        ("proof", json!({"type": "array", "items": {"$ref": "#/components/schemas/Hash"}})),
                        ("checkpoint", json!({"type": "string"})),
                    ],
                    &[],
                ),
                "ConsistencyProof": object(
                    &[
                        ("chain_id", json!({"type": "string"})),
                        ("from_size", count()),
                        ("from_root", hash()),
                        ("to_size", count()),
                        ("to_root", hash()),
                        ("proof", json!({"type": "array", "items": {"$ref": "#/components/schemas/Hash"}})),
                        ("checkpoint", json!({"type": "string"})),
                    ],
                    &[],
                ),
                "Anchors": object(
                    &[
                        ("anchors", json!({"type": "array", "items": {"type": "object"}})),
                        ("backlog", count()),
                        ("anchoring", json!({"type": ["object", "null"]})),
                    ],
                    &[],
                ),
                "Verification": object(
                    &[
                        ("runs", count()),
                        ("failed_runs", count()),
                        ("latest", json!({"type": ["object", "null"]})),
                    ],
                    &[],
                ),
                "Started": object(&[("started", json!({"const": true}))], &[]),
                "Alive": object(&[("status", json!({"const": "alive"}))], &[]),
                "Ready": object(
                    &[("status", json!({"const": "ready"})), ("anchor_backlog", count())],
                    &[],
                ),
                "EventInput": {
                    "type": "object",
                    "required": ["type"],
                    "additionalProperties": false,
                    "properties": {
                        "type": {"type": "string"},
                        "actor": {"type": ["string", "null"]},
                        "payload": {},
                        "idempotency_key": {"type": ["string", "null"]}
                    }
                }
            }
        }
    })
}
