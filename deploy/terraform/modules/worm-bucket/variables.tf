################################################################################
# Bucket identity
################################################################################

variable "bucket" {
  description = "Controls the bucket's name. Must follow the S3 general-purpose bucket naming rules; it cannot be changed after creation (Object Lock buckets cannot be renamed or recreated while they hold locked objects)."
  type        = string

  validation {
    condition     = length(var.bucket) >= 3 && length(var.bucket) <= 63
    error_message = "The bucket name must be 3 to 63 characters long."
  }
  validation {
    condition     = can(regex("^[a-z0-9.-]+$", var.bucket))
    error_message = "The bucket name may contain only lowercase letters, digits, dots and hyphens (no uppercase, no underscores)."
  }
  validation {
    condition     = can(regex("^[a-z0-9].*[a-z0-9]$", var.bucket))
    error_message = "The bucket name must begin and end with a lowercase letter or a digit."
  }
  validation {
    condition     = !strcontains(var.bucket, "..")
    error_message = "The bucket name must not contain two adjacent dots."
  }
  validation {
    condition     = !can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$", var.bucket))
    error_message = "The bucket name must not be formatted as an IP address."
  }
  validation {
    condition = !anytrue([
      for p in ["xn--", "sthree-", "amzn-s3-demo-"] : startswith(var.bucket, p)
      ]) && !anytrue([
      for s in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] : endswith(var.bucket, s)
    ])
    error_message = "The bucket name uses a prefix or suffix that S3 reserves (xn--, sthree-, amzn-s3-demo-, -s3alias, --ol-s3, .mrap, --x-s3, --table-s3)."
  }
}

variable "stage" {
  description = "Controls which deployment stage this bucket belongs to (e.g. dev, staging, prod). Stages listed in production_stages refuse GOVERNANCE mode."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,31}$", var.stage))
    error_message = "stage must be 1-32 characters of lowercase letters, digits and hyphens, starting with a letter or digit."
  }
}

variable "production_stages" {
  description = "Controls which stage names count as production: for these, object_lock_mode must be COMPLIANCE (the plan fails otherwise)."
  type        = list(string)
  default     = ["prod", "production", "prd"]

  validation {
    condition     = length(var.production_stages) > 0
    error_message = "production_stages must name at least one stage; an empty list would silently allow GOVERNANCE everywhere."
  }
}

variable "key_prefix" {
  description = "Controls an optional key prefix in front of anchors/, evidence/ and proofs/ (docs/contracts.md §2: \"under an optional prefix\"). Empty, or path segments each ending in \"/\", e.g. \"tenant-a/\"."
  type        = string
  default     = ""

  validation {
    condition     = length(var.key_prefix) <= 256
    error_message = "key_prefix must be at most 256 characters (S3 keys are limited to 1024 bytes and anchor keys need room)."
  }
  validation {
    condition     = var.key_prefix == "" || can(regex("^([A-Za-z0-9!_.*'()-]+/)+$", var.key_prefix))
    error_message = "key_prefix must be empty or one or more path segments of S3 safe characters, each ending in \"/\" (no leading \"/\")."
  }
}

variable "tags" {
  description = "Controls the tags added to every taggable resource this module creates."
  type        = map(string)
  default     = {}
}

################################################################################
# Object Lock
################################################################################

variable "object_lock_mode" {
  description = "Controls the default retention mode. COMPLIANCE: nobody, including the account root, can delete or shorten retention. GOVERNANCE: principals with s3:BypassGovernanceRetention can; allowed only outside production_stages."
  type        = string
  default     = "COMPLIANCE"

  validation {
    condition     = contains(["COMPLIANCE", "GOVERNANCE"], var.object_lock_mode)
    error_message = "object_lock_mode must be COMPLIANCE or GOVERNANCE."
  }
}

variable "object_lock_retention_days" {
  description = "Controls the default retention period in days (stele's anchor default is 400: one annual audit plus a buffer). Objects uploaded by stele carry an explicit retain-until date as well."
  type        = number
  default     = 400

  validation {
    condition     = var.object_lock_retention_days >= 1 && var.object_lock_retention_days <= 36500 && floor(var.object_lock_retention_days) == var.object_lock_retention_days
    error_message = "object_lock_retention_days must be a whole number between 1 and 36500 (100 years)."
  }
}

################################################################################
# Versioning / MFA delete
################################################################################

variable "mfa_delete" {
  description = "Whether to enable MFA delete on the bucket's versioning. Requires versioning (always Enabled here) and the root user's MFA device (see mfa). S3 does not support lifecycle configuration on MFA-delete buckets, so the lifecycle rules are not created when this is true."
  type        = bool
  default     = false
}

variable "mfa" {
  description = "Controls the MFA device serial and current code (\"<serial> <code>\") that S3 requires to change MFA delete. Only used when mfa_delete is true; pass it on the command line, never commit it."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.mfa == null || can(regex("^\\S+ [0-9]{6}$", var.mfa))
    error_message = "mfa must be \"<device serial or ARN> <6-digit code>\"."
  }
}

################################################################################
# Encryption
################################################################################

variable "kms_key_arn" {
  description = "Controls which customer-managed KMS key encrypts the bucket. null creates a dedicated key (rotation on, S3-only key policy). Must be a key ARN, not an alias: the bucket policy compares the upload's key id with this exact string."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a full KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>); aliases are not accepted."
  }
}

variable "kms_key_deletion_window_in_days" {
  description = "Controls the waiting period, in days, before a key created by this module is deleted after scheduling deletion."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_in_days >= 7 && var.kms_key_deletion_window_in_days <= 30 && floor(var.kms_key_deletion_window_in_days) == var.kms_key_deletion_window_in_days
    error_message = "kms_key_deletion_window_in_days must be a whole number between 7 and 30."
  }
}

################################################################################
# Lifecycle
################################################################################

variable "anchors_transition_days" {
  description = "Controls after how many days objects under anchors/ move to GLACIER_IR. null keeps them in STANDARD. Anchors never expire."
  type        = number
  default     = 90

  validation {
    condition     = var.anchors_transition_days == null || try(var.anchors_transition_days >= 0 && var.anchors_transition_days <= 36500 && floor(var.anchors_transition_days) == var.anchors_transition_days, false)
    error_message = "anchors_transition_days must be null or a whole number between 0 and 36500."
  }
}

variable "evidence_transition_days" {
  description = "Controls after how many days objects under evidence/ move to GLACIER_IR. null keeps them in STANDARD."
  type        = number
  default     = 90

  validation {
    condition     = var.evidence_transition_days == null || try(var.evidence_transition_days >= 0 && var.evidence_transition_days <= 36500 && floor(var.evidence_transition_days) == var.evidence_transition_days, false)
    error_message = "evidence_transition_days must be null or a whole number between 0 and 36500."
  }
}

variable "proofs_transition_days" {
  description = "Controls after how many days objects under proofs/ move to GLACIER_IR. null keeps them in STANDARD."
  type        = number
  default     = 90

  validation {
    condition     = var.proofs_transition_days == null || try(var.proofs_transition_days >= 0 && var.proofs_transition_days <= 36500 && floor(var.proofs_transition_days) == var.proofs_transition_days, false)
    error_message = "proofs_transition_days must be null or a whole number between 0 and 36500."
  }
}

variable "evidence_expiration_days" {
  description = "Controls after how many days current evidence/ objects expire (a delete marker is placed). null never expires them. Must be at least object_lock_retention_days (enforced by a precondition)."
  type        = number
  default     = null

  validation {
    condition     = var.evidence_expiration_days == null || try(var.evidence_expiration_days >= 1 && var.evidence_expiration_days <= 36500 && floor(var.evidence_expiration_days) == var.evidence_expiration_days, false)
    error_message = "evidence_expiration_days must be null or a whole number between 1 and 36500."
  }
}

variable "proofs_expiration_days" {
  description = "Controls after how many days current proofs/ objects expire (a delete marker is placed). null never expires them. Must be at least object_lock_retention_days (enforced by a precondition)."
  type        = number
  default     = null

  validation {
    condition     = var.proofs_expiration_days == null || try(var.proofs_expiration_days >= 1 && var.proofs_expiration_days <= 36500 && floor(var.proofs_expiration_days) == var.proofs_expiration_days, false)
    error_message = "proofs_expiration_days must be null or a whole number between 1 and 36500."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Controls after how many days noncurrent versions under evidence/ and proofs/ are removed. null keeps them forever. Must be at least object_lock_retention_days (enforced by a precondition). Noncurrent anchor versions are always kept: an overwritten anchor is evidence of tampering."
  type        = number
  default     = null

  validation {
    condition     = var.noncurrent_version_expiration_days == null || try(var.noncurrent_version_expiration_days >= 1 && var.noncurrent_version_expiration_days <= 36500 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days, false)
    error_message = "noncurrent_version_expiration_days must be null or a whole number between 1 and 36500."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Controls after how many days incomplete multipart uploads are aborted (they are not objects and hold no lock)."
  type        = number
  default     = 7

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && var.abort_incomplete_multipart_upload_days <= 365 && floor(var.abort_incomplete_multipart_upload_days) == var.abort_incomplete_multipart_upload_days
    error_message = "abort_incomplete_multipart_upload_days must be a whole number between 1 and 365."
  }
}

################################################################################
# Writer role
################################################################################

variable "create_writer_role" {
  description = "Whether to create the writer IAM role (the identity stele uploads anchors, proofs and evidence with). When false, writer_role_arn must name an existing principal."
  type        = bool
  default     = true
}

variable "writer_role_arn" {
  description = "Controls which existing principal is treated as the writer in the bucket policy when create_writer_role is false. Ignored otherwise."
  type        = string
  default     = null

  validation {
    condition     = var.writer_role_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", var.writer_role_arn))
    error_message = "writer_role_arn must be an IAM role or user ARN."
  }
}

variable "writer_role_name" {
  description = "Controls the writer role's name. null derives \"<bucket>-writer\" (truncated to IAM's 64-character limit)."
  type        = string
  default     = null

  validation {
    condition     = var.writer_role_name == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.writer_role_name))
    error_message = "writer_role_name must be 1-64 characters of letters, digits and +=,.@_-."
  }
}

variable "writer_trusted_services" {
  description = "Controls which AWS service principals may assume the writer role (e.g. ecs-tasks.amazonaws.com, ec2.amazonaws.com, lambda.amazonaws.com). The trust policy pins aws:SourceAccount to this account against confused-deputy use."
  type        = list(string)
  default     = ["ecs-tasks.amazonaws.com"]

  validation {
    condition     = alltrue([for s in var.writer_trusted_services : can(regex("^[a-z0-9.-]+\\.amazonaws\\.com(\\.cn)?$", s))])
    error_message = "writer_trusted_services must be service principals such as ecs-tasks.amazonaws.com."
  }
}

variable "writer_trusted_role_arns" {
  description = "Controls which IAM roles (e.g. an EKS pod-identity or CI role) may assume the writer role with sts:AssumeRole, in addition to writer_trusted_services."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.writer_trusted_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", a))])
    error_message = "writer_trusted_role_arns must be IAM role ARNs."
  }
}

variable "restrict_uploads_to_writer" {
  description = "Whether to add the DenyUploadsByNonWriter statement (deploy/policy/deny-non-writer-uploads.json.tftpl): s3:PutObject by any principal other than the writer is denied, including administrators. On by default: anyone else who may upload can pre-create the next anchor's key (stele then writes the anchor at its alternate key and reports the squatter, but the bucket should not allow it). Set false only if another principal must upload to this bucket."
  type        = bool
  default     = true
}

variable "iam_role_path" {
  description = "Controls the IAM path of every role this module creates."
  type        = string
  default     = "/"

  validation {
    condition     = can(regex("^/([A-Za-z0-9+=,.@_-]+/)*$", var.iam_role_path)) && length(var.iam_role_path) <= 512
    error_message = "iam_role_path must begin and end with \"/\"."
  }
}

variable "iam_role_permissions_boundary" {
  description = "Controls the permissions boundary policy ARN attached to every role this module creates. null attaches none."
  type        = string
  default     = null

  validation {
    condition     = var.iam_role_permissions_boundary == null || can(regex("^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/.+$", var.iam_role_permissions_boundary))
    error_message = "iam_role_permissions_boundary must be an IAM policy ARN."
  }
}

################################################################################
# Verifier (auditor) role
################################################################################

variable "auditor_account_ids" {
  description = "Controls which AWS accounts may assume the read-only verifier role. The role is created only when this list is non-empty."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.auditor_account_ids : can(regex("^[0-9]{12}$", id))])
    error_message = "auditor_account_ids must be 12-digit AWS account ids."
  }
}

variable "auditor_external_id" {
  description = "Controls the sts:ExternalId the auditors must present when assuming the verifier role (recommended for third-party auditors). null requires none."
  type        = string
  default     = null

  validation {
    condition     = var.auditor_external_id == null || can(regex("^[A-Za-z0-9+=,.@:/_-]{2,1224}$", var.auditor_external_id))
    error_message = "auditor_external_id must be 2-1224 characters of letters, digits and +=,.@:/_-."
  }
}

variable "verifier_role_name" {
  description = "Controls the verifier role's name. null derives \"<bucket>-verifier\" (truncated to IAM's 64-character limit)."
  type        = string
  default     = null

  validation {
    condition     = var.verifier_role_name == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.verifier_role_name))
    error_message = "verifier_role_name must be 1-64 characters of letters, digits and +=,.@_-."
  }
}

variable "verifier_max_session_duration" {
  description = "Controls the verifier role's maximum session length in seconds (3600-43200)."
  type        = number
  default     = 3600

  validation {
    condition     = var.verifier_max_session_duration >= 3600 && var.verifier_max_session_duration <= 43200
    error_message = "verifier_max_session_duration must be between 3600 and 43200 seconds."
  }
}

################################################################################
# Replication
################################################################################

variable "replication" {
  description = <<-EOT
    Controls optional replication of every object to a second Object Lock bucket (another region or account). null disables it.
      destination_bucket_arn          - ARN of the destination bucket; it must have Object Lock enabled and versioning on.
      destination_kms_key_arn         - KMS key ARN replicas are encrypted with (in the destination's region).
      destination_object_lock_enabled - must be true: an explicit statement that the destination is an Object Lock bucket
                                        (Terraform cannot read another bucket's lock configuration with every provider version).
      storage_class                   - replica storage class (default STANDARD).
      replication_time_control        - whether to enable S3 Replication Time Control (15-minute SLA, extra cost).
    Delete markers are never replicated.
  EOT
  type = object({
    destination_bucket_arn          = string
    destination_kms_key_arn         = string
    destination_object_lock_enabled = bool
    storage_class                   = optional(string, "STANDARD")
    replication_time_control        = optional(bool, false)
  })
  default = null

  validation {
    condition     = var.replication == null || try(var.replication.destination_object_lock_enabled, false)
    error_message = "replication.destination_object_lock_enabled must be true: replicate only into a bucket created with Object Lock, or the copies are not WORM."
  }
  validation {
    condition     = var.replication == null || can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.replication.destination_bucket_arn))
    error_message = "replication.destination_bucket_arn must be an S3 bucket ARN (arn:aws:s3:::name)."
  }
  validation {
    condition     = var.replication == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.replication.destination_kms_key_arn))
    error_message = "replication.destination_kms_key_arn must be a full KMS key ARN."
  }
  validation {
    condition     = var.replication == null || contains(["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"], try(var.replication.storage_class, "STANDARD"))
    error_message = "replication.storage_class must be an S3 storage class."
  }
}

variable "replication_role_name" {
  description = "Controls the replication role's name. null derives \"<bucket>-replication\" (truncated to IAM's 64-character limit)."
  type        = string
  default     = null

  validation {
    condition     = var.replication_role_name == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.replication_role_name))
    error_message = "replication_role_name must be 1-64 characters of letters, digits and +=,.@_-."
  }
}

################################################################################
# Access logging
################################################################################

variable "enable_access_logging" {
  description = "Whether to deliver S3 server access logs to access_logging_target_bucket."
  type        = bool
  default     = false
}

variable "access_logging_target_bucket" {
  description = "Controls which bucket receives the server access logs when enable_access_logging is true. Must exist, be in the same region, differ from this bucket and have no Object Lock default retention (S3 cannot deliver logs into such a bucket)."
  type        = string
  default     = ""
}

variable "access_logging_target_prefix" {
  description = "Controls the key prefix of the access log objects. null uses \"s3-access/<bucket>/\"."
  type        = string
  default     = null

  validation {
    condition     = var.access_logging_target_prefix == null || try(length(var.access_logging_target_prefix) <= 256, false)
    error_message = "access_logging_target_prefix must be at most 256 characters."
  }
}

################################################################################
# Monitoring
################################################################################

variable "enable_eventbridge_notifications" {
  description = "Whether to send the bucket's object events to Amazon EventBridge (free to enable; rules there can alert on unexpected writes or deletes)."
  type        = bool
  default     = true
}

variable "create_missing_anchor_alarm" {
  description = "Whether to create an S3 request-metrics filter on anchors/ and a CloudWatch alarm that fires when no anchor PUT arrived within missing_anchor_alarm_window_minutes (request metrics are billed by CloudWatch)."
  type        = bool
  default     = false
}

variable "missing_anchor_alarm_window_minutes" {
  description = "Controls how long, in minutes, the alarm waits for an anchor PUT before firing. stele anchors hourly, so the default allows one missed hour."
  type        = number
  default     = 120

  validation {
    condition     = var.missing_anchor_alarm_window_minutes >= 60 && var.missing_anchor_alarm_window_minutes <= 1440 && var.missing_anchor_alarm_window_minutes % 60 == 0
    error_message = "missing_anchor_alarm_window_minutes must be a whole number of hours between 60 and 1440."
  }
}

variable "alarm_sns_topic_arns" {
  description = "Controls which SNS topics are notified when the missing-anchor alarm changes state."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.alarm_sns_topic_arns : can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:.+$", a))])
    error_message = "alarm_sns_topic_arns must be SNS topic ARNs."
  }
}
