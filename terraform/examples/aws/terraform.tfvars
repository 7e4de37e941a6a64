# Example values: replace every one of them with your own before `terraform apply`.
region = "eu-west-1"

vpc_id             = "vpc-0123456789abcdef0"
public_subnet_ids  = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"]
private_subnet_ids = ["subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2"]

# Pushed as shown in terraform/README.md.
gateway_image        = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/rivulet:v0.1.0"
gateway_architecture = "x86_64"

# Built by `cargo lambda build --release -p rivulet-lambda-runner --bin rivulet-runner --output-format zip --arm64`.
runner_zip_path     = "../../../target/lambda/rivulet-runner/bootstrap.zip"
runner_architecture = "arm64"

# For HTTPS, both:
# certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
# public_hostname = "rivulet.example.com"
