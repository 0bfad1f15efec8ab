output "url" {
  description = "Where the site is served (CloudFront), or the bucket's name when there is no CDN."
  value       = var.cdn ? "https://${aws_cloudfront_distribution.site[0].domain_name}/" : "s3://${aws_s3_bucket.site.id}/"
}

output "bucket" {
  value = aws_s3_bucket.site.id
}

output "files" {
  description = "How many files were uploaded."
  value       = length(aws_s3_object.file)
}
