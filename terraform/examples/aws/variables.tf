variable "region" {
  description = "AWS Region to deploy to."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region is an AWS Region name, e.g. eu-west-1."
  }
}

variable "tags" {
  description = "Tags for every resource (applied through the provider's default_tags)."
  type        = map(string)
  default     = { app = "rivulet" }
}

variable "vpc_id" {
  description = "Existing VPC to deploy into."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets of that VPC, in two or more Availability Zones, for the load balancer."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Private subnets of that VPC for the gateway tasks and the runner function, with outbound HTTPS through a NAT gateway or VPC endpoints."
  type        = list(string)
}

variable "gateway_image" {
  description = "The gateway image you pushed, with its tag, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/rivulet:v1."
  type        = string
}

variable "gateway_architecture" {
  description = "Architecture the gateway image was built for: x86_64 or arm64."
  type        = string
  default     = "x86_64"
}

variable "runner_zip_path" {
  description = "The runner package built by cargo lambda (relative paths are from this directory)."
  type        = string
  default     = "../../../target/lambda/rivulet-runner/bootstrap.zip"
}

variable "runner_architecture" {
  description = "Architecture the runner package was built for: arm64 (cargo lambda build --arm64) or x86_64."
  type        = string
  default     = "arm64"
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS; null serves plain HTTP."
  type        = string
  default     = null
}

variable "public_hostname" {
  description = "DNS name clients use, pointed at the load balancer (required with certificate_arn); null uses the load balancer's DNS name."
  type        = string
  default     = null
}

variable "desired_count" {
  description = "Gateway tasks to run."
  type        = number
  default     = 2
}

variable "deletion_protection" {
  description = "Protect the table and the load balancer from deletion; set false and apply before `terraform destroy`."
  type        = bool
  default     = true
}
