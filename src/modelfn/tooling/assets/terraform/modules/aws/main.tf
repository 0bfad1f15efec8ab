# modelfn on AWS: the model registry bucket, one Lambda function per function folder with a role
# that can read only its model's prefix, and one REST API in front of the exposed ones, behind API
# keys and a usage plan (or an IAM-authenticated function URL each).

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  exposed_api = var.http_entry == "api_gateway" ? { for name, f in var.functions : name => f if f.expose && f.trigger == null } : {}
  with_url    = { for name, f in var.functions : name => f if f.trigger == null && !contains(keys(local.exposed_api), name) }
  s3_triggers = { for name, f in var.functions : name => f if try(f.trigger.type, "") == "storage" }
  sqs_sources = { for name, f in var.functions : name => f if try(f.trigger.type, "") == "messages" }
  triggered   = merge(local.s3_triggers, local.sqs_sources)
  own_queues  = { for name, f in local.sqs_sources : name => f if try(f.trigger.queue_arn, null) == null }

  buckets = merge(
    { models = var.bucket },
    length(local.s3_triggers) > 0 ? { uploads = "${var.bucket}-uploads" } : {},
    length(local.triggered) > 0 ? { results = "${var.bucket}-results" } : {},
  )
  # Each storage function's bucket and queue function's queue: given, or made here.
  input_bucket = { for name, f in local.s3_triggers : name => coalesce(try(f.trigger.bucket, null), "${var.bucket}-uploads") }
  queue_arn    = { for name, f in local.sqs_sources : name => coalesce(try(f.trigger.queue_arn, null), try(aws_sqs_queue.requests[name].arn, null)) }

  # Model name -> the function that serves it on the REST API.
  routes = merge([for name, f in local.exposed_api : { for model in f.models : model => name }]...)

  # One REST method per model and route (OIP metadata, readiness, inference; the plain JSON route).
  methods = merge([
    for model, function in local.routes : {
      "${model} metadata" = { function = function, method = "GET", resource = aws_api_gateway_resource.v2_model[model].id }
      "${model} ready"    = { function = function, method = "GET", resource = aws_api_gateway_resource.v2_model_ready[model].id }
      "${model} infer"    = { function = function, method = "POST", resource = aws_api_gateway_resource.v2_model_infer[model].id }
      "${model} predict"  = { function = function, method = "POST", resource = aws_api_gateway_resource.model_predict[model].id }
    }
  ]...)

  arn = "arn:${data.aws_partition.current.partition}"

  # Platform splits (contract `deploy.traffic`): one alias per model version, m<version>. The
  # deployed version's follows the version this apply publishes; the other keeps the Lambda
  # version it has now, read from the live alias (so it must have been deployed first).
  edge_functions = { for name, f in var.functions : name => f if f.edge != null }
  pinned = merge([
    for name, f in local.edge_functions : {
      for version, percent in f.edge.weights : "${name} ${version}" => {
        function = name
        alias    = "m${replace(version, "/[^A-Za-z0-9_-]/", "-")}"
        percent  = percent
        deployed = version == f.edge.deployed
      }
    }
  ]...)
  kept = { for key, p in local.pinned : key => p if !p.deployed }
  # The function's serving alias (its contract's alias, e.g. prod): the version that is not
  # deployed now is the primary, and the deployed one takes its weight on top.
  serving = {
    for name, f in local.edge_functions : name => {
      primary = length(f.edge.weights) == 1 ? "${name} ${f.edge.deployed}" : one([for key, p in local.kept : key if p.function == name])
      canary  = length(f.edge.weights) == 1 ? null : "${name} ${f.edge.deployed}"
    }
  }
  # What callers invoke: the serving alias where the platform splits, else the function itself.
  invoke_arn = { for name, f in var.functions : name => (f.edge != null ? aws_lambda_alias.serving[name].invoke_arn
  : f.snap_start ? aws_lambda_alias.snap[name].invoke_arn : aws_lambda_function.function[name].invoke_arn) }
  qualifier = { for name, f in var.functions : name => f.edge == null && !f.snap_start ? null : f.alias }
}

# --- Buckets: the registry, and for event functions the uploads and results ------------------

resource "aws_s3_bucket" "bucket" {
  #checkov:skip=CKV_AWS_18:Object reads are recorded by CloudTrail data events where the account enables them; a log bucket per bucket adds cost and nothing an operator reads.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice of the account; versioning already keeps every object.
  #checkov:skip=CKV2_AWS_62:Only the uploads bucket starts work, through aws_s3_bucket_notification.trigger; registry and results writes need no reaction.
  for_each      = local.buckets
  bucket        = each.value
  force_destroy = false # models and results outlive any deployment
}

resource "aws_s3_bucket_versioning" "bucket" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.bucket[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_public_access_block" "bucket" {
  for_each                = local.buckets
  bucket                  = aws_s3_bucket.bucket[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "bucket" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.bucket[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "bucket" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.bucket[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms" # the account's AWS-managed key
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "bucket" {
  for_each = local.buckets
  bucket   = aws_s3_bucket.bucket[each.key].id
  rule {
    id     = "tidy"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
    # Registry versions are immutable objects; what becomes noncurrent is a replaced alias or result.
    noncurrent_version_expiration {
      noncurrent_days = 90
    }
  }
  depends_on = [aws_s3_bucket_versioning.bucket]
}

# --- Request queues of message functions, each with a dead-letter queue ----------------------

resource "aws_sqs_queue" "dead_letters" {
  for_each                  = local.own_queues
  name                      = "${var.name_prefix}${each.key}-dead-letters"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "requests" {
  for_each                   = local.own_queues
  name                       = "${var.name_prefix}${each.key}"
  visibility_timeout_seconds = 6 * each.value.timeout_s # as AWS advises for an event source mapping
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letters[each.key].arn
    maxReceiveCount     = 5 # a message failing 5 times is set aside, not retried forever
  })
}

# --- Roles: least privilege ------------------------------------------------------------------

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each           = var.functions
  name               = "${var.name_prefix}${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "function" {
  for_each = var.functions

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions
  }

  dynamic "statement" {
    for_each = each.value.registry_model == null ? [] : [each.value.registry_model]
    content {
      sid       = "OwnModel"
      actions   = ["s3:GetObject"]
      resources = ["${aws_s3_bucket.bucket["models"].arn}/models/${statement.value}/*"]
    }
  }

  dynamic "statement" {
    for_each = try(each.value.trigger.type, "") == "storage" ? [each.value.trigger] : []
    content {
      sid       = "InputObjects"
      actions   = ["s3:GetObject"]
      resources = ["${local.arn}:s3:::${local.input_bucket[each.key]}/${statement.value.prefix}*"]
    }
  }

  dynamic "statement" {
    for_each = try(each.value.trigger.type, "") == "messages" ? [each.value.trigger] : []
    content {
      sid       = "RequestQueue"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
      resources = [local.queue_arn[each.key]]
    }
  }

  dynamic "statement" {
    for_each = each.value.trigger == null ? [] : [each.key]
    content {
      sid       = "OwnResults"
      actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"] # PutObject covers multipart uploads
      resources = ["${local.arn}:s3:::${var.bucket}-results/${statement.value}/*"]
    }
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = var.functions
  name     = "${var.name_prefix}${each.key}"
  role     = aws_iam_role.function[each.key].id
  policy   = data.aws_iam_policy_document.function[each.key].json
}

# --- Functions -------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "function" {
  #checkov:skip=CKV_AWS_158:Logs carry request metadata, never inputs or predictions; the service's default encryption applies.
  for_each          = var.functions
  name              = "/aws/lambda/${var.name_prefix}${each.key}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "function" {
  #checkov:skip=CKV_AWS_116:HTTP functions answer their caller, who retries; event sources keep failures on their own queue (SQS redrive).
  #checkov:skip=CKV_AWS_117:The functions reach only S3 and CloudWatch over AWS endpoints; a VPC adds cold start and NAT cost, and nothing to protect.
  #checkov:skip=CKV_AWS_173:The environment holds no secret: the model reference and the log level.
  #checkov:skip=CKV_AWS_272:Bundles are reproducible builds from the repository's CI; code signing needs an AWS Signer profile per account, which this module does not assume.
  for_each      = var.functions
  function_name = "${var.name_prefix}${each.key}"
  role          = aws_iam_role.function[each.key].arn
  package_type  = each.value.package == "zip" ? "Zip" : "Image"

  filename         = each.value.package == "zip" ? var.artifacts[coalesce(each.value.folder, each.key)] : null
  source_code_hash = each.value.package == "zip" ? filebase64sha256(var.artifacts[coalesce(each.value.folder, each.key)]) : null
  handler          = each.value.package == "zip" ? "lambda_function.handler" : null
  runtime          = each.value.package == "zip" ? "python3.12" : null
  image_uri        = each.value.package == "image" ? var.images[coalesce(each.value.folder, each.key)] : null
  architectures    = ["x86_64"]

  # Published versions are what a platform split routes between, and what SnapStart snapshots.
  publish = each.value.edge != null || each.value.snap_start

  dynamic "snap_start" {
    for_each = each.value.snap_start ? [1] : []
    content {
      apply_on = "PublishedVersions"
    }
  }

  memory_size                    = each.value.memory_mb
  timeout                        = each.value.timeout_s
  reserved_concurrent_executions = each.value.max_instances

  environment {
    variables = merge(
      { MODELFN_LOG_LEVEL = "INFO" },
      # A platform split pins each published version to one model version; otherwise the alias
      # decides (and its traffic policy, applied in the function).
      each.value.registry_model == null ? {} : {
        MODELFN_MODEL = (each.value.edge == null
          ? "s3://${aws_s3_bucket.bucket["models"].bucket}/models/${each.value.registry_model}@${each.value.alias}"
        : "s3://${aws_s3_bucket.bucket["models"].bucket}/models/${each.value.registry_model}/${each.value.edge.deployed}")
      },
      # The skills whose requests the function answers (each invokes it directly, see below).
      length(each.value.alexa_skills) == 0 ? {} : { MODELFN_ALEXA_SKILL_IDS = join(",", each.value.alexa_skills) },
      # Event functions write under their own prefix of the results bucket.
      try(each.value.trigger.type, "") == "storage" ? {
        MODELFN_BATCH_INPUT_PREFIX = each.value.trigger.prefix
        MODELFN_BATCH_OUTPUT       = "s3://${var.bucket}-results/${each.key}/predictions"
      } : {},
      try(each.value.trigger.type, "") == "messages" ? {
        MODELFN_MESSAGE_OUTPUT = "s3://${var.bucket}-results/${each.key}/messages"
      } : {},
    )
  }

  tracing_config {
    mode = "Active"
  }

  depends_on = [aws_cloudwatch_log_group.function, aws_iam_role_policy.function]
}

# --- Platform splits: an alias per model version, and the serving alias that routes between them

data "aws_lambda_alias" "kept" {
  for_each      = local.kept
  function_name = "${var.name_prefix}${each.value.function}"
  name          = each.value.alias
}

resource "aws_lambda_alias" "pinned" {
  for_each         = local.pinned
  name             = each.value.alias
  description      = "modelfn: model version ${split(" ", each.key)[1]}"
  function_name    = aws_lambda_function.function[each.value.function].function_name
  function_version = each.value.deployed ? aws_lambda_function.function[each.value.function].version : data.aws_lambda_alias.kept[each.key].function_version
}

# SnapStart without a split: the alias follows each published (snapshotted) version.
resource "aws_lambda_alias" "snap" {
  for_each         = { for name, f in var.functions : name => f if f.snap_start && f.edge == null }
  name             = each.value.alias
  description      = "modelfn: the published, snapshotted version"
  function_name    = aws_lambda_function.function[each.key].function_name
  function_version = aws_lambda_function.function[each.key].version
}

resource "aws_lambda_alias" "serving" {
  for_each         = local.serving
  name             = var.functions[each.key].alias
  description      = "modelfn: the split of deploy.traffic"
  function_name    = aws_lambda_function.function[each.key].function_name
  function_version = aws_lambda_alias.pinned[each.value.primary].function_version

  dynamic "routing_config" {
    for_each = each.value.canary == null ? [] : [each.value.canary]
    content {
      additional_version_weights = {
        (aws_lambda_alias.pinned[routing_config.value].function_version) = local.pinned[routing_config.value].percent / 100
      }
    }
  }

  lifecycle {
    precondition {
      condition     = each.value.canary == null || aws_lambda_alias.pinned[each.value.primary].function_version != try(aws_lambda_alias.pinned[each.value.canary].function_version, "")
      error_message = "Both versions of the split resolve to the same Lambda version: deploy the other version alone first (deploy.traffic: {\"<version>\": 100})."
    }
  }
}

# Alexa invokes a skill's Lambda directly: one permission per skill, its id as the event source
# token, so no other skill can call the function (the function checks the envelope's id as well).
resource "aws_lambda_permission" "alexa" {
  for_each = merge([
    for name, f in var.functions : { for index, skill in f.alexa_skills : "${name} ${index}" => { function = name, skill = skill } }
  ]...)
  statement_id       = "AllowAlexaSkill${split(" ", each.key)[1]}"
  action             = "lambda:InvokeFunction"
  function_name      = aws_lambda_function.function[each.value.function].function_name
  qualifier          = local.qualifier[each.value.function]
  principal          = "alexa-appkit.amazon.com"
  event_source_token = each.value.skill
}

resource "aws_lambda_function_url" "function" {
  for_each           = local.with_url
  function_name      = aws_lambda_function.function[each.key].function_name
  qualifier          = local.qualifier[each.key]
  authorization_type = "AWS_IAM"
}

# --- Event sources ---------------------------------------------------------------------------

resource "aws_lambda_permission" "s3" {
  for_each       = local.s3_triggers
  statement_id   = "AllowS3"
  action         = "lambda:InvokeFunction"
  function_name  = aws_lambda_function.function[each.key].function_name
  principal      = "s3.amazonaws.com"
  source_arn     = "${local.arn}:s3:::${local.input_bucket[each.key]}"
  source_account = data.aws_caller_identity.current.account_id
}

# S3 allows one notification configuration per bucket: group the functions by bucket.
resource "aws_s3_bucket_notification" "trigger" {
  for_each = toset(values(local.input_bucket))
  bucket   = each.value

  dynamic "lambda_function" {
    for_each = { for name, bucket in local.input_bucket : name => local.s3_triggers[name] if bucket == each.value }
    content {
      lambda_function_arn = aws_lambda_function.function[lambda_function.key].arn
      events              = ["s3:ObjectCreated:*"]
      filter_prefix       = lambda_function.value.trigger.prefix
      filter_suffix       = lambda_function.value.trigger.suffix
    }
  }

  depends_on = [aws_lambda_permission.s3, aws_s3_bucket.bucket]
}

resource "aws_lambda_event_source_mapping" "sqs" {
  for_each                = local.sqs_sources
  event_source_arn        = local.queue_arn[each.key]
  function_name           = aws_lambda_function.function[each.key].arn
  batch_size              = each.value.trigger.batch_size
  function_response_types = ["ReportBatchItemFailures"] # one bad message does not fail its batch
}

# --- REST API with API keys ------------------------------------------------------------------

resource "aws_api_gateway_rest_api" "api" {
  count              = length(local.routes) > 0 ? 1 : 0
  name               = "${var.name_prefix}api"
  description        = "modelfn: the exposed models, behind API keys"
  binary_media_types = ["application/octet-stream"] # OIP binary tensors arrive base64-encoded

  endpoint_configuration {
    types = ["REGIONAL"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_api_gateway_resource" "v2" {
  count       = length(aws_api_gateway_rest_api.api)
  rest_api_id = aws_api_gateway_rest_api.api[0].id
  parent_id   = aws_api_gateway_rest_api.api[0].root_resource_id
  path_part   = "v2"
}

resource "aws_api_gateway_resource" "v2_models" {
  count       = length(aws_api_gateway_rest_api.api)
  rest_api_id = aws_api_gateway_rest_api.api[0].id
  parent_id   = aws_api_gateway_resource.v2[0].id
  path_part   = "models"
}

resource "aws_api_gateway_resource" "v2_model" {
  for_each    = local.routes
  rest_api_id = aws_api_gateway_rest_api.api[0].id
  parent_id   = aws_api_gateway_resource.v2_models[0].id
  path_part   = each.key
}

resource "aws_api_gateway_resource" "v2_model_ready" {
  for_each    = local.routes
  rest_api_id = aws_api_gateway_rest_api.api[0].id
  parent_id   = aws_api_gateway_resource.v2_model[each.key].id
  path_part   = "ready"
}

resource "aws_api_gateway_resource" "v2_model_infer" {
  for_each    = local.routes
  rest_api_id = aws_api_gateway_rest_api.api[0].id
  parent_id   = aws_api_gateway_resource.v2_model[each.key].id
  path_part   = "infer"
}

resource "aws_api_gateway_resource" "models" {
  count       = length(aws_api_gateway_rest_api.api)
  rest_api_id = aws_api_gateway_rest_api.api[0].id
  parent_id   = aws_api_gateway_rest_api.api[0].root_resource_id
  path_part   = "models"
}

resource "aws_api_gateway_resource" "model" {
  for_each    = local.routes
  rest_api_id = aws_api_gateway_rest_api.api[0].id
  parent_id   = aws_api_gateway_resource.models[0].id
  path_part   = each.key
}

resource "aws_api_gateway_resource" "model_predict" {
  for_each    = local.routes
  rest_api_id = aws_api_gateway_rest_api.api[0].id
  parent_id   = aws_api_gateway_resource.model[each.key].id
  path_part   = "predict"
}

resource "aws_api_gateway_method" "route" {
  #checkov:skip=CKV2_AWS_53:The function validates every request against the model's contract (names, datatypes, shapes, sizes) and answers 4xx naming the problem.
  for_each         = local.methods
  rest_api_id      = aws_api_gateway_rest_api.api[0].id
  resource_id      = each.value.resource
  http_method      = each.value.method
  authorization    = "NONE"
  api_key_required = true # with a usage plan: the key identifies and throttles the client
}

resource "aws_api_gateway_integration" "route" {
  for_each                = local.methods
  rest_api_id             = aws_api_gateway_rest_api.api[0].id
  resource_id             = each.value.resource
  http_method             = aws_api_gateway_method.route[each.key].http_method
  integration_http_method = "POST"
  type                    = "AWS_PROXY"
  uri                     = local.invoke_arn[each.value.function]
}

resource "aws_lambda_permission" "api" {
  for_each      = local.exposed_api
  statement_id  = "AllowRestApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function[each.key].function_name
  qualifier     = local.qualifier[each.key]
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_api_gateway_rest_api.api[0].execution_arn}/*/*"
}

resource "aws_api_gateway_deployment" "api" {
  count       = length(aws_api_gateway_rest_api.api)
  rest_api_id = aws_api_gateway_rest_api.api[0].id

  # A new deployment whenever a route or its target (the function, or its serving alias) changes.
  triggers = {
    routes = sha1(jsonencode([for key, method in local.methods : [key, method.function, local.invoke_arn[method.function]]]))
  }

  lifecycle {
    create_before_destroy = true
  }

  depends_on = [aws_api_gateway_integration.route]
}

resource "aws_api_gateway_stage" "api" {
  #checkov:skip=CKV_AWS_76:Access logging needs the account-wide API Gateway CloudWatch role, which belongs to the account's baseline, not to this module.
  #checkov:skip=CKV_AWS_120:Predictions are POSTs; API Gateway caches only GETs, and metadata is cheap to compute.
  #checkov:skip=CKV2_AWS_4:Execution logging needs the same account-wide CloudWatch role; the functions log every request themselves.
  #checkov:skip=CKV2_AWS_29:A WAF is an account choice with its own cost; API keys, the usage plan and the functions' own size checks bound each client.
  #checkov:skip=CKV2_AWS_51:Clients authenticate with API keys; client certificates would be for a private backend, and the backend here is Lambda.
  count                = length(aws_api_gateway_rest_api.api)
  rest_api_id          = aws_api_gateway_rest_api.api[0].id
  deployment_id        = aws_api_gateway_deployment.api[0].id
  stage_name           = var.stage
  xray_tracing_enabled = true
}

resource "aws_api_gateway_api_key" "client" {
  count = length(aws_api_gateway_rest_api.api)
  name  = "${var.name_prefix}${var.stage}-client"
}

resource "aws_api_gateway_usage_plan" "plan" {
  count = length(aws_api_gateway_rest_api.api)
  name  = "${var.name_prefix}${var.stage}"

  api_stages {
    api_id = aws_api_gateway_rest_api.api[0].id
    stage  = aws_api_gateway_stage.api[0].stage_name
  }

  quota_settings {
    limit  = var.quota_per_month
    period = "MONTH"
  }

  throttle_settings {
    burst_limit = 200
    rate_limit  = 100
  }
}

resource "aws_api_gateway_usage_plan_key" "client" {
  count         = length(aws_api_gateway_rest_api.api)
  key_id        = aws_api_gateway_api_key.client[0].id
  key_type      = "API_KEY"
  usage_plan_id = aws_api_gateway_usage_plan.plan[0].id
}
