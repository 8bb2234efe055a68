# Minimal: a development WORM bucket with everything the module creates by
# default (dedicated KMS key, writer role for ECS tasks, the shared bucket
# policy, lifecycle rules) and GOVERNANCE retention so that a dev bucket can
# be cleaned up (see the module README's playbook). Placeholder values only.

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
}

module "worm_bucket_dev" {
  source = "../../modules/worm-bucket"

  bucket = "example-stele-dev-anchors"
  stage  = "dev"

  # Development only: GOVERNANCE can be bypassed by an administrator who is
  # granted s3:BypassGovernanceRetention. Production stages refuse it.
  object_lock_mode           = "GOVERNANCE"
  object_lock_retention_days = 90
}

output "stele_environment" {
  description = "Environment for the stele service."
  value       = module.worm_bucket_dev.stele_environment
}

output "kms_key_arn" {
  description = "KMS key ARN stele must send with every upload."
  value       = module.worm_bucket_dev.kms_key_arn
}

output "writer_role_arn" {
  description = "Role the stele service runs as."
  value       = module.worm_bucket_dev.writer_role_arn
}
