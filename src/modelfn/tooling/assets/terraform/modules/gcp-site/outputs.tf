output "url" {
  description = "Where the site is served: your domain through the load balancer, or the bucket's own URL."
  value       = var.domain == "" ? "https://storage.googleapis.com/${google_storage_bucket.site.name}/index.html" : "https://${var.domain}/"
}

output "address" {
  description = "The load balancer's address, for the domain's A record (empty without a domain)."
  value       = var.domain == "" ? "" : google_compute_global_address.site[0].address
}
