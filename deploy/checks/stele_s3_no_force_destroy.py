"""CKV_STELE_3: an Object Lock bucket must not set force_destroy = true.

force_destroy makes `terraform destroy` delete every object version it can;
on a WORM bucket that empties whatever is not (or no longer) locked and then
fails half-way. Buckets without Object Lock are out of scope (CKV_STELE_1
covers them). Controls: SOC 2 CC6.1, SEC 17a-4(f).
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from stele_checks_common import as_bool, is_unresolved


class S3WormNoForceDestroy(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure an Object Lock (WORM) S3 bucket does not set force_destroy = true",
            id="CKV_STELE_3",
            categories=(CheckCategories.BACKUP_AND_RECOVERY,),
            supported_resources=("aws_s3_bucket",),
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["force_destroy"]
        if as_bool(conf.get("object_lock_enabled")) is not True:
            return CheckResult.PASSED
        raw = conf.get("force_destroy")
        if raw is None:
            return CheckResult.PASSED
        if is_unresolved(raw):
            return CheckResult.UNKNOWN
        return CheckResult.FAILED if as_bool(raw) is True else CheckResult.PASSED


check = S3WormNoForceDestroy()
