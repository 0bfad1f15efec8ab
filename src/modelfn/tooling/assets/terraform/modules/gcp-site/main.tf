# A static site that runs a model in the visitor's browser (`modelfn build FOLDER --target web`):
# a Cloud Storage bucket readable by everyone, every file uploaded with the media type, caching
# and encoding site.json gives it (application/wasm; gzip-encoded where smaller, which Cloud
# Storage decompresses for clients that do not accept gzip). Cloud Storage cannot add COOP/COEP,
# so on the bucket's own URL ONNX Runtime Web runs on one thread; with `domain`, an HTTPS load
# balancer in front of the bucket adds them (and Cloud CDN), and the page gets threads.

locals {
  manifest = jsondecode(file("${var.bundle}/site.json"))
  files    = { for file in local.manifest.files : file.path => file }
  name     = "modelfn-site-${replace(lower(var.name), "_", "-")}"
  headers  = [for header, value in local.manifest.headers : "${header}: ${value}"]
  # The load balancer's resources exist only with a domain: one of each, or none.
  balanced = var.domain == "" ? 0 : 1
}

resource "google_storage_bucket" "site" {
  #checkov:skip=CKV_GCP_62:Reads of public web files are not worth a log bucket; Cloud CDN logs requests when the load balancer is on.
  #checkov:skip=CKV_GCP_78:Every deploy uploads the whole site from the build; an old version of a file has no use.
  #checkov:skip=CKV_GCP_114:A website: its files are meant to be read by everyone (they hold no secret: the page, the runtime, the model the page serves).
  project                     = var.project_id
  name                        = substr("${var.project_id}-${local.name}", 0, 63)
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "inherited"
  force_destroy               = true # only build outputs live here

  website {
    main_page_suffix = "index.html"
  }
}

resource "google_storage_bucket_iam_member" "public" {
  #checkov:skip=CKV_GCP_28:The same: a public website, read-only (objectViewer), nothing else.
  bucket = google_storage_bucket.site.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}

resource "google_storage_bucket_object" "file" {
  for_each         = local.files
  bucket           = google_storage_bucket.site.name
  name             = each.key
  source           = each.value.gzip_bytes != null ? "${var.bundle}/gzip/${each.key}" : "${var.bundle}/site/${each.key}"
  content_type     = each.value.media_type
  cache_control    = each.value.cache_control
  content_encoding = each.value.gzip_bytes != null ? "gzip" : null
}

# -- with a domain: an HTTPS load balancer that adds the headers for threads ------------------------

resource "google_compute_backend_bucket" "site" {
  count                   = local.balanced
  project                 = var.project_id
  name                    = local.name
  bucket_name             = google_storage_bucket.site.name
  enable_cdn              = true
  custom_response_headers = local.headers
}

resource "google_compute_url_map" "site" {
  count           = local.balanced
  project         = var.project_id
  name            = local.name
  default_service = google_compute_backend_bucket.site[0].id
}

resource "google_compute_managed_ssl_certificate" "site" {
  count   = local.balanced
  project = var.project_id
  name    = local.name
  managed {
    domains = [var.domain]
  }
}

resource "google_compute_ssl_policy" "site" {
  count           = local.balanced
  project         = var.project_id
  name            = local.name
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "site" {
  count            = local.balanced
  project          = var.project_id
  name             = local.name
  url_map          = google_compute_url_map.site[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.site[0].id]
  ssl_policy       = google_compute_ssl_policy.site[0].id
}

resource "google_compute_global_address" "site" {
  count   = local.balanced
  project = var.project_id
  name    = local.name
}

resource "google_compute_global_forwarding_rule" "site" {
  count                 = local.balanced
  project               = var.project_id
  name                  = local.name
  target                = google_compute_target_https_proxy.site[0].id
  ip_address            = google_compute_global_address.site[0].address
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}
