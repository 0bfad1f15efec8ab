# Root module for AWS (the Terraform alternative to serverless.yml; see README, "Deploy to AWS").
# functions.auto.tfvars.json comes from `modelfn render`; the zips from
# `modelfn build --target lambda` into dist/.

terraform {
  required_version = ">= 1.5"
  # State in a bucket made once per account: terraform init -backend-config=bucket=<name> -backend-config=region=<region>
  backend "s3" {
    key = "modelfn/terraform.tfstate"
  }
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "bucket" {
  description = "The model registry bucket (created by this configuration)."
  type        = string
}

variable "functions" {
  description = "Written by `modelfn render`; see the module for its shape."
  type        = any
}

variable "images" {
  description = "Function name -> ECR image URI, for the functions packaged as images."
  type        = map(string)
  default     = {}
}

variable "http_entry" {
  description = "api_gateway (REST API with API keys) or function_url (IAM-authenticated URLs)."
  type        = string
  default     = "api_gateway"
}

variable "sites" {
  description = "Written by `modelfn render`: the functions whose models also run in the browser (deploy.site)."
  type        = any
  default     = {}
}

module "modelfn" {
  source = "../modules/aws"

  bucket     = var.bucket
  functions  = var.functions
  artifacts  = { for name, f in var.functions : f.folder => "${path.root}/../../dist/${f.folder}-lambda.zip" if f.package == "zip" && f.trigger == null }
  images     = var.images
  http_entry = var.http_entry
}

# Each site uploads dist/<folder>-web (modelfn build functions/<folder> --target web).
module "site" {
  source   = "../modules/aws-site"
  for_each = var.sites

  name   = each.key
  bundle = "${path.root}/../../dist/${each.value.folder}-web"
}

output "site_urls" {
  value = { for name, site in module.site : name => site.url }
}

output "api_url" {
  value = module.modelfn.api_url
}

output "api_key" {
  value     = module.modelfn.api_key
  sensitive = true
}

output "function_urls" {
  value = module.modelfn.function_urls
}

output "model_bucket" {
  value = module.modelfn.model_bucket
}
