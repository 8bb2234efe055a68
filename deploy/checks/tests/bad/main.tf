# Deliberately non-compliant configuration: scripts/check-terraform.sh asserts
# that checkov reports every stele custom check as FAILED here. Never deploy.

resource "aws_s3_bucket" "no_lock" {
  bucket = "stele-fixture-no-object-lock"
}

resource "aws_s3_bucket" "forced" {
  bucket              = "stele-fixture-force-destroy"
  object_lock_enabled = true
  force_destroy       = true
}

resource "aws_s3_bucket" "short" {
  bucket              = "stele-fixture-short-retention"
  object_lock_enabled = true
}

resource "aws_s3_bucket_object_lock_configuration" "short" {
  bucket = aws_s3_bucket.short.id

  rule {
    default_retention {
      mode = "GOVERNANCE"
      days = 30
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "short" {
  bucket = aws_s3_bucket.short.id

  rule {
    id     = "expire-evidence-early"
    status = "Enabled"

    filter {
      prefix = "evidence/"
    }

    expiration {
      days = 10
    }
  }

  rule {
    id     = "drop-old-versions-early"
    status = "Enabled"

    filter {
      prefix = "proofs/"
    }

    dynamic "noncurrent_version_expiration" {
      for_each = [20]
      content {
        noncurrent_days = noncurrent_version_expiration.value
      }
    }
  }
}
