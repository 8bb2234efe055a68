"""CKV_STELE_1: an S3 bucket meant for stele must have Object Lock enabled.

checkov's built-in Object Lock check reads the legacy inline
`object_lock_configuration` block only; provider 4+ declares Object Lock with
`object_lock_enabled = true` on `aws_s3_bucket`, which this check accepts
(together with the legacy `object_lock_configuration { object_lock_enabled =
"Enabled" }`). Object Lock can only be switched on when a bucket is created.
Controls: SEC 17a-4(f)(2)(ii)(A), HIPAA §164.312(c)(1), SOC 2 CC7.2.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from stele_checks_common import as_bool, as_str, blocks, first, is_unresolved


class S3ObjectLockEnabled(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure the S3 bucket is created with Object Lock enabled (object_lock_enabled = true)",
            id="CKV_STELE_1",
            categories=(CheckCategories.BACKUP_AND_RECOVERY,),
            supported_resources=("aws_s3_bucket",),
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["object_lock_enabled", "object_lock_configuration"]
        raw = conf.get("object_lock_enabled")
        if raw is not None:
            if is_unresolved(raw):
                return CheckResult.UNKNOWN
            if as_bool(raw) is True:
                return CheckResult.PASSED
        for legacy in blocks(conf.get("object_lock_configuration")):
            value = legacy.get("object_lock_enabled")
            if is_unresolved(value):
                return CheckResult.UNKNOWN
            if as_str(first(value)) == "Enabled":
                return CheckResult.PASSED
        return CheckResult.FAILED


check = S3ObjectLockEnabled()
