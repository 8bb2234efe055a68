# stele WORM bucket: an S3 bucket with Object Lock for anchors, proofs and
# evidence (docs/contracts.md §5). The bucket policy is NOT written here: it is
# rendered from deploy/policy/*.json.tftpl, the same files `stele bucket init`
# renders, so the two provisioning paths cannot drift apart.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix
  # `id` is the region name with both the 5.x and the 6.x provider (6.x deprecates `name`).
  region = data.aws_region.current.id

  is_production_stage = contains(var.production_stages, var.stage)

  create_kms_key = var.kms_key_arn == null
  kms_key_arn    = local.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn

  writer_role_name      = coalesce(var.writer_role_name, "${substr(var.bucket, 0, 57)}-writer")
  verifier_role_name    = coalesce(var.verifier_role_name, "${substr(var.bucket, 0, 55)}-verifier")
  replication_role_name = coalesce(var.replication_role_name, "${substr(var.bucket, 0, 52)}-replication")

  writer_role_arn = var.create_writer_role ? aws_iam_role.writer[0].arn : var.writer_role_arn

  create_verifier_role = length(var.auditor_account_ids) > 0
  replication_enabled  = var.replication != null

  anchors_prefix  = "${var.key_prefix}anchors/"
  evidence_prefix = "${var.key_prefix}evidence/"
  proofs_prefix   = "${var.key_prefix}proofs/"

  access_logging_target_prefix = coalesce(var.access_logging_target_prefix, "s3-access/${var.bucket}/")

  # ---------------------------------------------------------------------------
  # Bucket policy: one template shared with `stele bucket init`.
  # The template is plain JSON with ${...} placeholders only; the optional
  # statement lives in its own file and is appended to Statement here.
  # ---------------------------------------------------------------------------
  policy_template_dir = "${path.module}/../../../policy"
  policy_vars = {
    bucket_arn      = aws_s3_bucket.this.arn
    kms_key_arn     = local.kms_key_arn
    writer_role_arn = local.writer_role_arn
  }
  policy_base = jsondecode(templatefile("${local.policy_template_dir}/bucket-policy.json.tftpl", local.policy_vars))
  policy_optional_statements = var.restrict_uploads_to_writer ? [
    jsondecode(templatefile("${local.policy_template_dir}/deny-non-writer-uploads.json.tftpl", local.policy_vars)),
  ] : []
  bucket_policy = jsonencode(merge(local.policy_base, {
    Statement = concat(local.policy_base.Statement, local.policy_optional_statements)
  }))

  # Lifecycle may never remove an object version while its default retention
  # can still hold: every expiration must be at least the retention period.
  lifecycle_expirations = {
    evidence_expiration_days           = var.evidence_expiration_days
    proofs_expiration_days             = var.proofs_expiration_days
    noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  }
  expirations_shorter_than_retention = [
    for name, days in local.lifecycle_expirations : name
    if days != null && try(days < var.object_lock_retention_days, true)
  ]
}

################################################################################
# Bucket
################################################################################

resource "aws_s3_bucket" "this" {
  bucket = var.bucket

  # Object Lock can only be switched on when the bucket is created.
  object_lock_enabled = true

  # Never empty a WORM bucket from Terraform: locked versions cannot be
  # deleted anyway, and a half-emptied bucket is worse than a refused destroy.
  force_destroy = false

  tags = var.tags
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  mfa    = var.mfa_delete ? var.mfa : null

  versioning_configuration {
    # Object Lock requires versioning; it can never be suspended on this bucket.
    status     = "Enabled"
    mfa_delete = var.mfa_delete ? "Enabled" : null
  }

  lifecycle {
    precondition {
      condition     = !var.mfa_delete || var.mfa != null
      error_message = "mfa_delete = true needs mfa = \"<serial> <code>\": S3 only changes MFA delete with the root user's MFA token."
    }
  }
}

resource "aws_s3_bucket_object_lock_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    default_retention {
      mode = var.object_lock_mode
      days = var.object_lock_retention_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]

  lifecycle {
    precondition {
      condition     = !(local.is_production_stage && var.object_lock_mode == "GOVERNANCE")
      error_message = "Stage \"${var.stage}\" is a production stage (production_stages); GOVERNANCE retention can be bypassed, so it must use object_lock_mode = \"COMPLIANCE\"."
    }
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = local.bucket_policy

  # Public access block first: PutBucketPolicy and PutPublicAccessBlock on a
  # fresh bucket conflict when they run concurrently.
  depends_on = [aws_s3_bucket_public_access_block.this]

  lifecycle {
    precondition {
      condition     = var.create_writer_role || var.writer_role_arn != null
      error_message = "create_writer_role = false needs writer_role_arn: the bucket policy names the writer (DenyGovernanceBypassByWriter)."
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  # S3 does not support lifecycle configuration on MFA-delete buckets.
  count = var.mfa_delete ? 0 : 1

  bucket = aws_s3_bucket.this.id

  # Bucket-wide: incomplete multipart uploads are not objects, hold no lock,
  # and only cost money.
  rule {
    id     = "stele-abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  # Anchors: cheaper storage after a while, never expired, noncurrent versions
  # kept (an overwritten anchor is itself evidence).
  rule {
    id     = "stele-anchors"
    status = "Enabled"

    filter {
      prefix = local.anchors_prefix
    }

    dynamic "transition" {
      for_each = var.anchors_transition_days == null ? [] : [var.anchors_transition_days]
      content {
        days          = transition.value
        storage_class = "GLACIER_IR"
      }
    }
  }

  rule {
    id     = "stele-evidence"
    status = "Enabled"

    filter {
      prefix = local.evidence_prefix
    }

    dynamic "transition" {
      for_each = var.evidence_transition_days == null ? [] : [var.evidence_transition_days]
      content {
        days          = transition.value
        storage_class = "GLACIER_IR"
      }
    }

    dynamic "expiration" {
      for_each = var.evidence_expiration_days == null ? [] : [var.evidence_expiration_days]
      content {
        days = expiration.value
      }
    }

    dynamic "noncurrent_version_expiration" {
      for_each = var.noncurrent_version_expiration_days == null ? [] : [var.noncurrent_version_expiration_days]
      content {
        noncurrent_days = noncurrent_version_expiration.value
      }
    }
  }

  rule {
    id     = "stele-proofs"
    status = "Enabled"

    filter {
      prefix = local.proofs_prefix
    }

    dynamic "transition" {
      for_each = var.proofs_transition_days == null ? [] : [var.proofs_transition_days]
      content {
        days          = transition.value
        storage_class = "GLACIER_IR"
      }
    }

    dynamic "expiration" {
      for_each = var.proofs_expiration_days == null ? [] : [var.proofs_expiration_days]
      content {
        days = expiration.value
      }
    }

    dynamic "noncurrent_version_expiration" {
      for_each = var.noncurrent_version_expiration_days == null ? [] : [var.noncurrent_version_expiration_days]
      content {
        noncurrent_days = noncurrent_version_expiration.value
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]

  lifecycle {
    precondition {
      condition     = length(local.expirations_shorter_than_retention) == 0
      error_message = "Lifecycle expiration shorter than the Object Lock retention (${var.object_lock_retention_days} days): ${join(", ", local.expirations_shorter_than_retention)}. Expirations must be null or >= object_lock_retention_days."
    }
  }
}

resource "aws_s3_bucket_notification" "this" {
  count = var.enable_eventbridge_notifications ? 1 : 0

  bucket      = aws_s3_bucket.this.id
  eventbridge = true
}

################################################################################
# KMS key (created unless kms_key_arn is given)
################################################################################

data "aws_iam_policy_document" "kms" {
  count = local.create_kms_key ? 1 : 0


  statement {
    sid    = "AllowAccountAdministration"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
    # Administration only: no Encrypt/Decrypt/GenerateDataKey here.
    actions = [
      "kms:CancelKeyDeletion",
      "kms:Create*",
      "kms:Delete*",
      "kms:Describe*",
      "kms:Disable*",
      "kms:Enable*",
      "kms:Get*",
      "kms:List*",
      "kms:Put*",
      "kms:Revoke*",
      "kms:RotateKeyOnDemand",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:Update*",
    ]
    resources = ["*"]
  }

  statement {
    sid    = "AllowUseThroughS3InThisAccount"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:Encrypt",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.${local.dns_suffix}"]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "this" {
  count = local.create_kms_key ? 1 : 0

  description             = "stele WORM bucket ${var.bucket} (${var.stage})"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_key_deletion_window_in_days
  policy                  = data.aws_iam_policy_document.kms[0].json

  tags = var.tags
}

################################################################################
# Writer role: the identity stele uploads with
################################################################################

data "aws_iam_policy_document" "writer_assume" {
  count = var.create_writer_role ? 1 : 0

  dynamic "statement" {
    for_each = length(var.writer_trusted_services) > 0 ? [1] : []
    content {
      sid     = "TrustedServices"
      effect  = "Allow"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "Service"
        identifiers = var.writer_trusted_services
      }
      # Confused-deputy guard: the service may act only for this account.
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.writer_trusted_role_arns) > 0 ? [1] : []
    content {
      sid     = "TrustedRoles"
      effect  = "Allow"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "AWS"
        identifiers = var.writer_trusted_role_arns
      }
    }
  }
}

resource "aws_iam_role" "writer" {
  count = var.create_writer_role ? 1 : 0

  name                 = local.writer_role_name
  path                 = var.iam_role_path
  description          = "stele writer for ${var.bucket}: uploads anchors, proofs and evidence; cannot delete, bypass governance or set legal holds."
  assume_role_policy   = data.aws_iam_policy_document.writer_assume[0].json
  permissions_boundary = var.iam_role_permissions_boundary

  tags = var.tags

  lifecycle {
    precondition {
      condition     = length(var.writer_trusted_services) + length(var.writer_trusted_role_arns) > 0
      error_message = "The writer role needs at least one trusted principal: set writer_trusted_services or writer_trusted_role_arns."
    }
  }
}

data "aws_iam_policy_document" "writer" {
  count = var.create_writer_role ? 1 : 0

  statement {
    sid    = "WriteAndReadSteleObjects"
    effect = "Allow"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetObject",
      "s3:GetObjectAttributes",
      "s3:GetObjectLegalHold",
      "s3:GetObjectRetention",
      "s3:GetObjectVersion",
      "s3:GetObjectVersionAttributes",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
      "s3:PutObjectRetention",
    ]
    resources = [
      "${aws_s3_bucket.this.arn}/${local.anchors_prefix}*",
      "${aws_s3_bucket.this.arn}/${local.proofs_prefix}*",
      "${aws_s3_bucket.this.arn}/${local.evidence_prefix}*",
    ]
  }

  statement {
    sid    = "ReadBucketConfiguration"
    effect = "Allow"
    actions = [
      "s3:GetBucketLocation",
      "s3:GetBucketObjectLockConfiguration",
      "s3:GetBucketVersioning",
      "s3:ListBucket",
      # After every create-only write, stele lists the key's versions to
      # confirm the first one is its own (a concurrent writer loses cleanly).
      "s3:ListBucketVersions",
    ]
    resources = [aws_s3_bucket.this.arn]
  }

  statement {
    sid    = "UseBucketKey"
    effect = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:GenerateDataKey",
    ]
    resources = [local.kms_key_arn]
  }

  # Explicit denies survive any later broadening of this role's grants.
  statement {
    sid    = "NeverBypassRetentionOrHold"
    effect = "Deny"
    actions = [
      "s3:BypassGovernanceRetention",
      "s3:PutObjectLegalHold",
    ]
    resources = ["${aws_s3_bucket.this.arn}/*"]
  }
}

resource "aws_iam_role_policy" "writer" {
  count = var.create_writer_role ? 1 : 0

  name   = "stele-worm-writer"
  role   = aws_iam_role.writer[0].id
  policy = data.aws_iam_policy_document.writer[0].json
}

################################################################################
# Verifier role: read-only, for auditors (created only with auditor ids)
################################################################################

data "aws_iam_policy_document" "verifier_assume" {
  count = local.create_verifier_role ? 1 : 0

  statement {
    sid     = "AuditorAccounts"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [for id in var.auditor_account_ids : "arn:${local.partition}:iam::${id}:root"]
    }

    dynamic "condition" {
      for_each = var.auditor_external_id == null ? [] : [var.auditor_external_id]
      content {
        test     = "StringEquals"
        variable = "sts:ExternalId"
        values   = [condition.value]
      }
    }
  }
}

resource "aws_iam_role" "verifier" {
  count = local.create_verifier_role ? 1 : 0

  name                 = local.verifier_role_name
  path                 = var.iam_role_path
  description          = "stele verifier for ${var.bucket}: read-only access for auditors (objects, versions, retention, bucket controls)."
  assume_role_policy   = data.aws_iam_policy_document.verifier_assume[0].json
  max_session_duration = var.verifier_max_session_duration
  permissions_boundary = var.iam_role_permissions_boundary

  tags = var.tags
}

data "aws_iam_policy_document" "verifier" {
  count = local.create_verifier_role ? 1 : 0

  statement {
    sid    = "ReadObjects"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:GetObjectAttributes",
      "s3:GetObjectLegalHold",
      "s3:GetObjectRetention",
      "s3:GetObjectVersion",
      "s3:GetObjectVersionAttributes",
    ]
    resources = ["${aws_s3_bucket.this.arn}/*"]
  }

  # Everything `stele bucket check` reads, and listing (versions included).
  statement {
    sid    = "ReadBucketControls"
    effect = "Allow"
    actions = [
      "s3:GetBucketLocation",
      "s3:GetBucketLogging",
      "s3:GetBucketObjectLockConfiguration",
      "s3:GetBucketOwnershipControls",
      "s3:GetBucketPolicy",
      "s3:GetBucketPolicyStatus",
      "s3:GetBucketPublicAccessBlock",
      "s3:GetBucketVersioning",
      "s3:GetEncryptionConfiguration",
      "s3:GetLifecycleConfiguration",
      "s3:GetReplicationConfiguration",
      "s3:ListBucket",
      "s3:ListBucketVersions",
    ]
    resources = [aws_s3_bucket.this.arn]
  }

  statement {
    sid    = "DecryptAndInspectKey"
    effect = "Allow"
    actions = [
      "kms:Decrypt",
      "kms:DescribeKey",
      "kms:GetKeyRotationStatus",
    ]
    resources = [local.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "verifier" {
  count = local.create_verifier_role ? 1 : 0

  name   = "stele-worm-verifier"
  role   = aws_iam_role.verifier[0].id
  policy = data.aws_iam_policy_document.verifier[0].json
}

################################################################################
# Replication (optional) into another Object Lock bucket
################################################################################

data "aws_iam_policy_document" "replication_assume" {
  count = local.replication_enabled ? 1 : 0

  statement {
    sid     = "S3Replication"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["s3.${local.dns_suffix}"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.this.arn]
    }
  }
}

resource "aws_iam_role" "replication" {
  count = local.replication_enabled ? 1 : 0

  name                 = local.replication_role_name
  path                 = var.iam_role_path
  description          = "S3 replication of ${var.bucket} into its Object Lock replica."
  assume_role_policy   = data.aws_iam_policy_document.replication_assume[0].json
  permissions_boundary = var.iam_role_permissions_boundary

  tags = var.tags
}

data "aws_iam_policy_document" "replication" {
  count = local.replication_enabled ? 1 : 0

  statement {
    sid    = "ReadReplicationConfiguration"
    effect = "Allow"
    actions = [
      "s3:GetReplicationConfiguration",
      "s3:ListBucket",
    ]
    resources = [aws_s3_bucket.this.arn]
  }

  # Retention and legal hold must be readable so replicas keep their locks.
  statement {
    sid    = "ReadSourceVersions"
    effect = "Allow"
    actions = [
      "s3:GetObjectLegalHold",
      "s3:GetObjectRetention",
      "s3:GetObjectVersionAcl",
      "s3:GetObjectVersionForReplication",
      "s3:GetObjectVersionTagging",
    ]
    resources = ["${aws_s3_bucket.this.arn}/*"]
  }

  # No s3:ReplicateDelete: delete markers are not replicated.
  statement {
    sid    = "WriteReplicas"
    effect = "Allow"
    actions = [
      "s3:ReplicateObject",
      "s3:ReplicateTags",
    ]
    resources = ["${var.replication.destination_bucket_arn}/*"]
  }

  statement {
    sid       = "DecryptSource"
    effect    = "Allow"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.${local.dns_suffix}"]
    }
  }

  statement {
    sid       = "EncryptReplicas"
    effect    = "Allow"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [var.replication.destination_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${split(":", var.replication.destination_kms_key_arn)[3]}.${local.dns_suffix}"]
    }
  }
}

resource "aws_iam_role_policy" "replication" {
  count = local.replication_enabled ? 1 : 0

  name   = "stele-worm-replication"
  role   = aws_iam_role.replication[0].id
  policy = data.aws_iam_policy_document.replication[0].json
}

resource "aws_s3_bucket_replication_configuration" "this" {
  count = local.replication_enabled ? 1 : 0

  bucket = aws_s3_bucket.this.id
  role   = aws_iam_role.replication[0].arn

  rule {
    id     = "stele-replicate-all"
    status = "Enabled"

    # Empty filter: every object (anchors, proofs, evidence).
    filter {}

    # Deleting (hiding) an object here must never hide the replica too.
    delete_marker_replication {
      status = "Disabled"
    }

    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }

    destination {
      bucket        = var.replication.destination_bucket_arn
      storage_class = var.replication.storage_class

      encryption_configuration {
        replica_kms_key_id = var.replication.destination_kms_key_arn
      }

      dynamic "replication_time" {
        for_each = var.replication.replication_time_control ? [1] : []
        content {
          status = "Enabled"
          time {
            minutes = 15
          }
        }
      }

      dynamic "metrics" {
        for_each = var.replication.replication_time_control ? [1] : []
        content {
          status = "Enabled"
          event_threshold {
            minutes = 15
          }
        }
      }
    }
  }

  # Replication requires versioning on the source first.
  depends_on = [aws_s3_bucket_versioning.this]
}

################################################################################
# Server access logging (optional)
################################################################################

# Looked up so that a missing or unreadable target fails at plan time rather
# than halfway through apply (security review P2-002).
data "aws_s3_bucket" "access_logging_target" {
  count = var.enable_access_logging ? 1 : 0

  bucket = var.access_logging_target_bucket

  lifecycle {
    precondition {
      condition     = trimspace(var.access_logging_target_bucket) != ""
      error_message = "enable_access_logging = true needs access_logging_target_bucket."
    }
    precondition {
      condition     = var.access_logging_target_bucket != var.bucket
      error_message = "access_logging_target_bucket must differ from the WORM bucket itself: logging a bucket into itself loops, and S3 cannot deliver logs into a bucket with Object Lock default retention."
    }
  }
}

resource "aws_s3_bucket_logging" "this" {
  count = var.enable_access_logging ? 1 : 0

  bucket        = aws_s3_bucket.this.id
  target_bucket = data.aws_s3_bucket.access_logging_target[0].id
  target_prefix = local.access_logging_target_prefix
}

################################################################################
# Missing-anchor alarm (optional)
################################################################################

resource "aws_s3_bucket_metric" "anchors" {
  count = var.create_missing_anchor_alarm ? 1 : 0

  bucket = aws_s3_bucket.this.id
  name   = "stele-anchor-puts"

  filter {
    prefix = local.anchors_prefix
  }
}

resource "aws_cloudwatch_metric_alarm" "missing_anchor" {
  count = var.create_missing_anchor_alarm ? 1 : 0

  alarm_name        = "${var.bucket}-missing-anchor"
  alarm_description = "No PUT under s3://${var.bucket}/${local.anchors_prefix} for ${var.missing_anchor_alarm_window_minutes} minutes: stele has stopped anchoring (or anchors are being suppressed). `stele verify anchors` reports the exact gap."

  namespace   = "AWS/S3"
  metric_name = "PutRequests"
  dimensions = {
    BucketName = aws_s3_bucket.this.id
    FilterId   = aws_s3_bucket_metric.anchors[0].name
  }
  statistic           = "Sum"
  period              = var.missing_anchor_alarm_window_minutes * 60
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  # Request metrics publish no datapoint for a period without requests, so
  # "no data" is exactly the failure this alarm exists for.
  treat_missing_data = "breaching"

  actions_enabled = true
  alarm_actions   = var.alarm_sns_topic_arns
  ok_actions      = var.alarm_sns_topic_arns

  tags = var.tags
}
