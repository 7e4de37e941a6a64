# === naming, tags, data protection ===

variable "name" {
  description = "Prefix of every resource name (load balancer, cluster, roles, function, log groups)."
  type        = string
  default     = "rivulet"

  # The load balancer and target group names are capped at 32 characters; "-gw" is appended
  # to the target group's.
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.name))
    error_message = "name is 2 to 24 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Tags for every resource this module creates."
  type        = map(string)
  default     = {}
}

variable "table_name" {
  description = "Name of the DynamoDB table; the gateway is given the same name (RIVULET_TABLE)."
  type        = string
  default     = "rivulet"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.table_name))
    error_message = "A DynamoDB table name is 3 to 255 characters of A-Z, a-z, 0-9, '_', '-' and '.'."
  }
}

variable "point_in_time_recovery" {
  description = "Continuous backups of the table with restore to any second of the last 35 days."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse to delete the table and the load balancer (whose DNS name clients use) until this is turned off; `terraform destroy` fails while it is on."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the table, both log groups and the admin token secret; null uses the AWS managed keys. Its key policy must let CloudWatch Logs (logs.REGION.amazonaws.com) use it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn is a KMS key ARN (arn:aws:kms:...)."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the gateway's and the runner's logs."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days is one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

variable "log_level" {
  description = "Log filter of the gateway and the runner (RIVET_LOG_LEVEL), e.g. info, debug, or rivulet_gateway=debug,info."
  type        = string
  default     = "info"

  validation {
    condition     = length(var.log_level) > 0
    error_message = "log_level must not be empty."
  }
}

# === network ===

variable "vpc_id" {
  description = "VPC for the load balancer, the gateway tasks and the runner function."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id is a VPC ID (vpc-...)."
  }
}

variable "public_subnet_ids" {
  description = "Subnets for the load balancer, in at least two Availability Zones, with a route to an internet gateway."
  type        = list(string)

  validation {
    condition     = length(var.public_subnet_ids) >= 2 && alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "public_subnet_ids is at least two subnet IDs (an Application Load Balancer spans two or more Availability Zones)."
  }
}

variable "private_subnet_ids" {
  description = "Subnets for the gateway tasks and the runner function. They need outbound HTTPS to AWS APIs (ECR, CloudWatch Logs, Secrets Manager, DynamoDB, Lambda), through a NAT gateway or VPC endpoints."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 1 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "private_subnet_ids is one or more subnet IDs (two or more Availability Zones recommended)."
  }
}

# === load balancer ===

variable "alb_ingress_cidrs" {
  description = "IPv4 ranges allowed to reach the load balancer (clients, runners that connect by themselves, admins)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.alb_ingress_cidrs) > 0 && alltrue([for c in var.alb_ingress_cidrs : can(cidrhost(c, 0))])
    error_message = "alb_ingress_cidrs is a non-empty list of IPv4 CIDR blocks."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for an HTTPS listener on 443 (plain HTTP on 80 then only redirects to it); null serves plain HTTP on 80. Set public_hostname to a name the certificate covers."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn is an ACM certificate ARN (arn:aws:acm:...)."
  }
}

variable "public_hostname" {
  description = "DNS name clients use, e.g. rivulet.example.com; you point it at the load balancer (output alb_dns_name). Null uses the load balancer's own DNS name."
  type        = string
  default     = null

  validation {
    condition     = var.public_hostname == null || can(regex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", var.public_hostname))
    error_message = "public_hostname is a lower-case DNS name without scheme or port, e.g. rivulet.example.com."
  }
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = startswith(var.ssl_policy, "ELBSecurityPolicy-")
    error_message = "ssl_policy is an ELB security policy name (ELBSecurityPolicy-...)."
  }
}

variable "alb_idle_timeout" {
  description = "Seconds a connection through the load balancer may carry no data before it is closed. Client sockets of a sleeping actor stay open on the gateway and may be silent for long, hence the maximum by default."
  type        = number
  default     = 4000

  validation {
    condition     = var.alb_idle_timeout >= 3600 && var.alb_idle_timeout <= 4000
    error_message = "alb_idle_timeout is 3600 to 4000 seconds (4000 is the Application Load Balancer's maximum)."
  }
}

variable "alb_access_logs_bucket" {
  description = "S3 bucket for the load balancer's access logs (its policy must allow the Elastic Load Balancing log delivery); null turns access logs off."
  type        = string
  default     = null
}

# === gateway (ECS on Fargate) ===

variable "gateway_image" {
  description = "Gateway container image built from the repository's Dockerfile, with a tag or digest, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/rivulet:v1."
  type        = string

  # A moving tag would let a task restart silently change the running version.
  validation {
    condition     = can(regex("(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$", var.gateway_image)) && !endswith(var.gateway_image, ":latest")
    error_message = "gateway_image needs an explicit tag (not :latest) or an @sha256: digest."
  }
}

variable "gateway_architecture" {
  description = "CPU architecture of the gateway tasks; the image must be built for it (docker build --platform linux/amd64 or linux/arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.gateway_architecture)
    error_message = "gateway_architecture is x86_64 or arm64."
  }
}

variable "gateway_port" {
  description = "Port the gateway listens on inside its task (RIVULET_PORT); the load balancer, other tasks and the runner reach it there."
  type        = number
  default     = 6420

  # The image runs as a non-root user, which cannot bind ports below 1024.
  validation {
    condition     = var.gateway_port >= 1024 && var.gateway_port <= 65535 && floor(var.gateway_port) == var.gateway_port
    error_message = "gateway_port is an integer from 1024 to 65535."
  }
}

variable "gateway_cpu" {
  description = "CPU units of one gateway task (1024 = one vCPU)."
  type        = number
  default     = 512

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.gateway_cpu)
    error_message = "gateway_cpu is a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "gateway_memory" {
  description = "Memory (MiB) of one gateway task; Fargate accepts only some CPU/memory pairs (512 CPU: 1024 to 4096)."
  type        = number
  default     = 1024

  validation {
    condition     = var.gateway_memory >= 512 && var.gateway_memory <= 122880
    error_message = "gateway_memory is 512 to 122880 MiB."
  }
}

variable "desired_count" {
  description = "Gateway tasks to run. With two or more, a deployment or a failed task leaves others serving; the actors of a lost task move to the others once their lease runs out."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_count >= 1 && floor(var.desired_count) == var.desired_count
    error_message = "desired_count is an integer of at least 1."
  }
}

variable "gateway_drain_seconds" {
  description = "Seconds a stopping gateway task gets: the load balancer's deregistration delay and the container's stopTimeout (SIGTERM to SIGKILL). Must cover the gateway's drain on SIGTERM."
  type        = number
  default     = 60

  # ECS caps a Fargate container's stopTimeout at 120 s.
  validation {
    condition     = var.gateway_drain_seconds >= 1 && var.gateway_drain_seconds <= 120 && floor(var.gateway_drain_seconds) == var.gateway_drain_seconds
    error_message = "gateway_drain_seconds is an integer from 1 to 120 (ECS's maximum stopTimeout)."
  }
}

variable "container_insights" {
  description = "CloudWatch Container Insights on the ECS cluster (per-task CPU, memory and network metrics; billed as custom metrics)."
  type        = bool
  default     = true
}

variable "admin_token_secret_arn" {
  description = "Full ARN of an existing Secrets Manager secret whose plain-text value is the admin token (RIVULET_TOKEN); the token then never enters Terraform state. A secret encrypted with its own KMS key also needs kms:Decrypt for the execution role (pass that key as kms_key_arn). Null: the module creates the secret with a random token."
  type        = string
  default     = null

  validation {
    condition     = var.admin_token_secret_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.admin_token_secret_arn))
    error_message = "admin_token_secret_arn is a Secrets Manager secret ARN (arn:aws:secretsmanager:...)."
  }
}

# === runner (AWS Lambda) ===

variable "runner_zip_path" {
  description = "Path of the runner's Lambda package, built by `cargo lambda build --release -p rivulet-lambda-runner --bin rivulet-runner --output-format zip` (add --arm64 for arm64): target/lambda/rivulet-runner/bootstrap.zip."
  type        = string

  validation {
    condition     = endswith(var.runner_zip_path, ".zip")
    error_message = "runner_zip_path is the path of a .zip file."
  }
}

variable "runner_architecture" {
  description = "Instruction set of the runner function; the zip must be built for it (with --arm64 for arm64)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.runner_architecture)
    error_message = "runner_architecture is arm64 or x86_64."
  }
}

variable "runner_memory_mb" {
  description = "Memory of the runner function (MB); Lambda gives CPU in proportion to it."
  type        = number
  default     = 256

  validation {
    condition     = var.runner_memory_mb >= 128 && var.runner_memory_mb <= 10240
    error_message = "runner_memory_mb is 128 to 10240."
  }
}

variable "runner_pool_name" {
  description = "Runner pool the gateway declares for the function (the runner name actors are created with; RivetKit's default is `default`)."
  type        = string
  default     = "default"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,64}$", var.runner_pool_name))
    error_message = "runner_pool_name is 1 to 64 characters of A-Z, a-z, 0-9, '_', '-' and '.'."
  }
}

variable "runner_request_lifespan" {
  description = "Seconds one invocation serves its actor: the pool's request_lifespan and the function's timeout, kept equal by this module."
  type        = number
  default     = 900

  # 900 s is Lambda's longest timeout.
  validation {
    condition     = var.runner_request_lifespan >= 60 && var.runner_request_lifespan <= 900 && floor(var.runner_request_lifespan) == var.runner_request_lifespan
    error_message = "runner_request_lifespan is an integer from 60 to 900 seconds."
  }
}

variable "runner_drain_grace_seconds" {
  description = "Seconds before an invocation's end at which the gateway moves its actor to a fresh invocation (the pool's drain_grace_period); shorter than runner_request_lifespan."
  type        = number
  default     = 60

  validation {
    condition     = var.runner_drain_grace_seconds >= 1 && var.runner_drain_grace_seconds < 900 && floor(var.runner_drain_grace_seconds) == var.runner_drain_grace_seconds
    error_message = "runner_drain_grace_seconds is an integer from 1 to 899 (and below runner_request_lifespan)."
  }
}

variable "runner_max_concurrent_actors" {
  description = "Actors the pool runs at once (max_concurrent_actors); each awake actor holds one running invocation, plus a second one while it moves."
  type        = number
  default     = 100

  validation {
    condition     = var.runner_max_concurrent_actors >= 1 && floor(var.runner_max_concurrent_actors) == var.runner_max_concurrent_actors
    error_message = "runner_max_concurrent_actors is an integer of at least 1."
  }
}

variable "runner_reserved_concurrency" {
  description = "Concurrent executions reserved for (and capping) the runner function; null leaves it on the account's unreserved pool."
  type        = number
  default     = null

  validation {
    condition     = var.runner_reserved_concurrency == null || try(var.runner_reserved_concurrency >= 1, false)
    error_message = "runner_reserved_concurrency is null or at least 1."
  }
}
