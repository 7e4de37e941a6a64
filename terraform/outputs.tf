output "table_name" {
  description = "Table name; run the gateway with --table (or RIVULET_TABLE) set to it."
  value       = aws_dynamodb_table.rivulet.name
}

output "table_arn" {
  description = "Table ARN."
  value       = aws_dynamodb_table.rivulet.arn
}

output "gateway_policy_json" {
  description = "IAM policy (JSON) with the DynamoDB actions the gateway needs on this table; attach it to the gateway's role."
  value       = data.aws_iam_policy_document.gateway.json
}
