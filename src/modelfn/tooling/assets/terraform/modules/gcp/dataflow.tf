# Batch jobs beyond one function (contract `deploy.dataflow`): the storage function hands a file of
# dataflow.above_mb or more to a Dataflow job started from its flex template, whose image
# `modelfn build --target dataflow` builds and cloudbuild.yaml pushes. The same model, hooks and
# checks run on Beam's RunInference and write the same results under the function's prefix.
#
# Least privilege: the workers' own service account reads the model's prefix and the inputs, and
# writes only under the function's prefix of the results bucket (its results, temp and staging
# files); the function may start jobs (roles/dataflow.developer, granted only project-wide) as that
# account alone, and read its template's spec.

locals {
  dataflow_functions = { for name, f in local.batch_functions : name => f if try(f.dataflow, null) != null }
  dataflow_results   = { for name, f in local.dataflow_functions : name => "gs://${google_storage_bucket.results[0].name}/${name}" }
  dataflow_environment = {
    for name, f in local.dataflow_functions : name => {
      MODELFN_BATCH_HANDOFF       = "dataflow"
      MODELFN_BATCH_HANDOFF_BYTES = tostring(f.dataflow.above_mb * 1048576)
      MODELFN_DATAFLOW_TEMPLATE   = "gs://${google_storage_bucket.sources.name}/${google_storage_bucket_object.dataflow_template[name].name}"
      MODELFN_DATAFLOW_PROJECT    = var.project_id
      MODELFN_DATAFLOW_REGION     = var.region
      MODELFN_DATAFLOW_ENVIRONMENT = jsonencode({
        serviceAccountEmail = google_service_account.dataflow[name].email
        tempLocation        = "${local.dataflow_results[name]}/dataflow/tmp"
        stagingLocation     = "${local.dataflow_results[name]}/dataflow/staging"
        maxWorkers          = f.dataflow.max_workers
        machineType         = f.dataflow.machine_type
      })
    }
  }
}

resource "google_project_service" "dataflow" {
  count              = length(local.dataflow_functions) > 0 ? 1 : 0
  project            = var.project_id
  service            = "dataflow.googleapis.com"
  disable_on_destroy = false
}

resource "google_service_account" "dataflow" {
  for_each     = local.dataflow_functions
  project      = var.project_id
  account_id   = each.value.dataflow.service_account_id
  display_name = "modelfn Dataflow workers of ${each.key}"
}

# Dataflow grants its worker role only project-wide: it lets the account run work items, no data.
resource "google_project_iam_member" "dataflow_worker" {
  for_each = local.dataflow_functions
  project  = var.project_id
  role     = "roles/dataflow.worker"
  member   = "serviceAccount:${google_service_account.dataflow[each.key].email}"
}

resource "google_storage_bucket_iam_member" "dataflow_model_read" {
  for_each = { for name, f in local.dataflow_functions : name => f if f.registry_model != null }
  bucket   = google_storage_bucket.models.name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.dataflow[each.key].email}"

  condition {
    title       = "model-${each.value.registry_model}"
    description = "Objects under models/${each.value.registry_model}/ only"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.models.name}/objects/models/${each.value.registry_model}/\")"
  }
}

resource "google_storage_bucket_iam_member" "dataflow_input_read" {
  for_each = local.dataflow_functions
  bucket   = coalesce(each.value.trigger.bucket, google_storage_bucket.uploads[0].name)
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.dataflow[each.key].email}"

  condition {
    title       = "inputs"
    description = "Objects under incoming/ only"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${coalesce(each.value.trigger.bucket, google_storage_bucket.uploads[0].name)}/objects/incoming/\")"
  }
}

resource "google_storage_bucket_iam_member" "dataflow_results_write" {
  for_each = local.dataflow_functions
  bucket   = google_storage_bucket.results[0].name
  role     = "roles/storage.objectAdmin"
  member   = "serviceAccount:${google_service_account.dataflow[each.key].email}"

  condition {
    title       = "results-${each.key}"
    description = "Objects under ${each.key}/ only: results, temp and staging files"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.results[0].name}/objects/${each.key}/\")"
  }
}

# The workers start from the template's own image.
resource "google_project_iam_member" "dataflow_image_read" {
  for_each = local.dataflow_functions
  project  = var.project_id
  role     = "roles/artifactregistry.reader"
  member   = "serviceAccount:${google_service_account.dataflow[each.key].email}"
}

# The flex template's spec: the image and the parameters the pipeline takes (modelfn.beam.template).
resource "google_storage_bucket_object" "dataflow_template" {
  for_each = local.dataflow_functions
  name     = "templates/${each.key}.json"
  lifecycle {
    precondition {
      condition     = contains(keys(var.dataflow_images), each.key)
      error_message = "dataflow_images has no image for ${each.key}: build it with modelfn build --target dataflow (cloudbuild.yaml passes it)."
    }
  }
  bucket       = google_storage_bucket.sources.name
  content_type = "application/json"
  content = jsonencode({
    image   = var.dataflow_images[each.key]
    sdkInfo = { language = "PYTHON" }
    metadata = {
      name        = "modelfn batch: ${each.key}"
      description = "Predicts every row of the input as the function would, with the same results."
      parameters = [
        { name = "input", label = "Input", helpText = "A CSV, JSON Lines or .npy object, or a glob of many." },
        { name = "output", label = "Output", helpText = "Where the predictions, errors and summaries go." },
        { name = "name", label = "Results' name", helpText = "For one input: the name its results take.", isOptional = true },
        { name = "model", label = "Registry version", helpText = "<registry>/<name>/<version>.", isOptional = true },
        { name = "database", label = "Database", helpText = "Also upsert one row per prediction.", isOptional = true },
      ]
    }
  })
}

# The function starts jobs, as the workers' account only, from the template it can read.
resource "google_project_iam_member" "dataflow_launch" {
  #checkov:skip=CKV_GCP_49:Dataflow grants job creation only project-wide; the one account a job may run as is granted below (dataflow_act_as), on that account alone.
  for_each = local.dataflow_functions
  project  = var.project_id
  role     = "roles/dataflow.developer"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_service_account_iam_member" "dataflow_act_as" {
  for_each           = local.dataflow_functions
  service_account_id = google_service_account.dataflow[each.key].name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_storage_bucket_iam_member" "dataflow_template_read" {
  for_each = local.dataflow_functions
  bucket   = google_storage_bucket.sources.name
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.function[each.key].email}"

  condition {
    title       = "template-${each.key}"
    description = "The function's flex template spec only"
    expression  = "resource.name == \"projects/_/buckets/${google_storage_bucket.sources.name}/objects/templates/${each.key}.json\""
  }
}
