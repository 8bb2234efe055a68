"""CKV_STELE_2: the Object Lock default retention is COMPLIANCE or GOVERNANCE
and at least the minimum period.

The minimum is STELE_MIN_RETENTION_DAYS (default 90, DESIGN.md §3's evidence
floor); a period given in years counts 365 days a year. A mode or period that
checkov cannot resolve statically gives UNKNOWN, never PASSED.
Controls: SEC 17a-4(f)(2)(ii)(A), HIPAA §164.312(c)(1), SOC 2 CC7.2.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from stele_checks_common import LOCK_MODES, default_retention, min_retention_days


class S3ObjectLockDefaultRetention(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure the Object Lock default retention is COMPLIANCE or GOVERNANCE for at least the minimum period (STELE_MIN_RETENTION_DAYS, default 90)",
            id="CKV_STELE_2",
            categories=(CheckCategories.BACKUP_AND_RECOVERY,),
            supported_resources=("aws_s3_bucket_object_lock_configuration",),
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["rule/[0]/default_retention"]
        mode, days, resolved = default_retention(conf)
        if not resolved:
            return CheckResult.UNKNOWN
        if mode not in LOCK_MODES:
            self.details.append(f"default retention mode is {mode!r}, expected one of {', '.join(LOCK_MODES)}")
            return CheckResult.FAILED
        minimum = min_retention_days()
        if days is None or days < minimum:
            self.details.append(f"default retention is {days} days, minimum is {minimum}")
            return CheckResult.FAILED
        return CheckResult.PASSED


check = S3ObjectLockDefaultRetention()
