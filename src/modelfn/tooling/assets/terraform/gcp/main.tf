# Root module for Google Cloud, applied by cloudbuild.yaml (or by hand: see README, "Deploy to
# Google Cloud"). functions.auto.tfvars.json and openapi.yaml.tftpl come from `modelfn render`;
# the source zips from `modelfn build --target gcf` into dist/.

terraform {
  required_version = ">= 1.5"
  # State lives in a bucket made once per project: terraform init -backend-config=bucket=<name>
  backend "gcs" {
    prefix = "modelfn"
  }
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 8.0, < 9.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 8.0, < 9.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

variable "project_id" {
  type = string
}

variable "region" {
  type    = string
  default = "us-central1"
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
  description = "Function name -> image for the functions packaged as images (cloudbuild.yaml passes them)."
  type        = map(string)
  default     = {}
}

variable "dataflow_images" {
  description = "Storage function name -> its Dataflow flex template image (cloudbuild.yaml passes them)."
  type        = map(string)
  default     = {}
}

variable "canaries" {
  description = "Cloud Run canaries: function name -> { stable_revision, percent }."
  type = map(object({
    stable_revision = string
    percent         = number
  }))
  default = {}
}

variable "invokers" {
  description = "Members allowed to call the functions directly, without the gateway."
  type        = list(string)
  default     = []
}

variable "sites" {
  description = "Written by `modelfn render`: the functions whose models also run in the browser (deploy.site)."
  type        = any
  default     = {}
}

variable "site_domains" {
  description = "Function name -> a domain of yours for its site (an HTTPS load balancer with COOP/COEP: threads)."
  type        = map(string)
  default     = {}
}

module "modelfn" {
  source = "../modules/gcp"

  project_id       = var.project_id
  region           = var.region
  bucket           = var.bucket
  functions        = var.functions
  sources          = { for name, f in var.functions : f.folder => "${path.root}/../../dist/${f.folder}-gcf.zip" if f.package == "zip" && f.trigger == null }
  images           = var.images
  dataflow_images  = var.dataflow_images
  canaries         = var.canaries
  invokers         = var.invokers
  openapi_template = "${path.root}/openapi.yaml.tftpl"
}

# Each site uploads dist/<folder>-web (modelfn build functions/<folder> --target web).
module "site" {
  source   = "../modules/gcp-site"
  for_each = var.sites

  project_id = var.project_id
  region     = var.region
  name       = each.key
  bundle     = "${path.root}/../../dist/${each.value.folder}-web"
  domain     = lookup(var.site_domains, each.key, "")
}

output "site_urls" {
  value = { for name, site in module.site : name => site.url }
}

output "gateway_url" {
  value = module.modelfn.gateway_url
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
