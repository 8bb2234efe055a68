output "bucket_id" {
  description = "The bucket's name."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "The bucket's ARN."
  value       = aws_s3_bucket.this.arn
}

output "bucket_region" {
  description = "The region the bucket lives in (AWS_REGION for stele)."
  value       = local.region
}

output "bucket_regional_domain_name" {
  description = "The bucket's region-specific domain name."
  value       = aws_s3_bucket.this.bucket_regional_domain_name
}

output "object_lock_mode" {
  description = "The default Object Lock retention mode."
  value       = aws_s3_bucket_object_lock_configuration.this.rule[0].default_retention[0].mode
}

output "object_lock_retention_days" {
  description = "The default Object Lock retention period in days."
  value       = aws_s3_bucket_object_lock_configuration.this.rule[0].default_retention[0].days
}

output "kms_key_arn" {
  description = "The KMS key ARN every upload must name in x-amz-server-side-encryption-aws-kms-key-id."
  value       = local.kms_key_arn
}

output "kms_key_created" {
  description = "Whether this module created the KMS key (false when kms_key_arn was supplied)."
  value       = local.create_kms_key
}

output "writer_role_arn" {
  description = "The writer principal's ARN (created here, or writer_role_arn when create_writer_role is false)."
  value       = local.writer_role_arn
}

output "writer_role_name" {
  description = "The writer role's name; empty when the role was not created here."
  value       = try(aws_iam_role.writer[0].name, "")
}

output "verifier_role_arn" {
  description = "The auditors' read-only role ARN; empty when auditor_account_ids is empty."
  value       = try(aws_iam_role.verifier[0].arn, "")
}

output "replication_role_arn" {
  description = "The replication role ARN; empty when replication is disabled."
  value       = try(aws_iam_role.replication[0].arn, "")
}

output "missing_anchor_alarm_arn" {
  description = "The missing-anchor CloudWatch alarm ARN; empty when the alarm is not created."
  value       = try(aws_cloudwatch_metric_alarm.missing_anchor[0].arn, "")
}

output "prefixes" {
  description = "The key prefixes stele writes under (anchors, proofs, evidence)."
  value = {
    anchors  = local.anchors_prefix
    evidence = local.evidence_prefix
    proofs   = local.proofs_prefix
  }
}

output "bucket_policy_json" {
  description = "The bucket policy exactly as applied, rendered from deploy/policy/*.json.tftpl (compare with `stele bucket check`)."
  value       = aws_s3_bucket_policy.this.policy
}

output "stele_environment" {
  description = "Environment variables for the stele service writing to this bucket."
  value = {
    AUDIT_ANCHOR_BUCKET         = aws_s3_bucket.this.id
    AUDIT_ANCHOR_RETENTION_DAYS = tostring(var.object_lock_retention_days)
    AWS_REGION                  = local.region
  }
}
