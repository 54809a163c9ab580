# healer's DynamoDB store: the same tables `healer store init` creates
# (host/src/store/dynamo.rs), on-demand, with point-in-time recovery, and TTL on
# the incidents' `expires_at`.

variable "table_prefix" {
  description = "Table name prefix (HEALER_TABLE_PREFIX)."
  type        = string
}

locals {
  # name => hash key, range key (or null); every key is a string.
  simple_tables = {
    actions         = { hash = "scope", range = "sk" }
    aggregates      = { hash = "pk", range = "sk" }
    governor        = { hash = "pk", range = null }
    policy-inputs   = { hash = "hash", range = null }
    policy-versions = { hash = "name", range = "sha256" }
    resource-config = { hash = "pk", range = null }
  }
}

resource "aws_dynamodb_table" "incidents" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS owned key; a customer managed key would add a key policy and per-request KMS cost for incident records that hold no secrets.
  name         = "${var.table_prefix}-incidents"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "id"

  attribute {
    name = "id"
    type = "S"
  }

  attribute {
    name = "resource_id"
    type = "S"
  }

  attribute {
    name = "group_id"
    type = "S"
  }

  attribute {
    name = "detected_at"
    type = "N"
  }

  # UTC day of detection: the dashboard's newest incidents, by query.
  attribute {
    name = "day"
    type = "S"
  }

  # Present only while an incident is open: a sparse index of open incidents.
  attribute {
    name = "open_flag"
    type = "S"
  }

  global_secondary_index {
    name            = "by-resource"
    hash_key        = "resource_id"
    range_key       = "detected_at"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "by-group"
    hash_key        = "group_id"
    range_key       = "detected_at"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "by-day"
    hash_key        = "day"
    range_key       = "detected_at"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "open"
    hash_key        = "open_flag"
    range_key       = "detected_at"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }
}

resource "aws_dynamodb_table" "simple" {
  #checkov:skip=CKV_AWS_119:Encrypted at rest with the AWS owned key; a customer managed key would add a key policy and per-request KMS cost for governor state that holds no secrets.
  for_each = local.simple_tables

  name         = "${var.table_prefix}-${each.key}"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = each.value.hash
  range_key    = each.value.range

  attribute {
    name = each.value.hash
    type = "S"
  }

  dynamic "attribute" {
    for_each = each.value.range == null ? [] : [each.value.range]
    content {
      name = attribute.value
      type = "S"
    }
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }
}

output "table_arns" {
  description = "ARNs of every table."
  value       = concat([aws_dynamodb_table.incidents.arn], [for t in aws_dynamodb_table.simple : t.arn])
}
