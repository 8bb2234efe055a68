"""CKV2_STELE_2: no lifecycle expiration is shorter than the Object Lock retention.

S3 will not remove a locked version, but a current-version expiration still
places a delete marker that hides the object from every plain listing (an
auditor sees a gap), and a noncurrent expiration shorter than the retention
documents an intent the bucket cannot honour. Every `expiration.days` and
`noncurrent_version_expiration.noncurrent_days` (literal or `dynamic` blocks
with a resolvable for_each) must be at least the default retention of the
same bucket's aws_s3_bucket_object_lock_configuration, found in checkov's
graph. Unresolvable values give UNKNOWN. Controls: SEC 17a-4(f)(2)(ii)(A),
HIPAA §164.312(c)(1), SOC 2 CC7.2.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from stele_checks_common import (
    LIFECYCLE_CONFIG,
    LOCK_CONFIG,
    bucket_ref,
    default_retention,
    lifecycle_expirations,
    own_nodes,
    same_bucket_nodes,
)


def _fingerprint(conf_or_node: dict) -> tuple:
    found, complete = lifecycle_expirations(conf_or_node)
    return tuple(sorted(found)), complete


class S3LifecycleRespectsRetention(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure no S3 lifecycle expiration is shorter than the bucket's Object Lock default retention",
            id="CKV2_STELE_2",
            categories=(CheckCategories.BACKUP_AND_RECOVERY,),
            supported_resources=(LIFECYCLE_CONFIG,),
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["rule"]
        expirations, complete = lifecycle_expirations(conf)
        if not expirations:
            return CheckResult.PASSED if complete else CheckResult.UNKNOWN
        if self.graph is None:
            return CheckResult.UNKNOWN
        owners = own_nodes(self.graph, LIFECYCLE_CONFIG, conf, _fingerprint)
        if not owners:
            return CheckResult.UNKNOWN
        configs = same_bucket_nodes(self.graph, LOCK_CONFIG, owners, bucket_ref(conf.get("bucket")))
        retentions = []
        for cfg in configs:
            _, days, resolved = default_retention(cfg)
            if not resolved:
                return CheckResult.UNKNOWN
            if days is not None:
                retentions.append(days)
        if not retentions:
            # No default retention to compare with; CKV2_STELE_1 reports that.
            return CheckResult.PASSED if complete else CheckResult.UNKNOWN
        # Conservative when identical module instances disagree: the longest wins.
        retention = max(retentions)
        too_short = [e for e in expirations if e[2] < retention]
        for rule_id, kind, days in too_short:
            self.details.append(f"rule {rule_id}: {kind} after {days} days < retention {retention} days")
        if too_short:
            return CheckResult.FAILED
        return CheckResult.PASSED if complete else CheckResult.UNKNOWN


check = S3LifecycleRespectsRetention()
