# The event path: EventBridge rules for the signals healer normalizes
# (README "Signals") → one SQS queue, with a dead-letter queue and a queue
# policy that admits only these rules.

variable "name" {
  description = "Name prefix."
  type        = string
}

variable "max_receive_count" {
  description = "Deliveries before a message moves to the dead-letter queue."
  type        = number
}

locals {
  rules = {
    ecs-task-stopped = {
      description = "ECS task stopped (crashes, failed health checks, spot interruptions)."
      pattern = {
        source        = ["aws.ecs"]
        "detail-type" = ["ECS Task State Change"]
        detail        = { lastStatus = ["STOPPED"] }
      }
    }
    ecs-service-action = {
      description = "ECS service actions (placement failures, impaired task starts, steady state)."
      pattern = {
        source        = ["aws.ecs"]
        "detail-type" = ["ECS Service Action"]
      }
    }
    ecs-deployment = {
      description = "ECS deployment state changes (failures, rollbacks, completions)."
      pattern = {
        source        = ["aws.ecs"]
        "detail-type" = ["ECS Deployment State Change"]
      }
    }
    cloudwatch-alarm = {
      description = "CloudWatch alarm state changes (ALARM opens incidents, OK recovers them)."
      pattern = {
        source        = ["aws.cloudwatch"]
        "detail-type" = ["CloudWatch Alarm State Change"]
      }
    }
    ec2-spot = {
      description = "EC2 spot interruption warnings and rebalance recommendations."
      pattern = {
        source        = ["aws.ec2"]
        "detail-type" = ["EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation"]
      }
    }
    health-ec2 = {
      description = "AWS Health events about EC2 (degraded hardware, scheduled retirement)."
      pattern = {
        source        = ["aws.health"]
        "detail-type" = ["AWS Health Event"]
        detail        = { service = ["EC2"] }
      }
    }
  }
}

resource "aws_sqs_queue" "dead_letter" {
  name                      = "${var.name}-events-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "events" {
  name = "${var.name}-events"
  # Longer than one batch takes to record (milliseconds) plus a slow store call.
  visibility_timeout_seconds = 60
  message_retention_seconds  = 345600
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  queue_url = aws_sqs_queue.dead_letter.id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events.arn]
  })
}

resource "aws_cloudwatch_event_rule" "signal" {
  for_each = local.rules

  name          = "${var.name}-${each.key}"
  description   = each.value.description
  event_pattern = jsonencode(each.value.pattern)
}

resource "aws_cloudwatch_event_target" "queue" {
  for_each = local.rules

  rule      = aws_cloudwatch_event_rule.signal[each.key].name
  target_id = "healer-queue"
  arn       = aws_sqs_queue.events.arn
}

data "aws_iam_policy_document" "queue" {
  statement {
    sid       = "OnlyHealerRules"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [for r in aws_cloudwatch_event_rule.signal : r.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "events" {
  queue_url = aws_sqs_queue.events.id
  policy    = data.aws_iam_policy_document.queue.json
}

output "queue_url" {
  description = "The events queue URL."
  value       = aws_sqs_queue.events.id
}

output "queue_arn" {
  description = "The events queue ARN."
  value       = aws_sqs_queue.events.arn
}

output "dead_letter_queue_url" {
  description = "The dead-letter queue URL."
  value       = aws_sqs_queue.dead_letter.id
}
