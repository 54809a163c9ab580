# The event path: EventBridge rules for the signals healer normalizes
# (README "Signals") → one SQS queue, with a dead-letter queue and a queue
# policy that admits only these rules. Each rule's target retries delivery and
# keeps what it still cannot deliver in a second dead-letter queue, so an event
# EventBridge could not hand to SQS is not lost either.

variable "name" {
  description = "Name prefix."
  type        = string
}

variable "max_receive_count" {
  description = "Deliveries before a message moves to the dead-letter queue."
  type        = number
}

variable "delivery_retry_attempts" {
  description = "EventBridge retries of a failed delivery to the queue before the event goes to the delivery dead-letter queue."
  type        = number
}

variable "delivery_max_event_age_seconds" {
  description = "How long EventBridge keeps retrying one event, seconds (60-86400)."
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
    # The Fargate Spot two-minute warning arrives while the task still runs
    # (lastStatus RUNNING, desiredStatus STOPPED); the STOPPED rule above would
    # see the task only once it is gone. Not STOPPED, so no event matches both.
    ecs-task-spot-notice = {
      description = "Fargate Spot termination notices for still-running tasks."
      pattern = {
        source        = ["aws.ecs"]
        "detail-type" = ["ECS Task State Change"]
        detail = {
          lastStatus    = [{ "anything-but" = "STOPPED" }]
          desiredStatus = ["STOPPED"]
          stopCode      = ["TerminationNotice", "SpotInterruption"]
        }
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
      description = "CloudWatch alarm and alarm contributor state changes (ALARM opens incidents, OK recovers them)."
      pattern = {
        source        = ["aws.cloudwatch"]
        "detail-type" = ["CloudWatch Alarm State Change", "CloudWatch Alarm Contributor State Change"]
      }
    }
    ec2-spot = {
      description = "EC2 spot interruption warnings and rebalance recommendations."
      pattern = {
        source        = ["aws.ec2"]
        "detail-type" = ["EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation"]
      }
    }
    autoscaling-failure = {
      description = "Auto Scaling launches and terminations that failed."
      pattern = {
        source        = ["aws.autoscaling"]
        "detail-type" = ["EC2 Instance Launch Unsuccessful", "EC2 Instance Terminate Unsuccessful"]
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

# Events EventBridge could not deliver to the events queue after its retries
# (queue deleted, policy wrong, KMS or throttling trouble): kept, with the error
# in the message attributes, for an operator to redrive.
resource "aws_sqs_queue" "delivery_dead_letter" {
  name                      = "${var.name}-events-delivery-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
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

  retry_policy {
    maximum_retry_attempts       = var.delivery_retry_attempts
    maximum_event_age_in_seconds = var.delivery_max_event_age_seconds
  }

  dead_letter_config {
    arn = aws_sqs_queue.delivery_dead_letter.arn
  }
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

data "aws_iam_policy_document" "delivery_dead_letter" {
  statement {
    sid       = "OnlyHealerRulesDeadLetters"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.delivery_dead_letter.arn]

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

resource "aws_sqs_queue_policy" "delivery_dead_letter" {
  queue_url = aws_sqs_queue.delivery_dead_letter.id
  policy    = data.aws_iam_policy_document.delivery_dead_letter.json
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

output "delivery_dead_letter_queue_url" {
  description = "The queue of events EventBridge could not deliver to the events queue."
  value       = aws_sqs_queue.delivery_dead_letter.id
}
