output "gateway_url" {
  description = "Base URL of the API gateway (send the key in x-api-key); null when no function is exposed."
  value       = length(google_api_gateway_gateway.gateway) > 0 ? "https://${google_api_gateway_gateway.gateway[0].default_hostname}" : null
}

output "api_key" {
  description = "The client API key."
  value       = length(google_apikeys_key.client) > 0 ? google_apikeys_key.client[0].key_string : null
  sensitive   = true
}

output "function_urls" {
  description = "Function name -> its own URL (IAM-authenticated)."
  value       = local.urls
}

output "model_bucket" {
  description = "The registry bucket: `modelfn push --registry gs://<bucket>/models`."
  value       = google_storage_bucket.models.name
}
