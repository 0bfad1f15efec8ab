# A static site that runs a model in the visitor's browser (`modelfn build FOLDER --target web`):
# a private S3 bucket read only by a CloudFront distribution (origin access control), every file
# uploaded with the media type, caching and encoding site.json gives it (application/wasm for the
# WebAssembly, gzip-encoded where that is smaller: CloudFront compresses nothing over 10 MB), and
# a response headers policy with COOP/COEP, which lets ONNX Runtime Web use threads.

locals {
  manifest = jsondecode(file("${var.bundle}/site.json"))
  files    = { for file in local.manifest.files : file.path => file }
  bucket   = "modelfn-site-${replace(lower(var.name), "_", "-")}"
}

resource "aws_s3_bucket" "site" {
  #checkov:skip=CKV_AWS_18:CloudFront serves every request; its standard logs are where reads are recorded, not the bucket's.
  #checkov:skip=CKV_AWS_144:The site is rebuilt from the repository on every deploy; a replica adds nothing.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to the site's files changing.
  #checkov:skip=CKV_AWS_21:Every deploy uploads the whole site from the build; an old version of a file has no use (and no versions, no lifecycle rules to expire them).
  #checkov:skip=CKV2_AWS_61:The same: nothing accumulates that a lifecycle rule would remove.
  #checkov:skip=CKV_AWS_145:Public web files (the page, the WebAssembly runtime, the model the page serves); S3-managed encryption at rest applies.
  bucket_prefix = substr("${local.bucket}-", 0, 37)
  force_destroy = true # only build outputs live here
}

resource "aws_s3_bucket_public_access_block" "site" {
  bucket                  = aws_s3_bucket.site.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "site" {
  bucket = aws_s3_bucket.site.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "site" {
  bucket = aws_s3_bucket.site.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_object" "file" {
  for_each         = local.files
  bucket           = aws_s3_bucket.site.id
  key              = each.key
  source           = each.value.gzip_bytes != null ? "${var.bundle}/gzip/${each.key}" : "${var.bundle}/site/${each.key}"
  source_hash      = each.value.sha256
  content_type     = each.value.media_type
  cache_control    = each.value.cache_control
  content_encoding = each.value.gzip_bytes != null ? "gzip" : null
}

resource "aws_cloudfront_origin_access_control" "site" {
  count                             = var.cdn ? 1 : 0
  name                              = substr(local.bucket, 0, 64)
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_response_headers_policy" "site" {
  count = var.cdn ? 1 : 0
  name  = substr(local.bucket, 0, 128)

  custom_headers_config {
    items {
      header   = "Cross-Origin-Opener-Policy"
      value    = local.manifest.headers["Cross-Origin-Opener-Policy"]
      override = true
    }
    items {
      header   = "Cross-Origin-Embedder-Policy"
      value    = local.manifest.headers["Cross-Origin-Embedder-Policy"]
      override = true
    }
    items {
      header   = "Cross-Origin-Resource-Policy"
      value    = local.manifest.headers["Cross-Origin-Resource-Policy"]
      override = true
    }
  }

  security_headers_config {
    content_type_options {
      override = true
    }
    referrer_policy {
      referrer_policy = "no-referrer"
      override        = true
    }
    strict_transport_security {
      access_control_max_age_sec = 31536000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
    frame_options {
      frame_option = "DENY"
      override     = true
    }
  }
}

resource "aws_cloudfront_distribution" "site" {
  #checkov:skip=CKV_AWS_68:A static site with no server side; a WAF is an account choice with its own cost.
  #checkov:skip=CKV2_AWS_47:The same: no WAF, and no Java (Log4j) behind it.
  #checkov:skip=CKV_AWS_86:Standard logs need a log bucket with ACLs, an account-wide choice; CloudWatch metrics are on by default.
  #checkov:skip=CKV_AWS_174:The default *.cloudfront.net certificate; give the site your domain and an ACM certificate (TLS 1.2) to change it.
  #checkov:skip=CKV2_AWS_42:The same: the default certificate until the site has a domain of its own.
  #checkov:skip=CKV_AWS_310:One origin, the bucket, which S3 keeps available; there is nothing to fail over to.
  #checkov:skip=CKV_AWS_374:The site is for everyone; restricting countries is the operator's choice.
  count               = var.cdn ? 1 : 0
  enabled             = true
  is_ipv6_enabled     = true
  comment             = "modelfn: ${var.name} in the browser"
  default_root_object = "index.html"
  price_class         = var.price_class
  http_version        = "http2and3"

  origin {
    origin_id                = "site"
    domain_name              = aws_s3_bucket.site.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.site[0].id
  }

  default_cache_behavior {
    target_origin_id           = "site"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = "658327ea-f89d-4fab-a63d-7e88639e58f6" # Managed-CachingOptimized: honours each file's Cache-Control
    response_headers_policy_id = aws_cloudfront_response_headers_policy.site[0].id
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }
}

data "aws_iam_policy_document" "site" {
  count = var.cdn ? 1 : 0
  statement {
    sid       = "CloudFrontReads"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.site.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.site[0].arn]
    }
  }
}

resource "aws_s3_bucket_policy" "site" {
  count  = var.cdn ? 1 : 0
  bucket = aws_s3_bucket.site.id
  policy = data.aws_iam_policy_document.site[0].json
}
