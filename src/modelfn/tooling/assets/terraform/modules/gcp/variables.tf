variable "project_id" {
  description = "The Google Cloud project."
  type        = string
}

variable "region" {
  description = "Region of the functions, the gateway and the buckets."
  type        = string
}

variable "bucket" {
  description = "Name of the model registry bucket (created here); functions read gs://<bucket>/models/<model>/."
  type        = string
}

variable "functions" {
  description = "One entry per folder in functions/, written by `modelfn render` (infra/gcp/functions.auto.tfvars.json)."
  type = map(object({
    folder             = optional(string) # the function folder whose bundle it deploys (default: the name)
    models             = list(string)
    registry_model     = optional(string)
    alias              = string
    package            = string # zip: Cloud Functions gen2; image: Cloud Run
    expose             = bool   # routed by the API gateway
    memory_mb          = number
    cpu                = number
    timeout_s          = number
    min_instances      = number
    max_instances      = number
    concurrency        = number
    service_account_id = string
    # An event-driven function instead of an HTTP one (entry point handle_event): storage runs a
    # batch prediction of each file landing in `bucket` (default: the uploads bucket made here);
    # messages answers each request published to `topic` (default: a topic made here).
    trigger = optional(object({
      type   = string
      bucket = optional(string)
      topic  = optional(string)
      retry  = optional(bool, true)
    }))
    # A split made by Cloud Run (contract `deploy.traffic`): this deploy pins model version
    # `deployed`; each version of `weights` keeps its own revision, tagged m<version>.
    edge = optional(object({
      deployed = string
      weights  = map(number)
    }))
    # Alexa skills allowed to call the function (contract `deploy.alexa_skills`).
    alexa_skills = optional(list(string), [])
    snap_start   = optional(bool, false) # AWS only
    # http: every REST route; grpc: the Open Inference Protocol over gRPC from the same image, on an
    # h2c port (contract `deploy.grpc`; a Cloud Run service, invoked with IAM, never on the gateway).
    serve = optional(string, "http")
    # Google Cloud only: the storage function hands files of above_mb or more to a Dataflow job.
    dataflow = optional(object({
      above_mb           = number
      max_workers        = number
      machine_type       = string
      service_account_id = string
    }))
  }))

  validation {
    condition     = alltrue([for f in values(var.functions) : contains(["zip", "image"], f.package)])
    error_message = "package is zip or image."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : f.trigger == null || contains(["storage", "messages"], try(f.trigger.type, ""))])
    error_message = "trigger.type is storage or messages."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.edge == null || (f.package == "image" && f.registry_model != null)])
    error_message = "deploy.traffic needs package: image on Google Cloud: Cloud Functions gen2 sends all traffic to its latest revision, Cloud Run splits it between revisions. Split in the function instead (modelfn traffic), or package the function as an image."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : length(f.alexa_skills) == 0 || (f.expose && f.trigger == null)])
    error_message = "An Alexa skill reaches a function on Google Cloud through the gateway's keyless /models/<name>/alexa route, so the function must be exposed (deploy.expose: true)."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.edge == null || try(contains(keys(f.edge.weights), f.edge.deployed) && sum(values(f.edge.weights)) == 100 && length(f.edge.weights) <= 2, false)])
    error_message = "edge.weights name the deployed version, at most two versions, adding up to 100."
  }
}

variable "sources" {
  description = "Function folder -> source zip from `modelfn build --target gcf`, for every zip function."
  type        = map(string)
  default     = {}
}

variable "images" {
  description = "Function name -> container image from `modelfn build --target cloudrun`, for every image function."
  type        = map(string)
  default     = {}
}

variable "canaries" {
  description = "Cloud Run function name -> the revision that keeps most traffic and the percent the newest revision gets (tagged `canary`)."
  type = map(object({
    stable_revision = string
    percent         = number
  }))
  default = {}

  validation {
    condition     = alltrue([for c in values(var.canaries) : c.percent >= 0 && c.percent <= 100])
    error_message = "A canary's percent is between 0 and 100."
  }
}

variable "invokers" {
  description = "Members allowed to call every function directly, without the gateway (e.g. serviceAccount:ci@p.iam.gserviceaccount.com)."
  type        = list(string)
  default     = []
}

variable "name_prefix" {
  description = "Prefix of every function, service and gateway name."
  type        = string
  default     = "modelfn-"
}

variable "api_id" {
  description = "API Gateway API and gateway id."
  type        = string
  default     = "modelfn"
}

variable "openapi_template" {
  description = "The OpenAPI template `modelfn render` writes (infra/gcp/openapi.yaml.tftpl)."
  type        = string
}

variable "dataflow_images" {
  description = "Storage function name -> its Dataflow flex template image (modelfn build --target dataflow; cloudbuild.yaml passes them)."
  type        = map(string)
  default     = {}
}
