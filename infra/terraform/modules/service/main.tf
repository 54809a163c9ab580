# healer on Fargate: cluster, task definition (health check via `healer
# health`), service with the deployment circuit breaker, logs, and the admin token.

locals {
  port = 8080
  environment = concat(
    [
      { name = "AWS_REGION", value = var.region },
      { name = "HEALER_STORE", value = "dynamodb" },
      { name = "HEALER_TABLE_PREFIX", value = var.table_prefix },
      { name = "HEALER_SQS_QUEUE_URL", value = var.queue_url },
      # The binary's default is 127.0.0.1; the task listens on its ENI.
      { name = "HEALER_LISTEN", value = "0.0.0.0:${local.port}" },
      { name = "HEALER_AWS_FACTS", value = tostring(var.aws_facts) },
      { name = "HEALER_CACHE_DIR", value = "/var/cache/healer" },
      { name = "HEALER_LOG", value = "healer=info" },
      { name = "HEALER_LOG_FORMAT", value = "json" },
      # Live mode acts through the AWS APIs; off, every step is a dry run.
      { name = "HEALER_LIVE", value = tostring(var.live) },
      { name = "HEALER_NOTIFY_DEFAULT", value = var.notify_topic_arn },
    ],
    var.governor_json == "" ? [] : [{ name = "HEALER_GOVERNOR_JSON", value = var.governor_json }],
    length(var.poll_target_groups) == 0 ? [] : [{ name = "HEALER_POLL_TARGET_GROUPS", value = join(",", var.poll_target_groups) }],
    var.poll_instances ? [{ name = "HEALER_POLL_INSTANCES", value = "true" }] : [],
  )
}

# The diagnostics document the run-diagnostics step sends (read-only checks).
resource "aws_ssm_document" "diagnose" {
  name            = "healer-diagnose"
  document_type   = "Command"
  document_format = "YAML"
  content         = file("${path.module}/../../../ssm/healer-diagnose.yaml")
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:Logs are encrypted by CloudWatch Logs with its service key; a customer managed key would add a key policy for logs that carry no secrets.
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention
}

resource "random_password" "admin_token" {
  length  = 48
  special = false
}

resource "aws_ssm_parameter" "admin_token" {
  #checkov:skip=CKV_AWS_337:SecureString encrypted with the AWS managed key alias/aws/ssm; the execution role reads it without a key policy of ours.
  name        = "/${var.name}/admin-token"
  description = "healer admin API token (HEALER_ADMIN_TOKEN)."
  type        = "SecureString"
  value       = random_password.admin_token.result
}

resource "aws_security_group" "tasks" {
  name        = "${var.name}-tasks"
  description = "healer tasks: no inbound; HTTPS out to the AWS APIs."
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to the AWS APIs (SQS, DynamoDB, EC2, ECS, ELB, Auto Scaling, ECR, Logs)"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  task_role_arn            = aws_iam_role.task.arn
  execution_role_arn       = aws_iam_role.execution.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # Scratch space for precompiled policies (the root filesystem is read-only).
  volume {
    name = "cache"
  }

  container_definitions = jsonencode([
    {
      name                   = "healer"
      image                  = var.image
      essential              = true
      readonlyRootFilesystem = true
      user                   = "65532:65532"
      portMappings           = [{ containerPort = local.port, protocol = "tcp" }]
      environment            = local.environment
      secrets                = [{ name = "HEALER_ADMIN_TOKEN", valueFrom = aws_ssm_parameter.admin_token.arn }]
      mountPoints            = [{ sourceVolume = "cache", containerPath = "/var/cache/healer", readOnly = false }]
      healthCheck = {
        command     = ["CMD", "/usr/local/bin/healer", "health"]
        interval    = 30
        timeout     = 5
        retries     = 3
        startPeriod = 15
      }
      stopTimeout = 30
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.this.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "healer"
        }
      }
    }
  ])
}

resource "aws_ecs_service" "this" {
  name            = var.name
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.this.arn
  desired_count   = var.desired_count
  launch_type     = "FARGATE"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = var.assign_public_ip
  }

  propagate_tags = "SERVICE"
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "service_name" {
  description = "ECS service name."
  value       = aws_ecs_service.this.name
}

output "admin_token_parameter" {
  description = "SSM parameter of the admin token."
  value       = aws_ssm_parameter.admin_token.name
}

output "log_group" {
  description = "Log group name."
  value       = aws_cloudwatch_log_group.this.name
}

output "task_role_arn" {
  description = "Task role ARN."
  value       = aws_iam_role.task.arn
}
