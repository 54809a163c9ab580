# Least privilege. The task role grants exactly the API actions healer's code
# calls (infra/check/iam_matches_code.py compares these lists with the SDK
# operations in host/src and fails on any difference):
#   store   host/src/store/dynamo.rs   (CreateTable, DescribeTable and
#                                       UpdateTimeToLive are `healer store init`
#                                       only: Terraform owns the tables here)
#   queue   host/src/sources/sqs.rs
#   facts   host/src/safety/facts.rs
#   pollers host/src/sources/targets.rs, instances.rs (DescribeTargetGroups,
#                                       DescribeTargetHealth, DescribeInstances,
#                                       DescribeInstanceStatus; off by default)
#   verify  host/src/verify/aws.rs     (DescribeInstanceStatus, DescribeServices,
#                                       DescribeTasks, DescribeTargetHealth)
#   ec2     host/src/actions/ec2.rs    (reboot-instance, replace-instance)
#   ecs     host/src/actions/ecs.rs    (restart-task, force-new-deployment,
#                                       scale-service, rollback-deployment)
#   asg     host/src/actions/autoscaling.rs (set-instance-unhealthy)
#   elbv2   host/src/actions/elbv2.rs  (register-target, deregister-target)
#   lambda  host/src/actions/lambda.rs  (update-function-config)
#   notify  host/src/actions/sns.rs     (notify, escalate)
#   ssm     host/src/actions/ssm.rs     (run-diagnostics, run-command:
#                                        SendCommand on opted-in instances,
#                                        GetCommandInvocation)
# Mutating EC2 actions (the executors) are granted only on instances tagged
# SelfHeal=true; a replacement launches only a twin tagged SelfHealed=true.

locals {
  store_actions        = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:UpdateItem"]
  queue_actions        = ["sqs:DeleteMessage", "sqs:ReceiveMessage"]
  describe_actions     = ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeAddresses", "ec2:DescribeInstanceAttribute", "ec2:DescribeInstanceStatus", "ec2:DescribeInstances", "ec2:DescribeVolumes", "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth"]
  ecs_read_actions     = ["ecs:DescribeServices"]
  ec2_mutating_actions = ["ec2:RebootInstances", "ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances"]
  ec2_launch_actions   = ["ec2:RunInstances"]
  ec2_launch_tags      = ["ec2:CreateTags"]
  pass_role_actions    = ["iam:PassRole"]
  ec2_address_actions  = ["ec2:AssociateAddress"]
  ecs_task_actions     = ["ecs:DescribeTasks", "ecs:RunTask", "ecs:StopTask"]
  ecs_list_actions     = ["ecs:ListTaskDefinitions", "ecs:ListTasks"]
  ecs_service_actions  = ["ecs:UpdateService"]
  asg_mutating_actions = ["autoscaling:SetInstanceHealth"]
  elb_mutating_actions = ["elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:RegisterTargets"]
  lambda_actions       = ["lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration"]
  notify_actions       = ["sns:Publish"]
  ssm_send_actions     = ["ssm:SendCommand"]
  ssm_read_actions     = ["ssm:GetCommandInvocation"]
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

  # run-diagnostics / run-command: SendCommand names the instance and the
  # document; the instance must be opted in, the document is one of this
  # account's (healer-diagnose, the operator's) or AWS-RunShellScript.
  statement {
    sid       = "SsmOptedInInstances"
    actions   = local.ssm_send_actions
    resources = ["arn:aws:ec2:${var.region}:${var.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/SelfHeal"
      values   = ["true"]
    }
  }

  statement {
    sid       = "SsmDocuments"
    actions   = local.ssm_send_actions
    resources = ["arn:aws:ssm:${var.region}:${var.account_id}:document/*", "arn:aws:ssm:${var.region}::document/AWS-RunShellScript"]
  }

  # GetCommandInvocation supports no resource-level permissions.
  statement {
    sid       = "SsmInvocations"
    actions   = local.ssm_read_actions
    resources = ["*"]
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

  # recover-instance marks the opted-in instance it stops with its step token
  # (HealerRecovery), so a resumed step can tell its own stop from a human's:
  # that one tag key, on opted-in instances only.
  statement {
    sid       = "Ec2TagRecovery"
    actions   = local.ec2_launch_tags
    resources = ["arn:aws:ec2:${var.region}:${var.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/SelfHeal"
      values   = ["true"]
    }

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "aws:TagKeys"
      values   = ["HealerRecovery"]
    }
  }

  # replace-instance: the twin itself must be requested with SelfHealed=true
  # (aws:RequestTag applies to the instance only, so the resources it is
  # launched from are a separate statement).
  statement {
    sid       = "Ec2LaunchTwin"
    actions   = local.ec2_launch_actions
    resources = ["arn:aws:ec2:${var.region}:${var.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/SelfHealed"
      values   = ["true"]
    }
  }

  statement {
    sid     = "Ec2LaunchFrom"
    actions = local.ec2_launch_actions
    resources = [
      "arn:aws:ec2:${var.region}::image/*",
      "arn:aws:ec2:${var.region}:${var.account_id}:key-pair/*",
      "arn:aws:ec2:${var.region}:${var.account_id}:network-interface/*",
      "arn:aws:ec2:${var.region}:${var.account_id}:security-group/*",
      "arn:aws:ec2:${var.region}:${var.account_id}:subnet/*",
      "arn:aws:ec2:${var.region}:${var.account_id}:volume/*",
    ]
  }

  # Tagging at launch is authorised as CreateTags, and only as part of the
  # RunInstances that creates the twin (no retagging of other instances).
  statement {
    sid       = "Ec2TagTwinAtLaunch"
    actions   = local.ec2_launch_tags
    resources = ["arn:aws:ec2:${var.region}:${var.account_id}:instance/*", "arn:aws:ec2:${var.region}:${var.account_id}:volume/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }

  # A twin keeps the original's instance profile: its role may be passed to
  # EC2 only.
  statement {
    sid       = "PassInstanceProfileRole"
    actions   = local.pass_role_actions
    resources = ["arn:aws:iam::${var.account_id}:role/*"]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }

  # replace-instance with move_elastic_ip: the address moves to the twin.
  statement {
    sid       = "Ec2MoveAddress"
    actions   = local.ec2_address_actions
    resources = ["arn:aws:ec2:${var.region}:${var.account_id}:elastic-ip/*", "arn:aws:ec2:${var.region}:${var.account_id}:instance/*", "arn:aws:ec2:${var.region}:${var.account_id}:network-interface/*"]
  }

  # restart-task: read, stop or re-run one task (RunTask is authorised on the
  # task definition it runs).
  statement {
    sid       = "EcsTasks"
    actions   = local.ecs_task_actions
    resources = ["arn:aws:ecs:${var.region}:${var.account_id}:task/*", "arn:aws:ecs:${var.region}:${var.account_id}:task-definition/*"]
  }

  # ListTasks and ListTaskDefinitions support no resource-level permissions.
  statement {
    sid       = "EcsLists"
    actions   = local.ecs_list_actions
    resources = ["*"]
  }

  # force-new-deployment, scale-service, rollback-deployment.
  statement {
    sid       = "EcsServices"
    actions   = local.ecs_service_actions
    resources = ["arn:aws:ecs:${var.region}:${var.account_id}:service/*"]
  }

  # set-instance-unhealthy: the group replaces the instance by its own rules.
  statement {
    sid       = "AutoscalingHealth"
    actions   = local.asg_mutating_actions
    resources = ["arn:aws:autoscaling:${var.region}:${var.account_id}:autoScalingGroup:*:autoScalingGroupName/*"]
  }

  # register-target / deregister-target.
  statement {
    sid       = "TargetGroupMembers"
    actions   = local.elb_mutating_actions
    resources = ["arn:aws:elasticloadbalancing:${var.region}:${var.account_id}:targetgroup/*/*"]
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
