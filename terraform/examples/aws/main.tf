# An example root module: Rivulet in an existing VPC, everything else created by the module.
# Values come from terraform.tfvars; see terraform/README.md for the steps around it.
module "rivulet" {
  source = "../../modules/rivulet"

  vpc_id             = var.vpc_id
  public_subnet_ids  = var.public_subnet_ids
  private_subnet_ids = var.private_subnet_ids

  gateway_image        = var.gateway_image
  gateway_architecture = var.gateway_architecture
  desired_count        = var.desired_count

  runner_zip_path     = var.runner_zip_path
  runner_architecture = var.runner_architecture

  certificate_arn     = var.certificate_arn
  public_hostname     = var.public_hostname
  deletion_protection = var.deletion_protection
}
