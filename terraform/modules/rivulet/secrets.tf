# The admin token (RIVULET_TOKEN). Without one the gateway accepts every caller of its
# management API, which here is a public load balancer, so a token is always set: either
# the caller's own secret (var.admin_token_secret_arn; the token never enters Terraform
# state), or one created here with a random value (nothing to prepare, but the value is then
# in the state, which must be stored encrypted and access-controlled).

resource "random_password" "admin_token" {
  count = var.admin_token_secret_arn == null ? 1 : 0

  length = 48
  # It travels in an Authorization header and in JSON; letters and digits need no escaping.
  special = false
}

resource "aws_secretsmanager_secret" "admin_token" {
  count = var.admin_token_secret_arn == null ? 1 : 0
  #checkov:skip=CKV2_AWS_57:No rotation function: the gateway reads the token once at start, so an automatic rotation would leave running tasks on the old token. Rotate by putting a new value and running `aws ecs update-service --force-new-deployment` (terraform/README.md).

  # A prefix, not a fixed name: a deleted secret keeps its name for its recovery window, and
  # a destroy followed by an apply would otherwise fail on it.
  name_prefix = "${var.name}-admin-token-"
  description = "Rivulet admin token (RIVULET_TOKEN of the gateway; RIVET_TOKEN for `rivulet runners`)."
  kms_key_id  = var.kms_key_arn

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "admin_token" {
  count = var.admin_token_secret_arn == null ? 1 : 0

  secret_id     = aws_secretsmanager_secret.admin_token[0].id
  secret_string = random_password.admin_token[0].result
}

locals {
  admin_token_secret_arn = coalesce(var.admin_token_secret_arn, one(aws_secretsmanager_secret.admin_token[*].arn))
}
