output "api_url" {
  description = "Base URL of the REST API (send the key in x-api-key); null without exposed functions."
  value       = length(aws_api_gateway_stage.api) > 0 ? aws_api_gateway_stage.api[0].invoke_url : null
}

output "api_key" {
  description = "The client API key."
  value       = length(aws_api_gateway_api_key.client) > 0 ? aws_api_gateway_api_key.client[0].value : null
  sensitive   = true
}

output "function_urls" {
  description = "Function name -> its IAM-authenticated URL (functions off the REST API)."
  value       = { for name, url in aws_lambda_function_url.function : name => url.function_url }
}

output "function_arns" {
  value = { for name, fn in aws_lambda_function.function : name => fn.arn }
}

output "model_bucket" {
  description = "The registry bucket: `modelfn push --registry s3://<bucket>/models`."
  value       = aws_s3_bucket.bucket["models"].bucket
}

output "uploads_bucket" {
  description = "Where files to predict land (under incoming/); null without a storage trigger."
  value       = try(aws_s3_bucket.bucket["uploads"].bucket, null)
}

output "request_queues" {
  description = "Function name -> the URL of the SQS queue its requests are sent to."
  value       = { for name, queue in aws_sqs_queue.requests : name => queue.url }
}

output "serving_aliases" {
  description = "Function name -> its serving alias's ARN, for functions split by Lambda (deploy.traffic)."
  value       = { for name, alias in aws_lambda_alias.serving : name => alias.arn }
}
