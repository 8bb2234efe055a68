"""CKV2_STELE_1: an Object Lock bucket has a default retention configured.

Object Lock without a default retention locks only objects whose upload asks
for it; an upload that forgets the headers is then deletable. This check
looks in checkov's resource graph for an aws_s3_bucket_object_lock_configuration
(same module instance, `bucket` pointing at this bucket) with a
`default_retention` block, or for the legacy inline `object_lock_configuration
{ rule { default_retention } }`. Controls: SEC 17a-4(f)(2)(ii)(A),
HIPAA §164.312(c)(1).
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from stele_checks_common import (
    LOCK_CONFIG,
    address_of,
    as_bool,
    as_str,
    blocks,
    own_nodes,
    resource_name,
    same_bucket_nodes,
)


class S3ObjectLockDefaultRetentionPresent(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure an Object Lock S3 bucket has an object lock configuration with a default retention",
            id="CKV2_STELE_1",
            categories=(CheckCategories.BACKUP_AND_RECOVERY,),
            supported_resources=("aws_s3_bucket",),
        )

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        self.evaluated_keys = ["object_lock_enabled"]
        if as_bool(conf.get("object_lock_enabled")) is not True:
            return CheckResult.PASSED  # not a lock bucket: CKV_STELE_1's business
        for legacy in blocks(conf.get("object_lock_configuration")):
            for rule in blocks(legacy.get("rule")):
                if blocks(rule.get("default_retention")):
                    return CheckResult.PASSED
        if self.graph is None:
            return CheckResult.UNKNOWN
        owners = own_nodes(self.graph, "aws_s3_bucket", conf)
        if not owners:
            return CheckResult.UNKNOWN
        ref = resource_name(address_of(conf))
        name = as_str(conf.get("bucket"))
        configs = same_bucket_nodes(self.graph, LOCK_CONFIG, owners, [ref, name])
        if any(blocks(rule.get("default_retention")) for cfg in configs for rule in blocks(cfg.get("rule"))):
            return CheckResult.PASSED
        self.details.append(f"no {LOCK_CONFIG} with default_retention refers to {ref}")
        return CheckResult.FAILED


check = S3ObjectLockDefaultRetentionPresent()
