# Least privilege. The task role grants exactly the API actions healer's code
# calls (infra/check/iam_matches_code.py compares these lists with the SDK
# operations in host/src and fails on any difference):
#   store   host/src/store/dynamo.rs   (CreateTable, DescribeTable and
#                                       UpdateTimeToLive are `healer store init`
#                                       only: Terraform owns the tables here)
#   queue   host/src/sources/sqs.rs
#   facts   host/src/safety/facts.rs
#   lambda  host/src/actions/lambda.rs  (update-function-config)
#   notify  host/src/actions/sns.rs     (notify, escalate)
# Mutating EC2 actions (the executors) are granted only on instances tagged
# SelfHeal=true; the list is empty until the executors call any.

locals {
  store_actions        = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:UpdateItem"]
  queue_actions        = ["sqs:DeleteMessage", "sqs:ReceiveMessage"]
  describe_actions     = ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances", "elasticloadbalancing:DescribeTargetHealth"]
  ecs_read_actions     = ["ecs:DescribeServices"]
  ec2_mutating_actions = []
  lambda_actions       = ["lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration"]
  notify_actions       = ["sns:Publish"]
}

data "aws_iam_policy_document" "assume_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "Store"
    actions   = local.store_actions
    resources = concat(var.table_arns, [for arn in var.table_arns : "${arn}/index/*"])
  }

  statement {
    sid       = "Queue"
    actions   = local.queue_actions
    resources = [var.queue_arn]
  }

  # These Describe actions support no resource-level permissions.
  statement {
    sid       = "Facts"
    actions   = local.describe_actions
    resources = ["*"]
  }

  statement {
    sid       = "EcsFacts"
    actions   = local.ecs_read_actions
    resources = ["arn:aws:ecs:${var.region}:${var.account_id}:service/*"]
  }

  # The functions of this account and region; the governor decides which
  # one a step may touch.
  statement {
    sid       = "LambdaEnvironment"
    actions   = local.lambda_actions
    resources = ["arn:aws:lambda:${var.region}:${var.account_id}:function:*"]
  }

  # The notification channels' topics, in this account and region.
  statement {
    sid       = "Notify"
    actions   = local.notify_actions
    resources = ["arn:aws:sns:${var.region}:${var.account_id}:*"]
  }

  dynamic "statement" {
    for_each = length(local.ec2_mutating_actions) > 0 ? [1] : []

    content {
      sid       = "Ec2OptedIn"
      actions   = local.ec2_mutating_actions
      resources = ["arn:aws:ec2:${var.region}:${var.account_id}:instance/*"]

      condition {
        test     = "StringEquals"
        variable = "aws:ResourceTag/SelfHeal"
        values   = ["true"]
      }
    }
  }
}

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  description        = "healer's task role: the API actions its code calls, nothing else."
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

resource "aws_iam_role_policy" "task" {
  name   = "${var.name}-task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# The execution role: pull the image, write logs, read the admin token.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  description        = "ECS agent role for healer: image pull, logs, admin token."
  assume_role_policy = data.aws_iam_policy_document.assume_ecs_tasks.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  statement {
    sid       = "AdminToken"
    actions   = ["ssm:GetParameters"]
    resources = [aws_ssm_parameter.admin_token.arn]
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "${var.name}-execution-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}
