# The table the gateway's DynamoDB store keeps everything in. Its key schema, billing mode and
# (absence of) indexes must equal what `rivulet schema` prints; tests/terraform/check.py
# compares them. Every index the store needs is an item written in the same transaction as
# the record it indexes (docs/DYNAMODB.md), so there is no GSI, LSI, TTL or stream here.
resource "aws_dynamodb_table" "rivulet" {
  #checkov:skip=CKV_AWS_119:By default the AWS managed key aws/dynamodb encrypts the table (checkov cannot see that var.kms_key_arn defaults to null); a customer managed key is opt-in via var.kms_key_arn as it adds KMS cost and a key policy to run.
  name         = var.table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }

  deletion_protection_enabled = var.deletion_protection

  tags = var.tags
}
