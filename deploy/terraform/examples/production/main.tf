# Production: COMPLIANCE retention, replication into an Object Lock replica in
# a second region, uploads restricted to the writer role, expirations that
# never undercut the retention, access logs, a missing-anchor alarm, and a
# read-only role for the auditors.
#
# The replica is its own stack, applied first: this same module in us-west-2
# (bucket "example-stele-prod-anchors-usw2", stage "prod", COMPLIANCE, the
# same retention). Its bucket and key ARNs are pasted below; keeping the two
# stacks apart means a change to one can never plan a change to the other.
#
# Account ids, ARNs and names are placeholders.

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}

provider "aws" {
  region              = "us-east-1"
  allowed_account_ids = ["123456789012"]

  default_tags {
    tags = {
      Service   = "stele"
      Stage     = "prod"
      DataClass = "audit-evidence"
      ManagedBy = "terraform"
    }
  }
}

locals {
  # Outputs bucket_arn and kms_key_arn of the replica stack.
  replica_bucket_arn  = "arn:aws:s3:::example-stele-prod-anchors-usw2"
  replica_kms_key_arn = "arn:aws:kms:us-west-2:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
}

module "worm_bucket_prod" {
  source = "../../modules/worm-bucket"

  bucket = "example-stele-prod-anchors-use1"
  stage  = "prod"

  object_lock_mode           = "COMPLIANCE"
  object_lock_retention_days = 400

  # The stele service runs on ECS; only its task role may upload.
  writer_trusted_services    = ["ecs-tasks.amazonaws.com"]
  restrict_uploads_to_writer = true

  # Evidence and proofs may be disposed of after seven years; never earlier
  # than the retention (the module refuses shorter values). Anchors are kept.
  evidence_expiration_days           = 2555
  proofs_expiration_days             = 2555
  noncurrent_version_expiration_days = 2555

  replication = {
    destination_bucket_arn          = local.replica_bucket_arn
    destination_kms_key_arn         = local.replica_kms_key_arn
    destination_object_lock_enabled = true
    replication_time_control        = true
  }

  enable_access_logging        = true
  access_logging_target_bucket = "example-org-s3-access-logs-use1"

  create_missing_anchor_alarm         = true
  missing_anchor_alarm_window_minutes = 120
  alarm_sns_topic_arns                = ["arn:aws:sns:us-east-1:123456789012:example-stele-alerts"]

  # The external audit firm's account (an AWS documentation placeholder).
  auditor_account_ids           = ["111122223333"]
  auditor_external_id           = "example-audit-firm-2026"
  verifier_max_session_duration = 43200
}

output "stele_environment" {
  description = "Environment for the stele service."
  value       = module.worm_bucket_prod.stele_environment
}

output "kms_key_arn" {
  description = "KMS key ARN stele must send with every upload."
  value       = module.worm_bucket_prod.kms_key_arn
}

output "writer_role_arn" {
  description = "Role the stele service's ECS task runs as."
  value       = module.worm_bucket_prod.writer_role_arn
}

output "verifier_role_arn" {
  description = "Role the auditors assume."
  value       = module.worm_bucket_prod.verifier_role_arn
}
