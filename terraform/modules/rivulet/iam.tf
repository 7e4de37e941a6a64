# Three roles, each with only what its holder calls:
#   gateway task role: the store's DynamoDB calls on the table, and Invoke of the runner;
#   gateway execution role (used by ECS, not the gateway): image pull, logs, the token;
#   runner role: its own log group and the network interfaces Lambda needs in the VPC.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    sid     = "EcsTasks"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Only ECS tasks of this account (confused-deputy protection).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

# --- gateway task role: what `rivulet serve` itself calls ---

resource "aws_iam_role" "gateway_task" {
  name               = "${var.name}-gateway-task"
  description        = "Rivulet gateway (rivulet serve): its DynamoDB table and the runner function"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

# The least the gateway needs. Transactions are authorised per action inside them (Put,
# Update, Delete: PutItem, UpdateItem, DeleteItem; ConditionCheck: ConditionCheckItem); there
# is no separate TransactWriteItems permission. DescribeTable is the start-up check (the
# table exists and is keyed as the store writes). CreateTable is left out: only `rivulet dev`
# and `rivulet schema --apply` create tables, and here Terraform does. The table has no
# index, so no index ARN. InvokeFunction covers the function and its versions and aliases
# (`:*`), for pools registered with --qualifier. tests/terraform/check.py keeps these lists
# equal to the calls in gateway/src/store/dynamo/ and adapters/src/lambda.rs.
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

  statement {
    sid       = "InvokeRunner"
    effect    = "Allow"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.runner.arn, "${aws_lambda_function.runner.arn}:*"]
  }
}

resource "aws_iam_role_policy" "gateway_task" {
  name   = "rivulet-gateway"
  role   = aws_iam_role.gateway_task.id
  policy = data.aws_iam_policy_document.gateway.json
}

# --- gateway execution role: what ECS does to start the task ---

locals {
  # The ECR repository the image comes from, so pulls are allowed from it alone; null for an
  # image from another registry, which needs no ECR permission.
  ecr_image          = try(regex("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com(?:\\.cn)?/([^:@]+)", var.gateway_image), null)
  ecr_repository_arn = local.ecr_image == null ? null : format("arn:%s:ecr:%s:%s:repository/%s", local.partition, local.ecr_image[1], local.ecr_image[0], local.ecr_image[2])
}

resource "aws_iam_role" "gateway_execution" {
  name               = "${var.name}-gateway-execution"
  description        = "ECS, starting Rivulet gateway tasks: image pull, logs, admin token"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "gateway_execution" {
  dynamic "statement" {
    for_each = local.ecr_repository_arn == null ? [] : [local.ecr_repository_arn]
    content {
      sid       = "PullImage"
      effect    = "Allow"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
      resources = [statement.value]
    }
  }

  # The registry login token is account-wide: this action has no resource to scope it to.
  dynamic "statement" {
    for_each = local.ecr_repository_arn == null ? [] : [1]
    content {
      sid       = "RegistryLogin"
      effect    = "Allow"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }

  statement {
    sid       = "Logs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.gateway.arn}:*"]
  }

  statement {
    sid       = "AdminToken"
    effect    = "Allow"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.admin_token_secret_arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "AdminTokenKey"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "gateway_execution" {
  name   = "rivulet-gateway-execution"
  role   = aws_iam_role.gateway_execution.id
  policy = data.aws_iam_policy_document.gateway_execution.json
}

# --- runner role ---

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    sid     = "Lambda"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "runner" {
  name               = "${var.name}-runner"
  description        = "Rivulet runner function: its log group and VPC network interfaces"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = var.tags
}

# The runner makes no AWS API call of its own. This is the AWS managed
# AWSLambdaVPCAccessExecutionRole narrowed down: logs to this function's group only (not every
# group of the account), and network interfaces in this account and Region only.
data "aws_iam_policy_document" "runner" {
  statement {
    sid       = "Logs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.runner.arn}:*"]
  }

  # Describe calls cannot be limited to resources; Lambda needs them to find its interfaces.
  statement {
    sid       = "DescribeNetwork"
    effect    = "Allow"
    actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    resources = ["*"]
  }

  # Lambda creates and deletes the function's interfaces with this role. The resources are the
  # interface, subnet and security group; Lambda's guide asks for all of them of the account
  # (for DeleteNetworkInterface in particular) rather than named ones.
  statement {
    sid    = "NetworkInterfaces"
    effect = "Allow"
    actions = [
      "ec2:AssignPrivateIpAddresses",
      "ec2:CreateNetworkInterface",
      "ec2:DeleteNetworkInterface",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:*/*"]
  }
}

resource "aws_iam_role_policy" "runner" {
  name   = "rivulet-runner"
  role   = aws_iam_role.runner.id
  policy = data.aws_iam_policy_document.runner.json
}
