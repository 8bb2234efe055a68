#!/usr/bin/env python3
"""Writes the seed corpus: fuzz/corpus/<target>/seed-*.

Real stele output lives in fuzz/seeds-src/ (made with `stele init --log-name
fuzz.stele.example`, appends, `stele anchor now --local-dir`, `stele
checkpoint`, `stele proof inclusion --format tlog-proof`, `stele log export`;
its keys are the fixtures in fuzz/src/lib.rs). Around it this script adds
small hostile inputs: deep nesting, huge numbers, duplicate keys, control
characters, overlong lines, truncations. Run it again after changing it;
it rewrites only seed-* files.
"""
import json
import os
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
SRC = HERE / "seeds-src"
CORPUS = HERE / "corpus"


def read(name):
    return (SRC / name).read_bytes()


corpus = {}


def seed(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    corpus.setdefault(target, {})[name] = data


ANCHORS = sorted(p.name for p in SRC.glob("anchor-*.json"))
anchor0, anchor1 = (read(a) for a in ANCHORS[:2])
checkpoint = read("checkpoint.txt")
export = read("production.jsonl")
proof0, proof4 = read("seq0.tlog-proof"), read("seq4.tlog-proof")
deep_array = "[" * 300 + "]" * 300
deep_object = '{"a":' * 200 + "1" + "}" * 200

# ---- events (event_json, event_jsonl) --------------------------------------
events = {
    "minimal": '{"type":"user.login"}',
    "full": '{"type":"user.login","actor":"alice@example.com","payload":{"ip":"10.0.0.7","mfa":true},"idempotency_key":"req-8812"}',
    "payload-null": '{"type":"a","payload":null}',
    "payload-scalar": '{"type":"a","payload":"just a string"}',
    "payload-floats": '{"type":"a","payload":{"x":1e-7,"y":-0.0,"z":1.5e300,"w":0.1}}',
    "max-safe-int": '{"type":"a","payload":{"n":9007199254740992}}',
    "imprecise-int": '{"type":"a","payload":{"n":9007199254740993,"m":-9007199254740993}}',
    "huge-number": '{"type":"a","payload":{"n":1e400,"m":123456789012345678901234567890}}',
    "duplicate-keys": '{"type":"a","type":"b","payload":{"k":1,"k":2}}',
    "control-actor": '{"type":"a","actor":"al\\u0000ice\\u001b[31m"}',
    "lone-surrogate": '{"type":"a","payload":{"s":"\\ud800"}}',
    "unicode-keys": '{"type":"a","payload":{"\\u00e9":1,"e\\u0301":2,"\\ud83d\\ude00":3}}',
    "type-overlong": json.dumps({"type": "t" * 129}),
    "type-bad-chars": '{"type":"user login\\n"}',
    "idem-overlong": json.dumps({"type": "a", "idempotency_key": "k" * 129}),
    "idem-space": '{"type":"a","idempotency_key":"has space"}',
    "unknown-field": '{"type":"a","seq":5}',
    "deep-array": '{"type":"a","payload":' + deep_array + "}",
    "deep-object": '{"type":"a","payload":' + deep_object + "}",
    "payload-at-limit": json.dumps({"type": "a", "payload": {"p": "x" * (65536 - 8)}}),
    "payload-over-limit": json.dumps({"type": "a", "payload": {"p": "x" * 65536}}),
    "not-object": "[1,2,3]",
    "truncated": '{"type":"user.login","payload":{"a":',
    "trailing": '{"type":"a"} {"type":"b"}',
}
for name, text in events.items():
    seed("event_json", name, text)
seed("event_jsonl", "batch", "\n".join(events[k] for k in ("minimal", "full", "payload-floats", "payload-null")) + "\n")
seed("event_jsonl", "batch-mixed", "\n".join(v for v in events.values() if len(v) < 4096) + "\n")
seed("event_jsonl", "crlf-blank-lines", "\r\n".join([events["minimal"], "", "   ", events["full"]]) + "\r\n")
seed("event_jsonl", "overlong-line", json.dumps({"type": "a", "payload": ["y" * 200] * 40}) + "\n" + events["minimal"])

# ---- export files (export_lines) --------------------------------------------
lines = export.decode().splitlines()
seed("export_lines", "real-export", export)
seed("export_lines", "real-export-with-anchors", export + anchor0 + b"\n" + anchor1 + b"\n")
tampered = json.loads(lines[3])
tampered["payload"]["ip"] = "10.6.6.6"
seed("export_lines", "tampered-payload", "\n".join(lines[:3] + [json.dumps(tampered, separators=(",", ":"))] + lines[4:]) + "\n")
seed("export_lines", "reordered", "\n".join([lines[1], lines[0]] + lines[2:]) + "\n")
seed("export_lines", "missing-row", "\n".join(lines[:5] + lines[6:]) + "\n")
dup = lines[2][:-1] + ',"seq":99}'
seed("export_lines", "duplicate-key-in-line", dup + "\n")
seed("export_lines", "payload-not-json-string", lines[0].replace('"payload":{', '"payload":"{').replace("}},", '}",', 1) + "\n")
seed("export_lines", "huge-seq", lines[0].replace('"seq":0', '"seq":18446744073709551615') + "\n" + lines[0].replace('"seq":0', '"seq":18446744073709551616') + "\n")
seed("export_lines", "truncated", export[: len(export) // 2])
seed("export_lines", "control-chars", lines[0].replace("alice@example.com", "alice\\u0000\\u001b") + "\n")
seed("export_lines", "bad-hashes", lines[0].replace('"key_id":"k1"', '"key_id":"k9"').replace('"leaf_hash":"', '"leaf_hash":"zz') + "\n")

# ---- anchors (anchor, anchor_audit) ----------------------------------------
a1 = json.loads(anchor1)
seed("anchor", "real-0", anchor0)
seed("anchor", "real-1", anchor1)
seed("anchor", "pretty-printed", json.dumps(a1, indent=2))
for field, value in [("tree_size", 11), ("anchor_seq", 18446744073709551615), ("last_seq", None),
                     ("root_hash", "00" * 32), ("trigger", "bogus"), ("version", "stele.anchor/v2"),
                     ("ts_utc", "2026-13-45T99:00:00Z"), ("signature", "!!!"), ("consistency_proof", ["zz"] * 70)]:
    copy = dict(a1)
    copy[field] = value
    seed("anchor", "field-" + field, json.dumps(copy, separators=(",", ":"), ensure_ascii=False))
seed("anchor", "seq-overflow", anchor1.decode().replace('"anchor_seq":1', '"anchor_seq":18446744073709551616'))
seed("anchor", "duplicate-key", anchor1.decode().replace('{"anchor_seq":1,', '{"anchor_seq":1,"anchor_seq":2,'))
seed("anchor", "unknown-field", anchor1.decode().replace('{"anchor_seq":1,', '{"extra":true,"anchor_seq":1,'))
seed("anchor", "deep", deep_array)
seed("anchor", "truncated", anchor1[: len(anchor1) // 2])
key0 = "anchors/production/2026/12/01/23/" + ANCHORS[0]
key1 = "anchors/production/2026/12/01/23/" + ANCHORS[1]
sep = b"\n---\n"
seed("anchor_audit", "real-pair", key0.encode() + b"\n" + anchor0 + sep + key1.encode() + b"\n" + anchor1)
seed("anchor_audit", "reversed", key1.encode() + b"\n" + anchor1 + sep + key0.encode() + b"\n" + anchor0)
seed("anchor_audit", "fork", key1.encode() + b"\n" + anchor1 + sep + key1.encode() + b"\n" + anchor1 + sep + key0.encode() + b"\n" + anchor0)
seed("anchor_audit", "wrong-key", b"anchors/production/1999/01/01/00/x.json\n" + anchor0 + sep + key1.encode() + b"\n" + anchor1)
seed("anchor_audit", "gap", key1.encode() + b"\n" + anchor1)

# ---- checkpoints and signed notes ------------------------------------------
body = checkpoint.split(b"\n\n")[0] + b"\n"
seed("checkpoint", "real", checkpoint)
seed("checkpoint", "body", body)
seed("checkpoint", "body-huge-size", b"fuzz.stele.example/production\n18446744073709551616\n" + body.split(b"\n")[2] + b"\n")
seed("checkpoint", "body-max-size", b"fuzz.stele.example/production\n18446744073709551615\n" + body.split(b"\n")[2] + b"\n")
seed("checkpoint", "body-leading-zero", b"fuzz.stele.example/production\n010\n" + body.split(b"\n")[2] + b"\n")
seed("checkpoint", "body-extension-lines", body + b"extension line one\nanother\n")
seed("checkpoint", "body-control-origin", b"fuzz\x01origin\n1\n" + body.split(b"\n")[2] + b"\n")
seed("checkpoint", "no-final-newline", checkpoint.rstrip(b"\n"))
seed("checkpoint", "two-signatures", checkpoint + checkpoint.split(b"\n\n")[1])
seed("checkpoint", "crlf", checkpoint.replace(b"\n", b"\r\n"))
seed("checkpoint", "edited-size", checkpoint.replace(b"\n10\n", b"\n11\n", 1))
statement = "stele.evidence/v1\nkey evidence/acme/2026/12/EB-20261101-0001.pdf\nsize 1048576\nsha256 " + "ab" * 32 + "\n"
seed("signed_note", "statement", statement)
seed("signed_note", "statement-upper-hex", statement.replace("ab" * 32, "AB" * 32))
seed("signed_note", "statement-huge-size", statement.replace("1048576", "18446744073709551616"))
seed("signed_note", "statement-five-lines", statement + "extra line\n")
seed("signed_note", "statement-control", statement.replace("EB-", "E\x1bB-"))
seed("signed_note", "checkpoint-note", checkpoint)
seed("signed_note", "empty-sig-line", statement + "\n\u2014 fuzz.stele.example \n")

# ---- tlog-proof bundles ----------------------------------------------------
seed("tlog_proof", "real-seq4", proof4)
seed("tlog_proof", "real-seq0", proof0)
p4 = proof4.decode()
seed("tlog_proof", "no-extra", "\n".join(l for l in p4.split("\n") if not l.startswith("extra ")))
seed("tlog_proof", "index-overflow", p4.replace("index 4", "index 18446744073709551616"))
seed("tlog_proof", "index-beyond-size", p4.replace("index 4", "index 10"))
seed("tlog_proof", "index-max", p4.replace("index 4", "index 18446744073709551615"))
seed("tlog_proof", "bad-base64-extra", p4.replace("extra ey", "extra *y"))
seed("tlog_proof", "bad-hash", p4.replace("index 4\n", "index 4\nnot-a-hash\n"))
seed("tlog_proof", "many-hashes", p4.replace("index 4\n", "index 4\n" + ("A" * 43 + "=\n") * 80))
seed("tlog_proof", "no-blank-line", p4.replace("\n\n", "\n"))
seed("tlog_proof", "crlf", p4.replace("\n", "\r\n"))
seed("tlog_proof", "huge-checkpoint-size", p4.replace("\n10\n", "\n18446744073709551615\n"))

# ---- bucket policies -------------------------------------------------------
template = (HERE.parent / "deploy/policy/bucket-policy.json.tftpl").read_text()
values = {"bucket_arn": "arn:aws:s3:::audit-anchors-prod",
          "kms_key_arn": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
          "writer_role_arn": "arn:aws:iam::111122223333:role/stele-writer"}
rendered = template
for k, v in values.items():
    rendered = rendered.replace("${" + k + "}", v)
seed("bucket_policy", "stele-template", rendered)
seed("bucket_policy", "public-read", '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}]}')
seed("bucket_policy", "single-statement", '{"Statement":{"Sid":"x","Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::1:root"]},"NotAction":"s3:Get*","NotResource":["arn:aws:s3:::b"],"Condition":{"StringNotEquals":{"aws:PrincipalArn":["a","b"]},"Bool":{"aws:SecureTransport":false}}}}')
seed("bucket_policy", "duplicate-keys", '{"Statement":[{"Effect":"Allow","Effect":"Deny","Principal":{"AWS":"*","AWS":"arn:aws:iam::1:root"},"Action":"*","Resource":"*"}]}')
seed("bucket_policy", "wrong-types", '{"Statement":[{"Effect":1,"Principal":[1],"Action":{"a":1},"Resource":null,"Condition":[]}]}')
seed("bucket_policy", "deep", '{"Statement":[{"Effect":"Deny","Principal":"*","Action":"*","Resource":"*","Condition":' + deep_object + "}]}")
seed("bucket_policy", "wildcards", '{"Statement":[{"Effect":"Deny","Principal":{"AWS":"*"},"Action":["s3:*Object*","s3:?ut*"],"Resource":"arn:aws:s3:::*/*","Condition":{"ForAnyValue:StringLike":{"s3:x-amz-server-side-encryption-aws-kms-key-id":"arn:aws:kms:*"}}}]}')

# ---- IAM globs -------------------------------------------------------------
seed("iam_glob", "simple", "s3:*\ns3:PutObject")
seed("iam_glob", "question", "s3:?utObject\ns3:PutObject")
seed("iam_glob", "backtracking", "*a*a*a*a*a*a*a*a*a*a*b\n" + "a" * 4000)
seed("iam_glob", "unicode-case", "\u0130*\u0069\u0307x")
seed("iam_glob", "arn", "arn:aws:s3:::audit-*/anchors/*\narn:aws:s3:::audit-anchors-prod/anchors/production/x.json")

# ---- evidence keys ---------------------------------------------------------
for name, key in {
    "valid": "evidence/acme/2026/12/EB-20261101-0001.pdf",
    "no-ext": "evidence/acme/2026/01/README",
    "sig": "evidence/acme/2026/12/EB-1.pdf.sig",
    "month-13": "evidence/acme/2026/13/EB-1.pdf",
    "year-0000": "evidence/acme/0000/01/EB-1.pdf",
    "plus-sign": "evidence/acme/+202/01/EB-1.pdf",
    "dot-file": "evidence/acme/2026/12/.hidden",
    "traversal": "evidence/../2026/12/EB-1.pdf",
    "control": "evidence/acme/2026/12/EB\x00-1.pdf",
    "six-parts": "evidence/acme/2026/12/sub/EB-1.pdf",
    "overlong": "evidence/acme/2026/12/" + "E" * 300 + ".pdf",
    "unicode": "evidence/\u00e4cme/2026/12/EB-\u0661.pdf",
}.items():
    seed("evidence_key", name, key)

for target, seeds in corpus.items():
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        (d / ("seed-" + name)).write_bytes(data)
    print(f"{target}: {len(seeds)} seeds")
