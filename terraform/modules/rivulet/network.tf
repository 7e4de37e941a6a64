# Three security groups, one per role, each opening only the gateway port between them:
#   clients -> load balancer (80, and 443 with a certificate) -> gateway tasks
#   gateway task -> gateway task (a request for an actor another node serves is forwarded there)
#   runner function -> gateway task (an invoked runner connects back to the node that invoked it)
# Rules are separate resources so the groups can refer to each other without a cycle.

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "Rivulet load balancer: clients in, gateway tasks out"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_security_group" "gateway" {
  name        = "${var.name}-gateway"
  description = "Rivulet gateway tasks: the gateway port from the load balancer, other tasks and the runner"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_security_group" "runner" {
  name        = "${var.name}-runner"
  description = "Rivulet runner function: out to the gateway port of the tasks only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

# --- load balancer ---

# Port 80 stays open with a certificate too, to redirect plain-HTTP clients to HTTPS.
resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  for_each = toset(var.alb_ingress_cidrs)
  #checkov:skip=CKV_AWS_260:The load balancer is the public entry for clients; port 80 only redirects to HTTPS once var.certificate_arn is set, and var.alb_ingress_cidrs narrows who may connect.

  security_group_id = aws_security_group.alb.id
  description       = local.https ? "HTTP from clients (redirected to HTTPS)" : "HTTP from clients"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  tags              = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = local.https ? toset(var.alb_ingress_cidrs) : toset([])

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from clients"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  tags              = var.tags
}

resource "aws_vpc_security_group_egress_rule" "alb_to_gateway" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the gateway tasks"
  referenced_security_group_id = aws_security_group.gateway.id
  ip_protocol                  = "tcp"
  from_port                    = var.gateway_port
  to_port                      = var.gateway_port
  tags                         = var.tags
}

# --- gateway tasks ---

resource "aws_vpc_security_group_ingress_rule" "gateway_from_alb" {
  security_group_id            = aws_security_group.gateway.id
  description                  = "Client traffic and health checks from the load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.gateway_port
  to_port                      = var.gateway_port
  tags                         = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "gateway_from_gateway" {
  security_group_id            = aws_security_group.gateway.id
  description                  = "Requests forwarded by other gateway tasks (RIVULET_NODE_URL)"
  referenced_security_group_id = aws_security_group.gateway.id
  ip_protocol                  = "tcp"
  from_port                    = var.gateway_port
  to_port                      = var.gateway_port
  tags                         = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "gateway_from_runner" {
  security_group_id            = aws_security_group.gateway.id
  description                  = "Runner invocations connecting back to the task that invoked them"
  referenced_security_group_id = aws_security_group.runner.id
  ip_protocol                  = "tcp"
  from_port                    = var.gateway_port
  to_port                      = var.gateway_port
  tags                         = var.tags
}

resource "aws_vpc_security_group_egress_rule" "gateway_to_gateway" {
  security_group_id            = aws_security_group.gateway.id
  description                  = "Forwarding to the task that serves an actor"
  referenced_security_group_id = aws_security_group.gateway.id
  ip_protocol                  = "tcp"
  from_port                    = var.gateway_port
  to_port                      = var.gateway_port
  tags                         = var.tags
}

# AWS APIs (DynamoDB, Lambda, Secrets Manager, ECR, CloudWatch Logs) through a NAT gateway or
# VPC endpoints, whose addresses are not known here; also HTTPS runner URLs registered with
# `rivulet runners put --url`. DNS to the VPC resolver is not filtered by security groups.
resource "aws_vpc_security_group_egress_rule" "gateway_https" {
  security_group_id = aws_security_group.gateway.id
  description       = "HTTPS to AWS APIs and HTTPS runner URLs"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  tags              = var.tags
}

# --- runner function ---

# The runner makes no AWS API call and is given the task's private IP, not a name: this one
# rule is all it needs.
resource "aws_vpc_security_group_egress_rule" "runner_to_gateway" {
  security_group_id            = aws_security_group.runner.id
  description                  = "Connect back to the gateway task that invoked it"
  referenced_security_group_id = aws_security_group.gateway.id
  ip_protocol                  = "tcp"
  from_port                    = var.gateway_port
  to_port                      = var.gateway_port
  tags                         = var.tags
}
