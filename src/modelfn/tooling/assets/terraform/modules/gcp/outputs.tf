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

output "uploads_bucket" {
  description = "Where files to predict land (under incoming/); null without a storage trigger."
  value       = length(google_storage_bucket.uploads) > 0 ? google_storage_bucket.uploads[0].name : null
}

output "request_topics" {
  description = "Function name -> the Pub/Sub topic its requests are published to."
  value       = { for name, topic in google_pubsub_topic.requests : name => topic.id }
}
