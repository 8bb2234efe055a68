terraform {
  # 1.5: `check` blocks and mature preconditions; nothing here needs newer.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.x and 6.x both carry every argument used here (object_lock_enabled on
      # aws_s3_bucket, the split-out bucket sub-resources, lifecycle `filter`).
      version = ">= 5.0, < 7.0"
    }
  }
}
