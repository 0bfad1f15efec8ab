# modelfn on Google Cloud: the model registry bucket, one Cloud Functions gen2 function (zip) or
# Cloud Run service (image) per function folder, each with a service account that can read only its
# model's prefix, and one API Gateway in front of the exposed ones, behind API keys.

locals {
  zip_functions      = { for name, f in var.functions : name => f if f.package == "zip" }
  image_functions    = { for name, f in var.functions : name => f if f.package == "image" }
  registry_functions = { for name, f in var.functions : name => f if f.registry_model != null }
  exposed            = { for name, f in var.functions : name => f if f.expose && f.trigger == null }
  triggered          = { for name, f in var.functions : name => f if f.trigger != null }
  batch_functions    = { for name, f in local.triggered : name => f if f.trigger.type == "storage" }
  message_functions  = { for name, f in local.triggered : name => f if f.trigger.type == "messages" }
  # Zip functions sharing a folder share its uploaded bundle.
  zip_folders = toset([for name, f in local.zip_functions : coalesce(f.folder, name)])

  environment = {
    for name, f in var.functions : name => merge(
      {
        MODELFN_LOG_LEVEL = "INFO"
        # A server thread per request the platform may send at once: requests over the model's call
        # slots then meet modelfn's bounded queue (fast 503s), not gunicorn's unbounded one.
        THREADS = tostring(f.concurrency)
      },
      # A platform split pins each revision to one version; otherwise the alias decides (and its
      # traffic policy, applied in the function).
      f.registry_model == null ? {} : {
        MODELFN_MODEL = (f.edge == null
          ? "gs://${google_storage_bucket.models.name}/models/${f.registry_model}@${f.alias}"
        : "gs://${google_storage_bucket.models.name}/models/${f.registry_model}/${f.edge.deployed}")
      },
      # The skills whose requests /alexa answers (the gateway routes them without a key).
      length(f.alexa_skills) == 0 ? {} : { MODELFN_ALEXA_SKILL_IDS = join(",", f.alexa_skills) },
      # Event functions write under their own prefix of the results bucket.
      try(f.trigger.type, "") == "storage" ? {
        MODELFN_BATCH_INPUT_PREFIX = "incoming/"
        MODELFN_BATCH_OUTPUT       = "gs://${google_storage_bucket.results[0].name}/${name}/predictions"
      } : {},
      try(f.trigger.type, "") == "messages" ? {
        MODELFN_MESSAGE_OUTPUT = "gs://${google_storage_bucket.results[0].name}/${name}/messages"
      } : {},
      # Large files go to Dataflow (dataflow.tf).
      lookup(local.dataflow_environment, name, {}),
      # The image's server speaks gRPC on the port instead of HTTP/1.1.
      f.serve == "grpc" ? { MODELFN_SERVE = "grpc" } : {},
    )
  }

  # Cloud Run services split by the platform: each version's traffic tag (m<version>, a valid DNS
  # label) and weight. The deployed version is the latest revision; the other keeps the revision
  # its tag names now, read from the live service.
  edge_services = { for name, f in local.image_functions : name => f if f.edge != null }
  edge_targets = {
    for name, f in local.edge_services : name => [
      for version, percent in f.edge.weights : {
        tag      = "m${replace(lower(version), "/[^a-z0-9]/", "-")}"
        percent  = percent
        deployed = version == f.edge.deployed
      }
    ]
  }
  # The revisions that tags name on the live services (a split's stable version must be deployed first).
  tagged_revisions = {
    for name, svc in data.google_cloud_run_v2_service.live : name => {
      for status in svc.traffic_statuses : status.tag => status.revision if status.tag != ""
    }
  }

  # Function name -> its HTTPS URL, for the gateway's backends.
  urls = merge(
    { for name, fn in google_cloudfunctions2_function.function : name => fn.service_config[0].uri },
    { for name, svc in google_cloud_run_v2_service.service : name => svc.uri },
  )

  # Members that may invoke each function: the gateway for exposed ones, plus var.invokers.
  invocations = merge([
    for name, f in var.functions : {
      for member in concat(
        f.expose && f.trigger == null ? ["serviceAccount:${google_service_account.gateway.email}"] : [],
        f.trigger != null ? ["serviceAccount:${google_service_account.function[name].email}"] : [],
        var.invokers,
      ) : "${name} ${member}" => { function = name, member = member }
    }
  ]...)
}

resource "google_project_service" "required" {
  for_each = toset([
    "apigateway.googleapis.com",
    "apikeys.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "eventarc.googleapis.com",
    "run.googleapis.com",
    "servicecontrol.googleapis.com",
    "servicemanagement.googleapis.com",
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# --- Buckets ---------------------------------------------------------------------------------

resource "google_storage_bucket" "models" {
  #checkov:skip=CKV_GCP_62:Access to models is recorded by Cloud Audit Logs (data access); a second bucket for usage logs adds cost and nothing an operator reads.
  project                     = var.project_id
  name                        = var.bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false # the registry outlives any deployment

  versioning {
    enabled = true
  }
}

resource "google_storage_bucket" "sources" {
  #checkov:skip=CKV_GCP_62:Holds build outputs that CI re-creates; access is recorded by Cloud Audit Logs.
  project                     = var.project_id
  name                        = "${var.bucket}-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  for_each = local.zip_folders
  # Named by content, so a new bundle is a new object and the function redeploys.
  name   = "sources/${each.key}-${filemd5(var.sources[each.key])}.zip"
  bucket = google_storage_bucket.sources.name
  source = var.sources[each.key]
}

# Files to predict land in the uploads bucket (under incoming/); results go to the results bucket,
# so a function's own output never fires its trigger.
resource "google_storage_bucket" "uploads" {
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs; a usage-log bucket adds cost and nothing an operator reads.
  count                       = length(local.batch_functions) > 0 ? 1 : 0
  project                     = var.project_id
  name                        = "${var.bucket}-uploads"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }
}

resource "google_storage_bucket" "results" {
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs; a usage-log bucket adds cost and nothing an operator reads.
  count                       = length(local.triggered) > 0 ? 1 : 0
  project                     = var.project_id
  name                        = "${var.bucket}-results"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }
}

resource "google_pubsub_topic" "requests" {
  #checkov:skip=CKV_GCP_83:Requests are encrypted at rest with Google-managed keys; a customer key per topic is an account policy this module does not assume.
  for_each = { for name, f in local.message_functions : name => f if try(f.trigger.topic, null) == null }
  project  = var.project_id
  name     = "${var.name_prefix}${each.key}"
}

# --- Identities ------------------------------------------------------------------------------

resource "google_service_account" "function" {
  for_each     = var.functions
  project      = var.project_id
  account_id   = each.value.service_account_id
  display_name = "modelfn function ${each.key}"
}

resource "google_service_account" "gateway" {
  project      = var.project_id
  account_id   = "${substr(var.api_id, 0, 22)}-gateway"
  display_name = "modelfn API Gateway: signs the ID tokens the functions check"
}

# Least privilege: a function reads its own model's objects (versions and aliases), nothing else.
resource "google_storage_bucket_iam_member" "model_read" {
  for_each = local.registry_functions
  bucket   = google_storage_bucket.models.name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"

  condition {
    title       = "model-${each.value.registry_model}"
    description = "Objects under models/${each.value.registry_model}/ only"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.models.name}/objects/models/${each.value.registry_model}/\")"
  }
}

# Batch functions read the files under incoming/ of their trigger bucket, and nothing else there.
resource "google_storage_bucket_iam_member" "input_read" {
  for_each = local.batch_functions
  bucket   = coalesce(each.value.trigger.bucket, google_storage_bucket.uploads[0].name)
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"

  condition {
    title       = "inputs"
    description = "Objects under incoming/ only"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${coalesce(each.value.trigger.bucket, google_storage_bucket.uploads[0].name)}/objects/incoming/\")"
  }
}

# Event functions write (and replace) results under their own prefix of the results bucket only.
resource "google_storage_bucket_iam_member" "results_write" {
  for_each = local.triggered
  bucket   = google_storage_bucket.results[0].name
  role     = "roles/storage.objectAdmin"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"

  condition {
    title       = "results-${each.key}"
    description = "Objects under ${each.key}/ only"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.results[0].name}/objects/${each.key}/\")"
  }
}

# --- Functions (zip) and services (image) ----------------------------------------------------

resource "google_cloudfunctions2_function" "function" {
  #checkov:skip=CKV_GCP_124:API Gateway reaches its backends from outside the VPC, so ingress is open; every call still needs run.invoker (the gateway's ID token).
  for_each = local.zip_functions
  project  = var.project_id
  name     = "${var.name_prefix}${each.key}"
  location = var.region

  build_config {
    runtime     = "python312"
    entry_point = each.value.trigger == null ? "handle" : "handle_event"
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source[coalesce(each.value.folder, each.key)].name
      }
    }
  }

  service_config {
    available_memory                 = "${each.value.memory_mb}Mi"
    available_cpu                    = tostring(each.value.cpu)
    timeout_seconds                  = each.value.timeout_s
    min_instance_count               = each.value.min_instances
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    ingress_settings                 = "ALLOW_ALL" # the gateway calls from outside; IAM guards the door
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.function[each.key].email
    environment_variables            = local.environment[each.key]
  }

  dynamic "event_trigger" {
    for_each = each.value.trigger == null ? [] : [each.value.trigger]
    content {
      trigger_region        = var.region
      event_type            = event_trigger.value.type == "storage" ? "google.cloud.storage.object.v1.finalized" : "google.cloud.pubsub.topic.v1.messagePublished"
      pubsub_topic          = event_trigger.value.type == "messages" ? coalesce(event_trigger.value.topic, google_pubsub_topic.requests[each.key].id) : null
      retry_policy          = event_trigger.value.retry ? "RETRY_POLICY_RETRY" : "RETRY_POLICY_DO_NOT_RETRY"
      service_account_email = google_service_account.function[each.key].email

      dynamic "event_filters" {
        for_each = event_trigger.value.type == "storage" ? [coalesce(event_trigger.value.bucket, google_storage_bucket.uploads[0].name)] : []
        content {
          attribute = "bucket"
          value     = event_filters.value
        }
      }
    }
  }

  depends_on = [google_project_service.required]
}

resource "google_cloud_run_v2_service" "service" {
  for_each            = local.image_functions
  project             = var.project_id
  name                = "${var.name_prefix}${each.key}"
  location            = var.region
  deletion_protection = false
  ingress             = "INGRESS_TRAFFIC_ALL"

  template {
    service_account                  = google_service_account.function[each.key].email
    max_instance_request_concurrency = each.value.concurrency
    timeout                          = "${each.value.timeout_s}s"

    scaling {
      min_instance_count = each.value.min_instances
      max_instance_count = each.value.max_instances
    }

    containers {
      image = var.images[each.key]
      # gRPC end to end: Cloud Run sends HTTP/2 cleartext to a port named h2c (gcloud --use-http2).
      dynamic "ports" {
        for_each = each.value.serve == "grpc" ? [8080] : []
        content {
          name           = "h2c"
          container_port = ports.value
        }
      }
      # Ready once the model is loaded: the standard gRPC health service, which modelfn answers.
      dynamic "startup_probe" {
        for_each = each.value.serve == "grpc" ? [8080] : []
        content {
          period_seconds    = 2
          timeout_seconds   = 2
          failure_threshold = 60
          grpc {
            port = startup_probe.value
          }
        }
      }
      resources {
        limits = {
          cpu    = tostring(each.value.cpu)
          memory = "${each.value.memory_mb}Mi"
        }
      }
      dynamic "env" {
        for_each = local.environment[each.key]
        content {
          name  = env.key
          value = env.value
        }
      }
    }
  }

  # A model split (contract `deploy.traffic`): the latest revision serves the deployed version,
  # the other version's revision keeps its tag, each with its weight.
  dynamic "traffic" {
    for_each = each.value.edge == null ? [] : local.edge_targets[each.key]
    content {
      type     = traffic.value.deployed ? "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST" : "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
      revision = traffic.value.deployed ? null : try(local.tagged_revisions[each.key][traffic.value.tag], null) # the precondition below says why when it is missing
      percent  = traffic.value.percent
      tag      = traffic.value.tag
    }
  }
  # A code canary (var.canaries): the newest revision takes `percent` and the stable revision keeps
  # the rest; without one, the newest revision takes everything. Promote by removing the canary,
  # roll back by re-applying.
  dynamic "traffic" {
    for_each = each.value.edge == null && contains(keys(var.canaries), each.key) ? [var.canaries[each.key]] : []
    content {
      type     = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
      revision = traffic.value.stable_revision
      percent  = 100 - traffic.value.percent
    }
  }
  dynamic "traffic" {
    for_each = each.value.edge == null ? [contains(keys(var.canaries), each.key)] : []
    content {
      type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
      percent = traffic.value ? var.canaries[each.key].percent : 100
      tag     = traffic.value ? "canary" : null
    }
  }

  lifecycle {
    precondition {
      condition     = each.value.edge == null || !contains(keys(var.canaries), each.key)
      error_message = "A service splits either model versions (deploy.traffic) or code (var.canaries), not both."
    }
    precondition {
      condition = alltrue([
        for target in try(local.edge_targets[each.key], []) : target.deployed || contains(keys(try(local.tagged_revisions[each.key], {})), target.tag)
      ])
      error_message = "No revision of this service is tagged with the split's other version: deploy that version alone first (deploy.traffic: {\"<version>\": 100})."
    }
  }

  depends_on = [google_project_service.required]
}

# The live services whose split keeps a revision from an earlier deploy.
data "google_cloud_run_v2_service" "live" {
  for_each = { for name, f in local.edge_services : name => f if length(f.edge.weights) > 1 }
  project  = var.project_id
  location = var.region
  name     = "${var.name_prefix}${each.key}"
}

# A gen2 function is invoked through its Cloud Run service, so run.invoker is the grant that counts.
resource "google_cloud_run_service_iam_member" "function_invoker" {
  for_each = { for key, grant in local.invocations : key => grant if var.functions[grant.function].package == "zip" }
  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.function[each.value.function].name
  role     = "roles/run.invoker"
  member   = each.value.member
}

resource "google_cloud_run_v2_service_iam_member" "service_invoker" {
  for_each = { for key, grant in local.invocations : key => grant if var.functions[grant.function].package == "image" }
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.service[each.value.function].name
  role     = "roles/run.invoker"
  member   = each.value.member
}

# --- Event triggers (Eventarc) ---------------------------------------------------------------

data "google_storage_project_service_account" "gcs" {
  count   = length([for f in values(local.triggered) : f if f.trigger.type == "storage"]) > 0 ? 1 : 0
  project = var.project_id
}

# Cloud Storage publishes its events through Pub/Sub.
resource "google_project_iam_member" "gcs_publisher" {
  count   = length(data.google_storage_project_service_account.gcs)
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs[0].email_address}"
}

# Eventarc grants this role only project-wide.
resource "google_project_iam_member" "event_receiver" {
  for_each = local.triggered
  project  = var.project_id
  role     = "roles/eventarc.eventReceiver"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

# --- API Gateway with API keys (google-beta) -------------------------------------------------

resource "google_api_gateway_api" "api" {
  provider = google-beta
  count    = length(local.exposed) > 0 ? 1 : 0
  project  = var.project_id
  api_id   = var.api_id

  depends_on = [google_project_service.required]
}

resource "google_api_gateway_api_config" "config" {
  provider             = google-beta
  count                = length(google_api_gateway_api.api)
  project              = var.project_id
  api                  = google_api_gateway_api.api[0].api_id
  api_config_id_prefix = "${var.api_id}-" # configs are immutable: each change is a new one

  openapi_documents {
    document {
      path     = "openapi.yaml"
      contents = base64encode(templatefile(var.openapi_template, { backends = local.urls }))
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.gateway.email
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "gateway" {
  provider   = google-beta
  count      = length(google_api_gateway_api.api)
  project    = var.project_id
  region     = var.region
  gateway_id = var.api_id
  api_config = google_api_gateway_api_config.config[0].id
}

# API keys work for an API once its managed service is enabled in the project.
resource "google_project_service" "api" {
  count              = length(google_api_gateway_api.api)
  project            = var.project_id
  service            = google_api_gateway_api.api[0].managed_service
  disable_on_destroy = false
}

resource "google_apikeys_key" "client" {
  count        = length(google_api_gateway_api.api)
  project      = var.project_id
  name         = "${var.api_id}-client"
  display_name = "modelfn client"

  restrictions {
    api_targets {
      service = google_api_gateway_api.api[0].managed_service
    }
  }

  depends_on = [google_project_service.api]
}
