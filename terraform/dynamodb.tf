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

# The least the gateway (`rivulet serve`) needs on the table. Transactions are authorised per
# action inside them (Put, Update, Delete: PutItem, UpdateItem, DeleteItem; ConditionCheck:
# ConditionCheckItem); there is no separate TransactWriteItems permission. DescribeTable is the
# start-up check (the table exists and is keyed as the store writes). CreateTable is left out:
# only `rivulet dev` and `rivulet schema --apply` create tables, and here Terraform does.
# check.py keeps this list equal to the calls in the store's source.
data "aws_iam_policy_document" "gateway" {
  statement {
    sid    = "RivuletStore"
    effect = "Allow"
    actions = [
      "dynamodb:BatchGetItem",
      "dynamodb:BatchWriteItem",
      "dynamodb:ConditionCheckItem",
      "dynamodb:DeleteItem",
      "dynamodb:DescribeTable",
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:Query",
      "dynamodb:UpdateItem",
    ]
    resources = [aws_dynamodb_table.rivulet.arn]
  }
}
