variable "table_name" {
  description = "Name of the DynamoDB table; the gateway takes the same name (--table / RIVULET_TABLE)."
  type        = string
  default     = "rivulet"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.table_name))
    error_message = "A DynamoDB table name is 3 to 255 characters of A-Z, a-z, 0-9, '_', '-' and '.'."
  }
}

variable "tags" {
  description = "Tags for every resource this module creates."
  type        = map(string)
  default     = {}
}

variable "point_in_time_recovery" {
  description = "Continuous backups with restore to any second of the last 35 days."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse DeleteTable until this is turned off (also guards against `terraform destroy`)."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for encryption at rest; null uses the AWS managed key aws/dynamodb."
  type        = string
  default     = null
}
