# The public entry: an Application Load Balancer in front of the gateway tasks. It passes
# WebSocket upgrades through, and its idle timeout is the longest a silent connection
# survives, so it is set high: a sleeping actor's client sockets stay open on the gateway
# and may carry nothing for a long time.
resource "aws_lb" "gateway" {
  #checkov:skip=CKV2_AWS_28:A WAF web ACL is billed per ACL and per request and its rules depend on the application; attach one with aws_wafv2_web_acl_association (output alb_arn) where wanted.
  name               = var.name
  load_balancer_type = "application"
  internal           = false
  security_groups    = [aws_security_group.alb.id]
  subnets            = var.public_subnet_ids

  idle_timeout               = var.alb_idle_timeout
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  dynamic "access_logs" {
    for_each = var.alb_access_logs_bucket == null ? [] : [var.alb_access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }

  tags = var.tags
}

resource "aws_lb_target_group" "gateway" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the tasks sit in private subnets behind a security group that admits only the load balancer, other tasks and the runner, and the gateway serves plain HTTP.
  name        = "${var.name}-gw"
  vpc_id      = var.vpc_id
  target_type = "ip"
  port        = var.gateway_port
  protocol    = "HTTP"
  # WebSocket upgrades reach targets over HTTP/1.1 only.
  protocol_version = "HTTP1"

  # A stopping task first leaves the target group; the delay lets requests it is answering
  # finish before ECS sends SIGTERM and the gateway drains.
  deregistration_delay = var.gateway_drain_seconds

  health_check {
    path                = "/health"
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener" "https" {
  count = local.https ? 1 : 0

  load_balancer_arn = aws_lb.gateway.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.gateway.arn
  }

  lifecycle {
    precondition {
      condition     = var.public_hostname != null
      error_message = "With certificate_arn set, set public_hostname to a name the certificate covers: clients cannot verify the load balancer's own DNS name against it."
    }
  }

  tags = var.tags
}

# Without a certificate this is the only listener and forwards; with one it only redirects
# to HTTPS.
resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Plain HTTP serves only when var.certificate_arn is unset (a first deployment, or TLS terminated in front of the load balancer); with a certificate this listener only redirects to HTTPS, which checkov cannot see through the conditional.
  load_balancer_arn = aws_lb.gateway.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https ? "redirect" : "forward"
    target_group_arn = local.https ? null : aws_lb_target_group.gateway.arn

    dynamic "redirect" {
      for_each = local.https ? [1] : []
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }

  tags = var.tags
}
