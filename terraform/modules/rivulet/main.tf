# Rivulet on AWS: the DynamoDB table (dynamodb.tf), the gateway as an ECS service on Fargate
# behind an Application Load Balancer (ecs.tf, alb.tf), the Rust runner as a Lambda function
# the gateway invokes (lambda.tf), their security groups (network.tf), roles (iam.tf) and
# the admin token (secrets.tf).

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  https = var.certificate_arn != null

  # What clients, runners and `rivulet runners` use. With a certificate the load balancer's
  # own DNS name is not on it, so the public hostname is used whenever one is given.
  public_host = coalesce(var.public_hostname, aws_lb.gateway.dns_name)
  gateway_url = "${local.https ? "https" : "http"}://${local.public_host}"

  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id

  runner_function_name = "${var.name}-runner"

  # The pool the gateway creates (or updates) at start from RIVULET_RUNNER_CONFIGS: the same
  # body `PUT /runner-configs/{pool}` takes. request_lifespan and the function's timeout
  # (lambda.tf) both come from var.runner_request_lifespan, so they cannot drift apart; the
  # gateway moves each actor drain_grace_period before the lifespan ends, well inside the
  # timeout.
  runner_configs = {
    (var.runner_pool_name) = {
      lambda = {
        function              = aws_lambda_function.runner.arn
        request_lifespan      = var.runner_request_lifespan
        drain_grace_period    = var.runner_drain_grace_seconds
        max_concurrent_actors = var.runner_max_concurrent_actors
      }
    }
  }
}
