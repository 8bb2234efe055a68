"""Helpers shared by stele's custom checkov checks (not a check itself).

checkov hands a resource check its block in the parsed-HCL shape, where every
attribute value is wrapped in a list (``{"days": [400]}``), while the graph
(``self.graph``) holds the rendered, unwrapped shape (``{"days": 400}``).
The helpers below accept both. Values checkov could not resolve stay strings
such as ``"var.object_lock_retention_days"``; they come back as ``None`` so a
check can answer UNKNOWN instead of guessing.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable, Iterator, Optional

from checkov.common.graph.graph_builder import CustomAttributes

LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
LOCK_CONFIG = "aws_s3_bucket_object_lock_configuration"
LIFECYCLE_CONFIG = "aws_s3_bucket_lifecycle_configuration"

# Minimum default retention CKV_STELE_2 accepts. DESIGN.md §3: evidence is kept
# at least 90 days unless the operator lowers the floor explicitly.
DEFAULT_MIN_RETENTION_DAYS = 90


def min_retention_days() -> int:
    raw = os.environ.get("STELE_MIN_RETENTION_DAYS", "")
    try:
        return int(raw) if raw.strip() else DEFAULT_MIN_RETENTION_DAYS
    except ValueError:
        return DEFAULT_MIN_RETENTION_DAYS


def first(value: Any) -> Any:
    """Unwrap checkov's one-element lists (repeatedly)."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def blocks(value: Any) -> list[dict]:
    """A nested block (or list of them) as a list of dicts, in either shape."""
    out: list[dict] = []
    for item in as_list(value):
        item = first(item)
        if isinstance(item, dict):
            out.append(item)
        elif isinstance(item, list):
            out.extend(b for b in (first(i) for i in item) if isinstance(b, dict))
    return out


def as_int(value: Any) -> Optional[int]:
    value = first(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    return None


def as_bool(value: Any) -> Optional[bool]:
    value = first(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def as_str(value: Any) -> Optional[str]:
    value = first(value)
    return value if isinstance(value, str) else None


def is_unresolved(value: Any) -> bool:
    """A string checkov left as an expression (var., local., module., ${...})."""
    value = first(value)
    return isinstance(value, str) and bool(
        re.match(r"^\s*(\$\{|var\.|local\.|module\.|data\.|each\.|count\.)", value)
    )


def bucket_ref(value: Any) -> Optional[str]:
    """Normalise `aws_s3_bucket.x.id` / `.bucket` / `${aws_s3_bucket.x.id}` to `aws_s3_bucket.x`."""
    s = as_str(value)
    if s is None:
        return None
    s = s.strip()
    if s.startswith("${") and s.endswith("}"):
        s = s[2:-1].strip()
    m = re.fullmatch(r"(aws_s3_bucket\.[A-Za-z0-9_-]+)(\[[^\]]*\])?\.(id|bucket)", s)
    if m:
        return m.group(1)
    return s


def address_of(conf_or_node: dict) -> str:
    return str(conf_or_node.get("__address__") or conf_or_node.get(CustomAttributes.ID) or "")


def module_key(node: dict) -> str:
    """Identifies the module instance a graph node was rendered in."""
    obj = node.get(CustomAttributes.SOURCE_MODULE_OBJECT)
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except ValueError:
            return obj
    if isinstance(obj, dict):
        return json.dumps(obj, sort_keys=True)
    return ""


def module_prefix(address: str) -> str:
    """`module.a.module.b.aws_x.y[0]` -> `module.a.module.b.`"""
    parts = re.findall(r"module\.[^.]+(?:\[[^\]]*\])?\.", address)
    return "".join(parts)


def resource_name(address: str) -> str:
    """`module.a.aws_s3_bucket.this[0]` -> `aws_s3_bucket.this`"""
    tail = address[len(module_prefix(address)):]
    return re.sub(r"\[[^\]]*\]$", "", tail)


def graph_nodes(graph: Any, resource_type: str) -> Iterator[dict]:
    if graph is None:
        return
    for _, attrs in graph.nodes():
        if attrs.get(CustomAttributes.BLOCK_TYPE) == "resource" and attrs.get(CustomAttributes.RESOURCE_TYPE) == resource_type:
            yield attrs


def default_retention(lock_conf: dict) -> tuple[Optional[str], Optional[int], bool]:
    """(mode, days, resolved) of an object lock configuration's default retention.

    days is years * 365 when the period is given in years. resolved is False
    when checkov left the mode or period as an expression.
    """
    for rule in blocks(lock_conf.get("rule")):
        for ret in blocks(rule.get("default_retention")):
            mode_raw, days_raw, years_raw = ret.get("mode"), ret.get("days"), ret.get("years")
            if any(is_unresolved(v) for v in (mode_raw, days_raw, years_raw) if v is not None):
                return None, None, False
            mode = as_str(mode_raw)
            days = as_int(days_raw)
            years = as_int(years_raw)
            if days is None and years is not None:
                days = years * 365
            return mode, days, True
    return None, None, True


def lifecycle_expirations(lifecycle_conf: dict) -> tuple[list[tuple[str, str, int]], bool]:
    """Every expiration in a lifecycle configuration as (rule id, kind, days).

    kind is `expiration` (current versions) or `noncurrent_version_expiration`.
    Literal blocks and `dynamic` blocks whose for_each checkov resolved are
    both read. The flag is False when some for_each or day count could not be
    resolved (the list is then incomplete).
    """
    found: list[tuple[str, str, int]] = []
    complete = True
    for rule in blocks(lifecycle_conf.get("rule")):
        rule_id = as_str(rule.get("id")) or "?"
        status = as_str(rule.get("status"))
        if status is not None and status != "Enabled":
            continue
        for kind, attr in (("expiration", "days"), ("noncurrent_version_expiration", "noncurrent_days")):
            for blk in blocks(rule.get(kind)):
                raw = blk.get(attr)
                if raw is None:
                    continue  # e.g. expired_object_delete_marker only
                days = as_int(raw)
                if days is None:
                    complete = False
                else:
                    found.append((rule_id, kind, days))
        for dyn in blocks(rule.get("dynamic")):
            for kind, attr in (("expiration", "days"), ("noncurrent_version_expiration", "noncurrent_days")):
                spec = first(dyn.get(kind))
                if not isinstance(spec, dict):
                    continue
                for_each = spec.get("for_each")
                items = first(for_each)
                if is_unresolved(items) or items is None:
                    complete = False
                    continue
                content = blocks(spec.get("content"))
                for blk in content:
                    raw = blk.get(attr)
                    iterator_ref = as_str(raw) or ""
                    if iterator_ref.endswith(".value") or iterator_ref.endswith(".value}"):
                        for item in as_list(items if isinstance(items, list) else [items]):
                            days = as_int(item)
                            if days is None:
                                complete = False
                            else:
                                found.append((rule_id, kind, days))
                    else:
                        days = as_int(raw)
                        if days is None:
                            complete = False
                        else:
                            found.append((rule_id, kind, days))
    return found, complete


def same_bucket_nodes(graph: Any, resource_type: str, owner_nodes: Iterable[dict], refs: Any) -> list[dict]:
    """Nodes of resource_type in the same module instance as any owner node
    whose `bucket` is one of refs (a resource reference such as
    `aws_s3_bucket.this`, or the bucket's literal name when checkov resolved it)."""
    wanted = {r for r in as_list(refs) if r}
    keys = {module_key(n) for n in owner_nodes}
    out = []
    for node in graph_nodes(graph, resource_type):
        if module_key(node) in keys and bucket_ref(node.get("bucket")) in wanted:
            out.append(node)
    return out


def own_nodes(graph: Any, resource_type: str, conf: dict, fingerprint=None) -> list[dict]:
    """The graph node(s) that may be this very resource.

    checkov gives a resource check no pointer to its graph node, and two roots
    that call the same module under the same name produce identical addresses;
    when a fingerprint function is given, only nodes whose rendered content
    fingerprints like the conf are kept.
    """
    address = address_of(conf)
    nodes = [n for n in graph_nodes(graph, resource_type) if address_of(n) == address]
    if fingerprint is not None and len(nodes) > 1:
        wanted = fingerprint(conf)
        matching = [n for n in nodes if fingerprint(n) == wanted]
        if matching:
            nodes = matching
    return nodes
