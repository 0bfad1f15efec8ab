variable "bucket" {
  description = "Name of the model registry bucket (created here); functions read s3://<bucket>/models/<model>/."
  type        = string
}

variable "functions" {
  description = "One entry per folder in functions/, written by `modelfn render` (infra/aws/functions.auto.tfvars.json)."
  type = map(object({
    folder             = optional(string) # the function folder whose bundle it deploys (default: the name)
    models             = list(string)
    registry_model     = optional(string)
    alias              = string
    package            = string # zip: a Lambda zip; image: a Lambda container image
    expose             = bool   # routed by the REST API (API keys); otherwise an IAM function URL
    memory_mb          = number
    cpu                = number # Google Cloud only: Lambda's CPU follows memory
    timeout_s          = number
    min_instances      = number
    max_instances      = number # reserved concurrency: the function's ceiling
    concurrency        = number # Google Cloud only: a Lambda instance serves one request at a time
    service_account_id = string # Google Cloud only
    # An event-driven function: storage runs a batch prediction of each object landing under
    # `prefix` in `bucket` (default: the uploads bucket made here); messages answers each request
    # on the SQS queue `queue_arn` (default: a queue made here, with a dead-letter queue).
    trigger = optional(object({
      type       = string
      bucket     = optional(string)
      prefix     = optional(string, "incoming/")
      suffix     = optional(string, "")
      queue_arn  = optional(string)
      batch_size = optional(number, 10)
    }))
    # A split made by Lambda (contract `deploy.traffic`): this deploy publishes a version pinned
    # to model version `deployed`; each version of `weights` keeps an alias m<version>, and the
    # function's alias routes between them.
    edge = optional(object({
      deployed = string
      weights  = map(number)
    }))
    # Alexa skills allowed to call the function (contract `deploy.alexa_skills`).
    alexa_skills = optional(list(string), [])
    # Lambda SnapStart (contract `deploy.snap_start`): each deploy publishes a version, snapshotted
    # after its init, and the function's alias follows it; callers invoke the alias.
    snap_start = optional(bool, false)
    # Google Cloud's Dataflow hand-off (contract `deploy.dataflow`): not deployed on AWS.
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
    condition     = alltrue([for f in values(var.functions) : !f.snap_start || (f.package == "zip" && f.trigger == null)])
    error_message = "snap_start belongs to an HTTP function packaged as a zip (Lambda has no SnapStart for images)."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : f.trigger == null || contains(["storage", "messages"], try(f.trigger.type, ""))])
    error_message = "trigger.type is storage or messages."
  }
  validation {
    condition     = alltrue([for f in values(var.functions) : f.edge == null || try(f.registry_model != null && f.trigger == null && contains(keys(f.edge.weights), f.edge.deployed) && sum(values(f.edge.weights)) == 100 && length(f.edge.weights) <= 2, false)])
    error_message = "edge (deploy.traffic) belongs to a one-model HTTP function; its weights name the deployed version, at most two versions (Lambda's alias routing takes two), adding up to 100."
  }
}

variable "artifacts" {
  description = "Function folder -> Lambda zip from `modelfn build --target lambda`, for every zip function."
  type        = map(string)
  default     = {}
}

variable "images" {
  description = "Function name -> ECR image URI from `modelfn build --target lambda-image`, for every image function."
  type        = map(string)
  default     = {}
}

variable "http_entry" {
  description = "api_gateway: one REST API with API keys and a usage plan for the exposed functions; function_url: an IAM-authenticated URL per function."
  type        = string
  default     = "api_gateway"

  validation {
    condition     = contains(["api_gateway", "function_url"], var.http_entry)
    error_message = "http_entry is api_gateway or function_url."
  }
}

variable "name_prefix" {
  description = "Prefix of every function, role and API name."
  type        = string
  default     = "modelfn-"
}

variable "stage" {
  description = "The REST API stage."
  type        = string
  default     = "v1"
}

variable "log_retention_days" {
  description = "How long the functions' logs are kept."
  type        = number
  default     = 365
}

variable "quota_per_month" {
  description = "Requests one API key may make a month."
  type        = number
  default     = 1000000
}
