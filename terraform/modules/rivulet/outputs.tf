output "gateway_url" {
  description = "Where clients, runners and `rivulet runners` reach the gateway (RIVET_ENDPOINT of a RivetKit app or client)."
  value       = local.gateway_url
}

output "alb_dns_name" {
  description = "The load balancer's DNS name; point public_hostname at it (CNAME or Route 53 alias)."
  value       = aws_lb.gateway.dns_name
}

output "alb_arn" {
  description = "The load balancer's ARN (for a WAF web ACL association, alarms)."
  value       = aws_lb.gateway.arn
}

output "table_name" {
  description = "DynamoDB table the gateway keeps its state in (RIVULET_TABLE)."
  value       = aws_dynamodb_table.rivulet.name
}

output "table_arn" {
  description = "DynamoDB table ARN."
  value       = aws_dynamodb_table.rivulet.arn
}

output "runner_function_arn" {
  description = "ARN of the runner's Lambda function."
  value       = aws_lambda_function.runner.arn
}

output "runner_function_name" {
  description = "Name of the runner's Lambda function."
  value       = aws_lambda_function.runner.function_name
}

output "runner_pool_name" {
  description = "Pool the gateway declares for the function at start (RIVULET_RUNNER_CONFIGS)."
  value       = var.runner_pool_name
}

output "admin_token_secret_arn" {
  description = "Secrets Manager secret holding the admin token."
  value       = local.admin_token_secret_arn
}

output "ecs_cluster_name" {
  description = "ECS cluster of the gateway service."
  value       = aws_ecs_cluster.gateway.name
}

output "ecs_service_name" {
  description = "ECS service running the gateway tasks."
  value       = aws_ecs_service.gateway.name
}

output "gateway_log_group" {
  description = "CloudWatch log group of the gateway tasks (JSON lines)."
  value       = aws_cloudwatch_log_group.gateway.name
}

output "runner_log_group" {
  description = "CloudWatch log group of the runner function."
  value       = aws_cloudwatch_log_group.runner.name
}

output "gateway_task_role_arn" {
  description = "Role the gateway tasks run as; add lambda:InvokeFunction on another function here before registering a pool for it."
  value       = aws_iam_role.gateway_task.arn
}

# Another pool on the same function (say, with another lifespan or concurrency cap); replace
# NAME. The token is read from Secrets Manager at run time, so it is never in an output.
output "register_runner_command" {
  description = "Shell command registering another runner pool on this function with `rivulet runners put` (replace NAME)."
  value       = "RIVET_TOKEN=\"$(aws secretsmanager get-secret-value --region ${local.region} --secret-id ${local.admin_token_secret_arn} --query SecretString --output text)\" rivulet runners put NAME --endpoint ${local.gateway_url} --lambda ${aws_lambda_function.runner.arn} --lifespan ${var.runner_request_lifespan} --drain-grace ${var.runner_drain_grace_seconds}"
}
