output "gateway_url" {
  description = "Where clients and runners reach the gateway."
  value       = module.rivulet.gateway_url
}

output "alb_dns_name" {
  description = "The load balancer's DNS name (target of public_hostname's DNS record)."
  value       = module.rivulet.alb_dns_name
}

output "table_name" {
  description = "DynamoDB table of the gateway."
  value       = module.rivulet.table_name
}

output "runner_function_arn" {
  description = "ARN of the runner's Lambda function."
  value       = module.rivulet.runner_function_arn
}

output "admin_token_secret_arn" {
  description = "Secrets Manager secret holding the admin token."
  value       = module.rivulet.admin_token_secret_arn
}

output "ecs_cluster_name" {
  description = "ECS cluster of the gateway service."
  value       = module.rivulet.ecs_cluster_name
}

output "ecs_service_name" {
  description = "ECS service running the gateway tasks."
  value       = module.rivulet.ecs_service_name
}

output "register_runner_command" {
  description = "Command that registers another runner pool on the function (replace NAME)."
  value       = module.rivulet.register_runner_command
}
