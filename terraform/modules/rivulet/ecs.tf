# The gateway as an ECS service on Fargate. It holds client WebSockets for hours (a sleeping
# actor's sockets stay open on the gateway), so it needs a long-running process: Lambda
# stops after 15 minutes and App Runner cannot keep sockets that long.

resource "aws_cloudwatch_log_group" "gateway" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days, 30 days by default to keep log storage cheap; raise it where a year of logs is required.
  name              = "/ecs/${var.name}-gateway"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_ecs_cluster" "gateway" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }

  tags = var.tags
}

locals {
  # Every RIVULET_* name here must be an option of `rivulet serve` (tests/terraform/deploy.py
  # checks them against `rivulet serve --help`).
  gateway_environment = {
    # All interfaces: the load balancer, the other tasks and the runner connect from outside
    # the task.
    RIVULET_HOST  = "0.0.0.0"
    RIVULET_PORT  = tostring(var.gateway_port)
    RIVULET_STORE = "dynamodb"
    RIVULET_TABLE = aws_dynamodb_table.rivulet.name
    # `auto`: the gateway uses http://<this task's private IP>:<port>, the address other tasks
    # forward to and invoked runners connect back to; the node id is derived from it.
    RIVULET_NODE_URL       = "auto"
    RIVULET_PUBLIC_URL     = local.gateway_url
    RIVULET_RUNNER_CONFIGS = jsonencode(local.runner_configs)
    # One JSON object per line, which CloudWatch Logs Insights queries by field.
    RIVULET_LOG_FORMAT = "json"
    RIVET_LOG_LEVEL    = var.log_level
    AWS_REGION         = local.region
  }

  # Injected by ECS from Secrets Manager at task start; never in the task definition.
  gateway_secrets = {
    RIVULET_TOKEN = local.admin_token_secret_arn
  }

  gateway_container = {
    name      = "gateway"
    image     = var.gateway_image
    essential = true

    portMappings = [{
      containerPort = var.gateway_port
      protocol      = "tcp"
    }]

    environment = [for k, v in local.gateway_environment : { name = k, value = v }]
    secrets     = [for k, v in local.gateway_secrets : { name = k, valueFrom = v }]

    # Time between SIGTERM and SIGKILL, for the gateway's drain.
    stopTimeout = var.gateway_drain_seconds

    # On DynamoDB the gateway writes nothing to disk.
    readonlyRootFilesystem = true

    # Every client socket and runner connection is one descriptor; Fargate's default is
    # 65535 and its maximum 1048576.
    ulimits = [{
      name      = "nofile"
      softLimit = 1048576
      hardLimit = 1048576
    }]

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.gateway.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "gateway"
      }
    }
  }
}

resource "aws_ecs_task_definition" "gateway" {
  family                   = "${var.name}-gateway"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.gateway_cpu
  memory                   = var.gateway_memory
  execution_role_arn       = aws_iam_role.gateway_execution.arn
  task_role_arn            = aws_iam_role.gateway_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.gateway_architecture == "arm64" ? "ARM64" : "X86_64"
  }

  container_definitions = jsonencode([local.gateway_container])

  # Checks across variables, which variable validations cannot make on Terraform 1.5. The
  # gateway would refuse the pool at start otherwise.
  lifecycle {
    precondition {
      condition     = var.runner_drain_grace_seconds < var.runner_request_lifespan
      error_message = "runner_drain_grace_seconds must be shorter than runner_request_lifespan: the actor moves to a fresh invocation that long before the old one ends."
    }
    precondition {
      condition     = var.runner_reserved_concurrency == null || try(var.runner_max_concurrent_actors < var.runner_reserved_concurrency, false)
      error_message = "runner_max_concurrent_actors must be below runner_reserved_concurrency: an actor that moves holds two invocations for a moment."
    }
  }

  tags = var.tags
}

resource "aws_ecs_service" "gateway" {
  name             = "${var.name}-gateway"
  cluster          = aws_ecs_cluster.gateway.id
  task_definition  = aws_ecs_task_definition.gateway.arn
  desired_count    = var.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  propagate_tags   = "SERVICE"

  # New tasks come up before old ones stop, so a deployment never leaves fewer serving; a
  # deployment whose tasks never turn healthy rolls back by itself.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  health_check_grace_period_seconds = 60

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.gateway.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.gateway.arn
    container_name   = local.gateway_container.name
    container_port   = var.gateway_port
  }

  # A task started before its permissions, token or listener exist would fail its start-up
  # checks and be replaced; waiting for them keeps the first deployment clean.
  depends_on = [
    aws_lb_listener.http,
    aws_lb_listener.https,
    aws_iam_role_policy.gateway_task,
    aws_iam_role_policy.gateway_execution,
    aws_secretsmanager_secret_version.admin_token,
  ]

  tags = var.tags
}
