# The Rust runner (`rivulet-runner`, lambda-runner/) as a Lambda function. The gateway
# invokes it once per actor; the invocation connects back over WebSocket to the task that
# invoked it (that task's RIVULET_NODE_URL, a private IP), so it runs in the private subnets.
# Its Lambda mode is the default when AWS_LAMBDA_RUNTIME_API is set, so the binary needs no
# arguments; cargo-lambda packages it as `bootstrap`, the file provided.al2023 runs.

resource "aws_cloudwatch_log_group" "runner" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days, 30 days by default to keep log storage cheap; raise it where a year of logs is required.
  # The name Lambda writes to by default; created here so it has a retention and the
  # function's role needs no logs:CreateLogGroup.
  name              = "/aws/lambda/${local.runner_function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_lambda_function" "runner" {
  #checkov:skip=CKV_AWS_116:A dead-letter queue only receives failed asynchronous invocations; the gateway invokes synchronously (RequestResponse) and reports a failed invocation as a named pool error.
  #checkov:skip=CKV_AWS_272:The package is built locally by cargo-lambda; code signing needs an AWS Signer profile and a signing step this deployment does not have.
  #checkov:skip=CKV_AWS_50:The runner emits no X-Ray segments and makes no AWS calls to trace; active tracing would only add cost and xray permissions.
  #checkov:skip=CKV_AWS_173:The only environment variable is the log filter, no secret; the admin token arrives in each invocation's event instead.
  function_name = local.runner_function_name
  description   = "Rivulet runner: serves one actor per invocation for the gateway (${var.name})"
  role          = aws_iam_role.runner.arn

  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.runner_architecture]

  filename         = var.runner_zip_path
  source_code_hash = filebase64sha256(var.runner_zip_path)
  memory_size      = var.runner_memory_mb

  # The same variable as the pool's request_lifespan (main.tf): the gateway moves the actor
  # drain_grace_period before the lifespan ends, so no invocation runs into its timeout.
  timeout = var.runner_request_lifespan

  reserved_concurrent_executions = var.runner_reserved_concurrency == null ? -1 : var.runner_reserved_concurrency

  environment {
    variables = {
      RIVET_LOG_LEVEL = var.log_level
    }
  }

  vpc_config {
    subnet_ids         = var.private_subnet_ids
    security_group_ids = [aws_security_group.runner.id]
  }

  depends_on = [
    aws_cloudwatch_log_group.runner,
    aws_iam_role_policy.runner,
  ]

  tags = var.tags
}
